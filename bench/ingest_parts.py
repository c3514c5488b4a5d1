"""CPU per alert of the verifier worker's check and of the store writer, in this process.

    PYTHONPATH=TREE .venv/bin/python bench/ingest_parts.py [--alerts N]   # ~30 s

For comparing two versions of the node's code (run it once with each tree on
PYTHONPATH, interleaved, under the benchmark lock): the same corpus as node_bench
(seed 1), and for each part the best and the median of several passes, CPU time of
this one thread:
- the rules and the record's fields (`checked_fields`, or `validate` then
  `record_fields` in a tree from before it);
- the worker's whole check of each alert (`check_admitted_bytes`: decoding, the rules,
  Ed25519, the fields);
- `Writer.write` filling a new SQLite file in puts of 500 (SQL included), and the
  outcomes of a fresh batch of 500 alone (`classify`, or the writer's shortcut).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import node_bench

from node.app import verify_worker
from node.app.verify import check_batch
from node.core import alerts
from node.core.alerts import AlertRecord
from node.core.chain import Chains
from node.core.limits import DEFAULT_LIMITS
from node.core.roster import Member, Roster
from node.store import sqlite_writer
from node.store.base import PutOutcome, classify


def per_alert(fn: Callable[[], object], alerts_per_pass: int, passes: int) -> tuple[float, float]:
    """(best, median) CPU µs per alert of `passes` calls of `fn`."""
    runs = []
    for _ in range(passes):
        started = time.thread_time()
        fn()
        runs.append((time.thread_time() - started) / alerts_per_pass * 1e6)
    return min(runs), statistics.median(runs)


def fill(records: list[AlertRecord], now_ms: int) -> float:
    """CPU µs per alert of Writer.write putting `records` into a new file, 500 a put."""
    directory = Path(tempfile.mkdtemp(prefix="alertmesh-parts-"))
    try:
        writer = sqlite_writer.Writer(directory / "alerts.db", "NORMAL")
        writer.migrate()
        chains, last, cpu = Chains(), 0, 0.0
        for i in range(0, len(records), 500):
            batch = [sqlite_writer.Write(records[i : i + 500], now_ms, "")]
            started = time.thread_time()
            committed = writer.write(batch, chains, last)
            cpu += time.thread_time() - started
            for origin, seq in committed.accepted:
                chains.add(origin, seq)
            last = committed.last_local_seq
        writer.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return cpu / len(records) * 1e6


def outcomes(part: list[AlertRecord]) -> list[PutOutcome]:
    """What the writer decides for a fresh batch (nothing held)."""
    shortcut = getattr(sqlite_writer, "_all_distinct", None)
    if shortcut is not None and shortcut(part):
        return [PutOutcome.ACCEPTED] * len(part)
    slots: set[tuple[bytes, int]] = set()
    return classify(part, held=set(), known_equivocations=set(), holds=lambda o, s: (o, s) in slots)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--alerts", type=int, default=20_000)
    p.add_argument("--passes", type=int, default=5)
    args = p.parse_args()
    corpus = node_bench.build_corpus(args.alerts, 8, 600, 1)
    items = [(s.body, s.signature) for s in corpus.signed]
    decoded = [alerts.decode_body(body, DEFAULT_LIMITS) for body, _ in items]
    now = time.time_ns() // 1_000_000 + 1000
    roster = Roster.of([Member(a.name, a.identity.public_key) for a in corpus.authors])
    records = [r for r in check_batch(items, roster, now, DEFAULT_LIMITS)]
    assert all(isinstance(r, AlertRecord) for r in records)
    fresh = [r for r in records if isinstance(r, AlertRecord)]
    gc.collect()
    gc.freeze()

    def rules() -> None:
        checked = getattr(alerts, "checked_fields", None)
        for a in decoded:
            if checked is not None:
                checked(a, now_ms=now, limits=DEFAULT_LIMITS)
            else:
                alerts.record_fields(a, alerts.validate(a, now_ms=now, limits=DEFAULT_LIMITS))

    n, passes = len(items), args.passes
    rows = [
        ("worker: the rules and the record's fields", per_alert(rules, n, passes)),
        (
            "worker: the whole check (decode, rules, Ed25519, fields)",
            per_alert(lambda: verify_worker.check_admitted_bytes(items, now, DEFAULT_LIMITS), n, 3),
        ),
        ("writer: Writer.write into a new file, puts of 500",
         _spread([fill(fresh, now) for _ in range(3)])),
        ("writer: the outcomes of a fresh batch of 500", per_alert(
            lambda: [outcomes(fresh[:500]) for _ in range(100)], 50_000, passes
        )),
    ]  # fmt: skip
    print(f"{n:,} alerts, CPU µs per alert of this thread\n")
    print("| part | best | median |\n|---|---|---|")
    for name, (best, median) in rows:
        print(f"| {name} | {best:.2f} | {median:.2f} |")


def _spread(values: list[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)


if __name__ == "__main__":
    main()
