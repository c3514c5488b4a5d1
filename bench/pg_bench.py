"""CheckIndicators on a SQLite store against a PostgreSQL store of the same alerts.

    .venv/bin/python bench/pg_bench.py --alerts 1000000 [--url postgresql://...]

One run: the same --alerts alerts (2 indicators each, a domain and an EVM address,
from 8 member keys) are written into a SQLite store and into a PostgreSQL database
through the store API (PostgreSQL by COPY in the store's group commit), then a real
node (`alertmesh run`) is started on each store in turn and answers the same
--calls CheckIndicators calls of --values values each (1% of them flagged, in other
spellings), --in-flight at a time, over gRPC on 127.0.0.1. Reported per store:
client-observed p50/p99 latency per call and values checked per second; and the
ratio PostgreSQL / SQLite. Fill times are reported too.

The PostgreSQL server is started from the pgserver wheel (a test extra) in a
temporary directory, unless --url names one (its database must be empty). The
alerts are not signed (the store does not verify; a node verifies before storing),
which keeps the fill fast. Every loop is bounded by --alerts and --calls.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node._pb.alertmesh.v1 import alert_pb2  # noqa: E402
from node.core.alerts import make_record  # noqa: E402
from node.core.index_keys import indicator_keys  # noqa: E402
from node.core.indicators import ADDRESS, DOMAIN  # noqa: E402
from node.rpc.client import AlertClient  # noqa: E402
from node.store.base import AlertStore  # noqa: E402
from node.store.postgres import PostgresStore  # noqa: E402
from node.store.sqlite import SqliteStore  # noqa: E402
from tests.procs import NodeProcess, alertmesh  # noqa: E402

BATCH = 5000
AUTHORS = 8


def address(i: int) -> str:
    return "eip155:1:0x" + hashlib.sha256(b"a%d" % i).hexdigest()[:40]


def records(n: int, now: int) -> list[object]:
    out = []
    origins = [hashlib.sha256(b"origin%d" % k).digest() for k in range(AUTHORS)]
    heads = [b""] * AUTHORS
    for i in range(n):
        k = i % AUTHORS
        alert = alert_pb2.Alert(
            origin=origins[k],
            seq=i // AUTHORS + 1,
            prev=heads[k],
            created_at_ms=now - (n - i),
            category=alert_pb2.CATEGORY_PHISHING,
            severity=alert_pb2.SEVERITY_HIGH,
            confidence=80,
            title=f"bench alert {i}",
        )
        alert.indicators.add(type=DOMAIN, value=f"drainer{i}.example")
        alert.indicators.add(type=ADDRESS, value=address(i))
        body = alert.SerializeToString(deterministic=True)
        record = make_record(body, b"\0" * 64, alert, indicator_keys(alert))
        heads[k] = record.id
        out.append(record)
    return out


async def fill(store: AlertStore, rows: list[object], now: int) -> float:
    started = time.perf_counter()
    async with store:
        for i in range(0, len(rows), BATCH):
            await store.put(rows[i : i + BATCH], now_ms=now)  # type: ignore[arg-type]
    return time.perf_counter() - started


async def analyze(url: str) -> None:
    import asyncpg

    db = await asyncpg.connect(url)
    try:
        await db.execute("ANALYZE")
    finally:
        await db.close()


def queries(n_alerts: int, calls: int, values: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(calls):
        call = []
        for _ in range(values):
            if rng.random() < 0.01:  # flagged, in another spelling
                i = rng.randrange(n_alerts)
                call.append(
                    f"https://login.DRAINER{i}.example/claim"
                    if rng.random() < 0.5
                    else address(i).removeprefix("eip155:1:").upper().replace("0X", "0x")
                )
            else:
                call.append(f"clean{rng.randrange(10**9)}.example")
        out.append(call)
    return out


async def check_run(address_: str, calls: list[list[str]], in_flight: int) -> dict[str, float]:
    latencies: list[float] = []
    flagged = 0
    async with AlertClient(address_) as client:
        for call in calls[: min(5, len(calls))]:  # warm-up
            await client.check(call)
        pending = iter(calls)

        async def worker() -> None:
            nonlocal flagged
            for call in pending:
                started = time.perf_counter()
                response = await client.check(call)
                latencies.append(time.perf_counter() - started)
                flagged += sum(1 for r in response.results if r.matches)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "values_per_s": sum(len(c) for c in calls) / seconds,
        "flagged": flagged,
    }


def serve(home: Path) -> NodeProcess:
    return NodeProcess(home).start()


async def main_async(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="pg-bench-"))
    server = None
    url = args.url
    if not url:
        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="pg-bench-run-"))
        import pgserver

        server = pgserver.get_server(work / "pgdata", cleanup_mode="delete")
        url = f"postgresql://postgres@/postgres?host={work / 'pgdata'}"
    try:
        now = int(time.time() * 1000)
        t = time.perf_counter()
        rows = records(args.alerts, now)
        print(f"built {len(rows)} alerts in {time.perf_counter() - t:.1f} s", flush=True)
        homes = {}
        fills = {}
        for name in ("sqlite", "postgresql"):
            home = work / name
            alertmesh("init", "--home", str(home), "--name", f"bench-{name}")
            if name == "postgresql":
                config = home / "config.toml"
                config.write_text(config.read_text().replace('\nurl = ""\n', f'\nurl = "{url}"\n'))
                store: AlertStore = PostgresStore(url)
            else:
                store = SqliteStore(home / "alerts.db")
            fills[name] = await fill(store, rows, now)
            if name == "postgresql":  # as after any bulk load (migrate does it too)
                await analyze(url)
            print(f"filled {name} in {fills[name]:.1f} s", flush=True)
            homes[name] = home
        del rows
        calls = queries(args.alerts, args.calls, args.values, args.seed)
        results = {}
        for name, home in homes.items():
            node = serve(home)
            try:
                results[name] = await check_run(node.address, calls, args.in_flight)
            finally:
                node.stop()
        print()
        print(
            f"CheckIndicators, {args.alerts:,} alerts, {args.calls} calls x {args.values} values,"
            f" {args.in_flight} in flight"
        )
        print()
        print("| store | fill s | p50 ms | p99 ms | values/s |")
        print("|---|---|---|---|---|")
        for name, r in results.items():
            print(
                f"| {name} | {fills[name]:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}"
                f" | {r['values_per_s']:,.0f} |"
            )
        sq, pg = results["sqlite"], results["postgresql"]
        print()
        print(
            f"ratio PostgreSQL/SQLite: throughput {pg['values_per_s'] / sq['values_per_s']:.2f},"
            f" p50 {pg['p50_ms'] / sq['p50_ms']:.2f}, p99 {pg['p99_ms'] / sq['p99_ms']:.2f}"
        )
        if sq["flagged"] != pg["flagged"]:
            print(f"error: flagged values differ: {sq['flagged']} vs {pg['flagged']}")
            return 1
        return 0
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--alerts", type=int, default=1_000_000)
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--values", type=int, default=1000)
    p.add_argument("--in-flight", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--url", help="an empty PostgreSQL database (default: a pgserver one)")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
