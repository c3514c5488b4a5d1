"""The gossip core's links: each peer's state, and who is sent what (rules 1, 5, 7).

A link is eager (alerts go in full) or lazy (their ids are announced in batched IHAVEs,
at most `ihave_max_ids` per `ihave_interval`, at most `max_queue_ids` queued, oldest
dropped first). Each lazy peer's queue has its own deadline: `ihave_interval`, or, to a
peer on our root that the tree brings every alert (rule 9), `ihave_repair_delay` unless
`ihave_batch_ids` are queued first. Which peers have an id is kept per id as a
bitmask of the peers' bits (`Seen`), since a node remembers up to `max_seen` ids
(`Remembered`, rule 8).
node/core/gossip.py decides which links are eager; this module keeps them and carries
out rule 1's sends. No I/O.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from node.core.gossip_types import (
    Action,
    GossipParams,
    PeerStats,
    SendAlerts,
    SendIHave,
    SendPrune,
)


@dataclass(slots=True)
class PeerLink:
    eager: bool
    tree: bool | None = None  # a tree link (rule 9)? None: the peer sent no TREE frame yet
    bit: int = 0  # this peer's bit in Seen.known / Seen.asked
    backlogged_until: float = -math.inf
    # Its last TREE frame names our root (rule 9), tree link or not; see repair_only().
    on_our_root: bool = False
    pending: deque[bytes] = field(default_factory=deque)  # ids to announce
    due: float | None = None  # when its queued announcements are sent at the latest
    awaited: int = 0  # live awaited entries this peer created (gossip_awaited.Missing)
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
    corrected_at: float = -math.inf  # T6: when we last told it its view of the link is stale

    def backlogged(self, now: float) -> bool:
        return now < self.backlogged_until

    def repair_only(self) -> bool:
        """Are IHAVEs to it only repair? It is on our root and no tree link (a tree link
        is lazy only while backlogged, and then an IHAVE is its news): the tree brings
        it every alert, and an IHAVE to it only repairs a lost push (rule 9)."""
        return self.on_our_root and not self.tree

    def stats(self, now: float, tree_refused: int) -> PeerStats:
        """This link's counters, as `Gossip.peer_stats` reports them."""
        return PeerStats(
            eager=self.eager,
            backlogged=self.backlogged(now),
            alerts_received=self.alerts_received,
            duplicates_received=self.duplicates_received,
            alerts_sent=self.alerts_sent,
            ihave_ids_received=self.ihave_ids_received,
            ihave_ids_sent=self.ihave_ids_sent,
            ihave_ids_dropped=self.ihave_ids_dropped,
            prunes_sent=self.prunes_sent,
            prunes_received=self.prunes_received,
            grafts_sent=self.grafts_sent,
            grafts_received=self.grafts_received,
            tree_refused=tree_refused,
        )


@dataclass(slots=True)
class Seen:
    # Peer sets as bitmasks of PeerLink.bit: a node remembers up to max_seen ids, and two
    # Python sets per id cost ~600 bytes where an int of a few peers' bits costs none
    # (CPython shares the small ones).
    expires: float
    known: int  # peers that have it, or that we pushed or announced it to
    asked: int  # peers we asked for it: their copy is an answer, not a push


class Remembered:
    """The ids this node has seen, oldest first, each for `seen_ttl` and at most `max_seen`
    of them (rule 8), and when alerts were first seen lately: rule 3's load k."""

    def __init__(self, params: GossipParams) -> None:
        self.params = params
        self.ids: OrderedDict[bytes, Seen] = OrderedDict()
        self.recent: deque[float] = deque(maxlen=100_000)  # first seen, last graft_timeout

    def remember(self, id: bytes, now: float, asked: int) -> Seen:
        seen = Seen(expires=now + self.params.seen_ttl, known=0, asked=asked)
        self.ids[id] = seen
        self.expire(now)
        return seen

    def remember_new(self, ids: Sequence[bytes], now: float) -> list[tuple[bytes, Seen]] | None:
        """remember(id, now, 0) of each id not remembered yet (repeats once), each first
        seen `now` (rule 3's load), in one expiry pass: what they remember and in what
        order is the same. None, with nothing remembered, when that pass would not do:
        the batch could push ids out over `max_seen`, or a TTL ends at `now`."""
        self.expire(now)
        expires = now + self.params.seen_ttl
        if expires <= now or len(self.ids) + len(ids) > self.params.max_seen:
            return None  # remember() would expire some of them again: one at a time
        # Nothing is left to expire at `now`, and each id remembered now outlives it and
        # fits: remember()'s expiry pass would find nothing each time.
        seen_ids, recent = self.ids, self.recent
        fresh: list[tuple[bytes, Seen]] = []
        for id in ids:
            if id not in seen_ids:
                recent.append(now)
                seen = seen_ids[id] = Seen(expires=expires, known=0, asked=0)
                fresh.append((id, seen))
        return fresh

    def expire(self, now: float) -> None:
        # Insertion order is expiry order, because `now` never decreases.
        seen = self.ids
        while seen and (
            len(seen) > self.params.max_seen or next(iter(seen.values())).expires <= now
        ):
            seen.popitem(last=False)
        recent = self.recent
        while recent and recent[0] <= now - self.params.graft_timeout:
            recent.popleft()


class Links:
    """The open links by peer, their bits, and the announcements waiting to be sent."""

    def __init__(self, params: GossipParams) -> None:
        self.params = params
        self.peers: dict[bytes, PeerLink] = {}
        # The earliest peer's due: when queued announcements are next sent. It may be
        # early after a peer goes (its due is not taken out): a spare wake, no more.
        self.flush_at: float | None = None
        self._free_bits: list[int] = []  # bits of peers gone, for reuse
        self._next_bit = 1

    def add(self, peer: bytes, eager: bool) -> PeerLink:
        bit = self._free_bits.pop() if self._free_bits else self._next_bit
        if bit == self._next_bit:
            self._next_bit <<= 1
        state = self.peers[peer] = PeerLink(eager=eager, bit=bit)
        return state

    def remove(self, peer: bytes, seen: Iterable[Seen]) -> PeerLink | None:
        """Forget the peer, and its bit in every `seen` entry (the bit is reused)."""
        state = self.peers.pop(peer, None)
        if state is None:
            return None
        keep = ~state.bit
        for entry in seen:
            entry.known &= keep
            entry.asked &= keep
        self._free_bits.append(state.bit)
        return state

    def bits(self, peers: Iterable[bytes]) -> int:
        """The bitmask of `peers`; peers without a session have no bit."""
        mask = 0
        for peer in peers:
            state = self.peers.get(peer)
            if state is not None:
                mask |= state.bit
        return mask

    def eager_count(self) -> int:
        return sum(1 for s in self.peers.values() if s.eager)

    def forward(self, id: bytes, seen: Seen, now: float, actions: list[Action]) -> None:
        """Rule 1: push `id` to every eager peer and queue it for every lazy one, except
        peers known to have it."""
        for peer, state in self.peers.items():
            if seen.known & state.bit:
                continue
            seen.known |= state.bit
            if state.tree and not state.eager and not state.backlogged(now):
                state.eager = True  # a tree link whose backlog has passed
            if state.eager:
                state.alerts_sent += 1
                actions.append(SendAlerts(peer, (id,)))
                continue
            if len(state.pending) >= self.params.max_queue_ids:
                state.pending.popleft()
                state.ihave_ids_dropped += 1
            state.pending.append(id)
            self._schedule(state, now)

    def _schedule(self, state: PeerLink, now: float) -> None:
        """When `state`'s queue is sent: within `ihave_interval` of an id queued, or, on a
        repair-only link (`PeerLink.repair_only`), within `ihave_repair_delay` of its
        first id unless `ihave_batch_ids` are queued sooner. Each id may only bring the
        deadline nearer: a trickle of ids never holds the first one back longer, and
        an id that asks for `ihave_interval` takes those queued as repair with it."""
        p = self.params
        repair = state.repair_only() and len(state.pending) < p.ihave_batch_ids
        self._due_by(state, now + (p.ihave_repair_delay if repair else p.ihave_interval))

    def hurry(self, state: PeerLink, now: float) -> None:
        """`state`'s announcements are no longer repair only: send them within
        `ihave_interval`."""
        if state.due is not None:
            self._due_by(state, now + self.params.ihave_interval)

    def _due_by(self, state: PeerLink, due: float) -> None:
        """`state`'s queue goes by `due` at the latest: its deadline, and `flush_at`,
        only ever move nearer."""
        if state.due is None or due < state.due:
            state.due = due
        if self.flush_at is None or due < self.flush_at:
            self.flush_at = due

    def flush(self, now: float, remembered: Container[bytes], actions: list[Action]) -> None:
        """Send each lazy peer's due announcements (ids no longer `remembered` are left
        to catch-up)."""
        self.flush_at = None  # the earliest due left, found below
        for peer, state in self.peers.items():
            if state.due is None:
                continue
            if state.due > now:
                self._due_by(state, state.due)
                continue
            batch: list[bytes] = []
            while state.pending and len(batch) < self.params.ihave_max_ids:
                id = state.pending.popleft()
                if id in remembered:
                    batch.append(id)
            if batch:
                state.ihave_ids_sent += len(batch)
                actions.append(SendIHave(peer, tuple(batch)))
            # What is left waits `ihave_interval`: at most ihave_max_ids per interval.
            state.due = None
            if state.pending:
                self._due_by(state, now + self.params.ihave_interval)

    def serve(
        self,
        peer: bytes,
        state: PeerLink,
        ids: Sequence[bytes],
        seen: Mapping[bytes, Seen],
        actions: list[Action],
    ) -> None:
        """Rule 5: answer a request (IWANT, GRAFT) with the alerts still remembered."""
        found: dict[bytes, None] = {}
        for id in ids[: self.params.ihave_max_ids]:
            entry = seen.get(id)
            if entry is not None:
                entry.known |= state.bit
                found[id] = None
        if found:
            state.alerts_sent += len(found)
            actions.append(SendAlerts(peer, tuple(found), answer=True))

    @staticmethod
    def demote(peer: bytes, state: PeerLink, actions: list[Action]) -> None:
        # Sent even if the link is lazy here already: the peer evidently missed a PRUNE.
        state.eager = False
        state.prunes_sent += 1
        actions.append(SendPrune(peer))
