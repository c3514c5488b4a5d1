"""One SQLite commit at a time, and several at the same moment (issue 15 target 3).

    .venv/bin/python bench/commit_together.py [--processes 1,4] [--rounds 100] [--rate 20]
        [--shape row,alert] [--page-size 4096]

At 20 alerts/s paced, the relay and the three leaves of the 5-node cluster commit the
same alert within about a millisecond of each other, on one disk and two cores. This
measures what that costs with nothing else running: N processes each hold a SQLite
database in WAL mode with synchronous=FULL (as node/store/sqlite_writer.py), and at
--rate rounds a second every process commits one ~1 KB row at the same moment (a
shared start time). Per round: each commit's wall time and the slowest of the N
(what the last leaf waits for); per process: the CPU of a commit (user + system).

--shape row commits one ~1 KB row in a table with a primary key (the minimum durable
write); --shape alert commits what the real store's commit of one alert writes, in
the same number of B-trees: an alert row in a table with a UNIQUE (origin, seq) index,
five indicator-key rows in one index and one id row in another, all filled with --fill
(20,000) alerts first (node/store/sqlite_writer.py writes these, in 16 KiB pages).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sqlite3
import statistics
import tempfile
import time
from typing import Any

KEYS = 5  # indicator-key rows per alert (the real store writes ~4.6)


def _create(db: sqlite3.Connection, shape: str, fill: int) -> None:
    if shape == "row":
        db.execute("CREATE TABLE IF NOT EXISTS t (id BLOB PRIMARY KEY, body BLOB)")
        return
    db.execute(
        "CREATE TABLE a (local_seq INTEGER PRIMARY KEY, origin BLOB, seq INTEGER, body BLOB,"
        " UNIQUE (origin, seq))"
    )
    db.execute("CREATE TABLE k (h INTEGER, s INTEGER, PRIMARY KEY (h, s)) WITHOUT ROWID")
    db.execute("CREATE TABLE i (h INTEGER PRIMARY KEY, s INTEGER)")
    db.execute("BEGIN")
    for n in range(fill):
        _insert_alert(db, os.urandom(32), n)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _insert_alert(db: sqlite3.Connection, origin: bytes, seq: int) -> None:
    cur = db.execute("INSERT INTO a VALUES (NULL, ?, ?, ?)", (origin, seq, os.urandom(700)))
    keys = [(random.getrandbits(63), cur.lastrowid) for _ in range(KEYS)]
    db.executemany("INSERT OR IGNORE INTO k VALUES (?, ?)", keys)
    db.execute("INSERT OR IGNORE INTO i VALUES (?, ?)", (random.getrandbits(63), cur.lastrowid))


def worker(path: str, args: argparse.Namespace, shape: str, sync: Any, out: Any) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA page_size={args.page_size}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    _create(db, shape, args.fill)
    filled, go, begin_at = sync
    filled.wait()  # every process has its database, then one shared start time
    go.wait()
    begin = begin_at.value
    starts = [begin + i / args.rate for i in range(args.rounds)]
    walls, cpu = [], 0.0
    origin = os.urandom(32)
    for seq, start in enumerate(starts, 1):
        if (delay := start - time.time()) > 0:
            time.sleep(delay)  # no spinning: the processes share two cores
        t0, c0 = time.time(), time.process_time()
        db.execute("BEGIN IMMEDIATE")
        if shape == "row":
            db.execute("INSERT INTO t VALUES (?, ?)", (os.urandom(32), os.urandom(1000)))
        else:
            _insert_alert(db, origin, seq)
        db.execute("COMMIT")
        walls.append(time.time() - t0)
        cpu += time.process_time() - c0
    out.put((walls, cpu / len(starts)))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def run(n: int, args: argparse.Namespace, shape: str, directory: str) -> str:
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    filled, go, begin_at = mp.Barrier(n + 1), mp.Event(), mp.Value("d", 0.0)
    procs = [
        mp.Process(
            target=worker,
            args=(f"{directory}/{shape}{n}-{i}.sqlite", args, shape, (filled, go, begin_at), out),
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    filled.wait()
    begin_at.value = time.time() + 0.5
    go.set()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    every = [w for walls, _ in results for w in walls]
    slowest = [max(r[0][i] for r in results) for i in range(args.rounds)]
    cpu = statistics.fmean(c for _, c in results)
    return (
        f"| {shape} | {n} | {pct(every, 50) * 1e3:.2f} / {pct(every, 99) * 1e3:.2f} | "
        f"{pct(slowest, 50) * 1e3:.2f} / {pct(slowest, 99) * 1e3:.2f} | {cpu * 1e3:.3f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--processes", default="1,4", help="comma-separated process counts")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--rate", type=float, default=20.0, help="rounds per second")
    p.add_argument("--shape", default="row", help="comma-separated: row, alert (see above)")
    p.add_argument("--page-size", type=int, default=4096, help="SQLite page size in bytes")
    p.add_argument("--fill", type=int, default=20_000, help="alerts stored first (--shape alert)")
    args = p.parse_args()
    print("| shape | processes | each commit p50 / p99 ms | slowest of the round p50 / p99 ms | "
          "CPU per commit ms |")  # fmt: skip
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as directory:
        for shape in args.shape.split(","):
            for n in (int(x) for x in args.processes.split(",")):
                print(run(n, args, shape, directory), flush=True)


if __name__ == "__main__":
    main()
