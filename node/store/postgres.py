"""The PostgreSQL store (asyncpg), for a member whose store outlives one machine and
whose reads scale out over several API processes (`alertmesh serve-api`).

Same promise as the SQLite store: `put` returns only once its transaction has
committed (PostgreSQL's WAL is flushed at commit with the default
`synchronous_commit = on`), and every write goes through one writer task that
commits whole batches at once (group commit) on its own connection. Reads use a
small connection pool.

One writer per database: the writing node holds a session advisory lock for as long
as it runs, so a second node pointed at the same database refuses to start instead of
interleaving positions (`local_seq`) with the first. Readers (`follow=True`, the
serve-api processes) never write; they LISTEN on a channel the writer NOTIFYs inside
each commit, and catch up their in-memory chain state from the rows above the last
position they saw (also every POLL_S, in case a notification is lost with a
connection). Positions are assigned by the one writer in commit order, so "rows
above my last position" never skips a row.

Indicator keys are indexed as the same 64-bit hashes as in SQLite (key_hash), in
one btree; a hit is confirmed against the alert's own key text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import asyncpg

from node.core.alerts import AlertRecord
from node.core.chain import Chains
from node.core.errors import ConfigError, StoreClosed
from node.store.base import (
    PutOutcome,
    ReadBack,
    answer_puts,
    nothing_written,
    read_back_by_writer,
    refuse_unchained,
    wrote_nothing,
)
from node.store.postgres_reads import PostgresReads
from node.store.postgres_url import redacted, scrub
from node.store.postgres_writer import CHANNEL, WRITER_LOCK, Put, check_version, migrate, write

log = logging.getLogger(__name__)

POLL_S = 2.0  # a reader's catch-up without a notification
POOL_SIZE = 8
CONNECT_TIMEOUT_S = 10.0
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class PostgresStore(PostgresReads):
    """An AlertStore in a PostgreSQL database at `url`.

    `follow=True`: a reader (serve-api) that never writes and follows the writer's
    commits; `on_change` is called after it has caught up with new ones.
    """

    def __init__(
        self,
        url: str,
        *,
        follow: bool = False,
        batch_rows: int = 8000,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self.url = url
        self.follow = follow
        self.on_change: Callable[[], None] = lambda: None
        self._batch_rows = batch_rows
        self._pool_size = pool_size
        self._chains = Chains()
        self._queue: asyncio.Queue[Put | ReadBack | None] = asyncio.Queue()
        self._stack = contextlib.AsyncExitStack()
        self._pool: asyncpg.Pool | None = None
        self._wdb: asyncpg.Connection | None = None
        self._last_local_seq = 0
        self._reconnected: list[asyncpg.Connection] = []
        self._count = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._catching_up = asyncio.Lock()
        # A commit failed in doubt (the connection lost during COMMIT): the next one first
        # reads what committed meanwhile, so that the chains it checks against are true.
        self._in_doubt = False
        self._closing = False  # the writer's stop is queued: puts are refused

    @property
    def chains(self) -> Chains:
        return self._chains

    def _problem(self, exc: BaseException) -> ConfigError:
        return ConfigError(
            f"cannot open the store {redacted(self.url)}: {scrub(str(exc), self.url)};"
            " check [store] url in config.toml and that the server runs"
        )

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            try:
                setup = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
            except (*DB_ERRORS, ValueError) as exc:
                raise self._problem(exc) from None
            stack.push_async_callback(setup.close)
            if not self.follow:
                if not await setup.fetchval("SELECT pg_try_advisory_lock($1)", WRITER_LOCK):
                    raise ConfigError(
                        f"another node writes the store {redacted(self.url)}; one node writes"
                        " a database, API processes (alertmesh serve-api) only read it"
                    )
                await migrate(setup, self.url)
                self._wdb = setup  # holds the lock as long as the store is open
            else:
                await check_version(setup, self.url, follow=self.follow)
            try:
                self._pool = await asyncpg.create_pool(
                    self.url, min_size=1, max_size=self._pool_size, timeout=CONNECT_TIMEOUT_S
                )
            except DB_ERRORS as exc:
                raise self._problem(exc) from None
            stack.push_async_callback(self._pool.close)
            await self._catch_up()
            tg = await stack.enter_async_context(asyncio.TaskGroup())
            if self.follow:
                await setup.add_listener(CHANNEL, self._notified)
                tg.create_task(self._follower(), name="store-follower")
                stack.callback(self._wake.set)  # ... after the follower is told to stop
                stack.callback(setattr, self, "_stopping", True)
            else:
                tg.create_task(self._writer(), name="store-writer")
                stack.push_async_callback(self._stop_writer)  # stop the writer first
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
        for db in self._reconnected:
            await db.close()

    async def _catch_up(self) -> None:
        """Add the rows above the last position seen to the chain state."""
        async with self._catching_up, self._readers.acquire() as db:
            rows = await db.fetch(
                "SELECT local_seq, origin, seq FROM alerts WHERE local_seq > $1 ORDER BY local_seq",
                self._last_local_seq,
            )
            for local_seq, origin, seq in rows:
                self._chains.add(origin, seq)
                self._last_local_seq = local_seq
            self._count += len(rows)
        if rows:
            self.on_change()

    async def _resolve_doubt(self) -> None:
        """After a COMMIT in doubt: read what committed, before its puts fail, so that a
        publish after them signs on what the database holds. If the database does not
        answer now, the next commit reads it first (`_in_doubt`)."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await self._catch_up_if_behind()
        except DB_ERRORS as exc:
            log.warning(
                "cannot read the store after a failed commit: %s", scrub(str(exc), self.url)
            )
        else:
            self._in_doubt = False

    # -- a reader following the writer --------------------------------------

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _follower(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self._catch_up()
            except DB_ERRORS as exc:
                log.warning("cannot read new alerts from the store: %s", scrub(str(exc), self.url))

    # -- writes ------------------------------------------------------------

    async def put(
        self,
        records: Sequence[AlertRecord],
        *,
        now_ms: int,
        request_id: str = "",
        gathered: bool = False,  # every put queues for the group commit here
        own: bool = False,
    ) -> list[PutOutcome]:
        if self.follow:
            raise nothing_written(
                ConfigError("this process only reads the store; the writing node stores alerts")
            )
        if not records:
            return []
        if self._closing:
            raise nothing_written(StoreClosed("the store is closed: the node is stopping"))
        done: asyncio.Future[list[PutOutcome]] = asyncio.get_running_loop().create_future()
        await self._queue.put(Put(records, now_ms, request_id, done, own))
        return await done

    async def settle_doubt(self) -> None:
        """A commit in doubt not yet read back is read back now, by the writer, between
        its commits (AlertStore.settle_doubt)."""
        if not self._in_doubt or self.follow:
            return
        await read_back_by_writer(self._queue, self._closing, lambda: self._in_doubt)

    async def _stop_writer(self) -> None:
        """Refuse new puts, then let the writer finish what is queued before it stops."""
        self._closing = True
        await self._queue.put(None)

    async def _writer(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            if isinstance(first, ReadBack):
                if self._in_doubt:
                    await self._resolve_doubt()
                first.answer()
                continue
            batch = [first]
            rows = len(first.records)
            stop = False
            waiters: list[ReadBack] = []  # answered once this batch has read back
            while rows < self._batch_rows and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
                if isinstance(item, ReadBack):
                    waiters.append(item)
                    continue
                batch.append(item)
                rows += len(item.records)
            writing = False
            try:
                if self._wdb is None or self._wdb.is_closed():
                    await self._reconnect_writer()
                if self._in_doubt:
                    await self._catch_up_if_behind()
                    self._in_doubt = False
                batch = refuse_unchained(batch, self._chains.holds)
                writing = True
                results = await self._write(batch) if batch else []
            except Exception as exc:  # a failed transaction fails every put in it
                if not writing:
                    nothing_written(exc)
                elif not wrote_nothing(exc):
                    self._in_doubt = True
                    await self._resolve_doubt()
                answer_puts(batch, exc)
            else:
                answer_puts(batch, results)
            for waiter in waiters:
                waiter.answer()
            if stop:
                return

    async def _reconnect_writer(self) -> None:
        """The writer's connection dropped (a server restart, a terminated backend), and
        with it the writer lock. Connect again and take the lock again, then read what
        committed meanwhile (a COMMIT whose answer was lost, too), or raise so that this
        batch fails; the next one tries again. While another writer holds the lock (or
        this node's dropped backend, not yet ended), each batch fails the same way and
        the log says why: two writers would corrupt the positions."""
        log.warning("the store's connection is gone; connecting again")
        # The client's error names no host nor user (the operator's log line does), and is
        # UNAVAILABLE: the next batch tries again.
        unavailable = StoreClosed(
            "the node cannot write to its store now (the node's log has details); send it again"
        )
        try:
            db = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
        except (*DB_ERRORS, ValueError) as exc:
            log.error("%s", self._problem(exc))
            raise unavailable from None
        if not await db.fetchval("SELECT pg_try_advisory_lock($1)", WRITER_LOCK):
            # Another writer, or this node's own old backend not yet gone: write nothing
            # without the lock; the next batch tries again.
            await db.close()
            log.error(
                "the writer lock of %s is held elsewhere (another node, or this node's "
                "dropped connection not yet ended by the server); not writing",
                redacted(self.url),
            )
            raise unavailable
        self._reconnected.append(db)
        self._wdb = db
        await self._catch_up_if_behind()

    async def _write(self, batch: list[Put]) -> list[list[PutOutcome]]:
        db = self._wdb
        assert db is not None
        per_put, self._last_local_seq, added = await write(
            db, batch, self._chains, self._last_local_seq
        )
        self._count += added
        return per_put

    async def analyze(self) -> None:
        """Refresh the planner's statistics (after a bulk load)."""
        assert self._wdb is not None, "a reader does not analyze"
        await self._wdb.execute("ANALYZE")

    # -- reads of the store's own state (its queries: postgres_reads.py) ---

    async def count(self) -> int:
        return self._count

    async def last_cursor(self) -> int:
        if self.follow:  # the writer may be ahead of the last notification
            await self._catch_up_if_behind()
        return self._last_local_seq

    async def _catch_up_if_behind(self) -> None:
        top = await self._fetch("SELECT COALESCE(max(local_seq), 0) FROM alerts")
        if top[0][0] > self._last_local_seq:
            await self._catch_up()
