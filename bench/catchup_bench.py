"""Catch-up (anti-entropy) benchmark: bytes, round trips and time.

    .venv/bin/python bench/catchup_bench.py [--origins 50] [--per-origin 2000] [--missing 200]

One corpus of real signed alerts (--origins member keys held by this bench, each with
a chain of --per-origin alerts whose signed bodies are about --body bytes), used twice
in one run:

(i) Protocol level, exact. Two node.core.catchup.CatchupSession objects, stores
    modelled by node.core.chain.Chains plus a dict of the signed alerts, talk over an
    in-memory pipe. Every frame is a real alertmesh.v1.PeerFrame: it is serialised
    by the sender and parsed by the receiver, and bytes = sum of ByteSize() of every
    frame, plus 5 bytes per frame for the gRPC length prefix (reported separately;
    HTTP/2 frame headers and TCP/IP are not counted here, part (ii) measures them).
    Ranges are served as peers.py does (Alerts frames of at most 256 alerts, per
    range); received alerts are decoded and their signatures verified. Round trips
    use a latency-bound model: a frame sent while handling a frame that arrived at
    one-way step t arrives at step t+1 (bandwidth and CPU are free), and round trips
    = the last step / 2. Cases: identical stores; the peer missing the last --missing
    alerts of every origin, as dialer (initiator) and as acceptor; the peer missing
    the same number of alerts scattered at random (gaps below held alerts). Each case
    ends with one more round (the 30 s timer), which must be in sync.
(ii) Real nodes, end to end. Three node processes (node.cluster.create(dir, 3),
    rosters extended with the bench's author keys, peers.connect emptied so nobody
    dials) are started and filled through the client Ingest RPC in batches of 1,000:
    A (node1) gets every alert, B (node2) all but the last --missing of each origin,
    C (node3) all but the same number picked at random (--no-scattered-nodes: no C).
    Then B is stopped, its config gets connect = ["node1"], and it is started again,
    dialing A through a byte-counting TCP proxy in this process (B's roster points
    node1's address at it). Timed from B's process start until B's stats digest and
    alert count equal A's. Reported: time, the node counters, and the TCP payload
    bytes each way (HTTP/2, gRPC and the peer handshake included). Then B is
    restarted once more with identical stores: the bytes of that whole new session
    (connection set-up, handshake, one catch-up round) are measured the same way.
    Last, C catches up from A the same way as B did.

Only 127.0.0.1 is used; every wait is bounded (--timeout), the nodes are always
stopped, and the temporary directory is removed (unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from node import cluster  # noqa: E402
from node._pb.alertmesh.v1 import alert_pb2  # noqa: E402
from node._pb.alertmesh.v1 import alerts_service_pb2 as api  # noqa: E402
from node._pb.alertmesh.v1 import peer_service_pb2 as pb  # noqa: E402
from node.app.config import CONFIG_FILE  # noqa: E402
from node.core import catchup  # noqa: E402
from node.core.alerts import alert_id  # noqa: E402
from node.core.chain import Chains  # noqa: E402
from node.core.roster import Member, Roster  # noqa: E402
from node.crypto import Identity, sign_alert, verify_alert  # noqa: E402
from node.rpc.client import AlertClient  # noqa: E402

GRPC_PREFIX = 5  # bytes before each gRPC message: compressed flag + 4-byte length
ALERTS_PER_FRAME = 256  # as node/app/peers.py serves ranges
INGEST_BATCH = 1000
ACCEPTED = api.INGEST_OUTCOME_ACCEPTED

VOCABULARY = """
wallet drainer phishing kit airdrop claim fake support ticket seed phrase approval
exploit bridge contract victim funds moved mixer exchange deposit address reported
impersonating official domain registered telegram group investment platform
withdrawal blocked fee demanded private key leaked malicious browser extension
"""
WORDS = tuple(VOCABULARY.split())
TLDS = ("com", "io", "xyz", "app", "net", "org", "finance", "site")

Key = tuple[bytes, int]  # (origin, seq)


# --- the corpus -------------------------------------------------------------------------


@dataclass
class Corpus:
    identities: list[Identity]
    chains: list[list[alert_pb2.SignedAlert]]  # per origin, seq 1..n

    def items(self, keep: Iterable[Key] | None = None) -> dict[Key, alert_pb2.SignedAlert]:
        wanted = None if keep is None else set(keep)
        out = {}
        for ident, chain in zip(self.identities, self.chains, strict=True):
            for seq, signed in enumerate(chain, start=1):
                key = (ident.public_key, seq)
                if wanted is None or key in wanted:
                    out[key] = signed
        return out


def build_corpus(origins: int, per_origin: int, body: int, seed: int) -> Corpus:
    rng = random.Random(seed)
    identities = [Identity(hashlib.sha256(b"catchup-bench/%d/%d" % (seed, i)).digest())
                  for i in range(origins)]  # fmt: skip
    now_ms = time.time_ns() // 1_000_000 - 3_600_000
    chains: list[list[alert_pb2.SignedAlert]] = []
    filler = " ".join(rng.choice(WORDS) for _ in range(400))
    for ident in identities:
        chain = []
        head = b""
        for seq in range(1, per_origin + 1):
            domain = f"{rng.choice(WORDS)}-{rng.randrange(16**6):06x}.{rng.choice(TLDS)}"
            alert = alert_pb2.Alert(
                origin=ident.public_key,
                seq=seq,
                prev=head,
                created_at_ms=now_ms + seq,
                category=alert_pb2.CATEGORY_PHISHING,
                severity=alert_pb2.SEVERITY_HIGH,
                confidence=rng.randrange(40, 101),
                title=" ".join(rng.choice(WORDS) for _ in range(6)).capitalize(),
                tlp=alert_pb2.TLP_GREEN,
            )
            alert.indicators.add(type=alert_pb2.INDICATOR_TYPE_DOMAIN, value=domain)
            alert.indicators.add(
                type=alert_pb2.INDICATOR_TYPE_ADDRESS,
                value=f"eip155:1:0x{rng.randbytes(20).hex()}",
            )
            alert.indicators.add(
                type=alert_pb2.INDICATOR_TYPE_URL,
                value=f"https://{domain}/claim?ref={rng.randrange(10**6)}",
            )
            alert.references.append(f"https://reports.example/{rng.randrange(10**9)}")
            size = body + rng.randrange(-50, 51)
            room = size - alert.ByteSize() - 3  # description: tag + 2-byte length
            start = rng.randrange(len(filler) - max(room, 0) - 1)
            alert.description = filler[start : start + max(room, 0)]
            data = alert.SerializeToString(deterministic=True)
            head = alert_id(data)
            chain.append(alert_pb2.SignedAlert(body=data, signature=sign_alert(ident, data)))
        chains.append(chain)
    return Corpus(identities, chains)


# --- (i) protocol level -----------------------------------------------------------------


@dataclass
class Side:
    name: str
    held: dict[Key, alert_pb2.SignedAlert]
    initiator: bool
    config: catchup.CatchupConfig
    chains: Chains = field(default_factory=Chains)
    session: catchup.CatchupSession | None = None
    received: int = 0
    duplicates: int = 0

    def __post_init__(self) -> None:
        for origin, seq in self.held:
            self.chains.add(origin, seq)
        self.session = catchup.CatchupSession(
            self.chains,
            initiator=self.initiator,
            config=self.config,
            registry=catchup.FetchRegistry(),
        )

    @property
    def s(self) -> catchup.CatchupSession:
        assert self.session is not None
        return self.session


@dataclass
class PipeStats:
    frames: Counter[str] = field(default_factory=Counter)
    payload: Counter[str] = field(default_factory=Counter)  # sum of ByteSize() per kind
    steps: int = 0  # one-way trips on the critical path
    alert_frame_bytes: int = 0  # Alerts frames: ByteSize() (signed alerts and framing)

    @property
    def bytes(self) -> int:
        return sum(self.payload.values())

    @property
    def total(self) -> int:
        return self.bytes + GRPC_PREFIX * sum(self.frames.values())


class Pipe:
    """Two sessions on one in-memory stream, one FIFO each way, frames as serialised bytes."""

    def __init__(self, a: Side, b: Side, rtt: float) -> None:
        self.sides = {a.name: a, b.name: b}
        self.other = {a.name: b.name, b.name: a.name}
        self.queues: dict[str, deque[tuple[int, bytes]]] = {a.name: deque(), b.name: deque()}
        self.stats = PipeStats()
        self.half = rtt / 2
        self.step = 0

    def send(self, sender: str, frame: pb.PeerFrame) -> None:
        data = frame.SerializeToString()
        kind = frame.WhichOneof("frame") or "?"
        self.stats.frames[kind] += 1
        self.stats.payload[kind] += len(data)
        self.queues[self.other[sender]].append((self.step + 1, data))

    def act(self, name: str, actions: Sequence[catchup.Action]) -> None:
        side = self.sides[name]
        for action in actions:
            if isinstance(action, catchup.SendDigest):
                self.send(name, pb.PeerFrame(digest=pb.SummaryDigest(digest=action.digest)))
            elif isinstance(action, catchup.SendVector):
                heads = [pb.Head(origin=o, seq=s) for o, s in action.heads]
                vector = pb.VersionVector(heads=heads, reply=action.reply)
                self.send(name, pb.PeerFrame(vector=vector))
            elif isinstance(action, catchup.SendRangeRequests):
                ranges = [
                    pb.RangeRequest(origin=r.origin, from_seq=r.from_seq, to_seq=r.to_seq)
                    for r in action.ranges
                ]
                self.send(name, pb.PeerFrame(ranges=pb.RangeRequests(ranges=ranges)))
            elif isinstance(action, catchup.ServeRanges):
                for r in action.ranges:
                    records = [
                        side.held[(r.origin, s)]
                        for s in range(r.from_seq, r.to_seq + 1)
                        if (r.origin, s) in side.held
                    ]
                    for i in range(0, len(records), ALERTS_PER_FRAME):
                        batch = records[i : i + ALERTS_PER_FRAME]
                        frame = pb.PeerFrame(alerts=pb.Alerts(alerts=batch, catchup=True))
                        self.send(name, frame)
            else:
                raise AssertionError(f"{name}: range abandoned: {action}")

    def receive(self, name: str, data: bytes, now: float) -> None:
        side = self.sides[name]
        frame = pb.PeerFrame.FromString(data)
        kind = frame.WhichOneof("frame")
        s = side.s
        if kind == "digest":
            self.act(name, s.on_digest(frame.digest.digest, now))
        elif kind == "vector":
            heads = catchup.parse_vector((h.origin, h.seq) for h in frame.vector.heads)
            self.act(name, s.on_vector(heads, frame.vector.reply, now))
        elif kind == "ranges":
            ranges = [catchup.Range(r.origin, r.from_seq, r.to_seq) for r in frame.ranges.ranges]
            self.act(name, s.on_range_requests(ranges))
        elif kind == "alerts":
            self.stats.alert_frame_bytes += len(data)
            got: list[Key] = []
            for signed in frame.alerts.alerts:
                alert = alert_pb2.Alert.FromString(signed.body)
                verify_alert(alert.origin, signed.body, signed.signature)
                key = (alert.origin, alert.seq)
                if key in side.held:
                    side.duplicates += 1
                else:
                    side.held[key] = signed
                    side.chains.add(*key)
                    side.received += 1
                got.append(key)
            self.act(name, s.on_alerts_received(got, now))
        else:
            raise AssertionError(f"unexpected frame {kind}")

    def run(self, max_steps: int) -> None:
        """Deliver frames step by step until both queues are empty (bounded)."""
        while any(self.queues.values()):
            if self.step >= max_steps:
                raise RuntimeError(f"no convergence within {max_steps} one-way steps")
            self.step += 1
            now = self.step * self.half
            for name in sorted(self.sides):  # both directions in the same step
                queue = self.queues[name]
                while queue and queue[0][0] <= self.step:
                    self.receive(name, queue.popleft()[1], now)
            for name, side in self.sides.items():
                due = side.s.next_deadline()
                if due is not None and due <= now:
                    self.act(name, side.s.handle_timer(now))
        self.stats.steps = self.step


@dataclass
class ProtocolCase:
    name: str
    stats: PipeStats
    missing: int
    payload: int  # len(body) + len(signature) of the missing alerts
    signed_bytes: int  # SignedAlert.ByteSize() of the missing alerts
    transferred: int
    duplicates: int
    seconds: float  # CPU/wall time of the simulation (both sides, verify included)
    next_round_frames: int
    next_round_bytes: int
    converged: bool


def protocol_case(
    name: str,
    corpus: Corpus,
    full: dict[Key, alert_pb2.SignedAlert],
    lagging_keys: set[Key],
    *,
    lagging_dials: bool,
    rtt: float,
) -> ProtocolCase:
    config = catchup.CatchupConfig()
    a = Side("A", dict(full), initiator=not lagging_dials, config=config)
    b = Side("B", {k: full[k] for k in lagging_keys}, initiator=lagging_dials, config=config)
    missing = [full[k] for k in full if k not in lagging_keys]
    pipe = Pipe(a, b, rtt)
    started = time.perf_counter()
    pipe.act("A", a.s.start(0.0))
    pipe.act("B", b.s.start(0.0))
    pipe.run(max_steps=100_000)
    seconds = time.perf_counter() - started
    stats = pipe.stats
    # The next round (the initiator's 30 s timer) must find the stores in sync.
    later = Pipe(a, b, rtt)
    later.step = pipe.step
    opener = a if a.initiator else b
    due = opener.s.next_deadline() or 0.0
    later.act(opener.name, opener.s.handle_timer(max(due, config.interval)))
    later.run(max_steps=pipe.step + 1000)
    return ProtocolCase(
        name=name,
        stats=stats,
        missing=len(missing),
        payload=sum(len(m.body) + len(m.signature) for m in missing),
        signed_bytes=sum(m.ByteSize() for m in missing),
        transferred=b.received + a.received,
        duplicates=a.duplicates + b.duplicates,
        seconds=seconds,
        next_round_frames=sum(later.stats.frames.values()),
        next_round_bytes=later.stats.total,
        converged=a.held.keys() == b.held.keys() == full.keys()
        and a.chains.vector() == b.chains.vector(),
    )


def scattered_missing(keys: set[Key], n: int, seed: int) -> set[Key]:
    """`n` alerts picked at random: a peer lacking them holds alerts above gaps."""
    return set(random.Random(seed).sample(sorted(keys), n))


def protocol_level(corpus: Corpus, args: argparse.Namespace) -> list[ProtocolCase]:
    full = corpus.items()
    keys = set(full)
    tail = {(o, s) for (o, s) in keys if s <= args.per_origin - args.missing}
    n_missing = len(keys) - len(tail)
    scattered = keys - scattered_missing(keys, n_missing, args.seed)
    cases = [
        protocol_case("identical stores", corpus, full, keys, lagging_dials=True, rtt=args.rtt),
        protocol_case(
            f"B lacks the last {args.missing}/origin, B dials",
            corpus,
            full,
            tail,
            lagging_dials=True,
            rtt=args.rtt,
        ),
        protocol_case(
            f"B lacks the last {args.missing}/origin, A dials",
            corpus,
            full,
            tail,
            lagging_dials=False,
            rtt=args.rtt,
        ),
    ]
    if args.scattered:
        cases.append(
            protocol_case(
                f"B lacks {n_missing} at random, B dials",
                corpus,
                full,
                scattered,
                lagging_dials=True,
                rtt=args.rtt,
            )
        )
    return cases


# --- (ii) real nodes ----------------------------------------------------------------------


class CountingProxy:
    """A loopback TCP relay that counts the bytes it carries in each direction."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.up = 0  # dialer -> target
        self.down = 0  # target -> dialer
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.address = ""
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        port = cluster.free_port()
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.address = f"127.0.0.1:{port}"
        return self.address

    def reset(self) -> None:
        self.up = self.down = self.connections = 0

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upward: bool
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if upward:
                    self.up += len(data)
                else:
                    self.down += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer, True), self._pump(up_reader, writer, False)
        )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3):
                    await self.server.wait_closed()


def set_connect(node: cluster.ClusterNode, names: list[str]) -> None:
    path = node.home / CONFIG_FILE
    lines = path.read_text().splitlines()
    out = [f"connect = {json.dumps(names)}" if ln.startswith("connect =") else ln for ln in lines]
    path.write_text("\n".join(out) + "\n")


@dataclass
class CatchupRun:
    """One lagging node restarted to dial A through the proxy, until its digest equals A's."""

    name: str
    missing: int = 0
    payload: int = 0  # len(body) + len(signature) of the missing alerts
    to_serving: float = 0.0
    to_converged: float = 0.0
    converged: bool = False
    bytes_up: int = 0  # lagging node -> A
    bytes_down: int = 0  # A -> lagging node
    caught_up: int = 0  # the lagging node's catchup_alerts_received
    served: int = 0  # A's catchup_alerts_served, delta
    gossip_copies: int = 0
    alerts: tuple[int, int] = (0, 0)
    warnings: list[str] = field(default_factory=list)


@dataclass
class NodeResult:
    ingest_alerts: int = 0
    ingest_seconds: float = 0.0
    not_accepted: int = 0
    runs: list[CatchupRun] = field(default_factory=list)
    sync_seconds: float = 0.0
    sync_up: int = 0
    sync_down: int = 0
    sync_in_sync: bool = False


async def ingest_all(address: str, alerts: list[alert_pb2.SignedAlert], in_flight: int) -> int:
    """Ingest in batches of 1,000 with `in_flight` calls outstanding; returns non-ACCEPTED."""
    batches = [alerts[i : i + INGEST_BATCH] for i in range(0, len(alerts), INGEST_BATCH)]
    bad = 0
    async with AlertClient(address) as client:
        queue = deque(batches)

        async def worker() -> None:
            nonlocal bad
            while queue:
                batch = queue.popleft()
                response = await client.ingest(batch, timeout=120)
                bad += sum(1 for r in response.results if r.outcome != ACCEPTED)

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return bad


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.1
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return False


async def node_stats(address: str) -> api.Stats | None:
    try:
        async with AlertClient(address) as client:
            return await client.stats(timeout=5)
    except Exception:
        return None


def missing_payload(every: list[alert_pb2.SignedAlert], held: list[alert_pb2.SignedAlert]) -> int:
    have = {x.signature for x in held}
    return sum(len(x.body) + len(x.signature) for x in every if x.signature not in have)


def point_at_proxy(node: cluster.ClusterNode, a: cluster.ClusterNode, proxy: str) -> None:
    """`node` dials A, and its roster gives A's peer address as the proxy."""
    roster = Roster.from_toml((node.home / "roster.toml").read_text())
    members = [Member(m.name, m.key, (proxy,)) if m.name == a.name else m for m in roster]
    (node.home / "roster.toml").write_text(Roster.of(members).to_toml())
    set_connect(node, [a.name])


async def catch_up(
    run: CatchupRun,
    node: cluster.ClusterNode,
    a: cluster.ClusterNode,
    proxy: CountingProxy,
    timeout: float,
) -> None:
    """Stop `node`, make it dial A through the proxy, start it and time its catch-up."""
    await asyncio.to_thread(cluster.stop, node)
    point_at_proxy(node, a, proxy.address)
    target = await node_stats(a.api)
    assert target is not None
    served_before = target.counters.get("catchup_alerts_served", 0)

    async def converged() -> bool:
        st = await node_stats(node.api)
        return st is not None and st.alerts == target.alerts and st.digest == target.digest

    proxy.reset()
    print(f"# {run.name}: restarts and catches up", file=sys.stderr)
    t0 = time.monotonic()
    proc = cluster.start(node)
    await asyncio.to_thread(cluster.wait_serving, node, proc, 60)
    run.to_serving = time.monotonic() - t0
    run.converged = await wait_for(converged, timeout, 0.05)
    run.to_converged = time.monotonic() - t0
    run.bytes_up, run.bytes_down = proxy.up, proxy.down
    mine, theirs = await node_stats(node.api), await node_stats(a.api)
    assert mine is not None and theirs is not None
    run.caught_up = mine.counters.get("catchup_alerts_received", 0)
    run.served = theirs.counters.get("catchup_alerts_served", 0) - served_before
    run.gossip_copies = sum(p.full_received for p in mine.peers)
    run.alerts = (theirs.alerts, mine.alerts)
    log = (node.home / "node.log").read_text().splitlines()
    run.warnings = [ln[:200] for ln in log if " WARNING " in ln or " ERROR " in ln][-5:]


async def real_nodes(
    corpus: Corpus, directory: Path, args: argparse.Namespace, result: NodeResult
) -> None:
    n = 3 if args.scattered_nodes else 2
    nodes = cluster.create(directory, n, seed=args.seed)
    a, b = nodes[0], nodes[1]
    authors = [Member(f"author{i}", ident.public_key) for i, ident in enumerate(corpus.identities)]
    roster = Roster.from_toml((a.home / "roster.toml").read_text())
    roster = Roster.of([*roster, *authors])
    for node in nodes:
        (node.home / "roster.toml").write_text(roster.to_toml())
        set_connect(node, [])  # nobody dials: the nodes do not talk while being filled
    # Interleaved by origin, as alerts arrive from many members.
    keep = args.per_origin - args.missing
    origins = [ident.public_key for ident in corpus.identities]
    every_keyed = [((o, k + 1), chain[k]) for k in range(args.per_origin)
                   for o, chain in zip(origins, corpus.chains, strict=True)]  # fmt: skip
    every = [x for _, x in every_keyed]
    lagging = [x for (_, seq), x in every_keyed if seq <= keep]
    loads = [every, lagging]
    if args.scattered_nodes:
        # The same number missing, at random (the same ones as in part (i)): this node
        # holds alerts above gaps, as after gossip delivered out of order.
        gone = scattered_missing({k for k, _ in every_keyed}, len(every) - len(lagging), args.seed)
        loads.append([x for k, x in every_keyed if k not in gone])
    proxy = CountingProxy(a.peer)
    try:
        procs = {x.name: cluster.start(x) for x in nodes}
        for x in nodes:
            await asyncio.to_thread(cluster.wait_serving, x, procs[x.name], 60)
        sizes = " and ".join(
            f"{len(load):,} into {x.name}" for x, load in zip(nodes, loads, strict=True)
        )
        print(f"# ingesting {sizes}", file=sys.stderr)
        started = time.monotonic()
        bad = await asyncio.gather(
            *(ingest_all(x.api, load, args.in_flight) for x, load in zip(nodes, loads, strict=True))
        )
        result.ingest_seconds = time.monotonic() - started
        result.ingest_alerts = sum(len(load) for load in loads)
        result.not_accepted = sum(bad)
        await proxy.start()

        run = CatchupRun(f"{b.name} (lacks the last {args.missing}/origin)")
        run.missing = len(every) - len(lagging)
        run.payload = missing_payload(every, lagging)
        result.runs.append(run)
        await catch_up(run, b, a, proxy, args.timeout)

        # Identical stores: a whole new session (TCP, HTTP/2, handshake, one round).
        await asyncio.to_thread(cluster.stop, b)
        await asyncio.sleep(0.2)
        proxy.reset()
        t0 = time.monotonic()
        proc = cluster.start(b)
        await asyncio.to_thread(cluster.wait_serving, b, proc, 60)

        async def connected() -> bool:
            st = await node_stats(b.api)
            return st is not None and any(p.connected for p in st.peers)

        await wait_for(connected, 30, 0.05)
        await asyncio.sleep(args.sync_window)
        result.sync_seconds = time.monotonic() - t0
        result.sync_up, result.sync_down = proxy.up, proxy.down
        sb, sa = await node_stats(b.api), await node_stats(a.api)
        result.sync_in_sync = (
            sb is not None
            and sa is not None
            and sb.digest == sa.digest
            and sb.counters.get("catchup_alerts_received", 0) == 0
        )
        await asyncio.to_thread(cluster.stop, b)

        if args.scattered_nodes:
            c = nodes[2]
            run = CatchupRun(f"{c.name} (lacks {len(every) - len(loads[2]):,} at random)")
            run.missing = len(every) - len(loads[2])
            run.payload = missing_payload(every, loads[2])
            result.runs.append(run)
            await catch_up(run, c, a, proxy, args.timeout)
    finally:
        await proxy.close()
        for x in nodes:
            await asyncio.to_thread(cluster.stop, x)


# --- report -------------------------------------------------------------------------------


def kb(n: float) -> str:
    return f"{n:,.0f}"


def report(
    command: str,
    corpus: Corpus,
    cases: list[ProtocolCase],
    node: NodeResult | None,
    args: argparse.Namespace,
    timings: dict[str, float],
) -> str:
    sizes = [len(s.body) for c in corpus.chains for s in c]
    n = len(sizes)
    out = [f"Command: `{command}`\n"]
    out.append(
        f"Corpus: {n:,} alerts from {len(corpus.chains)} origins, signed bodies mean "
        f"{statistics.fmean(sizes):.0f} B (min {min(sizes)}, max {max(sizes)}), 64-byte "
        f"signatures; built in {timings['corpus']:.1f} s. Total run {timings['total']:.0f} s.\n"
    )
    out.append(
        "(i) Protocol level: real PeerFrames over an in-memory pipe. Bytes = Σ ByteSize() "
        f"+ {GRPC_PREFIX} B gRPC prefix per frame; round trips in a latency-bound model.\n"
    )
    out.append(
        "| case | frames (digest/vector/ranges/alerts) | bytes | missing | missing signed "
        "payload B | bytes / payload | overhead B | round trips | alerts sent (dups) | "
        "next round | sim s |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for c in cases:
        f = c.stats.frames
        frames = f"{sum(f.values())} ({f['digest']}/{f['vector']}/{f['ranges']}/{f['alerts']})"
        ratio = f"{c.stats.total / c.payload:.4f}" if c.payload else "-"
        overhead = c.stats.total - c.payload
        nxt = f"{c.next_round_frames} frames, {c.next_round_bytes} B"
        out.append(
            f"| {c.name} | {frames} | {kb(c.stats.total)} | {c.missing:,} | {kb(c.payload)} | "
            f"{ratio} | {kb(overhead)} | {c.stats.steps / 2:g} | {c.transferred:,} "
            f"({c.duplicates}) | {nxt} | {c.seconds:.2f} |"
        )
    out.append("")
    out.append("Where the bytes go (Σ ByteSize() per frame kind, then the gRPC prefixes):\n")
    out.append("| case | digest | vector | ranges | alerts | gRPC prefixes | converged |")
    out.append("|---|---|---|---|---|---|---|")
    for c in cases:
        p = c.stats.payload
        out.append(
            f"| {c.name} | {p['digest']} | {kb(p['vector'])} | {kb(p['ranges'])} | "
            f"{kb(p['alerts'])} | {GRPC_PREFIX * sum(c.stats.frames.values()):,} | "
            f"{'yes' if c.converged else 'NO'} |"
        )
    out.append("")
    if node is not None:
        rate = node.ingest_alerts / node.ingest_seconds if node.ingest_seconds else 0.0
        out.append(
            f"(ii) Real nodes: A (node1) holds all {n:,}; each lagging node restarts and "
            f"dials A through a byte-counting TCP proxy. Filling the stores: {rate:,.0f} "
            f"alerts/s through Ingest ({node.ingest_alerts:,} alerts, 1,000 per call, "
            f"{node.ingest_seconds:.1f} s, {node.not_accepted} not accepted).\n"
        )
        out.append(
            "| lagging node | missing | start → serving | start → converged | caught up | "
            "A served | gossip copies | TCP bytes to A / from A | (from A / both ways) ÷ payload | "
            "alerts A / lagging |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for run in node.runs:
            payload = run.payload
            both = run.bytes_up + run.bytes_down
            ratio = f"{run.bytes_down / payload:.3f} / {both / payload:.3f}" if payload else "-"
            timed_out = "" if run.converged else " (NOT converged)"
            out.append(
                f"| {run.name} | {run.missing:,} | {run.to_serving:.2f} s | "
                f"{run.to_converged:.2f} s{timed_out} | {run.caught_up:,} | {run.served:,} | "
                f"{run.gossip_copies} | {kb(run.bytes_up)} / {kb(run.bytes_down)} | {ratio} | "
                f"{run.alerts[0]:,} / {run.alerts[1]:,} |"
            )
        out.append("")
        out.append(
            f"Identical stores, node2 restarted again: the whole new session over "
            f"{node.sync_seconds:.1f} s (TCP + HTTP/2 set-up, handshake, one catch-up round) "
            f"carried {kb(node.sync_up)} B to A and {kb(node.sync_down)} B from A; "
            f"in sync without fetching: {'yes' if node.sync_in_sync else 'NO'}.\n"
        )
        for run in node.runs:
            if run.warnings:
                out.append(f"Warnings in {run.name}'s log:\n")
                out += [f"    {ln}" for ln in run.warnings]
                out.append("")
    return "\n".join(out)


async def main_async(args: argparse.Namespace) -> str:
    begin = time.monotonic()
    timings: dict[str, float] = {}
    print(f"# signing {args.origins * args.per_origin} alerts", file=sys.stderr)
    corpus = build_corpus(args.origins, args.per_origin, args.body, args.seed)
    timings["corpus"] = time.monotonic() - begin
    print("# (i) protocol level", file=sys.stderr)
    cases = protocol_level(corpus, args)
    node: NodeResult | None = None
    if args.nodes:
        base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="alertmesh-catchup-"))
        node = NodeResult()
        try:
            async with asyncio.timeout(args.max_seconds - (time.monotonic() - begin)):
                await real_nodes(corpus, base / "pair", args, node)
        finally:
            if not args.dir and not args.keep:
                shutil.rmtree(base, ignore_errors=True)
    timings["total"] = time.monotonic() - begin
    command = shlex.join([".venv/bin/python", "bench/catchup_bench.py", *sys.argv[1:]])
    return report(command, corpus, cases, node, args, timings)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--origins", type=int, default=50)
    p.add_argument("--per-origin", type=int, default=2000)
    p.add_argument("--missing", type=int, default=200, help="alerts per origin B lacks")
    p.add_argument("--body", type=int, default=600, help="target signed body size, bytes")
    p.add_argument("--rtt", type=float, default=0.1, help="model RTT for the session timers")
    p.add_argument("--no-scattered", dest="scattered", action="store_false")
    p.add_argument("--no-nodes", dest="nodes", action="store_false", help="skip part (ii)")
    p.add_argument(
        "--no-scattered-nodes",
        dest="scattered_nodes",
        action="store_false",
        help="skip the third node that lacks alerts at random in part (ii)",
    )
    p.add_argument("--in-flight", type=int, default=2, help="Ingest calls outstanding per node")
    p.add_argument("--sync-window", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=120.0, help="bound on the convergence wait")
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dir")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    if not 0 < args.missing < args.per_origin:
        p.error("--missing must be between 1 and --per-origin - 1")
    print(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
