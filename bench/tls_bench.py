"""What TLS costs the network: a 5-node cluster with pinned TLS 1.3 against plaintext.

    .venv/bin/python bench/tls_bench.py [--rounds 2] [--burst 2000] [--rate 170]

One run, one machine, real node processes on 127.0.0.1 (the same cluster as
`alertmesh cluster up`, and `--insecure-plaintext` for the other side). Rounds
alternate between the two transports (TLS, plaintext, TLS, plaintext, ...) so that a
slow spell of this shared 2-core machine does not fall on one side only. Each round
starts a fresh cluster and runs, with bench/cluster_bench.py's Bench:

1. warm-up: --warmup alerts at 20/s (the eager tree settles);
2. latency: --rate alerts/s for --seconds, publish-to-last-node p50/p99 from every
   node's Subscribe stream;
3. throughput: a burst of --burst alerts at node1 (8 in flight), timed until every
   store holds them all.

Reported per transport: the median over its rounds, and TLS / plaintext for each
figure (throughput: the share of plaintext throughput TLS keeps; the target is at
least 0.90).
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cluster_bench import Bench, pct  # noqa: E402
from node import cluster  # noqa: E402


@dataclass
class Round:
    transport: str
    throughput: float  # alerts/s into all five stores
    p50_ms: float
    p99_ms: float
    node_cpu_per_alert_us: float  # burst: CPU of all nodes / alerts
    undelivered: int


async def one_round(directory: Path, plaintext: bool, args: argparse.Namespace) -> Round:
    nodes = await asyncio.to_thread(cluster.up, directory, 5, seed=args.seed, plaintext=plaintext)
    bench = Bench(nodes, args)
    try:
        await bench.start_watching()
        await bench.latency_phase("warm-up", 20.0, args.warmup / 20.0)
        paced = await bench.latency_phase(f"{args.rate:g}/s", args.rate, args.seconds)
        await bench.stop_watching()
        offset = None if args.burst_offset < 0 else args.burst_offset
        burst = await bench.burst_phase(args.burst, 8, offset)
    finally:
        await bench.close()
        await asyncio.to_thread(cluster.down, directory)
    delivered = burst.delivered_at or float("inf")
    return Round(
        transport="plaintext" if plaintext else "TLS",
        throughput=args.burst / delivered,
        p50_ms=pct(paced.latencies, 50) * 1000,
        p99_ms=pct(paced.latencies, 99) * 1000,
        node_cpu_per_alert_us=burst.node_cpu / args.burst * 1e6,
        undelivered=paced.undelivered + burst.undelivered,
    )


def report(rounds: list[Round], command: str, seconds: float) -> str:
    def median(transport: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in rounds if r.transport == transport)

    rows = [
        ("throughput into all 5 stores (alerts/s)", "throughput", "{:,.0f}"),
        ("publish to last node p50 (ms)", "p50_ms", "{:.1f}"),
        ("publish to last node p99 (ms)", "p99_ms", "{:.1f}"),
        ("node CPU per alert in the burst (µs, 5 nodes)", "node_cpu_per_alert_us", "{:,.0f}"),
    ]
    out = [
        f"Command: `{command}` ({seconds:.0f} s; medians of "
        f"{sum(r.transport == 'TLS' for r in rounds)} rounds per transport)",
        "",
        "| | TLS 1.3 (pinned) | plaintext | TLS / plaintext |",
        "|---|---|---|---|",
    ]
    for label, attr, fmt in rows:
        tls, plain = median("TLS", attr), median("plaintext", attr)
        out.append(f"| {label} | {fmt.format(tls)} | {fmt.format(plain)} | {tls / plain:.2f} |")
    lost = sum(r.undelivered for r in rounds)
    out += ["", f"Alerts not delivered everywhere: {lost}.", "", "Rounds, in order:", ""]
    out += [
        f"- {r.transport}: {r.throughput:,.0f} alerts/s, p50 {r.p50_ms:.1f} ms, "
        f"p99 {r.p99_ms:.1f} ms, {r.node_cpu_per_alert_us:,.0f} µs node CPU per alert"
        for r in rounds
    ]
    return "\n".join(out)


async def main_async(args: argparse.Namespace) -> str:
    begin = time.monotonic()
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="alertmesh-tls-"))
    rounds = []
    try:
        for i in range(args.rounds):
            for plaintext in (False, True):
                name = f"{'plain' if plaintext else 'tls'}-{i}"
                print(f"# round {i + 1}: {name}", file=sys.stderr)
                rounds.append(await one_round(base / name, plaintext, args))
                print(f"#   {rounds[-1]}", file=sys.stderr)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    command = shlex.join([".venv/bin/python", "bench/tls_bench.py", *sys.argv[1:]])
    return report(rounds, command, time.monotonic() - begin)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="rounds per transport")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--rate", type=float, default=170.0, help="paced phase, alerts/s")
    p.add_argument("--seconds", type=float, default=10.0, help="paced phase length")
    p.add_argument("--burst", type=int, default=2000)
    p.add_argument(
        "--burst-offset",
        type=float,
        default=2.0,
        help="start the burst this many s after a catch-up round (cluster_bench); -1: now",
    )
    p.add_argument("--phase-timeout", type=float, default=45.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dir", help="cluster directories (default: a temporary one, removed)")
    args = p.parse_args()
    # What Bench reads from cluster_bench's own arguments.
    args.rate_in_flight, args.settle, args.poll, args.threads = 16, 1.0, 0.2, False
    print(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
