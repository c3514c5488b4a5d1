"""The node's verifier processes: they come and go with the node, and losing one loses
nothing."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from pathlib import Path

import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.app.verify import PROCESS_MIN, Admitted, Verifier, admit
from node.core.alerts import AlertRecord, alert_id
from node.core.errors import InvalidSignature
from node.core.limits import DEFAULT_LIMITS
from node.core.roster import Member, Roster
from node.rpc.client import AlertClient
from tests.clusters import eventually
from tests.factory import DOMAIN, Author, now_ms
from tests.procs import NodeProcess, alive, children, cpu_ticks, new_node

BATCH = max(PROCESS_MIN, 200)


async def exited(pids: list[int]) -> bool:
    return not any(alive(p) for p in pids)


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
        await eventually(lambda: exited(workers), "the killed workers to exit", timeout=20)
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


async def test_workers_killed_mid_batch_lose_nothing(tmp_path: Path) -> None:
    author = Author()
    node = new_node(tmp_path / "n", "acme", {"m": author.key})
    try:
        assert node.proc is not None
        await ingest_batch(node, author, "warm")  # the workers are up
        stored = BATCH
        for attempt in range(3):
            batches = [
                [
                    author.next(indicators=[(DOMAIN, f"r{attempt}b{b}i{i}.example")])
                    for i in range(1000)
                ]
                for b in range(6)
            ]
            workers = children(node.proc.pid)
            busy_from = sum(cpu_ticks(p) for p in workers)
            async with AlertClient(node.address) as client:
                calls = [asyncio.create_task(client.ingest(b)) for b in batches]
                # Kill them once they are working on these batches, none answered yet.
                for _ in range(2000):  # polling /proc: at most ~10 s
                    busy = sum(cpu_ticks(p) for p in workers) > busy_from + 1
                    if busy or any(c.done() for c in calls):
                        break
                    await asyncio.sleep(0.005)
                mid_batch = not any(c.done() for c in calls)
                for pid in workers:
                    os.kill(pid, signal.SIGKILL)
                responses = await asyncio.gather(*calls)
            for response in responses:
                assert [r.outcome for r in response.results] == [api.INGEST_OUTCOME_ACCEPTED] * 1000
            stored += 6000
            if mid_batch:
                break
        assert mid_batch, "the workers finished before they could be killed, 3 times"
        assert "checking its batch on a thread" in node.log.read_text()
        async with AlertClient(node.address) as client:
            assert (await client.stats()).alerts == stored
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
            await eventually(
                functools.partial(exited, workers), f"workers to exit after {how.name}", 20
            )
        finally:
            node.kill()


async def test_workers_that_cannot_start_leave_the_checks_to_a_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fault injection: the worker command fails at once (here, a module that does not
    exist). Every alert is still checked, bad ones refused, on the thread."""
    author = Author()
    roster = Roster.of([Member("m", author.key)])
    signed = [author.next(indicators=[(DOMAIN, f"t{i}.example")]) for i in range(BATCH)]
    signed[7] = alert_pb2.SignedAlert(body=signed[7].body, signature=bytes(64))
    items = [
        Admitted(alert_id(s.body), s.body, s.signature, admit(s.body, DEFAULT_LIMITS, roster))
        for s in signed
    ]
    async with Verifier(DEFAULT_LIMITS, processes=2, worker="node.app.no_such_worker") as v:
        for _ in range(3):
            checked = await v.check(items, now_ms())
            assert isinstance(checked[7], InvalidSignature)
            assert [c.id for c in checked if isinstance(c, AlertRecord)] == [
                item.id for i, item in enumerate(items) if i != 7
            ]
    assert "checking its batch on a thread" in caplog.text
