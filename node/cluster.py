"""Local multi-node clusters for trying alertmesh and for tests.

`alertmesh cluster up --nodes N --dir DIR` creates N nodes under DIR (each its
own identity, store, ports and log), one shared roster, and a partial peer graph
(a ring plus random chords once N > 8), starts each node as its own process and
returns when all serve. `alertmesh cluster down --dir DIR` stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from node.app.config import CONFIG_FILE, Config, init_home
from node.app.verify import auto_processes
from node.core.errors import ConfigError
from node.core.roster import Roster

FULL_MESH_MAX = 8
CHORDS_PER_NODE = 1
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
MANIFEST = "cluster.json"


def free_port(host: str = "127.0.0.1", taken: set[int] | None = None) -> int:
    """A port that is free now, chosen below the kernel's ephemeral range so that the
    nodes' own outgoing connections cannot take it before the node binds it, and not
    in `taken` (ports already given to this cluster's nodes, not bound yet); it is
    added to `taken`."""
    rng = random.Random()
    taken = set() if taken is None else taken
    for _ in range(200):
        port = rng.randrange(20_000, 32_000)
        if port in taken:
            continue
        taken.add(port)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise ConfigError("no free port found between 20000 and 32000")


def peer_graph(n: int, seed: int) -> dict[int, set[int]]:
    """Undirected edges over 0..n-1: everyone with everyone up to 8 nodes, else a
    ring plus random chords (connected, degree about 4)."""
    edges: dict[int, set[int]] = {i: set() for i in range(n)}

    def link(a: int, b: int) -> None:
        if a != b:
            edges[a].add(b)
            edges[b].add(a)

    if n <= FULL_MESH_MAX:
        for a in range(n):
            for b in range(a + 1, n):
                link(a, b)
        return edges
    rng = random.Random(seed)
    for a in range(n):
        link(a, (a + 1) % n)
        for _ in range(CHORDS_PER_NODE):
            link(a, rng.randrange(n))
    return edges


@dataclass(frozen=True)
class ClusterNode:
    name: str
    home: Path
    api: str
    peer: str

    @property
    def pid_file(self) -> Path:
        return self.home / "node.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "node.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid


def create(directory: Path, n: int, *, seed: int = 1, plaintext: bool = False) -> list[ClusterNode]:
    """Lay out a new cluster of `n` nodes under `directory` (nothing is started). Peer
    sessions run over TLS pinned to the shared roster, or over plaintext if asked (a
    lab comparison, e.g. the TLS benchmark)."""
    if n < 1:
        raise ConfigError("a cluster needs at least one node")
    if (directory / MANIFEST).exists():
        raise ConfigError(f"{directory} already holds a cluster; stop it and remove it first")
    directory.mkdir(parents=True, exist_ok=True)
    nodes = []
    configs = []
    taken: set[int] = set()
    for i in range(n):
        name = f"node{i + 1}"
        api = f"127.0.0.1:{free_port(taken=taken)}"
        peer = f"127.0.0.1:{free_port(taken=taken)}"
        configs.append(init_home(directory / name, name=name, api_listen=api, peer_listen=peer))
        nodes.append(ClusterNode(name, directory / name, api, peer))
    roster = Roster.of([m for c in configs for m in c.roster()])
    graph = peer_graph(n, seed)
    for i, node in enumerate(nodes):
        (node.home / "roster.toml").write_text(roster.to_toml())
        # Each edge is dialed from its lower-numbered end.
        dials = [nodes[j].name for j in sorted(graph[i]) if j > i]
        config = node.home / CONFIG_FILE
        text = config.read_text().replace("connect = []", f"connect = {json.dumps(dials)}")
        # The nodes share this host's CPUs: two verifier processes each on two cores made
        # five nodes slower and dearer per alert than one each (docs/benchmarks.md).
        text = _share_cpus(text, auto_processes(n))
        if plaintext:
            text = text.replace("insecure_plaintext = false", "insecure_plaintext = true")
        config.write_text(text)
    (directory / MANIFEST).write_text(
        json.dumps([{"name": x.name, "api": x.api, "peer": x.peer} for x in nodes], indent=2)
    )
    return nodes


def _share_cpus(config_text: str, processes: int) -> str:
    """A node config of a local cluster with its share of the host's verifier processes."""
    line = 'processes = "auto"'
    if line not in config_text:
        raise ConfigError(f"the node config template no longer has the line {line!r}")
    return config_text.replace(line, f"processes = {processes}")


def load(directory: Path) -> list[ClusterNode]:
    try:
        entries = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"no cluster in {directory}; create one: alertmesh cluster up") from exc
    return [ClusterNode(e["name"], directory / e["name"], e["api"], e["peer"]) for e in entries]


def add_node(directory: Path) -> ClusterNode:
    """Create one more member, add it to every roster, and have it dial two others."""
    nodes = load(directory)
    name = f"node{len(nodes) + 1}"
    taken = {int(address.rpartition(":")[2]) for n in nodes for address in (n.api, n.peer)}
    config = init_home(
        directory / name,
        name=name,
        api_listen=f"127.0.0.1:{free_port(taken=taken)}",
        peer_listen=f"127.0.0.1:{free_port(taken=taken)}",
    )
    roster = Roster.of([*Config.load(nodes[0].home).roster(), *config.roster()])
    new = ClusterNode(name, config.home, config.api_listen, config.peer_listen)
    for node in [*nodes, new]:
        (node.home / "roster.toml").write_text(roster.to_toml())
    dials = [n.name for n in nodes[:2]]
    path = new.home / CONFIG_FILE
    text = path.read_text().replace("connect = []", f"connect = {json.dumps(dials)}")
    path.write_text(_share_cpus(text, auto_processes(len(nodes) + 1)))
    entries = [{"name": x.name, "api": x.api, "peer": x.peer} for x in [*nodes, new]]
    (directory / MANIFEST).write_text(json.dumps(entries, indent=2))
    return new


def start(node: ClusterNode) -> subprocess.Popen[bytes]:
    """Start one node as its own process (its own session: it outlives this one)."""
    out = node.home / "node.out"
    out.write_text("")
    with open(node.log_file, "ab") as log, open(out, "wb") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "run", "--home", str(node.home)],
            stdout=stdout,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    node.pid_file.write_text(f"{proc.pid}\n")
    return proc


def wait_serving(node: ClusterNode, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    out = node.home / "node.out"
    while time.monotonic() < deadline:
        if "listening on " in out.read_text():
            return
        if proc is not None and proc.poll() is not None:
            tail = node.log_file.read_text()[-2000:]
            raise ConfigError(f"{node.name} exited with status {proc.returncode}:\n{tail}")
        time.sleep(0.05)
    raise ConfigError(f"{node.name} did not start within {timeout:.0f} s; see {node.log_file}")


def up(directory: Path, n: int, *, seed: int = 1, plaintext: bool = False) -> list[ClusterNode]:
    """Create the cluster if needed, start every node that is not running, and wait
    until all serve and every peer session of the graph is open."""
    if (directory / MANIFEST).exists():
        nodes = load(directory)
    else:
        nodes = create(directory, n, seed=seed, plaintext=plaintext)
    procs = {node.name: start(node) for node in nodes if node.pid() is None}
    try:
        for node in nodes:
            wait_serving(node, procs.get(node.name), START_TIMEOUT_S)
        asyncio.run(wait_connected(nodes, START_TIMEOUT_S))
    except BaseException:
        down(directory)
        raise
    return nodes


def expected_peers(nodes: list[ClusterNode]) -> dict[str, set[str]]:
    """Each node's neighbours in the cluster's peer graph (from the configs)."""
    peers: dict[str, set[str]] = {node.name: set() for node in nodes}
    for node in nodes:
        for other in Config.load(node.home).connect:
            if other in peers:
                peers[node.name].add(other)
                peers[other].add(node.name)
    return peers


async def wait_connected(nodes: list[ClusterNode], timeout: float) -> None:
    from node.rpc.client import AlertClient

    wanted = expected_peers(nodes)
    deadline = time.monotonic() + timeout
    for node in nodes:
        async with AlertClient(node.api) as client:
            while True:
                stats = await client.stats()
                if {p.name for p in stats.peers if p.connected} >= wanted[node.name]:
                    break
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"{node.name} did not connect to its peers; see {node.log_file}"
                    )
                await asyncio.sleep(0.05)


def stop(node: ClusterNode, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop one node; False if it had to be killed after `timeout`."""
    pid = node.pid()
    clean = True
    if pid is None:
        node.pid_file.unlink(missing_ok=True)
        return clean
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while node.pid() is not None and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if node.pid() is not None:
        # Leave the stuck node's stacks in its log (see cmd_run), then kill it.
        os.kill(pid, signal.SIGUSR1)
        time.sleep(0.5)
        print(f"{node.name} did not stop within {timeout:.0f} s; killed it", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)
        clean = False
        while node.pid() is not None:
            _reap(pid)
            time.sleep(0.05)
    node.pid_file.unlink(missing_ok=True)
    return clean


def _reap(pid: int) -> None:
    """Collect our own exited child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def down(directory: Path) -> list[ClusterNode]:
    """Stop every node; returns the nodes that had to be killed (none, normally)."""
    nodes = load(directory)
    for node in nodes:
        pid = node.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
    return [node for node in nodes if not stop(node)]
