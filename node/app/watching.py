"""The watch streams of a node: the stored alerts after a cursor, then new ones as they
are stored, and the events they make (node/app/lifecycle.py), expiries included.

The write side calls `wake` after each commit; every open stream then looks again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
from collections.abc import AsyncIterator, Callable

from node.app.checking import Checker
from node.app.lifecycle import Event, EventKind, Lifecycle
from node.core import indicators
from node.store.base import AlertStore, Query, Stored


class Watching:
    def __init__(
        self,
        *,
        store: AlertStore,
        lifecycle: Lifecycle,
        checker: Checker,
        clock: Callable[[], int],
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.checker = checker
        self.clock = clock
        self._changed = asyncio.Event()

    def wake(self) -> None:
        """New alerts are stored: every watch stream looks again."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def events(self, query: Query, cursor: int | None) -> AsyncIterator[Event]:
        """`alerts`, each alert named by what it means (a retraction, an update, ...), and
        an EXPIRED event when an alert sent on this stream reaches its expiry."""
        # (expires_at_ms, local_seq, alert id) of the alerts this stream sent that will
        # expire: ids only, re-read when due, so a long-lived stream holds no bodies.
        expiring: list[tuple[int, int, bytes]] = []
        async for stored in self._feed(query, cursor, lambda: expiring[0][0] if expiring else 0):
            now = self.clock()
            while expiring and expiring[0][0] <= now:
                gone = await self.store.get(heapq.heappop(expiring)[2])
                if gone is not None:
                    yield await self._still_free(await self.lifecycle.expired(gone))
            if stored is None:
                continue
            event = await self._still_free(await self.lifecycle.event(stored))
            if event.kind in (EventKind.NEW, EventKind.UPDATED) and stored.record.expires_at_ms:
                record = stored.record
                heapq.heappush(expiring, (record.expires_at_ms, stored.local_seq, record.id))
            yield event

    async def _still_free(self, event: Event) -> Event:
        """`event` releasing only the values nothing flags any more: a retraction or an
        expiry frees a value only if no other active alert (another member's, a later
        version) still flags it; downstream systems unfreeze what is listed."""
        if not event.released:
            return event
        # Typed, as stored: a bare handle or an `other` value would be read as another type.
        typed = [f"{indicators.type_name(i.type)}:{i.value}" for i in event.released]
        verdicts = await self.checker.check(typed, include_expired=False)
        free = tuple(
            ind
            for ind, result in zip(event.released, verdicts, strict=True)
            if result.verdict is None or not result.verdict.flagged
        )
        return dataclasses.replace(event, released=free)

    async def alerts(self, query: Query, cursor: int | None) -> AsyncIterator[Stored]:
        """Stored alerts after `cursor`, then new ones as they are stored; never ends.

        Resuming from the cursor of the last alert received yields every later
        alert exactly once: positions are assigned in commit order.
        """
        async for stored in self._feed(query, cursor, lambda: 0):
            if stored is not None:
                yield stored

    async def _feed(
        self, query: Query, cursor: int | None, wake_at: Callable[[], int]
    ) -> AsyncIterator[Stored | None]:
        """`alerts`' alerts; None when the clock reaches wake_at() (ms; 0: never) first."""
        if cursor is None:
            cursor = await self.store.last_cursor()
        while True:
            changed = self._changed
            top = await self.store.last_cursor()
            rows = await self.store.after(query, cursor=cursor, limit=256)
            for stored in rows:
                yield stored
                cursor = stored.local_seq
            if not rows:
                cursor = max(cursor, top)
                wake = wake_at()
                if not wake:
                    await changed.wait()
                    continue
                try:
                    delay = max(0.0, (wake - self.clock()) / 1000)
                    await asyncio.wait_for(changed.wait(), timeout=delay)
                except TimeoutError:
                    yield None
