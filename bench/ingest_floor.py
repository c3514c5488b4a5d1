"""The floor under node CPU per ingested alert (issue 15, target 6), step by step, in one run.

    flock /tmp/alertmesh-bench.lock .venv/bin/python bench/ingest_floor.py [--alerts 20000]

Each step of the ingest path measured on its own, as CPU µs per alert and as a multiple
of one Ed25519 verify measured in the same run (pynacl, one thread):

- the worker's steps on one thread (bench/ingest_ab.py's stages: decode, rules and
  indicators, Ed25519, the record's fields);
- the process pool's own cost: the node's Verifier over worker processes that decode each
  body and answer its record's fields but check nothing (bench/ingest_echo_worker.py),
  the node's side (this thread) and the workers' (/proc) apart, less the decode and
  the record's fields;
- the store writer: `Writer.write` of the same puts of --batch alerts into a new
  database, and the same transactions with their rows encoded beforehand (SQLite alone:
  the INSERTs and COMMIT); the difference is the writer's Python;
- gRPC alone: a grpc.aio server in a child process answers Ingest requests of --batch
  real alerts with a ready response of as many results and does nothing else; its CPU
  per alert (all threads, /proc), 4 requests in flight;
- the whole path in-process (AlertService.Ingest on AlertNode + worker processes + a new
  SqliteStore, bench/ingest_ab.py), by thread, for the event loop's own Python by
  difference;
- one verify's CPU with two threads verifying at once: what work costs on this machine
  while both cores are busy, as they are whenever the node ingests at 0.7x or more.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.append(str(BENCH))

import ingest_ab  # noqa: E402

from node._pb.alertmesh.v1 import alert_pb2  # noqa: E402
from node._pb.alertmesh.v1 import alerts_service_pb2 as api  # noqa: E402

Signed = list[alert_pb2.SignedAlert]


def both_cores(signed: Signed) -> float:
    """CPU µs per verify with 2 threads verifying at once (pynacl drops the GIL): what a
    step costs while the other core is busy too, as it is whenever the node uses both."""
    import node_bench

    items = [
        (a.origin, s.body, s.signature)
        for s in signed[:2000]
        for a in [alert_pb2.Alert.FromString(s.body)]
    ]
    return float(node_bench.verify_rate(items, 2, 1.5).cpu_us)


def thread_cpu() -> float:
    return time.thread_time()


async def pool_floor(signed: Signed, batch: int) -> tuple[float, float]:
    """(node side, workers) CPU µs per alert of Verifier.check over echo workers."""
    from node.app.verify import Admitted, Verifier
    from node.core import alerts
    from node.core.limits import DEFAULT_LIMITS as LIMITS

    items = [
        Admitted(alerts.alert_id(s.body), s.body, s.signature, alerts.decode_head(s.body, LIMITS))
        for s in signed
    ]
    now = time.time_ns() // 1_000_000
    async with Verifier(LIMITS, worker="bench.ingest_echo_worker") as verifier:
        await verifier.check(items[:batch], now)  # starts the workers
        pids = [w.process.pid for w in verifier._workers]
        rest = items[batch:]
        parts = [rest[i : i + batch] for i in range(0, len(rest), batch)]
        w0, t0 = sum(ingest_ab.cpu_of(Path(f"/proc/{p}/stat")) for p in pids), thread_cpu()
        for i in range(0, len(parts), 4):  # 4 requests in flight, as the node is driven
            done = await asyncio.gather(*(verifier.check(p, now) for p in parts[i : i + 4]))
            assert all(not isinstance(r, Exception) for d in done for r in d)
        t1 = thread_cpu()
        w1 = sum(ingest_ab.cpu_of(Path(f"/proc/{p}/stat")) for p in pids)
    return (t1 - t0) / len(rest) * 1e6, (w1 - w0) / len(rest) * 1e6


def writer_split(signed: Signed, batch: int) -> tuple[float, float]:
    """(Writer.write, its SQL alone) CPU µs per alert, puts of `batch` into a new file."""
    from node.core import alerts
    from node.core.alerts import AlertRecord
    from node.core.chain import Chains
    from node.core.limits import DEFAULT_LIMITS as LIMITS
    from node.store import sqlite_rows, sqlite_writer
    from node.store.base import PutOutcome
    from node.store.keyfilter import KeyFilter

    now = time.time_ns() // 1_000_000
    records = []
    for s in signed:
        alert = alerts.decode_body(s.body, LIMITS)
        keys = alerts.validate(alert, now_ms=now, limits=LIMITS)
        records.append(AlertRecord(alerts.alert_id(s.body), s.body, s.signature,
                                   *alerts.record_fields(alert, keys)))  # fmt: skip
    writes = [
        sqlite_writer.Write(records[i : i + batch], now, "") for i in range(0, len(records), batch)
    ]
    results = []
    for whole in (True, False):
        scratch = Path(tempfile.mkdtemp(prefix="alertmesh-floor-"))
        try:
            writer = sqlite_writer.Writer(scratch / "alerts.db", "NORMAL")
            writer.migrate()
            writer.key_filter = KeyFilter()
            chains, last = Chains(), 0
            encoded = []
            if not whole:
                for w in writes:
                    rows = sqlite_rows.encode([w], [PutOutcome.ACCEPTED] * len(w.records), last)
                    encoded.append(rows)
                    last = rows.last_local_seq
            t0 = thread_cpu()
            if whole:
                for w in writes:
                    done = writer.write([w], chains, last)
                    last = done.last_local_seq
                    for origin, seq in done.accepted:
                        chains.add(origin, seq)
                    if writer.merge_due:  # as SqliteStore does after a commit
                        writer.merge()
            else:
                db = writer.db
                for rows in encoded:
                    db.execute("BEGIN")
                    writer._insert(sqlite_rows.ALERT_INSERT, rows.alerts, sqlite_rows.ALERT_WIDTH)
                    writer._insert(
                        f"INSERT OR IGNORE INTO {sqlite_writer.KEY_LEVELS[0]} VALUES", rows.keys, 2
                    )
                    writer._insert(f"INSERT INTO {sqlite_writer.ID_LEVELS[0]} VALUES", rows.ids, 2)
                    db.execute("COMMIT")
                    written = (len(rows.keys) + len(rows.ids)) // 2
                    writer.level_rows[0] += written
                    writer._written += written
                    if writer.merge_due:
                        writer.merge()
            results.append((thread_cpu() - t0) / len(records) * 1e6)
            writer.close()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return results[0], results[1]


async def _serve_ingest() -> None:
    answers: dict[int, api.IngestResponse] = {}

    async def ingest(request: api.IngestRequest, context: object) -> api.IngestResponse:
        n = len(request.alerts)
        if n not in answers:
            out = api.IngestResponse()
            for i in range(n):
                out.results.add(id=i.to_bytes(32, "big"), outcome=api.INGEST_OUTCOME_ACCEPTED)
            answers[n] = out
        return answers[n]

    from grpc_floor import serve_unary

    await serve_unary("Ingest", ingest, api.IngestRequest, api.IngestResponse)


def grpc_floor(signed: Signed, batch: int, in_flight: int = 4) -> float:
    """Server CPU µs per alert of Ingest requests answered without any work."""
    from grpc_floor import process_cpu

    requests = [
        api.IngestRequest(alerts=signed[i : i + batch]).SerializeToString()
        for i in range(0, len(signed), batch)
    ]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())

        async def drive() -> float:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/alertmesh.v1.AlertService/Ingest")  # bytes as they are
                for r in requests[:4]:
                    await call(r, timeout=30)
                pending = iter(requests)

                async def worker() -> None:
                    for r in pending:
                        await call(r, timeout=30)

                s0 = process_cpu(proc.pid)
                await asyncio.gather(*(worker() for _ in range(in_flight)))
                return (process_cpu(proc.pid) - s0) / len(signed) * 1e6

        return asyncio.run(drive())
    finally:
        proc.kill()
        proc.wait(10)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--alerts", type=int, default=20000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--cache", type=Path, help="keep the signed corpus here (bench/ingest_ab.py)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        asyncio.run(_serve_ingest())
        return 0
    with tempfile.TemporaryDirectory(prefix="alertmesh-floor-corpus-") as scratch:
        home, signed = ingest_ab.corpus(args.cache or Path(scratch), args.alerts)
        return report(args, home, signed)


def report(args: argparse.Namespace, home: Path, signed: Signed) -> int:
    v1 = ingest_ab.verify_us(signed, 1.5)
    run: dict[str, Any] = asyncio.run(ingest_ab.ingest(home, signed, args.batch, 4))
    steps = dict(ingest_ab.stages(signed))
    pool_node, pool_workers = asyncio.run(pool_floor(signed, args.batch))
    write, sql = writer_split(signed, args.batch)
    rpc = grpc_floor(signed, args.batch)
    v2 = ingest_ab.verify_us(signed, 1.5)
    verify = (v1 + v2) / 2
    both = both_cores(signed)
    decode, fields = steps["worker: decode_body"], steps["worker: record_fields"]
    by = run["by"]
    loop, writer_thread, workers = (
        by.get("MainThread", 0.0),
        by.get("store-writer", 0.0),
        by["verifier processes"],
    )
    total = sum(by.values())
    pool = pool_node + pool_workers - decode - fields
    print(
        f"one verify {verify:.1f} CPU µs ({v1:.1f} before, {v2:.1f} after);"
        f" {run['alerts']:,} alerts in-process at {run['rate']:,.0f}/s\n"
    )
    rows = [
        ("Ed25519 (crypto_sign_open)", "worker", steps["worker: verify_alert (Ed25519)"]),
        ("decode the whole Alert (protobuf, C)", "worker", decode),
        ("protocol rules and indicator keys (validate)", "worker",
         steps["worker: validate (rules + indicators)"]),
        ("the record's fields", "worker", fields),
        ("process pool: framing, pipes, pickling both ends, the worker's loop", "both",
         pool),
        ("SHA-256 id and decode_head (admission)", "loop",
         steps["loop: alert_id (SHA-256)"] + steps["loop: decode_head"]),
        ("the rest of the loop's Python (in-process MainThread less the pool's node side"
         " and admission)", "loop",
         loop - pool_node - steps["loop: alert_id (SHA-256)"] - steps["loop: decode_head"]),
        ("gRPC alone: Ingest answered with a ready response", "loop", rpc),
        ("SQLite: INSERTs and COMMIT of the encoded rows", "writer", sql),
        ("the writer's Python: classify, key hashes, rows, key filter", "writer", write - sql),
    ]  # fmt: skip
    print("| step | where | µs | verifies |\n|---|---|---|---|")
    floor = 0.0
    for name, where, us in rows:
        floor += us
        print(f"| {name} | {where} | {us:.1f} | {us / verify:.3f} |")
    print(f"| **sum** | | **{floor:.1f}** | **{floor / verify:.3f}** |")
    factor = both / verify
    print(
        f"\nboth cores busy: one verify costs {both:.1f} CPU µs on each of 2 threads at once"
        f" ({factor:.3f}× one thread alone); the steps at that cost:"
        f" {floor / verify:.3f} × {factor:.3f} = {floor * factor / verify:.3f} verifies"
    )
    print(
        f"\nin-process by thread (no gRPC): {total:.1f} µs = {total / verify:.3f} verifies"
        f" (verifier processes {workers:.1f}, store writer {writer_thread:.1f},"
        f" event loop {loop:.1f}); Writer.write on one thread {write:.1f};"
        f" pool's node side {pool_node:.1f}, its workers {pool_workers:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
