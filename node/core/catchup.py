"""Catch-up (anti-entropy) between two peers: a sans-I/O state machine.

Frames in, actions out; the caller passes `now` and asks `next_deadline()`. Rules 1-3
and 6 (rounds) and serving are here; the requester side, rules 4 and 5, is
`RangeFetcher` in node/core/catchup_fetch.py.
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
   the next round asks again. When a claimed range is released with seqs missing
   (abandoned, or its session ended), every session whose peer's last vector offers
   that origin plans it again at once (`replan`; the peer engine calls it), not at its
   next round. A peer that let a range go unserved loses its standing (its requests
   claim nothing, so other sessions fetch the same seqs) until it completes a range,
   and its head for that origin is capped at what it delivered until it sends a new
   vector.
6. When my fetches end and my head for some origin is now above both what I last
   advertised and the peer's head (the fetched alerts joined up with out-of-order
   ones), I send my vector again (reply=False) so the peer can fetch those too.
7. A range of an origin whose head gossip moved within the last graft timeout waits
   until a graft timeout after the last such move: the tree is bringing that origin's
   alerts in order (a burst in flight), and fetching them too would only bring second
   copies. A real repair is not slowed: after a partition, a restart or a lost alert,
   the alerts gossip brings sit above a gap and do not move the head. The wait ends
   after `longest_deferral` of the head moving, so a stream that never pauses cannot
   hold a gap's repair back for long. The peer engine reports the moves
   (`FetchRegistry.arriving`).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from node.core.catchup_fetch import (
    CatchupConfig,
    FetchRegistry,
    LocalChains,
    RangeAbandoned,
    RangeFetcher,
    SendRangeRequests,
)
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
    is_equivocation,
    missing_ranges,
    parse_vector,
    summary_digest,
    vector_diff,
)
from node.core.errors import LimitExceeded

__all__ = [  # with catchup_vectors and catchup_fetch: callers import it all from here
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


# --- actions (SendRangeRequests and RangeAbandoned come from catchup_fetch) -----


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
class ServeRanges:
    """Send the held alerts of these ranges, in seq order, as PeerFrame.alerts batches."""

    ranges: tuple[Range, ...]


Action = SendDigest | SendVector | SendRangeRequests | ServeRanges | RangeAbandoned


# --- the session ----------------------------------------------------------------


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
        self._initiator = initiator
        self._config = config or CatchupConfig()
        self._fetch = RangeFetcher(
            local,
            self._config,
            registry if registry is not None else FetchRegistry(),
            peer if peer is not None else object(),
        )
        self._advertised: dict[bytes, int] = {}  # my last vector sent
        self._sent_digest = b""
        self._awaiting_until: float | None = None  # initiator: waiting for an answer
        self._next_round_at: float | None = None
        self.last_in_sync: float | None = None
        self._closed = False  # close(): nothing is planned or asked any more

    @property
    def idle(self) -> bool:
        """No answer awaited and nothing requested or queued."""
        return self._awaiting_until is None and self._fetch.idle

    @property
    def outstanding(self) -> tuple[Range, ...]:
        return self._fetch.outstanding

    @property
    def peer_vector(self) -> Mapping[bytes, int]:
        return dict(self._fetch.peer)

    def start(self, now: float) -> list[Action]:
        """Call once the session is authenticated. The initiator opens the first round."""
        if not self._initiator:
            return []
        return self._open_round(now)

    def on_digest(self, digest: bytes, now: float) -> list[Action]:
        if len(digest) != DIGEST_BYTES:
            raise InvalidCatchupFrame(f"digest must be {DIGEST_BYTES} bytes")
        if self._closed:
            return []
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
        if self._closed:
            return []
        self._fetch.peer = {o: s for o, s in vector.items() if s}
        self._awaiting_until = None
        actions: list[Action] = []
        if not reply:
            actions.append(self._vector_action(reply=True))
        actions += self._fetch.plan(now)
        if self.idle and self._fetch.peer == self._advertised:
            self.last_in_sync = now
        return actions

    def on_range_requests(self, ranges: Sequence[Range]) -> list[Action]:
        """The peer asks for ranges: check the protocol limits, then serve them."""
        if len(ranges) > MAX_RANGES_PER_FRAME:
            raise LimitExceeded(f"more than {MAX_RANGES_PER_FRAME} ranges in one frame")
        for r in ranges:
            if r.size > MAX_RANGE_LEN:
                raise LimitExceeded(f"range of {r.size} alerts exceeds {MAX_RANGE_LEN}")
        if self._closed:  # a peer being dropped is served nothing more
            return []
        return [ServeRanges(tuple(ranges))] if ranges else []

    def on_alerts_received(self, alerts: Iterable[tuple[bytes, int]], now: float) -> list[Action]:
        """(origin, seq) of every alert this peer sent that verified, new or duplicate."""
        if self._closed:
            return []
        actions: list[Action] = [*self._fetch.on_alerts(alerts, now)]
        return actions + self._after_fetches(now)

    def handle_timer(self, now: float) -> list[Action]:
        if self._closed:
            return []
        expired, changed = self._fetch.expire(now)
        actions: list[Action] = [*expired]
        if changed:
            actions += self._after_fetches(now)
        if self._awaiting_until is not None and self._awaiting_until <= now:
            self._awaiting_until = None
        if self._next_round_at is not None and self._next_round_at <= now:
            if self.idle:
                actions += self._open_round(now)
            else:
                self._next_round_at = now + self._config.interval
        return actions

    def next_deadline(self) -> float | None:
        times = self._fetch.deadlines()
        if self._awaiting_until is not None:
            times.append(self._awaiting_until)
        if self._next_round_at is not None:
            times.append(self._next_round_at)
        return min(times, default=None)

    def replan(self, now: float, origins: Collection[bytes]) -> list[Action]:
        """Ranges of `origins` another session held were released unserved (rule 5): ask
        this peer for what its last vector offers of them that no session has in
        flight."""
        if self._closed or not self._fetch.peer:
            return []
        return [*self._fetch.plan(now, origins)]

    def close(self) -> None:
        """The session ended, or is ending: release its ranges so other sessions may ask
        for them, and plan nothing from here on (closing twice is closing once)."""
        self._closed = True
        self._fetch.close()
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

    def _after_fetches(self, now: float) -> list[Action]:
        """Rule 6: once the fetches end, re-advertise a head they moved past both vectors."""
        actions, fetched = self._fetch.drained(now)
        if not fetched:
            return [*actions]
        mine = self._local.vector()
        peer = self._fetch.peer
        if any(seq > max(self._advertised.get(o, 0), peer.get(o, 0)) for o, seq in mine.items()):
            return [self._vector_action(reply=False)]
        return []
