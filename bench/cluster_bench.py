"""Cluster benchmark: throughput, publish-to-last-node latency and copies per alert.

    .venv/bin/python bench/cluster_bench.py [--burst 3000] [--rates 20,100] [--no-ten]

One run, one machine, real node processes on 127.0.0.1 (node.cluster.up, the same as
`alertmesh cluster up`): a 5-node cluster (full mesh, degree 4) and then, if time
allows, a 10-node cluster (ring + random chords, node.cluster.peer_graph). Every
alert is published at node1 through the client Publish RPC; signed bodies are about
600-700 bytes.

1. Warm-up: --warmup alerts at --warmup-rate alerts/s, so that the eager tree settles
   (docs/gossip.md). Every node's Subscribe stream is open from here on.
2. Latency at moderate rates (--rates, --rate-seconds each): publishes are paced
   open-loop (at most --rate-in-flight outstanding). Each node's Subscribe stream is
   read in this one process and every arrival is stamped with time.monotonic(), so
   publish-to-last-node latency = (last of the N arrivals) - (start of the Publish
   call). Reported p50/p99/max.
3. Copies per alert: per node, the delta of sum(stats().peers[*].full_received) over
   the phase (pushes plus answers to GRAFT/IWANT; catch-up transfers are not
   counted) divided by the phase's alerts not authored by that node. Ideal 1.0;
   flooding would be about the node's degree. node1, the origin, should receive 0.
   Also per phase: duplicates, PRUNEs and GRAFTs sent, awaited ids given up, alerts
   that came by catch-up instead, and the CPU used by the nodes, by this process and
   by everything else on the machine (shares of all CPUs, from /proc).
4. Max throughput (5 nodes only): the Subscribe streams are closed, then --burst
   alerts are published at node1 with --burst-in-flight calls outstanding, as fast as
   the API takes them; timed until every store holds them all (stats().alerts polled
   every --poll s). Catch-up rounds run every 30 s on each session, so one burst is
   started just after a round and one just before (--burst-offsets): the round
   fetches alerts the tree is still carrying. Copies per alert are reported for each
   burst, and a short paced phase after each shows whether the tree settles again.

5. Batch burst (--batch-burst N on 5 nodes, --ten-batch-burst N on 10): N alerts
   published at node1 through PublishBatch (the `alertmesh import` path), --batch-size
   alerts per call and --batch-in-flight calls outstanding, timed until every store
   holds them all. The CPU of each node process and its verifier workers over that
   time (from /proc) gives the publish cost per alert (node1's CPU / N) and the node
   CPU per ingested alert (the others' CPU / ((n-1) N)), hence the CPU bound of the
   machine, CPUs / ((n-1) x ingest + publish) alerts/s, and the measured rate as a
   ratio to it. A short paced phase follows.

--publisher chooses who publishes (the first node in every table): node1; the tree's
root, the member with the smallest key (a star from the publisher, depth 1); or
`relay`, a node that is not the root, so that every alert crosses the root, which
verifies and stores it before passing it on (depth 2). Which node is the root depends
on the keys generated for the run, so without it the case is left to chance.

Every wait is bounded (--phase-timeout), and the 10-node part is skipped when less
than --ten-budget seconds of --max-seconds remain. Clusters live in a temporary
directory (or --dir) and are always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import latency_stages  # noqa: E402
from bench.proc_cpu import ThreadShare, ThreadTimes, machine_busy, thread_times  # noqa: E402
from node import cluster  # noqa: E402
from node._pb.alertmesh.v1 import alert_pb2  # noqa: E402
from node._pb.alertmesh.v1 import alerts_service_pb2 as api  # noqa: E402
from node.core.catchup import CatchupConfig  # noqa: E402
from node.rpc.client import AlertClient  # noqa: E402

VOCABULARY = """
wallet drainer phishing kit airdrop claim fake support ticket seed phrase approval
exploit bridge contract victim funds moved mixer exchange deposit address reported
impersonating official domain registered telegram group investment platform
withdrawal blocked fee demanded private key leaked malicious browser extension
"""
WORDS = tuple(VOCABULARY.split())
TLDS = ("com", "io", "xyz", "app", "net", "org", "finance", "site")
T = TypeVar("T")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1
CATCHUP_INTERVAL = CatchupConfig().interval  # what PeerManager uses
GOSSIP_COUNTERS = ("gossip_prunes_sent", "gossip_grafts_sent", "gossip_awaited_abandoned")


async def publish_all(
    items: Sequence[T], send: Callable[[T], Awaitable[None]], in_flight: int, acks: list[float]
) -> None:
    """Send every item in order, `in_flight` calls outstanding; each call's time to `acks`."""
    queue = deque(items)

    async def worker() -> None:
        while queue:
            item = queue.popleft()
            t0 = time.monotonic()
            await send(item)
            acks.append(time.monotonic() - t0)

    await asyncio.gather(*(worker() for _ in range(in_flight)))


async def stop_publishing(publishing: asyncio.Future[None]) -> None:
    """Wait for the publishers, cancelled if the phase timed out first."""
    if not publishing.done():
        publishing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await publishing


def note_full(
    per_node: dict[int, float], counts: Sequence[int], target: Sequence[int], now: float
) -> bool:
    """Record `now` for each store that newly holds its target count; True once all do."""
    for i, (x, t) in enumerate(zip(counts, target, strict=True)):
        if x >= t and i not in per_node:
            per_node[i] = now
    return len(per_node) == len(target)


def publish_request(rng: random.Random, tag: str) -> api.PublishRequest:
    """A realistic alert draft: the signed body the node makes of it is about 600 bytes."""
    domain = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{rng.randrange(16**6):06x}"
    domain += f".{rng.choice(TLDS)}"
    return api.PublishRequest(
        category=alert_pb2.CATEGORY_PHISHING,
        severity=alert_pb2.SEVERITY_HIGH,
        confidence=rng.randrange(40, 101),
        title=f"{tag}: " + " ".join(rng.choice(WORDS) for _ in range(6)),
        description=" ".join(rng.choice(WORDS) for _ in range(60))[:330],
        indicators=[
            alert_pb2.Indicator(type=alert_pb2.INDICATOR_TYPE_DOMAIN, value=domain),
            alert_pb2.Indicator(
                type=alert_pb2.INDICATOR_TYPE_ADDRESS,
                value=f"eip155:1:0x{rng.randbytes(20).hex()}",
            ),
            alert_pb2.Indicator(
                type=alert_pb2.INDICATOR_TYPE_URL,
                value=f"https://{domain}/claim?ref={rng.randrange(10**6)}",
            ),
        ],
        references=[f"https://reports.example/{rng.randrange(10**9)}"],
        tlp=alert_pb2.TLP_GREEN,
    )


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


@dataclass
class Snapshot:
    """One node's counters at one moment."""

    alerts: int
    received: int  # sum of peers' full_received
    duplicates: int
    caught_up: int
    gossip: dict[str, int]
    eager: set[str]  # peers this node pushes full alerts to
    # peer name -> (full copies, duplicates) received from it
    by_peer: dict[str, tuple[int, int]] = field(default_factory=dict)
    commits: tuple[int, int] = (0, 0)  # the store's commits: all, on the event loop's thread


def tree(names: list[str], snaps: list[Snapshot]) -> str:
    """The eager links as a tree from node1, e.g. "1→2,3; 3→4,5 (depth 2)".

    Links are listed by both ends normally; one listed by one end only is marked "?"."""
    short = {n: n.removeprefix("node") for n in names}
    eager = dict(zip(names, (s.eager for s in snaps), strict=True))
    seen = {names[0]}
    level = [names[0]]
    parts = []
    depth = 0
    while level:
        nxt = []
        for n in level:
            kids = sorted((k for k in eager[n] if k not in seen), key=names.index)
            if kids:
                marks = [short[k] + ("" if n in eager.get(k, ()) else "?") for k in kids]
                parts.append(f"{short[n]}→{','.join(marks)}")
            seen.update(kids)
            nxt += kids
        depth += bool(nxt)
        level = nxt
    links = sum(len(e) for e in eager.values())
    unreached = [short[n] for n in names if n not in seen]
    text = "; ".join(parts) + f" (depth {depth}, {links} directed eager links)"
    return text + (f", not reached: {','.join(unreached)}" if unreached else "")


@dataclass
class PhaseResult:
    cluster: str
    phase: str
    alerts: int
    seconds: float  # publishing time
    latencies: list[float] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    copies: dict[str, float] = field(default_factory=dict)  # node -> copies per alert
    origin_received: int = 0  # copies sent back to the origin (ideal 0)
    duplicates: int = 0
    gossip: dict[str, int] = field(default_factory=dict)
    caught_up: int = 0
    undelivered: int = 0  # alerts missing from some node at the end of the wait
    delivered_at: float = 0.0  # burst: seconds until every store held them all
    per_node_done: dict[str, float] = field(default_factory=dict)  # burst: node -> seconds
    first_catchup: float | None = None  # burst: first catch-up delivery, s after the start
    start_offset: float = 0.0  # burst: start, seconds after the last catch-up round
    wall: float = 0.0  # the whole phase, waits included
    node_cpu: float = 0.0  # CPU seconds of all node processes over the phase
    client_cpu: float = 0.0  # CPU seconds of this process over the phase
    other_cpu: float = 0.0  # CPU seconds of everything else on the machine
    tree_before: str = ""  # eager links at the start of the phase
    tree_after: str = ""
    per_node_cpu: list[float] = field(default_factory=list)  # batch burst: CPU s per node
    # node -> sender -> (full copies, duplicates) in the phase
    by_sender: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    paced_cpu: list[float] = field(default_factory=list)  # paced: CPU s per node, in order
    root: int = 0  # paced: the tree root's index among the nodes (0: the publisher)
    calls: int = 0  # batch burst: PublishBatch calls
    commits: list[tuple[int, int]] = field(default_factory=list)  # per node: all, on the loop
    # --threads, paced: per node, its threads over the phase (ThreadShare)
    threads: list[ThreadShare | None] = field(default_factory=list)  # None: no pid


class Bench:
    def __init__(self, nodes: list[cluster.ClusterNode], args: argparse.Namespace) -> None:
        self.nodes = nodes
        self.args = args
        self.clients = [AlertClient(n.api) for n in nodes]
        self.arrivals: dict[bytes, dict[int, float]] = {}
        self.watchers: list[asyncio.Task[None]] = []
        self.rng = random.Random(args.seed)
        peers = cluster.expected_peers(nodes)
        self.degree = {n.name: len(peers[n.name]) for n in nodes}  # the publisher first
        self.body_sizes: list[int] = []
        self.last_acks: list[float] = []
        self.sessions_open = time.monotonic()  # set when cluster.up returns
        self.node_pids = [n.pid() for n in nodes]
        self.pids = [p for p in self.node_pids if p is not None]
        self.traced: list[tuple[str, dict[bytes, float]]] = []  # --trace: (phase, starts)

    async def close(self) -> None:
        await self.stop_watching()
        for client in self.clients:
            await client.close()

    # -- subscriptions ---------------------------------------------------------

    async def _watch(self, i: int) -> None:
        call = self.clients[i].subscribe(api.SubscribeRequest())
        async for event in call:
            self.arrivals.setdefault(event.alert.id, {})[i] = time.monotonic()

    async def start_watching(self) -> None:
        self.watchers = [
            asyncio.create_task(self._watch(i), name=f"watch {n.name}")
            for i, n in enumerate(self.nodes)
        ]
        await asyncio.sleep(0.2)

    async def stop_watching(self) -> None:
        for task in self.watchers:
            task.cancel()
        for task in self.watchers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.watchers = []

    # -- counters ----------------------------------------------------------------

    @staticmethod
    def pid_cpu(pid: int | None) -> float:
        """CPU seconds of one process so far (user + system, from /proc)."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
        return 0.0

    @classmethod
    def family_cpu(cls, pid: int | None) -> dict[int, float]:
        """CPU seconds so far of a process and of its descendants (a node's verifier
        worker processes), by pid."""
        out: dict[int, float] = {}
        todo = [pid] if pid is not None else []
        while todo:
            p = todo.pop()
            out[p] = cls.pid_cpu(p)
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{p}/task").iterdir():
                    with contextlib.suppress(OSError, ValueError):
                        todo += [int(c) for c in (task / "children").read_text().split()]
        return out

    def cpu(self) -> tuple[float, float, float]:
        """CPU seconds so far: (the node processes, this process, the whole machine)."""
        ticks = sum(sum(self.family_cpu(pid).values()) for pid in self.pids) * CLOCK_TICKS
        return ticks / CLOCK_TICKS, time.process_time(), machine_busy()

    def start_clock(self) -> tuple[float, float, float, float]:
        return (time.monotonic(), *self.cpu())

    def stop_clock(self, result: PhaseResult, start: tuple[float, float, float, float]) -> None:
        wall, node, client, machine = start
        node_now, client_now, machine_now = self.cpu()
        result.wall = time.monotonic() - wall
        result.node_cpu = node_now - node
        result.client_cpu = client_now - client
        result.other_cpu = max(0.0, (machine_now - machine) - result.node_cpu - result.client_cpu)

    async def snapshot(self) -> list[Snapshot]:
        out = []
        for client in self.clients:
            st = await client.stats()
            out.append(
                Snapshot(
                    alerts=st.alerts,
                    received=sum(p.full_received for p in st.peers),
                    duplicates=sum(p.duplicates_received for p in st.peers),
                    caught_up=st.counters.get("catchup_alerts_received", 0),
                    gossip={k: st.counters.get(k, 0) for k in GOSSIP_COUNTERS},
                    eager={p.name for p in st.peers if p.eager and p.connected},
                    by_peer={p.name: (p.full_received, p.duplicates_received) for p in st.peers},
                    commits=(
                        st.counters.get("store_commits", 0),
                        st.counters.get("store_inline_commits", 0),
                    ),
                )
            )
        return out

    async def counts(self) -> list[int]:
        return [(await c.stats()).alerts for c in self.clients]

    def account(self, result: PhaseResult, before: list[Snapshot], after: list[Snapshot]) -> None:
        n = result.alerts
        names = [x.name for x in self.nodes]
        result.tree_before, result.tree_after = tree(names, before), tree(names, after)
        for i, node in enumerate(self.nodes):
            received = after[i].received - before[i].received
            if i == 0:
                result.origin_received = received
            else:
                result.copies[node.name] = received / n
        result.duplicates = sum(
            a.duplicates - b.duplicates for a, b in zip(after, before, strict=True)
        )
        for node, a, b in zip(self.nodes, after, before, strict=True):
            zero = (0, 0)
            result.by_sender[node.name] = {
                peer: (full - b.by_peer.get(peer, zero)[0], dups - b.by_peer.get(peer, zero)[1])
                for peer, (full, dups) in sorted(a.by_peer.items())
                if full > b.by_peer.get(peer, zero)[0]
            }
        result.caught_up = sum(
            a.caught_up - b.caught_up for a, b in zip(after, before, strict=True)
        )
        result.commits = [
            (a.commits[0] - b.commits[0], a.commits[1] - b.commits[1])
            for a, b in zip(after, before, strict=True)
        ]
        result.gossip = {
            k: sum(a.gossip[k] - b.gossip[k] for a, b in zip(after, before, strict=True))
            for k in GOSSIP_COUNTERS
        }

    # -- phases --------------------------------------------------------------------

    async def paced(
        self, rate: float, seconds: float, tag: str
    ) -> tuple[dict[bytes, float], float]:
        """Publish rate*seconds alerts at node1 on an open-loop schedule.

        Returns {id: publish start time} and the time publishing took."""
        client = self.clients[0]
        count = max(1, round(rate * seconds))
        started: dict[bytes, float] = {}
        acks: list[float] = []
        sem = asyncio.Semaphore(self.args.rate_in_flight)
        requests = [publish_request(self.rng, f"{tag} {i}") for i in range(count)]

        async def one(request: api.PublishRequest) -> None:
            try:
                t0 = time.monotonic()
                response = await client.publish(request, timeout=30)
                acks.append(time.monotonic() - t0)
                started[response.id] = t0
                self.body_sizes.append(len(response.alert.signed.body))
            finally:
                sem.release()

        tasks = []
        begin = time.monotonic()
        for i, request in enumerate(requests):
            delay = begin + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await sem.acquire()
            tasks.append(asyncio.create_task(one(request)))
        await asyncio.gather(*tasks)
        self.last_acks = acks
        return started, time.monotonic() - begin

    async def wait_arrived(self, ids: list[bytes], timeout: float) -> int:
        """Wait until every node's stream delivered every id; returns how many did not."""
        deadline = time.monotonic() + timeout
        n = len(self.nodes)
        while True:
            missing = sum(1 for i in ids if len(self.arrivals.get(i, ())) < n)
            if not missing or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(0.1)

    def node_threads(self) -> list[dict[int, ThreadTimes]]:
        return [thread_times(p) if p is not None else {} for p in self.node_pids]

    async def latency_phase(self, label: str, rate: float, seconds: float) -> PhaseResult:
        threads0 = self.node_threads() if self.args.threads else []
        cpu0 = [sum(self.family_cpu(p).values()) for p in self.node_pids]
        clock = self.start_clock()
        before = await self.snapshot()
        started, took = await self.paced(rate, seconds, label)
        self.traced.append((label, started))
        ids = list(started)
        undelivered = await self.wait_arrived(ids, self.args.phase_timeout)
        await asyncio.sleep(self.args.settle)  # late duplicates show up now
        after = await self.snapshot()
        result = PhaseResult(self.cluster_name, label, len(ids), took, acks=self.last_acks)
        result.undelivered = undelivered
        n = len(self.nodes)
        for i in ids:
            seen = self.arrivals.get(i, {})
            if len(seen) == n:
                result.latencies.append(max(seen.values()) - started[i])
        self.account(result, before, after)
        self.stop_clock(result, clock)
        cpu1 = [sum(self.family_cpu(p).values()) for p in self.node_pids]
        result.paced_cpu = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
        if self.args.threads and ids:
            threads1 = self.node_threads()
            result.threads = [
                ThreadShare.of(pid, a, b, len(ids)) if pid is not None else None
                for pid, a, b in zip(self.node_pids, threads0, threads1, strict=True)
            ]
        result.root = self.nodes.index(tree_root(self.nodes))
        return result

    async def wait_for_offset(self, offset: float) -> float:
        """Sleep until `offset` s after a catch-up round (rounds: every CATCHUP_INTERVAL s
        after the sessions opened; negative: before the next one). Returns the offset
        from the last round at which the burst really starts."""
        now = time.monotonic() - self.sessions_open
        k = math.floor((now - offset) / CATCHUP_INTERVAL) + 1
        start = k * CATCHUP_INTERVAL + offset
        await asyncio.sleep(max(0.0, start - now))
        return (time.monotonic() - self.sessions_open) % CATCHUP_INTERVAL

    async def burst_phase(self, count: int, in_flight: int, offset: float | None) -> PhaseResult:
        """offset: start that many s after a catch-up round (None: now)."""
        client = self.clients[0]
        requests = [publish_request(self.rng, f"burst {i}") for i in range(count)]
        if offset is None:
            start_offset = (time.monotonic() - self.sessions_open) % CATCHUP_INTERVAL
        else:
            start_offset = await self.wait_for_offset(offset)
        clock = self.start_clock()
        before = await self.snapshot()
        target = [s.alerts + count for s in before]
        caught_up_before = sum(s.caught_up for s in before)
        acks: list[float] = []

        async def send(request: api.PublishRequest) -> None:
            await client.publish(request, timeout=30)

        begin = time.monotonic()
        publishing = asyncio.ensure_future(publish_all(requests, send, in_flight, acks))
        published_at = 0.0
        delivered_at = 0.0
        first_catchup: float | None = None
        per_node: dict[int, float] = {}
        deadline = begin + self.args.phase_timeout + count / 50
        while time.monotonic() < deadline:
            if not published_at and publishing.done():
                await publishing
                published_at = time.monotonic() - begin
            snaps = await self.snapshot()
            now = time.monotonic() - begin
            if first_catchup is None and sum(x.caught_up for x in snaps) > caught_up_before:
                first_catchup = now
            if note_full(per_node, [x.alerts for x in snaps], target, now):
                delivered_at = max(per_node.values())
                break
            await asyncio.sleep(self.args.poll)
        await stop_publishing(publishing)
        published_at = published_at or time.monotonic() - begin
        await asyncio.sleep(self.args.settle)
        after = await self.snapshot()
        if start_offset > CATCHUP_INTERVAL / 2:
            label = f"burst, a catch-up round ~{CATCHUP_INTERVAL - start_offset:.0f} s in"
        else:
            label = f"burst, starting ~{start_offset:.0f} s after a catch-up round"
        result = PhaseResult(self.cluster_name, label, count, published_at)
        result.acks = acks
        result.delivered_at = delivered_at
        result.first_catchup = first_catchup
        result.start_offset = start_offset
        result.undelivered = sum(max(0, t - a.alerts) for t, a in zip(target, after, strict=True))
        result.per_node_done = {self.nodes[i].name: t for i, t in sorted(per_node.items())}
        self.account(result, before, after)
        self.stop_clock(result, clock)
        return result

    async def batch_burst_phase(
        self, count: int, size: int, in_flight: int, offset: float | None = None
    ) -> PhaseResult:
        """Publish `count` alerts at node1 through PublishBatch; time until all stores
        hold them, and each node's CPU over that time. offset: start that many s after
        a catch-up round (negative: before the next one; None: now)."""
        client = self.clients[0]
        requests = [publish_request(self.rng, f"batch {i}") for i in range(count)]
        batches = [requests[i : i + size] for i in range(0, count, size)]
        if offset is None:
            start_offset = (time.monotonic() - self.sessions_open) % CATCHUP_INTERVAL
        else:
            start_offset = await self.wait_for_offset(offset)
        before = await self.snapshot()
        target = [s.alerts + count for s in before]
        caught_up_before = sum(s.caught_up for s in before)
        acks: list[float] = []
        refused = 0

        async def send(batch: list[api.PublishRequest]) -> None:
            nonlocal refused
            response = await client.publish_batch(batch, timeout=60)
            refused += sum(1 for r in response.results if r.error)

        clock = self.start_clock()
        cpu0 = [self.family_cpu(p) for p in self.node_pids]
        begin = time.monotonic()
        publishing = asyncio.ensure_future(publish_all(batches, send, in_flight, acks))
        published_at = 0.0
        delivered_at = 0.0
        first_catchup: float | None = None
        per_node: dict[int, float] = {}
        per_node_cpu: list[float] = []
        deadline = begin + self.args.phase_timeout + count / 200
        while time.monotonic() < deadline:
            if not published_at and publishing.done():
                await publishing
                published_at = time.monotonic() - begin
            counts = await self.counts()
            now = time.monotonic() - begin
            if note_full(per_node, counts, target, now):
                delivered_at = max(per_node.values())
                per_node_cpu = [
                    sum(v - c.get(k, 0.0) for k, v in self.family_cpu(p).items())
                    for p, c in zip(self.node_pids, cpu0, strict=True)
                ]
                break
            await asyncio.sleep(self.args.batch_poll)
        await stop_publishing(publishing)
        published_at = published_at or time.monotonic() - begin
        stop = PhaseResult(self.cluster_name, "", count, published_at)
        self.stop_clock(stop, clock)  # CPU up to the last store full
        await asyncio.sleep(self.args.settle)
        after = await self.snapshot()
        if sum(s.caught_up for s in after) > caught_up_before:
            first_catchup = 0.0  # some alerts came by catch-up (counted below)
        label = f"batch burst ({size} per call, {in_flight} in flight)"
        if offset is not None:
            round_in = (CATCHUP_INTERVAL - start_offset) % CATCHUP_INTERVAL
            label += f", a catch-up round ~{round_in:.0f} s in"
        result = PhaseResult(self.cluster_name, label, count, published_at)
        result.acks = acks
        result.calls = len(batches)
        result.delivered_at = delivered_at
        result.first_catchup = first_catchup
        result.start_offset = start_offset
        result.undelivered = sum(max(0, t - a.alerts) for t, a in zip(target, after, strict=True))
        result.undelivered += refused
        result.per_node_done = {self.nodes[i].name: t for i, t in sorted(per_node.items())}
        result.per_node_cpu = per_node_cpu
        self.account(result, before, after)
        result.wall, result.node_cpu = stop.wall, stop.node_cpu
        result.client_cpu, result.other_cpu = stop.client_cpu, stop.other_cpu
        return result

    @property
    def cluster_name(self) -> str:
        publisher, root = self.nodes[0].name, tree_root(self.nodes).name
        where = "root" if root == publisher else f"root {root}"
        return f"{len(self.nodes)} nodes ({publisher} publishes, {where})"


def tree_root(nodes: Sequence[cluster.ClusterNode]) -> cluster.ClusterNode:
    """The rooted tree's root: the member with the smallest key (docs/gossip.md, rule 9)."""
    return min(nodes, key=lambda n: bytes.fromhex((n.home / "identity.pub").read_text().strip()))


def with_publisher(nodes: list[cluster.ClusterNode], who: str) -> list[cluster.ClusterNode]:
    """The nodes with the publisher first: node1; the root; or a relay case, a node that
    is not the root (its alerts reach the others through the root), the first such."""
    root = tree_root(nodes)
    if who == "root":
        first = root
    elif who == "relay":
        first = next(n for n in nodes if n is not root)
    else:
        first = nodes[0]
    return [first, *(n for n in nodes if n is not first)]


def set_verify_processes(directory: Path, n: int, seed: int, processes: int) -> None:
    """Set each node's [verify] processes, in a new cluster directory or a reused one."""
    if (directory / cluster.MANIFEST).exists():
        made = cluster.load(directory)
    else:
        made = cluster.create(directory, n, seed=seed)
    for node in made:
        config = node.home / "config.toml"
        text, found = re.subn(
            r"(?m)^processes = .*$", f"processes = {processes}", config.read_text()
        )
        assert found == 1, f"{config} has no [verify] processes line"
        config.write_text(text)


async def run_cluster(
    directory: Path, n: int, args: argparse.Namespace, *, burst: bool
) -> tuple[list[PhaseResult], dict[str, int], list[int]]:
    started = time.monotonic()
    trace = directory / "trace"
    if args.trace:  # the nodes mark each alert's stages (node/app/latency_trace.py)
        trace.mkdir(parents=True)
        os.environ["ALERTMESH_LATENCY_TRACE"] = str(trace)
    try:
        if args.verify_processes:  # each node's [verify] processes, instead of its share
            set_verify_processes(directory, n, args.seed, args.verify_processes)
        nodes = await asyncio.to_thread(cluster.up, directory, n, seed=args.seed)
    finally:
        os.environ.pop("ALERTMESH_LATENCY_TRACE", None)
    print(f"# {n}-node cluster up in {time.monotonic() - started:.1f} s", file=sys.stderr)
    nodes = with_publisher(nodes, args.publisher)
    print(
        f"# {n} nodes: publisher {nodes[0].name}, tree root {tree_root(nodes).name}",
        file=sys.stderr,
    )
    bench = Bench(nodes, args)
    results: list[PhaseResult] = []
    try:
        await bench.start_watching()
        warm = await bench.latency_phase(
            "warm-up", args.warmup_rate, args.warmup / args.warmup_rate
        )
        results.append(warm)
        for rate in args.rates:
            print(f"# {n} nodes: {rate:g}/s for {args.rate_seconds:g} s", file=sys.stderr)
            results.append(await bench.latency_phase(f"{rate:g}/s", rate, args.rate_seconds))
        batch = args.batch_burst if burst else args.ten_batch_burst
        if batch:
            await bench.stop_watching()
            print(
                f"# {n} nodes: batch burst of {batch} ({args.batch_size} per call)",
                file=sys.stderr,
            )
            results.append(
                await bench.batch_burst_phase(
                    batch, args.batch_size, args.batch_in_flight, args.batch_offset
                )
            )
            await bench.start_watching()
            rate = args.rates[0]
            results.append(
                await bench.latency_phase(f"{rate:g}/s after that burst", rate, args.after_seconds)
            )
        for offset in args.burst_offsets if burst and args.burst else []:
            await bench.stop_watching()
            print(f"# {n} nodes: burst of {args.burst} ({offset:+g} s)", file=sys.stderr)
            results.append(await bench.burst_phase(args.burst, args.burst_in_flight, offset))
            await bench.start_watching()
            rate = args.rates[0]
            results.append(
                await bench.latency_phase(f"{rate:g}/s after that burst", rate, args.after_seconds)
            )
    finally:
        await bench.close()
        killed = await asyncio.to_thread(cluster.down, directory)
        if killed:
            print(f"# nodes that had to be killed: {[k.name for k in killed]}", file=sys.stderr)
    if args.trace:
        names = [node.name for node in nodes]
        pids = {pid: name for pid, name in zip(bench.node_pids, names, strict=True) if pid}
        for _ in range(200):  # a node writes its marks as it exits, after `down` returned
            if all((trace / f"{pid}.tsv").exists() for pid in pids):
                break
            await asyncio.sleep(0.05)
        marks = latency_stages.load(trace, pids)
        for label, starts in bench.traced[1:]:  # not the warm-up
            table = latency_stages.breakdown(
                f"{n} nodes, {label}", marks, names, starts, bench.arrivals
            )
            args.trace_tables.append(table)
    return results, bench.degree, bench.body_sizes


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def copies_cell(r: PhaseResult) -> str:
    values = list(r.copies.values())
    if not values:
        return "-"
    return f"{statistics.fmean(values):.3f} ({min(values):.2f}–{max(values):.2f})"


def report(
    command: str,
    sections: list[tuple[list[PhaseResult], dict[str, int]]],
    body_sizes: list[int],
    elapsed: float,
) -> str:
    out: list[str] = []
    out.append(f"Command: `{command}`\n")
    if body_sizes:
        out.append(
            f"Signed alert bodies: mean {statistics.fmean(body_sizes):.0f} B "
            f"(min {min(body_sizes)}, max {max(body_sizes)}); {CPUS} CPUs; "
            f"total run {elapsed:.0f} s.\n"
        )
    out.append("Latency (publish call start → arrival on the last node's Subscribe stream):\n")
    out.append(
        "| cluster | phase | alerts | achieved /s | p50 ms | p99 ms | max ms | ack p50 ms | "
        "copies/alert/node mean (min–max) | to origin | dups | prunes | grafts | abandoned "
        "| via catch-up | undelivered | CPU: nodes / bench / others |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for results, _ in sections:
        for r in results:
            lat = r.latencies
            rate = r.alerts / r.seconds if r.seconds else 0.0
            machine = r.wall * CPUS
            cells = [
                r.cluster,
                r.phase,
                str(r.alerts),
                f"{rate:.0f}",
                ms(pct(lat, 50)) if lat else "-",
                ms(pct(lat, 99)) if lat else "-",
                ms(max(lat)) if lat else "-",
                ms(pct(r.acks, 50)) if r.acks else "-",
                copies_cell(r),
                str(r.origin_received),
                str(r.duplicates),
                str(r.gossip.get("gossip_prunes_sent", 0)),
                str(r.gossip.get("gossip_grafts_sent", 0)),
                str(r.gossip.get("gossip_awaited_abandoned", 0)),
                str(r.caught_up),
                str(r.undelivered),
                f"{r.node_cpu / machine:.0%} / {r.client_cpu / machine:.0%} / "
                f"{r.other_cpu / machine:.0%}"
                if machine
                else "-",
            ]
            out.append("| " + " | ".join(cells) + " |")
    out.append("")
    paced = [r for results, _ in sections for r in results if r.paced_cpu and r.alerts]
    if paced:
        out.append(paced_cpu_report(paced, verify_us()))
        if any(r.threads for r in paced):
            out.append(threads_report(paced))
    batch = [r for results, _ in sections for r in results if r.per_node_cpu]
    if batch:
        out.append(batch_report(batch))
    bursts = [r for results, _ in sections for r in results if r.per_node_done and not r.calls]
    if bursts:
        out.append(
            "Max throughput (published at the first node with a few calls in flight; "
            "stores polled):\n"
        )
        out.append(
            "| cluster | burst | alerts | publish acks/s | delivered to all /s | published in s "
            "| all stores full in s | ack p50 / p99 ms | first catch-up delivery | "
            "each store full after (s) |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in bursts:
            full = f"{r.delivered_at:.2f}" if r.delivered_at else "not within the bound"
            to_all = f"{r.alerts / r.delivered_at:.0f}" if r.delivered_at else "-"
            first = "none" if r.first_catchup is None else f"{r.first_catchup:.1f} s in"
            done = ", ".join(f"{k} {v:.1f}" for k, v in r.per_node_done.items())
            out.append(
                f"| {r.cluster} | {r.phase} | {r.alerts} | {r.alerts / r.seconds:.0f} | {to_all} "
                f"| {r.seconds:.2f} | {full} | {ms(pct(r.acks, 50))} / {ms(pct(r.acks, 99))} "
                f"| {first} | {done} |"
            )
        out.append("")
    out.append("Eager links (who pushes full alerts to whom) from the publisher, before → after:\n")
    out.append("| cluster | phase | before | after |")
    out.append("|---|---|---|---|")
    for results, _ in sections:
        for r in results:
            out.append(f"| {r.cluster} | {r.phase} | {r.tree_before} | {r.tree_after} |")
    out.append("")
    out.append("Full copies received per alert, per node (flooding ≈ degree):\n")
    for results, degree in sections:
        names = list(degree)[1:]  # the publisher is first
        out.append("| cluster | phase | " + " | ".join(names) + " |")
        out.append("|---|---|" + "---|" * len(names))
        out.append("| | degree | " + " | ".join(str(degree[k]) for k in names) + " |")
        for r in results:
            cells = [f"{r.copies.get(k, 0):.2f}" for k in names]
            out.append(f"| {r.cluster} | {r.phase} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def verify_us(rounds: int = 5, n: int = 400) -> float:
    """CPU µs of one Ed25519 verify of a 660-byte body on this thread, now (the median
    of `rounds`): the unit the issue's CPU figures are stated in."""
    from node.crypto import Identity, sign_alert, verify_alert

    identity = Identity.generate()
    body = bytes(660)
    signature = sign_alert(identity, body)
    per: list[float] = []
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(n):
            verify_alert(identity.public_key, body, signature)
        per.append((time.process_time() - t0) / n * 1e6)
    return statistics.median(per)


def paced_cpu_report(results: list[PhaseResult], verify: float) -> str:
    """Node CPU per alert in the paced phases: what the machine's two cores must carry."""
    out = [
        f"Node CPU per alert, paced phases (one Ed25519 verify = {verify:.0f} µs on this "
        "machine, measured at the end of this run):\n",
        "| cluster | phase | all nodes ms/alert | = verifies | publisher | root | others, "
        "each | machine busy (nodes + bench + others) | commits on the loop / all, per node |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        per = [c / r.alerts * 1000 for c in r.paced_cpu]
        total = sum(per)
        machine = r.wall * CPUS
        busy = (r.node_cpu + r.client_cpu + r.other_cpu) / machine if machine else 0.0
        root = r.root
        rest = [x for i, x in enumerate(per) if i not in (0, root)]
        out.append(
            f"| {r.cluster} | {r.phase} | {total:.2f} | {total * 1000 / verify:.0f} | "
            f"{per[0]:.2f} | {per[root]:.2f} | {statistics.fmean(rest):.2f} | {busy:.0%} | "
            + ", ".join(f"{loop}/{every}" for every, loop in r.commits)
            + " |"
        )
    out.append("")
    return "\n".join(out)


def threads_report(results: list[PhaseResult]) -> str:
    """--threads: where each node's CPU went in the paced phases, by thread."""
    out = [
        "Each node's threads, paced phases (`--threads`; per alert, from /proc/PID/task; "
        "verifier processes not counted):\n",
        "| cluster | phase | node | main thread user / kernel ms | other threads ms | "
        "context switches: voluntary / involuntary (the main thread's) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for i, t in enumerate(r.threads):
            role = "publisher" if i == 0 else "root" if i == r.root else "leaf"
            if t is None:
                out.append(f"| {r.cluster} | {r.phase} | {i + 1} ({role}) | n/a | n/a | n/a |")
                continue
            out.append(
                f"| {r.cluster} | {r.phase} | {i + 1} ({role}) | {t.main_user_ms:.2f} / "
                f"{t.main_system_ms:.2f} | {t.others_ms:.2f} | {t.voluntary:.1f} / "
                f"{t.involuntary:.1f} ({t.main_voluntary:.1f} / {t.main_involuntary:.1f}) |"
            )
    out.append("")
    return "\n".join(out)


def batch_report(results: list[PhaseResult]) -> str:
    """The batch bursts: rate to all stores, and the CPU bound from the same run."""
    out = [
        "Batch burst (PublishBatch at the publisher; stores polled; CPU of each node process from "
        "/proc over the same time, until the last store was full):\n",
        "| cluster | burst | alerts | calls | published in s | all stores full in s | "
        "delivered to all /s | call p50 ms | publisher CPU per alert µs | "
        "others' CPU per ingested alert µs | CPU bound /s | rate / bound | "
        "each store full after (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n = r.alerts
        publish = r.per_node_cpu[0] / n
        peers = len(r.per_node_cpu) - 1
        ingest = sum(r.per_node_cpu[1:]) / (peers * n)
        bound = CPUS / (peers * ingest + publish)
        rate = n / r.delivered_at if r.delivered_at else 0.0
        done = ", ".join(f"{k} {v:.2f}" for k, v in r.per_node_done.items())
        full = f"{r.delivered_at:.2f}" if r.delivered_at else "not within the bound"
        out.append(
            f"| {r.cluster} | {r.phase} | {n} | {r.calls} | {r.seconds:.2f} | {full} "
            f"| {rate:.0f} | {ms(pct(r.acks, 50)) if r.acks else '-'} | {publish * 1e6:.0f} "
            f"| {ingest * 1e6:.0f} | {bound:.0f} | {rate / bound:.2f} | {done} |"
        )
    out.append("")
    out.append(
        f"CPU bound = {CPUS} CPUs / ((nodes - 1) x CPU per ingested alert + publish CPU "
        "per alert); "
        "a node's CPU is its process (gRPC, gossip, store threads) and its verifier "
        "worker processes."
    )
    out.append("")
    out.append("Batch burst: full copies (duplicates) each node received, by sender:\n")
    for r in results:
        for node, senders in r.by_sender.items():
            cells = ", ".join(f"{peer} {full} ({dups})" for peer, (full, dups) in senders.items())
            out.append(f"- {r.cluster} {node}: {cells or 'none'}")
    out.append("")
    return "\n".join(out)


async def main_async(args: argparse.Namespace) -> str:
    begin = time.monotonic()
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="alertmesh-cluster-"))
    sections = []
    sizes: list[int] = []
    try:
        results, degree, s = await run_cluster(base / "five", 5, args, burst=True)
        sections.append((results, degree))
        sizes += s
        left = args.max_seconds - (time.monotonic() - begin)
        if args.ten and left >= args.ten_budget:
            results, degree, s = await run_cluster(base / "ten", 10, args, burst=False)
            sections.append((results, degree))
            sizes += s
        elif args.ten:
            print(f"# skipping the 10-node cluster: {left:.0f} s left", file=sys.stderr)
    finally:
        if not args.dir and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    command = shlex.join([".venv/bin/python", "bench/cluster_bench.py", *sys.argv[1:]])
    text = report(command, sections, sizes, time.monotonic() - begin)
    return "\n".join([text, *args.trace_tables])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warmup", type=int, default=100, help="warm-up alerts")
    p.add_argument("--warmup-rate", type=float, default=20.0, help="warm-up alerts/s")
    p.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[20.0, 100.0],
        help="paced rates, alerts/s (comma-separated)",
    )
    p.add_argument("--rate-seconds", type=float, default=10.0, help="length of each paced phase")
    p.add_argument("--after-seconds", type=float, default=5.0, help="paced phase after a burst")
    p.add_argument("--rate-in-flight", type=int, default=16, help="max outstanding when paced")
    p.add_argument("--burst", type=int, default=3000, help="alerts in the max-throughput burst")
    p.add_argument("--burst-in-flight", type=int, default=8)
    p.add_argument(
        "--batch-burst", type=int, default=0, help="alerts in a PublishBatch burst (0: none)"
    )
    p.add_argument(
        "--ten-batch-burst", type=int, default=0, help="the same on the 10-node cluster (0: none)"
    )
    p.add_argument("--batch-size", type=int, default=200, help="alerts per PublishBatch call")
    p.add_argument("--batch-in-flight", type=int, default=2, help="PublishBatch calls outstanding")
    p.add_argument("--batch-poll", type=float, default=0.05, help="stats poll in the batch burst")
    p.add_argument(
        "--burst-offsets",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[2.0, -4.0],
        help="one burst per value, started this many s after (negative: before) a catch-up "
        f"round; rounds run every {CATCHUP_INTERVAL:g} s after the sessions open",
    )
    p.add_argument(
        "--batch-offset",
        type=float,
        default=None,
        help="start the batch burst this many s after (negative: before) a catch-up round "
        "(default: at once); -2 puts a round 2 s into the burst",
    )
    p.add_argument("--poll", type=float, default=0.2, help="stats poll interval in the burst")
    p.add_argument("--settle", type=float, default=1.0, help="wait for late copies after a phase")
    p.add_argument("--phase-timeout", type=float, default=45.0, help="bound on each wait")
    p.add_argument("--no-ten", dest="ten", action="store_false", help="skip the 10-node part")
    p.add_argument("--ten-budget", type=float, default=90.0, help="seconds the 10-node part needs")
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--publisher",
        choices=("node1", "root", "relay"),
        default="node1",
        help="who publishes: node1; the tree root (depth 1); or a node that is not the "
        "root, so every alert reaches the others through a relay (listed first in the report)",
    )
    p.add_argument(
        "--verify-processes",
        type=int,
        default=0,
        help="each node's [verify] processes (verifier processes; default: auto)",
    )
    p.add_argument("--dir", help="cluster directory (default: a temporary one, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument(
        "--threads",
        action="store_true",
        help="per node and paced phase: CPU by thread and context switches per alert",
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="the nodes mark each alert's stages; a table of where the time goes per paced phase",
    )
    args = p.parse_args()
    args.trace_tables = []
    print(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
