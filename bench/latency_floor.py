"""The floor under paced publish-to-last-node latency: the same shape doing no work.

    .venv/bin/python bench/latency_floor.py [--rates 20,170] [--seconds 10]
    .venv/bin/python bench/latency_floor.py --seconds 20,10 --work none,full,normal

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

--work full,normal adds, in the same shape, the work no implementation of the product
can skip, where the real node does it (node/app/publishing.py, node/app/ingesting.py,
node/store/sqlite.py's sparse single put, which commits on the event loop's thread):

- the origin (node1) signs the alert body (Ed25519, pynacl), commits it durably (SQLite
  WAL, synchronous=FULL: one row keyed by the alert's SHA-256 id, one COMMIT), then
  pushes it to the root and sends its own Subscribe event, then answers the client;
- the root (node3) verifies the signature, queues the alert to its three peer writers
  (it forwards before its commit, as the real relay does), then in a task of its own
  stores it and sends its Subscribe event;
- each leaf verifies, stores (one row, one COMMIT), then sends the Subscribe event.

The stores of the root and the leaves are synchronous=FULL (`full`, what the node does)
or synchronous=NORMAL (`normal`: in the store, no fsync); the origin's is FULL in both,
as the client's ack requires. No WAL checkpoint runs during the phases. Frames are 660
bytes in every mode (with work: a 596-byte body and its 64-byte signature), so the modes
differ by the work alone. `--work none,full,normal` runs the three in turn, each on its
own five fresh processes and stores.

--work product does, in the same shape, the product's own work with the node's own parts
(bench/floor_product.py): the client sends PublishRequests and reads SubscribeEvents as
cluster_bench's does; the origin signs and commits a real alert in the real store
(node/store/sqlite.py, with its index rows) and answers with a PublishResponse; the root
and the leaves parse PeerFrames, check each alert completely (node/app/verify.py's
check_signed) and commit it in the real store; each sends the SubscribeEvent the node
sends. Nothing of the node's orchestration runs (peer engine, ingest batching, watch
streams, lifecycle, counters): what the cluster costs beyond this is that. The real
store checkpoints its WAL as the node's does (every 256 one-alert commits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import nacl.signing

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import floor_product  # noqa: E402
from bench.proc_cpu import ThreadShare, ThreadTimes, machine_busy, thread_times  # noqa: E402

SERVICE = "floor.Floor"
PAYLOAD = 660
SIGNATURE = 64
MODES = ("none", "full", "normal", "product")
# The bench's own signing key (a fixed, public test seed, not a secret): every process
# derives the same verify key from it.
SEED = bytes(range(32))


def _same(x: bytes) -> bytes:
    return x


def _method(name: str) -> str:
    return f"/{SERVICE}/{name}"


class Store:
    """The minimum durable write: one row with a primary key, one COMMIT, on the
    caller's thread (the real node's sparse single put commits on the loop's thread)."""

    def __init__(self, path: str, synchronous: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.execute("PRAGMA wal_autocheckpoint=0")  # none on the path during the run
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS alerts "
            "(id BLOB PRIMARY KEY, body BLOB NOT NULL, signature BLOB NOT NULL) WITHOUT ROWID"
        )
        self.walls: list[float] = []  # each put's wall time, seconds, since the last take

    def put(self, body: bytes, signature: bytes) -> None:
        start = time.monotonic()
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(
            "INSERT OR IGNORE INTO alerts VALUES (?, ?, ?)",
            (hashlib.sha256(body).digest(), body, signature),
        )
        self.db.execute("COMMIT")
        self.walls.append(time.monotonic() - start)

    def take(self) -> bytes:
        """The puts' wall times since the last take: p50, p99, max in µs, 3 × 8 bytes."""
        walls, self.walls = sorted(self.walls), []
        if not walls:
            return bytes(24)
        cut = (walls[len(walls) // 2], walls[min(len(walls) - 1, int(0.99 * len(walls)))])
        return b"".join(round(w * 1e6).to_bytes(8, "big") for w in (*cut, walls[-1]))


async def serve(downstream: list[str], work: str, store_path: str, synchronous: str) -> None:
    """One node: Publish (node1), Peer (a stream of frames from upstream), Subscribe.
    With `work` other than "none", each does its part of the irreducible work (above)."""
    subscribers: list[asyncio.Queue[bytes]] = []
    outboxes: list[asyncio.Queue[bytes]] = [asyncio.Queue() for _ in downstream]
    signing = nacl.signing.SigningKey(SEED)
    verify = signing.verify_key.verify
    store = Store(store_path, synchronous) if work in ("full", "normal") else None

    def push(frame: bytes) -> None:
        for q in outboxes:
            q.put_nowait(frame)

    def event(frame: bytes) -> None:
        for q in subscribers:
            q.put_nowait(frame)

    def spread(frame: bytes) -> None:
        push(frame)
        event(frame)

    async def commit_own(body: bytes) -> bytes:
        assert store is not None
        signature = signing.sign(body).signature
        store.put(body, signature)  # durable before anyone hears of it
        frame = body + signature
        push(frame)
        event(frame)
        return frame

    async def commit_received(frame: bytes) -> None:
        assert store is not None
        store.put(frame[:-SIGNATURE], frame[-SIGNATURE:])
        event(frame)

    product = (
        floor_product.Product(SEED, store_path, synchronous, push, event)
        if work == "product"
        else None
    )
    tasks: set[asyncio.Task[None]] = set()

    def received(frame: bytes) -> None:
        if product is not None:
            committing = product.commit(product.received(frame))  # forwards, then commits
        else:
            verify(frame[:-SIGNATURE], frame[-SIGNATURE:])  # raises BadSignatureError
            push(frame)  # a relay forwards before its commit; a leaf has no one to push to
            committing = commit_received(frame)
        # The commit runs as a task of its own, as the real node's put (ingesting.py).
        task = asyncio.ensure_future(committing)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def publish(request: bytes, context: object) -> bytes:
        if product is not None:
            return await asyncio.ensure_future(product.publish(request))
        if store is None:
            spread(request)
        else:
            # As Publisher: signed and committed, then pushed and the watchers woken (its
            # _accepted hook), in a task the handler awaits (Commits.run).
            await asyncio.ensure_future(commit_own(request[:-SIGNATURE]))
        return request[:8]

    async def peer(requests: object, context: grpc.aio.ServicerContext) -> None:
        while True:
            frame = await context.read()  # type: ignore[attr-defined]
            if frame is grpc.aio.EOF:
                return
            if store is None and product is None:
                spread(frame)
            else:
                received(frame)

    async def subscribe(request: bytes, context: object):  # type: ignore[no-untyped-def]
        q: asyncio.Queue[bytes] = asyncio.Queue()
        subscribers.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            subscribers.remove(q)

    async def commits(request: bytes, context: object) -> bytes:
        return store.take() if store is not None else bytes(24)

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Commits": grpc.unary_unary_rpc_method_handler(commits, _same, _same),
            "Publish": grpc.unary_unary_rpc_method_handler(publish, _same, _same),
            "Peer": grpc.stream_stream_rpc_method_handler(peer, _same, _same),
            "Subscribe": grpc.unary_stream_rpc_method_handler(subscribe, _same, _same),
        },
    )
    async with contextlib.AsyncExitStack() as stack:
        if product is not None:
            await stack.enter_async_context(product.open())
        await _serve_until_killed(handler, downstream, outboxes)


async def _serve_until_killed(
    handler: grpc.GenericRpcHandler, downstream: list[str], outboxes: list[asyncio.Queue[bytes]]
) -> None:
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


def start(
    downstream: list[str], work: str, store_path: str, synchronous: str
) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, __file__, "--serve", ",".join(downstream), "--work", work]
    command += ["--store", store_path, "--synchronous", synchronous]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, f"127.0.0.1:{proc.stdout.readline().strip()}"


def cpu(threads: dict[int, ThreadTimes]) -> float:
    """CPU seconds of a process's threads (thread_times) so far, user and kernel."""
    return sum(t.user + t.system for t in threads.values())


def _frame_key(frame: bytes) -> int:
    return int.from_bytes(frame[:8], "big")


def _frame_request(number: int) -> bytes:
    return number.to_bytes(8, "big") + b"x" * (PAYLOAD - 8)


async def phase(
    addresses: list[str],
    pids: list[int],
    rate: float,
    seconds: float,
    in_flight: int,
    work: str,
) -> tuple[dict[str, float], list[list[float]], list[ThreadShare]]:
    """Paced publishes at node1 (addresses[0]); pids in the order origin, leaf, relay,
    leaf, leaf (node1..node5). With `work` "product" the client sends PublishRequests
    and reads SubscribeEvents, as cluster_bench's client does; else bare frames."""
    if work == "product":
        rng = random.Random(int(rate * seconds))
        key: Callable[[bytes], int] = floor_product.event_key

        def request(number: int) -> bytes:
            return floor_product.request(number, rng)
    else:
        key, request = _frame_key, _frame_request
    arrivals: dict[int, list[float]] = {}
    started: dict[int, float] = {}
    channels = [grpc.aio.insecure_channel(a) for a in addresses]

    async def watch(channel: grpc.aio.Channel) -> None:
        call = channel.unary_stream(_method("Subscribe"), _same, _same)(b"")
        async for frame in call:
            arrivals.setdefault(key(frame), []).append(time.monotonic())

    watchers = [asyncio.create_task(watch(c)) for c in channels]
    await asyncio.sleep(0.5)

    async def commit_times() -> list[list[float]]:
        """Each node's commits since the last ask: [p50, p99, max] ms, node1..node5."""
        out = []
        for channel in channels:
            raw = await channel.unary_unary(_method("Commits"), _same, _same)(b"", timeout=10)
            out.append([int.from_bytes(raw[i : i + 8], "big") / 1000 for i in (0, 8, 16)])
        return out

    await commit_times()  # from this phase on
    publish = channels[0].unary_unary(_method("Publish"), _same, _same)
    sem = asyncio.Semaphore(in_flight)
    count = max(1, round(rate * seconds))
    base = int(time.time() * 1000) << 20

    async def one(i: int) -> None:
        try:
            message = request(i)  # built before the clock starts, as cluster_bench's are
            started[i] = time.monotonic()
            await publish(message, timeout=30)
        finally:
            sem.release()

    threads0 = [thread_times(p) for p in pids]
    machine0 = machine_busy()
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
    threads1 = [thread_times(p) for p in pids]
    each = [cpu(t1) - cpu(t0) for t0, t1 in zip(threads0, threads1, strict=True)]
    threads = [
        ThreadShare.of(p, t0, t1, len(started))
        for p, t0, t1 in zip(pids, threads0, threads1, strict=True)
    ]
    node_cpu = sum(each)
    client_cpu = time.process_time() - client0
    others = max(0.0, machine_busy() - machine0 - node_cpu - client_cpu)
    commits = await commit_times()
    for w in watchers:
        w.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    for c in channels:
        await c.close()
    lat = sorted(max(arrivals[i]) - started[i] for i in started if len(arrivals.get(i, ())) == 5)
    lost = len(started) - len(lat)
    n = len(started)
    cores = os.cpu_count() or 1
    result = {
        "alerts": n,
        "p50": statistics.median(lat) * 1000 if lat else float("nan"),
        "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000 if lat else float("nan"),
        "max": lat[-1] * 1000 if lat else float("nan"),
        "lost": lost,
        "node_cpu_ms": node_cpu / n * 1000,
        "origin_ms": each[0] / n * 1000,
        "relay_ms": each[2] / n * 1000,
        "leaf_ms": (each[1] + each[3] + each[4]) / 3 / n * 1000,
        "client_cpu_ms": client_cpu / n * 1000,
        "cpu_share": (node_cpu + client_cpu) / wall / cores,
        "others": others / wall / cores,
    }
    return result, commits, threads


def verify_us(rounds: int = 5, n: int = 400) -> float:
    """CPU µs of one verify of a frame's body (pynacl) on this thread, now (the median
    of `rounds`): the unit CPU figures are stated in."""
    key = nacl.signing.SigningKey(SEED)
    body = bytes(PAYLOAD - SIGNATURE)
    signature = key.sign(body).signature
    verify = key.verify_key.verify
    per = []
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(n):
            verify(body, signature)
        per.append((time.process_time() - t0) / n * 1e6)
    return statistics.median(per)


def commit_alone(directory: str, synchronous: str, n: int = 100) -> tuple[float, float, float]:
    """One Store.put at a time, n of them: wall p50, wall p99 (ms) and CPU per put (ms)."""
    store = Store(os.path.join(directory, f"alone-{synchronous}.db"), synchronous)
    walls = []
    t0 = time.process_time()
    for i in range(n):
        body = i.to_bytes(8, "big") + bytes(PAYLOAD - SIGNATURE - 8)
        w0 = time.monotonic()
        store.put(body, bytes(SIGNATURE))
        walls.append(time.monotonic() - w0)
    cpu_ms = (time.process_time() - t0) / n * 1000
    store.db.close()
    walls.sort()
    return walls[n // 2] * 1000, walls[min(n - 1, int(0.99 * n))] * 1000, cpu_ms


def _cluster(work: str, directory: str) -> list[tuple[subprocess.Popen[str], str]]:
    """node1 (origin), node2, node3 (the root), node4, node5: the roots' stores as the
    mode says, the origin's FULL."""
    received = "NORMAL" if work == "normal" else "FULL"

    def path(name: str) -> str:
        return os.path.join(directory, f"{name}.db")

    leaves = [start([], work, path(f"node{n}"), received) for n in (2, 4, 5)]
    relay = start([a for _, a in leaves], work, path("node3"), received)
    origin = start([relay[1]], work, path("node1"), "FULL")
    return [origin, leaves[0], relay, leaves[1], leaves[2]]


async def main_async(args: argparse.Namespace) -> None:
    seconds = args.seconds * len(args.rates) if len(args.seconds) == 1 else args.seconds
    if len(seconds) != len(args.rates):
        raise SystemExit("--seconds: one length, or one per rate")
    print(f"Command: `{' '.join(['.venv/bin/python', 'bench/latency_floor.py', *sys.argv[1:]])}`")
    print()
    verify = [verify_us()]
    print("| work | phase | alerts | p50 ms | p99 ms | max ms | lost | node CPU ms/alert "
          "(= verifies) | origin / root / each leaf | bench CPU ms/alert | "
          "CPU share of the machine | others |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    commit_rows: list[tuple[str, float, list[list[float]]]] = []
    thread_rows: list[tuple[str, float, list[ThreadShare]]] = []
    for work in args.work:
        procs: list[subprocess.Popen[str]] = []
        with tempfile.TemporaryDirectory(prefix="latency-floor-") as directory:
            try:
                started = _cluster(work, directory)
                procs = [p for p, _ in started]
                addresses = [a for _, a in started]
                pids = [p.pid for p in procs]
                await asyncio.sleep(1.0)  # the peer streams open
                await phase(addresses, pids, 20, 2, args.in_flight, work)  # warm-up
                for rate, length in zip(args.rates, seconds, strict=True):
                    r, c, t = await phase(addresses, pids, rate, length, args.in_flight, work)
                    thread_rows.append((work, rate, t))
                    if work in ("full", "normal"):
                        commit_rows.append((work, rate, c))
                    print(
                        f"| {work} | {rate:g}/s | {r['alerts']:.0f} | {r['p50']:.2f} | "
                        f"{r['p99']:.2f} | {r['max']:.2f} | {r['lost']:.0f} | "
                        f"{r['node_cpu_ms']:.2f} ({r['node_cpu_ms'] * 1000 / verify[0]:.0f}) | "
                        f"{r['origin_ms']:.2f} / {r['relay_ms']:.2f} / {r['leaf_ms']:.2f} | "
                        f"{r['client_cpu_ms']:.2f} | {r['cpu_share']:.0%} | {r['others']:.0%} |",
                        flush=True,
                    )
            finally:
                for p in procs:
                    p.kill()
                    p.wait()
    verify.append(verify_us())
    if commit_rows:
        print()
        print("Each node's commits in the phase, wall ms p50 / p99 / max (on the node's loop):")
        print()
        print("| work | phase | origin (FULL) | root | node2 | node4 | node5 |")
        print("|---|---|---|---|---|---|---|")
        for work, rate, c in commit_rows:
            cells = [
                f"{x[0]:.2f} / {x[1]:.2f} / {x[2]:.2f}" for x in (c[0], c[2], c[1], c[3], c[4])
            ]
            print(f"| {work} | {rate:g}/s | " + " | ".join(cells) + " |")
    print()
    print("Each process's threads, per alert (as cluster_bench.py --threads reports them):")
    print()
    print(
        "| work | phase | process | main thread user / kernel ms | other threads ms | "
        "context switches: voluntary / involuntary (the main thread's) |"
    )
    print("|---|---|---|---|---|---|")
    for work, rate, shares in thread_rows:
        for role, t in (("origin", shares[0]), ("root", shares[2]), ("leaf node4", shares[3])):
            print(
                f"| {work} | {rate:g}/s | {role} | {t.main_user_ms:.2f} / "
                f"{t.main_system_ms:.2f} | {t.others_ms:.2f} | {t.voluntary:.1f} / "
                f"{t.involuntary:.1f} ({t.main_voluntary:.1f} / {t.main_involuntary:.1f}) |"
            )
    print()
    print(
        f"One verify (pynacl, {PAYLOAD - SIGNATURE}-byte body, this process's CPU): "
        f"{verify[0]:.1f} µs before the phases, {verify[1]:.1f} µs after; the verifies "
        "column divides by the first."
    )
    if any(w != "none" for w in args.work):
        with tempfile.TemporaryDirectory(prefix="latency-floor-") as directory:
            for synchronous in ("FULL", "NORMAL"):
                p50, p99, cpu_ms = commit_alone(directory, synchronous)
                print(
                    f"One commit alone, synchronous={synchronous} (100, one at a time): "
                    f"p50 {p50:.2f} ms, p99 {p99:.2f} ms wall, {cpu_ms:.3f} ms CPU"
                )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--synchronous", default="FULL", help=argparse.SUPPRESS)

    def floats(s: str) -> list[float]:
        return [float(x) for x in s.split(",")]

    def modes(s: str) -> list[str]:
        out = [m for m in s.split(",") if m]
        if not out or any(m not in MODES for m in out):
            raise argparse.ArgumentTypeError(f"a list of {', '.join(MODES)}")
        return out

    p.add_argument("--rates", type=floats, default=[20.0, 170.0])
    p.add_argument(
        "--seconds",
        type=floats,
        default=[10.0],
        help="length of each paced phase: one for all, or one per rate (e.g. 20,10)",
    )
    p.add_argument("--in-flight", type=int, default=16, help="max outstanding Publish calls")
    p.add_argument(
        "--work",
        type=modes,
        default=["none"],
        help="none (the bare message pass), full, normal, product (the product's own work with "
        "the node's parts), or several in turn (none,full,product)",
    )
    args = p.parse_args()
    if args.serve is not None:
        work = args.work[0]
        asyncio.run(
            serve([a for a in args.serve.split(",") if a], work, args.store, args.synchronous)
        )
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
