"""The ids a node awaits after IHAVEs (docs/gossip.md, rules 4 and 8), with their timers.

Each awaited id remembers who announced it (not asked yet, in order), whom we asked,
and one live timer; a timer replaced by a later one stays in the heap, stale, until it
comes up or the heap is compacted. node/core/gossip.py decides what to do when a timer
is due; this module only keeps the entries and their order. No I/O.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(slots=True)
class Missing:
    creator: bytes | None  # the peer whose `awaited` count this entry uses
    announcers: deque[bytes]  # not asked yet, in the order they announced
    asked: list[bytes]
    timer: int  # sequence number of this entry's live timer
    waited: int = 0  # T9: timers re-armed because the parent was still catching up


class Awaited:
    """Awaited ids by id, and a heap of (deadline, sequence, id) timers."""

    def __init__(self) -> None:
        self.entries: dict[bytes, Missing] = {}
        self._timers: list[tuple[float, int, bytes]] = []  # stale ones kept
        self._seq = 0

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, id: bytes, creator: bytes, deadline: float) -> Missing:
        missing = Missing(creator=creator, announcers=deque([creator]), asked=[], timer=0)
        self.entries[id] = missing
        self.schedule(id, missing, deadline)
        return missing

    def pop(self, id: bytes) -> Missing | None:
        return self.entries.pop(id, None)

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
