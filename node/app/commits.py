"""Commits the node owns: a store commit and all that follows it (counters, the
new-alert hooks that wake watchers and gossip, an equivocation's proof) run as one task
of the node's, which the caller that asked for it awaits shielded. A caller that stops
waiting (a peer session ends, a client cancels its Publish) stops none of it: the store
commits what it queued anyway, and what follows must not be skipped.

A failure goes to the caller if it still waits and is logged if it does not. At
shutdown `drain` lets the commits in flight finish, before the store closes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from node.core.errors import AlertmeshError

T = TypeVar("T")


class Commits:
    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._running: set[asyncio.Task[Any]] = set()

    async def run(
        self,
        commit: Coroutine[Any, Any, T],
        what: str,
        done: Callable[[asyncio.Task[Any]], None] | None = None,
    ) -> T:
        """Run `commit` as a task of the node's and wait for it. `what` names it in the
        log line of a failure nobody waited for ("an ingest", "a publish"). `done` is
        called when the task ends, however it ends (also if cancelled before it ran),
        whether or not the caller still waits."""
        # No await before this: a publish's put is the task's first step, and own puts
        # must reach the store in the order they were signed (node/app/publishing.py,
        # Publisher._commit_own).
        task = asyncio.ensure_future(commit)
        if done is not None:
            task.add_done_callback(done)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        waiting = asyncio.shield(task)
        try:
            return await waiting
        except asyncio.CancelledError:
            # The caller left. If the task failed just before (its failure was on the
            # way to the caller), it is taken here, or asyncio would report it unread.
            if waiting.done() and not waiting.cancelled():
                waiting.exception()
            if task.done():
                self._unwaited(what, task)
            else:
                task.add_done_callback(functools.partial(self._unwaited, what))
            raise

    def _unwaited(self, what: str, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or (exc := task.exception()) is None:
            return
        if isinstance(exc, AlertmeshError):
            # What the caller would have been answered: it says what happened, and a cause
            # behind it was logged where it became this answer (a publish's failed put).
            self._log.warning("%s whose caller had left failed: %s", what, exc)
        else:
            self._log.error("%s whose caller had left failed", what, exc_info=exc)

    async def settled(self) -> None:
        """Wait until the commits running now have ended (not those started meanwhile)."""
        if running := set(self._running):
            await asyncio.wait(running)

    async def drain(self, timeout: float) -> None:
        """Let the commits in flight finish, those started meanwhile too; any still running
        after `timeout` seconds are cancelled (a store that never answers)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._running and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._running), timeout=left)
        late = {task for task in self._running if not task.done()}
        for task in late:
            task.cancel()
        if late:
            self._log.warning("%d commits still running at shutdown were cancelled", len(late))
            await asyncio.gather(*late, return_exceptions=True)
