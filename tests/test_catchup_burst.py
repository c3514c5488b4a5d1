"""Catch-up does not fetch what the tree is bringing (catch-up rule 7).

A catch-up round that falls inside a burst sees the peer's head thousands of alerts
ahead of this node's store while the tree is still bringing them, in order. The range
waits until the tree has stopped moving the head for a graft timeout, and then asks
only for what is still missing. A real repair (the alerts gossip brings sit above a gap)
goes out at once. Driven through the peer engine, as the node and the simulator drive it.
"""

from __future__ import annotations

import random

from node.core import peer_engine as pe
from node.core.catchup import CatchupConfig, Range
from node.core.chain import Chains
from node.core.gossip import Gossip, GossipParams

ME, PARENT, PEER = b"\x09" * 32, b"\x03" * 32, b"\x05" * 32
ORIGIN = b"\x01" * 32
GRAFT_TIMEOUT = GossipParams().graft_timeout


class Node:
    """A member's engine with two sessions: its parent in the tree and another peer."""

    def __init__(self, config: CatchupConfig | None = None) -> None:
        self.chains = Chains()
        self.engine: pe.PeerEngine[str] = pe.PeerEngine(
            ME, self.chains, Gossip(GossipParams(), random.Random(1)), config
        )
        parent, _ = self.engine.session_opened("parent", PARENT, "acceptor", 0.0)
        peer, _ = self.engine.session_opened("peer", PEER, "acceptor", 0.0)
        assert parent is not None and peer is not None
        self.parent, self.peer = parent, peer

    def gossip(self, seqs: range, now: float) -> None:
        """The parent pushes these alerts of ORIGIN; they are stored, then reported."""
        received = []
        for seq in seqs:
            self.chains.add(ORIGIN, seq)
            rid = ORIGIN[:16] + seq.to_bytes(16, "big")
            received.append(pe.Received(rid, ORIGIN, seq, new=True, copy=True))
        self.engine.alerts_received(self.parent, received, 0, False, now, 0)

    def peer_vector(self, head: int, now: float) -> list[Range]:
        """The other peer's vector arrives (a catch-up round); the ranges asked of it."""
        return requested(self.engine.on_vector(self.peer, [(ORIGIN, head)], False, now))

    def timers(self, until: float) -> list[Range]:
        """Run the engine's timers up to `until`; the ranges asked for meanwhile."""
        asked: list[Range] = []
        while (due := self.engine.next_deadline()) is not None and due <= until:
            asked += requested(self.engine.handle_timer(due))
        return asked


def seqs(ranges: list[Range]) -> list[int]:
    return sorted(s for r in ranges for s in range(r.from_seq, r.to_seq + 1))


def requested(actions: list[pe.Action[str]]) -> list[Range]:
    return [
        r
        for a in actions
        if isinstance(a, pe.Send)
        for f in a.frames
        if isinstance(f, pe.RangesFrame)
        for r in f.ranges
    ]


def test_a_round_inside_a_burst_asks_for_nothing_the_tree_then_brings() -> None:
    node = Node()
    node.gossip(range(1, 101), now=1.0)
    assert node.peer_vector(600, now=1.2) == []  # the tree is bringing 101..600
    node.gossip(range(101, 601), now=1.8)
    assert node.timers(until=10.0) == []
    assert node.peer.catchup.idle


def test_when_the_tree_stops_short_the_rest_is_asked_for_a_graft_timeout_later() -> None:
    node = Node()
    node.gossip(range(1, 101), now=1.0)
    assert node.peer_vector(600, now=1.2) == []
    node.gossip(range(101, 301), now=1.5)  # then the parent falls silent
    assert node.timers(until=1.5 + GRAFT_TIMEOUT - 0.001) == []
    asked = node.timers(until=1.5 + GRAFT_TIMEOUT)
    assert seqs(asked) == list(range(301, 601))  # only what the tree did not bring


def test_alerts_above_a_gap_do_not_hold_its_repair_back() -> None:
    # A partition heals, or this node restarts: what gossip brings now sits above the
    # alerts it missed, so the head does not move and the gap is asked for at once.
    node = Node()
    node.gossip(range(1, 101), now=1.0)
    node.gossip(range(201, 301), now=40.0)
    assert node.peer_vector(300, now=40.1) == [Range(ORIGIN, 101, 200)]


def test_a_stream_that_never_pauses_holds_a_range_back_for_at_most_longest_deferral() -> None:
    config = CatchupConfig(longest_deferral=5.0)
    node = Node(config)
    node.gossip(range(1, 11), now=1.0)
    assert node.peer_vector(100_000, now=1.0) == []
    asked: list[Range] = []
    seq, now = 11, 1.0
    while not asked:  # the tree moves the head every half graft timeout, forever
        now += GRAFT_TIMEOUT / 2
        node.gossip(range(seq, seq + 10), now)
        seq += 10
        asked = node.timers(until=now)
        assert now < 1.0 + config.longest_deferral + GRAFT_TIMEOUT
    assert asked[0].from_seq == seq


def gossip_forwarded_early(node: Node, seqs: range, now: float) -> None:
    """As the node drives the engine: a relay gossips what verified before its commit
    (alerts_verified), then reports the commit with `forwarded` set."""
    ids = [ORIGIN[:16] + s.to_bytes(16, "big") for s in seqs]
    node.engine.alerts_verified(node.parent, ids, now)  # before the commit
    received = []
    for seq, rid in zip(seqs, ids, strict=True):
        node.chains.add(ORIGIN, seq)
        received.append(pe.Received(rid, ORIGIN, seq, True, True, 0, True))
    node.engine.alerts_received(node.parent, received, 0, False, now, 0)


def test_alerts_forwarded_before_their_commit_still_move_the_head() -> None:
    node = Node()
    gossip_forwarded_early(node, range(1, 101), now=1.0)
    # the tree is bringing 101..600: rule 7 should hold the range back
    assert node.peer_vector(600, now=1.2) == []


def test_an_answer_that_fills_a_gap_does_not_hold_back_the_repair_of_the_next() -> None:
    # Two alerts' frames were lost: 101..150 and 301..350. This node asked its parent
    # for the first (IWANT); the answer fills that gap and moves the head up to 300, but
    # it says nothing about the tree bringing more: the second gap is asked for at once.
    node = Node()
    node.gossip(range(1, 101), now=1.0)
    node.gossip(range(151, 301), now=1.0)
    node.gossip(range(351, 401), now=1.0)
    answered(node, range(101, 151), now=40.0)
    assert node.peer_vector(400, now=40.1) == [Range(ORIGIN, 301, 350)]


def answered(node: Node, seqs: range, now: float) -> None:
    """The parent answers this node's IWANT/GRAFT with these alerts of ORIGIN."""
    received = []
    for seq in seqs:
        node.chains.add(ORIGIN, seq)
        rid = ORIGIN[:16] + seq.to_bytes(16, "big")
        received.append(pe.Received(rid, ORIGIN, seq, new=True, copy=True, answer=True))
    node.engine.alerts_received(node.parent, received, 0, False, now, 0)


def test_an_answer_that_is_the_new_head_is_the_burst_arriving() -> None:
    # No gap: this node pulls the burst (IWANTs after IHAVEs at the tip, or the GRAFT of
    # a new parent), so the answers land on top of the head, as pushes would.
    node = Node()
    node.gossip(range(1, 101), now=1.0)
    answered(node, range(101, 201), now=40.0)
    assert node.peer_vector(600, now=40.1) == []  # the tree is bringing 201..600
    asked = node.timers(until=40.0 + GRAFT_TIMEOUT)
    assert seqs(asked) == list(range(201, 601))  # then only what it did not bring
