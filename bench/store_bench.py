"""What the SQLite write path of ingest costs, and what would make it cheaper.

    .venv/bin/python bench/store_bench.py [--alerts 100000] [--rounds 2]
    .venv/bin/python bench/store_bench.py --growth --alerts 300000

Verified records (the same realistic alerts as bench/node_bench.py) are written the way
node/store/sqlite.py writes them: one transaction per group commit doing the id SELECT,
the INSERT into alerts and the INSERT into indicator_keys, WAL, synchronous=FULL, the
node's own SCHEMA. Each variant changes one or more of: rows per transaction, page cache
size, WAL auto-checkpoint interval, storing indicator keys as 64-bit hashes instead
of text, and multi-row `INSERT ... VALUES (...), (...)` statements instead of
executemany. The first variant is SqliteStore itself (through aiosqlite), to show the
plain sqlite3 replica costs the same. Reported: CPU microseconds per alert over the whole
fill and over its last 20,000 alerts; the wall-clock microseconds per alert of a fill of
--contended alerts while two threads run the verifier's work (check_batch) as in a node,
competing for the GIL (executemany gives the GIL up and takes it back for every row);
the file size.
Variants run interleaved, --rounds times, so that a noisy machine hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from node_bench import build_corpus  # noqa: E402

from node.app.verify import check_batch  # noqa: E402
from node.core.alerts import AlertRecord  # noqa: E402
from node.core.limits import DEFAULT_LIMITS  # noqa: E402
from node.core.roster import Member, Roster  # noqa: E402
from node.store.sqlite import SqliteStore  # noqa: E402
from node.store.sqlite_writer import ALERTS_TABLE, KEY_SEP  # noqa: E402

INSERT_ALERT = (
    "INSERT INTO alerts (local_seq, id, origin, seq, prev, created_at_ms, expires_at_ms,"
    " category, severity, confidence, title, index_keys, received_at_ms, body, signature)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The replica's schema: the node's alerts table with a UNIQUE index on id, and indicator
# keys as text in one index (as before schema version 2); HASHED_SCHEMA keeps 64-bit
# hashes in it instead.
_ID_COLUMN = "id             BLOB NOT NULL,"
assert _ID_COLUMN in ALERTS_TABLE, "the replica needs the node's id column"
REPLICA_SCHEMA = ALERTS_TABLE.format(name="alerts").replace(
    _ID_COLUMN, "id             BLOB NOT NULL UNIQUE,"
) + (
    "; CREATE TABLE IF NOT EXISTS indicator_keys (key TEXT NOT NULL, local_seq INTEGER NOT NULL,"
    " PRIMARY KEY (key, local_seq)) WITHOUT ROWID;"
)
HASHED_SCHEMA = REPLICA_SCHEMA.replace("key TEXT NOT NULL", "key INTEGER NOT NULL")
CACHE = "PRAGMA cache_size=-65536"  # 64 MiB instead of the default 2 MiB
CHECKPOINT = "PRAGMA wal_autocheckpoint=10000"  # pages, instead of 1000
TAIL = 20_000


@dataclass(frozen=True)
class Variant:
    name: str
    rows_per_commit: int = 500
    pragmas: tuple[str, ...] = ()
    hashed_keys: bool = False
    multirow: bool = False
    real_store: bool = False


VARIANTS = [
    Variant("SqliteStore as is (500 per put)", real_store=True),
    Variant("replica: as is, 500 rows per commit"),
    Variant("2000 rows per commit", rows_per_commit=2000),
    Variant("cache_size 64 MiB", pragmas=(CACHE,)),
    Variant("wal_autocheckpoint 10000", pragmas=(CHECKPOINT,)),
    Variant("indicator keys as 64-bit hashes", hashed_keys=True),
    Variant("multi-row INSERT statements", multirow=True),
    Variant(
        "all five: hashes, 64 MiB, ckpt 10000, 2000/commit, multi-row",
        rows_per_commit=2000,
        pragmas=(CACHE, CHECKPOINT),
        hashed_keys=True,
        multirow=True,
    ),
]
MAX_PARAMS = 30_000  # per statement; SQLite's default limit is 32,766


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def insert_rows(
    conn: sqlite3.Connection, insert: str, rows: Sequence[tuple[object, ...]], columns: int
) -> None:
    """`insert` VALUES (...), (...), ...: one statement (one sqlite3_step) per chunk."""
    step = MAX_PARAMS // columns
    one = "(" + ",".join("?" * columns) + ")"
    for i in range(0, len(rows), step):
        chunk = rows[i : i + step]
        conn.execute(
            f"{insert} VALUES {','.join([one] * len(chunk))}", [x for r in chunk for x in r]
        )


class Competition:
    """Two threads running the verifier's check_batch in a loop, as a node's Verifier does."""

    def __init__(self, items: Sequence[tuple[bytes, bytes]], roster: Roster, now: int) -> None:
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self.run, args=(items[i::2], roster, now), daemon=True)
            for i in range(2)
        ]

    def run(self, items: Sequence[tuple[bytes, bytes]], roster: Roster, now: int) -> None:
        for _ in range(10_000):  # bounded; stopped long before
            if self.stop.is_set():
                return
            check_batch(items, roster, now, DEFAULT_LIMITS)

    def __enter__(self) -> Competition:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def write_replica(db: Path, records: Sequence[AlertRecord], v: Variant, now: int) -> float:
    """Write all records; return the CPU seconds of the last TAIL of them."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for pragma in v.pragmas:
        conn.execute(pragma)
    conn.executescript(HASHED_SCHEMA if v.hashed_keys else REPLICA_SCHEMA)
    conn.commit()
    local_seq = 0
    tail_start = None
    for i in range(0, len(records), v.rows_per_commit):
        if tail_start is None and i >= len(records) - TAIL:
            tail_start = time.process_time()
        batch = records[i : i + v.rows_per_commit]
        ids = [r.id for r in batch]
        for j in range(0, len(ids), 500):
            chunk = ids[j : j + 500]
            marks = ",".join("?" * len(chunk))
            conn.execute(f"SELECT id FROM alerts WHERE id IN ({marks})", chunk).fetchall()
        rows = []
        keys: list[tuple[str | int, int]] = []
        for r in batch:
            local_seq += 1
            rows.append(
                (local_seq, r.id, r.origin, r.seq, r.prev, r.created_at_ms, r.expires_at_ms,
                 r.category, r.severity, r.confidence, r.title, KEY_SEP.join(r.index_keys),
                 now, r.body, r.signature)
            )  # fmt: skip
            keys.extend(((key_hash(k) if v.hashed_keys else k), local_seq) for k in r.index_keys)
        if v.multirow:
            insert_rows(conn, INSERT_ALERT.partition(" VALUES")[0], rows, 15)
            insert_rows(conn, "INSERT OR IGNORE INTO indicator_keys", keys, 2)
        else:
            conn.executemany(INSERT_ALERT, rows)
            conn.executemany("INSERT OR IGNORE INTO indicator_keys VALUES (?, ?)", keys)
        conn.commit()
    conn.close()
    return time.process_time() - (tail_start or time.process_time())


async def growth(
    db: Path, records: Sequence[AlertRecord], now: int, segments: int
) -> list[tuple[float, float]]:
    """SqliteStore filled from empty in puts of 500: for each segment, the CPU µs per
    alert and the longest put in ms (one that waited for an index move)."""
    size = len(records) // segments
    out = []
    async with SqliteStore(db) as store:
        for s in range(segments):
            start, longest = time.process_time(), 0.0
            for i in range(s * size, (s + 1) * size, 500):
                began = time.perf_counter()
                await store.put(records[i : min(i + 500, (s + 1) * size)], now_ms=now)
                longest = max(longest, time.perf_counter() - began)
            out.append(((time.process_time() - start) / size * 1e6, longest * 1e3))
    return out


def report_growth(records: Sequence[AlertRecord], now: int, shown: Sequence[str]) -> int:
    segments = 6
    home = Path(tempfile.mkdtemp(prefix="alertmesh-store-bench-"))
    try:
        costs = asyncio.run(growth(home / "alerts.db", records, now, segments))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    size = len(records) // segments
    print(f"\nSqliteStore, SQLite {sqlite3.sqlite_version}, puts of 500, process CPU.\n")
    print("| alerts stored | CPU µs/alert | longest put, ms |\n|---|---|---|")
    for s, (cost, longest) in enumerate(costs):
        print(f"| {s * size:,} → {(s + 1) * size:,} | {cost:.1f} | {longest:.0f} |")
    print("\ncommand: .venv/bin/python bench/store_bench.py" + "".join(f" {a}" for a in shown))
    return 0


async def write_real(db: Path, records: Sequence[AlertRecord], now: int) -> float:
    tail_start = None
    async with SqliteStore(db) as store:
        for i in range(0, len(records), 500):
            if tail_start is None and i >= len(records) - TAIL:
                tail_start = time.process_time()
            await store.put(records[i : i + 500], now_ms=now)
    return time.process_time() - (tail_start or time.process_time())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--alerts", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--contended", type=int, default=10_000, help="alerts in the contended fill")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--growth",
        action="store_true",
        help="instead: fill SqliteStore alone and report its CPU per alert as the store grows",
    )
    args = p.parse_args(argv)
    shown = sys.argv[1:] if argv is None else list(argv)
    print(f"# preparing {args.alerts:,} verified records ...", file=sys.stderr, flush=True)
    corpus = build_corpus(args.alerts, 8, 600, args.seed)
    roster = Roster.of([Member(a.name, a.identity.public_key) for a in corpus.authors])
    now = time.time_ns() // 1_000_000
    items = [(s.body, s.signature) for s in corpus.signed]
    checked = check_batch(items, roster, now, DEFAULT_LIMITS)
    records = [r for r in checked if isinstance(r, AlertRecord)]
    assert len(records) == len(items), "the corpus must verify"
    if args.growth:
        if len(records) < 6 * 500:
            p.error("--growth needs --alerts 3000 or more (six parts of whole puts)")
        return report_growth(records, now, shown)
    tail = min(TAIL, len(records))
    results: dict[str, list[tuple[float, float, float, int]]] = {v.name: [] for v in VARIANTS}

    def fill(v: Variant, part: Sequence[AlertRecord]) -> tuple[float, float, float, int]:
        home = Path(tempfile.mkdtemp(prefix="alertmesh-store-bench-"))
        try:
            start, wall = time.process_time(), time.perf_counter()
            if v.real_store:
                tail_cpu = asyncio.run(write_real(home / "alerts.db", part, now))
            else:
                tail_cpu = write_replica(home / "alerts.db", part, v, now)
            cpu, wall = time.process_time() - start, time.perf_counter() - wall
            size = sum(f.stat().st_size for f in home.glob("alerts.db*"))
        finally:
            shutil.rmtree(home, ignore_errors=True)
        n = len(part)
        return cpu / n * 1e6, tail_cpu / min(TAIL, n) * 1e6, wall / n * 1e6, size

    for round_ in range(args.rounds):
        for v in VARIANTS:
            cpu, tail_cpu, _, size = fill(v, records)
            with Competition(items[:2000], roster, now):
                _, _, contended, _ = fill(v, records[: args.contended])
            results[v.name].append((cpu, tail_cpu, contended, size))
            print(
                f"# round {round_ + 1} {v.name}: {cpu:.1f} CPU µs/alert,"
                f" {contended:.1f} wall µs/alert contended",
                file=sys.stderr,
                flush=True,
            )
    print(f"\n{len(records):,} alerts, SQLite {sqlite3.sqlite_version}, best of {args.rounds}.\n")
    print(
        f"| write path | CPU µs/alert, all | CPU µs/alert, last {tail:,} |"
        f" wall µs/alert, GIL contended, first {min(args.contended, len(records)):,} | file size |"
    )
    print("|---|---|---|---|---|")
    for v in VARIANTS:
        runs = results[v.name]
        print(
            f"| {v.name} | {min(r[0] for r in runs):.1f} | {min(r[1] for r in runs):.1f} |"
            f" {min(r[2] for r in runs):.1f} | {runs[-1][3] / 2**20:.0f} MiB |"
        )
    print("\ncommand: .venv/bin/python bench/store_bench.py" + "".join(f" {a}" for a in shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
