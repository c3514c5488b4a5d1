"""An alert's life as the node sees it: checks before publishing an update, retraction,
sighting or dispute; gathering the alerts behind a value's verdict; and naming what a
stored alert means for the watch stream. The rules themselves are in node/core/verdict.py
(docs/lifecycle.md).

Links are found through the store's ordinary index: every alert is also indexed under
`link:<hex id>` of each alert it links to (node/core/index_keys.link_key), so "what links to
these alerts?" is one lookup, with no store method of its own.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from node._pb.alertmesh.v1 import alert_pb2
from node.core.alerts import AlertRecord
from node.core.errors import InvalidAlert, NotFound, UnknownOrigin
from node.core.index_keys import link_key
from node.core.roster import Roster
from node.core.verdict import DISPUTE, RETRACTION, SIGHTING, UPDATE, Fact, lineage
from node.store.base import AlertStore, Stored

MAX_LINK_DEPTH = 8  # rounds of "what links to these?" per check: update chains are short

Reader = Callable[[AlertRecord], tuple[alert_pb2.Alert, bool, bool]]  # Sharing.content


class EventKind(enum.IntEnum):  # values of alertmesh.v1.EventKind
    NEW = 1
    RETRACTED = 2
    UPDATED = 3
    SIGHTING = 4
    DISPUTE = 5
    EXPIRED = 6
    REFUSED = 7


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    stored: Stored
    targets: tuple[bytes, ...] = ()
    released: tuple[alert_pb2.Indicator, ...] = ()


_ROLE_EVENT: dict[int, EventKind] = {
    UPDATE: EventKind.UPDATED,
    RETRACTION: EventKind.RETRACTED,
    SIGHTING: EventKind.SIGHTING,
    DISPUTE: EventKind.DISPUTE,
}


class Lifecycle:
    def __init__(
        self, store: AlertStore, reader: Reader, roster: Callable[[], Roster], own_key: bytes
    ) -> None:
        self.store = store
        self.reader = reader
        self.roster = roster
        self.own_key = own_key

    def _member(self, origin: bytes) -> str:
        return self.roster().name_of(origin)

    def readable(self, record: AlertRecord) -> alert_pb2.Alert | None:
        """The alert's content, or None when this node cannot read it or the roster
        refuses it (a compromised key's alerts count for nothing)."""
        if record.sealed or self.roster().refusal(record.origin, record.seq, record.created_at_ms):
            return None
        alert, encrypted, readable = self.reader(record)
        return None if encrypted and not readable else alert

    def fact(self, record: AlertRecord, keys: frozenset[str]) -> Fact | None:
        alert = self.readable(record)
        if alert is None:
            return None
        mentions = not keys.isdisjoint(record.index_keys)
        return Fact.of(record.id, self._member(record.origin), alert, mentions)

    # -- publishing --------------------------------------------------------

    async def prepare(
        self, draft: alert_pb2.Alert, recipients: Sequence[str]
    ) -> tuple[alert_pb2.Alert, list[str]]:
        """Check a draft's update/retraction links (the target is held, readable, and
        this member's), copy a retracted alert's indicators into the retraction (so that
        searches and watches by value see it), and encrypt a change of an encrypted
        alert to the same recipients. Returns the draft and recipients to publish."""
        own = self.roster().get(self.own_key)
        for link in draft.links:
            if link.kind not in (UPDATE, RETRACTION) or not link.alert_id:
                continue
            what = "retract" if link.kind == RETRACTION else "update"
            stored = await self.store.get(link.alert_id)
            if stored is None:
                raise NotFound(f"cannot {what} {link.alert_id.hex()}: this node does not hold it")
            author = self.roster().get(stored.record.origin)
            if own is None or author is None or author.name != own.name:
                raise UnknownOrigin(
                    f"cannot {what} {link.alert_id.hex()}: only its author "
                    f"({self._member(stored.record.origin) or 'unknown'}) may"
                )
            alert = self.readable(stored.record)
            if alert is None:
                raise InvalidAlert(f"cannot {what} {link.alert_id.hex()}: it is not readable here")
            if link.kind == RETRACTION and not draft.indicators:
                draft.indicators.extend(alert.indicators)
            if alert.recipients and not recipients:
                recipients = [r.hex() for r in alert.recipients if r != self.own_key]
                if alert.tlp and not draft.tlp:
                    draft.tlp = alert.tlp
        return draft, list(recipients)

    # -- verdicts ----------------------------------------------------------

    async def facts(
        self, found: dict[str, list[Stored]], keys_per_value: Sequence[frozenset[str]]
    ) -> list[list[Fact]]:
        """For each value (its lookup keys), the facts behind its verdict: the alerts
        `found` under its keys, then, transitively, the alerts linking to those and the
        alerts those link to."""
        records: dict[bytes, AlertRecord] = {}
        held: list[set[bytes]] = []
        for keys in keys_per_value:
            ids: set[bytes] = set()
            for key in keys:
                for stored in found.get(key, ()):
                    records[stored.record.id] = stored.record
                    ids.add(stored.record.id)
            held.append(ids)
        frontier = [set(ids) for ids in held]
        # What links to each id, looked up once per id and kept for every value: a value
        # that reaches an id another value looked up earlier must see the same alerts (a
        # value's verdict may not depend on what else is in the check).
        linking: dict[bytes, list[Stored]] = {}
        for _ in range(MAX_LINK_DEPTH):
            asked = set().union(*frontier) - linking.keys() if frontier else set()
            if not any(frontier):
                break
            found_links = (
                await self.store.lookup(
                    [link_key(i) for i in asked], now_ms=0, include_expired=True
                )
                if asked
                else {}
            )
            for i in asked:
                linking[i] = found_links.get(link_key(i), [])
            targets: set[bytes] = set()  # what the new alerts link to, if not at hand
            for i in asked:
                alert = self.readable(records[i])
                for link in alert.links if alert is not None else ():
                    if link.alert_id and link.alert_id not in records:
                        targets.add(link.alert_id)
            for target in targets:
                got = await self.store.get(target)
                if got is not None:
                    records[target] = got.record
            for n, ids in enumerate(frontier):
                new: set[bytes] = set()
                for i in ids:
                    for stored in linking[i]:
                        records[stored.record.id] = stored.record
                        new.add(stored.record.id)
                    alert = self.readable(records[i])
                    for link in alert.links if alert is not None else ():
                        if link.alert_id in records:
                            new.add(link.alert_id)
                frontier[n] = new - held[n]
                held[n] |= new
        out = []
        for keys, ids in zip(keys_per_value, held, strict=True):
            facts = (self.fact(records[i], keys) for i in ids)
            out.append([f for f in facts if f is not None])
        return out

    # -- the watch stream --------------------------------------------------

    async def event(self, stored: Stored) -> Event:
        """What a newly stored alert means for a subscriber."""
        alert = self.readable(stored.record)
        if alert is None or not alert.links:
            return Event(EventKind.NEW, stored)
        fact = Fact.of(stored.record.id, self._member(stored.record.origin), alert, False)
        kind = fact.role
        target_ids = tuple(dict.fromkeys(fact.targets(kind)))
        facts = [fact]
        released: list[alert_pb2.Indicator] = []
        for target in target_ids:
            held = await self.store.get(target)
            target_alert = self.readable(held.record) if held is not None else None
            if held is not None and target_alert is not None:
                facts.append(Fact.of(target, self._member(held.record.origin), target_alert, False))
                if kind == RETRACTION:
                    released.extend(target_alert.indicators)
        if fact.id in lineage(facts).refused:
            return Event(EventKind.REFUSED, stored, target_ids)
        return Event(_ROLE_EVENT[kind], stored, target_ids, tuple(released))

    async def refuses(self, record: AlertRecord) -> bool:
        """Is `record` a change (a retraction or an update) of another member's alert? It
        is kept, as every signed alert is (its chain must stay whole), and changes
        nothing."""
        return (await self.event(Stored(record, 0, 0))).kind is EventKind.REFUSED

    async def expired(self, stored: Stored) -> Event:
        alert = self.readable(stored.record)
        return Event(EventKind.EXPIRED, stored, released=tuple(alert.indicators if alert else ()))

    async def history(self, alert_id: bytes) -> list[tuple[Fact, bytes, int, bool]]:
        """The alerts linking to `alert_id` and, transitively, to its later versions:
        (fact, the version it links to, link kind, refused), oldest first."""
        root = await self.store.get(alert_id)
        root_alert = self.readable(root.record) if root is not None else None
        if root is None or root_alert is None:
            return []
        facts = {alert_id: Fact.of(alert_id, self._member(root.record.origin), root_alert, True)}
        entries: list[tuple[Fact, bytes, int]] = []
        frontier = [alert_id]
        for _ in range(MAX_LINK_DEPTH):
            if not frontier:
                break
            found = await self.store.lookup(
                [link_key(i) for i in frontier], now_ms=0, include_expired=True
            )
            next_frontier = []
            for target in frontier:
                for stored in found.get(link_key(target), ()):
                    alert = self.readable(stored.record)
                    if alert is None or stored.record.id in facts:
                        continue
                    fact = Fact.of(
                        stored.record.id, self._member(stored.record.origin), alert, False
                    )
                    facts[fact.id] = fact
                    for link in alert.links:
                        if link.alert_id == target:
                            entries.append((fact, target, link.kind))
                    if fact.role == UPDATE:
                        next_frontier.append(fact.id)
            frontier = next_frontier
        refused = lineage(facts.values()).refused
        entries.sort(key=lambda e: (e[0].created_at_ms, e[0].id))
        return [(f, target, kind, f.id in refused) for f, target, kind in entries]
