"""Catch-up (anti-entropy) between two peers: a sans-I/O state machine.

Frames in, actions out; the caller passes `now` and asks `next_deadline()`.
docs/catchup.md has the message sequences, byte estimates and the reasoning.

The rules:

1. Per origin a node's state is one number, its *head*: the highest seq it holds
   with every lower seq also held. The heads form its VersionVector (zeros left
   out); `summary_digest` hashes it into 32 bytes.
2. The session's initiator (the dialer) opens a round with its digest when the
   session starts and every `interval` seconds after that. The acceptor answers a
   digest with its own digest when they are equal (in sync: one round trip, done)
   and with its vector (reply=False) when they differ. The initiator ignores a
   digest it is not waiting for, so digests cannot ping-pong.
3. A vector with reply=False is always answered with one's own vector, reply=True.
   A vector with reply=True is never answered, so vectors cannot ping-pong either.
4. Each side asks only for what it lacks: for each origin where the peer's head is
   above mine, seqs mine+1 .. theirs, minus out-of-order alerts I already hold and
   minus seqs already requested (from this peer, or from any peer when the node's
   sessions share a FetchRegistry), in ranges of at most `max_per_range` seqs. At
   most `max_outstanding` ranges and `max_outstanding_alerts` seqs are in flight; the
   next goes out as one completes. A range is claimed in the registry only while it
   is in flight, and is trimmed, as it goes out, to what is still missing, unclaimed
   and at or below the peer's head.
5. A range completes when each of its seqs has arrived from the peer (new or
   duplicate). It is abandoned when nothing of it arrives for `request_timeout`;
   the next round asks again. A peer that let a range go unserved loses its
   standing (its requests claim nothing, so other sessions fetch the same seqs)
   until it completes a range, and its head for that origin is capped at what it
   delivered until it sends a new vector.
6. When my fetches end and my head for some origin is now above both what I last
   advertised and the peer's head (the fetched alerts joined up with out-of-order
   ones), I send my vector again (reply=False) so the peer can fetch those too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from node.core.catchup_vectors import (
    DIGEST_BYTES,
    DIGEST_DOMAIN,
    MAX_HEADS,
    MAX_RANGE_LEN,
    MAX_RANGES_PER_FRAME,
    MAX_SEQ,
    ORIGIN_BYTES,
    AlertRef,
    InvalidCatchupFrame,
    Range,
    VersionVector,
    _chunks,
    _holes,
    _plan,
    _runs,
    is_equivocation,
    missing_ranges,
    parse_vector,
    summary_digest,
    vector_diff,
)
from node.core.errors import LimitExceeded

__all__ = [  # with what catchup_vectors defines: callers import it all from here
    "DIGEST_BYTES",
    "DIGEST_DOMAIN",
    "MAX_HEADS",
    "MAX_RANGES_PER_FRAME",
    "MAX_RANGE_LEN",
    "MAX_SEQ",
    "ORIGIN_BYTES",
    "Action",
    "AlertRef",
    "CatchupConfig",
    "CatchupSession",
    "FetchRegistry",
    "InvalidCatchupFrame",
    "LocalChains",
    "Range",
    "RangeAbandoned",
    "SendDigest",
    "SendRangeRequests",
    "SendVector",
    "ServeRanges",
    "VersionVector",
    "is_equivocation",
    "missing_ranges",
    "parse_vector",
    "summary_digest",
    "vector_diff",
]


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

    def release(self, r: Range) -> None:
        claims = self._claims.get(r.origin)
        if claims is not None:
            claims.discard(r)
            if not claims:
                del self._claims[r.origin]

    def __len__(self) -> int:
        return sum(len(c) for c in self._claims.values())


# --- actions --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendDigest:
    """Send PeerFrame.digest."""

    digest: bytes


@dataclass(frozen=True, slots=True)
class SendVector:
    """Send PeerFrame.vector: heads sorted by origin, zeros left out."""

    heads: tuple[tuple[bytes, int], ...]
    reply: bool


@dataclass(frozen=True, slots=True)
class SendRangeRequests:
    """Send PeerFrame.ranges."""

    ranges: tuple[Range, ...]


@dataclass(frozen=True, slots=True)
class ServeRanges:
    """Send the held alerts of these ranges, in seq order, as PeerFrame.alerts batches."""

    ranges: tuple[Range, ...]


@dataclass(frozen=True, slots=True)
class RangeAbandoned:
    """The peer did not deliver `missing` alerts of `range` in time (for peer scoring)."""

    range: Range
    missing: int


Action = SendDigest | SendVector | SendRangeRequests | ServeRanges | RangeAbandoned


# --- the session ----------------------------------------------------------------


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

    def __post_init__(self) -> None:
        if not 1 <= self.max_outstanding <= MAX_RANGES_PER_FRAME:
            raise ValueError(f"max_outstanding must be in 1..{MAX_RANGES_PER_FRAME}")
        if not 1 <= self.max_per_range <= MAX_RANGE_LEN:
            raise ValueError(f"max_per_range must be in 1..{MAX_RANGE_LEN}")
        if self.max_pending < self.max_outstanding:
            raise ValueError("max_pending must be at least max_outstanding")
        if self.max_outstanding_alerts < 1:
            raise ValueError("max_outstanding_alerts must be at least 1")


@dataclass(slots=True)
class _Flight:
    range: Range
    deadline: float
    claimed: bool  # in the registry (the peer had its standing when it was sent)
    received: set[int] = field(default_factory=set)


class CatchupSession:
    """Catch-up with one peer over one session. Not thread-safe; one per peer session."""

    def __init__(
        self,
        local: LocalChains,
        *,
        initiator: bool,
        config: CatchupConfig | None = None,
        registry: FetchRegistry | None = None,
        peer: Hashable | None = None,
    ) -> None:
        """`peer` identifies the peer in the registry, so its standing outlives the session."""
        self._local = local
        self._registry = registry if registry is not None else FetchRegistry()
        self._standing: Hashable = peer if peer is not None else object()
        self._initiator = initiator
        self._config = config or CatchupConfig()
        self._peer: dict[bytes, int] = {}  # the peer's last vector
        self._advertised: dict[bytes, int] = {}  # my last vector sent
        self._sent_digest = b""
        self._awaiting_until: float | None = None  # initiator: waiting for an answer
        self._next_round_at: float | None = None
        self._pending: deque[Range] = deque()
        self._flights: list[_Flight] = []
        self._truncated = False  # the last plan hit max_pending
        self._fetched = False  # something arrived since the fetches last ended
        self.last_in_sync: float | None = None

    @property
    def idle(self) -> bool:
        """No answer awaited and nothing requested or queued."""
        return self._awaiting_until is None and not self._pending and not self._flights

    @property
    def outstanding(self) -> tuple[Range, ...]:
        return tuple(f.range for f in self._flights)

    @property
    def peer_vector(self) -> Mapping[bytes, int]:
        return dict(self._peer)

    def start(self, now: float) -> list[Action]:
        """Call once the session is authenticated. The initiator opens the first round."""
        if not self._initiator:
            return []
        return self._open_round(now)

    def on_digest(self, digest: bytes, now: float) -> list[Action]:
        if len(digest) != DIGEST_BYTES:
            raise InvalidCatchupFrame(f"digest must be {DIGEST_BYTES} bytes")
        if self._initiator:
            if self._awaiting_until is None:
                return []  # late answer to a round that timed out
            self._awaiting_until = None
            if digest == self._sent_digest:
                self.last_in_sync = now
                return []
            return [self._vector_action(reply=False)]
        if digest == summary_digest(self._local.vector()):
            self.last_in_sync = now
            return [SendDigest(digest)]
        return [self._vector_action(reply=False)]

    def on_vector(self, vector: VersionVector, reply: bool, now: float) -> list[Action]:
        """The peer's vector (from `parse_vector`). Answer it unless it is a reply; fetch."""
        self._peer = {o: s for o, s in vector.items() if s}
        self._awaiting_until = None
        actions: list[Action] = []
        if not reply:
            actions.append(self._vector_action(reply=True))
        actions += self._plan_requests(now)
        if self.idle and self._peer == self._advertised:
            self.last_in_sync = now
        return actions

    def on_range_requests(self, ranges: Sequence[Range]) -> list[Action]:
        """The peer asks for ranges: check the protocol limits, then serve them."""
        if len(ranges) > MAX_RANGES_PER_FRAME:
            raise LimitExceeded(f"more than {MAX_RANGES_PER_FRAME} ranges in one frame")
        for r in ranges:
            if r.size > MAX_RANGE_LEN:
                raise LimitExceeded(f"range of {r.size} alerts exceeds {MAX_RANGE_LEN}")
        return [ServeRanges(tuple(ranges))] if ranges else []

    def on_alerts_received(self, alerts: Iterable[tuple[bytes, int]], now: float) -> list[Action]:
        """(origin, seq) of every alert this peer sent that verified, new or duplicate."""
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
        return self._send_requests(now) + self._after_fetches(now)

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        keep: list[_Flight] = []
        for flight in self._flights:
            if flight.deadline > now:
                keep.append(flight)
                continue
            self._release(flight)
            missing = self._count_missing(flight)
            if missing:
                actions.append(RangeAbandoned(flight.range, missing))
                self._distrust(flight)
        if len(keep) < len(self._flights):
            self._flights = keep
            actions += self._send_requests(now) + self._after_fetches(now)
        if self._awaiting_until is not None and self._awaiting_until <= now:
            self._awaiting_until = None
        if self._next_round_at is not None and self._next_round_at <= now:
            if self.idle:
                actions += self._open_round(now)
            else:
                self._next_round_at = now + self._config.interval
        return actions

    def next_deadline(self) -> float | None:
        times = [f.deadline for f in self._flights]
        if self._awaiting_until is not None:
            times.append(self._awaiting_until)
        if self._next_round_at is not None:
            times.append(self._next_round_at)
        return min(times, default=None)

    def close(self) -> None:
        """The session ended: release its ranges so other sessions may ask for them."""
        for flight in self._flights:
            self._release(flight)
        self._pending.clear()
        self._flights.clear()
        self._awaiting_until = None
        self._next_round_at = None

    # --- internals ---

    def _open_round(self, now: float) -> list[Action]:
        self._sent_digest = summary_digest(self._local.vector())
        self._awaiting_until = now + self._config.answer_timeout
        self._next_round_at = now + self._config.interval
        return [SendDigest(self._sent_digest)]

    def _vector_action(self, *, reply: bool) -> SendVector:
        self._advertised = {o: s for o, s in self._local.vector().items() if s}
        return SendVector(tuple(sorted(self._advertised.items())), reply)

    def _plan_requests(self, now: float) -> list[Action]:
        local = self._local
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
        ranges, self._truncated = _plan(
            local.vector(), self._peer, self._config.max_per_range, excluded, max(room, 0)
        )
        self._pending.extend(ranges)
        return self._send_requests(now)

    def _send_requests(self, now: float) -> list[Action]:
        sent: list[Range] = []
        in_flight = sum(f.range.size for f in self._flights)
        heads = self._local.vector()
        claim = self._registry.trusted(self._standing)
        while self._pending and len(self._flights) < self._config.max_outstanding:
            r = self._pending.popleft()
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
        return [SendRangeRequests(tuple(sent))] if sent else []

    def _still_wanted(self, r: Range, head: int) -> list[Range]:
        """The parts of queued `r` to request now: not held, not claimed, not above the peer."""
        lo, hi = max(r.from_seq, head + 1), min(r.to_seq, self._peer.get(r.origin, 0))
        if lo > hi:
            return []
        excluded = _runs(self._local.out_of_order(r.origin)) + self._registry.claimed(r.origin)
        return list(_chunks(r.origin, _holes(lo, hi, excluded), self._config.max_per_range))

    def _release(self, flight: _Flight) -> None:
        if flight.claimed:
            self._registry.release(flight.range)

    def _distrust(self, flight: _Flight) -> None:
        """The peer left `flight` unserved: it loses its standing, and its head for the
        origin is capped at the seqs of the range it did deliver, in order."""
        self._registry.distrust(self._standing)
        r = flight.range
        served = r.from_seq - 1
        while served + 1 in flight.received:
            served += 1
        if self._peer.get(r.origin, 0) > served:
            if served:
                self._peer[r.origin] = served
            else:
                del self._peer[r.origin]

    def _after_fetches(self, now: float) -> list[Action]:
        if self._pending or self._flights:
            return []
        if self._truncated:
            actions = self._plan_requests(now)
            if actions:
                return actions
        if not self._fetched:
            return []
        self._fetched = False
        mine = self._local.vector()
        if any(
            seq > max(self._advertised.get(o, 0), self._peer.get(o, 0)) for o, seq in mine.items()
        ):
            return [self._vector_action(reply=False)]
        return []

    def _count_missing(self, flight: _Flight) -> int:
        r = flight.range
        head = self._local.vector().get(r.origin, 0)
        above = self._local.out_of_order(r.origin)
        return sum(
            1
            for seq in range(max(r.from_seq, head + 1), r.to_seq + 1)
            if seq not in flight.received and seq not in above
        )
