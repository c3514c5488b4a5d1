"""Bulk import benchmark: `alertmesh import` of a domain list into a real node process.

    .venv/bin/python bench/import_bench.py [--indicators 100000] [--bad 20] [--per-alert 25]

One run, one node (`python -m node.cli run --home H --listen 127.0.0.1:0`, as
bench/node_bench.py starts it):

1. A list of --indicators generated phishing domains, --bad of them values that are no
   host name (single labels, an underscore in the registrable domain), is written to a
   file. `alertmesh import FILE --node ADDR --category phishing` runs as an operator
   would run it (a subprocess, start-up included); it must exit 3 and report each bad
   value, and the node must then hold every good value (checked by count and by
   `check` on a sample). Reported: wall time, indicators/s.
2. In the same run, the node's own Ingest path: the same number of indicators, in
   alerts of --per-alert domains signed beforehand by another member, sent as Ingest
   requests of 500 alerts, 4 in flight (as node_bench.py does). Reported: indicators/s.
3. The ratio of the two: what the import pipeline (client parsing, PublishBatch,
   signing on the node) costs against storing alerts that are already signed.

Only 127.0.0.1 is used; every loop is bounded in count and by --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.node_bench import (  # noqa: E402
    CHANNEL_OPTIONS,
    INGEST,
    AuthorChain,
    Node,
    code_version,
    init_home,
    random_domain,
)
from node._pb.alertmesh.v1 import alert_pb2  # noqa: E402
from node._pb.alertmesh.v1 import alerts_service_pb2 as api  # noqa: E402
from node.core.alerts import alert_id  # noqa: E402
from node.crypto import sign_alert  # noqa: E402

INGEST_BATCH = 500
IN_FLIGHT = 4
BAD = ("localhost", "wallet_connect.com", "claim..airdrop.example", "fake_support.app")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def domains(rng: random.Random, n: int, prefix: str) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        out.add(f"{prefix}{random_domain(rng)}")
    return sorted(out, key=lambda _: rng.random())


def the_list(rng: random.Random, good: list[str], bad: int) -> str:
    lines = list(good)
    for i in range(bad):
        lines.insert(rng.randrange(len(lines) + 1), f"{BAD[i % len(BAD)]}".replace(".", f"{i}.", 1))
    return "# generated phishing domains\n" + "\n".join(lines) + "\n"


def signed_alerts(author: AuthorChain, values: list[str], per_alert: int) -> list[bytes]:
    """Ingest requests (serialised) of alerts of `per_alert` domains each."""
    now = time.time_ns() // 1_000_000
    signed = []
    for start in range(0, len(values), per_alert):
        alert = alert_pb2.Alert(
            origin=author.identity.public_key,
            seq=author.seq + 1,
            prev=author.head,
            created_at_ms=now,
            category=alert_pb2.CATEGORY_PHISHING,
            severity=alert_pb2.SEVERITY_MEDIUM,
            confidence=50,
            title=f"Shared list ({start // per_alert + 1})",
            tlp=alert_pb2.TLP_GREEN,
        )
        for value in values[start : start + per_alert]:
            alert.indicators.add(type=alert_pb2.INDICATOR_TYPE_DOMAIN, value=value)
        body = alert.SerializeToString(deterministic=True)
        author.seq, author.head = alert.seq, alert_id(body)
        signed.append(alert_pb2.SignedAlert(body=body, signature=sign_alert(author.identity, body)))
    return [
        api.IngestRequest(alerts=signed[i : i + INGEST_BATCH]).SerializeToString()
        for i in range(0, len(signed), INGEST_BATCH)
    ]


async def ingest(address: str, requests: list[bytes], deadline: float) -> tuple[float, int]:
    """(seconds, alerts accepted) for sending `requests`, IN_FLIGHT at a time."""
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        call = channel.unary_unary(
            INGEST, request_serializer=None, response_deserializer=api.IngestResponse.FromString
        )
        pending = iter(requests)
        accepted = 0

        async def worker() -> None:
            nonlocal accepted
            for request in pending:
                if time.perf_counter() > deadline:
                    return
                response = await call(request, timeout=120)
                accepted += sum(
                    1 for r in response.results if r.outcome == api.INGEST_OUTCOME_ACCEPTED
                )

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        return time.perf_counter() - start, accepted


def cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--indicators", type=int, default=100_000, help="values in the list")
    p.add_argument("--bad", type=int, default=20, help="of which not host names")
    p.add_argument("--per-alert", type=int, default=25)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=600.0, help="bound of each phase")
    args = p.parse_args(argv)
    shown = " ".join(sys.argv[1:] if argv is None else argv)
    rng = random.Random(args.seed)
    good = args.indicators - args.bad
    say(f"# generating {args.indicators:,} values and {good:,} pre-signed for Ingest ...")
    listed = domains(rng, good, "")
    other = domains(rng, good, "x-")  # Ingest's values: not the imported ones
    author = AuthorChain("bench-importer-peer", hashlib.sha256(b"import/%d" % args.seed).digest())
    requests = signed_alerts(author, other, args.per_alert)
    home = Path(tempfile.mkdtemp(prefix="alertmesh-import-bench-"))
    node = Node(home)
    problems: list[str] = []
    try:
        init_home(home, [author])
        path = home / "phishing-domains.txt"
        path.write_text(the_list(rng, listed, args.bad))
        node.start()
        say(f"# node pid {node.pid} listening on {node.address}; importing {path.name} ...")
        start = time.perf_counter()
        done = cli(
            "import", str(path), "--node", node.address, "--category", "phishing",
            "--per-alert", str(args.per_alert), timeout=args.max_seconds,
        )  # fmt: skip
        import_s = time.perf_counter() - start
        refused = [line for line in done.stderr.splitlines() if line.startswith("refused")]
        if done.returncode != (3 if args.bad else 0) or len(refused) != args.bad:
            problems.append(f"import exited {done.returncode}, {len(refused)} refused lines")
            say(done.stdout + done.stderr[-3000:])
        alerts = -(-good // args.per_alert)
        stats = json.loads(cli("stats", "--node", node.address, "--json", timeout=60).stdout)
        if stats["alerts"] != alerts:
            problems.append(f"the node holds {stats['alerts']} alerts, not {alerts}")
        sample = rng.sample(listed, min(50, len(listed)))
        check = cli("check", "--node", node.address, "--json", *sample, timeout=60)
        if not all(r["matches"] for r in json.loads(check.stdout)):
            problems.append("an imported value is not flagged")
        say("# Ingest of the same number of indicators, signed beforehand ...")
        ingest_s, accepted = asyncio.run(
            ingest(node.address, requests, time.perf_counter() + args.max_seconds)
        )
        if accepted != alerts:
            problems.append(f"Ingest accepted {accepted} of {alerts} alerts")
        node.stop()
    finally:
        node.stop()
        shutil.rmtree(home, ignore_errors=True)
    import_rate, ingest_rate = good / import_s, good / ingest_s
    print(f"# import benchmark ({code_version()}): bench/import_bench.py {shown}".rstrip())
    print(f"\n{args.indicators:,} values ({args.bad} bad), {args.per_alert} per alert\n")
    print("| path | indicators | alerts | seconds | indicators/s | alerts/s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| `alertmesh import` (whole command) | {good:,} | {alerts:,} | {import_s:.2f}"
        f" | {import_rate:,.0f} | {alerts / import_s:,.0f} |"
    )
    print(
        f"| Ingest of pre-signed alerts | {good:,} | {alerts:,} | {ingest_s:.2f}"
        f" | {ingest_rate:,.0f} | {alerts / ingest_s:,.0f} |"
    )
    print(f"\nimport / Ingest rate: {import_rate / ingest_rate:.2f}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
