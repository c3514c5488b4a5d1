"""Alert dissemination between peers: eager/lazy push (Plumtree), as a state machine.

No I/O: the runtime tells `Gossip` what happened (a session opened, a verified alert
arrived, a control message arrived, time passed) and carries out the actions it returns.
Peers and alert ids are opaque bytes. Time is the `now` passed to every call (seconds,
never decreasing); randomness comes from the `random.Random` given to the constructor.
docs/gossip.md explains the protocol and its parameters.

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
   announced to, without a PRUNE. Links to peers that never send TREE frames (older
   or silent) otherwise follow rules 1-8.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from node.core.gossip_tree import Advert, TreeRouter
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


ROOT_BYTES = 32  # a TREE frame's root is a member's Ed25519 key


@dataclass(slots=True)
class _Peer:
    eager: bool
    tree: bool | None = None  # a tree link (rule 9)? None: the peer sent no TREE frame yet
    bit: int = 0  # this peer's bit in _Seen.known / _Seen.asked
    backlogged_until: float = -math.inf
    pending: deque[bytes] = field(default_factory=deque)  # ids to announce
    awaited: int = 0  # live _Missing entries this peer created
    alerts_received: int = 0
    duplicates_received: int = 0
    alerts_sent: int = 0
    ihave_ids_received: int = 0
    ihave_ids_sent: int = 0
    ihave_ids_dropped: int = 0
    prunes_sent: int = 0
    prunes_received: int = 0
    grafts_sent: int = 0
    grafts_received: int = 0
    tree_tokens: float = -1.0  # T8: TREE frames this peer may still send now (-1: full)
    tree_stamp: float = 0.0  # when tree_tokens was last refilled
    tree_refused: int = 0  # TREE frames ignored: malformed, or over the rate


@dataclass(slots=True)
class _Seen:
    # Peer sets as bitmasks of _Peer.bit: a node remembers up to max_seen ids, and two
    # Python sets per id cost ~600 bytes where an int of a few peers' bits costs none
    # (CPython shares the small ones).
    expires: float
    known: int  # peers that have it, or that we pushed or announced it to
    asked: int  # peers we asked for it: their copy is an answer, not a push


@dataclass(slots=True)
class _Missing:
    creator: bytes | None  # the peer whose `awaited` count this entry uses
    announcers: deque[bytes]  # not asked yet, in the order they announced
    asked: list[bytes]
    timer: int  # sequence number of this entry's live timer
    since: float = 0.0  # when it was first announced
    waited: int = 0  # T9: timers re-armed because the parent was still catching up


class Gossip:
    """The dissemination state of one node: its links, what it has seen, what it awaits."""

    def __init__(self, params: GossipParams, rng: random.Random) -> None:
        self.params = params
        self._rng = rng
        self._peers: dict[bytes, _Peer] = {}
        self._seen: OrderedDict[bytes, _Seen] = OrderedDict()  # oldest first
        self._missing: dict[bytes, _Missing] = {}
        # T9: the times of the tree parent's last `tree_busy` first copies (T9 applies
        # only in a burst), and how long after its first announcement to us the last of
        # them came (0 if nobody had announced it yet).
        self._parent_fed: deque[float] = deque(maxlen=params.tree_busy)
        self._parent_lag = 0.0
        self._timers: list[tuple[float, int, bytes]] = []  # (deadline, seq, id); stale kept
        self._seq = 0
        self._flush_at: float | None = None
        self._recent: deque[float] = deque(maxlen=100_000)  # when alerts were first seen
        self._awaited_dropped = 0
        self._awaited_abandoned = 0
        self._free_bits: list[int] = []  # bits of peers gone, for reuse
        self._next_bit = 1
        self._tree: TreeRouter | None = None

    def set_key(self, key: bytes) -> None:
        """This node's member key: it turns on the rooted tree (rule 9) unless
        `params.tree` is False. Call it before the first session."""
        if self.params.tree and self._tree is None:
            self._tree = TreeRouter(key, self.params)

    # -- sessions ---------------------------------------------------------------------

    def peer_up(self, peer: bytes, now: float, rtt: float | None = None) -> list[Action]:
        """A gossip session with `peer` opened. It starts eager while we have room; with
        the rooted tree it starts lazy, and the peer's TREE frames say whether it is a
        tree link (a peer that never sends one, being silent or older, gets IHAVEs and
        may GRAFT). `rtt`: the session's measured round trip in seconds, if the runtime
        has it (the tree's link cost)."""
        self._expire(now)
        if peer in self._peers:
            return []
        bit = self._free_bits.pop() if self._free_bits else self._next_bit
        if bit == self._next_bit:
            self._next_bit <<= 1
        room = self._tree is None and self._eager_count() < self.params.max_eager
        self._peers[peer] = _Peer(eager=room, bit=bit)
        actions: list[Action] = []
        if self._tree is not None:
            self._tree.add(peer, rtt)
            self._tree_sync(now, actions)
        return actions

    def peer_down(self, peer: bytes, now: float) -> list[Action]:
        """The session closed: forget the peer, and ask others for what it owed us."""
        self._expire(now)
        state = self._peers.pop(peer, None)
        if state is None:
            return []
        keep = ~state.bit
        for seen in self._seen.values():
            seen.known &= keep
            seen.asked &= keep
        self._free_bits.append(state.bit)
        actions: list[Action] = []
        if self._tree is not None:
            self._tree.remove(peer)
            self._tree_sync(now, actions)
        for id, missing in self._missing.items():
            if peer in missing.announcers:
                missing.announcers.remove(peer)
            if missing.creator == peer:
                missing.creator = None
            if missing.asked and missing.asked[-1] == peer:
                self._schedule(id, missing, now)  # no use waiting for its answer
        if state.eager:
            self._keep_one_eager(now, actions)
        self._fire_missing(now, actions)
        return actions

    def on_peer_backlogged(self, peer: bytes, now: float) -> list[Action]:
        """The runtime's send queue to `peer` is too long: push nothing more to it."""
        self._expire(now)
        state = self._peers.get(peer)
        if state is None:
            return []
        state.backlogged_until = now + self.params.backlog_backoff
        actions: list[Action] = []
        if state.tree:
            state.eager = False  # announce to it for a while; the link stays a tree link
        elif state.eager:
            self._demote(peer, state, actions)
            self._keep_one_eager(now, actions, exclude=peer)
        return actions

    # -- alerts -----------------------------------------------------------------------

    def publish(self, id: bytes, now: float) -> list[Action]:
        """A local alert was stored: push it to eager peers, announce it to lazy ones."""
        self._expire(now)
        if id in self._seen:
            return []
        self._drop_missing(id)
        self._recent.append(now)
        actions: list[Action] = []
        self._forward(id, self._remember(id, now, 0), now, actions)
        return actions

    def on_alert(self, peer: bytes, id: bytes, is_new: bool, now: float) -> list[Action]:
        """A full copy from `peer` passed verification; `is_new` is False for a duplicate.

        An id this core still remembers counts as a duplicate, whatever `is_new` says.
        """
        self._expire(now)
        state = self._peers.get(peer)
        if state is not None:
            state.alerts_received += 1
        seen = self._seen.get(id)
        actions: list[Action] = []
        if seen is None and is_new:
            missing = self._drop_missing(id)
            asked = self._bits(missing.asked) if missing is not None else 0
            seen = self._remember(id, now, asked)
            seen.known |= self._bits((peer,))
            if missing is not None:  # whoever announced it has it
                seen.known |= self._bits(missing.announcers) | asked
            self._recent.append(now)
            if self._tree is not None:
                if peer == self._tree.parent:
                    # T9: how far behind the parent is: a copy it brings before anyone
                    # announced it is on time; one announced earlier is that late.
                    self._parent_lag = now - missing.since if missing is not None else 0.0
                    self._parent_fed.append(now)
                if not asked:
                    self._tree.delivered(peer)
                elif self._tree.strike(now):  # T5: the tree did not bring it, a request did
                    self._tree_sync(now, actions)
            if (
                state is not None
                and state.tree is None
                and not state.eager
                and not asked & state.bit
                and not self._backlogged(state, now)
                and self._eager_count() < self.params.max_eager
            ):
                state.eager = True  # the copy came down a tree edge
            self._forward(id, seen, now, actions)
            return actions

        self._drop_missing(id)  # we hold it, however it got here
        if state is None:
            return actions
        state.duplicates_received += 1
        if seen is not None:
            seen.known |= state.bit
            if seen.asked & state.bit:
                return actions  # a late answer to our own request
        if state.tree:
            return actions  # rule 9: a tree link stays
        if state.tree is False and self._tree is not None and not state.eager:
            self._tree.resend(peer)  # T6: it pushes over a link we hold lazy
            self._tree_sync(now, actions)
        if (
            state.tree is None
            and state.eager
            and self._rng.random() * len(self._recent) >= self.params.prune_rate
        ):
            return actions  # rule 3: leave this cycle to a later duplicate
        self._demote(peer, state, actions)
        self._keep_one_eager(now, actions, exclude=peer)
        return actions

    def forward_caught_up(self, peer: bytes, id: bytes, now: float) -> list[Action]:
        """A recent alert new to this node came from `peer` by catch-up, not gossip.

        It is forwarded like a first copy (eager peers get it, lazy peers an IHAVE), so
        the subtree below this node does not wait for its own catch-up round; the link
        it came by is not promoted, since it is not a tree edge.
        """
        self._expire(now)
        if id in self._seen:
            return []
        missing = self._drop_missing(id)
        asked = self._bits(missing.asked) if missing is not None else 0
        seen = self._remember(id, now, asked)
        seen.known |= self._bits((peer,))
        if missing is not None:
            seen.known |= self._bits(missing.announcers) | asked
        actions: list[Action] = []
        self._forward(id, seen, now, actions)
        return actions

    def on_caught_up(self, ids: Iterable[bytes], now: float) -> None:
        """These alerts reached the store another way (catch-up): stop awaiting them.

        They are remembered, so requests for them are served, but they are not gossiped.
        """
        self._expire(now)
        for id in ids:
            self._drop_missing(id)
            if id not in self._seen:
                self._remember(id, now, 0)

    # -- control messages -------------------------------------------------------------

    def on_ihave(
        self, peer: bytes, ids: Sequence[bytes], now: float, have: Callable[[bytes], bool]
    ) -> list[Action]:
        """`peer` announced alerts. `have(id)` tells whether the store holds one already.

        Ids past `ihave_max_ids` in one announcement are ignored.
        """
        self._expire(now)
        state = self._peers.get(peer)
        if state is None:
            return []
        ids = ids[: self.params.ihave_max_ids]
        state.ihave_ids_received += len(ids)
        if self._eager_count() == 0:
            delay = 0.0  # nothing will be pushed to us: no point waiting
        else:
            stretch = 1.0 + self.params.graft_jitter * self._rng.random()
            delay = self.params.graft_timeout * stretch
            if self._tree is not None:
                delay = self._tree.pull_delay(peer, delay)  # T10
        for id in ids:
            seen = self._seen.get(id)
            if seen is not None:
                seen.known |= state.bit
                continue
            missing = self._missing.get(id)
            if missing is not None:
                if peer not in missing.announcers and peer not in missing.asked:
                    missing.announcers.append(peer)
                continue
            if have(id):
                continue
            if (
                len(self._missing) >= self.params.max_missing
                or state.awaited >= self.params.max_queue_ids
            ):
                self._awaited_dropped += 1
                continue
            missing = _Missing(creator=peer, announcers=deque([peer]), asked=[], timer=0, since=now)
            self._missing[id] = missing
            state.awaited += 1
            self._schedule(id, missing, now + delay)
        actions: list[Action] = []
        self._fire_missing(now, actions)
        return actions

    def on_iwant(self, peer: bytes, ids: Sequence[bytes], now: float) -> list[Action]:
        """`peer` asked for alerts: send those we still remember."""
        self._expire(now)
        state = self._peers.get(peer)
        if state is None:
            return []
        actions: list[Action] = []
        self._serve(peer, state, ids, actions)
        return actions

    def on_graft(self, peer: bytes, ids: Sequence[bytes], now: float) -> list[Action]:
        """`peer` wants the link eager, and these alerts (maybe none)."""
        self._expire(now)
        state = self._peers.get(peer)
        if state is None:
            return []
        state.grafts_received += 1
        actions: list[Action] = []
        if self._backlogged(state, now):
            self._demote(peer, state, actions)
        else:
            state.eager = True
        self._serve(peer, state, ids, actions)
        return actions

    def on_prune(self, peer: bytes, now: float) -> list[Action]:
        """`peer` got a duplicate from us: the link is lazy from now on."""
        self._expire(now)
        state = self._peers.get(peer)
        if state is None:
            return []
        state.prunes_received += 1
        actions: list[Action] = []
        if state.tree and self._tree is not None:
            # Only a stale view prunes a tree link (T6): tell the peer where we stand.
            self._tree.resend(peer)
            self._tree_sync(now, actions)
        if state.eager and not state.tree:
            state.eager = False
            self._keep_one_eager(now, actions, exclude=peer)
        return actions

    def on_tree(
        self, peer: bytes, root: bytes, cost: int, parent: bool, now: float
    ) -> list[Action]:
        """`peer` says where it sits in the tree: its root, its cost to it, and whether
        we are its parent (rule 9). Ignored when the tree is off.

        T8: a position that cannot be one (a root that is not a 32-byte key, a cost
        outside 0 .. tree_max_cost) or one more than `tree_burst` frames, refilled at
        `tree_rate` a second, is ignored and counted (`tree_refused`): a lying or
        flapping peer cannot make this node re-advertise without bound. Whether the
        root is a member is the runtime's check (it holds the roster)."""
        self._expire(now)
        state = self._peers.get(peer)
        if self._tree is None or state is None:
            return []
        if len(root) != ROOT_BYTES or not 0 <= cost < self.params.tree_max_cost:
            state.tree_refused += 1
            return []
        p = self.params
        tokens = p.tree_burst if state.tree_tokens < 0 else state.tree_tokens
        tokens = min(p.tree_burst, tokens + (now - state.tree_stamp) * p.tree_rate)
        state.tree_stamp = now
        if tokens < 1:
            state.tree_tokens = tokens
            state.tree_refused += 1
            return []
        state.tree_tokens = tokens - 1
        self._tree.heard(peer, Advert(root, cost, parent))
        actions: list[Action] = []
        self._tree_sync(now, actions)
        return actions

    # -- time -------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `handle_timer` should next be called; None if nothing is pending."""
        while self._timers and self._stale(self._timers[0]):
            heapq.heappop(self._timers)
        deadlines = [self._timers[0][0]] if self._timers else []
        if self._flush_at is not None:
            deadlines.append(self._flush_at)
        held = self._tree.next_deadline() if self._tree is not None else None
        if held is not None:
            deadlines.append(held)
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> list[Action]:
        """Send due announcements, and ask for alerts that did not arrive in time."""
        self._expire(now)
        actions: list[Action] = []
        if self._flush_at is not None and now >= self._flush_at:
            self._flush(now, actions)
        if self._tree is not None and self._tree.handle_timer(now):
            self._tree_sync(now, actions)
        self._fire_missing(now, actions)
        return actions

    # -- inspection -------------------------------------------------------------------

    def eager_peers(self) -> frozenset[bytes]:
        return frozenset(p for p, s in self._peers.items() if s.eager)

    def lazy_peers(self) -> frozenset[bytes]:
        return frozenset(p for p, s in self._peers.items() if not s.eager)

    def tree_position(self) -> tuple[bytes, int, bytes | None] | None:
        """(root, cost, parent) in the rooted tree; None when the tree is off."""
        t = self._tree
        return None if t is None else (t.root, t.cost, t.parent)

    def peer_stats(self, peer: bytes, now: float) -> PeerStats | None:
        s = self._peers.get(peer)
        if s is None:
            return None
        return PeerStats(
            eager=s.eager,
            backlogged=self._backlogged(s, now),
            alerts_received=s.alerts_received,
            duplicates_received=s.duplicates_received,
            alerts_sent=s.alerts_sent,
            ihave_ids_received=s.ihave_ids_received,
            ihave_ids_sent=s.ihave_ids_sent,
            ihave_ids_dropped=s.ihave_ids_dropped,
            prunes_sent=s.prunes_sent,
            prunes_received=s.prunes_received,
            grafts_sent=s.grafts_sent,
            grafts_received=s.grafts_received,
            tree_refused=s.tree_refused,
        )

    def stats(self) -> GossipStats:
        return GossipStats(
            peers=len(self._peers),
            eager_peers=self._eager_count(),
            remembered_ids=len(self._seen),
            awaited_ids=len(self._missing),
            queued_announcements=sum(len(s.pending) for s in self._peers.values()),
            awaited_dropped=self._awaited_dropped,
            awaited_abandoned=self._awaited_abandoned,
        )

    # -- internals --------------------------------------------------------------------

    def _eager_count(self) -> int:
        return sum(1 for s in self._peers.values() if s.eager)

    @staticmethod
    def _backlogged(state: _Peer, now: float) -> bool:
        return now < state.backlogged_until

    def _bits(self, peers: Iterable[bytes]) -> int:
        """The bitmask of `peers`; peers without a session have no bit."""
        mask = 0
        for peer in peers:
            state = self._peers.get(peer)
            if state is not None:
                mask |= state.bit
        return mask

    def _remember(self, id: bytes, now: float, asked: int) -> _Seen:
        seen = _Seen(expires=now + self.params.seen_ttl, known=0, asked=asked)
        self._seen[id] = seen
        self._expire(now)
        return seen

    def _expire(self, now: float) -> None:
        # Insertion order is expiry order, because `now` never decreases.
        seen = self._seen
        while seen and (
            len(seen) > self.params.max_seen or next(iter(seen.values())).expires <= now
        ):
            seen.popitem(last=False)
        recent = self._recent
        while recent and recent[0] <= now - self.params.graft_timeout:
            recent.popleft()

    def _forward(self, id: bytes, seen: _Seen, now: float, actions: list[Action]) -> None:
        for peer, state in self._peers.items():
            if seen.known & state.bit:
                continue
            seen.known |= state.bit
            if state.tree and not state.eager and not self._backlogged(state, now):
                state.eager = True  # a tree link whose backlog has passed
            if state.eager:
                state.alerts_sent += 1
                actions.append(SendAlerts(peer, (id,)))
                continue
            if len(state.pending) >= self.params.max_queue_ids:
                state.pending.popleft()
                state.ihave_ids_dropped += 1
            state.pending.append(id)
            if self._flush_at is None:
                self._flush_at = now + self.params.ihave_interval

    def _flush(self, now: float, actions: list[Action]) -> None:
        more = False
        for peer, state in self._peers.items():
            batch: list[bytes] = []
            while state.pending and len(batch) < self.params.ihave_max_ids:
                id = state.pending.popleft()
                if id in self._seen:  # a forgotten id is left to catch-up
                    batch.append(id)
            if batch:
                state.ihave_ids_sent += len(batch)
                actions.append(SendIHave(peer, tuple(batch)))
            more = more or bool(state.pending)
        self._flush_at = now + self.params.ihave_interval if more else None

    def _serve(
        self, peer: bytes, state: _Peer, ids: Sequence[bytes], actions: list[Action]
    ) -> None:
        found: dict[bytes, None] = {}
        for id in ids[: self.params.ihave_max_ids]:
            seen = self._seen.get(id)
            if seen is not None:
                seen.known |= state.bit
                found[id] = None
        if found:
            state.alerts_sent += len(found)
            actions.append(SendAlerts(peer, tuple(found)))

    def _demote(self, peer: bytes, state: _Peer, actions: list[Action]) -> None:
        # Sent even if the link is lazy here already: the peer evidently missed a PRUNE.
        state.eager = False
        state.prunes_sent += 1
        actions.append(SendPrune(peer))

    def _keep_one_eager(
        self, now: float, actions: list[Action], exclude: bytes | None = None
    ) -> None:
        if self._eager_count() > 0:
            return
        if self._tree is not None:
            return  # rule 9: the tree links this node in; IHAVEs are asked for at once
        candidates = [
            p for p, s in self._peers.items() if p != exclude and not self._backlogged(s, now)
        ]
        if candidates:
            peer = self._rng.choice(candidates)
            state = self._peers[peer]
            state.eager = True
            state.grafts_sent += 1
            actions.append(SendGraft(peer))

    def _schedule(self, id: bytes, missing: _Missing, deadline: float) -> None:
        self._seq += 1
        missing.timer = self._seq
        heapq.heappush(self._timers, (deadline, self._seq, id))
        if len(self._timers) > 2 * len(self._missing) + 64:  # drop stale timers
            self._timers = [t for t in self._timers if not self._stale(t)]
            heapq.heapify(self._timers)

    def _stale(self, timer: tuple[float, int, bytes]) -> bool:
        missing = self._missing.get(timer[2])
        return missing is None or missing.timer != timer[1]

    def _drop_missing(self, id: bytes) -> _Missing | None:
        missing = self._missing.pop(id, None)
        if missing is not None and missing.creator is not None:
            creator = self._peers.get(missing.creator)
            if creator is not None:
                creator.awaited -= 1
        return missing

    def _fire_missing(self, now: float, actions: list[Action]) -> None:
        grafts: dict[bytes, list[bytes]] = {}
        iwants: dict[bytes, list[bytes]] = {}
        # Rule 9: on the rooted tree a missing alert is a lost frame, not a missing link
        # (TREE frames mend links): pull it (IWANT) and leave the links as they are.
        in_tree = self._tree is not None and any(s.tree for s in self._peers.values())
        while self._timers and self._timers[0][0] <= now:
            timer = heapq.heappop(self._timers)
            if self._stale(timer):
                continue
            id = timer[2]
            missing = self._missing[id]
            if in_tree and self._parent_behind(missing, now):
                missing.waited += 1
                self._schedule(id, missing, now + self.params.graft_timeout)
                continue
            while missing.announcers and missing.announcers[0] not in self._peers:
                missing.announcers.popleft()
            if not missing.announcers:
                self._drop_missing(id)
                self._awaited_abandoned += 1
                continue
            target = missing.announcers.popleft()
            missing.asked.append(target)
            self._schedule(id, missing, now + self.params.graft_retry)
            pull = in_tree or self._backlogged(self._peers[target], now)
            (iwants if pull else grafts).setdefault(target, []).append(id)
        if grafts:
            self._add_awaited_from(grafts, now)
        step = self.params.ihave_max_ids
        for peer, ids in grafts.items():
            state = self._peers[peer]
            state.eager = True
            for i in range(0, len(ids), step):
                state.grafts_sent += 1
                actions.append(SendGraft(peer, tuple(ids[i : i + step])))
        for peer, ids in iwants.items():
            for i in range(0, len(ids), step):
                actions.append(SendIWant(peer, tuple(ids[i : i + step])))

    def _parent_behind(self, missing: _Missing, now: float) -> bool:
        """T9: the parent brought a copy within the last graft timeout, and that copy came
        about as long after its announcement as this one has waited so far (within
        `graft_retry`): the parent is working through a backlog in order (a burst it
        verifies and stores before passing on), and will bring this one too (only while
        it brought at least `tree_busy` copies in the last graft timeout). Pulling it
        from an announcer now would only make a duplicate. Waited for at most
        `tree_patience` timeouts; an id waiting clearly longer than the parent's copies
        lag (lost on the way) is pulled at once."""
        p = self.params
        if missing.asked or missing.waited >= p.tree_patience:
            return False
        fed = self._parent_fed
        if len(fed) < p.tree_busy or fed[0] < now - p.graft_timeout:
            return False  # not a burst: at low rates a late id is a lost one
        # The newest copy is at least as recent as fed[0]: the parent is delivering.
        return now - missing.since < self._parent_lag + p.graft_retry

    def _add_awaited_from(self, requests: dict[bytes, list[bytes]], now: float) -> None:
        # A GRAFT means the tree did not bring what this peer announced: whatever else it
        # announced that we still await was lost the same way, so ask for it at once.
        for id, missing in self._missing.items():
            if missing.asked and missing.asked[-1] in requests:
                continue  # asked just now
            for peer, ids in requests.items():
                if peer in missing.announcers:
                    missing.announcers.remove(peer)
                    missing.asked.append(peer)
                    self._schedule(id, missing, now + self.params.graft_retry)
                    ids.append(id)
                    break

    def _tree_sync(self, now: float, actions: list[Action]) -> None:
        """Choose the parent again; make tree links eager and former tree links lazy;
        tell peers of any change in our position (rule 9)."""
        tree = self._tree
        assert tree is not None
        tree.update(now)
        for peer, state in self._peers.items():
            if not tree.aware(peer):
                continue
            link = tree.tree_link(peer)
            if link == state.tree:
                continue
            state.tree = link
            state.eager = link and not self._backlogged(state, now)
        for peer, advert in tree.adverts():
            actions.append(SendTree(peer, advert.root, advert.cost, advert.parent))
        self._keep_one_eager(now, actions)
