"""The rooted tree (node/core/gossip_tree.py, gossip rule 9), as scripts of events.

A node is a `Gossip` that knows its member key; its peers are bytes. Their TREE frames
are fed in with `on_tree`; the SendTree actions it returns are what it tells them.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

import pytest

from node.core.errors import ConfigError
from node.core.gossip import (
    Gossip,
    GossipParams,
    SendAlerts,
    SendIHave,
    SendIWant,
    SendPrune,
    SendTree,
)
from node.core.gossip_tree import Advert, TreeRouter

P = GossipParams(tree_hop_ms=25, tree_unknown_ms=50, tree_max_cost=3000)
ROOT, A, B, C, ME = (bytes([n]) * 32 for n in (1, 3, 4, 5, 9))


def aid(n: int) -> bytes:
    return hashlib.sha256(b"alert %d" % n).digest()


def never(_: bytes) -> bool:
    return False


def trees(actions: list[object]) -> dict[bytes, SendTree]:
    return {a.peer: a for a in actions if isinstance(a, SendTree)}


def node(*peers: tuple[bytes, float | None], key: bytes = ME, params: GossipParams = P) -> Gossip:
    g = Gossip(params, random.Random(1))
    g.set_key(key)
    for peer, rtt in peers:
        g.peer_up(peer, 0.0, rtt)
    return g


# -- the router ------------------------------------------------------------------------


def test_a_node_alone_is_its_own_root() -> None:
    r = TreeRouter(ME, P)
    r.update(0.0)
    assert (r.root, r.cost, r.parent) == (ME, 0, None)


def test_the_parent_is_the_cheapest_route_to_the_smallest_root() -> None:
    r = TreeRouter(ME, P)
    r.add(A, 0.200)  # 100 ms one way + 25 per hop = 125
    r.add(B, 0.020)  # 10 + 25 = 35
    r.heard(A, Advert(ROOT, 0, False))  # A is next to the root: 125
    r.heard(B, Advert(ROOT, 60, False))  # B is one hop further: 95
    r.update(0.0)
    assert (r.root, r.cost, r.parent) == (ROOT, 95, B)
    # A smaller root wins over any cost.
    r.heard(A, Advert(bytes(32), 2000, False))
    r.update(0.0)
    assert (r.root, r.parent) == (bytes(32), A)


def test_a_peer_that_names_us_its_parent_is_never_our_parent() -> None:
    r = TreeRouter(ME, P)
    r.add(A, None)
    r.heard(A, Advert(ROOT, 10, True))  # poison reverse
    r.update(0.0)
    assert r.parent is None and r.root == ME
    assert r.children() == [A]


def test_a_route_costing_the_cap_or_more_is_no_route() -> None:
    # After the root goes away the costs climb (counting to infinity) up to the cap;
    # then the next smallest key takes over.
    r = TreeRouter(ME, P)
    r.add(A, None)
    r.heard(A, Advert(ROOT, P.tree_max_cost - 75, False))
    r.update(0.0)
    assert r.parent is None and r.root == ME


def test_a_tie_keeps_the_current_parent() -> None:
    r = TreeRouter(ME, P)
    r.add(B, None)
    r.heard(B, Advert(ROOT, 100, False))
    r.update(0.0)
    r.add(A, None)  # A has the smaller key, and the same cost
    r.heard(A, Advert(ROOT, 100, False))
    r.update(0.0)
    assert r.parent == B


# -- the gossip core with the tree -----------------------------------------------------


def test_each_new_session_is_told_where_we_sit() -> None:
    g = Gossip(P, random.Random(1))
    g.set_key(ME)
    sent = trees(g.peer_up(A, 0.0))
    assert sent[A] == SendTree(A, ME, 0, False)


def test_the_parent_and_the_children_are_the_eager_links() -> None:
    g = node((A, None), (B, None), (C, None))
    g.on_tree(B, B, 0, False, 0.0)  # B is a root; its key is smaller than ours
    actions = g.on_tree(A, ROOT, 0, False, 0.0)  # A is next to a smaller root
    assert g.tree_position() == (ROOT, 75, A)
    # Everyone hears our new position; A hears that it is our parent.
    sent = trees(actions)
    assert sent[A] == SendTree(A, ROOT, 75, True)
    assert sent[B] == SendTree(B, ROOT, 75, False)
    g.on_tree(C, ROOT, 150, True, 0.0)  # C takes us as its parent
    assert g.eager_peers() == {A, C}
    assert g.lazy_peers() == {B}
    # A new alert goes down and up the tree, and as an IHAVE to B.
    pushed = [a.peer for a in g.publish(aid(1), 1.0) if isinstance(a, SendAlerts)]
    assert sorted(pushed) == [A, C]


def test_a_duplicate_over_a_tree_link_prunes_nothing() -> None:
    g = node((A, None), (B, None))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 200, True, 0.0)
    g.on_alert(A, aid(1), True, 1.0)
    actions = g.on_alert(B, aid(1), False, 1.1)  # a child had it another way
    assert not any(isinstance(a, SendPrune) for a in actions)
    assert g.eager_peers() == {A, B}


def test_a_repair_link_is_pruned_at_its_first_duplicate() -> None:
    g = node((A, None), (B, None))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 0, False, 0.0)  # as good as A, but A was first: B is lazy
    g.on_graft(B, [], 0.5)  # B repairs through us: the link is eager for now
    assert B in g.eager_peers()
    g.on_alert(A, aid(1), True, 1.0)
    actions = g.on_alert(B, aid(1), False, 1.1)
    assert SendPrune(B) in actions  # at once: pruning it cannot cut the tree
    assert g.eager_peers() == {A}


def test_a_stale_view_of_a_link_is_set_right() -> None:
    g = node((A, None), (B, None), (C, None))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 100, True, 0.0)
    g.on_tree(C, ROOT, 100, False, 0.0)
    # Our parent did not get our TREE frame (lost, or overtaken): it prunes us. We tell
    # it again that it is our parent, and keep pushing to it.
    actions = g.on_prune(A, 1.0)
    assert trees(actions)[A] == SendTree(A, ROOT, 75, True)
    assert A in g.eager_peers()
    # C pushes to us over a link we hold lazy: it missed a TREE frame of ours.
    g.on_alert(A, aid(1), True, 2.0)
    actions = g.on_alert(C, aid(1), False, 2.1)
    assert trees(actions)[C] == SendTree(C, ROOT, 75, False)


def test_a_backlogged_tree_link_is_announced_to_without_a_prune() -> None:
    g = node((A, None), (B, None))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 100, True, 0.0)
    assert g.on_peer_backlogged(B, 1.0) == []  # no PRUNE: it would unsettle B's view
    assert B not in g.eager_peers()
    assert [a.peer for a in g.publish(aid(1), 2.0) if isinstance(a, SendAlerts)] == [A]
    # Once the backoff has passed it is pushed to again.
    later = 2.0 + P.backlog_backoff
    assert B in [a.peer for a in g.publish(aid(2), later) if isinstance(a, SendAlerts)]


def ihaves(actions: list[object]) -> dict[bytes, tuple[bytes, ...]]:
    return {a.peer: a.ids for a in actions if isinstance(a, SendIHave)}


def test_ids_for_a_lazy_peer_in_our_tree_wait_longer_unless_many_are_queued() -> None:
    # B shares our root: the tree brings it every alert, so an IHAVE to it is only
    # repair, and it waits ihave_repair_delay. C is rooted elsewhere: the IHAVE is how
    # it learns of the alert, and it goes after ihave_interval as before.
    g = node((A, None), (B, None), (C, None))
    g.on_tree(A, ROOT, 0, False, 0.0)  # our parent
    g.on_tree(B, ROOT, 40, False, 0.0)  # a lazy peer in our tree
    g.on_tree(C, bytes([2]) * 32, 0, False, 0.0)  # in another tree (T7's hold, a partition)
    g.publish(aid(1), 1.0)
    assert ihaves(g.handle_timer(1.0 + P.ihave_interval)) == {C: (aid(1),)}
    assert g.next_deadline() == 1.0 + P.ihave_repair_delay
    assert ihaves(g.handle_timer(1.0 + P.ihave_repair_delay)) == {B: (aid(1),)}
    assert g.next_deadline() is None
    # At higher rates a full batch goes within ihave_interval of filling up.
    t = 2.0
    for n in range(P.ihave_batch_ids):
        g.publish(aid(100 + n), t + n * 0.001)
    full = t + (P.ihave_batch_ids - 1) * 0.001 + P.ihave_interval
    assert g.next_deadline() == t + P.ihave_interval  # C's, as before
    g.handle_timer(t + P.ihave_interval)
    assert g.next_deadline() == full
    assert len(ihaves(g.handle_timer(full))[B]) == P.ihave_batch_ids
    # A peer that leaves our tree gets what is queued for it within ihave_interval.
    g.publish(aid(200), 5.0)
    g.on_tree(B, bytes([2]) * 32, 0, False, 5.01)
    assert ihaves(g.handle_timer(5.01 + P.ihave_interval))[B] == (aid(200),)


def test_a_trickle_to_a_lazy_peer_in_our_tree_goes_within_the_repair_delay() -> None:
    # One id every 0.2 s, fewer than ihave_batch_ids: each new id must not push the
    # deadline back, or a steady trickle would hold the first id back for ever.
    g = node((A, None), (B, None))
    g.on_tree(A, ROOT, 0, False, 0.0)  # our parent
    g.on_tree(B, ROOT, 40, False, 0.0)  # a lazy peer in our tree
    first = 1.0
    ids = [aid(n) for n in range(3)]
    for n, id in enumerate(ids):
        g.publish(id, first + 0.2 * n)
        assert g.next_deadline() == first + P.ihave_repair_delay
    assert ihaves(g.handle_timer(first + P.ihave_repair_delay)) == {B: tuple(ids)}
    g.publish(aid(3), first + 0.6)  # the next one starts a new wait
    assert g.next_deadline() == first + 0.6 + P.ihave_repair_delay


def test_a_peer_that_leaves_our_tree_is_announced_to_within_ihave_interval() -> None:
    # aid(1) waits as repair for B; then B names another root: the IHAVE is its news
    # now, and the node's own deadline (no other peer's to hide it) moves nearer too.
    g = node((A, None), (B, None))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 40, False, 0.0)
    g.publish(aid(1), 1.0)
    assert g.next_deadline() == 1.0 + P.ihave_repair_delay
    g.on_tree(B, bytes([2]) * 32, 0, False, 1.05)
    assert g.next_deadline() == 1.05 + P.ihave_interval
    assert ihaves(g.handle_timer(1.05 + P.ihave_interval)) == {B: (aid(1),)}
    assert g.next_deadline() is None


def test_a_new_child_is_announced_to_within_ihave_interval() -> None:
    # aid(1) waits as repair for B, a lazy peer in our tree. Then B names us its parent:
    # the link is a tree link, but aid(1) was marked known for B and is never pushed to
    # it, so what is queued for B goes within ihave_interval.
    g = node((A, None), (B, None))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 40, False, 0.0)
    g.publish(aid(1), 1.0)
    assert g.next_deadline() == 1.0 + P.ihave_repair_delay
    actions = g.on_tree(B, ROOT, 100, True, 1.05)  # it names us its parent
    assert B in g.eager_peers()
    assert not [a for a in actions if isinstance(a, SendAlerts)]
    assert g.next_deadline() == 1.05 + P.ihave_interval
    assert ihaves(g.handle_timer(1.05 + P.ihave_interval)) == {B: (aid(1),)}
    assert g.next_deadline() is None


def test_a_new_parent_is_announced_to_as_repair_still() -> None:
    # aid(1) waits as repair for B, a lazy peer in our tree. Then our parent goes and B
    # is our parent: the tree brings B what we had, so aid(1) still waits as repair.
    g = node((A, None), (B, None))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 40, False, 0.0)
    g.publish(aid(1), 1.0)
    g.peer_down(A, 1.05)
    assert g.tree_position() == (ROOT, 115, B)
    assert g.next_deadline() == 1.0 + P.ihave_repair_delay
    assert ihaves(g.handle_timer(1.0 + P.ihave_repair_delay)) == {B: (aid(1),)}


def test_a_backlogged_tree_link_is_announced_to_within_ihave_interval() -> None:
    # B is our child, and its link backlogged: it is announced to instead of pushed to,
    # so an IHAVE is its news, and each goes within ihave_interval though B names our
    # root (a lazy peer on our root would wait ihave_repair_delay).
    g = node((A, None), (B, None))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 100, True, 0.0)  # it names us its parent: a tree link
    g.on_peer_backlogged(B, 1.0)
    for n, t in enumerate((1.0, 1.3, 1.6)):
        pushed = [a.peer for a in g.publish(aid(n), t) if isinstance(a, SendAlerts)]
        assert pushed == [A]
        assert g.next_deadline() == t + P.ihave_interval
        assert ihaves(g.handle_timer(t + P.ihave_interval)) == {B: (aid(n),)}


def test_ids_left_over_a_full_frame_to_a_lazy_peer_in_our_tree_wait_ihave_interval() -> None:
    # A burst of more ids than a frame holds: the rest go ihave_interval later, even
    # when fewer than ihave_batch_ids are left (at most ihave_max_ids per interval).
    params = replace(P, ihave_max_ids=40)
    g = node((A, None), (B, None), params=params)
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 40, False, 0.0)
    ids = [aid(n) for n in range(45)]
    g.publish_many(ids, 1.0)
    sent = 1.0 + P.ihave_interval  # the 32nd id sends the frame
    assert g.next_deadline() == sent
    assert ihaves(g.handle_timer(sent)) == {B: tuple(ids[:40])}
    assert g.next_deadline() == sent + P.ihave_interval
    assert ihaves(g.handle_timer(sent + P.ihave_interval)) == {B: tuple(ids[40:])}


def test_a_backlogged_lazy_peer_in_our_tree_still_waits_the_repair_delay() -> None:
    # Our send queue to B is long, but B still gets every alert down the tree: its
    # IHAVEs stay repair, and more frequent frames would only add to its queue.
    g = node((A, None), (B, None))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 40, False, 0.0)
    assert g.on_peer_backlogged(B, 1.0) == []
    g.publish(aid(1), 1.0)
    assert ihaves(g.handle_timer(1.0 + P.ihave_interval)) == {}
    assert ihaves(g.handle_timer(1.0 + P.ihave_repair_delay)) == {B: (aid(1),)}


def test_the_repair_delay_and_batch_are_checked() -> None:
    for bad in (
        {"ihave_batch_ids": 0},
        {"ihave_repair_delay": 0.0},
        {"ihave_repair_delay": 0.05, "ihave_interval": 0.1},  # sooner than news
        {"ihave_batch_ids": 17, "max_queue_ids": 16},  # it would drop ids while waiting
        {"ihave_repair_delay": float("inf")},
        {"ihave_repair_delay": float("inf"), "graft_timeout": float("inf")},
        {"ihave_repair_delay": 1.0},  # as late as a pull off the tree (graft_timeout)
        {"ihave_repair_delay": 0.5, "graft_timeout": 2.0, "seen_ttl": 0.5},
    ):
        with pytest.raises(ConfigError):
            GossipParams(**bad)
    GossipParams(ihave_repair_delay=0.1, ihave_batch_ids=16, max_queue_ids=16)
    GossipParams(ihave_repair_delay=0.99)


def test_a_parent_that_never_delivers_is_passed_over() -> None:
    g = node((A, None), (B, None))
    g.on_tree(A, ROOT, 0, False, 0.0)  # the cheapest: parent
    g.on_tree(B, ROOT, 40, False, 0.0)
    assert g.tree_position() == (ROOT, 75, A)
    t = 1.0
    for n in range(P.tree_strikes):
        # The alert is announced by B, the timer fires, we ask B, B delivers. On the
        # tree a missing alert is pulled (IWANT): the links stay as they are.
        g.on_ihave(B, [aid(n)], t, never)
        actions = g.handle_timer(t + 2 * P.graft_timeout)
        assert SendIWant(B, (aid(n),)) in actions
        actions = g.on_alert(B, aid(n), True, t + 2.5)
        t += 5
    assert g.tree_position() == (ROOT, 115, B)
    assert trees(actions)[B].parent and not trees(actions)[A].parent


def test_a_parent_that_delivers_in_between_is_kept() -> None:
    g = node((A, None), (B, None))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 40, False, 0.0)
    t = 1.0
    for n in range(2 * P.tree_strikes):
        g.on_ihave(B, [aid(n)], t, never)
        g.handle_timer(t + 2 * P.graft_timeout)
        g.on_alert(B, aid(n), True, t + 2.5)
        g.on_alert(A, aid(1000 + n), True, t + 3)  # the tree works most of the time
        t += 5
    assert g.tree_position() == (ROOT, 75, A)


def test_peers_that_send_no_tree_frames_follow_the_plain_rules() -> None:
    # An older node, or a silent one: never a parent, and its link starts lazy (a silent
    # member gets ids, not alerts); a first copy from it makes the link eager (rule 2),
    # a GRAFT from it too (rule 5), and a duplicate prunes it (rule 3).
    g = node((A, None), (B, None), (C, None), (ROOT, None))
    assert g.tree_position() == (ME, 0, None)
    assert g.eager_peers() == set()
    g.on_alert(A, aid(1), True, 1.0)
    assert A in g.eager_peers()
    g.on_graft(B, [], 1.0)
    assert B in g.eager_peers()
    assert SendPrune(A) in g.on_alert(A, aid(2), False, 2.0) + g.on_alert(A, aid(2), False, 2.0)


def test_without_a_key_there_is_no_tree() -> None:
    g = Gossip(P, random.Random(1))
    assert g.peer_up(A, 0.0) == []
    assert g.on_tree(A, ROOT, 0, False, 0.0) == []
    assert g.tree_position() is None


def test_when_the_root_goes_away_no_stale_route_is_taken_and_the_next_key_takes_over() -> None:
    # A and B are our peers; B routes to the root through us (it is further away).
    g = node((A, None), (B, None))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 150, False, 0.0)
    assert g.tree_position() == (ROOT, 75, A)
    # A (next to the root) goes down. B's route costs more than ours: it may run
    # through us, so it is not taken (T7); we hold the root down, and B, hearing that
    # we are now a root ourselves, soon offers us the smaller key it knows, if any.
    actions = g.peer_down(A, 1.0)
    assert g.tree_position() == (ME, 0, None)
    assert trees(actions)[B] == SendTree(B, ME, 0, False)
    g.on_tree(B, ROOT, 225, False, 1.1)  # a stale advert: still held down
    assert g.tree_position() == (ME, 0, None)
    g.on_tree(B, B, 0, False, 1.2)  # B drops it too; B's key is smaller than ours
    assert g.tree_position() == (B, 75, B)
    # After the hold-down a route to the old root may be taken again, over any path.
    deadline = g.next_deadline()
    assert deadline is not None and deadline <= 1.0 + P.tree_hold
    g.handle_timer(1.0 + P.tree_hold)
    g.on_tree(B, ROOT, 300, False, 1.0 + P.tree_hold)
    assert g.tree_position() == (ROOT, 375, B)


def test_a_hub_named_in_the_roster_is_root_before_any_smaller_key() -> None:
    # T1: the roster names hubs (tree_priority); the reachable hub with the highest
    # priority is root whatever the keys, and without hubs the smallest key is.
    hubs = {C: 2, B: 1}  # C is the best-placed hub, B the next
    g = node((A, None), (B, None))
    g.set_priority(lambda key: hubs.get(key, 0))
    g.on_tree(A, ROOT, 0, False, 0.0)  # the smallest key, not a hub
    g.on_tree(B, C, 40, False, 0.0)  # B has a route to the hub C
    assert g.tree_position() == (C, 115, B)
    # The priority is the roster's, not the peer's word: A can offer ROOT at cost 0 and
    # still not draw us away from the hub.
    g.on_tree(A, ROOT, 0, False, 0.1)
    assert g.tree_position() == (C, 115, B)


def test_when_the_best_hub_is_gone_the_next_hub_takes_over() -> None:
    hubs = {C: 2, B: 1}
    g = node((A, None), (B, None))
    g.set_priority(lambda key: hubs.get(key, 0))
    g.on_tree(B, C, 40, False, 0.0)
    g.on_tree(A, ROOT, 0, False, 0.0)
    assert g.tree_position()[0] == C
    # C went down (or never sends TREE frames: it misbehaves): B drops it and is root.
    g.on_tree(B, B, 0, False, 1.0)
    assert g.tree_position() == (B, 75, B)  # hub B before the smaller key ROOT


def test_without_a_priority_function_the_smallest_key_is_root_as_before() -> None:
    g = node((A, None), (B, None))
    g.on_tree(B, C, 40, False, 0.0)
    g.on_tree(A, ROOT, 0, False, 0.0)
    assert g.tree_position() == (ROOT, 75, A)


# -- T8: positions that cannot be, and floods of them -----------------------------------


def test_a_root_that_is_not_a_key_or_a_cost_out_of_range_is_ignored_and_counted() -> None:
    g = node((A, None))
    for root, cost in ((b"", 0), (b"\x00", 0), (bytes(33), 0), (ROOT, -1), (ROOT, 3000)):
        assert g.on_tree(A, root, cost, False, 1.0) == []
    stats = g.peer_stats(A, 1.0)
    assert stats is not None and stats.tree_refused == 5
    # Nothing of it was adopted: a well-formed position still is.
    assert g.on_tree(A, ROOT, 0, False, 1.0)
    assert g.tree_position() == (ROOT, 75, A)


def test_a_peer_flooding_tree_frames_is_heard_at_the_refill_rate() -> None:
    g = node((A, None), (B, None))
    answered = 0
    for n in range(200):  # 200 frames in 2 s, each a cheaper route
        if g.on_tree(A, ROOT, 2900 - n, False, 1.0 + n * 0.01):
            answered += 1
    stats = g.peer_stats(A, 3.0)
    assert stats is not None
    taken = 200 - stats.tree_refused
    # The burst plus what 2 s refill: every refused frame cost no frame to anyone.
    assert taken <= P.tree_burst + 2 * P.tree_rate + 1
    assert answered <= taken
    # After a quiet spell the peer is heard again.
    assert g.on_tree(A, ROOT, 0, False, 100.0)


# -- T9: a parent working through a burst is waited for ---------------------------------


BUSY = replace(P, tree_busy=1)  # T9 applies from the first copy (a burst, in effect)


def test_a_parent_still_bringing_older_alerts_is_waited_for_until_it_stops() -> None:
    g = node((A, None), (B, None), params=BUSY)
    g.on_tree(A, ROOT, 0, False, 0.0)  # A is the parent
    g.on_tree(B, ROOT, 40, False, 0.0)
    assert g.tree_position() == (ROOT, 75, A)
    # A burst: B announces 1 and 2 long before the parent, busy verifying, brings them.
    g.on_ihave(B, [aid(1)], 1.0, never)
    g.on_ihave(B, [aid(2)], 1.2, never)
    g.on_alert(A, aid(1), True, 1.9)  # the parent is behind: announced at 1.0
    # 2's timer (graft_timeout, stretched by at most graft_jitter) has fired by 2.5.
    actions = g.handle_timer(2.5)
    assert not [a for a in actions if isinstance(a, SendIWant)]  # waited for, no duplicate
    # A copy the parent brings that nobody had announced, or a duplicate, still shows
    # it busy: 2 is waited for again.
    g.on_alert(A, aid(3), True, 3.0)
    actions = g.handle_timer(2.5 + P.graft_timeout)
    assert not [a for a in actions if isinstance(a, SendIWant)]
    # The parent then brings nothing more: 2 is pulled within tree_patience timeouts.
    t = 2.5 + P.graft_timeout
    while not any(isinstance(a, SendIWant) for a in g.handle_timer(t)):
        t += P.graft_timeout
        assert t < 3.0 + (P.tree_patience + 1) * P.graft_timeout


def test_a_node_that_was_stalled_reads_what_arrived_before_pulling() -> None:
    g = node((A, None), (B, None))  # tree_busy 32: no burst
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 40, False, 0.0)
    g.on_ihave(B, [aid(1)], 1.0, never)
    # This node's loop was busy for 3 s: the timer is handled long after its deadline,
    # before the frames that arrived meanwhile (the parent's copy among them) are read.
    assert not [a for a in g.handle_timer(4.5) if isinstance(a, SendIWant)]
    assert g.on_alert(A, aid(1), True, 4.51) is not None  # read: no pull, no duplicate
    assert g.handle_timer(4.7) == []
    assert g.stats().awaited_ids == 0


def test_at_the_start_of_a_burst_the_parent_is_waited_for() -> None:
    g = node((A, None), (B, None))  # tree_busy 32
    g.on_tree(A, ROOT, 0, False, 0.0)  # A is the parent
    g.on_tree(B, ROOT, 40, False, 0.0)
    g.on_alert(A, aid(0), True, 0.5)  # the parent was delivering at low rates
    # B (the burst's origin, say) announces 40 alerts; the parent is still verifying the
    # first of them when their timers fire: a burst in view, so it is waited for.
    burst = [aid(100 + k) for k in range(40)]
    g.on_ihave(B, burst, 1.0, never)
    assert not [a for a in g.handle_timer(2.3) if isinstance(a, SendIWant)]
    # One id alone, at low rates, is pulled as soon as its timer fires.
    g2 = node((A, None), (B, None))
    g2.on_tree(A, ROOT, 0, False, 0.0)
    g2.on_tree(B, ROOT, 40, False, 0.0)
    g2.on_alert(A, aid(0), True, 0.5)
    g2.on_ihave(B, burst[:1], 1.0, never)
    assert SendIWant(B, (burst[0],)) in g2.handle_timer(2.3)


def test_a_burst_after_a_quiet_spell_waits_one_graft_timeout_for_the_parent() -> None:
    # The parent last brought an alert 9.5 s ago: it is not known to be busy, and a
    # burst's first IHAVEs come long before its first copies (it verifies first).
    def quiet_parent() -> Gossip:
        g = node((A, None), (B, None))  # tree_busy 32
        g.on_tree(A, ROOT, 0, False, 0.0)  # A is the parent
        g.on_tree(B, ROOT, 40, False, 0.0)
        g.on_alert(A, aid(0), True, 0.5)
        return g

    burst = [aid(100 + k) for k in range(40)]
    g = quiet_parent()
    g.on_ihave(B, burst, 10.0, never)
    first = 10.0 + (1 + P.graft_jitter) * P.graft_timeout  # every timer has fired
    assert not [a for a in g.handle_timer(first) if isinstance(a, SendIWant)]
    for id in burst:
        g.on_alert(A, id, True, first + 0.5)  # the parent's copies: no pull, no duplicate
    assert g.stats().awaited_ids == 0
    # A parent that then brings nothing is pulled from after that one timeout.
    g = quiet_parent()
    g.on_ihave(B, burst, 10.0, never)
    assert not [a for a in g.handle_timer(first) if isinstance(a, SendIWant)]
    pulls = [a for a in g.handle_timer(first + P.graft_timeout) if isinstance(a, SendIWant)]
    assert {i for a in pulls for i in a.ids} == set(burst)


def test_answers_in_a_burst_do_not_strike_the_busy_parent_out() -> None:
    g = node((A, None), (B, None), params=replace(BUSY, tree_patience=0))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 40, False, 0.0)
    ids = [aid(300 + k) for k in range(P.tree_strikes)]
    g.on_ihave(B, ids, 1.0, never)
    g.on_alert(A, aid(1), True, 2.0)  # the parent is busy (tree_busy 1)
    assert [a for a in g.handle_timer(2.3) if isinstance(a, SendIWant)]  # no patience
    for id in ids:  # a batch of answers, each a first copy the tree did not bring
        g.on_alert(B, id, True, 2.4)
    assert g.tree_position() == (ROOT, 75, A)  # T5 did not pass the busy parent over


def test_at_low_rates_a_late_id_is_pulled_at_once() -> None:
    g = node((A, None), (B, None))  # tree_busy 32: one copy in a second is no burst
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 40, False, 0.0)
    g.on_ihave(B, [aid(1)], 1.0, never)
    g.on_ihave(B, [aid(2)], 1.2, never)
    g.on_alert(A, aid(1), True, 1.9)
    assert SendIWant(B, (aid(2),)) in g.handle_timer(2.5)


def test_a_lagging_parent_is_waited_for_only_tree_patience_timeouts() -> None:
    g = node((A, None), (B, None), params=BUSY)
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 40, False, 0.0)
    olds = [aid(100 + k) for k in range(3 * P.tree_patience)]
    g.on_ihave(B, olds, 0.0, never)  # a backlog the parent works through, far behind
    g.on_ihave(B, [aid(1)], 1.0, never)
    t, fired = 1.0, 0
    for old in olds:
        t += P.graft_timeout * 1.3
        g.on_alert(A, old, True, t - 0.05)  # the parent keeps bringing alerts announced at 0
        fired += 1
        pulls = [a for a in g.handle_timer(t) if isinstance(a, SendIWant)]
        if any(aid(1) in a.ids for a in pulls):
            break
    else:
        raise AssertionError("never pulled")
    assert fired == P.tree_patience + 1  # waited tree_patience times, then pulled


def test_an_ihave_on_the_same_tree_is_pulled_once_the_tree_copy_is_overdue() -> None:
    # T10. Links measured: A 20 ms one way (cost 45 with the hop term), B 30 ms (55).
    # We sit 45 below the root through A; B sits 100 below it. An alert B has reached
    # us, if no push was lost, within B's cost plus ours less the link B's IHAVE
    # crossed: 100 + 45 - 30 = 115 ms, and 50 ms of margin. Then it is pulled.
    g = node((A, 0.040), (B, 0.060))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 100, False, 0.0)
    assert g.tree_position() == (ROOT, 45, A)
    g.on_ihave(B, [aid(1)], 1.0, never)
    assert not [a for a in g.handle_timer(1.16) if isinstance(a, SendIWant)]
    assert SendIWant(B, (aid(1),)) in g.handle_timer(1.17)
    # A push that comes in time is no pull and no duplicate.
    g.on_ihave(B, [aid(2)], 2.0, never)
    g.on_alert(A, aid(2), True, 2.1)
    assert not [a for a in g.handle_timer(3.5) if isinstance(a, SendIWant)]


def test_an_ihave_waits_graft_timeout_where_the_tree_bounds_nothing() -> None:
    # Unmeasured links (costs hold tree_unknown_ms and bound nothing), or an announcer
    # under another root: the plain graft timeout, stretched by at most graft_jitter.
    other_root = bytes([2]) * 32
    for rtts, b_root in (((None, None), ROOT), ((0.040, 0.060), other_root)):
        g = node((A, rtts[0]), (B, rtts[1]))
        g.on_tree(A, ROOT, 0, False, 0.0)
        g.on_tree(B, b_root, 100, False, 0.0)
        g.on_ihave(B, [aid(1)], 1.0, never)
        assert not [
            a for a in g.handle_timer(1.0 + 0.99 * P.graft_timeout) if isinstance(a, SendIWant)
        ]
        late = 1.0 + (1 + P.graft_jitter) * P.graft_timeout
        assert SendIWant(B, (aid(1),)) in g.handle_timer(late)


def test_a_parent_that_sends_only_duplicates_is_not_spared_and_is_passed_over() -> None:
    # Found in review: duplicates cost a parent nothing (ingest drops them before any
    # signature check). A parent resending one old alert keeps patience going, but once
    # the ids it never brings are pulled, T5 strikes it: three pulls pass it over.
    g = node((A, None), (B, None), params=replace(BUSY, tree_patience=0))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 40, False, 0.0)
    g.on_alert(A, aid(1), True, 0.1)  # held: every later copy of it is a duplicate
    ids = [aid(300 + k) for k in range(P.tree_strikes)]
    g.on_ihave(B, ids, 5.0, never)
    for k in range(40):
        g.on_alert(A, aid(1), False, 5.0 + k * 0.02)  # busy, with nothing new
    assert [a for a in g.handle_timer(6.5) if isinstance(a, SendIWant)]
    for id in ids:
        g.on_alert(B, id, True, 6.6)
    assert g.tree_position()[2] != A


def test_a_peer_claiming_cost_0_cannot_make_its_ihaves_pull_early() -> None:
    # T10 takes the announcer's cost no lower than ours less the link between us (the
    # triangle inequality). We sit 200 below the root through A; B, over a link of cost
    # 55 (30 ms one way and the hop term), says it is at cost 0 (a lie: only the root
    # is). It counts as 200 - 55 = 145, so its IHAVE waits 200 + 145 - 30 + 50 = 365 ms,
    # not the 220 ms its word would give.
    g = node((A, 0.040), (B, 0.060))
    g.on_tree(A, ROOT, 155, False, 0.0)
    g.on_tree(B, ROOT, 0, True, 0.0)  # and B says we are its parent: never ours
    assert g.tree_position() == (ROOT, 200, A)
    g.on_ihave(B, [aid(1)], 1.0, never)
    assert not [a for a in g.handle_timer(1.36) if isinstance(a, SendIWant)]
    assert SendIWant(B, (aid(1),)) in g.handle_timer(1.37)


def test_a_copy_the_parent_pushes_while_another_was_asked_is_no_strike() -> None:
    g = node((A, None), (B, None), params=replace(P, tree_strikes=1))
    g.on_tree(A, ROOT, 0, False, 0.0)
    g.on_tree(B, ROOT, 40, False, 0.0)
    g.on_ihave(B, [aid(1)], 1.0, never)
    assert SendIWant(B, (aid(1),)) in g.handle_timer(3.0)  # asked B
    g.on_alert(A, aid(1), True, 3.1)  # but the parent's push came first
    assert g.tree_position() == (ROOT, 75, A)
