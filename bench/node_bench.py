"""Single-node ingest benchmark: Ed25519 verify rate, Ingest, CheckIndicators, memory.

    .venv/bin/python bench/node_bench.py [--alerts N] [--check-store 100000]

Everything is measured in one run, against one real node process
(`python -m node.cli run --home H --listen 127.0.0.1:0`, i.e. `alertmesh run`), so the
ratios between the rows are meaningful on a noisy machine even when the absolute
figures are not:

(a) pynacl Ed25519 verify rate over the same ~600-byte alert bodies the node ingests,
    on 1 thread and on 2 threads (libsodium releases the GIL).
(b) end-to-end Ingest: pre-signed alerts from several member keys (realistic bodies:
    ~600 bytes, 2-4 indicators of mixed types, normalised as the author's node does)
    sent as pre-serialised IngestRequests of --batch alerts, with 1 request in flight
    and with --in-flight requests in flight; every result must be ACCEPTED. (a) and (b)
    run in --rounds interleaved rounds (verify, 1 in flight, N in flight), so that noise
    and the growing store hit them alike; the ratio is to the median single-thread rate.
    Then the first --alerts are sent again (all duplicates). The node's CPU time per
    alert (/proc/PID/stat, per thread) is reported too: it depends least on other load.
    The store is then filled to --check-store alerts (the same way), in windows that
    end at multiples of --fill-window stored alerts: the node CPU per alert of each
    window shows what filling costs as the store grows (the last window against the
    one ending at --fill-window).
(c) CheckIndicators is called --check-calls times with --check-values values each
    (~1% flagged values respelled, 99% unflagged, mixed types and spellings), and
    --single-calls times with one value each (the withdrawal-screening path,
    --single-flagged of them flagged) by --single-callers callers at once.
    Reported: client-observed latency p50/p99, per-value throughput, and, after the
    node has stopped, the server-side time of the same calls in-process (the
    AlertService handler on AlertNode + SqliteStore over the node's own database).
    For the calls of --check-values values also: the CPU of each node thread, of this
    client and of the rest of the machine during them; per call, how long the node's
    event loop thread and this client's thread ran and waited for a core
    (/proc/.../schedstat); and the node's collections (its `gc_*` counters).
    `--calls-json FILE` writes each call's start and latency, and those waits.
(d) the node's VmRSS/VmHWM from /proc/PID/status with the store loaded, and the
    database size (alerts.db plus its WAL).

`--profile` also prints the CPU cost per alert of each ingest stage, in-process on one
thread (decode, validate, verify, make_record, SqliteStore.put), the rate of the whole
ingest path in-process without gRPC (with SqliteStore, and with a store that does not
write), and cProfile tables of the verifier's work and of the CheckIndicators handler.
`--py-spy FILE` samples the node process with py-spy (`.venv/bin/pip install py-spy`)
during (b).
`--reuse-store DIR` runs only (c) (and (a), as the unit of CPU figures) over a node home
in DIR: the first run builds it (--check-store alerts signed, verified and put with
SqliteStore in-process, not timed: ~5 minutes for 1,000,000), later runs start a node
on it at once (~6 s). The node then has been restarted, not filled: its key filter is
one table, its gossip memory empty, so (d) and the client latencies of a filled node
still need a full run.
Only 127.0.0.1 is used; every loop is bounded in count and by --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import hashlib
import io
import json
import os
import pstats
import queue
import random
import re
import resource
import shlex
import shutil
import signal
import sqlite3
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

from bench.proc_cpu import machine_busy  # noqa: E402
from node._pb.alertmesh.v1 import alert_pb2  # noqa: E402
from node._pb.alertmesh.v1 import alerts_service_pb2 as api  # noqa: E402
from node.app.collector import SERVING_THRESHOLDS  # noqa: E402
from node.core import indicators  # noqa: E402
from node.core.alerts import alert_id  # noqa: E402
from node.core.blockchains import base58check_encode, encode_segwit  # noqa: E402
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
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# --- realistic alert content ------------------------------------------------------------

VOCABULARY = """
wallet drainer phishing kit airdrop claim fake support ticket seed phrase approval
exploit bridge contract victim funds moved mixer exchange deposit address reported
impersonating official domain registered yesterday telegram group pig butchering
investment platform withdrawal blocked fee demanded private key leaked malicious
browser extension signature request permit unlimited allowance laundering chain hop
stolen tokens swapped stablecoin frozen law enforcement notified customers targeted
campaign lure website cloned login page credentials harvested observed first seen
"""
WORDS = tuple(VOCABULARY.split())
TLDS = ("com", "io", "xyz", "app", "net", "org", "co", "finance", "online", "site")
EVM_CHAINS = ("eip155:1", "eip155:56", "eip155:137", "eip155:42161", "eip155:8453")
BTC = "bip122:000000000019d6689c085ae165831e93"
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
            return f"{BTC}:{base58check_encode(bytes([0]) + rng.randbytes(20))}"
        return f"{BTC}:{encode_segwit('bc', 0, rng.randbytes(20))}"
    if kind == "tx":
        return f"{rng.choice(EVM_CHAINS)}:0x{rng.randbytes(32).hex()}"
    if kind == "domain":
        return random_domain(rng)
    if kind == "url":
        path = "/".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 4)))
        return f"https://{random_domain(rng)}/{path}?ref={rng.randrange(10**6)}"
    if kind == "ip":
        a, b, c, d = (
            rng.randrange(11, 223),
            rng.randrange(256),
            rng.randrange(256),
            rng.randrange(1, 255),
        )
        return f"{a}.{b}.{c}.{d}"
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
        host, _, path = value.partition("://")[2].partition("/")
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


@dataclass
class VerifyRun:
    rate: float  # alerts/s (wall clock, all threads together)
    cpu_us: float  # CPU microseconds per verification (thread CPU time)


def verify_rate(
    items: Sequence[tuple[bytes, bytes, bytes]], threads: int, seconds: float
) -> VerifyRun:
    """pynacl VerifyKey.verify over ALERT_DOMAIN + body (a 32-byte key, 64-byte signature and
    the alert's ~600-byte body) on `threads` threads for about `seconds`."""
    keys = {pk: nacl.signing.VerifyKey(pk) for pk, _, _ in items}
    work = [(keys[pk], ALERT_DOMAIN + body, sig) for pk, body, sig in items]

    def run(
        part: Sequence[tuple[nacl.signing.VerifyKey, bytes, bytes]], deadline: float
    ) -> tuple[int, float]:
        done = 0
        cpu = time.thread_time()
        while done < MAX_VERIFY_COUNT:
            for vk, msg, sig in part:
                vk.verify(msg, sig)
            done += len(part)
            if time.perf_counter() > deadline:
                break
        return done, time.thread_time() - cpu

    step = -(-len(work) // threads)
    parts = [work[i : i + step] for i in range(0, len(work), step)]
    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        futures = [pool.submit(run, p, start + seconds) for p in parts]
        results = [f.result() for f in futures]
        elapsed = time.perf_counter() - start
    done = sum(n for n, _ in results)
    return VerifyRun(done / elapsed, sum(c for _, c in results) / done * 1e6)


# --- the node process -------------------------------------------------------------------


class Node:
    """`alertmesh run --home HOME --listen 127.0.0.1:0` (like tests/procs.py NodeProcess)."""

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
                    log_text = (self.home / "node.log").read_text()
                    raise RuntimeError(f"the node exited:\n{log_text}") from None
                continue
            if line.startswith("listening on "):
                self.address = line.removeprefix("listening on ")
                return self
        raise RuntimeError("the node did not start in time")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def workers(self) -> list[int]:
        """Pids of the node's child processes (its verifier workers)."""
        out = []
        # Not Path.glob("[0-9]*/stat"): it stats each match, and a process that exits
        # in between raises ProcessLookupError out of the glob.
        for entry in os.scandir("/proc"):
            with contextlib.suppress(OSError):
                stat = Path(entry.path, "stat").read_text() if entry.name.isdigit() else ""
                if stat and int(stat.rpartition(")")[2].split()[1]) == self.pid:
                    out.append(int(entry.name))
        return out

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS) in bytes of the node process, from /proc/PID/status,
        and "workers": the RSS of its verifier processes together."""
        out = {"workers": 0}
        for pid in [self.pid, *self.workers()]:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    name, _, rest = line.partition(":")
                    if pid != self.pid and name == "VmRSS":
                        out["workers"] += int(rest.split()[0]) * 1024
                    elif pid == self.pid and name in ("VmRSS", "VmHWM"):
                        out[name] = int(rest.split()[0]) * 1024
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time of the node process (all its threads) and its workers."""
        return sum(self.thread_cpu().values())

    def thread_cpu(self) -> dict[int, float]:
        """CPU seconds of each thread of the node by thread id, and of each verifier
        process by its pid."""
        out = {}
        tasks = list(Path(f"/proc/{self.pid}/task").iterdir())
        tasks += [Path(f"/proc/{pid}") for pid in self.workers()]
        for task in tasks:
            with contextlib.suppress(OSError):
                fields = (task / "stat").read_text().rpartition(")")[2].split()
                out[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return out

    def thread_names(self) -> dict[int, str]:
        """Python thread names by thread id, from `py-spy dump` if py-spy is installed."""
        names = {self.pid: "MainThread"}
        names.update((pid, "verifier processes") for pid in self.workers())
        spy = Path(sys.executable).parent / "py-spy"
        if spy.exists():
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                dump = subprocess.run(
                    [str(spy), "dump", "--pid", str(self.pid)],
                    capture_output=True,
                    text=True,
                    timeout=30,
                ).stdout
                for tid, name in re.findall(r'^Thread (\d+) \(\w+\): "([^"]*)"', dump, re.M):
                    names[int(tid)] = name
        return names

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def init_home(home: Path, authors: Sequence[AuthorChain], processes: str = "auto") -> None:
    """`alertmesh init`, then put the authors on the node's roster and set its number of
    verifier processes ([verify] processes)."""
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
    set_verify_processes(home, processes)


def set_verify_processes(home: Path, processes: str) -> None:
    """Write `[verify] processes` into a node home's config.toml ("auto" or a number)."""
    config = home / "config.toml"
    value = processes if processes.isdigit() else json.dumps(processes)
    text = config.read_text()
    assert 'processes = "auto"' in text, "config.toml has no [verify] processes line"
    config.write_text(text.replace('processes = "auto"', f"processes = {value}"))


# --- (b) ingest ---------------------------------------------------------------------------


@dataclass
class IngestRun:
    alerts: int = 0
    accepted: int = 0
    seconds: float = 0.0
    node_cpu: float = 0.0  # CPU seconds the node process used
    client_cpu: float = 0.0  # CPU seconds this process used
    latencies: list[float] = field(default_factory=list)
    done: list[range] = field(default_factory=list)  # alert indices (within the phase) stored
    threads: dict[int, float] = field(default_factory=dict)  # node CPU seconds by thread id

    @property
    def rate(self) -> float:
        return self.alerts / self.seconds if self.seconds else 0.0

    def add(self, other: IngestRun) -> None:
        self.alerts += other.alerts
        self.accepted += other.accepted
        self.seconds += other.seconds
        self.node_cpu += other.node_cpu
        self.client_cpu += other.client_cpu
        self.latencies += other.latencies
        self.done += other.done
        for tid, cpu in other.threads.items():
            self.threads[tid] = self.threads.get(tid, 0.0) + cpu

    @property
    def node_us(self) -> float:
        return self.node_cpu / self.alerts * 1e6 if self.alerts else 0.0


async def ingest(
    channel: grpc.aio.Channel,
    requests: Sequence[bytes],
    sizes: Sequence[int],
    indices: Sequence[int],
    batch: int,
    in_flight: int,
    deadline: float,
    node: Node,
) -> IngestRun:
    """Send the pre-serialised IngestRequests `indices`, `in_flight` at a time, until done
    or `deadline`."""
    call = channel.unary_unary(
        INGEST, request_serializer=None, response_deserializer=api.IngestResponse.FromString
    )
    run = IngestRun()
    pending = iter(indices)

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

    cpu0, client0, threads0 = node.cpu_seconds(), time.process_time(), node.thread_cpu()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    run.seconds = time.perf_counter() - start
    run.node_cpu = node.cpu_seconds() - cpu0
    run.threads = {t: c - threads0.get(t, 0.0) for t, c in node.thread_cpu().items()}
    run.client_cpu = time.process_time() - client0
    return run


def requests_of(signed: Sequence[alert_pb2.SignedAlert], batch: int) -> list[bytes]:
    return [
        api.IngestRequest(alerts=signed[i : i + batch]).SerializeToString()
        for i in range(0, len(signed), batch)
    ]


def sizes_of(n: int, batch: int) -> list[int]:
    return [min(batch, n - i) for i in range(0, n, batch)]


# --- (c) checks ---------------------------------------------------------------------------


def check_requests(
    rng: random.Random,
    flagged: Sequence[tuple[str, str]],
    calls: int,
    values: int,
    hit: float,
    *,
    per_value: bool = False,
) -> list[tuple[list[Any], int]]:
    """(values, number of respelled flagged values among them) per call; with
    `per_value`, `calls` × `values` values at random, each flagged with chance `hit`,
    as (value, 1 or 0) pairs in one list."""
    if per_value:
        n = calls * values
        return [
            (
                [
                    (respell(rng, *rng.choice(flagged)), 1)
                    if rng.random() < hit
                    else (unflagged(rng), 0)
                    for _ in range(n)
                ],
                0,
            )
        ]
    out: list[tuple[list[Any], int]] = []
    for _ in range(calls):
        hits = max(1, round(values * hit))
        batch = [respell(rng, *rng.choice(flagged)) for _ in range(hits)]
        batch += [unflagged(rng) for _ in range(values - hits)]
        rng.shuffle(batch)
        out.append((batch, hits))
    return out


def fill_windows(first: int, total: int, window: int, batch: int) -> list[tuple[int, int]]:
    """The fill's requests (index ranges) in windows ending where the store holds a
    multiple of `window` alerts (the fill starts at `first` stored, ends at `total`)."""
    requests = -(-(total - first) // batch)
    out = []
    lo = 0
    end = (first // window + 1) * window
    while lo < requests:
        hi = min(requests, max(lo + 1, (end - first) // batch))
        out.append((lo, hi))
        lo, end = hi, end + window
    return out


async def node_counters(ch: grpc.aio.Channel) -> dict[str, int]:
    """The node's counters (`alertmesh stats`): its collections among them."""
    stats = await ch.unary_unary(
        "/alertmesh.v1.AlertService/GetStats",
        request_serializer=api.GetStatsRequest.SerializeToString,
        response_deserializer=api.Stats.FromString,
    )(api.GetStatsRequest(), timeout=30)
    return dict(stats.counters)


def gc_text(before: dict[str, int], after: dict[str, int]) -> str:
    """The node's collections between two readings of its counters."""
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return (
        f"young {d.get('gc_collections_gen0', 0)}, middle {d.get('gc_collections_gen1', 0)},"
        f" full {d.get('gc_collections_gen2', 0)}: {d.get('gc_pause_ms', 0)} ms paused in all"
        f" (longest pause since start {after.get('gc_pause_max_ms', 0)} ms)"
    )


@dataclass
class Window:
    """Where the CPU went during one phase: the node by thread, this client, and the
    rest of the machine (other processes), in seconds, over `wall` seconds."""

    wall: float
    node: dict[int, float]
    client: float
    machine: float

    @property
    def others(self) -> float:
        return max(0.0, self.machine - sum(self.node.values()) - self.client)


class Watch:
    """Starts a Window's counters; `stop()` returns the Window."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.wall, self.threads = time.perf_counter(), node.thread_cpu()
        self.client, self.machine = time.process_time(), machine_busy()

    def stop(self) -> Window:
        now = self.node.thread_cpu()
        return Window(
            wall=time.perf_counter() - self.wall,
            node={t: c - self.threads.get(t, 0.0) for t, c in now.items()},
            client=time.process_time() - self.client,
            machine=machine_busy() - self.machine,
        )


@dataclass
class CheckRun:
    latencies: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)  # time.perf_counter() at each call
    # Per call, with `sched`: seconds the node's event loop thread ran and waited for a
    # core, and the same for this client's thread (/proc/.../schedstat).
    sched: list[tuple[float, float, float, float]] = field(default_factory=list)
    values: int = 0
    matched_values: int = 0
    expected_hits: int = 0
    seconds: float = 0.0

    @property
    def per_value_rate(self) -> float:
        return self.values / self.seconds if self.seconds else 0.0


def schedstat(path: str) -> tuple[int, int]:
    """Nanoseconds a thread has run on a core and waited runnable for one (since start)."""
    ran, waited, _ = Path(path).read_text().split()
    return int(ran), int(waited)


async def check(
    channel: grpc.aio.Channel,
    batches: Sequence[tuple[list[str], int]],
    in_flight: int,
    deadline: float,
    sched: int | None = None,
) -> CheckRun:
    """The calls, `in_flight` at a time; with `sched` (the node's pid, 1 in flight), also
    where each call's time went: the node's event loop and this client's thread, running
    or waiting for a core."""
    call = channel.unary_unary(
        CHECK,
        request_serializer=api.CheckIndicatorsRequest.SerializeToString,
        response_deserializer=api.CheckIndicatorsResponse.FromString,
    )
    run = CheckRun()
    pending = iter(batches)
    node_loop = f"/proc/{sched}/task/{sched}/schedstat"
    client_thread = f"/proc/self/task/{threading.get_native_id()}/schedstat"

    async def worker() -> None:
        for values, hits in pending:
            if time.perf_counter() > deadline:
                return
            request = api.CheckIndicatorsRequest(values=values)
            if sched is not None:
                node0, client0 = schedstat(node_loop), schedstat(client_thread)
            t0 = time.perf_counter()
            response = await call(request, timeout=60)
            run.latencies.append(time.perf_counter() - t0)
            run.starts.append(t0)
            if sched is not None:
                node1, client1 = schedstat(node_loop), schedstat(client_thread)
                run.sched.append(
                    (
                        (node1[0] - node0[0]) / 1e9,
                        (node1[1] - node0[1]) / 1e9,
                        (client1[0] - client0[0]) / 1e9,
                        (client1[1] - client0[1]) / 1e9,
                    )
                )
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


@dataclass
class ServerCheck:
    """Seconds per call, in-process: the handler, AlertNode.check, and its two parts."""

    handler: list[float] = field(default_factory=list)
    node_check: list[float] = field(default_factory=list)
    parse: list[float] = field(default_factory=list)  # indicators.parse + lookup_keys
    lookup: list[float] = field(default_factory=list)  # SqliteStore.lookup
    handler_warm: list[float] = field(default_factory=list)  # the same values again
    profile: str = ""


def in_process_node(config: Any, store: Any, verifier: Any) -> Any:
    """An AlertNode over `store` with the bench home's identity and roster."""
    from node.app.service import AlertNode
    from node.core.limits import DEFAULT_LIMITS

    return AlertNode(
        identity=config.identity(),
        roster=config.roster(),
        store=store,
        verifier=verifier,
        limits=DEFAULT_LIMITS,
    )


async def server_side_check(
    home: Path, batches: Sequence[tuple[list[str], int]], deadline: float, profile: bool
) -> ServerCheck:
    """The CheckIndicators calls again, in-process over the node's own (stopped) database:
    the server time without gRPC transport."""
    from node.app.checking import _parse_cached
    from node.app.config import Config
    from node.app.verify import Verifier
    from node.core.errors import InvalidAlert
    from node.core.limits import DEFAULT_LIMITS
    from node.rpc.alert_service import AlertService
    from node.store.sqlite import SqliteStore

    config = Config.load(home)
    out = ServerCheck()
    thresholds = gc.get_threshold()
    async with Verifier(DEFAULT_LIMITS) as verifier, SqliteStore(config.store_path) as store:
        node = in_process_node(config, store, verifier)
        service = AlertService(node)
        for values, _ in batches[:2]:  # warm-up (page cache), not counted
            await node.check(values, include_expired=False)
        gc.set_threshold(*SERVING_THRESHOLDS)  # as the node once serving (collector.py)
        for values, _ in batches:
            if time.perf_counter() > deadline:
                break
            request = api.CheckIndicatorsRequest(values=values)
            _parse_cached.cache_clear()  # values never seen (the node caches parses)
            t0 = time.perf_counter()
            response = await service.CheckIndicators(request, None)  # type: ignore[arg-type]
            response.SerializeToString()
            out.handler.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            response = await service.CheckIndicators(request, None)  # type: ignore[arg-type]
            response.SerializeToString()
            out.handler_warm.append(time.perf_counter() - t0)
            _parse_cached.cache_clear()
            t0 = time.perf_counter()
            await node.check(values, include_expired=False)
            out.node_check.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            keys: set[str] = set()
            for value in values:
                with contextlib.suppress(InvalidAlert):
                    keys.update(indicators.lookup_keys(indicators.parse(value, strict=False)))
            out.parse.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await store.lookup(keys, now_ms=node.clock())
            out.lookup.append(time.perf_counter() - t0)
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for values, _ in batches[:20]:
                await service.CheckIndicators(
                    api.CheckIndicatorsRequest(values=values),
                    None,  # type: ignore[arg-type]
                )
            profiler.disable()
            out.profile = profile_text(profiler, 15)
    gc.set_threshold(*thresholds)
    return out


# --- in-process cost of each ingest stage (--profile) -----------------------------------


def profile_text(profiler: cProfile.Profile, top: int) -> str:
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    lines = text.getvalue().strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    return "\n".join([lines[0].strip(), *lines[start:]])


async def inprocess_ingest(
    home: Path,
    signed: Sequence[alert_pb2.SignedAlert],
    batch: int,
    in_flight: int,
    write: bool,
) -> tuple[float, float, float]:
    """The whole ingest path in this process without gRPC: AlertService.Ingest on AlertNode
    + Verifier + a fresh SqliteStore (`write=False`: a store that accepts without writing).
    Returns (alerts/s, CPU µs/alert, cores busy)."""
    from node.app.config import Config
    from node.app.verify import Verifier
    from node.core.limits import DEFAULT_LIMITS
    from node.rpc.alert_service import AlertService
    from node.store.base import PutOutcome
    from node.store.sqlite import SqliteStore

    class NoWrites(SqliteStore):
        async def put(
            self, records: Sequence[Any], *, now_ms: int, request_id: str = ""
        ) -> list[PutOutcome]:
            return [PutOutcome.ACCEPTED] * len(records)

    config = Config.load(home)
    requests = [api.IngestRequest.FromString(r) for r in requests_of(signed, batch)]
    db = Path(tempfile.mkdtemp(prefix="alertmesh-bench-store-"))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        async with (
            Verifier(DEFAULT_LIMITS) as verifier,
            (SqliteStore if write else NoWrites)(db / "alerts.db") as store,
        ):
            service = AlertService(in_process_node(config, store, verifier))
            pending = iter(requests)

            async def worker() -> None:
                for request in pending:
                    response = await service.Ingest(request, None)  # type: ignore[arg-type]
                    response.SerializeToString()

            cpu, start = time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - start
        # The verifier processes have exited: their CPU time is counted now (it includes
        # their start-up, about 0.1 s each).
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu += after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    finally:
        shutil.rmtree(db, ignore_errors=True)
    return len(signed) / wall, cpu / len(signed) * 1e6, cpu / wall


async def stage_costs(
    roster_home: Path, signed: Sequence[alert_pb2.SignedAlert], batch: int
) -> tuple[list[tuple[str, float]], str]:
    """CPU microseconds per alert of each step of AlertNode.ingest, one thread, no gRPC,
    and a cProfile (by own time) of check_batch, the verifier's work."""
    from node.app.config import Config
    from node.app.verify import check_batch
    from node.core import alerts
    from node.core.limits import DEFAULT_LIMITS
    from node.crypto import verify_alert
    from node.store.sqlite import SqliteStore

    roster = Config.load(roster_home).roster()
    items = [(s.body, s.signature) for s in signed]
    n = len(items)
    now = time.time_ns() // 1_000_000
    costs: list[tuple[str, float]] = []

    def cost(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.process_time()
        result = fn()
        costs.append((name, (time.process_time() - t0) / n * 1e6))
        return result

    decoded = cost("decode_body", lambda: [alerts.decode_body(b, DEFAULT_LIMITS) for b, _ in items])
    keys = cost(
        "validate (rules + indicator normalisation)",
        lambda: [alerts.validate(a, now_ms=now, limits=DEFAULT_LIMITS) for a in decoded],
    )
    cost(
        "verify_alert (Ed25519)",
        lambda: [verify_alert(a.origin, b, s) for a, (b, s) in zip(decoded, items, strict=True)],
    )
    cost(
        "make_record (SHA-256 id, record)",
        lambda: [
            alerts.make_record(b, s, a, k)
            for a, (b, s), k in zip(decoded, items, keys, strict=True)
        ],
    )
    records = cost(
        "check_batch (all of the above)",
        lambda: check_batch(items, roster, now, DEFAULT_LIMITS),
    )
    db = Path(tempfile.mkdtemp(prefix="alertmesh-bench-store-"))
    try:
        async with SqliteStore(db / "alerts.db") as store:
            t0 = time.process_time()
            for i in range(0, n, batch):
                await store.put(records[i : i + batch], now_ms=now)
            costs.append(
                (f"SqliteStore.put, {batch} per put, empty store -> {n:,}", 0.0)
                if n == 0
                else (
                    f"SqliteStore.put, {batch} per put, empty store -> {n:,}",
                    (time.process_time() - t0) / n * 1e6,
                )
            )
    finally:
        shutil.rmtree(db, ignore_errors=True)
    profiler = cProfile.Profile()
    sample = items[: min(n, 5000)]
    profiler.enable()
    check_batch(sample, roster, now, DEFAULT_LIMITS)
    profiler.disable()
    return costs, profile_text(profiler, 20)


def start_py_spy(path: str, pid: int, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
         "--output", path, "--format", "raw", "--threads", "--nonblocking",
         "--rate", "200", "--duration", str(int(seconds))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def py_spy_summary(path: Path, top: int) -> str:
    """Own-time share of the hottest frames in a py-spy `--format raw` file, per thread."""
    own: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        thread = frames[0].partition(": ")[2].rstrip("0123456789").rstrip("_") or "main"
        threads[thread] = threads.get(thread, 0) + n
        if len(frames) > 1:
            leaf = frames[-1].rpartition(":")[0] + ")"
            own[leaf] = own.get(leaf, 0) + n
    if not total:
        return "(no samples)"
    out = ["samples by thread: " + ", ".join(f"{t} {n / total:.0%}" for t, n in threads.items())]
    out += [f"{n / total:6.1%}  {f}" for f, n in sorted(own.items(), key=lambda x: -x[1])[:top]]
    return "\n".join(out)


# --- report ---------------------------------------------------------------------------------


def by_thread(run: IngestRun, names: dict[int, str]) -> list[tuple[str, float]]:
    """Node CPU µs per alert by thread, threads of one kind (name without -N / _N) summed."""
    out: dict[str, float] = {}
    for tid, cpu in run.threads.items():
        name = names.get(tid, "other")
        name = re.sub(r"^Thread-\d+ \((\w+)\)$", r"\1", name)
        name = re.sub(r"_\d+$", "", name).replace("_connection_worker_thread", "aiosqlite")
        out[name] = out.get(name, 0.0) + cpu / max(1, run.alerts) * 1e6
    rest = run.node_us - sum(out.values())  # threads that ended, rounding
    if rest >= 0.5:
        out["other"] = out.get("other", 0.0) + rest
    return sorted(((n, us) for n, us in out.items() if us >= 0.5), key=lambda x: -x[1])


def code_version() -> str:
    """The commit of the node code measured, with "+changes" for a dirty work tree."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "node"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' + uncommitted changes in node/' if dirty else ''}" if head else "unknown"


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * p // 100) - 1))]


def ms(seconds: float, digits: int = 1) -> str:
    return f"{seconds * 1e3:.{digits}f} ms"


def fill_ratio(windows: Sequence[tuple[int, IngestRun, int]], window: int) -> str:
    """Node CPU per alert in the last fill window against the window ending at `window`
    stored alerts, and the dearest window against it."""
    base = next((run for n, run, _ in windows if n == window), None)
    if base is None or len(windows) < 2 or not base.node_us:
        return "(needs a window ending at --fill-window and a later one)"
    n_last, last, _ = windows[-1]
    n_max, dearest, _ = max(windows, key=lambda w: w[1].node_us)
    return (
        f"**{last.node_us / base.node_us:.2f}×** ({last.node_us:.0f} / {base.node_us:.0f} µs;"
        f" at {n_last:,} against {window:,}); dearest window (to {n_max:,})"
        f" {dearest.node_us / base.node_us:.2f}×"
    )


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def command_line(argv: Sequence[str]) -> str:
    return ".venv/bin/python bench/node_bench.py" + "".join(f" {shlex.quote(a)}" for a in argv)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--alerts", type=int, default=20_000, help="alerts per ingest measurement (b)")
    p.add_argument("--check-store", type=int, default=100_000, help="store size for (c) and (d)")
    p.add_argument("--batch", type=int, default=500, help="alerts per Ingest request")
    p.add_argument("--in-flight", type=int, default=4, help="concurrent Ingest requests")
    p.add_argument("--authors", type=int, default=8, help="member keys authoring the alerts")
    p.add_argument("--body-bytes", type=int, default=600, help="target alert body size")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds of (a) and (b)")
    p.add_argument("--verify-seconds", type=float, default=1.0, help="per verify measurement")
    p.add_argument("--check-calls", type=int, default=50)
    p.add_argument("--check-values", type=int, default=1000)
    p.add_argument("--check-flagged", type=float, default=0.01, help="share of flagged values")
    p.add_argument("--fill-window", type=int, default=100_000, help="report the fill per window")
    p.add_argument("--single-calls", type=int, default=4000, help="single-value checks")
    p.add_argument("--single-callers", type=int, default=8, help="single-value checks at once")
    p.add_argument(
        "--single-flagged", type=float, default=0.05, help="share of flagged single values"
    )
    p.add_argument("--max-seconds", type=float, default=600.0, help="time bound of each phase")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--verify-processes",
        default="auto",
        help='the node\'s [verify] processes: "auto" or a number (verifier processes)',
    )
    p.add_argument("--profile", action="store_true", help="also profile in-process (cProfile)")
    p.add_argument(
        "--calls-json",
        metavar="FILE",
        help="write each check call's start (time.perf_counter) and latency to FILE",
    )
    p.add_argument("--py-spy", metavar="FILE", help="py-spy record the node during (b) to FILE")
    p.add_argument(
        "--reuse-store",
        metavar="DIR",
        help="checks only, over a node home kept in DIR: built once (--check-store alerts put"
        " in-process, not timed), then reused by every run with the same DIR",
    )
    args = p.parse_args(argv)
    if args.rounds < 1 or args.alerts < args.batch * args.rounds:
        p.error("--alerts must be at least --batch × --rounds")
    if args.check_store < 1 or args.check_calls < 1:
        p.error("--check-store and --check-calls must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    shown = sys.argv[1:] if argv is None else list(argv)
    if args.reuse_store:
        return reuse_main(args, shown, Path(args.reuse_store))
    total = max(args.check_store, 2 * args.alerts)
    say(f"# signing {total:,} alerts from {args.authors} authors ...")
    corpus = build_corpus(total, args.authors, args.body_bytes, args.seed)
    signed = corpus.signed
    home = Path(tempfile.mkdtemp(prefix="alertmesh-bench-"))
    node = Node(home)
    try:
        init_home(home, corpus.authors, args.verify_processes)
        sample = [
            (alert_pb2.Alert.FromString(s.body).origin, s.body, s.signature) for s in signed[:4000]
        ]
        phases = {
            "one": (0, signed[: args.alerts]),
            "many": (args.alerts, signed[args.alerts : 2 * args.alerts]),
            "fill": (2 * args.alerts, signed[2 * args.alerts : args.check_store]),
        }
        # Requests are serialised before any clock starts; the client only sends bytes.
        requests = {k: requests_of(part, args.batch) for k, (_, part) in phases.items()}
        # The corpus is millions of objects: the collector's full passes over them in this
        # process would show up as client latency (a pause of up to a second at 1,000,000
        # alerts). They live until the end; the collector leaves them alone.
        gc.collect()
        gc.freeze()
        node.start()
        say(f"# node pid {node.pid} listening on {node.address}")
        res = asyncio.run(drive(args, node, corpus, phases, requests, sample))
        node.stop()
        db_bytes = sum(f.stat().st_size for f in home.glob("alerts.db*"))
        say("# CheckIndicators in-process over the node's database ...")
        # This process holds millions of objects (the corpus): keep the collector's full
        # passes over them out of the in-process timings.
        gc.collect()
        gc.freeze()
        server = asyncio.run(
            server_side_check(
                home, res["batches"], time.perf_counter() + args.max_seconds, args.profile
            )
        )
        v1 = report(args, shown, corpus, res, server, db_bytes)
        if args.profile:
            say("# profiling the ingest stages in-process ...")
            part = signed[: min(len(signed), 2 * args.alerts)]
            costs, text = asyncio.run(stage_costs(home, part, args.batch))
            print(f"\n## In-process cost per alert ({len(part):,} alerts, one thread)\n")
            print("| stage | CPU µs/alert |\n|---|---|")
            for name, us in costs:
                print(f"| {name} | {us:.1f} |")
            print(
                f"\nThe whole ingest path in-process, no gRPC ({len(part):,} alerts,"
                f" {args.in_flight} requests in flight; (a) 1 thread = {v1:,.0f} alerts/s):\n"
            )
            print("| store | alerts/s | × (a) 1 thread | CPU µs/alert | cores busy |")
            print("|---|---|---|---|---|")
            for label, write in (("SqliteStore", True), ("no writes (put only answers)", False)):
                rate, us, cores = asyncio.run(
                    inprocess_ingest(home, part, args.batch, args.in_flight, write)
                )
                print(f"| {label} | {rate:,.0f} | {rate / v1:.2f}× | {us:.0f} | {cores:.2f} |")
            print(f"\ncProfile of check_batch (verifier work), by own time:\n\n{text}")
            print(f"\ncProfile of 20 CheckIndicators handler calls:\n\n{server.profile}")
        if args.py_spy:
            print(f"\n## py-spy of the node during (b), {args.py_spy}\n")
            print(py_spy_summary(Path(args.py_spy), 25))
        return 0 if not res["problems"] else 1
    finally:
        node.stop()
        shutil.rmtree(home, ignore_errors=True)


async def drive(
    args: argparse.Namespace,
    node: Node,
    corpus: Corpus,
    phases: dict[str, tuple[int, list[alert_pb2.SignedAlert]]],
    requests: dict[str, list[bytes]],
    sample: Sequence[tuple[bytes, bytes, bytes]],
) -> dict[str, Any]:
    """Everything that needs the running node, in order."""
    out: dict[str, Any] = {"problems": []}

    def verify_both(tag: str) -> tuple[VerifyRun, VerifyRun]:
        one = verify_rate(sample, 1, args.verify_seconds)
        two = verify_rate(sample, 2, args.verify_seconds)
        say(f"# verify {tag}: 1 thread {one.rate:,.0f}/s, 2 threads {two.rate:,.0f}/s")
        return one, two

    async def phase(name: str, in_flight: int, part: int = 0, parts: int = 1) -> IngestRun:
        size = len(phases[name][1])
        count = len(requests[name])
        indices = range(count * part // parts, count * (part + 1) // parts)
        end = time.perf_counter() + args.max_seconds
        run = await ingest(
            ch,
            requests[name],
            sizes_of(size, args.batch),
            indices,
            args.batch,
            in_flight,
            end,
            node,
        )
        say(f"# ingest {name}: {run.alerts:,} alerts, {in_flight} in flight: {run.rate:,.0f}/s")
        return run

    async with grpc.aio.insecure_channel(node.address, options=CHANNEL_OPTIONS) as ch:
        await asyncio.wait_for(ch.channel_ready(), 30)
        spy = start_py_spy(args.py_spy, node.pid, args.max_seconds) if args.py_spy else None
        if spy is not None:
            await asyncio.sleep(1.0)  # let py-spy attach
        # Rounds of: verify rates, then a slice of "one" (1 in flight), then a slice of
        # "many" (--in-flight), so that noise and store growth hit all three alike.
        out["rounds"] = []
        out["one"], out["many"] = IngestRun(), IngestRun()
        for r in range(args.rounds):
            verify = await asyncio.to_thread(verify_both, f"round {r + 1}")
            one = await phase("one", 1, r, args.rounds)
            many = await phase("many", args.in_flight, r, args.rounds)
            out["rounds"].append((verify, one, many))
            out["one"].add(one)
            out["many"].add(many)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        out["thread_names"] = node.thread_names()
        # The alerts of "one" again: all are held already (every result DUPLICATE).
        out["dup"] = await phase("one", args.in_flight)
        for name in ("one", "many"):
            run, size = out[name], len(phases[name][1])
            if run.accepted != size:
                out["problems"].append(f"ingest {name}: {run.accepted} of {size} accepted")
        # Filled in windows that end at multiples of --fill-window stored alerts, so that
        # the cost per alert near the end compares with the cost near the start, in one run.
        out["fill"], out["fill_windows"] = IngestRun(), []
        first = phases["fill"][0]
        for lo, hi in fill_windows(first, args.check_store, args.fill_window, args.batch):
            run = await ingest(
                ch,
                requests["fill"],
                sizes_of(len(phases["fill"][1]), args.batch),
                range(lo, hi),
                args.batch,
                args.in_flight,
                time.perf_counter() + args.max_seconds,
                node,
            )
            out["fill"].add(run)
            stored_now = first + min(hi * args.batch, len(phases["fill"][1]))
            out["fill_windows"].append((stored_now, run, node.memory()["VmRSS"]))
            threads = ", ".join(f"{t} {us:.0f}" for t, us in by_thread(run, out["thread_names"]))
            say(
                f"# fill to {stored_now:,}: {run.rate:,.0f}/s, node CPU {run.node_us:.0f} µs/alert"
                f" ({threads}), RSS {mib(out['fill_windows'][-1][2])}"
            )
        if out["fill"].accepted != len(phases["fill"][1]):
            out["problems"].append(f"filling: only {out['fill'].accepted} alerts accepted")
        stats = await ch.unary_unary(
            "/alertmesh.v1.AlertService/GetStats",
            request_serializer=api.GetStatsRequest.SerializeToString,
            response_deserializer=api.Stats.FromString,
        )(api.GetStatsRequest(), timeout=30)
        out["stored"] = stats.alerts
        out["mem_loaded"] = node.memory()
        # Flagged values come from the alerts the node accepted.
        stored = [
            value
            for name, (offset, _) in phases.items()
            for part in out[name].done
            for i in part
            for value in corpus.flagged[offset + i]
        ]
        checks = await run_checks(args, ch, node, stored)
        out["problems"] += checks.pop("problems")
        out.update(checks)
    return out


async def run_checks(
    args: argparse.Namespace, ch: grpc.aio.Channel, node: Node, stored: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """(c): CheckIndicators calls of --check-values values (fresh, asked again, in flight),
    then single-value calls by --single-callers callers; the node's RSS after them."""
    out: dict[str, Any] = {"problems": [], "check_names": node.thread_names()}
    rng = random.Random(args.seed + 1)
    # Two sets of calls with fresh values each: the node caches parsed values, and
    # a value asked again is cheaper (reported apart, "asked before").
    batches, fresh = (
        check_requests(rng, stored, args.check_calls, args.check_values, args.check_flagged)
        for _ in range(2)
    )
    out["batches"] = batches
    warm_up = check_requests(rng, stored, 1, args.check_values, args.check_flagged)
    await check(ch, warm_up, 1, time.perf_counter() + 60)  # not counted
    out["gc_before"] = before = await node_counters(ch)
    watch = Watch(node)
    out["check1"] = await check(
        ch, batches, 1, time.perf_counter() + args.max_seconds, sched=node.pid
    )
    out["check1_cpu"] = watch.stop()
    out["check1_gc"] = gc_text(before, await node_counters(ch))
    out["check_again"] = await check(ch, batches[-10:], 1, time.perf_counter() + args.max_seconds)
    out["checkn"] = await check(ch, fresh, args.in_flight, time.perf_counter() + args.max_seconds)
    # The withdrawal-screening path: one value per call, --single-callers at once.
    singles = [
        ([value], hits)
        for values, _ in check_requests(
            rng, stored, args.single_calls, 1, args.single_flagged, per_value=True
        )
        for value, hits in values
    ]
    await check(ch, singles[:50], args.single_callers, time.perf_counter() + 60)  # warm-up
    watch = Watch(node)
    out["single"] = await check(
        ch, singles[50:], args.single_callers, time.perf_counter() + args.max_seconds
    )
    window = out["single_window"] = watch.stop()
    calls = max(1, len(out["single"].latencies))
    out["single_cpu"] = (sum(window.node.values()) / calls, window.client / calls)
    # The last 10 calls again: 10,000 values, within the node's cache of parsed values.
    if out["check1"].matched_values < out["check1"].expected_hits:
        out["problems"].append("CheckIndicators missed some flagged values")
    if args.calls_json:  # each call's start and latency, to match with other traces
        phases = ("check1", "check_again", "checkn", "single")
        calls: dict[str, Any] = {
            k: list(zip(out[k].starts, out[k].latencies, strict=True)) for k in phases
        }
        calls["check1_sched"] = out["check1"].sched
        await asyncio.to_thread(Path(args.calls_json).write_text, json.dumps(calls))
    out["mem_after"] = node.memory()
    return out


def window_text(window: Window, names: dict[int, str], calls: int) -> str:
    """CPU milliseconds per call during a phase: the node by thread, this client, the
    rest of the machine; and the cores busy in all."""
    per: dict[str, float] = {}
    for tid, cpu in window.node.items():
        name = re.sub(r"^Thread-\d+ \((\w+)\)$", r"\1", names.get(tid, "other"))
        name = re.sub(r"_\d+$", "", name).replace("_connection_worker_thread", "aiosqlite")
        per[name] = per.get(name, 0.0) + cpu
    parts = [f"{n} {c / calls * 1e3:.2f}" for n, c in sorted(per.items(), key=lambda x: -x[1])]
    parts = [p for p in parts if not p.endswith(" 0.00")]
    return (
        f"node {', '.join(parts) or '0'}; client {window.client / calls * 1e3:.2f};"
        f" other processes {window.others / calls * 1e3:.2f} ms per call"
        f" ({window.machine / max(window.wall, 1e-9):.2f} cores busy in all)"
    )


def sched_text(run: CheckRun) -> str:
    """Per-call CPU and wait for a core, and what the slowest calls spent them on."""
    if not run.sched:
        return "(not measured)"
    cols = list(zip(*run.sched, strict=True))
    slow = sorted(range(len(run.latencies)), key=lambda i: -run.latencies[i])[
        : max(2, len(run.latencies) // 50)
    ]
    mean = [statistics.mean(run.sched[i][k] for i in slow) for k in range(4)]
    # Each call's latency less the time the node's loop and this client waited for a core:
    # what the call would have taken with those two threads never kept off a core.
    unqueued = [lat - c[1] - c[3] for lat, c in zip(run.latencies, run.sched, strict=True)]
    return (
        f"latency less both waits p50 {ms(pct(unqueued, 50))}, p99 {ms(pct(unqueued, 99))};"
        f" node {ms(pct(cols[0], 50))} / {ms(pct(cols[1], 50), 2)} (p50),"
        f" {ms(pct(cols[0], 99))} / {ms(pct(cols[1], 99), 2)} (p99); client waiting p50"
        f" {ms(pct(cols[3], 50), 2)}, p99 {ms(pct(cols[3], 99), 2)}. The {len(slow)} slowest"
        f" calls ({ms(statistics.mean(run.latencies[i] for i in slow))} on average): node"
        f" {ms(mean[0])} on a core + {ms(mean[1])} waiting, client {ms(mean[2])} + {ms(mean[3])}"
    )


def check_rows(
    args: argparse.Namespace, res: dict[str, Any], server: ServerCheck
) -> list[tuple[str, str]]:
    """The rows of (c) and of (d)'s RSS."""
    c1: CheckRun = res["check1"]
    single: CheckRun = res["single"]
    cn: CheckRun = res["checkn"]
    stored = res["stored"]
    k = args.check_values
    return [
        (
            f"(c) CheckIndicators of {k:,} values, client latency",
            f"p50 **{ms(pct(c1.latencies, 50))}**, p99 {ms(pct(c1.latencies, 99))},"
            f" slowest {ms(max(c1.latencies))}"
            f" ({len(c1.latencies)} calls, 1 in flight); the same values asked again:"
            f" p50 {ms(pct(res['check_again'].latencies, 50))}",
        ),
        (
            "(c) … CPU during those calls",
            window_text(res["check1_cpu"], res["check_names"], max(1, len(c1.latencies))),
        ),
        (
            "(c) … per call: node event loop on a core / waiting for one; client waiting",
            sched_text(c1),
        ),
        (
            "(c) … the node's collections during those calls",
            res["check1_gc"],
        ),
        (
            "(c) … the node's settles before them (after a large ingest, once quiet)",
            f"{res['gc_before'].get('gc_settles', 0)}, {res['gc_before'].get('gc_settle_ms', 0)}"
            f" ms in all (CPU {res['gc_before'].get('gc_settle_cpu_ms', 0)} ms);"
            f" {res['gc_before'].get('gc_frozen_objects', 0):,} objects frozen",
        ),
        (
            "(c) the same calls in-process: handler / AlertNode.check",
            f"p50 **{ms(pct(server.handler, 50))}** / {ms(pct(server.node_check, 50))},"
            f" p99 {ms(pct(server.handler, 99))} / {ms(pct(server.node_check, 99))};"
            f" handler on values asked before: p50 {ms(pct(server.handler_warm, 50))}",
        ),
        (
            "(c) … of which parsing values / SqliteStore.lookup",
            f"p50 {ms(pct(server.parse, 50))} / {ms(pct(server.lookup, 50))}",
        ),
        (
            "(c) lookup throughput",
            f"{c1.per_value_rate:,.0f} values/s (1 call in flight),"
            f" {cn.per_value_rate:,.0f} values/s ({args.in_flight} in flight)",
        ),
        (
            f"(c) single-value checks, {args.single_callers} callers at once, client latency",
            f"p50 **{ms(pct(single.latencies, 50), 2)}**,"
            f" p99 **{ms(pct(single.latencies, 99), 2)}**"
            f" ({len(single.latencies):,} calls, {single.expected_hits} of them flagged,"
            f" {single.matched_values} matched); {single.per_value_rate:,.0f} calls/s",
        ),
        (
            "(c) … CPU per single-value call: node / this client",
            f"{res['single_cpu'][0] * 1e6:,.0f} µs / {res['single_cpu'][1] * 1e6:,.0f} µs;"
            f" with {args.single_callers} callers always waiting, the mean latency is"
            f" {args.single_callers} / {single.per_value_rate:,.0f} calls/s ="
            f" {args.single_callers / max(1.0, single.per_value_rate) * 1e3:.2f} ms (Little's law)",
        ),
        (
            "(c) … CPU during the single-value calls",
            window_text(res["single_window"], res["check_names"], max(1, len(single.latencies))),
        ),
        (
            "(c) values matched / flagged values asked",
            f"{c1.matched_values:,} / {c1.expected_hits:,}",
        ),
        (
            f"(d) node RSS with {stored:,} alerts",
            f"{mib(res['mem_loaded']['VmRSS'])} after ingest,"
            f" {mib(res['mem_after']['VmRSS'])} after the checks"
            f" (peak {mib(res['mem_after']['VmHWM'])}); verifier processes"
            f" {mib(res['mem_after']['workers'])} more",
        ),
    ]


def report(
    args: argparse.Namespace,
    argv: Sequence[str],
    corpus: Corpus,
    res: dict[str, Any],
    server: ServerCheck,
    db_bytes: int,
) -> float:
    """Print the results table; return the single-thread verify rate of (a)."""
    rounds = res["rounds"]
    v1 = statistics.median(v[0].rate for v, _, _ in rounds)
    v2 = statistics.median(v[1].rate for v, _, _ in rounds)
    v1_all = ", ".join(f"{v[0].rate:,.0f}" for v, _, _ in rounds)
    verify_us = statistics.median(v[0].cpu_us for v, _, _ in rounds)
    cores = os.cpu_count() or 1
    ratios = [many.rate / v[0].rate for v, _, many in rounds]
    one: IngestRun = res["one"]
    many: IngestRun = res["many"]
    fill: IngestRun = res["fill"]
    dup: IngestRun = res["dup"]
    stored = res["stored"]
    n = len(corpus.signed)
    body = statistics.mean(corpus.body_sizes)
    inds = sum(map(len, corpus.flagged)) / n
    rows = [
        (
            "(a) Ed25519 verify (pynacl), 1 thread",
            f"**{v1:,.0f} alerts/s** (median of {len(rounds)} rounds: {v1_all});"
            f" {verify_us:.1f} CPU µs/alert",
        ),
        ("(a) Ed25519 verify (pynacl), 2 threads", f"{v2:,.0f} alerts/s = {v2 / v1:.2f}× 1 thread"),
        (
            f"(b) Ingest, {args.in_flight} requests in flight",
            f"**{many.rate:,.0f} alerts/s = {many.rate / v1:.2f}× (a) 1 thread**"
            f" (per round {min(ratios):.2f}–{max(ratios):.2f}×, median"
            f" {statistics.median(ratios):.2f}×); {many.node_cpu / many.seconds:.2f} cores busy",
        ),
        (
            "(b) … node CPU per alert (noise-robust)",
            f"**{many.node_us:.1f} µs = {many.node_us / verify_us:.2f}× a verify** →"
            f" even perfectly parallel on {cores} idle cores at most"
            f" {cores * verify_us / many.node_us:.2f}× (a) 1 thread",
        ),
        (
            "(b) … node CPU by thread, µs/alert",
            ", ".join(f"{name} {us:.1f}" for name, us in by_thread(many, res["thread_names"])),
        ),
        (
            "(b) Ingest, 1 request in flight",
            f"{one.rate:,.0f} alerts/s = {one.rate / v1:.2f}× (a) 1 thread;"
            f" node CPU {one.node_us:.0f} µs/alert; {args.batch}-alert call"
            f" p50 {ms(pct(one.latencies, 50))}",
        ),
        (
            f"(b) Ingest of {dup.alerts:,} alerts already held ({args.in_flight} in flight)",
            f"{dup.rate:,.0f} alerts/s = {dup.rate / v1:.2f}× (a) 1 thread;"
            f" node CPU {dup.node_us:.0f} µs/alert ({dup.accepted} accepted)",
        ),
        (
            f"(b) filling the store to {stored:,}",
            f"{fill.rate:,.0f} alerts/s over the last {fill.alerts:,} ({args.in_flight} in flight);"
            f" node CPU {fill.node_us:.0f} µs/alert",
        ),
        (
            "(b) … filling: node CPU µs/alert (alerts/s) in the window up to",
            "; ".join(
                f"{n:,}: {run.node_us:.0f} ({run.rate:,.0f}/s)" for n, run, _ in res["fill_windows"]
            ),
        ),
        (
            "(b) … filling: node CPU by thread, µs/alert, first and last window",
            " / ".join(
                ", ".join(f"{t} {us:.0f}" for t, us in by_thread(w[1], res["thread_names"]))
                for w in res["fill_windows"][:1] + res["fill_windows"][-1:]
            )
            or "(no fill: the store was full already)",
        ),
        (
            f"(b) … filling cost at the last window / at the window up to {args.fill_window:,}",
            fill_ratio(res["fill_windows"], args.fill_window),
        ),
        (
            "(d) … node RSS while filling, at the end of each window",
            ", ".join(f"{n // 1000:,}k {mib(rss)}" for n, _, rss in res["fill_windows"]),
        ),
        *check_rows(args, res, server),
        (
            "(d) database size (alerts.db + WAL)",
            f"{mib(db_bytes)} = {db_bytes / stored:,.0f} bytes/alert",
        ),
    ]
    client_us = many.client_cpu / many.alerts * 1e6 if many.alerts else 0.0
    print(
        f"\n{n:,} pre-signed alerts from {args.authors} member keys, bodies {body:.0f} bytes"
        f" on average, {inds:.1f} indicators per alert; Ingest requests of {args.batch} alerts;"
        f" {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; SQLite {sqlite3.sqlite_version};"
        f" client CPU {client_us:.1f} µs/alert; node code {code_version()}.\n"
    )
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    verdict = "met" if many.rate >= v1 else "MISSED"
    print(f"\nTarget: ingest ≥ 1.0× single-core verify: {verdict} ({many.rate / v1:.2f}×).")
    for problem in res["problems"]:
        print(f"PROBLEM: {problem}")
    print(f"\ncommand: {command_line(argv)}")
    return v1


# --- --reuse-store: checks only, over a store built once ---------------------------------

REUSE_STATE = "bench-reuse.json"  # written last: its presence means the store is complete
REUSE_EVERY = 20  # keep the indicators of every 20th alert as the flagged values to ask


async def build_store(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    """A node home holding --check-store alerts (the corpus of a full run, signed and
    verified here and put with SqliteStore in puts of --batch, as the node's writer does,
    without gRPC): for iterating on the read path without a 1,000,000-alert fill each
    time. Returns what a checks-only run needs (a sample of flagged values and alerts)."""
    from node.app.config import Config
    from node.app.verify import check_batch
    from node.core.limits import DEFAULT_LIMITS
    from node.store.sqlite import SqliteStore

    rng = random.Random(args.seed)
    authors = [
        AuthorChain(f"bench-author-{i + 1}", hashlib.sha256(b"%d/%d" % (args.seed, i)).digest())
        for i in range(args.authors)
    ]
    init_home(home, authors)
    config = Config.load(home)
    roster = config.roster()
    flagged: list[tuple[str, str]] = []
    sample: list[list[str]] = []
    now_ms = time.time_ns() // 1_000_000
    chunk = 10_000
    async with SqliteStore(config.store_path) as store:
        for lo in range(0, args.check_store, chunk):
            items = []
            for i in range(lo, min(args.check_store, lo + chunk)):
                s, values = make_alert(rng, authors[i % args.authors], now_ms, args.body_bytes)
                items.append((s.body, s.signature))
                if i % REUSE_EVERY == 0:
                    flagged += values
                if len(sample) < 4000:
                    origin = alert_pb2.Alert.FromString(s.body).origin
                    sample.append([origin.hex(), s.body.hex(), s.signature.hex()])
            records = check_batch(items, roster, now_ms, DEFAULT_LIMITS)
            bad = [r for r in records if isinstance(r, Exception)]
            if bad:
                raise RuntimeError(f"building the store: {bad[:3]}")
            for i in range(0, len(records), args.batch):
                await store.put(records[i : i + args.batch], now_ms=now_ms)  # type: ignore[arg-type]
            if (lo + chunk) % 100_000 == 0:
                say(f"# built {lo + chunk:,}")
    return {"stored": args.check_store, "flagged": flagged, "sample": sample}


def reuse_main(args: argparse.Namespace, shown: Sequence[str], home: Path) -> int:
    """--reuse-store DIR: build the store once if DIR holds none, then start a node on it
    and run only (c) and the in-process handler timings (and (a), for the unit)."""
    state_path = home / REUSE_STATE
    if not state_path.exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        say(f"# building a store of {args.check_store:,} alerts in {home} (once) ...")
        t0 = time.perf_counter()
        state = asyncio.run(build_store(args, home))
        state_path.write_text(json.dumps(state))
        say(f"# built in {time.perf_counter() - t0:.0f} s")
    state = json.loads(state_path.read_text())
    stored = [(k, v) for k, v in state["flagged"]]
    sample = [tuple(bytes.fromhex(x) for x in item) for item in state["sample"]]
    gc.collect()
    gc.freeze()
    node = Node(home)
    try:
        t0 = time.perf_counter()
        node.start()
        say(f"# node pid {node.pid} listening on {node.address} ({time.perf_counter() - t0:.1f} s)")
        verify = verify_rate(sample, 1, args.verify_seconds)  # type: ignore[arg-type]

        async def go() -> dict[str, Any]:
            async with grpc.aio.insecure_channel(node.address, options=CHANNEL_OPTIONS) as ch:
                await asyncio.wait_for(ch.channel_ready(), 30)
                stats = await ch.unary_unary(
                    "/alertmesh.v1.AlertService/GetStats",
                    request_serializer=api.GetStatsRequest.SerializeToString,
                    response_deserializer=api.Stats.FromString,
                )(api.GetStatsRequest(), timeout=30)
                out: dict[str, Any] = {"stored": stats.alerts, "mem_loaded": node.memory()}
                out.update(await run_checks(args, ch, node, stored))
                return out

        res = asyncio.run(go())
        node.stop()
        gc.collect()
        gc.freeze()
        server = asyncio.run(
            server_side_check(
                home, res["batches"], time.perf_counter() + args.max_seconds, args.profile
            )
        )
    finally:
        node.stop()
    rows = [
        (
            "(a) Ed25519 verify (pynacl), 1 thread",
            f"{verify.rate:,.0f} alerts/s; {verify.cpu_us:.0f} CPU µs/alert",
        ),
        *check_rows(args, res, server),
    ]
    print(
        f"\nChecks only, over a store of {res['stored']:,} alerts built once ({home});"
        f" {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; SQLite"
        f" {sqlite3.sqlite_version}; node code {code_version()}. RSS here is after a"
        " restart, not after a fill (see a full run for (d)).\n"
    )
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    single_us = res["single_cpu"][0] * 1e6
    print(f"\nnode CPU per single-value call = {single_us / verify.cpu_us:.1f} verifies")
    if args.profile:
        print(f"\ncProfile of 20 CheckIndicators handler calls:\n\n{server.profile}")
    for problem in res["problems"]:
        print(f"PROBLEM: {problem}")
    print(f"\ncommand: {command_line(shown)}")
    return 0 if not res["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
