"""The durable store: SQLite in WAL mode.

All writes go through one writer task that commits whole batches at once (group
commit): many concurrent `put` calls share one transaction and one fsync, and a
`put` returns only after its transaction is durable. The transaction runs on the
writer's own thread (node/store/sqlite_writer.py; the schema and the upgrade of older
files: node/store/sqlite_migrate.py), except a single put that finds the writer idle
and no commit just ended: it commits on the event loop's thread, the same transaction
without the two thread hops (see _sparse).
Reads use a second connection through aiosqlite, which WAL lets run alongside the
writer (the queries: node/store/sqlite_reads.py); recent alerts and the last rows
committed are answered from memory (sqlite_memory.py). What it loads at open:
sqlite_load.py; the read-back after a commit in doubt: sqlite_doubt.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite

from node.core.alerts import AlertRecord
from node.core.chain import Chains
from node.core.errors import ConfigError, StoreClosed
from node.store.base import (
    PutOutcome,
    ReadBack,
    Stored,
    answer_puts,
    nothing_written,
    refuse_unchained,
    unchained,
    unread_doubt,
    wrote_nothing,
)
from node.store.keyfilter import KeyFilter
from node.store.sqlite_doubt import CommitDoubt
from node.store.sqlite_load import load_chains, load_filter
from node.store.sqlite_memory import TAIL_ROWS as TAIL_ROWS
from node.store.sqlite_memory import CommittedMemory
from node.store.sqlite_reads import READER_CACHE_KIB

# Names its users import from here; they live with the queries.
from node.store.sqlite_reads import key_hashes as key_hashes
from node.store.sqlite_reads import maybe_held_keys as maybe_held_keys
from node.store.sqlite_writer import (
    Committed,
    Write,
    WriteLockBusy,
    Writer,
)

log = logging.getLogger(__name__)

# A single put commits on the loop's own thread when the writer is idle and no commit
# ended in the last SPARSE_GAP_S: at 170 alerts/s paced (one every 5.9 ms) most do, and
# a put close behind another goes to the writer (0, 3 and 10 ms measured: 3 was best at
# 170/s, the same at 20/s; docs/benchmarks.md, issue 15 session 21).
SPARSE_GAP_S = 0.003
# A commit on the loop's thread never runs the WAL auto-checkpoint (8 ms at 40 MiB of
# WAL, measured): after this many of them the writer thread runs one (PASSIVE), at a
# few pages a commit well within CHECKPOINT_BYTES of WAL; the writer's own commits
# still checkpoint by themselves.
CHECKPOINT_COMMITS = 256
# No commit on the loop's thread while one-alert commits take this long on average (a
# slow or busy disk, fsync 10-20 ms): the loop would stand still for each. The newest
# commit weighs COMMIT_WEIGHT in the average (~5 commits' memory).
SLOW_COMMIT_S = 0.002
COMMIT_WEIGHT = 0.2


@dataclass(slots=True)
class _Put:
    write: Write
    done: asyncio.Future[list[PutOutcome]]
    own: bool = False  # this node's own alerts: refused unless they follow what is held

    @property
    def records(self) -> Sequence[AlertRecord]:
        return self.write.records


class _Chore(enum.Enum):
    """Work queued for the writer thread after commits on the loop's thread."""

    MERGE = "merge"  # a commit left an index level full
    CHECKPOINT = "checkpoint"  # CHECKPOINT_COMMITS commits without the auto-checkpoint


class SqliteStore(CommitDoubt, CommittedMemory):
    def __init__(
        self,
        path: Path,
        *,
        batch_rows: int = 8000,
        synchronous: str = "FULL",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._clock = clock  # seconds; the sparse gap and the commit durations
        self._batch_rows = batch_rows
        self._synchronous = synchronous
        self._chains = Chains()
        self._queue: asyncio.Queue[_Put | _Chore | ReadBack | None] = asyncio.Queue()
        self._stack = contextlib.AsyncExitStack()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._writer_db: Writer | None = None
        self._rdb: aiosqlite.Connection | None = None
        self._last_local_seq = 0
        self._count = 0
        self._filter: KeyFilter | None = None  # the indicator keys held (keyfilter.py)
        self._recent: collections.OrderedDict[bytes, Stored] = collections.OrderedDict()
        # Rows local_seq tail[0].local_seq .. _last_local_seq, no gaps (TAIL_ROWS).
        self._tail: collections.deque[Stored] = collections.deque(maxlen=TAIL_ROWS)
        self.commits = 0  # group commits written (GetStats counter store_commits)
        self.inline_commits = 0  # of which on the loop's thread (sparse single puts)
        self._writer_busy = False  # the writer task holds a batch or an index move
        self._closing = False  # the writer's stop is queued: puts are refused
        # A commit in doubt was not yet read back (_read_after_doubt failed): the chains
        # and positions may be behind the file. No commit on the loop's thread; the
        # writer reads back before its next commit.
        self._in_doubt = False
        self._unchecked = 0  # commits on the loop since the last CHECKPOINT queued
        self._last_commit_end = -math.inf  # self._clock()
        # Moving average of how long a one-alert commit takes (either thread): the loop
        # path is closed while it is SLOW_COMMIT_S or more (a slow or busy disk).
        self._commit_s = 0.0

    @property
    def chains(self) -> Chains:
        return self._chains

    async def _on_writer_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self._thread.shutdown, wait=True)
            try:
                writer = await self._on_writer_thread(Writer, self.path, self._synchronous)
                stack.push_async_callback(self._close_writer, writer)
                await self._on_writer_thread(writer.migrate)
            except sqlite3.DatabaseError as exc:
                # A start-up failure the operator fixes: one line, not a traceback.
                raise ConfigError(
                    f"cannot open the store {self.path}: {exc}; if it is not this node's "
                    "database, move it aside or set [store] path in config.toml"
                ) from exc
            self._writer_db = writer
            self._filter = writer.key_filter = await self._on_writer_thread(load_filter, writer.db)
            self._rdb = await stack.enter_async_context(aiosqlite.connect(self.path))
            await self._rdb.execute("PRAGMA query_only=ON")
            await self._rdb.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
            await self._load_state()
            await self._merge_if_due()  # a level left full (a move failed before the stop)
            tg = await stack.enter_async_context(asyncio.TaskGroup())
            tg.create_task(self._writer(), name=f"store-writer {self.path.name}")
            stack.push_async_callback(self._stop)  # stop the writer first
            self._stack = stack.pop_all()
        return self

    async def _stop(self) -> None:
        """No put from here on (StoreClosed), then the writer's stop, behind the queued
        puts: a put on the loop's thread now could meet the writer thread closing."""
        self._closing = True
        await self._queue.put(None)

    async def _close_writer(self, writer: Writer) -> None:
        self._writer_db = None
        await self._on_writer_thread(writer.close)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _load_state(self) -> None:
        # Streamed on the writer's thread (nothing writes yet): a list of every
        # (origin, seq) would be ~150 MiB at a million alerts, left to the allocator.
        self._count = await self._on_writer_thread(load_chains, self._writer_db, self._chains)
        [(last,)] = await self._rows("SELECT COALESCE(MAX(local_seq), 0) FROM alerts")
        self._last_local_seq = last

    # -- writes ------------------------------------------------------------

    async def put(
        self,
        records: Sequence[AlertRecord],
        *,
        now_ms: int,
        request_id: str = "",
        gathered: bool = False,
        own: bool = False,
    ) -> list[PutOutcome]:
        if not records:
            return []
        if self._closing or self._writer_db is None:
            raise nothing_written(
                StoreClosed(f"the store {self.path} is closed: the node is stopping")
            )
        write = Write(records, now_ms, request_id)
        # Gathered puts all queue: the first committing alone on the loop would leave the
        # rest a second commit.
        if len(records) == 1 and not gathered and self._sparse():
            if own and (refused := unchained(records, self._chains.holds, set())):
                raise refused  # nothing queued nor committing: the chains are current
            try:
                return self._commit_inline(write)
            except WriteLockBusy:  # another connection writes: the writer waits for it
                pass
            except Exception as exc:
                if not wrote_nothing(exc):  # the writer thread is idle: read here, at once
                    self._take_in(self._read_after_doubt())
                raise
        done: asyncio.Future[list[PutOutcome]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Put(write, done, own))
        return await done

    def _sparse(self) -> bool:
        """Whether a single put may commit on the loop's own thread: the writer holds
        nothing (no put queued or committing, no index move), the last commit ended
        SPARSE_GAP_S ago or more, and one-alert commits have been quick (under
        SLOW_COMMIT_S on average). A sparse stream then skips two thread hops and two
        loop wake-ups per commit; a dense one keeps the writer thread, so the loop is
        not held up while other work waits (measured: committing on the loop whenever
        the writer was idle cost a 170/s stream its pace), nor on a slow disk."""
        return (
            not self._writer_busy
            and not self._closing
            and not self._in_doubt
            and self._queue.empty()
            and self._commit_s < SLOW_COMMIT_S
            and self._clock() - self._last_commit_end >= SPARSE_GAP_S
        )

    def _commit_inline(self, write: Write) -> list[PutOutcome]:
        assert self._writer_db is not None
        start = self._clock()
        try:
            done: Committed = self._writer_db.write(
                [write], self._chains, self._last_local_seq, wait=False
            )
        finally:
            self._last_commit_end = self._clock()
        self._took(self._last_commit_end - start)
        self.inline_commits += 1
        if self._writer_db.merge_due:  # the move runs on the writer's thread, after this
            self._queue.put_nowait(_Chore.MERGE)
        self._unchecked += 1
        if self._unchecked >= CHECKPOINT_COMMITS:
            self._unchecked = 0
            self._queue.put_nowait(_Chore.CHECKPOINT)
        return self._committed([write], done)[0]

    async def _writer(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            self._writer_busy = True
            try:
                if isinstance(first, ReadBack):
                    if self._in_doubt:
                        self._take_in(await self._on_writer_thread(self._read_after_doubt))
                    first.answer()
                    continue
                if first is _Chore.MERGE:
                    await self._merge_if_due()
                    continue
                if first is _Chore.CHECKPOINT:
                    await self._checkpoint()
                    continue
                if await self._commit_queued(first):
                    return
            finally:
                self._writer_busy = False
                self._last_commit_end = self._clock()

    async def _commit_queued(self, first: _Put) -> bool:
        """Commit `first` and what queued behind it in one transaction; True at the stop."""
        batch = [first]
        rows = len(first.write.records)
        stop = False
        waiters: list[ReadBack] = []
        while rows < self._batch_rows and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                stop = True
                break
            # The move follows this commit anyway, and the commit checkpoints if the WAL
            # (with the loop's commits in it) has grown past CHECKPOINT_BYTES.
            if isinstance(item, _Chore):
                continue
            if isinstance(item, ReadBack):  # answered by this batch's read-back
                waiters.append(item)
                continue
            batch.append(item)
            rows += len(item.write.records)
        read = not self._in_doubt or self._take_in(
            await self._on_writer_thread(self._read_after_doubt)
        )
        for waiter in waiters:
            waiter.answer()
        if not read:
            answer_puts(batch, unread_doubt())
            return stop
        batch = refuse_unchained(batch, self._chains.holds)
        if not batch:
            return stop
        try:
            results = await self._write([put.write for put in batch])
        except Exception as exc:  # a failed transaction fails every put in it
            if not wrote_nothing(exc):  # before the puts fail: a publish signs on what is true
                self._take_in(await self._on_writer_thread(self._read_after_doubt))
            answer_puts(batch, exc)
        else:
            answer_puts(batch, results)
            await self._merge_if_due()
        return stop

    async def _merge_if_due(self) -> None:
        """Move full index levels down, after the puts are answered: a move delays the
        next commit (tens of milliseconds every ~9,000 alerts, a few hundred every
        ~180,000 once the store is large), never an answer. A move that fails changes
        nothing; it is logged and tried again later."""
        writer = self._writer_db
        if writer is None or not writer.merge_due:
            return
        try:
            await self._on_writer_thread(writer.merge)
        except Exception:
            log.exception("moving index rows down failed; the store works on and retries later")

    async def _checkpoint(self) -> None:
        writer = self._writer_db
        if writer is None:
            return
        try:
            await self._on_writer_thread(writer.checkpoint)
        except Exception:
            log.exception("copying the WAL back into the store failed; retried later")

    async def _write(self, batch: list[Write]) -> list[list[PutOutcome]]:
        assert self._writer_db is not None
        done: Committed
        done, took = await self._on_writer_thread(
            self._timed_write, self._writer_db, batch, self._chains, self._last_local_seq
        )
        if len(batch) == 1 and len(batch[0].records) == 1:  # what the loop path commits
            self._took(took)
        return self._committed(batch, done)

    def _timed_write(
        self, writer: Writer, batch: list[Write], chains: Chains, last_local_seq: int
    ) -> tuple[Committed, float]:
        """On the writer's thread: the commit, and how long it took there."""
        start = self._clock()
        done = writer.write(batch, chains, last_local_seq)
        return done, self._clock() - start

    def _took(self, seconds: float) -> None:
        """A one-alert commit took `seconds`: while they average SLOW_COMMIT_S or more,
        single puts go to the writer thread, whose commits keep the average current."""
        self._commit_s += COMMIT_WEIGHT * (seconds - self._commit_s)
