"""The virtual clock: a priority queue of events, and a digest of everything that ran.

Events run in (time, insertion order). Nothing reads a wall clock, and every choice
comes from a seeded generator, so a seed replays the same run byte for byte; the
trace digest (SHA-256 over a record of every event) is how a test checks that.
"""

from __future__ import annotations

import hashlib
import heapq
import struct
from collections.abc import Callable
from typing import IO, Any

_RECORD = struct.Struct("<dqqqq")


class EventLoop:
    def __init__(self, trace: IO[str] | None = None) -> None:
        self.now = 0.0
        self.events = 0
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._digest = hashlib.sha256()
        self._trace = trace

    def at(self, when: float, fn: Callable[..., None], *args: Any) -> None:
        """Run fn(*args) at virtual time `when` (never before now)."""
        self._seq += 1
        heapq.heappush(self._queue, (max(when, self.now), self._seq, fn, args))

    def after(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        self.at(self.now + delay, fn, *args)

    def run_until(self, until: float) -> None:
        """Run every event due at or before `until`; the clock then reads `until`."""
        queue = self._queue
        while queue and queue[0][0] <= until:
            when, _, fn, args = heapq.heappop(queue)
            self.now = when
            self.events += 1
            fn(*args)
        self.now = max(self.now, until)

    def record(self, what: int, a: int = 0, b: int = 0, c: int = 0) -> None:
        """Add an event to the trace digest (and to the trace file, if any)."""
        self._digest.update(_RECORD.pack(self.now, what, a, b, c))
        if self._trace is not None:
            self._trace.write(f"{self.now:.6f} {what} {a} {b} {c}\n")

    def digest(self) -> str:
        return self._digest.hexdigest()
