"""The single-Publish path under concurrency: publishes that arrive together share a
group commit, still chain with consecutive seqs, and each answer says exactly what the
store holds (the answer is built from what was committed, not read back)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.app.service import AlertNode
from node.app.verify import Verifier
from node.core.limits import DEFAULT_LIMITS
from node.core.roster import Member, Roster
from node.crypto import Identity
from node.rpc.client import AlertClient
from node.store.sqlite import SqliteStore
from tests.factory import DOMAIN
from tests.procs import new_node

CALLS = 24


def draft(i: int) -> alert_pb2.Alert:
    alert = alert_pb2.Alert(
        category=alert_pb2.CATEGORY_PHISHING,
        severity=alert_pb2.SEVERITY_HIGH,
        confidence=80,
        title=f"concurrent {i}",
    )
    alert.indicators.add(type=DOMAIN, value=f"Concurrent-{i}.example.")
    return alert


@pytest.fixture
async def verifier() -> AsyncIterator[Verifier]:
    async with Verifier(DEFAULT_LIMITS, processes=1) as v:
        yield v


async def test_concurrent_publishes_share_commits_and_chain(
    tmp_path: Path, verifier: Verifier
) -> None:
    identity = Identity.generate()
    roster = Roster.of([Member("acme", identity.public_key)])
    path = tmp_path / "alerts.db"
    async with SqliteStore(path) as store:
        node = AlertNode(
            identity=identity, roster=roster, store=store, verifier=verifier, limits=DEFAULT_LIMITS
        )
        await node.start()
        await node.publish(draft(0))  # seq 1, a commit of its own
        commits = store.commits
        answers = await asyncio.gather(*(node.publish(draft(i)) for i in range(1, CALLS + 1)))
        shared = store.commits - commits
        stats = await node.stats()
    # They arrived together: far fewer commits than publishes (one, normally).
    assert 1 <= shared < CALLS // 2
    assert stats.counters["store_commits"] == commits + shared
    assert stats.counters["store_inline_commits"] == store.inline_commits
    stored = [s for s, duplicate in answers if not duplicate]
    assert len(stored) == CALLS
    by_seq = {s.record.seq: s for s in stored}
    assert sorted(by_seq) == list(range(2, CALLS + 2))  # consecutive, no gap, no repeat
    for seq in range(3, CALLS + 2):
        assert by_seq[seq].record.prev == by_seq[seq - 1].record.id
    # Each answer is what the store holds: same record, position (cursor) and time.
    async with SqliteStore(path) as reopened:
        for s in stored:
            assert await reopened.get(s.record.id) == s


async def test_concurrent_publish_answers_match_the_node(tmp_path: Path) -> None:
    """Through gRPC on a real node: every answer's cursor and body are the stored ones,
    and the seqs of concurrent calls are consecutive."""
    proc = new_node(tmp_path / "node", "acme", {})
    try:
        async with AlertClient(proc.address) as client:
            requests = [
                api.PublishRequest(
                    category=alert_pb2.CATEGORY_SCAM,
                    title=f"grpc {i}",
                    indicators=[alert_pb2.Indicator(type=DOMAIN, value=f"grpc-{i}.example")],
                )
                for i in range(CALLS)
            ]
            answers = await asyncio.gather(*(client.publish(r) for r in requests))
            assert sorted(a.alert.alert.seq for a in answers) == list(range(1, CALLS + 1))
            for a in answers:
                got = await client.get(a.id)
                assert got.cursor == a.alert.cursor and got.signed == a.alert.signed
                assert got.received_at_ms == a.alert.received_at_ms
            stats = await client.stats()
            assert 1 <= stats.counters["store_commits"] <= CALLS
    finally:
        proc.kill()


async def test_a_publish_batch_after_a_quiet_spell_is_one_commit(
    tmp_path: Path, verifier: Verifier
) -> None:
    """The first of a batch's gathered puts must not commit alone on the loop's thread
    (a sparse put would): the whole batch shares one group commit."""
    identity = Identity.generate()
    roster = Roster.of([Member("acme", identity.public_key)])
    async with SqliteStore(tmp_path / "alerts.db") as store:
        node = AlertNode(
            identity=identity, roster=roster, store=store, verifier=verifier, limits=DEFAULT_LIMITS
        )
        await node.start()
        await node.publish(draft(0))
        await asyncio.sleep(0.01)  # quiet: the next put alone would commit on the loop
        commits = store.commits
        results = await node.publish_batch([(draft(i), f"batch-{i}") for i in range(1, 11)])
        assert all(r.error is None for r in results)
        assert store.commits - commits == 1
        assert await store.count() == 11
