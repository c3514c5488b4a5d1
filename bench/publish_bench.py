"""Publish-path benchmark: single Publish calls against one node, and what they cost.

    .venv/bin/python bench/publish_bench.py [--alerts 5000] [--in-flight 16]

One run, one real node process (node.cluster.up with one node: `alertmesh run`, no
peers), one grpc.aio client in this process (node.rpc.client.AlertClient, as
bench/cluster_bench.py uses). Phases, in order:

1. warm-up: --warmup publishes.
2. floor: --floor-calls calls of the standard health Check RPC (an empty unary call
   through the same server: no store, no signing) with --in-flight outstanding. Its CPU
   per call, node and client, is what gRPC Python alone costs per unary call here.
3. publish: --alerts Publish calls (bench/cluster_bench.py's realistic drafts, ~600-byte
   signed bodies, 3 indicators) with --in-flight outstanding. Reported: acks/s, ack
   latency p50/p99, node CPU µs per publish (/proc/PID/stat of the node and its child
   processes) and client CPU µs per call (time.process_time of this process), the
   store's group commits per publish (GetStats counter store_commits) and the node's
   own accounting of where a publish's time goes.

The ratios within one run mean more than the absolute figures on a shared machine.
Every phase is bounded by count; the node lives in a temporary directory and is
always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from cluster_bench import publish_request  # noqa: E402

from bench.proc_cpu import thread_times  # noqa: E402
from node import cluster  # noqa: E402
from node.rpc.client import AlertClient  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def node_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the node process, all threads, and its children."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of the node, by thread id (proc_cpu.thread_times)."""
    return {tid: t.user + t.system for tid, t in thread_times(pid).items()}


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by thread id, from `py-spy dump`."""
    names = {pid: "event loop (MainThread)"}
    spy = Path(sys.executable).parent / "py-spy"
    if spy.exists():
        try:
            dump = subprocess.run(
                [str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return names
        for tid, name in re.findall(r'^Thread (\d+) \(\w+\): "([^"]*)"', dump, re.M):
            names.setdefault(int(tid), name)
    return names


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))]


@dataclass
class Phase:
    name: str
    calls: int
    seconds: float
    latencies: list[float]
    node_cpu: float
    client_cpu: float
    commits: int = 0
    threads: dict[int, float] | None = None  # node CPU seconds by thread id

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def row(self) -> str:
        lat = self.latencies
        commits = f"{self.calls / self.commits:.1f}" if self.commits else "-"
        return (
            f"| {self.name} | {self.calls} | {self.rate:,.0f} | {pct(lat, 50) * 1e3:.1f} |"
            f" {pct(lat, 99) * 1e3:.1f} | {self.node_cpu / self.calls * 1e6:,.0f} |"
            f" {self.client_cpu / self.calls * 1e6:,.0f} |"
            f" {(self.node_cpu + self.client_cpu) / self.calls * 1e6:,.0f} | {commits} |"
        )


async def run_calls(
    name: str, calls: Sequence[Callable[[], Awaitable[object]]], in_flight: int, pid: int
) -> Phase:
    queue = list(reversed(calls))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            call = queue.pop()
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    threads0 = thread_cpu(pid)
    cpu0, client0, t0 = node_cpu(pid), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    seconds = time.perf_counter() - t0
    threads1 = thread_cpu(pid)
    return Phase(
        name,
        len(calls),
        seconds,
        latencies,
        node_cpu(pid) - cpu0,
        time.process_time() - client0,
        threads={t: c - threads0.get(t, 0.0) for t, c in threads1.items()},
    )


def start_py_spy(path: Path, pid: int) -> subprocess.Popen[bytes]:
    """Sample the node until stopped with SIGINT (py-spy then writes `path`)."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
         "--output", str(path), "--format", "raw", "--threads", "--nonblocking",
         "--rate", "250"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def py_spy_summary(path: Path, top: int) -> str:
    """Own and inclusive shares of the node's samples (py-spy `--format raw`), per frame."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue  # a line cut short
        frames = stack.split(";")
        n = int(count)
        total += n
        threads[frames[0]] = threads.get(frames[0], 0) + n
        names = [f.rpartition(":")[0] + ")" for f in frames[1:]]
        if names:
            own[names[-1]] = own.get(names[-1], 0) + n
        for name in set(names):
            inclusive[name] = inclusive.get(name, 0) + n
    if not total:
        return "(no samples)"
    out = ["samples by thread: " + ", ".join(f"{t} {n / total:.0%}" for t, n in threads.items())]
    out.append("own time:")
    out += [f"{n / total:6.1%}  {f}" for f, n in sorted(own.items(), key=lambda x: -x[1])[:top]]
    out.append("inclusive:")
    out += [
        f"{n / total:6.1%}  {f}" for f, n in sorted(inclusive.items(), key=lambda x: -x[1])[:top]
    ]
    return "\n".join(out)


async def counters(client: AlertClient) -> dict[str, int]:
    return dict((await client.stats()).counters)


async def drive(address: str, pid: int, args: argparse.Namespace) -> list[Phase]:
    rng = random.Random(args.seed)
    phases = []
    async with AlertClient(address) as client:
        await client.wait_ready(30)
        health = health_pb2_grpc.HealthStub(client._channel)  # the same channel
        check = health_pb2.HealthCheckRequest(service="")

        def publishes(n: int, tag: str) -> list[Callable[[], Awaitable[object]]]:
            drafts = [publish_request(rng, f"{tag} {i}") for i in range(n)]
            return [lambda d=d: client.publish(d, timeout=30) for d in drafts]

        await run_calls("warm-up", publishes(args.warmup, "warm-up"), args.in_flight, pid)
        floor = [lambda: health.Check(check, timeout=30)] * args.floor_calls
        phases.append(
            await run_calls(
                f"empty unary call (health Check), {args.in_flight} in flight",
                floor,
                args.in_flight,
                pid,
            )
        )
        for k in args.in_flight_list or [args.in_flight]:
            before = await counters(client)
            spy = start_py_spy(args.py_spy, pid) if args.py_spy else None
            phase = await run_calls(
                f"Publish, {k} in flight", publishes(args.alerts, "publish"), k, pid
            )
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
                print(py_spy_summary(args.py_spy, 40))
            after = await counters(client)
            phase.commits = after.get("store_commits", 0) - before.get("store_commits", 0)
            phases.append(phase)
    return phases


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--alerts", type=int, default=5000, help="Publish calls per phase")
    p.add_argument("--in-flight", type=int, default=16)
    p.add_argument(
        "--in-flight-list",
        type=lambda s: [int(x) for x in s.split(",")],
        default=None,
        help="several publish phases, e.g. 1,8,16 (default: --in-flight only)",
    )
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--floor-calls", type=int, default=3000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--py-spy", type=Path, default=None, help="sample the node in each publish phase"
    )
    p.add_argument("--dir", type=Path, default=None, help="keep the node here (default: temp)")
    args = p.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="publish-bench-")) if args.dir is None else args.dir
    print("$ " + shlex.join(["python", "bench/publish_bench.py", *(argv or sys.argv[1:])]))
    nodes = cluster.up(base / "one", 1, seed=args.seed)
    try:
        pid = nodes[0].pid()
        assert pid is not None
        phases = asyncio.run(drive(nodes[0].api, pid, args))
        names = thread_names(pid)
    finally:
        cluster.down(base / "one")
    print(
        "| phase | calls | calls/s | p50 ms | p99 ms | node CPU µs/call | client CPU µs/call |"
        " both µs/call | publishes per commit |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for phase in phases:
        print(phase.row())
    print("\nnode CPU µs per call by thread:")
    for phase in phases:
        parts = sorted((phase.threads or {}).items(), key=lambda x: -x[1])
        text = ", ".join(
            f"{names.get(t, t)} {c / phase.calls * 1e6:,.0f}" for t, c in parts if c > 0
        )
        print(f"- {phase.name}: {text}")
    cores = os.cpu_count() or 1
    pub = [ph for ph in phases if ph.name.startswith("Publish")]
    if pub:
        last = pub[-1]
        both = (last.node_cpu + last.client_cpu) / last.calls
        print(
            f"\nCPU bound on {cores} cores for this client+node alone: {cores / both:,.0f}"
            f" calls/s (measured {last.rate:,.0f}/s; mean of the latencies"
            f" {statistics.fmean(last.latencies) * 1e3:.1f} ms)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
