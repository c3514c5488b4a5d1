"""The garbage collector after a large ingest (node/app/collector.py): the node settles
once alerts stop arriving, so that what the ingest left alive is not walked by the young
collections that land on the next calls."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.app.collector import SETTLE_AFTER_ALERTS, Collector, SettlePolicy
from node.rpc.client import AlertClient
from tests.factory import DOMAIN, Author
from tests.procs import NodeProcess, new_node


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_a_settle_is_due_after_a_large_ingest_once_alerts_stop() -> None:
    policy = SettlePolicy(after_alerts=1_000, quiet_s=0.5)
    assert not policy.accepted(999, now=10.0)
    assert not policy.due
    assert policy.accepted(1, now=10.1)  # the 1,000th alert makes it due, once
    assert not policy.accepted(500, now=10.3)
    assert policy.due
    assert policy.quiet_in(10.3) == pytest.approx(0.5)  # alerts still arriving
    policy.accepted(1, now=10.6)
    assert policy.quiet_in(10.9) == pytest.approx(0.2)
    assert policy.quiet_in(11.2) == 0.0
    policy.settled()
    assert not policy.due
    assert not policy.accepted(999, now=20.0)  # the count starts again


def test_a_settle_freezes_survivors_and_still_collects_frozen_objects_that_became_cycles(
    restore_gc: None,
) -> None:
    class Node:
        pass

    collector = Collector(SettlePolicy(after_alerts=1))
    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    gone = weakref.ref(a)
    collector.serving()
    try:
        frozen = gc.get_freeze_count()
        survivors = [Node() for _ in range(1_000)]
        collector.settle()
        assert gc.get_freeze_count() >= frozen + len(survivors)
        assert gc.get_count()[0] < 100  # nothing left for the next young collection
        del a, b  # a cycle of objects that were frozen: only a full pass finds it
        gc.collect()
        assert gone() is not None  # frozen objects are not walked...
        collector.settle()
        assert gone() is None  # ...until the next settle unfreezes them first
        counts = collector.counters()
        assert counts["gc_settles"] == 2
        assert counts["gc_collections_gen2"] >= 3  # serving's, the test's and the settles'
        assert counts["gc_frozen_objects"] == gc.get_freeze_count()
    finally:
        gc.callbacks.remove(collector._timed)


async def test_a_settle_waits_until_alerts_stop_arriving(restore_gc: None) -> None:
    now = [0.0]
    collector = Collector(SettlePolicy(after_alerts=10, quiet_s=0.5), clock=lambda: now[0])
    collector.serving()
    task = asyncio.create_task(collector.run())
    try:
        collector.on_alerts([object()] * 10, None)
        await asyncio.sleep(0.05)
        assert collector.settles == 0  # 0.05 s of the 0.5 s quiet: not yet
        now[0] = 0.6
        for _ in range(200):
            await asyncio.sleep(0.01)
            if collector.settles:
                break
        assert collector.settles == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert collector._timed not in gc.callbacks  # the callback leaves with the task


async def test_a_node_settles_after_a_large_ingest_and_still_finds_every_value(
    tmp_path: Path,
) -> None:
    member = Author()
    node: NodeProcess = new_node(tmp_path / "n", "acme", {"partner": member.key})
    try:
        async with AlertClient(node.address) as client:
            start = dict((await client.stats()).counters)
            assert start["gc_settles"] == 0
            assert "gossip_eager_peers" in start  # the peer layer's counters are kept
            domains = [f"settle-{i}.example" for i in range(SETTLE_AFTER_ALERTS)]
            signed = [member.next(indicators=[(DOMAIN, d)]) for d in domains]
            small = await client.ingest(signed[:100])  # below the threshold: no settle
            assert all(r.outcome == 1 for r in small.results)
            for i in range(100, len(signed), 500):
                response = await client.ingest(signed[i : i + 500])
                assert all(r.outcome == 1 for r in response.results)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                counters = dict((await client.stats()).counters)
                if counters["gc_settles"]:
                    break
                await asyncio.sleep(0.2)
            assert counters["gc_settles"] == 1
            assert counters["gc_frozen_objects"] > start["gc_frozen_objects"]
            asked = [domains[0], domains[len(domains) // 2], domains[-1], "never-flagged.example"]
            results = (await client.check(asked)).results
            assert [bool(r.matches) for r in results] == [True, True, True, False]
    finally:
        node.kill()
