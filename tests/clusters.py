"""Local clusters of real node processes for tests (loopback, free ports)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from node import cluster
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.rpc.client import AlertClient

CONVERGE_TIMEOUT_S = 120.0


@asynccontextmanager
async def cluster_running(
    directory: Path, n: int, *, seed: int = 1, plaintext: bool = False
) -> AsyncIterator[list[cluster.ClusterNode]]:
    """running_cluster for async tests: start and stop in a worker thread."""
    try:
        yield await asyncio.to_thread(cluster.up, directory, n, seed=seed, plaintext=plaintext)
    finally:
        killed = (
            await asyncio.to_thread(cluster.down, directory)
            if (directory / cluster.MANIFEST).exists()
            else []
        )
    assert not killed, f"nodes that ignored SIGTERM: {[n.name for n in killed]}"


@contextmanager
def running_cluster(
    directory: Path, n: int, *, seed: int = 1
) -> Iterator[list[cluster.ClusterNode]]:
    try:
        yield cluster.up(directory, n, seed=seed)
    finally:
        killed = cluster.down(directory) if (directory / cluster.MANIFEST).exists() else []
    assert not killed, f"nodes that ignored SIGTERM: {[n.name for n in killed]}"


async def eventually(
    predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = CONVERGE_TIMEOUT_S
) -> None:
    """Poll until `predicate` holds; fail with `what` after `timeout` (a bound, not a target)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {what}")


async def stats(nodes: list[cluster.ClusterNode]) -> list[api.Stats]:
    out = []
    for node in nodes:
        async with AlertClient(node.api) as client:
            out.append(await client.stats())
    return out


async def counts(nodes: list[cluster.ClusterNode]) -> list[int]:
    return [s.alerts for s in await stats(nodes)]


async def digests(nodes: list[cluster.ClusterNode]) -> list[str]:
    return [s.digest for s in await stats(nodes)]
