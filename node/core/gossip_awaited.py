"""The ids a node awaits after IHAVEs (docs/gossip.md, rules 4 and 8), and whom to ask.

Each awaited id remembers who announced it (not asked yet, in order), whom we asked,
and one live timer; a timer replaced by a later one stays in the heap, stale, until it
comes up or the heap is compacted. When a timer is due the id is asked of its next
announcer: by GRAFT (the link turns eager) off the rooted tree, by IWANT on it or from
a backlogged peer; on the tree, T9 (node/core/gossip_guard.py) may wait for the parent
first. No I/O.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from node.core.gossip_guard import ParentPatience
from node.core.gossip_links import Links, PeerLink, Seen
from node.core.gossip_types import Action, GossipParams, SendGraft, SendIWant


@dataclass(slots=True)
class Missing:
    creator: bytes | None  # the peer whose `awaited` count this entry uses
    announcers: deque[bytes]  # not asked yet, in the order they announced
    asked: list[bytes]
    timer: int  # sequence number of this entry's live timer
    waited: int = 0  # T9: timers re-armed because the parent was still catching up


class Awaited:
    """Awaited ids by id, and a heap of (deadline, sequence, id) timers."""

    def __init__(self, params: GossipParams, links: Links) -> None:
        self.params = params
        self.links = links
        self.entries: dict[bytes, Missing] = {}
        self.dropped = 0  # announced ids not awaited because a bound was reached
        self.abandoned = 0  # every announcer was asked, and none delivered
        self._timers: list[tuple[float, int, bytes]] = []  # stale ones kept
        self._seq = 0

    def announced(
        self,
        peer: bytes,
        state: PeerLink,
        ids: Sequence[bytes],
        seen: Mapping[bytes, Seen],
        have: Callable[[bytes], bool],
        deadline: float,
    ) -> None:
        """`peer` announced `ids`: await those neither remembered nor held, until
        `deadline` (rule 4), within the bounds of rule 8."""
        for id in ids:
            entry = seen.get(id)
            if entry is not None:
                entry.known |= state.bit
                continue
            missing = self.entries.get(id)
            if missing is not None:
                if peer not in missing.announcers and peer not in missing.asked:
                    missing.announcers.append(peer)
                continue
            if have(id):
                continue
            if (
                len(self.entries) >= self.params.max_missing
                or state.awaited >= self.params.max_queue_ids
            ):
                self.dropped += 1
                continue
            self.add(id, peer, deadline)
            state.awaited += 1

    def announced_by(self, peer: bytes | None) -> int:
        """How many awaited ids `peer` announced first (T9: a burst in view)."""
        state = self.links.peers.get(peer) if peer is not None else None
        return 0 if state is None else state.awaited

    def peer_gone(self, peer: bytes, now: float) -> None:
        """`peer`'s session closed: it announces nothing more, and an id last asked of it
        is asked of the next announcer now, not after waiting for its answer."""
        for id, missing in self.entries.items():
            if peer in missing.announcers:
                missing.announcers.remove(peer)
            if missing.creator == peer:
                missing.creator = None
            if missing.asked and missing.asked[-1] == peer:
                self.schedule(id, missing, now)  # no use waiting for its answer

    def drop(self, id: bytes) -> Missing | None:
        """Stop awaiting `id` (it arrived, or is given up)."""
        missing = self.entries.pop(id, None)
        if missing is not None and missing.creator is not None:
            creator = self.links.peers.get(missing.creator)
            if creator is not None:
                creator.awaited -= 1
        return missing

    def fire(self, now: float, patience: ParentPatience | None, actions: list[Action]) -> None:
        """Ask for the ids whose timers are due. `patience`: on the rooted tree (rule 9),
        the parent's (T9); there a missing alert is a lost frame, not a missing link
        (TREE frames mend links): pull it (IWANT) and leave the links as they are."""
        grafts: dict[bytes, list[bytes]] = {}
        iwants: dict[bytes, list[bytes]] = {}
        peers = self.links.peers
        for id, missing, deadline in self.due(now):
            more = (
                patience.wait(
                    bool(missing.asked),
                    missing.waited,
                    now - deadline,
                    self.announced_by(missing.creator),
                    now,
                )
                if patience is not None
                else None
            )
            if more is not None:  # T9: the parent will bring it
                missing.waited += 1
                self.schedule(id, missing, now + more)
                continue
            while missing.announcers and missing.announcers[0] not in peers:
                missing.announcers.popleft()
            if not missing.announcers:
                self.drop(id)
                self.abandoned += 1
                continue
            target = missing.announcers.popleft()
            missing.asked.append(target)
            self.schedule(id, missing, now + self.params.graft_retry)
            pull = patience is not None or peers[target].backlogged(now)
            (iwants if pull else grafts).setdefault(target, []).append(id)
        if grafts:
            self._ask_too(grafts, now)
        step = self.params.ihave_max_ids
        for peer, ids in grafts.items():
            state = peers[peer]
            state.eager = True
            for i in range(0, len(ids), step):
                state.grafts_sent += 1
                actions.append(SendGraft(peer, tuple(ids[i : i + step])))
        for peer, ids in iwants.items():
            for i in range(0, len(ids), step):
                actions.append(SendIWant(peer, tuple(ids[i : i + step])))

    def _ask_too(self, requests: dict[bytes, list[bytes]], now: float) -> None:
        # A GRAFT means the tree did not bring what this peer announced: whatever else it
        # announced that we still await was lost the same way, so ask for it at once.
        for id, missing in self.entries.items():
            if missing.asked and missing.asked[-1] in requests:
                continue  # asked just now
            for peer, ids in requests.items():
                if peer in missing.announcers:
                    missing.announcers.remove(peer)
                    missing.asked.append(peer)
                    self.schedule(id, missing, now + self.params.graft_retry)
                    ids.append(id)
                    break

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, id: bytes, creator: bytes, deadline: float) -> Missing:
        missing = Missing(creator=creator, announcers=deque([creator]), asked=[], timer=0)
        self.entries[id] = missing
        self.schedule(id, missing, deadline)
        return missing

    def schedule(self, id: bytes, missing: Missing, deadline: float) -> None:
        """Give the entry a new live timer (its previous one goes stale)."""
        self._seq += 1
        missing.timer = self._seq
        heapq.heappush(self._timers, (deadline, self._seq, id))
        if len(self._timers) > 2 * len(self.entries) + 64:  # drop stale timers
            self._timers = [t for t in self._timers if not self._stale(t)]
            heapq.heapify(self._timers)

    def next_deadline(self) -> float | None:
        while self._timers and self._stale(self._timers[0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def due(self, now: float) -> Iterator[tuple[bytes, Missing, float]]:
        """The entries whose live timer is due, with its deadline, earliest first. The
        caller may schedule or pop entries as it goes."""
        while self._timers and self._timers[0][0] <= now:
            timer = heapq.heappop(self._timers)
            if not self._stale(timer):
                yield timer[2], self.entries[timer[2]], timer[0]

    def _stale(self, timer: tuple[float, int, bytes]) -> bool:
        missing = self.entries.get(timer[2])
        return missing is None or missing.timer != timer[1]
