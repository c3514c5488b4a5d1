"""The SQLite store's schema, and the upgrade of a file an older alertmesh wrote.

`migrate` runs once when the store opens, on the writer's connection (Writer.migrate,
node/store/sqlite_writer.py, the one entry point): in one transaction it creates what
is missing, brings a file of an older schema version to this one, and counts the rows
in the index levels the writer moves (sqlite_writer's docstring says why the indexes
are hashed and kept in levels).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from node._pb.alertmesh.v1.alert_pb2 import Alert
from node.core import indicators
from node.core.errors import AlertmeshError, ConfigError
from node.core.index_keys import indicator_keys
from node.store.sqlite_rows import KEY_SEP, id64, key_hash

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
# id64(id). The writer moves a full level into the next (sqlite_writer.LEVEL_ROWS); the
# last level is unbounded.
KEY_LEVELS = ("recent_key_hashes", "middle_key_hashes", "indicator_key_hashes")
ID_LEVELS = ("recent_alert_ids", "middle_alert_ids", "alert_ids")
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


def migrate(db: sqlite3.Connection, path: Path) -> list[int]:
    """Bring the file at `path`, open as `db`, to SCHEMA_VERSION in one transaction;
    the rows in each index level but the last (both indexes together). ConfigError if a
    newer alertmesh wrote it."""
    [(version,)] = db.execute("PRAGMA user_version").fetchall()
    [(tables,)] = db.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alerts'"
    ).fetchall()
    if tables and version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path} was written by a newer alertmesh (store schema {version}; this"
            f" version reads {SCHEMA_VERSION}); run the newer version"
        )
    db.execute("BEGIN")
    try:
        if tables and _unique_ids(db):
            _rebuild_alerts(db, path)
        _create_tables(db)
        db.execute("DROP TABLE IF EXISTS indicator_keys")
        _index_unindexed(db)
        if tables and version < 6:
            _reindex_hosts(db, path)
        counts = [
            sum(db.execute(f"SELECT count(*) FROM {t[level]}").fetchone()[0] for t in LEVELS)
            for level in range(len(KEY_LEVELS) - 1)
        ]
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back already (disk full)
            db.execute("ROLLBACK")
        raise
    return counts


def _create_tables(db: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _key_rows(local_seq: int, alert_id: bytes, keys: str) -> list[tuple[int, int]]:
    return [(key_hash(k), local_seq) for k in keys.split(KEY_SEP)] if keys else []


def _id_rows(local_seq: int, alert_id: bytes, keys: str) -> list[tuple[int, int]]:
    return [(id64(alert_id), local_seq)]


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


def _unique_ids(db: sqlite3.Connection) -> bool:
    """Whether alerts.id has a UNIQUE index (a file from before schema 4)."""
    for _, name, unique, *_ in db.execute("PRAGMA index_list(alerts)").fetchall():
        columns = [row[2] for row in db.execute(f"PRAGMA index_info({name})")]
        if unique and columns == ["id"]:
            return True
    return False


def _rebuild_alerts(db: sqlite3.Connection, path: Path) -> None:
    """Copy the alerts into a table without the UNIQUE index on id (SQLite cannot
    drop it in place). Once, on the first open by schema 5: about 1-1.5 s per
    100,000 alerts, and the old copy's space stays in the file for new alerts."""
    log.warning(
        "upgrading %s: rebuilding the alerts table once (store schema 5); the file keeps"
        " the freed space for new alerts (VACUUM with the node stopped returns it)",
        path,
    )
    db.execute(ALERTS_TABLE.format(name="alerts_v4"))
    db.execute(f"INSERT INTO alerts_v4 ({ALERT_COLUMNS}) SELECT {ALERT_COLUMNS} FROM alerts")
    db.execute("DROP TABLE alerts")
    db.execute("ALTER TABLE alerts_v4 RENAME TO alerts")


def _index_unindexed(db: sqlite3.Connection) -> None:
    """Index the keys and the id of every alert above the highest one indexed (all
    of them in a file from before hashed keys, or before schema 4 for the ids);
    streamed, a few thousand rows at a time."""
    for tables, rows_of in ((KEY_LEVELS, _key_rows), (ID_LEVELS, _id_rows)):
        [(top,)] = db.execute(
            "SELECT COALESCE(MAX(local_seq), 0) FROM ("
            + " UNION ALL ".join(f"SELECT MAX(local_seq) AS local_seq FROM {t}" for t in tables)
            + ")"
        ).fetchall()
        rows = db.cursor()  # its own cursor: the inserts use the connection's
        rows.execute(
            "SELECT local_seq, id, index_keys FROM alerts WHERE local_seq > ? ORDER BY local_seq",
            (top,),
        )
        while chunk := rows.fetchmany(5000):
            db.executemany(
                f"INSERT OR IGNORE INTO {tables[0]} VALUES (?, ?)",
                [row for seq, alert_id, keys in chunk for row in rows_of(seq, alert_id, keys)],
            )
        rows.close()


def _reindex_hosts(db: sqlite3.Connection, path: Path) -> None:
    """Schema 6: recompute the keys of held alerts (and recorded second copies) with a
    non-ASCII domain, URL or e-mail value, now mapped by UTS #46 / IDNA 2008 (`faß`
    was `fass` under IDNA 2003, and is `xn--fa-hia` now). The signed bodies stay as
    they are; only the index changes. ASCII values normalise as before (underscores
    were refused, so none is held). An alert the new rules refuse keeps its keys."""
    changed: list[tuple[int, str, tuple[str, ...]]] = []
    refused = 0
    rows = db.cursor()  # its own cursor; the changes are written after the scan
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
            db.executemany(
                f"DELETE FROM {table} WHERE key = ? AND local_seq = ?",
                [(key_hash(k), local_seq) for k in old.split(KEY_SEP) if k],
            )
        db.executemany(
            f"INSERT OR IGNORE INTO {KEY_LEVELS[0]} VALUES (?, ?)",
            [(key_hash(k), local_seq) for k in new],
        )
        db.execute(
            "UPDATE alerts SET index_keys = ? WHERE local_seq = ?",
            (KEY_SEP.join(new), local_seq),
        )
    seconds = []
    for second_id, body, old in db.execute(
        "SELECT second_id, body, index_keys FROM equivocations"
    ).fetchall():
        new = _host_keys_changed(body, old)
        if new:
            seconds.append((KEY_SEP.join(new), second_id))
    db.executemany("UPDATE equivocations SET index_keys = ? WHERE second_id = ?", seconds)
    if changed or refused:
        log.warning(
            "upgrading %s (store schema 6): re-indexed %d alerts whose international"
            " host names IDNA 2008 maps differently; %d the new rules refuse keep their"
            " keys",
            path,
            len(changed),
            refused,
        )
