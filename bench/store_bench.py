"""What the SQLite write path of ingest costs, and what would make it cheaper.

    .venv/bin/python bench/store_bench.py [--alerts 100000] [--rounds 2]

Verified records (the same realistic alerts as bench/node_bench.py) are written the way
node/store/sqlite.py writes them: one transaction per group commit doing the id SELECT,
the INSERT into alerts and the INSERT into indicator_keys, WAL, synchronous=FULL, the
node's own SCHEMA. Each variant changes one or more of: rows per transaction, page cache
size, WAL auto-checkpoint interval, and storing indicator keys as 64-bit hashes instead
of text. The first variant is SqliteStore itself (through aiosqlite), to show the plain
sqlite3 replica costs the same. Reported: CPU microseconds per alert (all threads of
this process) over the whole fill and over its last 20,000 alerts, and the file size.
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
from node.store.sqlite import KEY_SEP, SCHEMA, SqliteStore  # noqa: E402

INSERT_ALERT = (
    "INSERT INTO alerts (local_seq, id, origin, seq, prev, created_at_ms, expires_at_ms,"
    " category, severity, confidence, title, index_keys, received_at_ms, body, signature)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
HASHED_SCHEMA = SCHEMA.replace("key       TEXT NOT NULL,", "key       INTEGER NOT NULL,")
CACHE = "PRAGMA cache_size=-65536"  # 64 MiB instead of the default 2 MiB
CHECKPOINT = "PRAGMA wal_autocheckpoint=10000"  # pages, instead of 1000
TAIL = 20_000


@dataclass(frozen=True)
class Variant:
    name: str
    rows_per_commit: int = 500
    pragmas: tuple[str, ...] = ()
    hashed_keys: bool = False
    real_store: bool = False


VARIANTS = [
    Variant("SqliteStore as is (500 per put)", real_store=True),
    Variant("replica: as is, 500 rows per commit"),
    Variant("2000 rows per commit", rows_per_commit=2000),
    Variant("cache_size 64 MiB", pragmas=(CACHE,)),
    Variant("wal_autocheckpoint 10000", pragmas=(CHECKPOINT,)),
    Variant("indicator keys as 64-bit hashes", hashed_keys=True),
    Variant(
        "all four: hashes, 64 MiB, ckpt 10000, 2000/commit",
        rows_per_commit=2000,
        pragmas=(CACHE, CHECKPOINT),
        hashed_keys=True,
    ),
]


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def write_replica(db: Path, records: Sequence[AlertRecord], v: Variant, now: int) -> float:
    """Write all records; return the CPU seconds of the last TAIL of them."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for pragma in v.pragmas:
        conn.execute(pragma)
    conn.executescript(HASHED_SCHEMA if v.hashed_keys else SCHEMA)
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
        conn.executemany(INSERT_ALERT, rows)
        conn.executemany("INSERT OR IGNORE INTO indicator_keys VALUES (?, ?)", keys)
        conn.commit()
    conn.close()
    return time.process_time() - (tail_start or time.process_time())


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
    p.add_argument("--seed", type=int, default=1)
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
    tail = min(TAIL, len(records))
    results: dict[str, list[tuple[float, float, int]]] = {v.name: [] for v in VARIANTS}
    for round_ in range(args.rounds):
        for v in VARIANTS:
            home = Path(tempfile.mkdtemp(prefix="alertmesh-store-bench-"))
            try:
                start = time.process_time()
                if v.real_store:
                    tail_cpu = asyncio.run(write_real(home / "alerts.db", records, now))
                else:
                    tail_cpu = write_replica(home / "alerts.db", records, v, now)
                cpu = time.process_time() - start
                size = sum(f.stat().st_size for f in home.glob("alerts.db*"))
            finally:
                shutil.rmtree(home, ignore_errors=True)
            results[v.name].append((cpu / len(records) * 1e6, tail_cpu / tail * 1e6, size))
            print(
                f"# round {round_ + 1} {v.name}: {cpu / len(records) * 1e6:.1f} µs/alert",
                file=sys.stderr,
                flush=True,
            )
    print(f"\n{len(records):,} alerts, SQLite {sqlite3.sqlite_version}, best of {args.rounds}.\n")
    print(f"| write path | CPU µs/alert, all | CPU µs/alert, last {tail:,} | file size |")
    print("|---|---|---|---|")
    for v in VARIANTS:
        runs = results[v.name]
        size = runs[-1][2]
        print(
            f"| {v.name} | {min(r[0] for r in runs):.1f} | {min(r[1] for r in runs):.1f} |"
            f" {size / 2**20:.0f} MiB |"
        )
    print("\ncommand: .venv/bin/python bench/store_bench.py" + "".join(f" {a}" for a in shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
