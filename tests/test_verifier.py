"""The node's verifier processes: they come and go with the node, and losing one loses
nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.app.verify import PROCESS_MIN
from node.rpc.client import AlertClient
from tests.factory import DOMAIN, Author
from tests.procs import NodeProcess, new_node

BATCH = max(PROCESS_MIN, 200)


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


async def ingest_batch(node: NodeProcess, author: Author, tag: str) -> list[int]:
    batch = [author.next(indicators=[(DOMAIN, f"{tag}{i}.example")]) for i in range(BATCH)]
    async with AlertClient(node.address) as client:
        response = await client.ingest(batch)
    return [r.outcome for r in response.results]


async def test_a_killed_verifier_process_is_replaced_and_its_batch_still_checked(
    tmp_path: Path,
) -> None:
    author = Author()
    node = new_node(tmp_path / "n", "acme", {"m": author.key})
    try:
        assert node.proc is not None
        assert children(node.proc.pid) == []  # started on the first large batch only
        outcomes = await ingest_batch(node, author, "first")
        assert outcomes == [api.INGEST_OUTCOME_ACCEPTED] * BATCH
        workers = children(node.proc.pid)
        assert workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not any(alive(p) for p in workers))
        # Every batch is still checked and stored; new workers take over within seconds.
        batches, replaced = 1, []
        deadline = time.monotonic() + 30
        while not replaced and time.monotonic() < deadline:
            outcomes = await ingest_batch(node, author, f"after{batches}")
            assert outcomes == [api.INGEST_OUTCOME_ACCEPTED] * BATCH
            batches += 1
            replaced = children(node.proc.pid)
            if not replaced:
                await asyncio.sleep(1.0)
        assert replaced and not set(replaced) & set(workers)
        async with AlertClient(node.address) as client:
            assert (await client.stats()).alerts == batches * BATCH
        assert "verifier process" in node.log.read_text()
    finally:
        node.kill()


async def test_verifier_processes_end_with_the_node(tmp_path: Path) -> None:
    author = Author()
    for how in (signal.SIGTERM, signal.SIGKILL):
        node = new_node(tmp_path / how.name, "acme", {"m": author.key})
        try:
            assert node.proc is not None
            await ingest_batch(node, author, how.name)
            workers = children(node.proc.pid)
            assert workers
            node.stop(how)
            assert wait_until(lambda: not any(alive(p) for p in workers)), how.name  # noqa: B023
        finally:
            node.kill()
