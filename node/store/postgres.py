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
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import asyncpg

from node._pb.alertmesh.v1.alert_pb2 import Alert
from node.core.alerts import AlertRecord, make_record
from node.core.chain import Chains
from node.core.errors import ConfigError
from node.store.base import (
    Equivocation,
    Held,
    PutOutcome,
    Query,
    Stored,
    classify,
    record_from_row,
)
from node.store.sqlite_writer import key_hash

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS alertmesh_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    local_seq      bigint PRIMARY KEY,
    id             bytea NOT NULL UNIQUE,
    origin         bytea NOT NULL,
    seq            bigint NOT NULL,
    prev           bytea NOT NULL,
    created_at_ms  bigint NOT NULL,
    expires_at_ms  bigint NOT NULL,
    category       integer NOT NULL,
    severity       integer NOT NULL,
    confidence     integer NOT NULL,
    title          text NOT NULL,
    index_keys     text[] NOT NULL,
    received_at_ms bigint NOT NULL,
    body           bytea NOT NULL,
    signature      bytea NOT NULL,
    UNIQUE (origin, seq)
);
CREATE TABLE IF NOT EXISTS alert_keys (
    key       bigint NOT NULL,
    local_seq bigint NOT NULL,
    PRIMARY KEY (key, local_seq)
);
CREATE TABLE IF NOT EXISTS equivocations (
    n              bigserial,
    origin         bytea NOT NULL,
    seq            bigint NOT NULL,
    second_id      bytea PRIMARY KEY,
    first_id       bytea NOT NULL,
    body           bytea NOT NULL,
    signature      bytea NOT NULL,
    index_keys     text[] NOT NULL,
    detected_at_ms bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS publish_requests (
    request_id text PRIMARY KEY,
    alert_id   bytea NOT NULL
);
"""
ALERT_COLUMNS = (
    "local_seq", "id", "origin", "seq", "prev", "created_at_ms", "expires_at_ms", "category",
    "severity", "confidence", "title", "index_keys", "received_at_ms", "body", "signature",
)  # fmt: skip
RECORD = (
    "id, body, signature, origin, seq, prev, created_at_ms, expires_at_ms, category, severity,"
    " confidence, title, index_keys"
)
STORED = f"local_seq, received_at_ms, {RECORD}"
ALIASED = ", ".join(f"a.{c.strip()}" for c in STORED.split(","))
CHANNEL = "alertmesh_alerts"
WRITER_LOCK = 0x616C6D6573680001  # pg_advisory_lock key of the one writer ("almesh" 1)
POLL_S = 2.0  # a reader's catch-up without a notification
COPY_ROWS = 64  # from this many rows, COPY instead of INSERT
LOOKUP_CHUNK = 10_000
POOL_SIZE = 8
CONNECT_TIMEOUT_S = 10.0
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


Row = Sequence[Any] | asyncpg.Record


SECRET_PARAMETERS = ("password", "sslpassword")  # libpq's, which asyncpg also reads


def _secrets(url: str) -> list[str]:
    """The secrets `url` carries: the password of user:password@, and the values of
    ?password= and ?sslpassword= (both raw and percent-decoded)."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return [url]
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in SECRET_PARAMETERS:
            found += [value, quote(value, safe="")]
    return [s for s in found if s]


def redacted(url: str) -> str:
    """`url` with its passwords replaced by ***, for every message and log line."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://***"
    query = "&".join(
        f"{k}=***" if k.lower() in SECRET_PARAMETERS else f"{k}={v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _scrub(text: str, url: str) -> str:
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def _record(row: Row) -> AlertRecord:
    """The columns are AlertRecord's fields in order (RECORD); keys are an array."""
    return record_from_row(row, tuple(row[12]))


def _stored(row: Row) -> Stored:
    return Stored(_record(row[2:]), local_seq=row[0], received_at_ms=row[1])


@dataclass(slots=True)
class _Put:
    records: Sequence[AlertRecord]
    now_ms: int
    request_id: str
    done: asyncio.Future[list[PutOutcome]]


class PostgresStore:
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
        self._queue: asyncio.Queue[_Put | None] = asyncio.Queue()
        self._stack = contextlib.AsyncExitStack()
        self._pool: asyncpg.Pool | None = None
        self._wdb: asyncpg.Connection | None = None
        self._last_local_seq = 0
        self._reconnected: list[asyncpg.Connection] = []
        self._count = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._catching_up = asyncio.Lock()

    @property
    def chains(self) -> Chains:
        return self._chains

    @property
    def _readers(self) -> asyncpg.Pool:
        assert self._pool is not None, "store is not open"
        return self._pool

    def _problem(self, exc: BaseException) -> ConfigError:
        return ConfigError(
            f"cannot open the store {redacted(self.url)}: {_scrub(str(exc), self.url)};"
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
                await self._migrate(setup)
                self._wdb = setup  # holds the lock as long as the store is open
            else:
                await self._check_version(setup)
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
                stack.push_async_callback(self._queue.put, None)  # stop the writer first
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

    async def _check_version(self, db: asyncpg.Connection) -> None:
        exists = await db.fetchval("SELECT to_regclass('alertmesh_schema') IS NOT NULL")
        version = await db.fetchval("SELECT max(version) FROM alertmesh_schema") if exists else 0
        if version and version > SCHEMA_VERSION:
            raise ConfigError(
                f"{redacted(self.url)} was written by a newer alertmesh (store schema {version};"
                f" this version reads {SCHEMA_VERSION}); run the newer version"
            )
        if self.follow and not version:
            raise ConfigError(
                f"the store {redacted(self.url)} has no alertmesh tables yet; start the"
                " writing node (alertmesh run) on it first"
            )

    async def _migrate(self, db: asyncpg.Connection) -> None:
        """Create the tables, or upgrade them, in one transaction."""
        await self._check_version(db)
        async with db.transaction():
            await db.execute(SCHEMA)
            await db.execute("DELETE FROM alertmesh_schema")
            await db.execute("INSERT INTO alertmesh_schema VALUES ($1)", SCHEMA_VERSION)

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
                log.warning("cannot read new alerts from the store: %s", _scrub(str(exc), self.url))

    # -- writes ------------------------------------------------------------

    async def put(
        self, records: Sequence[AlertRecord], *, now_ms: int, request_id: str = ""
    ) -> list[PutOutcome]:
        if self.follow:
            raise ConfigError("this process only reads the store; the writing node stores alerts")
        if not records:
            return []
        done: asyncio.Future[list[PutOutcome]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Put(records, now_ms, request_id, done))
        return await done

    async def _writer(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            rows = len(first.records)
            stop = False
            while rows < self._batch_rows and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
                batch.append(item)
                rows += len(item.records)
            try:
                if self._wdb is None or self._wdb.is_closed():
                    await self._reconnect_writer()
                results = await self._write(batch)
            except Exception as exc:  # a failed transaction fails every put in it
                for put in batch:
                    if not put.done.done():
                        put.done.set_exception(exc)
            else:
                for put, outcomes in zip(batch, results, strict=True):
                    if not put.done.done():
                        put.done.set_result(outcomes)
            if stop:
                return

    async def _reconnect_writer(self) -> None:
        """The writer's connection dropped (a server restart, a terminated backend), and
        with it the writer lock. Connect again and take the lock again, then read what
        committed meanwhile (a COMMIT whose answer was lost, too), or raise so that this
        batch fails; the next one tries again. If another writer took the lock, every
        put fails from now on and says so: two writers would corrupt the positions."""
        log.warning("the store's connection is gone; connecting again")
        try:
            db = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
        except (*DB_ERRORS, ValueError) as exc:
            raise self._problem(exc) from None
        if not await db.fetchval("SELECT pg_try_advisory_lock($1)", WRITER_LOCK):
            # Another writer, or this node's own old backend not yet gone: write nothing
            # without the lock; the next batch tries again.
            await db.close()
            error = ConfigError(
                f"the writer lock of {redacted(self.url)} is held elsewhere (another node, or "
                "this node's dropped connection not yet ended by the server); not writing"
            )
            log.error("%s", error)
            raise error
        self._reconnected.append(db)
        self._wdb = db
        await self._catch_up_if_behind()

    async def _write(self, batch: list[_Put]) -> list[list[PutOutcome]]:
        db = self._wdb
        assert db is not None
        records = [r for put in batch for r in put.records]
        # An id can be held only if its (origin, seq) slot is: most records need no query.
        taken = list({r.id for r in records if self._chains.holds(r.origin, r.seq)})
        held: set[bytes] = set()
        known: set[bytes] = set()
        if taken:
            held = {
                row[0] for row in await db.fetch("SELECT id FROM alerts WHERE id = ANY($1)", taken)
            }
            rest = [i for i in taken if i not in held]
            known = {
                row[0]
                for row in await db.fetch(
                    "SELECT second_id FROM equivocations WHERE second_id = ANY($1)", rest
                )
            }
        outcomes = classify(records, held=held, known_equivocations=known, holds=self._chains.holds)
        alert_rows: list[tuple[Any, ...]] = []
        key_rows: list[tuple[int, int]] = []
        equivocation_rows: list[tuple[Any, ...]] = []
        per_put: list[list[PutOutcome]] = []
        local_seq = self._last_local_seq
        start = 0
        for put in batch:
            mine = outcomes[start : start + len(put.records)]
            start += len(put.records)
            per_put.append(mine)
            for r, outcome in zip(put.records, mine, strict=True):
                if outcome is PutOutcome.ACCEPTED:
                    local_seq += 1
                    alert_rows.append(
                        (local_seq, r.id, r.origin, r.seq, r.prev, r.created_at_ms,
                         r.expires_at_ms, r.category, r.severity, r.confidence, r.title,
                         list(r.index_keys), put.now_ms, r.body, r.signature)
                    )  # fmt: skip
                    key_rows += [(k, local_seq) for k in {key_hash(k) for k in r.index_keys}]
                elif outcome is PutOutcome.EQUIVOCATION:
                    equivocation_rows.append(
                        (r.origin, r.seq, r.id, r.body, r.signature, list(r.index_keys),
                         put.now_ms)
                    )  # fmt: skip
        requests = [(put.request_id, put.records[0].id) for put in batch if put.request_id]
        async with db.transaction():
            await self._insert(db, "alerts", ALERT_COLUMNS, alert_rows)
            await self._insert(db, "alert_keys", ("key", "local_seq"), key_rows)
            if equivocation_rows:
                # The first copy is whichever this store accepted for that slot (maybe in
                # this batch).
                await db.executemany(
                    "INSERT INTO equivocations (origin, seq, second_id, first_id, body,"
                    " signature, index_keys, detected_at_ms) SELECT $1, $2, $3, id, $4, $5,"
                    " $6, $7 FROM alerts WHERE origin = $1 AND seq = $2"
                    " ON CONFLICT DO NOTHING",
                    equivocation_rows,
                )
            if requests:
                await db.executemany(
                    "INSERT INTO publish_requests VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    requests,
                )
            if alert_rows:  # delivered to the readers at commit
                await db.execute("SELECT pg_notify($1, $2)", CHANNEL, str(local_seq))
        self._last_local_seq = local_seq
        self._count += len(alert_rows)
        for row in alert_rows:
            self._chains.add(row[2], row[3])
        return per_put

    @staticmethod
    async def _insert(
        db: asyncpg.Connection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> None:
        if len(rows) >= COPY_ROWS:
            await db.copy_records_to_table(table, records=rows, columns=list(columns))
        elif rows:
            marks = ", ".join(f"${i + 1}" for i in range(len(columns)))
            await db.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
            )

    async def analyze(self) -> None:
        """Refresh the planner's statistics (after a bulk load)."""
        assert self._wdb is not None, "a reader does not analyze"
        await self._wdb.execute("ANALYZE")

    # -- reads -------------------------------------------------------------

    async def _fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        async with self._readers.acquire() as db:
            rows: list[asyncpg.Record] = await db.fetch(sql, *params)
            return rows

    async def get(self, alert_id: bytes) -> Stored | None:
        rows = await self._fetch(f"SELECT {STORED} FROM alerts WHERE id = $1", alert_id)
        return _stored(rows[0]) if rows else None

    async def missing(self, ids: Collection[bytes]) -> set[bytes]:
        wanted = list(set(ids))
        if not wanted:
            return set()
        rows = await self._fetch("SELECT id FROM alerts WHERE id = ANY($1)", wanted)
        return set(wanted) - {row[0] for row in rows}

    async def held(self, ids: Collection[bytes]) -> dict[bytes, Held]:
        wanted = list(set(ids))
        if not wanted:
            return {}
        rows = await self._fetch(
            "SELECT id, signature, origin, seq FROM alerts WHERE id = ANY($1)", wanted
        )
        return {row[0]: Held(row[1], row[2], row[3]) for row in rows}

    @staticmethod
    def _where(query: Query, params: list[Any]) -> list[str]:
        def arg(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        clauses: list[str] = []
        if query.categories:
            clauses.append(f"category = ANY({arg(sorted(query.categories))}::integer[])")
        if query.origins:
            clauses.append(f"origin = ANY({arg(sorted(query.origins))}::bytea[])")
        if query.min_severity:
            clauses.append(f"severity >= {arg(query.min_severity)}")
        if query.since_ms:
            clauses.append(f"created_at_ms >= {arg(query.since_ms)}")
        if query.until_ms:
            clauses.append(f"created_at_ms < {arg(query.until_ms)}")
        if query.keys or query.any_key:
            hashes = sorted({key_hash(k) for k in query.keys})
            clauses.append(
                f"local_seq IN (SELECT local_seq FROM alert_keys"
                f" WHERE key = ANY({arg(hashes)}::bigint[]))"
            )
        if not query.include_expired:
            clauses.append(f"(expires_at_ms = 0 OR expires_at_ms > {arg(query.now_ms)})")
        return clauses

    async def search(self, query: Query, *, limit: int, before: int | None = None) -> list[Stored]:
        params: list[Any] = []
        clauses = self._where(query, params)
        if before is not None:
            params.append(before)
            clauses.append(f"local_seq < ${len(params)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit)
        rows = await self._fetch(
            f"SELECT {STORED} FROM alerts {where} ORDER BY local_seq DESC LIMIT ${len(params)}",
            *params,
        )
        return [_stored(row) for row in rows]

    async def after(self, query: Query, *, cursor: int, limit: int) -> list[Stored]:
        params: list[Any] = []
        clauses = self._where(query, params)
        params.append(cursor)
        clauses.append(f"local_seq > ${len(params)}")
        params.append(limit)
        rows = await self._fetch(
            f"SELECT {STORED} FROM alerts WHERE {' AND '.join(clauses)}"
            f" ORDER BY local_seq ASC LIMIT ${len(params)}",
            *params,
        )
        return [_stored(row) for row in rows]

    async def lookup(
        self, keys: Collection[str], *, now_ms: int, include_expired: bool = False
    ) -> dict[str, list[Stored]]:
        if not keys:
            return {}
        asked: dict[int, list[str]] = {}  # several keys per hash only on a collision
        for key in keys:
            asked.setdefault(key_hash(key), []).append(key)
        hashes = sorted(asked)
        sql = (
            f"SELECT k.key, {ALIASED} FROM alert_keys k JOIN alerts a"
            " ON a.local_seq = k.local_seq WHERE k.key = ANY($1::bigint[])"
        )
        if not include_expired:
            sql += " AND (a.expires_at_ms = 0 OR a.expires_at_ms > $2)"
        found: dict[str, list[Stored]] = {}
        for i in range(0, len(hashes), LOOKUP_CHUNK):
            params: list[Any] = [hashes[i : i + LOOKUP_CHUNK]]
            if not include_expired:
                params.append(now_ms)
            for row in await self._fetch(sql, *params):
                stored = _stored(row[1:])
                for key in asked[row[0]]:
                    if key in stored.record.index_keys:  # not a hash collision
                        found.setdefault(key, []).append(stored)
        for hits in found.values():
            hits.sort(key=lambda stored: stored.local_seq)
        return found

    async def range(
        self, origin: bytes, from_seq: int, to_seq: int, *, limit: int
    ) -> list[AlertRecord]:
        rows = await self._fetch(
            f"SELECT {RECORD} FROM alerts WHERE origin = $1 AND seq BETWEEN $2 AND $3"
            " ORDER BY seq LIMIT $4",
            origin,
            from_seq,
            to_seq,
            limit,
        )
        return [_record(row) for row in rows]

    async def request(self, request_id: str) -> bytes | None:
        rows = await self._fetch(
            "SELECT alert_id FROM publish_requests WHERE request_id = $1", request_id
        )
        return bytes(rows[0][0]) if rows else None

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

    async def equivocations(self) -> list[Equivocation]:
        rows = await self._fetch(
            "SELECT e.detected_at_ms, e.body, e.signature, e.index_keys,"
            f" {', '.join('a.' + c.strip() for c in RECORD.split(','))}"
            " FROM equivocations e JOIN alerts a ON a.origin = e.origin AND a.seq = e.seq"
            " ORDER BY e.n"
        )
        out = []
        for row in rows:
            first = _record(row[4:])
            second = make_record(row[1], row[2], Alert.FromString(row[1]), tuple(row[3]))
            out.append(Equivocation(first, second, row[0]))
        return out


def is_url(text: str) -> bool:
    """Whether a store setting names a PostgreSQL database rather than a file."""
    return re.match(r"postgres(ql)?://", text) is not None
