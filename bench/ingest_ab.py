"""Node CPU per ingested alert, in-process and by thread, for A/B runs of two code trees.

    PYTHONPATH=TREE .venv/bin/python bench/ingest_ab.py [--alerts 20000] [--batch 500]

The node code measured is whichever `node` package PYTHONPATH names (this file imports
bench/node_bench.py only for its corpus and home, after TREE), so one corpus can be
ingested by a checkout of main and by a branch in turn, interleaved, on a noisy machine:

    for tree in /tmp/before $PWD /tmp/before $PWD; do
        flock /tmp/alertmesh-bench.lock env PYTHONPATH=$tree \
            .venv/bin/python bench/ingest_ab.py --cache /tmp/ab-corpus [--stages]
    done

One run: one Ed25519 verify's CPU on this thread (pynacl, the same bodies), then
AlertService.Ingest on AlertNode + Verifier (worker processes) + a new SqliteStore,
--in-flight requests of --batch alerts at once, without gRPC (the event loop's gRPC share
is what bench/node_bench.py adds). The first request starts the verifier processes and is
not counted. CPU by thread comes from /proc/self/task/*/stat (the event loop is
MainThread, the store's write transactions store-writer), and from /proc/PID/stat of the
verifier processes, read before they exit; each figure is also given as a multiple of
one verify measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pickle
import pstats
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH: the node measured is PYTHONPATH's

import node_bench  # noqa: E402  (bench/ is this file's directory)

from node._pb.alertmesh.v1 import alert_pb2  # noqa: E402
from node._pb.alertmesh.v1 import alerts_service_pb2 as api  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_of(stat: Path) -> float:
    """utime + stime of a /proc stat file, in seconds."""
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def threads() -> dict[str, float]:
    """CPU seconds of this process by thread kind (Python's name without its number)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            cpu = cpu_of(task / "stat")
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        name = re.sub(r"^Thread-\d+ \((\w+)\)$", r"\1", name)
        name = re.sub(r"_\d+$", "", name).replace("_connection_worker_thread", "aiosqlite")
        out[name] = out.get(name, 0.0) + cpu
    return out


def corpus(cache: Path, alerts: int) -> tuple[Path, list[alert_pb2.SignedAlert]]:
    """A home whose roster holds the authors, and the signed alerts (made once, cached)."""
    home, data = cache / "home", cache / f"alerts-{alerts}.pickle"
    if not data.exists():
        cache.mkdir(parents=True, exist_ok=True)
        made = node_bench.build_corpus(alerts, 8, 600, 1)
        if not home.exists():
            node_bench.init_home(home, made.authors)
        data.write_bytes(pickle.dumps([s.SerializeToString() for s in made.signed]))
    signed = [alert_pb2.SignedAlert.FromString(b) for b in pickle.loads(data.read_bytes())]
    return home, signed


def verify_us(signed: list[alert_pb2.SignedAlert], seconds: float) -> float:
    items = [
        (a.origin, s.body, s.signature)
        for s in signed[:2000]
        for a in [alert_pb2.Alert.FromString(s.body)]
    ]
    return node_bench.verify_rate(items, 1, seconds).cpu_us


async def ingest(
    home: Path,
    signed: list[alert_pb2.SignedAlert],
    batch: int,
    in_flight: int,
    profile: cProfile.Profile | None = None,
) -> dict[str, Any]:
    from node.app.config import Config
    from node.app.verify import Verifier
    from node.core.limits import DEFAULT_LIMITS
    from node.rpc.alert_service import AlertService
    from node.store.sqlite import SqliteStore

    config = Config.load(home)
    requests = [
        api.IngestRequest(alerts=signed[i : i + batch]) for i in range(0, len(signed), batch)
    ]
    db = Path(tempfile.mkdtemp(prefix="alertmesh-ab-"))
    try:
        async with Verifier(DEFAULT_LIMITS) as verifier, SqliteStore(db / "alerts.db") as store:
            service = AlertService(node_bench.in_process_node(config, store, verifier))
            await service.Ingest(requests[0], None)  # type: ignore[arg-type]  # starts workers
            pending = iter(requests[1:])
            accepted = 0

            async def worker() -> None:
                nonlocal accepted
                for request in pending:
                    response = await service.Ingest(request, None)  # type: ignore[arg-type]
                    response.SerializeToString()
                    accepted += sum(
                        r.outcome == api.INGEST_OUTCOME_ACCEPTED for r in response.results
                    )

            pids = [w.process.pid for w in verifier._workers]
            t0, w0 = threads(), sum(cpu_of(Path(f"/proc/{p}/stat")) for p in pids)
            if profile:
                profile.enable()
            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            wall = time.perf_counter() - start
            if profile:
                profile.disable()
            t1, w1 = threads(), sum(cpu_of(Path(f"/proc/{p}/stat")) for p in pids)
    finally:
        shutil.rmtree(db, ignore_errors=True)
    n = len(signed) - len(requests[0].alerts)
    if accepted != n:
        raise SystemExit(f"accepted {accepted} of {n}")
    by = {k: (t1[k] - t0.get(k, 0.0)) / n * 1e6 for k in t1}
    by["verifier processes"] = (w1 - w0) / n * 1e6
    return {"alerts": n, "rate": n / wall, "by": by}


def stages(signed: list[alert_pb2.SignedAlert]) -> list[tuple[str, float]]:
    """CPU µs per alert of each step of the ingest path, on this thread, best of 3."""
    import pickle as pickle_

    from node.app import verify_worker
    from node.core import alerts, index_keys
    from node.core.limits import DEFAULT_LIMITS as LIMITS
    from node.crypto import verify_alert

    items = [(s.body, s.signature) for s in signed[:10000]]
    now = time.time_ns() // 1_000_000
    out: list[tuple[str, float]] = []

    def cost(name: str, fn: Any) -> Any:
        best, result = float("inf"), None
        for _ in range(3):
            t0 = time.process_time()
            result = fn()
            best = min(best, (time.process_time() - t0) / len(items) * 1e6)
        out.append((name, best))
        return result

    decoded = cost("worker: decode_body", lambda: [alerts.decode_body(b, LIMITS) for b, _ in items])
    keys = cost(
        "worker: validate (rules + indicators)",
        lambda: [alerts.validate(a, now_ms=now, limits=LIMITS) for a in decoded],
    )
    cost(
        "worker: … of which indicator_keys",
        lambda: [index_keys.indicator_keys(a) for a in decoded],
    )
    cost(
        "worker: … of which reading indicators",
        lambda: [[(i.type, i.value) for i in a.indicators] for a in decoded],
    )
    cost(
        "worker: verify_alert (Ed25519)",
        lambda: [verify_alert(a.origin, b, s) for a, (b, s) in zip(decoded, items, strict=True)],
    )
    fields = cost(
        "worker: record_fields",
        lambda: [alerts.record_fields(a, k) for a, k in zip(decoded, keys, strict=True)],
    )
    tasks = cost(
        "loop: task framing (128 per task)",
        lambda: [
            verify_worker.task(1, items[i : i + 128], now, LIMITS)
            for i in range(0, len(items), 128)
        ],
    )
    cost(
        "worker: task unpickling",
        lambda: [verify_worker.items_of(*pickle_.loads(t[4:])[3:]) for t in tasks],
    )
    results = cost(
        "worker: result pickling",
        lambda: [verify_worker.frame((1, fields[i : i + 128])) for i in range(0, len(items), 128)],
    )
    cost("loop: result unpickling", lambda: [pickle_.loads(r[4:]) for r in results])
    cost("loop: alert_id (SHA-256)", lambda: [alerts.alert_id(b) for b, _ in items])
    cost("loop: decode_head", lambda: [alerts.decode_head(b, LIMITS) for b, _ in items])
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="cProfile the event loop")
    parser.add_argument("--stages", action="store_true", help="also each step's CPU, one thread")
    parser.add_argument(
        "--cache", type=Path, help="keep the signed corpus here for the next run (A/B runs)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alertmesh-ab-corpus-") as scratch:
        home, signed = corpus(args.cache or Path(scratch), args.alerts)
        return report(args, home, signed)


def report(args: argparse.Namespace, home: Path, signed: list[alert_pb2.SignedAlert]) -> int:
    import node

    v1 = verify_us(signed, 1.5)
    # Thread CPU, not wall time: the event loop's own cost, whatever else the machine runs.
    profile = cProfile.Profile(time.thread_time) if args.profile else None
    run = asyncio.run(ingest(home, signed, args.batch, args.in_flight, profile))
    v2 = verify_us(signed, 1.5)
    verify = (v1 + v2) / 2
    total = sum(run["by"].values())
    tree = Path(node.__file__).resolve().parents[1]
    print(
        f"node code {tree}; one verify {verify:.1f} CPU µs ({v1:.1f} before, {v2:.1f} after);"
        f" {run['alerts']:,} alerts at {run['rate']:,.0f}/s ="
        f" {run['rate'] * verify / 1e6:.2f}× the rate of one thread verifying (1e6 / that CPU)\n"
    )
    print("| | µs per alert | verifies |\n|---|---|---|")
    print(f"| node CPU, all threads and verifier processes | {total:.1f} | {total / verify:.3f} |")
    for name, us in sorted(run["by"].items(), key=lambda x: -x[1]):
        if us >= 0.05:
            print(f"| … {name} | {us:.1f} | {us / verify:.3f} |")
    if args.stages:
        for name, us in stages(signed):
            print(f"| step: {name} | {us:.2f} | {us / verify:.3f} |")
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
