"""What the gossip core takes from its tree peers (node/core/gossip_guard.py), driven
through the peer engine as both the node and the simulator drive it."""

from __future__ import annotations

import random

from node.core.gossip import Gossip, GossipParams, SendTree
from node.core.peer_engine import PeerEngine, Send, TreeFrame
from node.store import MemoryStore

ROOT, A, STRANGER, ME = (bytes([n]) * 32 for n in (1, 3, 2, 9))
MEMBERS = {ROOT, A, ME}


def engine(members: set[bytes] | None = MEMBERS) -> tuple[PeerEngine[str], Gossip]:
    core = Gossip(GossipParams(), random.Random(1))
    check = None if members is None else members.__contains__
    e: PeerEngine[str] = PeerEngine(ME, MemoryStore().chains, core, members=check)
    return e, core


def test_every_refused_tree_frame_is_counted_once_in_the_gossip_core() -> None:
    e, core = engine()
    s, _ = e.session_opened("link A", A, "dialer", 0.0)
    assert s is not None
    # A root that is not a member's key, and one that is no key at all: both refused,
    # both counted in the one place the node's stats read.
    assert e.on_tree(s, STRANGER, 0, False, 1.0) == []
    assert e.on_tree(s, b"\x01", 0, False, 1.0) == []
    peer = core.peer_stats(A, 1.0)
    assert peer is not None and peer.tree_refused == 2
    assert core.stats().tree_refused == 2
    assert core.tree_position() == (ME, 0, None)  # nothing of it was adopted
    # A member's root is taken, and this node tells A where it now stands.
    actions = e.on_tree(s, ROOT, 0, False, 1.0)
    assert core.tree_position() == (ROOT, 75, A)
    sent = [f for a in actions if isinstance(a, Send) for f in a.frames]
    assert any(isinstance(f, TreeFrame) and f.root == ROOT for f in sent)
    # The node-wide count outlives the session; a new session starts its own.
    e.session_closed(s, 2.0)
    assert core.stats().tree_refused == 2
    s2, _ = e.session_opened("link A again", A, "dialer", 3.0)
    assert s2 is not None
    peer = core.peer_stats(A, 3.0)
    assert peer is not None and peer.tree_refused == 0


def test_without_a_membership_test_any_well_formed_root_is_heard() -> None:
    # The simulator's hosts give none: every 32-byte root may be a member's.
    core = Gossip(GossipParams(), random.Random(1))
    core.set_key(ME)
    core.peer_up(A, 0.0)
    actions = core.on_tree(A, STRANGER, 0, False, 1.0)
    assert any(isinstance(a, SendTree) for a in actions)
    assert core.stats().tree_refused == 0
