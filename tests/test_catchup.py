"""Catch-up between two peers: digests, ranges, session scripts and a delivery-order property.

The property tests use deterministic Hypothesis settings (derandomize=True, no example
database), so CI replays the same examples on every run; a failure prints the example.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from node.core.catchup import (
    DIGEST_DOMAIN,
    MAX_RANGE_LEN,
    MAX_RANGES_PER_FRAME,
    Action,
    AlertRef,
    CatchupConfig,
    CatchupSession,
    FetchRegistry,
    InvalidCatchupFrame,
    Range,
    RangeAbandoned,
    SendDigest,
    SendRangeRequests,
    SendVector,
    ServeRanges,
    is_equivocation,
    missing_ranges,
    parse_vector,
    summary_digest,
    vector_diff,
)
from node.core.chain import Chains, HeldRuns
from node.core.errors import LimitExceeded

DETERMINISTIC = settings(derandomize=True, database=None, deadline=None, print_blob=True)

ORIGINS = [bytes([i]) * 32 for i in range(1, 60)]
O1, O2, O3 = ORIGINS[:3]

Alert = tuple[bytes, int]


def chain(origin: bytes, *seqs: int) -> set[Alert]:
    return {(origin, s) for s in seqs}


def upto(origin: bytes, n: int) -> set[Alert]:
    return chain(origin, *range(1, n + 1))


def chains_of(alerts: Iterable[Alert]) -> Chains:
    """The store's in-memory chain state, which the session reads."""
    chains = Chains()
    for origin, seq in alerts:
        chains.add(origin, seq)
    return chains


# --- a two-peer harness ---------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    kind: str  # digest | vector | ranges | alerts
    payload: object
    reply: bool = False


class Peer:
    def __init__(self, alerts: set[Alert], *, initiator: bool, config: CatchupConfig) -> None:
        self.store = set(alerts)
        self.chains = chains_of(alerts)
        self.registry = FetchRegistry()
        self.session = CatchupSession(
            self.chains, initiator=initiator, config=config, registry=self.registry
        )


class Wire:
    """Initiator A and acceptor B on one session: one FIFO queue each way, as on a gRPC stream.

    The test's "runtime": it turns actions into frames and serves ranges from the
    sender's store in batches of `serve_batch`.
    """

    def __init__(
        self,
        a_alerts: set[Alert],
        b_alerts: set[Alert],
        *,
        config: CatchupConfig,
        serve_batch: int = 2,
        frame_size: Callable[[Frame], int] | None = None,
    ) -> None:
        self.peers = {
            "A": Peer(a_alerts, initiator=True, config=config),
            "B": Peer(b_alerts, initiator=False, config=config),
        }
        self.inbox: dict[str, deque[Frame]] = {"A": deque(), "B": deque()}
        self.frames: Counter[str] = Counter()
        self.bytes = 0
        self.transferred = 0
        self.requested: dict[str, list[Range]] = {"A": [], "B": []}
        self.abandoned: list[RangeAbandoned] = []
        self.drop_alerts_to: set[str] = set()
        self.serve_batch = serve_batch
        self.frame_size = frame_size

    @property
    def a(self) -> Peer:
        return self.peers["A"]

    @property
    def b(self) -> Peer:
        return self.peers["B"]

    def busy(self) -> bool:
        return bool(self.inbox["A"] or self.inbox["B"])

    def _send(self, sender: str, frame: Frame) -> None:
        self.frames[frame.kind] += 1
        if self.frame_size is not None:
            self.bytes += self.frame_size(frame)
        to = "B" if sender == "A" else "A"
        if frame.kind == "alerts" and to in self.drop_alerts_to:
            return
        self.inbox[to].append(frame)

    def act(self, name: str, actions: Iterable[Action]) -> None:
        peer = self.peers[name]
        for action in actions:
            match action:
                case SendDigest(digest):
                    self._send(name, Frame("digest", digest))
                case SendVector(heads, reply):
                    self._send(name, Frame("vector", heads, reply))
                case SendRangeRequests(ranges):
                    self.requested[name] += ranges
                    self._send(name, Frame("ranges", ranges))
                case ServeRanges(ranges):
                    for r in ranges:
                        seqs = range(r.from_seq, r.to_seq + 1)
                        held = [(r.origin, s) for s in seqs if (r.origin, s) in peer.store]
                        for i in range(0, len(held), self.serve_batch):
                            self._send(name, Frame("alerts", tuple(held[i : i + self.serve_batch])))
                case RangeAbandoned():
                    self.abandoned.append(action)

    def deliver(self, to: str, now: float) -> None:
        frame = self.inbox[to].popleft()
        peer = self.peers[to]
        session = peer.session
        actions: list[Action]
        if frame.kind == "digest":
            assert isinstance(frame.payload, bytes)
            actions = session.on_digest(frame.payload, now)
        elif frame.kind == "vector":
            assert isinstance(frame.payload, tuple)
            actions = session.on_vector(parse_vector(frame.payload), frame.reply, now)
        elif frame.kind == "ranges":
            assert isinstance(frame.payload, tuple)
            actions = session.on_range_requests(frame.payload)
        else:
            assert isinstance(frame.payload, tuple)
            for origin, seq in frame.payload:
                self.transferred += 1
                peer.store.add((origin, seq))
                peer.chains.add(origin, seq)
            actions = session.on_alerts_received(frame.payload, now)
        self.act(to, actions)

    def start(self, now: float = 0.0) -> None:
        self.act("A", self.a.session.start(now))
        self.act("B", self.b.session.start(now))

    def settle(self, now: float = 0.0) -> None:
        """Deliver everything, alternating directions."""
        while self.busy():
            for name in ("B", "A"):
                if self.inbox[name]:
                    self.deliver(name, now)

    def fire_timers(self, now: float) -> None:
        for name, peer in self.peers.items():
            deadline = peer.session.next_deadline()
            if deadline is not None and deadline <= now:
                self.act(name, peer.session.handle_timer(now))


def closure(a: set[Alert], b: set[Alert]) -> tuple[set[Alert], set[Alert]]:
    """What catch-up must achieve: both hold the union's contiguous prefix of every origin.

    Alerts above a seq that neither holds cannot be placed in anyone's contiguous
    chain; they stay where they are until a third node fills the gap.
    """
    union = a | b
    prefix: set[Alert] = set()
    for origin in {o for o, _ in union}:
        head = 0
        while (origin, head + 1) in union:
            head += 1
        prefix |= upto(origin, head)
    return a | prefix, b | prefix


SMALL = CatchupConfig(max_outstanding=2, max_per_range=3, request_timeout=1e9)


# --- digest ---------------------------------------------------------------------


def test_digest_of_empty_vector_is_hash_of_domain() -> None:
    assert summary_digest({}) == hashlib.sha256(DIGEST_DOMAIN).digest()
    assert summary_digest({O1: 0}) == summary_digest({})


def test_digest_format_is_pinned() -> None:
    # Nodes of every version must agree on this byte layout (alertmesh stats --json shows it).
    expected = hashlib.sha256(
        DIGEST_DOMAIN + O1 + (5).to_bytes(8, "big") + O2 + (70000).to_bytes(8, "big")
    ).digest()
    assert summary_digest({O2: 70000, O1: 5, O3: 0}) == expected


vectors = st.dictionaries(st.sampled_from(ORIGINS[:8]), st.integers(0, 2**64 - 1), max_size=8)


@DETERMINISTIC
@given(vector=vectors, data=st.data())
def test_digest_ignores_dict_order(vector: dict[bytes, int], data: st.DataObject) -> None:
    shuffled = dict(data.draw(st.permutations(list(vector.items()))))
    assert summary_digest(shuffled) == summary_digest(vector)
    assert len(summary_digest(vector)) == 32


@DETERMINISTIC
@given(v=vectors, w=vectors)
def test_digest_differs_for_different_vectors(v: dict[bytes, int], w: dict[bytes, int]) -> None:
    same = {o: s for o, s in v.items() if s} == {o: s for o, s in w.items() if s}
    assert (summary_digest(v) == summary_digest(w)) == same


def test_digest_rejects_malformed_heads() -> None:
    with pytest.raises(ValueError):
        summary_digest({b"short": 1})
    with pytest.raises(ValueError):
        summary_digest({O1: -1})


# --- vectors and ranges ---------------------------------------------------------


def test_vector_diff_counts_both_directions() -> None:
    assert vector_diff({O1: 5, O2: 9}, {O1: 8, O3: 2}) == ({O1: 3, O3: 2}, {O2: 9})


@pytest.mark.parametrize(
    ("mine", "theirs", "held", "expected"),
    [
        pytest.param({}, {}, {}, [], id="both-empty"),
        pytest.param({O1: 5}, {O1: 5}, {}, [], id="equal"),
        pytest.param({O1: 9}, {O1: 5}, {}, [], id="i-am-ahead"),
        pytest.param({O1: 5}, {O1: 6}, {}, [(O1, 6, 6)], id="one-behind"),
        pytest.param({}, {O1: 4}, {}, [(O1, 1, 4)], id="unknown-origin-exactly-one-range"),
        pytest.param(
            {}, {O1: 10}, {}, [(O1, 1, 4), (O1, 5, 8), (O1, 9, 10)], id="split-into-chunks"
        ),
        pytest.param(
            {O1: 2},
            {O1: 10, O2: 5},
            {},
            [(O1, 3, 6), (O2, 1, 4), (O1, 7, 10), (O2, 5, 5)],
            id="round-robin-across-origins",
        ),
        pytest.param(
            {O1: 3},
            {O1: 12},
            {O1: [6, 7, 9, 20]},
            [(O1, 4, 5), (O1, 8, 8), (O1, 10, 12)],
            id="held-out-of-order-skipped",
        ),
        pytest.param({O1: 3}, {O1: 6}, {O1: [4, 5, 6]}, [], id="gap-already-filled"),
        pytest.param({O1: 1}, {O1: 0, O2: 0}, {}, [], id="zeros-ask-nothing"),
    ],
)
def test_missing_ranges(
    mine: dict[bytes, int],
    theirs: dict[bytes, int],
    held: dict[bytes, list[int]],
    expected: list[tuple[bytes, int, int]],
) -> None:
    got = missing_ranges(mine, theirs, max_per_range=4, held=held)
    assert got == [Range(*r) for r in expected]


def test_missing_ranges_limit_keeps_round_robin_order() -> None:
    got = missing_ranges({}, {O1: 100, O2: 100}, max_per_range=10, limit=3)
    assert got == [Range(O1, 1, 10), Range(O2, 1, 10), Range(O1, 11, 20)]


def test_missing_ranges_is_lazy_for_absurd_heads() -> None:
    got = missing_ranges({}, {O1: 2**63}, max_per_range=1, limit=2)
    assert got == [Range(O1, 1, 1), Range(O1, 2, 2)]


def test_parse_vector_checks_the_peer() -> None:
    assert parse_vector([(O1, 3), (O2, 0)]) == {O1: 3}
    with pytest.raises(InvalidCatchupFrame):
        parse_vector([(O1, 3), (O1, 4)])
    with pytest.raises(InvalidCatchupFrame):
        parse_vector([(b"x" * 31, 3)])
    with pytest.raises(InvalidCatchupFrame):
        parse_vector([(O1, -1)])
    with pytest.raises(InvalidCatchupFrame):
        parse_vector([(O1, 2**64)])
    with pytest.raises(LimitExceeded):
        parse_vector([(o, 1) for o in ORIGINS[:3]], max_heads=2)


def test_range_is_checked_on_construction() -> None:
    with pytest.raises(InvalidCatchupFrame):
        Range(O1, 0, 3)
    with pytest.raises(InvalidCatchupFrame):
        Range(O1, 5, 4)
    with pytest.raises(InvalidCatchupFrame):
        Range(b"short", 1, 1)


def test_server_refuses_requests_beyond_the_protocol_limits() -> None:
    session = CatchupSession(Chains(), initiator=False)
    ok = [Range(O1, 1, MAX_RANGE_LEN)]
    assert session.on_range_requests(ok) == [ServeRanges(tuple(ok))]
    with pytest.raises(LimitExceeded):
        session.on_range_requests([Range(O1, 1, MAX_RANGE_LEN + 1)])
    with pytest.raises(LimitExceeded):
        session.on_range_requests([Range(O1, s, s) for s in range(1, MAX_RANGES_PER_FRAME + 2)])


# --- equivocation -----------------------------------------------


def test_equivocation_is_two_ids_for_one_origin_and_seq() -> None:
    a = AlertRef(O1, 5, b"\x01" * 32)
    assert is_equivocation(a, AlertRef(O1, 5, b"\x02" * 32))
    assert not is_equivocation(a, a)
    assert not is_equivocation(a, AlertRef(O1, 6, b"\x02" * 32))
    assert not is_equivocation(a, AlertRef(O2, 5, b"\x02" * 32))


# --- session scripts ------------------------------------------------------------


def test_identical_stores_agree_in_one_round_trip() -> None:
    store = upto(O1, 50) | upto(O2, 7)
    a = CatchupSession(chains_of(store), initiator=True)
    b = CatchupSession(chains_of(store), initiator=False)

    (opener,) = a.start(now=0.0)
    assert isinstance(opener, SendDigest)
    (answer,) = b.on_digest(opener.digest, now=0.1)
    assert answer == SendDigest(opener.digest)
    assert a.on_digest(answer.digest, now=0.2) == []

    assert a.idle and b.idle
    assert a.last_in_sync == 0.2 and b.last_in_sync == 0.1


def test_acceptor_does_not_open_rounds() -> None:
    b = CatchupSession(chains_of(upto(O1, 3)), initiator=False)
    assert b.start(now=0.0) == []
    assert b.next_deadline() is None


def test_one_side_missing_asks_for_exactly_the_missing_ranges() -> None:
    config = CatchupConfig(max_per_range=4, max_outstanding=4)
    a = CatchupSession(chains_of(upto(O1, 10) | upto(O2, 3)), initiator=True, config=config)
    b = CatchupSession(chains_of(upto(O1, 4)), initiator=False, config=config)

    (opener,) = a.start(now=0.0)
    assert isinstance(opener, SendDigest)
    assert b.on_digest(opener.digest, now=0.0) == [SendVector(((O1, 4),), reply=False)]
    # A lacks nothing: it answers with its vector and asks for nothing.
    assert a.on_vector({O1: 4}, reply=False, now=0.0) == [
        SendVector(((O1, 10), (O2, 3)), reply=True)
    ]
    assert b.on_vector({O1: 10, O2: 3}, reply=True, now=0.0) == [
        SendRangeRequests((Range(O1, 5, 8), Range(O2, 1, 3), Range(O1, 9, 10)))
    ]


def test_both_sides_missing_different_things_both_ask() -> None:
    a_alerts = upto(O1, 5) | upto(O3, 2)
    b_alerts = upto(O2, 5) | upto(O3, 4)
    wire = Wire(a_alerts, b_alerts, config=CatchupConfig(max_per_range=8), serve_batch=8)
    wire.start()
    wire.settle()

    assert wire.requested["A"] == [Range(O2, 1, 5), Range(O3, 3, 4)]
    assert wire.requested["B"] == [Range(O1, 1, 5)]
    assert wire.a.store == wire.b.store == a_alerts | b_alerts
    assert wire.transferred == 5 + 5 + 2
    # digest, vector, vector + ranges, ranges, and the alerts: nothing else.
    assert wire.frames == Counter(digest=1, vector=2, ranges=2, alerts=3)


def test_flow_control_keeps_at_most_k_ranges_in_flight() -> None:
    config = CatchupConfig(max_outstanding=2, max_per_range=3)
    wire = Wire(upto(O1, 20), set(), config=config, serve_batch=2)
    wire.start()
    high_water = 0
    while wire.busy():
        for name in ("B", "A"):
            if wire.inbox[name]:
                wire.deliver(name, now=0.0)
                high_water = max(high_water, len(wire.b.session.outstanding))
    assert high_water == 2
    assert wire.requested["B"] == [Range(O1, s, min(s + 2, 20)) for s in range(1, 21, 3)]
    # The first frame asks for two ranges; each completed range releases the next one.
    assert wire.frames["ranges"] == 1 + 5
    assert wire.b.store == upto(O1, 20) and wire.transferred == 20


def test_out_of_order_alerts_are_not_fetched_again() -> None:
    b_alerts = upto(O1, 3) | chain(O1, 6, 7, 9)
    wire = Wire(upto(O1, 10), b_alerts, config=CatchupConfig(max_per_range=8))
    wire.start()
    wire.settle()
    assert wire.requested["B"] == [Range(O1, 4, 5), Range(O1, 8, 8), Range(O1, 10, 10)]
    assert wire.transferred == 4
    assert wire.b.store == upto(O1, 10)


def test_fetch_that_fills_a_gap_readvertises_so_the_peer_gets_the_rest() -> None:
    # A holds 1, 2, 4, 5 (head 2); B holds 1..3 (head 3). Only after A fetches 3 does
    # it become clear that B lacks 4 and 5.
    wire = Wire(chain(O1, 1, 2, 4, 5), upto(O1, 3), config=CatchupConfig())
    wire.start()
    wire.settle()
    assert wire.requested == {"A": [Range(O1, 3, 3)], "B": [Range(O1, 4, 5)]}
    assert wire.a.store == wire.b.store == upto(O1, 5)
    assert wire.frames["vector"] == 4  # answer + reply, then the re-advertisement + reply


def test_initiator_ignores_a_digest_it_did_not_ask_for() -> None:
    a = CatchupSession(chains_of(upto(O1, 3)), initiator=True)
    assert a.on_digest(summary_digest({O1: 9}), now=0.0) == []


def test_a_reply_vector_is_never_answered() -> None:
    b = CatchupSession(chains_of(upto(O1, 3)), initiator=False)
    assert b.on_vector({O1: 3}, reply=True, now=0.0) == []
    assert b.on_vector({O1: 3}, reply=False, now=0.0) == [SendVector(((O1, 3),), reply=True)]


def test_malformed_digest_is_refused() -> None:
    b = CatchupSession(Chains(), initiator=False)
    with pytest.raises(InvalidCatchupFrame):
        b.on_digest(b"\x00" * 31, now=0.0)


def test_rounds_repeat_every_interval_and_wait_for_fetches() -> None:
    config = CatchupConfig(interval=30.0, answer_timeout=5.0, request_timeout=60.0)
    a = CatchupSession(Chains(), initiator=True, config=config)
    assert len(a.start(now=100.0)) == 1
    assert a.next_deadline() == 105.0  # the answer timeout
    assert a.handle_timer(105.0) == [] and a.idle
    assert a.next_deadline() == 130.0
    (again,) = a.handle_timer(130.0)
    assert isinstance(again, SendDigest)

    # While ranges are in flight, the next round is put off.
    a.on_vector({O1: 5}, reply=True, now=131.0)
    assert not a.idle
    assert a.handle_timer(160.0) == []
    assert a.next_deadline() == 190.0  # the put-off round; the range times out at 191


def test_a_stalled_range_is_abandoned_and_the_next_round_asks_again() -> None:
    config = CatchupConfig(max_per_range=4, request_timeout=10.0, interval=30.0)
    wire = Wire(upto(O1, 6), set(), config=config, serve_batch=4)
    wire.drop_alerts_to.add("B")  # A accepts the requests but nothing reaches B
    wire.start(now=0.0)
    wire.settle(now=0.0)
    assert wire.b.session.outstanding == (Range(O1, 1, 4), Range(O1, 5, 6))

    wire.fire_timers(now=10.0)
    assert wire.abandoned == [
        RangeAbandoned(Range(O1, 1, 4), 4),
        RangeAbandoned(Range(O1, 5, 6), 2),
    ]
    assert wire.b.session.idle

    wire.drop_alerts_to.clear()
    wire.fire_timers(now=30.0)  # A's next round
    wire.settle(now=30.0)
    assert wire.b.store == upto(O1, 6)


def test_range_whose_alerts_arrived_elsewhere_is_not_reported_as_abandoned() -> None:
    chains = Chains()
    b = CatchupSession(chains, initiator=False, config=CatchupConfig(request_timeout=10.0))
    b.on_vector({O1: 2}, reply=True, now=0.0)
    chains.add(O1, 1)
    chains.add(O1, 2)  # through gossip from a third node, not from this peer
    assert b.handle_timer(now=10.0) == []
    assert b.idle


def test_sessions_sharing_a_registry_ask_only_one_peer_for_each_alert() -> None:
    config = CatchupConfig(max_per_range=5, max_outstanding=2, request_timeout=10.0)
    chains = Chains()
    registry = FetchRegistry()
    to_p = CatchupSession(chains, initiator=True, config=config, registry=registry)
    to_q = CatchupSession(chains, initiator=True, config=config, registry=registry)

    assert to_p.on_vector({O1: 20}, reply=True, now=0.0) == [
        SendRangeRequests((Range(O1, 1, 5), Range(O1, 6, 10)))
    ]
    # Q is just as far ahead, and also ahead on O2. Only ranges in flight are claimed,
    # so Q is asked for P's queued 11..15 (and O2), and P will not ask for it.
    assert to_q.on_vector({O1: 20, O2: 3}, reply=True, now=0.0) == [
        SendRangeRequests((Range(O1, 11, 15), Range(O2, 1, 3)))
    ]
    assert len(registry) == 4

    # P stalls: its ranges are abandoned and released, P's head for O1 is capped at
    # what it served (nothing), so P asks for nothing more; Q's next vector picks them up.
    assert to_p.handle_timer(now=10.0) == [
        RangeAbandoned(Range(O1, 1, 5), 5),
        RangeAbandoned(Range(O1, 6, 10), 5),
    ]
    assert to_p.idle and to_p.peer_vector == {}
    assert len(registry) == 2  # Q's two ranges
    received = [(O1, s) for s in range(11, 16)] + [(O2, s) for s in range(1, 4)]
    for origin, s in received:
        chains.add(origin, s)
    assert to_q.on_alerts_received(received, now=10.5) == [SendRangeRequests((Range(O1, 16, 20),))]
    (requests,) = to_q.on_vector({O1: 20, O2: 3}, reply=True, now=11.0)
    assert isinstance(requests, SendRangeRequests)
    assert requests.ranges == (Range(O1, 1, 5),)  # K=2: with 16..20 still in flight


def test_a_peer_that_advertises_heads_it_does_not_serve_loses_its_claims_and_standing() -> None:
    config = CatchupConfig(max_per_range=5, max_outstanding=2, request_timeout=10.0)
    chains = Chains()
    registry = FetchRegistry()
    liar = CatchupSession(chains, initiator=False, config=config, registry=registry, peer=b"L")
    honest = CatchupSession(chains, initiator=False, config=config, registry=registry, peer=b"H")

    # The liar claims a head far above anything published; only its two requests in
    # flight are claimed, so the honest peer is asked for the rest at once.
    actions = liar.on_vector({O1: 1_000_000}, reply=True, now=0.0)
    assert actions == [SendRangeRequests((Range(O1, 1, 5), Range(O1, 6, 10)))]
    assert honest.on_vector({O1: 12, O2: 3}, reply=True, now=1.0) == [
        SendRangeRequests((Range(O1, 11, 12), Range(O2, 1, 3)))
    ]
    received = [(O1, 11), (O1, 12), (O2, 1), (O2, 2), (O2, 3)]
    for origin, s in received:
        chains.add(origin, s)
    assert honest.on_alerts_received(received, now=2.0) == []

    # It serves nothing: at the timeout its claims go, its head for O1 is capped at
    # what it delivered (nothing), and it is asked for nothing more.
    assert liar.handle_timer(now=10.0) == [
        RangeAbandoned(Range(O1, 1, 5), 5),
        RangeAbandoned(Range(O1, 6, 10), 5),
    ]
    assert liar.idle and liar.peer_vector == {} and len(registry) == 0
    assert not registry.trusted(b"L") and registry.trusted(b"H")

    # The honest peer's next round gets the range.
    assert honest.on_vector({O1: 12, O2: 3}, reply=True, now=11.0) == [
        SendRangeRequests((Range(O1, 1, 5), Range(O1, 6, 10)))
    ]
    assert len(registry) == 2

    # The liar reconnects and advertises again: it is asked, but its requests claim
    # nothing, so they block no one, until it completes a range.
    again = CatchupSession(chains, initiator=False, config=config, registry=registry, peer=b"L")
    assert again.on_vector({O1: 1_000_000}, reply=True, now=12.0) == [
        SendRangeRequests((Range(O1, 13, 17), Range(O1, 18, 22)))
    ]
    assert len(registry) == 2
    again.on_alerts_received([(O1, s) for s in range(13, 18)], now=13.0)
    assert registry.trusted(b"L")


def test_only_claimed_ranges_released_unserved_are_reported_for_other_sessions() -> None:
    # The peer engine asks the other sessions for what FetchRegistry.take_freed names.
    config = CatchupConfig(max_per_range=5, max_outstanding=2, request_timeout=10.0)
    chains = Chains()
    registry = FetchRegistry()
    p = CatchupSession(chains, initiator=False, config=config, registry=registry, peer=b"P")
    p.on_vector({O1: 10}, reply=True, now=0.0)
    p.handle_timer(now=10.0)  # abandoned with every seq missing: P loses its standing
    assert registry.take_freed() == {O1}
    assert registry.take_freed() == set()  # reported once
    # P sends a new vector and is asked again, but without its standing its requests
    # claim nothing, so when they lapse they free nothing for anyone.
    p.on_vector({O1: 10}, reply=True, now=11.0)
    assert p.outstanding and len(registry) == 0
    p.handle_timer(now=21.0)
    assert registry.take_freed() == set()


# --- any delivery order ---------------------------------------------------------


@st.composite
def two_stores(draw: st.DrawFn) -> tuple[set[Alert], set[Alert]]:
    """Two stores over up to four short chains.

    Either each seq is held by A, B, both or neither, or (the usual case of a peer that
    was away) each store holds a prefix of each chain plus a few stragglers above it.
    """
    a: set[Alert] = set()
    b: set[Alert] = set()
    origins = ORIGINS[: draw(st.integers(1, 4))]
    if draw(st.booleans()):
        for origin in origins:
            a |= upto(origin, draw(st.integers(0, 30)))
            b |= upto(origin, draw(st.integers(0, 30)))
            a |= chain(origin, *draw(st.sets(st.integers(1, 40), max_size=3)))
            b |= chain(origin, *draw(st.sets(st.integers(1, 40), max_size=3)))
        return a, b
    for origin in origins:
        for seq in range(1, draw(st.integers(0, 16)) + 1):
            where = draw(st.sampled_from(["a", "b", "both", "both", "neither"]))
            if where in ("a", "both"):
                a.add((origin, seq))
            if where in ("b", "both"):
                b.add((origin, seq))
    return a, b


def _bucket(n: int, *edges: int) -> str:
    """Label for Hypothesis statistics (pytest --hypothesis-show-statistics)."""
    low = max((e for e in edges if e <= n), default=0)
    return f"{low}+" if low == edges[-1] else str(low) if n == low else f"{low}.."


@settings(DETERMINISTIC, max_examples=300)
@given(stores=two_stores(), data=st.data())
def test_any_delivery_order_converges_with_no_wasted_transfer(
    stores: tuple[set[Alert], set[Alert]], data: st.DataObject
) -> None:
    a_alerts, b_alerts = stores
    wire = Wire(a_alerts, b_alerts, config=SMALL, serve_batch=2)
    now = 0.0
    wire.start(now)
    while wire.busy():
        # Which direction delivers next, and how much time passes (sometimes enough
        # for the initiator's periodic round to start while fetches are in flight).
        to = data.draw(st.sampled_from([n for n in ("A", "B") if wire.inbox[n]]))
        now += data.draw(st.sampled_from([0.0, 0.0, 0.5, 8.0]))
        wire.fire_timers(now)
        wire.deliver(to, now)
        for peer in wire.peers.values():
            assert len(peer.session.outstanding) <= SMALL.max_outstanding

    want_a, want_b = closure(a_alerts, b_alerts)
    assert (wire.a.store, wire.b.store) == (want_a, want_b)
    union = a_alerts | b_alerts
    if all(s == 1 or (o, s - 1) in union for o, s in union):  # no seq missing everywhere
        assert wire.a.store == wire.b.store == union
    assert wire.a.session.idle and wire.b.session.idle
    assert not wire.abandoned
    assert len(wire.a.registry) == len(wire.b.registry) == 0  # no leaked claims

    # Exact subtraction of held and in-flight seqs: every alert sent was needed.
    needed = len(want_a - a_alerts) + len(want_b - b_alerts)
    assert wire.transferred == needed

    # Frames: per round at most 2 digests + 2 vectors; per range at most one
    # RangeRequests frame, ceil(B / batch) Alerts frames and one re-advertisement
    # (a vector and its reply).
    rounds = wire.frames["digest"]
    ranges = len(wire.requested["A"]) + len(wire.requested["B"])
    event(f"digest frames: {_bucket(rounds, 1, 2, 3)}")
    event(f"vector frames: {_bucket(wire.frames['vector'], 0, 2, 4, 6)}")
    event(f"alerts transferred: {_bucket(needed, 0, 1, 10)}")
    per_range = 1 + math.ceil(SMALL.max_per_range / 2) + 2
    assert sum(wire.frames.values()) <= 4 * rounds + per_range * ranges

    # Converged: the next round is one digest each way.
    before = sum(wire.frames.values())
    deadline = wire.a.session.next_deadline()
    assert deadline is not None
    wire.fire_timers(deadline)
    wire.settle(deadline)
    assert sum(wire.frames.values()) - before == 2
    assert wire.a.session.last_in_sync == deadline


# --- the benchmark case, in protobuf bytes --------------------------------------


def _pb_frame_size(body_bytes: int) -> Callable[[Frame], int]:
    from node._pb.alertmesh.v1 import alert_pb2
    from node._pb.alertmesh.v1 import peer_service_pb2 as pb

    signed = alert_pb2.SignedAlert(body=b"\x00" * body_bytes, signature=b"\x00" * 64)

    def size(frame: Frame) -> int:
        payload = frame.payload
        assert isinstance(payload, (bytes, tuple))
        if frame.kind == "digest":
            assert isinstance(payload, bytes)
            msg = pb.PeerFrame(digest=pb.SummaryDigest(digest=payload))
        elif frame.kind == "vector":
            heads = [pb.Head(origin=o, seq=s) for o, s in payload]
            msg = pb.PeerFrame(vector=pb.VersionVector(heads=heads, reply=frame.reply))
        elif frame.kind == "ranges":
            reqs = [
                pb.RangeRequest(origin=r.origin, from_seq=r.from_seq, to_seq=r.to_seq)
                for r in payload
            ]
            msg = pb.PeerFrame(ranges=pb.RangeRequests(ranges=reqs))
        else:
            msg = pb.PeerFrame(alerts=pb.Alerts(alerts=[signed] * len(payload)))
        # + 5 bytes gRPC message prefix + 9 bytes HTTP/2 DATA frame header
        return msg.ByteSize() + 5 + 9

    return size


BENCH_ORIGINS = ORIGINS[:50]
BENCH_STORE = {(o, s) for o in BENCH_ORIGINS for s in range(1, 2001)}  # 100,000 alerts


def test_identical_stores_of_100k_alerts_agree_in_one_round_trip_and_under_16kb() -> None:
    wire = Wire(BENCH_STORE, BENCH_STORE, config=CatchupConfig(), frame_size=_pb_frame_size(600))
    wire.start()
    wire.settle()
    print(f"in sync: {sum(wire.frames.values())} frames, {wire.bytes} bytes")
    assert wire.frames == Counter(digest=2)
    assert wire.bytes <= 16 * 1024


def test_peer_missing_10k_alerts_costs_little_more_than_the_alerts() -> None:
    body = 600
    lagging = {(o, s) for (o, s) in BENCH_STORE if s <= 1800}
    wire = Wire(
        BENCH_STORE,
        lagging,
        config=CatchupConfig(),
        serve_batch=256,
        frame_size=_pb_frame_size(body),
    )
    wire.start()
    wire.settle()
    assert wire.b.store == BENCH_STORE and wire.transferred == 10_000
    payload = 10_000 * (body + 64)
    overhead = wire.bytes - payload
    print(f"10k missing: {wire.bytes} bytes for {payload} payload ({overhead} overhead)")
    assert wire.bytes <= 1.2 * payload
    # Framing per alert (a few bytes) plus O(members) for digests, vectors and requests.
    assert overhead <= 10 * 10_000 + 200 * len(BENCH_ORIGINS)


def test_scattered_gaps_are_fetched_many_ranges_per_round_trip() -> None:
    """Flow control bounds alerts in flight, so one-alert gaps don't crawl K per round trip."""
    origin = b"\x07" * 32
    local = Chains()
    for seq in range(1, 400, 2):  # holds every odd seq: 199 one-alert gaps
        local.add(origin, seq)
    session = CatchupSession(local, initiator=False)
    actions = session.on_vector({origin: 400}, True, 0.0)
    [request] = [a for a in actions if isinstance(a, SendRangeRequests)]
    assert len(request.ranges) == CatchupConfig().max_outstanding
    assert all(r.size == 1 for r in request.ranges)


class _CountedRuns(HeldRuns):
    """The store's runs, counting every seq anyone expands them into."""

    expanded = 0

    def __iter__(self) -> Iterator[int]:
        for seq in super().__iter__():
            _CountedRuns.expanded += 1
            yield seq


class _CountingChains(Chains):
    def out_of_order(self, origin: bytes) -> HeldRuns:
        held = super().out_of_order(origin)
        runs = held.runs()
        return _CountedRuns([a for a, _ in runs], [b for _, b in runs], len(held))


def test_a_big_gap_is_planned_from_runs_without_expanding_them() -> None:
    # B holds seqs 2 .. 100,001 above a gap at 1: one run. Catching up from A plans a
    # request for seq 1 alone, and never walks the 100,000 seqs the run stands for.
    held = _CountingChains()
    for seq in range(100_001, 1, -1):  # descending: each joins the one run
        held.add(O1, seq)
    assert held.get(O1).runs == [(2, 100_001)]
    _CountedRuns.expanded = 0
    b = CatchupSession(held, initiator=False)
    actions = b.on_vector({O1: 100_001}, reply=False, now=0.0)
    assert SendRangeRequests((Range(O1, 1, 1),)) in actions
    assert _CountedRuns.expanded == 0
    held.add(O1, 1)
    assert b.on_alerts_received([(O1, 1)], now=0.1) == []
    assert b.idle and _CountedRuns.expanded == 0
