"""What gRPC Python alone costs per unary call on this machine: the floor under Publish.

    .venv/bin/python bench/grpc_floor.py [--calls 4000] [--in-flight 16]

A grpc.aio server in a child process answers alertmesh.v1.AlertService/Publish with a
fixed PublishResponse of a real answer's size (~1.5 KB) and does nothing else: no
store, no signing. The client (this process, grpc.aio, like bench/cluster_bench.py)
sends realistic PublishRequests (~800 B) with --in-flight calls outstanding. Three
server variants: the handler returns at once; it yields to the event loop once
(`asyncio.sleep(0)`); it waits for a thread-pool round trip, as a real publish waits
for the store's writer thread. Reported per call: server CPU (/proc, all threads),
client CPU (time.process_time), calls/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

from cluster_bench import publish_request  # noqa: E402

from node._pb.alertmesh.v1 import alerts_service_pb2 as api  # noqa: E402
from node._pb.alertmesh.v1.alerts_service_pb2_grpc import AlertServiceStub  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
VARIANTS = ("returns at once", "yields once", "waits for a thread")


def process_cpu(pid: int) -> float:
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


async def serve(variant: str) -> None:
    pool = ThreadPoolExecutor(1)
    answer = api.PublishResponse(id=b"i" * 32)
    answer.alert.signed.body = b"b" * 650
    answer.alert.signed.signature = b"s" * 64
    answer.alert.alert.title = "t" * 60
    answer.alert.alert.description = "d" * 330

    async def publish(request: api.PublishRequest, context: object) -> api.PublishResponse:
        if variant == VARIANTS[1]:
            await asyncio.sleep(0)
        elif variant == VARIANTS[2]:
            await asyncio.get_running_loop().run_in_executor(pool, int)
        return answer

    await serve_unary("Publish", publish, api.PublishRequest, api.PublishResponse)


async def serve_unary(method: str, handle: Any, request_type: Any, response_type: Any) -> None:
    """Serve one AlertService method with `handle` on a free loopback port: print the
    port, then run until killed (the floors' servers that do no work)."""
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=request_type.FromString,
        response_serializer=response_type.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("alertmesh.v1.AlertService", {method: handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


def measure(variant: str, calls: int, in_flight: int) -> str:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", variant], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        server, client, rate = asyncio.run(drive(port, proc.pid, calls, in_flight))
    finally:
        proc.kill()
        proc.wait(10)
    return (
        f"| {variant} | {calls} | {rate:,.0f} | {server:,.0f} | {client:,.0f} |"
        f" {server + client:,.0f} |"
    )


async def drive(port: int, pid: int, calls: int, in_flight: int) -> tuple[float, float, float]:
    """Server and client CPU µs per call, and calls/s."""
    rng = random.Random(1)
    requests = [publish_request(rng, f"floor {i}") for i in range(500)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = AlertServiceStub(channel)
        for r in requests[:200]:
            await stub.Publish(r, timeout=30)
        left = [calls]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                await stub.Publish(requests[left[0] % len(requests)], timeout=30)

        server0, client0, t0 = process_cpu(pid), time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        seconds = time.perf_counter() - t0
        server = (process_cpu(pid) - server0) / calls * 1e6
        client = (time.process_time() - client0) / calls * 1e6
    return server, client, calls / seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--calls", type=int, default=4000)
    p.add_argument("--in-flight", type=int, default=16)
    p.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    print(f"$ python bench/grpc_floor.py --calls {args.calls} --in-flight {args.in_flight}")
    print("| server handler | calls | calls/s | server CPU µs/call | client CPU µs/call | both |")
    print("|---|---:|---:|---:|---:|---:|")
    for variant in VARIANTS:
        print(measure(variant, args.calls, args.in_flight))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
