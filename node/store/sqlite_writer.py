"""The SQLite store's tables, and its write transaction, which runs on its own thread.

The writer uses a plain `sqlite3` connection on one dedicated thread and runs each
group commit there from start to finish: the id checks, building the rows (the row
encoder, node/store/sqlite_rows.py), the inserts and the COMMIT. One hop per
transaction instead of one per statement, and the event loop's thread does none of the
per-row work, so it stays free to feed the verifier processes. The exception is a
sparse single put (node/store/sqlite.py, _sparse): the store then runs `write` on the
loop's thread itself, never waiting for a lock (wait=False) nor checkpointing; the
connection is only ever used by one thread at a time (`_alone`).

Indicator keys are indexed as 64-bit hashes (the first 8 bytes of their SHA-256):
the index is a third of the size of one over the key text, and each commit
rewrites fewer pages (bench/store_bench.py). Lookups confirm every hit against the
alert's own key text, so a hash collision can never make an unflagged value look
flagged; a search filter by indicator could in principle (chance about 2^-64 per
pair of keys) return an extra alert.

Both random-keyed indexes, indicator keys and alert ids (by their first 8 bytes),
are kept in three levels, like a small log-structured merge tree. A commit that
inserted random keys straight into one big index would dirty pages all over it, and
each dirty page is written whole to the WAL and again at the checkpoint: the cost
per alert grew with the store (23 -> 74 µs per alert by 300,000 alerts,
`bench/store_bench.py --growth`). New rows go to level 0, which stays small
(LEVEL_ROWS[0] rows, a couple of MiB) and so cheap to change; once full, the writer
moves it into level 1 in one transaction, in key order, touching each page there at
most once; level 1 (at most LEVEL_ROWS[1] rows) moves into the unbounded level 2 the
same way, ten times more rarely. So a move rewrites the pages of a big level about
once per LEVEL_ROWS[1] new rows instead of once per commit. Readers look in every
level; a move is atomic, so a reader sees every row in exactly one of them.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node._pb.alertmesh.v1.alert_pb2 import Alert
from node.core import indicators
from node.core.alerts import AlertRecord, indicator_keys
from node.core.chain import Chains
from node.core.errors import AlertmeshError, ConfigError
from node.store.base import PutOutcome, classify
from node.store.keyfilter import KeyFilter
from node.store.sqlite_rows import ALERT_INSERT, ALERT_WIDTH, encode

# Names the store and its users import from here; they live with the row encoder.
from node.store.sqlite_rows import KEY_SEP as KEY_SEP
from node.store.sqlite_rows import Write as Write
from node.store.sqlite_rows import id64 as id64
from node.store.sqlite_rows import key_hash as key_hash

log = logging.getLogger(__name__)

ALERTS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    local_seq      INTEGER PRIMARY KEY,
    id             BLOB NOT NULL,  -- indexed through alert_ids
    origin         BLOB NOT NULL,
    seq            INTEGER NOT NULL,
    prev           BLOB NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    category       INTEGER NOT NULL,
    severity       INTEGER NOT NULL,
    confidence     INTEGER NOT NULL,
    title          TEXT NOT NULL,
    index_keys     TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    body           BLOB NOT NULL,
    signature      BLOB NOT NULL,
    UNIQUE (origin, seq)
)"""
HASH_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    {key} INTEGER NOT NULL,
    local_seq INTEGER NOT NULL,
    PRIMARY KEY ({key}, local_seq)
) WITHOUT ROWID"""
# The levels of each index, newest first: indicator keys by key_hash(key), alert ids by
# id64(id). A level moves into the next once the two indexes hold LEVEL_ROWS[i] rows in
# it together (level 0: ~9,000 alerts; level 1: ~180,000); the last level is unbounded.
KEY_LEVELS = ("recent_key_hashes", "middle_key_hashes", "indicator_key_hashes")
ID_LEVELS = ("recent_alert_ids", "middle_alert_ids", "alert_ids")
LEVEL_ROWS = (50_000, 1_000_000)  # tuned with bench/store_bench.py --growth
SCHEMA = ";".join(
    [
        ALERTS_TABLE.format(name="alerts"),
        *(HASH_TABLE.format(name=name, key="key") for name in KEY_LEVELS),
        *(HASH_TABLE.format(name=name, key="id64") for name in ID_LEVELS),
        """
CREATE TABLE IF NOT EXISTS equivocations (
    origin         BLOB NOT NULL,
    seq            INTEGER NOT NULL,
    second_id      BLOB NOT NULL PRIMARY KEY,
    first_id       BLOB NOT NULL,
    body           BLOB NOT NULL,
    signature      BLOB NOT NULL,
    index_keys     TEXT NOT NULL,
    detected_at_ms INTEGER NOT NULL
)""",
        """
CREATE TABLE IF NOT EXISTS publish_requests (
    request_id TEXT PRIMARY KEY,
    alert_id   BLOB NOT NULL
)""",
    ]
)
LEVELS = (KEY_LEVELS, ID_LEVELS)
ID_BYTES = 32
ALERT_COLUMNS = (
    "local_seq, id, origin, seq, prev, created_at_ms, expires_at_ms, category, severity,"
    " confidence, title, index_keys, received_at_ms, body, signature"
)
# PRAGMA user_version: 2 = indicator keys indexed as hashes (indicator_key_hashes);
# 3 = new key rows go to recent_key_hashes first; 4 = alert ids indexed the same way
# (alert_ids) instead of by a UNIQUE index on alerts.id (development only); 5 = three
# levels for both (middle_*): a schema 4 binary would not look there; 6 = keys of
# non-ASCII host names (domains, URL hosts, e-mail domains) as UTS #46 / IDNA 2008 maps
# them, no longer IDNA 2003 (the upgrade recomputes them; see _reindex_hosts).
# A file written before versions were recorded (0) kept keys as text in
# indicator_keys. Opening indexes every alert above the highest one indexed, so a file
# an older alertmesh wrote to (it ignores the version) is caught up too, and drops the
# text table.
SCHEMA_VERSION = 6
HOST_TYPES = frozenset({indicators.DOMAIN, indicators.URL, indicators.EMAIL})
MERGE_RETRY_ROWS = 10_000  # after a failed move, new rows before the next try
CHUNK = 500  # ids per IN (...) query
ROWS_PER_INSERT = 50  # rows per multi-row INSERT statement
# The writer's page cache (16 MiB) and page size (16 KiB, for new files). Since the
# levels, a commit touches few pages and a move walks the level below in key order, so
# 16 MiB fills a store as cheaply as 64 MiB did (bench/store_bench.py --growth to
# 400,000: 26-41 µs per alert against 31-50, same run) and the node is 48 MiB smaller.
CACHE_KIB = 16384
PAGE_BYTES = 16384
CHECKPOINT_BYTES = 40 << 20  # copy the WAL back into the database past this size


def _all_distinct(records: Sequence[AlertRecord]) -> bool:
    """Whether no two records share an id or an (origin, seq) slot."""
    n = len(records)
    return len({r.id for r in records}) == n and len({(r.origin, r.seq) for r in records}) == n


def _key_rows(local_seq: int, alert_id: bytes, keys: str) -> list[tuple[int, int]]:
    return [(key_hash(k), local_seq) for k in keys.split(KEY_SEP)] if keys else []


def _host_keys_changed(body: bytes, old: str) -> tuple[str, ...] | None:
    """The alert's keys now, if a non-ASCII host value makes them differ from `old`;
    () if they do not; None if the alert's indicators are no longer valid."""
    alert = Alert.FromString(body)
    if not any(i.type in HOST_TYPES and not i.value.isascii() for i in alert.indicators):
        return ()
    try:
        new = indicator_keys(alert)
    except AlertmeshError:
        return None
    return () if KEY_SEP.join(new) == old else new


def _id_rows(local_seq: int, alert_id: bytes, keys: str) -> list[tuple[int, int]]:
    return [(id64(alert_id), local_seq)]


def id_queries(select: str, ids: Sequence[bytes]) -> Iterator[tuple[str, Sequence[bytes]]]:
    """`select` ("... WHERE id IN") completed for each CHUNK of `ids`: (sql, params)."""
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i : i + CHUNK]
        yield f"{select} ({','.join('?' * len(chunk))})", chunk


def alert_id_queries(columns: str, ids: Sequence[bytes]) -> Iterator[tuple[str, list[Any]]]:
    """SELECT `columns` of the alerts with these `ids`, for each CHUNK: (sql, params).
    The id64 index finds candidates; `id IN` keeps only the alerts asked for. An id that
    is not 32 bytes (a peer's mistake) is simply not held."""
    ids = [alert_id for alert_id in ids if len(alert_id) == ID_BYTES]
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        marks = ",".join("?" * len(chunk))
        both = " UNION ALL ".join(
            f"SELECT local_seq FROM {table} WHERE id64 IN ({marks})" for table in ID_LEVELS
        )
        hashes = [id64(alert_id) for alert_id in chunk]
        yield (
            f"SELECT {columns} FROM alerts WHERE local_seq IN ({both}) AND id IN ({marks})",
            [*hashes * len(ID_LEVELS), *chunk],
        )


class WriteLockBusy(Exception):
    """Another connection holds the write lock, and the caller asked not to wait for it
    (a commit on the event loop's thread); nothing was written."""


@dataclass(slots=True)
class Committed:
    outcomes: list[list[PutOutcome]]  # per Write
    accepted: list[tuple[bytes, int]]  # (origin, seq) of each alert now stored
    last_local_seq: int


class Writer:
    """The write connection. Every method runs on the store's writer thread, except a
    sparse single put's `write(wait=False)`, which the store runs on the loop's thread
    while the writer thread is idle."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # Rows in each level but the last, both indexes together (set by migrate); rows
        # written; after a failed move, the rows written before the next try.
        self.level_rows = [0] * len(LEVEL_ROWS)
        self._written = 0
        self._retry_at = 0
        # The store's filter of held keys: a key's bits are set before its rows commit.
        self.key_filter: KeyFilter | None = None
        # Held while a write, a move or the close runs: the store gives the connection
        # to one thread at a time, and an overlap would be a bug (a put joining another
        # thread's transaction), so it fails loudly instead (see _alone).
        self._in_use = threading.Lock()
        # How long a write waits for another connection's write lock (sqlite3's timeout).
        [(self._busy_ms,)] = self.db.execute("PRAGMA busy_timeout").fetchall()
        self.db.execute(f"PRAGMA page_size={PAGE_BYTES}")  # a new, empty file only
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        [(page_bytes,)] = self.db.execute("PRAGMA page_size").fetchall()
        self._checkpoint_pages = CHECKPOINT_BYTES // page_bytes
        self.db.execute(f"PRAGMA wal_autocheckpoint={self._checkpoint_pages}")
        # A big transaction (a merge, an upgrade) grows the WAL file past the checkpoint
        # size; the next checkpoint cuts it back to this instead of leaving it so large.
        self.db.execute(f"PRAGMA journal_size_limit={CHECKPOINT_BYTES}")

    @contextlib.contextmanager
    def _alone(self) -> Iterator[None]:
        if not self._in_use.acquire(blocking=False):
            raise RuntimeError("the store's write connection is already in use on another thread")
        try:
            yield
        finally:
            self._in_use.release()

    def close(self) -> None:
        with self._alone():
            self.db.close()

    def migrate(self) -> None:
        db = self.db
        [(version,)] = db.execute("PRAGMA user_version").fetchall()
        [(tables,)] = db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alerts'"
        ).fetchall()
        if tables and version > SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path} was written by a newer alertmesh (store schema {version}; this"
                f" version reads {SCHEMA_VERSION}); run the newer version"
            )
        db.execute("BEGIN")
        try:
            if tables and self._unique_ids():
                self._rebuild_alerts()
            self._create_tables()
            db.execute("DROP TABLE IF EXISTS indicator_keys")
            self._index_unindexed()
            if tables and version < 6:
                self._reindex_hosts()
            counts = [
                sum(db.execute(f"SELECT count(*) FROM {t[level]}").fetchone()[0] for t in LEVELS)
                for level in range(len(LEVEL_ROWS))
            ]
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (disk full)
                db.execute("ROLLBACK")
            raise
        self.level_rows = counts
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # after an upgrade, a WAL of its size

    def _unique_ids(self) -> bool:
        """Whether alerts.id has a UNIQUE index (a file from before schema 4)."""
        for _, name, unique, *_ in self.db.execute("PRAGMA index_list(alerts)").fetchall():
            columns = [row[2] for row in self.db.execute(f"PRAGMA index_info({name})")]
            if unique and columns == ["id"]:
                return True
        return False

    def _rebuild_alerts(self) -> None:
        """Copy the alerts into a table without the UNIQUE index on id (SQLite cannot
        drop it in place). Once, on the first open by schema 5: about 1-1.5 s per
        100,000 alerts, and the old copy's space stays in the file for new alerts."""
        log.warning(
            "upgrading %s: rebuilding the alerts table once (store schema 5); the file keeps"
            " the freed space for new alerts (VACUUM with the node stopped returns it)",
            self.path,
        )
        self.db.execute(ALERTS_TABLE.format(name="alerts_v4"))
        self.db.execute(
            f"INSERT INTO alerts_v4 ({ALERT_COLUMNS}) SELECT {ALERT_COLUMNS} FROM alerts"
        )
        self.db.execute("DROP TABLE alerts")
        self.db.execute("ALTER TABLE alerts_v4 RENAME TO alerts")

    def _index_unindexed(self) -> None:
        """Index the keys and the id of every alert above the highest one indexed (all
        of them in a file from before hashed keys, or before schema 4 for the ids);
        streamed, a few thousand rows at a time."""
        for tables, rows_of in ((KEY_LEVELS, _key_rows), (ID_LEVELS, _id_rows)):
            [(top,)] = self.db.execute(
                "SELECT COALESCE(MAX(local_seq), 0) FROM ("
                + " UNION ALL ".join(f"SELECT MAX(local_seq) AS local_seq FROM {t}" for t in tables)
                + ")"
            ).fetchall()
            rows = self.db.cursor()  # its own cursor: the inserts use the connection's
            rows.execute(
                "SELECT local_seq, id, index_keys FROM alerts WHERE local_seq > ?"
                " ORDER BY local_seq",
                (top,),
            )
            while chunk := rows.fetchmany(5000):
                self.db.executemany(
                    f"INSERT OR IGNORE INTO {tables[0]} VALUES (?, ?)",
                    [row for seq, alert_id, keys in chunk for row in rows_of(seq, alert_id, keys)],
                )
            rows.close()

    def _reindex_hosts(self) -> None:
        """Schema 6: recompute the keys of held alerts (and recorded second copies) with a
        non-ASCII domain, URL or e-mail value, now mapped by UTS #46 / IDNA 2008 (`faß`
        was `fass` under IDNA 2003, and is `xn--fa-hia` now). The signed bodies stay as
        they are; only the index changes. ASCII values normalise as before (underscores
        were refused, so none is held). An alert the new rules refuse keeps its keys."""
        changed: list[tuple[int, str, tuple[str, ...]]] = []
        refused = 0
        rows = self.db.cursor()  # its own cursor; the changes are written after the scan
        rows.execute("SELECT local_seq, body, index_keys FROM alerts")
        while chunk := rows.fetchmany(5000):
            for local_seq, body, old in chunk:
                new = _host_keys_changed(body, old)
                if new is None:
                    refused += 1
                elif new != ():
                    changed.append((local_seq, old, new))
        rows.close()
        for local_seq, old, new in changed:
            for table in KEY_LEVELS:
                self.db.executemany(
                    f"DELETE FROM {table} WHERE key = ? AND local_seq = ?",
                    [(key_hash(k), local_seq) for k in old.split(KEY_SEP) if k],
                )
            self.db.executemany(
                f"INSERT OR IGNORE INTO {KEY_LEVELS[0]} VALUES (?, ?)",
                [(key_hash(k), local_seq) for k in new],
            )
            self.db.execute(
                "UPDATE alerts SET index_keys = ? WHERE local_seq = ?",
                (KEY_SEP.join(new), local_seq),
            )
        seconds = []
        for second_id, body, old in self.db.execute(
            "SELECT second_id, body, index_keys FROM equivocations"
        ).fetchall():
            new = _host_keys_changed(body, old)
            if new:
                seconds.append((KEY_SEP.join(new), second_id))
        self.db.executemany("UPDATE equivocations SET index_keys = ? WHERE second_id = ?", seconds)
        if changed or refused:
            log.warning(
                "upgrading %s (store schema 6): re-indexed %d alerts whose international"
                " host names IDNA 2008 maps differently; %d the new rules refuse keep their"
                " keys",
                self.path,
                len(changed),
                refused,
            )

    @property
    def merge_due(self) -> bool:
        full = any(n >= limit for n, limit in zip(self.level_rows, LEVEL_ROWS, strict=True))
        return full and self._written >= self._retry_at

    def merge(self) -> None:
        """Move each full level into the next, in one transaction. If that fails (disk
        full, a lock held too long), nothing moved: the rows stay where they were, all
        found, and the move is tried again after MERGE_RETRY_ROWS more rows."""
        self._retry_at = self._written + MERGE_RETRY_ROWS  # unless it succeeds
        with self._alone():
            self.db.execute("BEGIN")
            try:
                counts = self._move_full(self.level_rows)
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        self.level_rows = counts
        self._retry_at = 0

    def _move_full(self, counts: Sequence[int]) -> list[int]:
        """Move every level that holds its LEVEL_ROWS into the next (within the caller's
        transaction); the row counts afterwards."""
        counts = list(counts)
        for level, limit in enumerate(LEVEL_ROWS):
            if counts[level] < limit:
                continue
            # A level is read in key order (its primary key), so the inserts walk the
            # next level's index from one end to the other, each page at most once.
            for tables in LEVELS:
                older, newer = tables[level + 1], tables[level]
                self.db.execute(f"INSERT OR IGNORE INTO {older} SELECT * FROM {newer}")
                self.db.execute(f"DELETE FROM {newer}")
            if level + 1 < len(counts):
                counts[level + 1] += counts[level]
            counts[level] = 0
        return counts

    def _create_tables(self) -> None:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                self.db.execute(statement)

    def write(
        self, batch: Sequence[Write], chains: Chains, last_local_seq: int, *, wait: bool = True
    ) -> Committed:
        """Store what is new in `batch` in one transaction. `chains` is read only here;
        the caller adds the accepted slots once this returns. With wait=False the write
        lock is taken at once or not at all (WriteLockBusy): another connection holding
        it (the sqlite3 shell, a backup) must not stop the event loop's thread."""
        with self._alone():
            if wait:
                return self._write(batch, chains, last_local_seq, "BEGIN")
            # Nor may the commit copy the WAL back (the auto-checkpoint, every
            # CHECKPOINT_BYTES): the store asks this thread's `checkpoint` instead.
            self.db.execute("PRAGMA busy_timeout=0")
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            try:
                return self._write(batch, chains, last_local_seq, "BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                # Wherever it came (BEGIN, almost always), the transaction is rolled back.
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
                    raise WriteLockBusy(str(exc)) from exc
                raise
            finally:
                self.db.execute(f"PRAGMA wal_autocheckpoint={self._checkpoint_pages}")
                self.db.execute(f"PRAGMA busy_timeout={self._busy_ms}")

    def checkpoint(self) -> tuple[int, int, int]:
        """Copy the WAL back into the database without waiting for readers (PASSIVE):
        what the auto-checkpoint does after a commit. (busy, WAL frames, frames copied)"""
        with self._alone():
            [(busy, frames, copied)] = self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return busy, frames, copied

    def _write(
        self, batch: Sequence[Write], chains: Chains, last_local_seq: int, begin: str
    ) -> Committed:
        db = self.db
        records = [r for w in batch for r in w.records]
        # An id can be held only if its (origin, seq) slot is: only those records need a
        # query, and classify asks only about the slots found held here (usually none).
        holds = chains.holds
        in_held_slots = [r for r in records if holds(r.origin, r.seq)]
        if in_held_slots:
            taken = list(dict.fromkeys([r.id for r in in_held_slots]))
            held = self._existing(alert_id_queries("id", taken))
            known = self._existing(
                id_queries(
                    "SELECT second_id FROM equivocations WHERE second_id IN",
                    [i for i in taken if i not in held],
                )
            )
        else:
            held = known = set()
        slots = {(r.origin, r.seq) for r in in_held_slots}
        if not slots and _all_distinct(records):
            # What classify() answers when no slot is held and no two records share an id
            # or a slot (a fresh batch: nearly every one), without its loop in Python.
            outcomes = [PutOutcome.ACCEPTED] * len(records)
        else:
            outcomes = classify(
                records,
                held=held,
                known_equivocations=known,
                holds=lambda origin, seq: (origin, seq) in slots,
            )
        rows = encode(batch, outcomes, last_local_seq)
        per_write: list[list[PutOutcome]] = []
        start = 0
        for w in batch:
            per_write.append(outcomes[start : start + len(w.records)])
            start += len(w.records)
        requests = [(w.request_id, w.records[0].id) for w in batch if w.request_id]
        key_values, id_values = rows.keys, rows.ids
        if self.key_filter is not None:  # bits of a rolled-back row only cost a query
            self.key_filter.add(key_values[::2])
        db.execute(begin)
        try:
            self._insert(ALERT_INSERT, rows.alerts, ALERT_WIDTH)
            self._insert(f"INSERT OR IGNORE INTO {KEY_LEVELS[0]} VALUES", key_values, 2)
            self._insert(f"INSERT INTO {ID_LEVELS[0]} VALUES", id_values, 2)
            if rows.equivocations:
                # The first copy is whichever this store accepted for that slot (maybe in
                # this batch).
                db.executemany(
                    "INSERT OR IGNORE INTO equivocations"
                    " (origin, seq, second_id, first_id, body, signature, index_keys,"
                    " detected_at_ms) SELECT ?1, ?2, ?3, id, ?4, ?5, ?6, ?7 FROM alerts"
                    " WHERE origin = ?1 AND seq = ?2",
                    rows.equivocations,
                )
            if requests:
                db.executemany("INSERT OR IGNORE INTO publish_requests VALUES (?, ?)", requests)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        written = (len(key_values) + len(id_values)) // 2
        self.level_rows[0] += written
        self._written += written
        return Committed(per_write, rows.accepted, rows.last_local_seq)

    def _existing(self, queries: Iterable[tuple[str, Sequence[Any]]]) -> set[bytes]:
        """The first column of every row the (sql, params) `queries` return."""
        return {row[0] for sql, params in queries for row in self.db.execute(sql, params)}

    def _insert(self, insert: str, values: list[Any], width: int) -> None:
        """`insert` ("INSERT ... VALUES") of the rows whose `width` values each lie flat,
        one after the other, in `values`; ROWS_PER_INSERT rows per statement: executemany
        releases and retakes the GIL around every statement, and in a busy node each
        retake can wait for another thread."""
        if not values:
            return
        marks = f"({','.join('?' * width)})"
        step = ROWS_PER_INSERT * width
        whole = len(values) - len(values) % step
        if whole:
            self.db.executemany(
                f"{insert} {','.join([marks] * ROWS_PER_INSERT)}",
                (values[i : i + step] for i in range(0, whole, step)),
            )
        if whole < len(values):
            self.db.executemany(
                f"{insert} {marks}",
                (values[i : i + width] for i in range(whole, len(values), width)),
            )
