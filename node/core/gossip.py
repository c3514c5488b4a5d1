"""Alert dissemination between peers: eager/lazy push (Plumtree), as a state machine.

No I/O: the runtime tells `Gossip` what happened (a session opened, a verified alert
arrived, a control message arrived, time passed) and carries out the actions it returns.
Peers and alert ids are opaque bytes. Time is the `now` passed to every call (seconds,
never decreasing); randomness comes from the `random.Random` given to the constructor.
docs/gossip.md explains the protocol and its parameters. Beside it: the links, what
each peer is sent and the remembered ids (gossip_links.py), the awaited ids, their
timers and whom to ask (gossip_awaited.py), TREE-frame admission, parent patience and
the corrections of the tree's links (gossip_guard.py: T5, T6, T8, T9), the tree router
(gossip_tree.py) and how its choices set the links (gossip_rooted.py), and the
vocabulary (gossip_types.py). This module is the rules below and the dispatch of each
event to them.

The rules
---------
Each link to a peer is *eager* (new alerts are pushed in full) or *lazy* (only their
ids are announced, in batched IHAVEs). The eager links of all nodes should form one
spanning tree, shared by every origin; the lazy links are the repair paths.

1. A new alert (published here, or first received) is pushed to every eager peer and
   announced to every lazy peer, except peers known to have it (the one it came from,
   those that announced or sent it to us). Each alert goes to each peer at most once.
2. A first copy from a lazy peer makes that link eager (it is a tree edge), unless we
   already have `max_eager` eager peers, the peer is backlogged, or we had asked it.
3. A duplicate full copy means the eager links have a cycle: the link turns lazy and we
   send PRUNE, which turns it lazy on the other side too. When many alerts are in flight
   their floods find the same cycle at different links, and pruning them all would cut
   the tree; so a duplicate prunes with probability `prune_rate / k`, where k counts
   the alerts first seen here in the last `graft_timeout`. A duplicate from a peer that
   is lazy already repeats the PRUNE, so lost PRUNEs heal. A copy we asked for (GRAFT,
   IWANT) is never held against the link.
4. An IHAVE of an id we lack starts a timer (`graft_timeout`, plus jitter) so that the
   eager copy usually wins. If it does not, we send GRAFT to the first announcer: "make
   this link eager, and send me these ids", listing every id that peer announced and we
   still await, since the same break lost them all. After `graft_retry` the next
   announcer is asked; when none is left we give up and leave it to catch-up. A
   backlogged announcer is asked with IWANT instead, which leaves the link lazy.
5. GRAFT makes the link eager (a backlogged peer gets PRUNE instead) and is answered with
   the requested alerts we still remember; IWANT is answered the same way.
6. A node keeps one eager peer at least: when the last one is pruned, goes down or is
   backlogged, a random lazy peer is grafted.
7. Backpressure: `on_peer_backlogged` demotes a slow peer to lazy (PRUNE) and keeps it
   lazy for `backlog_backoff`. A lazy peer is sent at most `ihave_max_ids` ids per
   `ihave_interval`; at most `max_queue_ids` wait, and the oldest are dropped first.
8. Memory is bounded: ids are remembered for `seen_ttl` (at most `max_seen` of them);
   ids awaited after IHAVEs are bounded by `max_missing`, and by `max_queue_ids` for
   the ids any one peer made us await; each ends when its timers run out.
9. The rooted tree (node/core/gossip_tree.py, rules T1-T7), once the runtime gives the
   core its member key: the eager links are each node's link to its parent (the peer
   one step closer to the root, the smallest key) and its children's links to it.
   Links start lazy. Over a link to a peer that sends TREE frames, rule 2 does not
   apply (the tree says which links are eager), a tree link is never pruned (rule 3
   prunes only repair links, at once, with no load damping: pruning them cannot cut
   the tree), and a PRUNE on a tree link only corrects a stale view (T6). Rule 6 does
   not apply: with no eager peer an IHAVE is asked for at once. While a node has a
   tree link, rule 4 asks with IWANT, not GRAFT: a missing alert is a lost frame, and
   a repair link would only bring a duplicate next time. A backlogged tree link is
   announced to, without a PRUNE. Announcements to a lazy peer on our root only repair
   a lost push (the tree brings it every alert), so they wait `ihave_repair_delay`, or
   until `ihave_batch_ids` are queued (gossip_links.py). Links to peers that never send
   TREE frames (older or silent) otherwise follow rules 1-8.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

from node.core.gossip_awaited import Awaited, Missing
from node.core.gossip_guard import TreeGuard
from node.core.gossip_links import Links, Remembered, Seen
from node.core.gossip_rooted import RootedLinks
from node.core.gossip_tree import Advert
from node.core.gossip_types import (
    Action,
    GossipParams,
    GossipStats,
    PeerStats,
    SendAlerts,
    SendGraft,
    SendIHave,
    SendIWant,
    SendPrune,
    SendTree,
)

__all__ = [  # with what gossip_types defines: callers import it all from here
    "Action",
    "Gossip",
    "GossipParams",
    "GossipStats",
    "PeerStats",
    "SendAlerts",
    "SendGraft",
    "SendIHave",
    "SendIWant",
    "SendPrune",
    "SendTree",
]


class Gossip:
    """The dissemination state of one node: its links, what it has seen, what it awaits."""

    def __init__(self, params: GossipParams, rng: random.Random) -> None:
        self.params = params
        self._rng = rng
        self._links = Links(params)
        self._peers = self._links.peers
        self._memory = Remembered(params)  # rule 8
        self._seen = self._memory.ids
        self._awaited = Awaited(params, self._links)
        self._missing = self._awaited.entries
        self._guard = TreeGuard(params)  # T8
        self._recent = self._memory.recent  # when alerts were first seen: rule 3's k
        self._tree: RootedLinks | None = None  # rule 9 (gossip_rooted.py)

    def set_key(self, key: bytes) -> None:
        """This node's member key: it turns on the rooted tree (rule 9) unless
        `params.tree` is False. Call it before the first session."""
        if self.params.tree and self._tree is None:
            self._tree = RootedLinks(key, self.params, self._links)

    def set_priority(self, priority: Callable[[bytes], int]) -> None:
        """`priority(key)`: a member's tree priority, from the roster (T1: the root is
        the reachable member with the highest, then the smallest key)."""
        if self._tree is not None:
            self._tree.set_priority(priority)

    def set_members(self, members: Callable[[bytes], bool]) -> None:
        """`members(key)`: whether a key is a member's; a TREE frame naming a root that
        is not is refused (T8). Without it any 32-byte root may be one."""
        self._guard.members = members

    # -- sessions ---------------------------------------------------------------------

    def peer_up(self, peer: bytes, now: float, rtt: float | None = None) -> list[Action]:
        """A gossip session with `peer` opened. It starts eager while we have room; with
        the rooted tree it starts lazy, and the peer's TREE frames say whether it is a
        tree link (a peer that never sends one, being silent or older, gets IHAVEs and
        may GRAFT). `rtt`: the session's measured round trip in seconds, if the runtime
        has it (the tree's link cost)."""
        self._memory.expire(now)
        if peer in self._peers:
            return []
        room = self._tree is None and self._links.eager_count() < self.params.max_eager
        self._links.add(peer, eager=room)
        actions: list[Action] = []
        if self._tree is not None:
            self._tree.peer_up(peer, rtt, now, actions)
        return actions

    def peer_down(self, peer: bytes, now: float) -> list[Action]:
        """The session closed: forget the peer, and ask others for what it owed us."""
        self._memory.expire(now)
        state = self._links.remove(peer, self._seen.values())
        if state is None:
            return []
        self._guard.forget(peer)
        actions: list[Action] = []
        if self._tree is not None:
            self._tree.peer_down(peer, now, actions)
        self._awaited.peer_gone(peer, now)
        if state.eager:
            self._keep_one_eager(now, actions)
        self._fire_missing(now, actions)
        return actions

    def on_peer_backlogged(self, peer: bytes, now: float) -> list[Action]:
        """The runtime's send queue to `peer` is too long: push nothing more to it."""
        self._memory.expire(now)
        state = self._peers.get(peer)
        if state is None:
            return []
        state.backlogged_until = now + self.params.backlog_backoff
        actions: list[Action] = []
        if state.tree:
            state.eager = False  # announce to it for a while; the link stays a tree link
        elif state.eager:
            self._links.demote(peer, state, actions)
            self._keep_one_eager(now, actions, exclude=peer)
        return actions

    # -- alerts -----------------------------------------------------------------------

    def publish(self, id: bytes, now: float) -> list[Action]:
        """A local alert was stored: push it to eager peers, announce it to lazy ones."""
        self._memory.expire(now)
        if id in self._seen:
            return []
        self._awaited.drop(id)
        self._recent.append(now)
        actions: list[Action] = []
        self._links.forward(id, self._memory.remember(id, now, 0), now, actions)
        return actions

    def publish_many(self, ids: Sequence[bytes], now: float) -> list[Action]:
        """publish() of each id in turn, with the same actions and state, in one call: a
        batch committed here costs one expiry pass, not two per id (~0.7 µs an id)."""
        if not ids:
            return []  # publish() was not called: not even its expiry pass
        fresh = self._memory.remember_new(ids, now)
        if fresh is None:
            return [a for i in ids for a in self.publish(i, now)]
        actions: list[Action] = []
        drop, forward = self._awaited.drop, self._links.forward
        for id, seen in fresh:
            drop(id)
            forward(id, seen, now, actions)
        return actions

    def on_alert(self, peer: bytes, id: bytes, is_new: bool, now: float) -> list[Action]:
        """A full copy from `peer` passed verification; `is_new` is False for a duplicate.

        An id this core still remembers counts as a duplicate, whatever `is_new` says.
        """
        self._memory.expire(now)
        state = self._peers.get(peer)
        if state is not None:
            state.alerts_received += 1
        seen = self._seen.get(id)
        actions: list[Action] = []
        if seen is None and is_new:
            seen, missing, asked = self._first_seen(peer, id, now)
            self._recent.append(now)
            if self._tree is not None:  # T5, T9
                awaited = self._awaited.announced_by(missing.creator if missing else None)
                bit = self._links.bits((peer,))
                self._tree.first_copy(peer, asked, bit, awaited, now, actions)
            if (
                state is not None
                and state.tree is None
                and not state.eager
                and not asked & state.bit
                and not state.backlogged(now)
                and self._links.eager_count() < self.params.max_eager
            ):
                state.eager = True  # the copy came down a tree edge
            self._links.forward(id, seen, now, actions)
            return actions

        self._awaited.drop(id)  # we hold it, however it got here
        if state is None:
            return actions
        state.duplicates_received += 1
        if self._tree is not None:
            self._tree.corrections.duplicate(peer, now)  # T9
        if seen is not None:
            seen.known |= state.bit
            if seen.asked & state.bit:
                return actions  # a late answer to our own request
        if state.tree:
            return actions  # rule 9: a tree link stays
        tree = self._tree  # T6: a duplicate told already is one of its pushes in flight
        if (
            state.tree is False
            and tree is not None
            and tree.told_already(peer, state, now, actions)
        ):
            return actions
        if (
            state.tree is None
            and state.eager
            and self._rng.random() * len(self._recent) >= self.params.prune_rate
        ):
            return actions  # rule 3: leave this cycle to a later duplicate
        self._links.demote(peer, state, actions)
        self._keep_one_eager(now, actions, exclude=peer)
        return actions

    def forward_caught_up(self, peer: bytes, id: bytes, now: float) -> list[Action]:
        """A recent alert new to this node came from `peer` by catch-up, not gossip.

        It is forwarded like a first copy (eager peers get it, lazy peers an IHAVE), so
        the subtree below this node does not wait for its own catch-up round; the link
        it came by is not promoted, since it is not a tree edge.
        """
        self._memory.expire(now)
        if id in self._seen:
            return []
        seen = self._first_seen(peer, id, now)[0]
        actions: list[Action] = []
        self._links.forward(id, seen, now, actions)
        return actions

    def on_caught_up(self, ids: Iterable[bytes], now: float) -> None:
        """These alerts reached the store another way (catch-up): stop awaiting them.

        They are remembered, so requests for them are served, but they are not gossiped.
        """
        self._memory.expire(now)
        for id in ids:
            self._awaited.drop(id)
            if id not in self._seen:
                self._memory.remember(id, now, 0)

    # -- control messages -------------------------------------------------------------

    def on_ihave(
        self, peer: bytes, ids: Sequence[bytes], now: float, have: Callable[[bytes], bool]
    ) -> list[Action]:
        """`peer` announced alerts. `have(id)` tells whether the store holds one already.

        Ids past `ihave_max_ids` in one announcement are ignored.
        """
        self._memory.expire(now)
        state = self._peers.get(peer)
        if state is None:
            return []
        ids = ids[: self.params.ihave_max_ids]
        state.ihave_ids_received += len(ids)
        if self._links.eager_count() == 0:
            delay = 0.0  # nothing will be pushed to us: no point waiting
        else:
            stretch = 1.0 + self.params.graft_jitter * self._rng.random()
            delay = self.params.graft_timeout * stretch
            if self._tree is not None:
                delay = self._tree.router.pull_delay(peer, delay)  # T10
        self._awaited.announced(peer, state, ids, self._seen, have, now + delay)
        actions: list[Action] = []
        self._fire_missing(now, actions)
        return actions

    def on_iwant(self, peer: bytes, ids: Sequence[bytes], now: float) -> list[Action]:
        """`peer` asked for alerts: send those we still remember."""
        self._memory.expire(now)
        state = self._peers.get(peer)
        if state is None:
            return []
        actions: list[Action] = []
        self._links.serve(peer, state, ids, self._seen, actions)
        return actions

    def on_graft(self, peer: bytes, ids: Sequence[bytes], now: float) -> list[Action]:
        """`peer` wants the link eager, and these alerts (maybe none)."""
        self._memory.expire(now)
        state = self._peers.get(peer)
        if state is None:
            return []
        state.grafts_received += 1
        actions: list[Action] = []
        if state.backlogged(now):
            self._links.demote(peer, state, actions)
        else:
            state.eager = True
        self._links.serve(peer, state, ids, self._seen, actions)
        return actions

    def on_prune(self, peer: bytes, now: float) -> list[Action]:
        """`peer` got a duplicate from us: the link is lazy from now on."""
        self._memory.expire(now)
        state = self._peers.get(peer)
        if state is None:
            return []
        state.prunes_received += 1
        actions: list[Action] = []
        if state.tree and self._tree is not None:
            self._tree.stale_prune(peer, state, now, actions)  # only a stale view does (T6)
        if state.eager and not state.tree:
            state.eager = False
            self._keep_one_eager(now, actions, exclude=peer)
        return actions

    def on_tree(
        self, peer: bytes, root: bytes, cost: int, parent: bool, now: float
    ) -> list[Action]:
        """`peer` says where it sits in the tree: its root, its cost to it, and whether
        we are its parent (rule 9). Ignored when the tree is off.

        T8 (node/core/gossip_guard.py): a position that cannot be one, or one over the
        peer's rate, is ignored and counted (`tree_refused`)."""
        self._memory.expire(now)
        state = self._peers.get(peer)
        if self._tree is None or state is None:
            return []
        if not self._guard.admit(peer, root, cost, now):
            return []
        actions: list[Action] = []
        self._tree.heard(peer, Advert(root, cost, parent), now, actions)
        return actions

    # -- time -------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `handle_timer` should next be called; None if nothing is pending."""
        due = self._awaited.next_deadline()
        deadlines = [due] if due is not None else []
        if self._links.flush_at is not None:
            deadlines.append(self._links.flush_at)
        held = self._tree.router.next_deadline() if self._tree is not None else None
        if held is not None:
            deadlines.append(held)
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> list[Action]:
        """Send due announcements, and ask for alerts that did not arrive in time."""
        self._memory.expire(now)
        actions: list[Action] = []
        if self._links.flush_at is not None and now >= self._links.flush_at:
            self._links.flush(now, self._seen, actions)
        if self._tree is not None:
            self._tree.handle_timer(now, actions)
        self._fire_missing(now, actions)
        return actions

    # -- inspection -------------------------------------------------------------------

    def eager_peers(self) -> frozenset[bytes]:
        return frozenset(p for p, s in self._peers.items() if s.eager)

    def lazy_peers(self) -> frozenset[bytes]:
        return frozenset(p for p, s in self._peers.items() if not s.eager)

    def tree_position(self) -> tuple[bytes, int, bytes | None] | None:
        """(root, cost, parent) in the rooted tree; None when the tree is off."""
        return None if self._tree is None else self._tree.position()

    def peer_stats(self, peer: bytes, now: float) -> PeerStats | None:
        s = self._peers.get(peer)
        return None if s is None else s.stats(now, self._guard.refused_from(peer))

    def stats(self) -> GossipStats:
        return GossipStats(
            peers=len(self._peers),
            eager_peers=self._links.eager_count(),
            remembered_ids=len(self._seen),
            awaited_ids=len(self._missing),
            queued_announcements=sum(len(s.pending) for s in self._peers.values()),
            awaited_dropped=self._awaited.dropped,
            awaited_abandoned=self._awaited.abandoned,
            tree_refused=self._guard.refused,
        )

    # -- internals --------------------------------------------------------------------

    def _first_seen(self, peer: bytes, id: bytes, now: float) -> tuple[Seen, Missing | None, int]:
        """Remember a first copy from `peer`: no longer awaited; known to whoever sent or
        announced it. Returns its entry, what awaited it, and the bits of those we asked."""
        missing = self._awaited.drop(id)
        asked = self._links.bits(missing.asked) if missing is not None else 0
        seen = self._memory.remember(id, now, asked)
        seen.known |= self._links.bits((peer,))
        if missing is not None:  # whoever announced it has it
            seen.known |= self._links.bits(missing.announcers) | asked
        return seen, missing, asked

    def _keep_one_eager(
        self, now: float, actions: list[Action], exclude: bytes | None = None
    ) -> None:
        if self._links.eager_count() > 0:
            return
        if self._tree is not None:
            return  # rule 9: the tree links this node in; IHAVEs are asked for at once
        candidates = [p for p, s in self._peers.items() if p != exclude and not s.backlogged(now)]
        if candidates:
            peer = self._rng.choice(candidates)
            state = self._peers[peer]
            state.eager = True
            state.grafts_sent += 1
            actions.append(SendGraft(peer))

    def _fire_missing(self, now: float, actions: list[Action]) -> None:
        t = self._tree
        in_tree = t is not None and any(s.tree for s in self._peers.values())
        self._awaited.fire(
            now, t.corrections.patience if t is not None and in_tree else None, actions
        )
