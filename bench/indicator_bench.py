"""Indicator normalisation benchmark: µs per call of the two hot paths, in-process.

    .venv/bin/python bench/indicator_bench.py [--values 20000] [--rounds 5] [--seed 1]

Rows:
- one per kind (evm, btc, domain, url, tx, ip, email, handle): normalize(type, value,
  strict=True) + index_keys() of canonical values, as Ingest validates an alert's
  indicators (the author's node normalised them before signing);
- `mixed`: parse(text, strict=False) + lookup_keys() of the values CheckIndicators gets
  in node_bench.py (unflagged(): half respelled, half typed canonical, every kind);
- `respelled`: the same over respell() of every kind only (bare, upper case, defanged…).

Values come from bench/node_bench.py's generators and are fresh in every round, so a
cache inside the code under test cannot help. The best round is reported (least
disturbed by other load). Seeded; bounded by --rounds and --max-seconds.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import node_bench  # noqa: E402  (puts the repository root on sys.path too)

from node.core import indicators  # noqa: E402


def canonical_values(rng: random.Random, kind: str, n: int) -> list[str]:
    return [node_bench.random_value(rng, kind) for _ in range(n)]


def mixed_values(rng: random.Random, n: int) -> list[str]:
    return [node_bench.unflagged(rng) for _ in range(n)]


def respelled_values(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        kind = rng.choice(node_bench.KINDS)
        out.append(node_bench.respell(rng, kind, node_bench.random_value(rng, kind)))
    return out


def time_ingest(type_: int, values: Sequence[str]) -> float:
    normalize, index_keys = indicators.normalize, indicators.index_keys
    t0 = time.perf_counter()
    for value in values:
        index_keys(normalize(type_, value, strict=True))
    return time.perf_counter() - t0


def time_check(values: Sequence[str]) -> float:
    parse, lookup_keys = indicators.parse, indicators.lookup_keys
    t0 = time.perf_counter()
    for value in values:
        lookup_keys(parse(value, strict=False))
    return time.perf_counter() - t0


def best_us(
    rounds: int,
    n: int,
    deadline: float,
    make: Callable[[], list[str]],
    run: Callable[[Sequence[str]], float],
) -> float:
    best = float("inf")
    for i in range(rounds):
        if i and time.perf_counter() > deadline:
            break
        values = make()
        best = min(best, run(values) / n * 1e6)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--values", type=int, default=20_000, help="values per round and row")
    p.add_argument("--rounds", type=int, default=5, help="rounds per row (best is reported)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=120.0, help="stop adding rounds after")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    deadline = time.perf_counter() + args.max_seconds
    n, rounds = args.values, args.rounds
    print(f"seed={args.seed} values={n} rounds={rounds}", file=sys.stderr)

    rows: list[tuple[str, str, float]] = []
    for kind in node_bench.KINDS:
        type_ = node_bench.TYPE_OF[kind]
        make = partial(canonical_values, rng, kind, n)
        us = best_us(rounds, n, deadline, make, partial(time_ingest, type_))
        rows.append((kind, "normalize(strict) + index_keys", us))
    for name, make in (
        ("mixed", partial(mixed_values, rng, n)),
        ("respelled", partial(respelled_values, rng, n)),
    ):
        us = best_us(rounds, n, deadline, make, time_check)
        rows.append((name, "parse(strict=False) + lookup_keys", us))

    print("| values | call | µs per call |")
    print("|---|---|---:|")
    for name, call, us in rows:
        print(f"| {name} | {call} | {us:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
