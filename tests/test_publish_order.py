"""Own alerts reach the store in the order they were signed, whatever mix of Publish and
PublishBatch calls runs at once: none is refused when nothing failed, and the node's
chain is 1..n with no gap (review s22 H1). And a commit that holds alert N+1 before N
still stores both."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.app.service import AlertNode
from node.store import PutOutcome, SqliteStore, sqlite
from node.store.base import AlertStore
from node.store.memory import MemoryStore
from node.store.postgres import PostgresStore
from tests.factory import Author, now_ms
from tests.pg import PgServer
from tests.test_ingest_follow_up import draft, node_with
from tests.test_sparse_commit import Clock


@pytest.fixture(params=["memory", "sqlite-loop", "sqlite-writer", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AlertStore]:
    """The memory store, SQLite with every single put on the loop's thread while the
    writer is idle or every put through the writer's queue, and PostgreSQL."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "postgres":
        server: PgServer = request.getfixturevalue("pg_server")
        async with PostgresStore(await server.new_database()) as pg:
            yield pg
        return
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0 if request.param == "sqlite-loop" else 3600.0)
    async with SqliteStore(tmp_path / "a.db", clock=Clock()) as opened:
        yield opened


async def published_together(node: AlertNode, rng: random.Random, round_: int) -> int:
    """Start a random mix of single publishes and batches, mostly in one loop step (some
    with a step between), and check every one succeeds; how many alerts they signed."""
    calls: list[asyncio.Task[object]] = []
    signed = 0
    for call in range(rng.randint(2, 6)):
        if rng.random() < 0.5:
            title = f"single-{round_}-{call}"
            calls.append(asyncio.create_task(node.publish(draft(title))))
            signed += 1
        else:
            items = [(draft(f"batch-{round_}-{call}-{i}"), "") for i in range(rng.randint(1, 4))]
            calls.append(asyncio.create_task(node.publish_batch(items)))
            signed += len(items)
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    for answer in await asyncio.gather(*calls):
        if isinstance(answer, list):  # a batch: every item stored
            assert [item.error for item in answer] == [None] * len(answer)
    return signed


async def test_concurrent_publishes_and_batches_are_never_refused_and_chain_without_a_gap(
    store: AlertStore,
) -> None:
    seed = int(os.environ.get("ALERTMESH_SEED", random.randrange(1 << 32)))
    print(f"seed {seed} (ALERTMESH_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    async with node_with(store, Author()) as node:  # type: ignore[arg-type]
        await node.publish(draft("first"))
        n = 1
        for round_ in range(12):
            n += await published_together(node, rng, round_)
        await node.drain()
        own = await store.range(node.identity.public_key, 1, n + 10, limit=n + 10)
        assert [a.seq for a in own] == list(range(1, n + 1))
        assert [a.prev for a in own] == [b"", *(a.id for a in own[:-1])]
        assert not node.own.lost and await store.count() == n
        if isinstance(store, SqliteStore) and sqlite.SPARSE_GAP_S == 0.0:
            assert store.inline_commits > 1  # the loop path took part (not only the first)


@pytest.mark.parametrize("impl", ["sqlite", "postgres"])
async def test_one_commit_stores_own_alerts_that_queued_out_of_order(
    impl: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit whose puts hold alert 3 before alert 2 checks them in seq order: both
    follow what is held, so both are stored, and in seq order."""
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 3600.0)
    opened: AlertStore
    if impl == "sqlite":
        opened = SqliteStore(tmp_path / "a.db", clock=Clock())
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        opened = PostgresStore(await server.new_database())
    me = Author()
    one, two, three = me.record(), me.record(), me.record()
    async with opened as store:
        assert await store.put([one], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]
        together = await asyncio.gather(
            *(store.put([r], now_ms=now_ms(), gathered=True, own=True) for r in (three, two))
        )
        assert together == [[PutOutcome.ACCEPTED]] * 2
        stored = [await store.get(r.id) for r in (one, two, three)]
        assert [s.local_seq for s in stored if s is not None] == [1, 2, 3]
