"""When the node's garbage collector runs, and what it walks.

CPython's cyclic collector pauses the event loop for as long as it takes to walk the
objects of the generations it collects: every call waits. Two settings keep those pauses
short and rare while the node serves (docs/benchmarks.md, issue 15 sessions 18-20):

- What start-up built (modules, the store's state) is frozen once serving starts: no
  collection walks it again. Young collections run every 50,000 new objects instead of
  700 (at the default, a CheckIndicators of 1,000 values ran 5-6 of them).
- After a large ingest (SETTLE_AFTER_ALERTS accepted alerts), once no alert has arrived
  for QUIET_S, the node settles: one full collection over everything (frozen objects
  included, so that nothing frozen earlier can leak as a cycle), then everything that
  survived is frozen. What an ingest leaves alive (the gossip layer's remembered ids,
  the recent alerts kept for peers: most of ~160,000 young objects after a fill of
  200,000) would otherwise sit in the young generation until a young collection walks
  it, 23-32 ms of CPU that lands on whichever call is running then: after a fill to a
  million alerts, the slowest 1,000-value check took 52 ms, on a restarted node 22.

The decision (`SettlePolicy`) takes the time as a parameter; `Collector` drives it on
the event loop and counts every collection for `alertmesh stats`
(`gc_collections_gen0`.. `_gen2`, `gc_pause_ms`, `gc_pause_max_ms`, `gc_settles`,
`gc_settle_ms`, `gc_settle_cpu_ms`, `gc_frozen_objects`).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.app.service import AlertNode

SERVING_THRESHOLDS = (50_000, 20, 10)
SETTLE_AFTER_ALERTS = 5_000  # alerts accepted since the last settle that make one due
QUIET_S = 0.5  # no alert accepted for this long: the ingest is over


class SettlePolicy:
    """Settle once `after_alerts` alerts were accepted and then none for `quiet_s`."""

    def __init__(self, after_alerts: int = SETTLE_AFTER_ALERTS, quiet_s: float = QUIET_S) -> None:
        self.after_alerts = after_alerts
        self.quiet_s = quiet_s
        self.pending = 0  # alerts accepted since the last settle
        self.last = 0.0  # when the last of them was accepted

    def accepted(self, n: int, now: float) -> bool:
        """Note `n` alerts accepted at `now`; True when that makes a settle due (the
        caller then waits `quiet_in` before settling)."""
        before = self.pending
        self.pending += n
        self.last = now
        return before < self.after_alerts <= self.pending

    def quiet_in(self, now: float) -> float:
        """Seconds until the node has been quiet long enough (0: settle now)."""
        return max(0.0, self.last + self.quiet_s - now)

    @property
    def due(self) -> bool:
        return self.pending >= self.after_alerts

    def settled(self) -> None:
        self.pending = 0


class Collector:
    """The node's collector settings, its settles after large ingests, and its counts."""

    def __init__(
        self,
        policy: SettlePolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or SettlePolicy()
        self.clock = clock
        self.collections = [0, 0, 0]  # by generation, since serving started
        self.pause_s = 0.0
        self.pause_max_s = 0.0
        self.settles = 0
        self.settle_s = 0.0
        self.settle_cpu_s = 0.0  # of which this thread ran (the rest: waiting for a core)
        self._started = 0.0
        self._due = asyncio.Event()

    @classmethod
    def attach(cls, node: AlertNode, policy: SettlePolicy | None = None) -> Collector:
        """A Collector told of the alerts `node` accepts, its counts in the node's stats."""
        collector = cls(policy)
        node.hooks.append(collector.on_alerts)
        others = node.extra_counters
        node.extra_counters = lambda: {**others(), **collector.counters()}
        return collector

    def serving(self) -> None:
        """Freeze what start-up built and set the serving thresholds; count collections."""
        gc.collect()
        gc.freeze()
        gc.set_threshold(*SERVING_THRESHOLDS)
        if self._timed not in gc.callbacks:
            gc.callbacks.append(self._timed)

    def on_alerts(self, records: Sequence[object], peer: bytes | None) -> None:
        if self.policy.accepted(len(records), self.clock()):
            self._due.set()

    async def run(self) -> None:
        """Settle after each large ingest, once the node is quiet; until cancelled."""
        try:
            while True:
                await self._due.wait()
                wait = self.policy.quiet_in(self.clock())
                if wait > 0:  # alerts still arriving: look again when it could be quiet
                    await asyncio.sleep(wait)
                else:
                    self.settle()
        finally:
            if self._timed in gc.callbacks:
                gc.callbacks.remove(self._timed)

    def settle(self) -> None:
        """One full collection over every object, then freeze what survived."""
        self._due.clear()
        self.policy.settled()
        t0, cpu0 = time.perf_counter(), time.thread_time()
        gc.unfreeze()  # frozen objects that became cycles since are collected too
        gc.collect()
        gc.freeze()
        self.settle_s += time.perf_counter() - t0
        self.settle_cpu_s += time.thread_time() - cpu0
        self.settles += 1

    def _timed(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.collections[info["generation"]] += 1
        self.pause_s += pause
        self.pause_max_s = max(self.pause_max_s, pause)

    def counters(self) -> dict[str, int]:
        return {
            "gc_collections_gen0": self.collections[0],
            "gc_collections_gen1": self.collections[1],
            "gc_collections_gen2": self.collections[2],
            "gc_pause_ms": round(self.pause_s * 1e3),
            "gc_pause_max_ms": round(self.pause_max_s * 1e3),
            "gc_settles": self.settles,
            "gc_settle_ms": round(self.settle_s * 1e3),
            "gc_settle_cpu_ms": round(self.settle_cpu_s * 1e3),
            "gc_frozen_objects": gc.get_freeze_count(),
        }
