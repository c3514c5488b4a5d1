"""Session 23's per-alert steps, each against the form it replaced, in one process.

    PYTHONPATH=TREE .venv/bin/python bench/ingest_steps.py [--alerts 20000] [--rounds 7]

On a machine whose speed moves by ±30 % from one second to the next, whole-node runs
cannot show 0.2-0.7 µs an alert; here each step and its old form run on the same
inputs, alternately, in each round, and the best and median round of each is printed
(CPU µs per alert of this thread). The old forms are restated here as they were at
e342084:
- the store writer's key filter: `KeyFilter.add` of a commit's key hashes (4.56 keys an
  alert, as node_bench's corpus), the three bits by shifts against by two tables;
- the event loop's gossip bookkeeping of a committed batch: `Gossip.publish` per id
  against `Gossip.publish_many` (no peers, as in node_bench; 500 ids a batch);
- the event loop's cache of recent signed alerts: a frozen dataclass against a named tuple;
- the store's chains after a commit: `Chains.add` per slot against `Chains.add_all`.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from node.app.recent_alerts import RecentAlerts
from node.core.alerts import AlertRecord
from node.core.chain import Chains
from node.core.gossip import Gossip, GossipParams
from node.store.keyfilter import KeyFilter

KEYS_PER_ALERT = 4.56
BATCH = 500


@dataclass(frozen=True, slots=True)
class _CachedBefore:
    id: bytes
    body: bytes
    signature: bytes
    origin: bytes


def _add_by_shifts(f: KeyFilter, hashes: list[int]) -> None:
    """KeyFilter.add as at e342084 (one table, as a filter of this size has)."""
    [(words, mask)] = f.probes()
    for h in hashes:
        words[h & mask] |= (
            (1 << ((h >> 40) & 63)) | (1 << ((h >> 46) & 63)) | (1 << ((h >> 52) & 63))
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--alerts", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = random.Random(args.seed)
    n = args.alerts
    unpack = struct.Struct(">q").unpack_from
    hashes = [
        unpack(hashlib.sha256(rng.randbytes(24)).digest())[0]
        for _ in range(int(n * KEYS_PER_ALERT))
    ]
    ids = [rng.randbytes(32) for _ in range(n)]
    origins = [rng.randbytes(32) for _ in range(8)]
    slots = [(origins[i % 8], i // 8 + 1) for i in range(n)]
    records = [
        AlertRecord(
            ids[i], rng.randbytes(600), rng.randbytes(64), o, seq, b"", 0, 0, 0, 0, 0, "t", ()
        )
        for i, (o, seq) in enumerate(slots)
    ]
    step = int(BATCH * KEYS_PER_ALERT)

    def filter_before() -> None:
        f = KeyFilter(len(hashes))  # one table: the old form handled only that
        for i in range(0, len(hashes), step):
            _add_by_shifts(f, hashes[i : i + step])

    def filter_now() -> None:
        f = KeyFilter(len(hashes))
        for i in range(0, len(hashes), step):
            f.add(hashes[i : i + step])

    def gossip(per_id: bool) -> Callable[[], None]:
        def run() -> None:
            g = Gossip(GossipParams(), random.Random(1))
            for k, i in enumerate(range(0, n, BATCH)):
                batch, now = ids[i : i + BATCH], 1000.0 + k * 0.01
                if per_id:
                    [a for x in batch for a in g.publish(x, now)]
                else:
                    g.publish_many(batch, now)

        return run

    def cache_before() -> None:  # RecentAlerts.remember as at e342084
        cache: dict[bytes, object] = {}
        for i in range(0, n, BATCH):
            for r in records[i : i + BATCH]:
                cache[r.id] = _CachedBefore(r.id, r.body, r.signature, r.origin)

    def cache_now() -> None:
        recent = RecentAlerts(size=n)
        for i in range(0, n, BATCH):
            recent.remember(records[i : i + BATCH])

    def chains(per_slot: bool) -> Callable[[], None]:
        def run() -> None:
            c = Chains()
            for i in range(0, n, BATCH):
                if per_slot:
                    for origin, seq in slots[i : i + BATCH]:
                        c.add(origin, seq)
                else:
                    c.add_all(slots[i : i + BATCH])

        return run

    steps: list[tuple[str, Callable[[], None], Callable[[], None]]] = [
        ("writer: KeyFilter.add of the alert's keys", filter_before, filter_now),
        ("loop: gossip bookkeeping of a committed alert", gossip(True), gossip(False)),
        ("loop: the recent alerts' cache of a committed alert", cache_before, cache_now),
        ("loop: chains after a commit", chains(True), chains(False)),
    ]
    times: dict[str, list[list[float]]] = {name: [[], []] for name, _, _ in steps}
    for _ in range(args.rounds):
        for name, before, now in steps:
            for k, fn in enumerate((before, now)):
                started = time.thread_time()
                fn()
                times[name][k].append((time.thread_time() - started) / n * 1e6)
    print(f"{n:,} alerts, {args.rounds} rounds, CPU µs per alert of this thread (best / median)\n")
    print("| step | before | now | saved (best) |\n|---|---|---|---|")
    for name, (before, now) in times.items():
        print(
            f"| {name} | {min(before):.3f} / {statistics.median(before):.3f} | "
            f"{min(now):.3f} / {statistics.median(now):.3f} | {min(before) - min(now):.3f} |"
        )


if __name__ == "__main__":
    main()
