"""The SQLite store's write transaction, which runs on its own thread, and its index levels.

The writer uses a plain `sqlite3` connection on one dedicated thread and runs each
group commit there from start to finish: the id checks, building the rows (the row
encoder, node/store/sqlite_rows.py), the inserts and the COMMIT. One hop per
transaction instead of one per statement, and the event loop's thread does none of the
per-row work, so it stays free to feed the verifier processes. The exception is a
sparse single put (node/store/sqlite.py, _sparse): the store then runs `write` on the
loop's thread itself, never waiting for a lock (wait=False) nor checkpointing; the
connection is only ever used by one thread at a time (`_alone`). The tables, their
schema version and the upgrade of a file an older alertmesh wrote are in
node/store/sqlite_migrate.py (run by `Writer.migrate` when the store opens).

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
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from node.core.alerts import AlertRecord
from node.core.chain import Chains
from node.store.base import PutOutcome, classify, nothing_written
from node.store.keyfilter import KeyFilter

# The schema and its upgrades; the store and its users import the schema's names from here.
from node.store.sqlite_migrate import ALERTS_TABLE as ALERTS_TABLE
from node.store.sqlite_migrate import ID_LEVELS as ID_LEVELS
from node.store.sqlite_migrate import KEY_LEVELS as KEY_LEVELS
from node.store.sqlite_migrate import LEVELS as LEVELS
from node.store.sqlite_migrate import SCHEMA_VERSION as SCHEMA_VERSION
from node.store.sqlite_migrate import migrate
from node.store.sqlite_rows import ALERT_INSERT, ALERT_WIDTH, encode

# Names the store and its users import from here; they live with the row encoder.
from node.store.sqlite_rows import KEY_SEP as KEY_SEP
from node.store.sqlite_rows import Write as Write
from node.store.sqlite_rows import id64 as id64
from node.store.sqlite_rows import key_hash as key_hash

# A level (KEY_LEVELS, ID_LEVELS) moves into the next once the two indexes hold
# LEVEL_ROWS[i] rows in it together (level 0: ~9,000 alerts; level 1: ~180,000); the
# last level is unbounded.
LEVEL_ROWS = (50_000, 1_000_000)  # tuned with bench/store_bench.py --growth
ID_BYTES = 32
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
_SLOT = itemgetter(AlertRecord._fields.index("origin"), AlertRecord._fields.index("seq"))


def _all_distinct(records: Sequence[AlertRecord]) -> bool:
    """Whether no two records share an id or an (origin, seq) slot."""
    n = len(records)
    return len({r.id for r in records}) == n and len({(r.origin, r.seq) for r in records}) == n


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
        """Bring the file to the current schema (node/store/sqlite_migrate.py) and count
        the rows in each level."""
        self.level_rows = migrate(self.db, self.path)
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # after an upgrade, a WAL of its size

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

    def committed_after(self, local_seq: int) -> list[tuple[int, bytes, int]]:
        """(local_seq, origin, seq) of every row above `local_seq` that is committed, in
        order (a transaction a failure left open is rolled back first): what a commit in
        doubt wrote after all."""
        with self._alone():
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            sql = "SELECT local_seq, origin, seq FROM alerts WHERE local_seq > ? ORDER BY local_seq"
            return self.db.execute(sql, (local_seq,)).fetchall()

    def _write(
        self, batch: Sequence[Write], chains: Chains, last_local_seq: int, begin: str
    ) -> Committed:
        db = self.db
        records = [r for w in batch for r in w.records]
        # An id can be held only if its (origin, seq) slot is: only those records need a
        # query, and classify asks only about the slots found held here (usually none).
        holding = chains.holding(map(_SLOT, records))
        in_held_slots = [r for r, h in zip(records, holding, strict=True) if h]
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
        committing = False
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
            committing = True
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:  # also a COMMIT that did not happen (SQLITE_BUSY)
                db.execute("ROLLBACK")
            elif committing:  # SQLite ended it at COMMIT: an I/O error there may have written
                raise
            nothing_written(exc)  # the store's put says so (base.nothing_written)
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
