"""One verdict per value, from every alert that mentions it (docs/lifecycle.md).

Pure: the caller gathers the facts (the alerts whose indicators match the value, and
the alerts linking to those, transitively), passes `now`, and gets the Verdict. Every
node that holds the same alerts computes the same verdict, because lifecycle changes
are ordinary signed alerts that gossip and catch-up deliver everywhere.

Rules, in order:
- An alert's role is the kind of its first non-update link: RETRACTION, SIGHTING or
  DISPUTE; otherwise it is a version (a new alert, or an UPDATE of one).
- An update or retraction counts only if its target is held and was signed by the same
  member (any of its keys: key rotation keeps a member's alerts its own). Others are
  ignored and counted in `refused_links`.
- Versions joined by valid updates form a family. A family is retracted when any of its
  versions is. Its current versions are those no valid update supersedes.
- An active alert: a current version of a family that is not retracted, whose
  indicators include the value, and that has not expired (unless include_expired).
- Sightings and disputes count when they are about an alert of a family that mentions
  the value, or (no alert id) carry the value themselves, are not expired, and come
  from a member that does not flag the value itself. One per member.

Scoring (confidence 0..100), for a flagged value:
1. Each active alert contributes c = confidence/100 * 0.5 ** (age / half_life), its age
   taken from its creation (an update restarts it); half-lives per category below.
   Per member the strongest alert counts.
2. Members combine as independent witnesses: p = 1 - prod(1 - c_member).
3. Each corroborating member's sighting removes a quarter of the remaining doubt:
   p += (1 - p) * 0.25, for at most 4 members.
4. Each disputing member halves it: p *= 0.5.
confidence = round(100 * p). A value that is not flagged has confidence 0.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from node._pb.alertmesh.v1 import alert_pb2

DAY_MS = 86_400_000
# How fast a flag loses weight; None: it does not decay (a sanctions listing holds until
# it is retracted). Chosen from how long each kind of indicator stays in use.
HALF_LIFE_MS: dict[int, int | None] = {
    alert_pb2.CATEGORY_PHISHING: 30 * DAY_MS,
    alert_pb2.CATEGORY_IMPERSONATION: 30 * DAY_MS,
    alert_pb2.CATEGORY_MALWARE: 60 * DAY_MS,
    alert_pb2.CATEGORY_SCAM: 90 * DAY_MS,
    alert_pb2.CATEGORY_INVESTMENT_FRAUD: 90 * DAY_MS,
    alert_pb2.CATEGORY_RUG_PULL: 180 * DAY_MS,
    alert_pb2.CATEGORY_RANSOMWARE: 180 * DAY_MS,
    alert_pb2.CATEGORY_EXPLOIT: 365 * DAY_MS,
    alert_pb2.CATEGORY_STOLEN_FUNDS: 365 * DAY_MS,
    alert_pb2.CATEGORY_SANCTIONS: None,
}
DEFAULT_HALF_LIFE_MS = 180 * DAY_MS
SIGHTING_GAIN = 0.25
MAX_SIGHTINGS_COUNTED = 4
DISPUTE_FACTOR = 0.5

UPDATE = alert_pb2.LINK_KIND_UPDATE
RETRACTION = alert_pb2.LINK_KIND_RETRACTION
SIGHTING = alert_pb2.LINK_KIND_SIGHTING
DISPUTE = alert_pb2.LINK_KIND_DISPUTE


class State(enum.Enum):
    NOT_FLAGGED = "not flagged"
    FLAGGED = "flagged"
    RETRACTED = "retracted"
    EXPIRED = "expired"
    ALLOWLISTED = "allowlisted"


@dataclass(frozen=True, slots=True)
class Fact:
    """One readable alert as the verdict needs it."""

    id: bytes
    member: str  # the author's roster name (the same for all its keys)
    created_at_ms: int
    expires_at_ms: int
    category: int
    severity: int
    confidence: int
    title: str
    description: str
    links: tuple[alert_pb2.AlertLink, ...]
    mentions_value: bool  # its indicators include the value asked about

    @classmethod
    def of(cls, alert_id: bytes, member: str, alert: alert_pb2.Alert, mentions: bool) -> Fact:
        return cls(
            id=alert_id,
            member=member,
            created_at_ms=alert.created_at_ms,
            expires_at_ms=alert.expires_at_ms,
            category=alert.category,
            severity=alert.severity,
            confidence=alert.confidence,
            title=alert.title,
            description=alert.description,
            links=tuple(alert.links),
            mentions_value=mentions,
        )

    @property
    def role(self) -> int:
        """RETRACTION, SIGHTING, DISPUTE, or UPDATE for a version (new or updated)."""
        return next((link.kind for link in self.links if link.kind != UPDATE), UPDATE)

    def targets(self, kind: int) -> list[bytes]:
        return [link.alert_id for link in self.links if link.kind == kind and link.alert_id]

    def expired(self, now_ms: int) -> bool:
        return 0 < self.expires_at_ms <= now_ms


@dataclass(frozen=True, slots=True)
class RetractionInfo:
    alert_id: bytes
    retraction_id: bytes
    member: str
    retracted_at_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class DisputeInfo:
    alert_id: bytes
    member: str
    reason: str
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    members: tuple[str, ...] = ()
    sightings: int = 0
    sighting_count: int = 0
    disputes: int = 0
    highest_severity: int = 0
    confidence: int = 0
    first_seen_ms: int = 0
    last_seen_ms: int = 0
    alert_ids: tuple[bytes, ...] = ()
    retractions: tuple[RetractionInfo, ...] = ()
    dispute_details: tuple[DisputeInfo, ...] = field(default=())
    refused_links: int = 0

    @property
    def flagged(self) -> bool:
        return self.state is State.FLAGGED


_NOT_FLAGGED = Verdict(State.NOT_FLAGGED)  # the verdict of a value no alert mentions
_ALLOWLISTED = Verdict(State.ALLOWLISTED)


@dataclass(frozen=True, slots=True)
class Lineage:
    """Which versions are current, which are retracted, and which links are refused,
    for a set of facts; shared by the verdict and the watch stream."""

    family: dict[bytes, bytes]  # version id -> its family's root id
    superseded: frozenset[bytes]
    retracted: dict[bytes, Fact]  # family root -> the (first) retraction of it
    refused: frozenset[bytes]  # ids of updates/retractions by another member


def lineage(facts: Iterable[Fact]) -> Lineage:
    by_id = {f.id: f for f in facts}
    parent: dict[bytes, bytes] = {}
    refused: set[bytes] = set()
    retractions: list[tuple[Fact, bytes]] = []
    for f in sorted(by_id.values(), key=lambda f: (f.created_at_ms, f.id)):
        kind = f.role
        if kind not in (UPDATE, RETRACTION):
            continue
        for target in f.targets(kind):
            t = by_id.get(target)
            if t is None or t.role != UPDATE:
                continue  # not held (or not a version): it decides nothing yet
            if t.member != f.member or not f.member:
                refused.add(f.id)
            elif kind == UPDATE:
                parent.setdefault(f.id, target)
            else:
                retractions.append((f, target))
    # A fact refused for one of its links supersedes and retracts nothing by the others.
    parent = {i: p for i, p in parent.items() if i not in refused}
    retractions = [(r, target) for r, target in retractions if r.id not in refused]

    def root(i: bytes) -> bytes:
        seen = {i}
        while i in parent and parent[i] not in seen:
            i = parent[i]
            seen.add(i)
        return i

    family = {i: root(i) for i, f in by_id.items() if f.role == UPDATE}
    retracted: dict[bytes, Fact] = {}
    for r, target in retractions:
        retracted.setdefault(family.get(target, target), r)
    return Lineage(family, frozenset(parent.values()), retracted, frozenset(refused))


def _decay(f: Fact, now_ms: int) -> float:
    half_life = HALF_LIFE_MS.get(f.category, DEFAULT_HALF_LIFE_MS)
    age = max(0, now_ms - f.created_at_ms)
    weight = 1.0 if half_life is None else 0.5 ** (age / half_life)
    return f.confidence / 100 * weight


def score(flags: Sequence[Fact], sighting_members: int, dispute_members: int, now_ms: int) -> int:
    """The confidence rule of the module docstring, for the active alerts `flags`."""
    if not flags:
        return 0
    best: dict[str, float] = {}
    for f in flags:
        best[f.member] = max(best.get(f.member, 0.0), _decay(f, now_ms))
    doubt = 1.0
    for c in best.values():
        doubt *= 1 - c
    p = 1 - doubt
    for _ in range(min(sighting_members, MAX_SIGHTINGS_COUNTED)):
        p += (1 - p) * SIGHTING_GAIN
    p *= DISPUTE_FACTOR**dispute_members
    return round(100 * p)


def verdict(
    facts: Iterable[Fact], *, now_ms: int, include_expired: bool = False, allowlisted: bool = False
) -> Verdict:
    """The value's verdict from `facts` (see the module docstring)."""
    facts = list({f.id: f for f in facts}.values())
    if not facts:  # most checked values: nothing held mentions them
        return _ALLOWLISTED if allowlisted else _NOT_FLAGGED
    lin = lineage(facts)
    versions = [f for f in facts if f.role == UPDATE and f.id not in lin.refused]
    mentioning_families = {lin.family[f.id] for f in versions if f.mentions_value}
    current = [
        f
        for f in versions
        if f.id not in lin.superseded and f.mentions_value and lin.family[f.id] not in lin.retracted
    ]
    active = [f for f in current if include_expired or not f.expired(now_ms)]
    flaggers = {f.member for f in active}

    def about_value(f: Fact, kind: int) -> bool:
        targets = f.targets(kind)
        if not targets:
            return f.mentions_value
        return any(lin.family.get(t, t) in mentioning_families for t in targets)

    sightings: dict[str, Fact] = {}
    disputes: dict[str, Fact] = {}
    for f in sorted(facts, key=lambda f: (f.created_at_ms, f.id)):
        kind = f.role
        if kind not in (SIGHTING, DISPUTE) or f.expired(now_ms) or f.member in flaggers:
            continue
        if about_value(f, kind):
            (sightings if kind == SIGHTING else disputes).setdefault(f.member, f)
    retractions = tuple(
        RetractionInfo(root, r.id, r.member, r.created_at_ms, r.description)
        for root, r in sorted(lin.retracted.items(), key=lambda kv: kv[1].created_at_ms)
        if root in mentioning_families
    )
    dispute_details = tuple(
        DisputeInfo(d.id, d.member, d.description, d.created_at_ms) for d in disputes.values()
    )
    refused_links = len(lin.refused)
    if allowlisted:
        state = State.ALLOWLISTED
    elif active:
        state = State.FLAGGED
    elif retractions:
        state = State.RETRACTED
    elif any(f.expired(now_ms) for f in current):
        state = State.EXPIRED
    else:
        state = State.NOT_FLAGGED
    if state is not State.FLAGGED:
        return Verdict(
            state,
            disputes=len(disputes),
            retractions=retractions,
            dispute_details=dispute_details,
            refused_links=refused_links,
        )
    seen = [f.created_at_ms for f in active]
    for s in sightings.values():
        link = next(link for link in s.links if link.kind == SIGHTING)
        seen += [link.first_seen_ms or s.created_at_ms, link.last_seen_ms or s.created_at_ms]
    return Verdict(
        state,
        members=tuple(sorted(flaggers)),
        sightings=len(sightings),
        sighting_count=sum(
            max(1, next(lk.count for lk in s.links if lk.kind == SIGHTING))
            for s in sightings.values()
        ),
        disputes=len(disputes),
        highest_severity=max(f.severity for f in active),
        confidence=score(active, len(sightings), len(disputes), now_ms),
        first_seen_ms=min(seen),
        last_seen_ms=max(seen),
        alert_ids=tuple(f.id for f in sorted(active, key=lambda f: (f.created_at_ms, f.id))),
        retractions=retractions,
        dispute_details=dispute_details,
        refused_links=refused_links,
    )
