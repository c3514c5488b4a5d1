"""One SQLite commit at a time, and several at the same moment (issue 15 target 3).

    .venv/bin/python bench/commit_together.py [--processes 1,4] [--rounds 100] [--rate 20]

At 20 alerts/s paced, the relay and the three leaves of the 5-node cluster commit the
same alert within about a millisecond of each other, on one disk and two cores. This
measures what that costs with nothing else running: N processes each hold a SQLite
database in WAL mode with synchronous=FULL (as node/store/sqlite_writer.py), and at
--rate rounds a second every process commits one ~1 KB row at the same moment (a
shared start time). Per round: each commit's wall time and the slowest of the N
(what the last leaf waits for); per process: the CPU of a commit (user + system).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sqlite3
import statistics
import tempfile
import time


def worker(path: str, starts: list[float], out: mp.Queue) -> None:  # type: ignore[type-arg]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (id BLOB PRIMARY KEY, body BLOB)")
    walls, cpu = [], 0.0
    for start in starts:
        if (delay := start - time.time()) > 0:
            time.sleep(delay)  # no spinning: the processes share two cores
        t0, c0 = time.time(), time.process_time()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?, ?)", (os.urandom(32), os.urandom(1000)))
        db.execute("COMMIT")
        walls.append(time.time() - t0)
        cpu += time.process_time() - c0
    out.put((walls, cpu / len(starts)))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def run(n: int, rounds: int, rate: float, directory: str) -> str:
    begin = time.time() + 0.5
    starts = [begin + i / rate for i in range(rounds)]
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [
        mp.Process(target=worker, args=(f"{directory}/db{n}-{i}.sqlite", starts, out))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    every = [w for walls, _ in results for w in walls]
    slowest = [max(r[0][i] for r in results) for i in range(rounds)]
    cpu = statistics.fmean(c for _, c in results)
    return (
        f"| {n} | {pct(every, 50) * 1e3:.2f} / {pct(every, 99) * 1e3:.2f} | "
        f"{pct(slowest, 50) * 1e3:.2f} / {pct(slowest, 99) * 1e3:.2f} | {cpu * 1e3:.3f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--processes", default="1,4", help="comma-separated process counts")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--rate", type=float, default=20.0, help="rounds per second")
    args = p.parse_args()
    print("| processes | each commit p50 / p99 ms | slowest of the round p50 / p99 ms | "
          "CPU per commit ms |")  # fmt: skip
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as directory:
        for n in (int(x) for x in args.processes.split(",")):
            print(run(n, args.rounds, args.rate, directory), flush=True)


if __name__ == "__main__":
    main()
