"""The PostgreSQL store's tables, their version, and its write transaction (one group
commit of several puts; node/store/postgres.py runs the writer task that batches them)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from node.core.alerts import AlertRecord
from node.core.chain import Chains
from node.core.errors import ConfigError
from node.store.base import PutOutcome, classify, nothing_written
from node.store.postgres_url import redacted
from node.store.sqlite_writer import key_hash

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
CHANNEL = "alertmesh_alerts"
WRITER_LOCK = 0x616C6D6573680001  # pg_advisory_lock key of the one writer ("almesh" 1)
COPY_ROWS = 64  # from this many rows, COPY instead of INSERT
IN_DOUBT_SQLSTATES = frozenset({"08", "57", "XX"})  # classes a landed COMMIT may end with


@dataclass(slots=True)
class Put:
    """One put() waiting for the writer task: its records and the future of its outcomes."""

    records: Sequence[AlertRecord]
    now_ms: int
    request_id: str
    done: asyncio.Future[list[PutOutcome]]
    own: bool = False  # this node's own alerts: refused unless they follow what is held


async def check_version(db: asyncpg.Connection, url: str, *, follow: bool) -> None:
    """Refuse a database of a newer schema, and (`follow`) one with no tables yet."""
    exists = await db.fetchval("SELECT to_regclass('alertmesh_schema') IS NOT NULL")
    version = await db.fetchval("SELECT max(version) FROM alertmesh_schema") if exists else 0
    if version and version > SCHEMA_VERSION:
        raise ConfigError(
            f"{redacted(url)} was written by a newer alertmesh (store schema {version};"
            f" this version reads {SCHEMA_VERSION}); run the newer version"
        )
    if follow and not version:
        raise ConfigError(
            f"the store {redacted(url)} has no alertmesh tables yet; start the"
            " writing node (alertmesh run) on it first"
        )


async def migrate(db: asyncpg.Connection, url: str) -> None:
    """Create the tables, or upgrade them, in one transaction."""
    await check_version(db, url, follow=False)
    async with db.transaction():
        await db.execute(SCHEMA)
        await db.execute("DELETE FROM alertmesh_schema")
        await db.execute("INSERT INTO alertmesh_schema VALUES ($1)", SCHEMA_VERSION)


async def write(
    db: asyncpg.Connection, batch: list[Put], chains: Chains, last_local_seq: int
) -> tuple[list[list[PutOutcome]], int, int]:
    """Commit `batch` in one transaction: each put's outcomes, the last position and how
    many alerts were added. `chains` takes the added alerts' slots once committed.
    A failure before the COMMIT was sent, or one the server answered the COMMIT with,
    wrote nothing and is marked so (base.nothing_written); any other failure of the
    COMMIT (the connection lost) is in doubt and left unmarked."""
    records = [r for put in batch for r in put.records]
    # An id can be held only if its (origin, seq) slot is: most records need no query.
    taken = list({r.id for r in records if chains.holds(r.origin, r.seq)})
    held: set[bytes] = set()
    known: set[bytes] = set()
    if taken:
        held = {row[0] for row in await db.fetch("SELECT id FROM alerts WHERE id = ANY($1)", taken)}
        rest = [i for i in taken if i not in held]
        known = {
            row[0]
            for row in await db.fetch(
                "SELECT second_id FROM equivocations WHERE second_id = ANY($1)", rest
            )
        }
    outcomes = classify(records, held=held, known_equivocations=known, holds=chains.holds)
    alert_rows: list[tuple[Any, ...]] = []
    key_rows: list[tuple[int, int]] = []
    equivocation_rows: list[tuple[Any, ...]] = []
    per_put: list[list[PutOutcome]] = []
    local_seq = last_local_seq
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
    committing = False  # the block has run: what fails now is the COMMIT
    try:
        async with db.transaction():
            await insert(db, "alerts", ALERT_COLUMNS, alert_rows)
            await insert(db, "alert_keys", ("key", "local_seq"), key_rows)
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
            committing = True
    except BaseException as exc:
        # Never sent, or the server refused the COMMIT (it rolled back); a connection
        # lost during the COMMIT leaves it in doubt (unmarked).
        if not committing or _refused(exc):
            nothing_written(exc)
        raise
    for row in alert_rows:
        chains.add(row[2], row[3])
    return per_put, local_seq, len(alert_rows)


def _refused(exc: BaseException) -> bool:
    """Whether `exc`, the failure of a COMMIT, is the server's refusal (it rolled back).
    Not: a connection exception (SQLSTATE class 08, which asyncpg also raises itself when
    the connection drops), operator intervention (57, a terminated backend) or an
    internal error (XX): the COMMIT may have landed before them."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and sqlstate[:2] not in IN_DOUBT_SQLSTATES


async def insert(
    db: asyncpg.Connection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Add `rows` to `table`: by COPY from COPY_ROWS rows on, else by INSERT."""
    if len(rows) >= COPY_ROWS:
        await db.copy_records_to_table(table, records=rows, columns=list(columns))
    elif rows:
        marks = ", ".join(f"${i + 1}" for i in range(len(columns)))
        await db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
