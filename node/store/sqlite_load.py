"""What the SQLite store learns from its file when it opens, on the writer's connection
before anything writes: the (origin, seq) of every alert held (the chains) and a filter
of every indicator key held (node/store/keyfilter.py). node/store/sqlite.py calls both
once, from SqliteStore.__aenter__.
"""

from __future__ import annotations

import sqlite3

from node.core.chain import Chains
from node.store.keyfilter import KeyFilter
from node.store.sqlite_writer import KEY_LEVELS, Writer


def load_chains(writer: Writer, chains: Chains) -> int:
    """Add every (origin, seq) held to `chains`; the number of alerts."""
    count = 0
    rows = writer.db.execute("SELECT origin, seq FROM alerts ORDER BY origin, seq")
    while chunk := rows.fetchmany(65536):
        for origin, seq in chunk:
            chains.add(origin, seq)
        count += len(chunk)
    return count


def load_filter(db: sqlite3.Connection) -> KeyFilter:
    """A filter of every indicator key the store holds (about 1 s per million keys),
    with room for as many again before it needs a second table."""
    tables = [f"SELECT key FROM {table}" for table in KEY_LEVELS]
    [(count,)] = db.execute(f"SELECT count(*) FROM ({' UNION ALL '.join(tables)})").fetchall()
    key_filter = KeyFilter(2 * count)
    for sql in tables:
        rows = db.execute(sql)
        while chunk := rows.fetchmany(65536):
            key_filter.add(key for (key,) in chunk)
    return key_filter
