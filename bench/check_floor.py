"""What gRPC Python alone costs per single-value CheckIndicators call: the floor under
issue 15's target 7b (one value per call, 8 callers at once, p99 ≤ 2 ms at the client).

    .venv/bin/python bench/check_floor.py [--calls 3000] [--callers 8]

A server in a child process answers alertmesh.v1.AlertService/CheckIndicators with a
fixed response of one clean result (what a node answers for an unflagged value) and
does nothing else: no parsing, no store. The client (this process, grpc.aio, like
bench/node_bench.py) sends one-value requests with --callers calls outstanding.
Server variants: grpc.aio (as the node serves), grpc.aio with the handler yielding
once to the event loop, and the threaded server (grpc.server with a pool of 8
threads). Reported per call: server CPU (/proc, all threads), client CPU
(time.process_time), calls/s, client latency p50 and p99, and Little's law: with
--callers always waiting, the mean latency is callers / throughput, so p99 ≤ 2 ms needs
throughput ≥ callers / 2 ms (4,000/s for 8), i.e. at most 250 µs of CPU per call on
each side when server and client each have one of the two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grpc_floor import process_cpu  # noqa: E402

from node._pb.alertmesh.v1 import alerts_service_pb2 as api  # noqa: E402

CHECK = "/alertmesh.v1.AlertService/CheckIndicators"
VARIANTS = ("aio, returns at once", "aio, yields once", "threaded server (8 threads)")


def answer() -> api.CheckIndicatorsResponse:
    out = api.CheckIndicatorsResponse()
    item = out.results.add(
        query="0x52908400098527886e0f7030069857d2e4169ee7",
        normalized={"type": 1, "value": "eip155:*:0x52908400098527886e0f7030069857d2e4169ee7"},
    )
    item.verdict.state = api.VERDICT_STATE_NOT_FLAGGED
    return out


def handler(fn: object) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        fn,  # type: ignore[arg-type]
        request_deserializer=api.CheckIndicatorsRequest.FromString,
        response_serializer=api.CheckIndicatorsResponse.SerializeToString,
    )


def generic(fn: object) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "alertmesh.v1.AlertService", {"CheckIndicators": handler(fn)}
    )


async def serve_aio(yields: bool) -> None:
    response = answer()

    async def check(request: api.CheckIndicatorsRequest, context: object) -> object:
        if yields:
            await asyncio.sleep(0)
        return response

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((generic(check),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


def serve_threaded() -> None:
    response = answer()

    def check(request: api.CheckIndicatorsRequest, context: object) -> object:
        return response

    server = grpc.server(ThreadPoolExecutor(8))
    server.add_generic_rpc_handlers((generic(check),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


async def drive(port: int, pid: int, calls: int, callers: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            CHECK,
            request_serializer=api.CheckIndicatorsRequest.SerializeToString,
            response_deserializer=api.CheckIndicatorsResponse.FromString,
        )
        requests = [api.CheckIndicatorsRequest(values=[f"clean-{i}.example"]) for i in range(500)]
        for r in requests[:200]:
            await call(r, timeout=30)
        left = [calls]
        latencies: list[float] = []

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                t0 = time.perf_counter()
                await call(requests[left[0] % len(requests)], timeout=30)
                latencies.append(time.perf_counter() - t0)

        server0, client0, t0 = process_cpu(pid), time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(callers)))
        seconds = time.perf_counter() - t0
        latencies.sort()
        return {
            "server": (process_cpu(pid) - server0) / calls * 1e6,
            "client": (time.process_time() - client0) / calls * 1e6,
            "rate": calls / seconds,
            "p50": statistics.median(latencies) * 1e3,
            "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1e3,
        }


def measure(variant: str, calls: int, callers: int) -> str:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(VARIANTS.index(variant))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        r = asyncio.run(drive(port, proc.pid, calls, callers))
    finally:
        proc.kill()
        proc.wait(10)
    return (
        f"| {variant} | {r['rate']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} |"
        f" {r['server']:,.0f} | {r['client']:,.0f} | {callers / r['rate'] * 1e3:.2f} |"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--callers", type=int, default=8)
    p.add_argument("--serve", type=int, choices=range(len(VARIANTS)), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve is not None:
        if args.serve == 2:
            serve_threaded()
        else:
            asyncio.run(serve_aio(yields=args.serve == 1))
        return 0
    print(f"$ python bench/check_floor.py --calls {args.calls} --callers {args.callers}\n")
    print(
        "| server | calls/s | client p50 ms | client p99 ms | server CPU µs/call"
        " | client CPU µs/call | callers / rate, ms (Little) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant in VARIANTS:
        print(measure(variant, args.calls, args.callers), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
