"""Single-node ingest benchmark: Ed25519 verify rate, Ingest, CheckIndicators, memory.

    .venv/bin/python bench/node_bench.py [--alerts N] [--check-store 100000]

Everything is measured in one run, against one real node process
(`python -m node.cli run --home H --listen 127.0.0.1:0`, i.e. `alertmesh run`), so the
ratios between the rows are meaningful on a noisy machine even when the absolute
figures are not:

(a) pynacl Ed25519 verify rate over the same ~600-byte alert bodies the node ingests,
    on 1 thread and on 2 threads (libsodium releases the GIL). Measured before and
    after (b); the ratio in (b) uses the mean of the single-thread runs.
(b) end-to-end Ingest: pre-signed alerts from several member keys (realistic bodies:
    ~600 bytes, 2-4 indicators of mixed types, normalised as the author's node does)
    sent as pre-serialised IngestRequests of --batch alerts, with 1 request in flight
    and with --in-flight requests in flight; every result must be ACCEPTED.
(c) the store is then filled to --check-store alerts (the same way), and
    CheckIndicators is called --check-calls times with --check-values values each
    (~1% flagged values respelled, 99% unflagged, mixed types and spellings).
    Reported: client-observed latency p50/p99, per-value throughput, and, after the
    node has stopped, the server-side time of the same calls in-process (the
    AlertService handler on AlertNode + SqliteStore over the node's own database).
(d) the node's VmRSS/VmHWM from /proc/PID/status with the store loaded, and the
    database size (alerts.db plus its WAL).

`--profile` also runs the ingest path in-process under cProfile (AlertNode +
SqliteStore + Verifier, no gRPC) and prints the top functions. Only 127.0.0.1 is
used; every loop is bounded in count and by --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import io
import os
import pstats
import queue
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import nacl.signing

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from node._pb.alertmesh.v1 import alert_pb2  # noqa: E402
from node._pb.alertmesh.v1 import alerts_service_pb2 as api  # noqa: E402
from node.core import indicators  # noqa: E402
from node.core.alerts import alert_id  # noqa: E402
from node.core.roster import Member, Roster  # noqa: E402
from node.crypto import Identity, sign_alert  # noqa: E402
from node.crypto.identity import ALERT_DOMAIN  # noqa: E402

INGEST = "/alertmesh.v1.AlertService/Ingest"
CHECK = "/alertmesh.v1.AlertService/CheckIndicators"
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]
STARTUP_TIMEOUT_S = 60.0
ACCEPTED = api.INGEST_OUTCOME_ACCEPTED
MAX_VERIFY_COUNT = 10_000_000

# --- realistic alert content ------------------------------------------------------------

WORDS = (
    "wallet drainer phishing kit airdrop claim fake support ticket seed phrase approval "
    "exploit bridge contract victim funds moved mixer exchange deposit address reported "
    "impersonating official domain registered yesterday telegram group pig butchering "
    "investment platform withdrawal blocked fee demanded private key leaked malicious "
    "browser extension signature request permit unlimited allowance laundering chain hop "
    "stolen tokens swapped stablecoin frozen law enforcement notified customers targeted "
    "campaign lure website cloned login page credentials harvested observed first seen"
).split()
TLDS = ("com", "io", "xyz", "app", "net", "org", "co", "finance", "online", "site")
EVM_CHAINS = ("eip155:1", "eip155:56", "eip155:137", "eip155:42161", "eip155:8453")
BTC = "bip122:000000000019d6689c085ae165831e93"
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
CATEGORIES = [v for v in alert_pb2.Category.values() if v]
KINDS = ("evm", "btc", "domain", "url", "tx", "ip", "email", "handle")
KIND_WEIGHTS = (30, 8, 20, 15, 10, 7, 6, 4)
TYPE_OF = {
    "evm": indicators.ADDRESS,
    "btc": indicators.ADDRESS,
    "tx": indicators.TX,
    "domain": indicators.DOMAIN,
    "url": indicators.URL,
    "ip": indicators.IP,
    "email": indicators.EMAIL,
    "handle": indicators.HANDLE,
}


def base58check(payload: bytes) -> str:
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = BASE58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= gen[i]
    return chk


def segwit(hrp: str, version: int, program: bytes) -> str:
    acc = bits = 0
    data = [version]
    for b in program:
        acc = (acc << 8) | b
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    const = 1 if version == 0 else 0x2BC830A3
    pm = _polymod(expanded + data + [0] * 6) ^ const
    checksum = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32[d] for d in data + checksum)


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def random_domain(rng: random.Random) -> str:
    return f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{rng.randrange(16**6):06x}.{rng.choice(TLDS)}"


def random_value(rng: random.Random, kind: str) -> str:
    """A fresh value of `kind`, spelled as an author's node stores it (normalised)."""
    if kind == "evm":
        return f"{rng.choice(EVM_CHAINS)}:0x{rng.randbytes(20).hex()}"
    if kind == "btc":
        if rng.random() < 0.5:
            return f"{BTC}:{base58check(bytes([0]) + rng.randbytes(20))}"
        return f"{BTC}:{segwit('bc', 0, rng.randbytes(20))}"
    if kind == "tx":
        return f"{rng.choice(EVM_CHAINS)}:0x{rng.randbytes(32).hex()}"
    if kind == "domain":
        return random_domain(rng)
    if kind == "url":
        path = "/".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 4)))
        return f"https://{random_domain(rng)}/{path}?ref={rng.randrange(10**6)}"
    if kind == "ip":
        return f"{rng.randrange(11, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if kind == "email":
        return f"{rng.choice(WORDS)}.{rng.choice(WORDS)}{rng.randrange(1000)}@{random_domain(rng)}"
    return f"telegram:{rng.choice(WORDS)}_{rng.choice(WORDS)}{rng.randrange(10**5)}"


def respell(rng: random.Random, kind: str, value: str) -> str:
    """Another spelling of a stored value that a lookup must still match."""
    if kind == "evm":
        account = value.rpartition(":")[2]
        return rng.choice(["0x" + account[2:].upper(), value.upper().replace("0X", "0x"), account])
    if kind == "btc":
        account = value.rpartition(":")[2]
        return account.upper() if account.startswith("bc1") else f"bitcoin:{account}"
    if kind == "tx":
        return "0x" + value.rpartition(":")[2][2:].upper()
    if kind == "domain":
        return rng.choice(
            [value.upper() + ".", f"https://Login.{value.title()}/claim", value.replace(".", "[.]")]
        )
    if kind == "url":
        scheme, _, rest = value.partition("://")
        host, _, path = rest.partition("/")
        return f"HTTPS://{host.upper()}:443/{path}"
    if kind == "ip":
        return value.replace(".", "[.]")
    if kind == "email":
        return "mailto:" + value.upper()
    return "Telegram:@" + value.partition(":")[2].upper()


def unflagged(rng: random.Random) -> str:
    """A value nobody flagged, in a random kind and a random (valid) spelling."""
    kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
    value = random_value(rng, kind)
    if rng.random() < 0.5:
        return respell(rng, kind, value)
    return f"{indicators.type_name(TYPE_OF[kind])}:{value}"


class AuthorChain:
    """A member key and its hash chain, like tests/factory.py's Author."""

    def __init__(self, name: str, seed: bytes) -> None:
        self.name = name
        self.identity = Identity(seed)
        self.seq = 0
        self.head = b""


@dataclass
class Corpus:
    authors: list[AuthorChain]
    signed: list[alert_pb2.SignedAlert]  # in ingest order (authors interleaved)
    flagged: list[list[tuple[str, str]]]  # per alert: (kind, normalised value) of each indicator
    body_sizes: list[int] = field(default_factory=list)


def make_alert(
    rng: random.Random, author: AuthorChain, now_ms: int, target: int
) -> tuple[alert_pb2.SignedAlert, list[tuple[str, str]]]:
    alert = alert_pb2.Alert(
        origin=author.identity.public_key,
        seq=author.seq + 1,
        prev=author.head,
        created_at_ms=now_ms - rng.randrange(60_000),
        category=rng.choice(CATEGORIES),
        severity=rng.randrange(2, 6),
        confidence=rng.randrange(40, 101),
        title=words(rng, rng.randrange(4, 9))[:120].capitalize(),
        tlp=rng.choice([alert_pb2.TLP_CLEAR, alert_pb2.TLP_GREEN, alert_pb2.TLP_AMBER]),
    )
    flagged = []
    if rng.random() < 0.3:
        alert.expires_at_ms = alert.created_at_ms + 90 * 86_400_000
    for kind in rng.choices(KINDS, KIND_WEIGHTS, k=rng.randrange(2, 5)):
        # The author's node normalises before signing (AlertNode._publish_new).
        value = indicators.normalize(TYPE_OF[kind], random_value(rng, kind), strict=True).value
        alert.indicators.add(type=TYPE_OF[kind], value=value)  # type: ignore[arg-type]
        flagged.append((kind, value))
    alert.references.append(f"https://reports.example/{rng.randrange(10**9)}")
    size = alert.ByteSize()
    # description: tag (1 byte) + length (2 bytes once >= 128) + text
    alert.description = words(rng, 200)[: max(0, target - size - (3 if target - size > 130 else 2))]
    body = alert.SerializeToString(deterministic=True)
    author.seq, author.head = alert.seq, alert_id(body)
    signed = alert_pb2.SignedAlert(body=body, signature=sign_alert(author.identity, body))
    return signed, flagged


def build_corpus(total: int, n_authors: int, body_bytes: int, seed: int) -> Corpus:
    rng = random.Random(seed)
    authors = [
        AuthorChain(f"bench-author-{i + 1}", hashlib.sha256(b"%d/%d" % (seed, i)).digest())
        for i in range(n_authors)
    ]
    now_ms = time.time_ns() // 1_000_000
    flagged = []
    signed = []
    sizes = []
    for i in range(total):
        s, values = make_alert(rng, authors[i % n_authors], now_ms, body_bytes)
        signed.append(s)
        flagged.append(values)
        sizes.append(len(s.body))
    return Corpus(authors, signed, flagged, sizes)


# --- (a) raw verify rate ------------------------------------------------------------------


def verify_rate(items: Sequence[tuple[bytes, bytes, bytes]], threads: int, seconds: float) -> float:
    """Alerts/s of pynacl VerifyKey.verify over ALERT_DOMAIN + body, on `threads` threads."""
    keys = {pk: nacl.signing.VerifyKey(pk) for pk, _, _ in items}
    work = [(keys[pk], ALERT_DOMAIN + body, sig) for pk, body, sig in items]

    def run(part: Sequence[tuple[nacl.signing.VerifyKey, bytes, bytes]], deadline: float) -> int:
        done = 0
        while done < MAX_VERIFY_COUNT:
            for vk, msg, sig in part:
                vk.verify(msg, sig)
            done += len(part)
            if time.perf_counter() > deadline:
                break
        return done

    step = -(-len(work) // threads)
    parts = [work[i : i + step] for i in range(0, len(work), step)]
    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        futures = [pool.submit(run, p, start + seconds) for p in parts]
        done = sum(f.result() for f in futures)
        elapsed = time.perf_counter() - start
    return done / elapsed


# --- the node process -------------------------------------------------------------------


class Node:
    """`alertmesh run --home HOME --listen 127.0.0.1:0` (as tests/procs.py NodeProcess)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.address = ""
        self.lines: queue.Queue[str] = queue.Queue()
        self.proc: subprocess.Popen[str] | None = None
        self.argv = [sys.executable, "-m", "node.cli", "run", "--home", str(home)]
        self.argv += ["--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0"]

    def start(self) -> Node:
        log = open(self.home / "node.log", "a")  # noqa: SIM115 - closed by the pump
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                self.lines.put(line.rstrip("\n"))
            log.close()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"node exited: {(self.home / 'node.log').read_text()}")
                continue
            if line.startswith("listening on "):
                self.address = line.removeprefix("listening on ")
                return self
        raise RuntimeError("node did not start in time")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def status(self) -> dict[str, int]:
        """VmRSS / VmHWM (bytes) from /proc/PID/status."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(rest.split()[0]) * 1024
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time of the node process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def init_home(home: Path, authors: Sequence[AuthorChain]) -> None:
    subprocess.run(
        [sys.executable, "-m", "node.cli", "init", "--home", str(home), "--name", "bench"],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    path = home / "roster.toml"
    roster = Roster.from_toml(path.read_text())
    extra = [Member(a.name, a.identity.public_key) for a in authors]
    path.write_text(Roster.of([*roster, *extra]).to_toml())


# --- (b) ingest ---------------------------------------------------------------------------


@dataclass
class IngestRun:
    alerts: int = 0
    accepted: int = 0
    seconds: float = 0.0
    node_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)
    done: list[range] = field(default_factory=list)  # alert indices (within the phase) stored

    @property
    def rate(self) -> float:
        return self.alerts / self.seconds if self.seconds else 0.0


async def ingest(
    channel: grpc.aio.Channel,
    requests: Sequence[bytes],
    sizes: Sequence[int],
    batch: int,
    in_flight: int,
    deadline: float,
    node: Node,
) -> IngestRun:
    call = channel.unary_unary(
        INGEST, request_serializer=None, response_deserializer=api.IngestResponse.FromString
    )
    run = IngestRun()
    pending = iter(range(len(requests)))
    cpu0 = node.cpu_seconds()

    async def worker() -> None:
        for i in pending:
            if time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            response = await call(requests[i], timeout=120)
            run.latencies.append(time.perf_counter() - t0)
            run.alerts += sizes[i]
            run.done.append(range(i * batch, i * batch + sizes[i]))
            run.accepted += sum(1 for r in response.results if r.outcome == ACCEPTED)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    run.seconds = time.perf_counter() - start
    run.node_cpu = node.cpu_seconds() - cpu0
    return run


def requests_of(signed: Sequence[alert_pb2.SignedAlert], batch: int) -> list[bytes]:
    return [
        api.IngestRequest(alerts=signed[i : i + batch]).SerializeToString()
        for i in range(0, len(signed), batch)
    ]


# --- (c) checks ---------------------------------------------------------------------------


def check_requests(
    rng: random.Random, flagged: Sequence[tuple[str, str]], calls: int, values: int, hit: float
) -> list[tuple[list[str], int]]:
    """(values, number of respelled flagged values among them) per call."""
    out = []
    for _ in range(calls):
        hits = max(1, round(values * hit))
        batch = [respell(rng, *rng.choice(flagged)) for _ in range(hits)]
        batch += [unflagged(rng) for _ in range(values - hits)]
        rng.shuffle(batch)
        out.append((batch, hits))
    return out


@dataclass
class CheckRun:
    latencies: list[float]
    values: int
    matched_values: int
    expected_hits: int
    seconds: float

    @property
    def per_value_rate(self) -> float:
        return self.values / self.seconds


async def check(
    channel: grpc.aio.Channel,
    batches: Sequence[tuple[list[str], int]],
    in_flight: int,
    deadline: float,
) -> CheckRun:
    call = channel.unary_unary(
        CHECK,
        request_serializer=api.CheckIndicatorsRequest.SerializeToString,
        response_deserializer=api.CheckIndicatorsResponse.FromString,
    )
    run = CheckRun([], 0, 0, 0, 0.0)
    pending = iter(batches)

    async def worker() -> None:
        for values, hits in pending:
            if time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            response = await call(api.CheckIndicatorsRequest(values=values), timeout=60)
            run.latencies.append(time.perf_counter() - t0)
            run.values += len(values)
            run.expected_hits += hits
            run.matched_values += sum(1 for r in response.results if r.matches)
            errors = [r.error for r in response.results if r.error]
            if errors:
                raise RuntimeError(f"CheckIndicators rejected values: {errors[:3]}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    run.seconds = time.perf_counter() - start
    return run


async def server_side_check(
    home: Path, batches: Sequence[tuple[list[str], int]], deadline: float
) -> tuple[list[float], list[float]]:
    """In-process, over the node's own database: the time AlertNode.check takes, and the
    time the whole CheckIndicators handler takes (check + building the response)."""
    from node.app.config import Config
    from node.app.service import AlertNode
    from node.app.verify import Verifier
    from node.core.limits import DEFAULT_LIMITS
    from node.rpc.alert_service import AlertService
    from node.store.sqlite import SqliteStore

    config = Config.load(home)
    verifier = Verifier(DEFAULT_LIMITS)
    try:
        async with SqliteStore(config.store_path) as store:
            node = AlertNode(
                identity=config.identity(),
                roster=config.roster(),
                store=store,
                verifier=verifier,
                limits=DEFAULT_LIMITS,
            )
            service = AlertService(node)
            core: list[float] = []
            handler: list[float] = []
            for values, _ in batches:
                if time.perf_counter() > deadline:
                    break
                t0 = time.perf_counter()
                await node.check(values, include_expired=False)
                core.append(time.perf_counter() - t0)
                request = api.CheckIndicatorsRequest(values=values)
                t0 = time.perf_counter()
                response = await service.CheckIndicators(request, None)  # type: ignore[arg-type]
                response.SerializeToString()
                handler.append(time.perf_counter() - t0)
            return core, handler
    finally:
        verifier.close()


# --- profiling the ingest path in-process --------------------------------------------


async def profile_ingest(
    home: Path, signed: Sequence[alert_pb2.SignedAlert], batch: int, in_flight: int
) -> tuple[float, str]:
    """Ingest `signed` into a fresh SqliteStore through AlertNode under cProfile."""
    from node.app.service import AlertNode
    from node.app.verify import Verifier
    from node.core.limits import DEFAULT_LIMITS
    from node.rpc.alert_service import AlertService
    from node.store.sqlite import SqliteStore

    from node.app.config import Config

    config = Config.load(home)
    db = home / "profile.db"
    verifier = Verifier(DEFAULT_LIMITS)
    requests = [api.IngestRequest.FromString(r) for r in requests_of(signed, batch)]
    profiler = cProfile.Profile()
    try:
        async with SqliteStore(db) as store:
            node = AlertNode(
                identity=config.identity(),
                roster=config.roster(),
                store=store,
                verifier=verifier,
                limits=DEFAULT_LIMITS,
            )
            service = AlertService(node)
            pending = iter(requests)

            async def worker() -> None:
                for request in pending:
                    response = await service.Ingest(request, None)  # type: ignore[arg-type]
                    response.SerializeToString()

            start = time.perf_counter()
            profiler.enable()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            profiler.disable()
            elapsed = time.perf_counter() - start
    finally:
        verifier.close()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    return len(signed) / elapsed, out.getvalue()


# --- report ---------------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def command_line(argv: Sequence[str]) -> str:
    return ".venv/bin/python bench/node_bench.py" + "".join(f" {shlex.quote(a)}" for a in argv)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--alerts", type=int, default=20_000, help="alerts per ingest measurement (b)")
    p.add_argument("--check-store", type=int, default=100_000, help="store size for (c) and (d)")
    p.add_argument("--batch", type=int, default=500, help="alerts per Ingest request")
    p.add_argument("--in-flight", type=int, default=4, help="concurrent Ingest requests")
    p.add_argument("--authors", type=int, default=8, help="member keys authoring the alerts")
    p.add_argument("--body-bytes", type=int, default=600, help="target alert body size")
    p.add_argument("--verify-seconds", type=float, default=2.0, help="per verify measurement")
    p.add_argument("--check-calls", type=int, default=50)
    p.add_argument("--check-values", type=int, default=1000)
    p.add_argument("--check-flagged", type=float, default=0.01, help="share of flagged values")
    p.add_argument("--max-seconds", type=float, default=600.0, help="time bound of each phase")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", action="store_true", help="also cProfile ingest in-process")
    p.add_argument("--keep", action="store_true", help="keep the node's home directory")
    args = p.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    if args.alerts < args.batch or args.check_store < 1:
        p.error("--alerts must be at least --batch, --check-store at least 1")

    total = max(args.check_store, 2 * args.alerts)
    say(f"# signing {total} alerts from {args.authors} authors ...")
    t0 = time.perf_counter()
    corpus = build_corpus(total, args.authors, args.body_bytes, args.seed)
    say(f"#   {time.perf_counter() - t0:.1f} s")
    signed = corpus.signed
    home = Path(tempfile.mkdtemp(prefix="alertmesh-bench-"))
    node: Node | None = None
    rows: list[tuple[str, str]] = []
    notes: list[str] = []
    try:
        init_home(home, corpus.authors)
        sample = [
            (alert_pb2.Alert.FromString(s.body).origin, s.body, s.signature)
            for s in signed[: min(len(signed), 20_000)]
        ]

        def verify_all(tag: str) -> tuple[float, float]:
            one = verify_rate(sample, 1, args.verify_seconds)
            two = verify_rate(sample, 2, args.verify_seconds)
            say(f"# verify {tag}: 1 thread {one:,.0f}/s, 2 threads {two:,.0f}/s")
            return one, two

        node = Node(home).start()
        say(f"# node pid {node.pid} on {node.address}")
        v1a, v2a = verify_all("before")
        # Requests are serialised before the clock starts; the client only sends bytes.
        ingest_1 = signed[: args.alerts]
        ingest_n = signed[args.alerts : 2 * args.alerts]
        fill = signed[2 * args.alerts : args.check_store]
        req_1 = requests_of(ingest_1, args.batch)
        req_n = requests_of(ingest_n, args.batch)
        req_f = requests_of(fill, args.batch)

        def sizes(signed_part: Sequence[object]) -> list[int]:
            n = len(signed_part)
            return [min(args.batch, n - i) for i in range(0, n, args.batch)]

        async def drive() -> dict[str, Any]:
            out: dict[str, Any] = {}
            async with grpc.aio.insecure_channel(node.address, options=CHANNEL_OPTIONS) as ch:
                await asyncio.wait_for(ch.channel_ready(), 30)
                end = time.perf_counter() + args.max_seconds
                out["one"] = await ingest(ch, req_1, sizes(ingest_1), args.batch, 1, end, node)
                say(f"# ingest 1 in flight: {out['one'].rate:,.0f}/s")
                end = time.perf_counter() + args.max_seconds
                out["many"] = await ingest(
                    ch, req_n, sizes(ingest_n), args.batch, args.in_flight, end, node
                )
                say(f"# ingest {args.in_flight} in flight: {out['many'].rate:,.0f}/s")
                out["verify_after"] = await asyncio.to_thread(verify_all, "after")
                end = time.perf_counter() + args.max_seconds
                out["fill"] = await ingest(
                    ch, req_f, sizes(fill), args.batch, args.in_flight, end, node
                )
                say(f"# fill: {out['fill'].rate:,.0f}/s")
                stats = await ch.unary_unary(
                    "/alertmesh.v1.AlertService/GetStats",
                    request_serializer=api.GetStatsRequest.SerializeToString,
                    response_deserializer=api.Stats.FromString,
                )(api.GetStatsRequest(), timeout=30)
                out["stored"] = stats.alerts
                out["mem_loaded"] = node.status()
                rng = random.Random(args.seed + 1)
                # every indicator of every alert the node accepted
                stored_flagged = [
                    value
                    for phase, offset in (
                        ("one", 0),
                        ("many", args.alerts),
                        ("fill", 2 * args.alerts),
                    )
                    for part in out[phase].done
                    for i in part
                    for value in corpus.flagged[offset + i]
                ]
                batches = check_requests(
                    rng, stored_flagged, args.check_calls, args.check_values, args.check_flagged
                )
                out["batches"] = batches
                # warm-up call (not counted), then sequential, then concurrent
                await check(ch, batches[:1], 1, time.perf_counter() + 60)
                end = time.perf_counter() + args.max_seconds
                out["check1"] = await check(ch, batches, 1, end)
                end = time.perf_counter() + args.max_seconds
                out["checkn"] = await check(ch, batches, args.in_flight, end)
                out["mem_after"] = node.status()
            return out

        res = asyncio.run(drive())
        node.stop()
        db_bytes = sum(f.stat().st_size for f in home.glob("alerts.db*"))
        core, handler = asyncio.run(
            server_side_check(home, res["batches"], time.perf_counter() + args.max_seconds)
        )

        v1b, v2b = res["verify_after"]
        v1 = (v1a + v1b) / 2
        v2 = (v2a + v2b) / 2
        one: IngestRun = res["one"]
        many: IngestRun = res["many"]
        fill_run: IngestRun = res["fill"]
        c1: CheckRun = res["check1"]
        cn: CheckRun = res["checkn"]
        for name, r in (("one", one), ("many", many), ("fill", fill_run)):
            if r.accepted != r.alerts:
                notes.append(f"ingest {name}: only {r.accepted} of {r.alerts} accepted")
        body = statistics.mean(corpus.body_sizes)
        inds = sum(map(len, corpus.flagged)) / len(signed)
        rows += [
            (
                "(a) Ed25519 verify, pynacl, 1 thread",
                f"{v1:,.0f} alerts/s (before {v1a:,.0f}, after {v1b:,.0f})",
            ),
            (
                "(a) Ed25519 verify, pynacl, 2 threads",
                f"{v2:,.0f} alerts/s ({v2 / v1:.2f}× 1 thread)",
            ),
            (
                f"(b) Ingest, {args.in_flight} requests in flight",
                f"{many.rate:,.0f} alerts/s = **{many.rate / v1:.2f}×** (a) 1 thread"
                f" (node CPU {many.node_cpu / many.seconds:.0%} of one core)",
            ),
            (
                "(b) Ingest, 1 request in flight",
                f"{one.rate:,.0f} alerts/s = {one.rate / v1:.2f}× (a) 1 thread;"
                f" {args.batch}-alert request p50 {pct(one.latencies, 50) * 1e3:.0f} ms",
            ),
            (
                f"(b) filling the store to {res['stored']:,} alerts",
                f"{fill_run.rate:,.0f} alerts/s ({args.in_flight} in flight, {fill_run.alerts:,} alerts)",
            ),
            (
                f"(c) CheckIndicators, {args.check_values} values, client latency",
                f"p50 {pct(c1.latencies, 50) * 1e3:.1f} ms, p99 {pct(c1.latencies, 99) * 1e3:.1f} ms"
                f" ({len(c1.latencies)} calls, 1 in flight)",
            ),
            (
                "(c) … server time in-process (handler / AlertNode.check)",
                f"p50 {pct(handler, 50) * 1e3:.1f} / {pct(core, 50) * 1e3:.1f} ms,"
                f" p99 {pct(handler, 99) * 1e3:.1f} / {pct(core, 99) * 1e3:.1f} ms",
            ),
            (
                "(c) lookups per second",
                f"{c1.per_value_rate:,.0f} values/s (1 in flight);"
                f" {cn.per_value_rate:,.0f} values/s ({args.in_flight} in flight)",
            ),
            (
                "(c) values matched / flagged values asked",
                f"{c1.matched_values} / {c1.expected_hits}",
            ),
            (
                f"(d) node RSS with {res['stored']:,} alerts",
                f"{mib(res['mem_loaded']['VmRSS'])} after ingest, {mib(res['mem_after']['VmRSS'])}"
                f" after checks (peak {mib(res['mem_after']['VmHWM'])})",
            ),
            (
                "(d) database size (alerts.db + WAL)",
                f"{mib(db_bytes)} ({db_bytes / res['stored']:,.0f} B/alert)",
            ),
        ]
        if c1.matched_values < c1.expected_hits:
            notes.append("some flagged values were not matched")

        print(
            f"\n{len(signed):,} pre-signed alerts from {args.authors} authors, body {body:.0f} B mean,"
            f" {inds:.1f} indicators/alert; Ingest batches of {args.batch};"
            f" {os.cpu_count()} CPUs; Python {sys.version.split()[0]},"
            f" SQLite {__import__('sqlite3').sqlite_version}.\n"
        )
        print("| measurement | result |")
        print("|---|---|")
        for name, value in rows:
            print(f"| {name} | {value} |")
        target = many.rate >= v1
        print(
            f"\nTarget ingest >= 1.0 × single-core verify: {'met' if target else 'MISSED'}"
            f" ({many.rate / v1:.2f}×)."
        )
        for n in notes:
            print(f"NOTE: {n}")
        print(f"\ncommand: {command_line(argv)}")

        if args.profile:
            n = min(len(signed), 2 * args.alerts)
            rate, text = asyncio.run(profile_ingest(home, signed[:n], args.batch, args.in_flight))
            print(
                f"\n## cProfile of in-process ingest ({n} alerts, {rate:,.0f} alerts/s under the profiler)\n"
            )
            print(text)
        return 0 if not notes else 1
    finally:
        if node is not None:
            node.stop()
        if args.keep:
            print(f"# kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
