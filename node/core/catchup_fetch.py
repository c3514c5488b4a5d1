"""Catch-up's requester side: which ranges to ask one peer for, and when to give up.

Rules 4, 5 and 7 of node/core/catchup.py live here; the round exchange (digests and
vectors) and serving stay in `CatchupSession`, which owns one `RangeFetcher`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from node.core.catchup_vectors import (
    MAX_RANGE_LEN,
    MAX_RANGES_PER_FRAME,
    Range,
    VersionVector,
    _chunks,
    _holes,
    _plan,
    _runs,
)


class LocalChains(Protocol):
    """What the session reads about the local store; node.core.chain.Chains is one.

    Called on every frame that needs it, so it must be cheap (in memory).
    """

    def vector(self) -> VersionVector:
        """Head per origin: highest contiguous seq held."""
        ...

    def out_of_order(self, origin: bytes) -> Collection[int]:
        """Seqs of `origin` held above its head (after a gap)."""
        ...

    def head(self, origin: bytes) -> int:
        """The highest contiguous seq of `origin` held (0: none)."""
        ...


class FetchRegistry:
    """Ranges some session of this node has requested and not yet finished; peers' standing.

    Share one among all of a node's sessions so that a node catching up with several
    peers at once asks only one of them for each alert. A session claims a range when
    it sends the request and releases it when the range completes, is abandoned or the
    session closes. A peer that let a range be abandoned is *distrusted* until it
    completes one: its sessions' requests claim nothing, so they block no one.
    """

    def __init__(self) -> None:
        self._claims: dict[bytes, set[Range]] = {}
        self._distrusted: set[Hashable] = set()
        # Rule 7: origin -> (since, until) of gossip moving this node's head for it.
        self._arriving: dict[bytes, tuple[float, float]] = {}
        # Rule 5: origins of claimed ranges released with seqs still missing, until the
        # peer engine takes them to have the other sessions ask for them.
        self._freed: set[bytes] = set()

    def trusted(self, peer: Hashable) -> bool:
        return peer not in self._distrusted

    def distrust(self, peer: Hashable) -> None:
        self._distrusted.add(peer)

    def trust(self, peer: Hashable) -> None:
        self._distrusted.discard(peer)

    def claimed(self, origin: bytes) -> list[tuple[int, int]]:
        return [(r.from_seq, r.to_seq) for r in self._claims.get(origin, ())]

    def claim(self, r: Range) -> None:
        self._claims.setdefault(r.origin, set()).add(r)

    def release(self, r: Range, unserved: bool = False) -> None:
        """`r` is no longer in flight; `unserved`: with seqs still missing."""
        claims = self._claims.get(r.origin)
        if claims is not None:
            claims.discard(r)
            if not claims:
                del self._claims[r.origin]
        if unserved:
            self._freed.add(r.origin)

    def take_freed(self) -> set[bytes]:
        """The origins of claimed ranges released unserved since the last call."""
        freed, self._freed = self._freed, set()
        return freed

    def __len__(self) -> int:
        return sum(len(c) for c in self._claims.values())

    def arriving(self, origin: bytes, now: float, window: float) -> None:
        """Gossip moved this node's head for `origin` (rule 7): the tree is bringing its
        alerts in order, so ranges of it wait until `window` after the last such move."""
        since, until = self._arriving.get(origin, (now, now))
        self._arriving[origin] = (since if until >= now else now, now + window)

    def deferred_until(self, origin: bytes, now: float, longest: float) -> float | None:
        """Until when a range of `origin` waits (rule 7), or None: gossip has not moved
        its head within the window, or has kept moving it for `longest` already."""
        entry = self._arriving.get(origin)
        if entry is None:
            return None
        since, until = entry
        if until <= now:
            del self._arriving[origin]
            return None
        return until if now - since < longest else None


@dataclass(frozen=True, slots=True)
class CatchupConfig:
    interval: float = 30.0  # seconds between rounds (initiator)
    answer_timeout: float = 15.0  # initiator waits this long for a digest answer
    request_timeout: float = 20.0  # a range with no progress this long is abandoned
    max_outstanding: int = 64  # K: ranges in flight
    max_per_range: int = 256  # B: seqs per range
    # A: alerts in flight. Bounding alerts rather than ranges alone keeps scattered
    # one-alert gaps from moving only K alerts per round trip.
    max_outstanding_alerts: int = 1024
    max_pending: int = 4096  # ranges queued at once; the rest are planned later
    # Rule 7: a range of an origin the tree is bringing in order waits, but for at most
    # this long of the tree bringing it (a burst, not a stream that never ends).
    longest_deferral: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_outstanding <= MAX_RANGES_PER_FRAME:
            raise ValueError(f"max_outstanding must be in 1..{MAX_RANGES_PER_FRAME}")
        if not 1 <= self.max_per_range <= MAX_RANGE_LEN:
            raise ValueError(f"max_per_range must be in 1..{MAX_RANGE_LEN}")
        if self.max_pending < self.max_outstanding:
            raise ValueError("max_pending must be at least max_outstanding")
        if self.max_outstanding_alerts < 1:
            raise ValueError("max_outstanding_alerts must be at least 1")


@dataclass(frozen=True, slots=True)
class SendRangeRequests:
    """Send PeerFrame.ranges."""

    ranges: tuple[Range, ...]


@dataclass(frozen=True, slots=True)
class RangeAbandoned:
    """The peer did not deliver `missing` alerts of `range` in time (for peer scoring)."""

    range: Range
    missing: int


FetchAction = SendRangeRequests | RangeAbandoned


@dataclass(slots=True)
class _Flight:
    range: Range
    deadline: float
    claimed: bool  # in the registry (the peer had its standing when it was sent)
    received: set[int] = field(default_factory=set)


class RangeFetcher:
    """The ranges one session asks its peer for: queued, in flight, claimed, abandoned."""

    def __init__(
        self,
        local: LocalChains,
        config: CatchupConfig,
        registry: FetchRegistry,
        standing: Hashable,
    ) -> None:
        self._local = local
        self._config = config
        self._registry = registry
        self._standing = standing
        # The peer's last vector, its heads capped where it left a range unserved.
        self.peer: dict[bytes, int] = {}
        self._pending: deque[Range] = deque()
        self._flights: list[_Flight] = []
        self._truncated = False  # the last plan hit max_pending
        self._fetched = False  # something arrived since the fetches last ended
        self._wake: float | None = None  # when the first deferred range may go (rule 7)

    @property
    def idle(self) -> bool:
        """Nothing requested or queued."""
        return not self._pending and not self._flights

    @property
    def outstanding(self) -> tuple[Range, ...]:
        return tuple(f.range for f in self._flights)

    def deadlines(self) -> list[float]:
        times = [f.deadline for f in self._flights]
        if self._wake is not None:
            times.append(self._wake)
        return times

    def plan(self, now: float, origins: Collection[bytes] | None = None) -> list[FetchAction]:
        """Queue what the peer's vector offers that I lack (rule 4), of `origins` only if
        given; send what fits."""
        local = self._local
        if origins is None:
            heads, offered = local.vector(), self.peer
        else:  # a few origins: no copy of either whole vector
            offered = {o: self.peer[o] for o in origins if o in self.peer}
            heads = {o: local.head(o) for o in offered}
            if all(heads[o] >= seq for o, seq in offered.items()):
                return []
        mine: dict[bytes, list[tuple[int, int]]] = {}  # this session's queued and in flight
        for r in [*self._pending, *(f.range for f in self._flights)]:
            mine.setdefault(r.origin, []).append((r.from_seq, r.to_seq))

        def excluded(origin: bytes) -> list[tuple[int, int]]:
            return (
                _runs(local.out_of_order(origin))
                + self._registry.claimed(origin)
                + mine.get(origin, [])
            )

        room = self._config.max_pending - len(self._pending) - len(self._flights)
        ranges, truncated = _plan(
            heads, offered, self._config.max_per_range, excluded, max(room, 0)
        )
        if origins is None:
            self._truncated = truncated
        elif not ranges:
            return []  # nothing new to send: no pass over the local vector
        else:
            self._truncated |= truncated
        self._pending.extend(ranges)
        return self.send(now)

    def on_alerts(self, alerts: Iterable[tuple[bytes, int]], now: float) -> list[FetchAction]:
        """Count arrivals against the flights; complete ranges free room for the next."""
        for origin, seq in alerts:
            for flight in self._flights:
                if (origin, seq) in flight.range:
                    flight.received.add(seq)
                    flight.deadline = now + self._config.request_timeout
                    self._fetched = True
                    break
        for flight in self._flights:
            if len(flight.received) == flight.range.size:
                self._release(flight)
                self._registry.trust(self._standing)
        self._flights = [f for f in self._flights if len(f.received) < f.range.size]
        return self.send(now)

    def expire(self, now: float) -> tuple[list[FetchAction], bool]:
        """Abandon ranges past their deadline (rule 5), and send deferred ones now due
        (rule 7); True when any was abandoned or due."""
        woke = self._wake is not None and self._wake <= now
        if woke:
            self._wake = None
        actions: list[FetchAction] = []
        keep: list[_Flight] = []
        for flight in self._flights:
            if flight.deadline > now:
                keep.append(flight)
                continue
            missing = self._count_missing(flight)
            self._release(flight, unserved=missing > 0)
            if missing:
                actions.append(RangeAbandoned(flight.range, missing))
                self._distrust(flight)
        if len(keep) == len(self._flights) and not woke:
            return actions, False
        self._flights = keep
        return actions + self.send(now), True

    def drained(self, now: float) -> tuple[list[FetchAction], bool]:
        """When the fetches end: plan the rest of a truncated plan, or report (True) that
        something arrived since they last ended."""
        if self._pending or self._flights:
            return [], False
        if self._truncated:
            actions = self.plan(now)
            if actions:
                return actions, False
        if not self._fetched:
            return [], False
        self._fetched = False
        return [], True

    def close(self) -> None:
        for flight in self._flights:
            self._release(flight, unserved=self._count_missing(flight) > 0)
        self._pending.clear()
        self._flights.clear()
        self._wake = None
        self._truncated = False

    def send(self, now: float) -> list[FetchAction]:
        sent: list[Range] = []
        in_flight = sum(f.range.size for f in self._flights)
        heads = self._local.vector()
        claim = self._registry.trusted(self._standing)
        deferred: list[Range] = []
        self._wake = None
        while self._pending and len(self._flights) < self._config.max_outstanding:
            r = self._pending.popleft()
            until = self._registry.deferred_until(r.origin, now, self._config.longest_deferral)
            if until is not None:  # rule 7: the tree is bringing it
                deferred.append(r)
                self._wake = until if self._wake is None else min(self._wake, until)
                continue
            pieces = self._still_wanted(r, heads.get(r.origin, 0))
            if pieces != [r]:  # trimmed: held, claimed meanwhile, or above a capped head
                self._pending.extendleft(reversed(pieces))
                continue
            if self._flights and in_flight + r.size > self._config.max_outstanding_alerts:
                self._pending.appendleft(r)
                break
            in_flight += r.size
            if claim:
                self._registry.claim(r)
            self._flights.append(_Flight(r, now + self._config.request_timeout, claim))
            sent.append(r)
        self._pending.extendleft(reversed(deferred))
        return [SendRangeRequests(tuple(sent))] if sent else []

    def _still_wanted(self, r: Range, head: int) -> list[Range]:
        """The parts of queued `r` to request now: not held, not claimed, not above the peer."""
        lo, hi = max(r.from_seq, head + 1), min(r.to_seq, self.peer.get(r.origin, 0))
        if lo > hi:
            return []
        held = _runs(self._local.out_of_order(r.origin), lo, hi)
        excluded = held + self._registry.claimed(r.origin)
        return list(_chunks(r.origin, _holes(lo, hi, excluded), self._config.max_per_range))

    def _release(self, flight: _Flight, unserved: bool = False) -> None:
        if flight.claimed:
            self._registry.release(flight.range, unserved)

    def _distrust(self, flight: _Flight) -> None:
        """The peer left `flight` unserved: it loses its standing, and its head for the
        origin is capped at the seqs of the range it did deliver, in order."""
        self._registry.distrust(self._standing)
        r = flight.range
        served = r.from_seq - 1
        while served + 1 in flight.received:
            served += 1
        if self.peer.get(r.origin, 0) > served:
            if served:
                self.peer[r.origin] = served
            else:
                del self.peer[r.origin]

    def _count_missing(self, flight: _Flight) -> int:
        r = flight.range
        head = self._local.head(r.origin)  # not vector(): a copy of every origin's head
        above = self._local.out_of_order(r.origin)
        return sum(
            1
            for seq in range(max(r.from_seq, head + 1), r.to_seq + 1)
            if seq not in flight.received and seq not in above
        )
