"""The floor under paced publish-to-last-node latency: the same shape doing no work.

    .venv/bin/python bench/latency_floor.py [--rates 20,170] [--seconds 10]

bench/cluster_bench.py's paced phases measure, on 5 real nodes, from the start of a
Publish call at node1 to the alert's arrival on the last node's Subscribe stream. Its
path: the client calls node1 (unary gRPC); node1 queues the alert to its peer writer,
which writes it on a bidirectional gRPC stream to the tree's root (node3); node3's
reader takes it and queues it to its three other peers' writers; each of them reads
it and sends it on its Subscribe stream (server streaming) to the client, which also
holds node1's and node3's streams. That is 4 processes' event loops in series, 2 peer
hops, 5 Subscribe streams.

This bench builds that shape with grpc.aio on 127.0.0.1 and nothing else: 5 child
processes with a generic bytes service (no protobuf parsing, no signing, verifying,
SQLite or lookups); each peer link is a bidirectional stream with a writer task
draining a queue and a reader task, as node/app/peer_session.py has; each Subscribe
stream drains a queue. Publishes are paced open-loop as in cluster_bench (at most
--in-flight outstanding, 660-byte payloads). Its p50/p99 is what the real node cannot
beat on this machine with this stack; the rest of the real path is its work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc

SERVICE = "floor.Floor"
PAYLOAD = 660
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _same(x: bytes) -> bytes:
    return x


def _method(name: str) -> str:
    return f"/{SERVICE}/{name}"


async def serve(downstream: list[str]) -> None:
    """One node: Publish (node1), Peer (a stream of frames from upstream), Subscribe."""
    subscribers: list[asyncio.Queue[bytes]] = []
    outboxes: list[asyncio.Queue[bytes]] = [asyncio.Queue() for _ in downstream]

    def spread(frame: bytes) -> None:
        for q in outboxes:
            q.put_nowait(frame)
        for q in subscribers:
            q.put_nowait(frame)

    async def publish(request: bytes, context: object) -> bytes:
        spread(request)
        return request[:8]

    async def peer(requests: object, context: grpc.aio.ServicerContext) -> None:
        while True:
            frame = await context.read()  # type: ignore[attr-defined]
            if frame is grpc.aio.EOF:
                return
            spread(frame)

    async def subscribe(request: bytes, context: object):  # type: ignore[no-untyped-def]
        q: asyncio.Queue[bytes] = asyncio.Queue()
        subscribers.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            subscribers.remove(q)

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Publish": grpc.unary_unary_rpc_method_handler(publish, _same, _same),
            "Peer": grpc.stream_stream_rpc_method_handler(peer, _same, _same),
            "Subscribe": grpc.unary_stream_rpc_method_handler(subscribe, _same, _same),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)

    async def writer(address: str, q: asyncio.Queue[bytes]) -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            call = channel.stream_stream(_method("Peer"), _same, _same)()
            while True:
                await call.write(await q.get())

    async with asyncio.TaskGroup() as tg:
        for address, q in zip(downstream, outboxes, strict=True):
            tg.create_task(writer(address, q))
        await server.wait_for_termination()


def start(downstream: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", ",".join(downstream)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, f"127.0.0.1:{proc.stdout.readline().strip()}"


def cpu(pid: int) -> float:
    total = 0.0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            fields = (task / "stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


async def phase(
    addresses: list[str], pids: list[int], rate: float, seconds: float, in_flight: int
) -> dict[str, float]:
    arrivals: dict[int, list[float]] = {}
    started: dict[int, float] = {}
    channels = [grpc.aio.insecure_channel(a) for a in addresses]

    async def watch(channel: grpc.aio.Channel) -> None:
        call = channel.unary_stream(_method("Subscribe"), _same, _same)(b"")
        async for frame in call:
            arrivals.setdefault(int.from_bytes(frame[:8], "big"), []).append(time.monotonic())

    watchers = [asyncio.create_task(watch(c)) for c in channels]
    await asyncio.sleep(0.5)
    publish = channels[0].unary_unary(_method("Publish"), _same, _same)
    sem = asyncio.Semaphore(in_flight)
    count = max(1, round(rate * seconds))
    base = int(time.time() * 1000) << 20

    async def one(i: int) -> None:
        try:
            started[i] = time.monotonic()
            await publish(i.to_bytes(8, "big") + b"x" * (PAYLOAD - 8), timeout=30)
        finally:
            sem.release()

    cpu0 = sum(cpu(p) for p in pids)
    client0 = time.process_time()
    wall0 = begin = time.monotonic()
    tasks = []
    for n in range(count):
        delay = begin + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await sem.acquire()
        tasks.append(asyncio.create_task(one(base + n)))
    await asyncio.gather(*tasks)
    for _ in range(200):  # a bounded wait for the last arrivals
        if all(len(arrivals.get(i, ())) == 5 for i in started):
            break
        await asyncio.sleep(0.05)
    wall = time.monotonic() - wall0
    node_cpu = sum(cpu(p) for p in pids) - cpu0
    client_cpu = time.process_time() - client0
    for w in watchers:
        w.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    for c in channels:
        await c.close()
    lat = sorted(max(arrivals[i]) - started[i] for i in started if len(arrivals.get(i, ())) == 5)
    lost = len(started) - len(lat)
    return {
        "alerts": len(started),
        "p50": statistics.median(lat) * 1000,
        "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000,
        "max": lat[-1] * 1000,
        "lost": lost,
        "node_cpu_ms": node_cpu / len(started) * 1000,
        "client_cpu_ms": client_cpu / len(started) * 1000,
        "cpu_share": (node_cpu + client_cpu) / wall / (os.cpu_count() or 1),
    }


async def main_async(args: argparse.Namespace) -> None:
    procs: list[subprocess.Popen[str]] = []
    try:
        leaves = [start([]) for _ in range(3)]  # node2, node4, node5
        relay = start([a for _, a in leaves])  # node3, the tree's root
        origin = start([relay[1]])  # node1
        started = [origin, leaves[0], relay, leaves[1], leaves[2]]
        procs = [p for p, _ in started]
        addresses = [a for _, a in started]
        await asyncio.sleep(1.0)  # the peer streams open
        print(
            f"Command: `{' '.join(['.venv/bin/python', 'bench/latency_floor.py', *sys.argv[1:]])}`"
        )
        print()
        print("| phase | alerts | p50 ms | p99 ms | max ms | lost | node CPU ms/alert | "
              "bench CPU ms/alert | CPU share of the machine |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        await phase(addresses, [p.pid for p in procs], 20, 2, args.in_flight)  # warm-up
        for rate in args.rates:
            r = await phase(addresses, [p.pid for p in procs], rate, args.seconds, args.in_flight)
            print(
                f"| {rate:g}/s | {r['alerts']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                f"{r['max']:.2f} | {r['lost']:.0f} | {r['node_cpu_ms']:.2f} | "
                f"{r['client_cpu_ms']:.2f} | {r['cpu_share']:.0%} |"
            )
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument(
        "--rates", type=lambda s: [float(x) for x in s.split(",")], default=[20.0, 170.0]
    )
    p.add_argument("--seconds", type=float, default=10.0, help="length of each paced phase")
    p.add_argument("--in-flight", type=int, default=16, help="max outstanding Publish calls")
    args = p.parse_args()
    if args.serve is not None:
        asyncio.run(serve([a for a in args.serve.split(",") if a]))
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
