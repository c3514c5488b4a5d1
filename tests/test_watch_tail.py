"""Subscribe from memory: the SQLite store answers a watch that is at most TAIL_ROWS rows
behind from the rows it just committed, with no query on the reader thread, and falls
back to the query when it is further behind. Either way a subscriber gets every alert
once, in commit order (issue 15 target 3)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core.alerts import AlertRecord
from node.rpc.client import AlertClient
from node.store.base import Query
from node.store.memory import MemoryStore
from node.store.sqlite import TAIL_ROWS, SqliteStore
from tests.factory import ADDRESS, DOMAIN, Author, now_ms
from tests.procs import new_node

PHISHING, SCAM = alert_pb2.CATEGORY_PHISHING, alert_pb2.CATEGORY_SCAM


def records(author: Author, n: int) -> list[AlertRecord]:
    out = []
    for i in range(n):
        category = SCAM if i % 3 == 0 else PHISHING
        indicators = [(DOMAIN, f"d{i % 7}.example"), (ADDRESS, f"eip155:1:0x{i:040x}")]
        out.append(author.record(category=category, indicators=indicators))
    return out


class CountingReads(SqliteStore):
    """The SQLite store, counting the reads its reader connection runs."""

    reads = 0

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> Iterable[Sequence[Any]]:
        self.reads += 1
        return await super()._rows(sql, params)


async def test_after_answers_from_memory_when_close_behind_and_by_query_otherwise(
    tmp_path: Path,
) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    a, b = Author(), Author()
    alerts = records(a, 900) + records(b, 900)
    rng.shuffle(alerts)  # per author, seqs arrive out of order: some wait, none is lost
    reference = MemoryStore()
    async with CountingReads(tmp_path / "alerts.db") as store:
        i = 0
        while i < len(alerts):  # single puts (publishes) and batches (ingests), mixed
            size = rng.choice([1, 1, 1, 5, 60])
            part = alerts[i : i + size]
            dup = [alerts[rng.randrange(i + 1)]] if rng.random() < 0.2 else []
            for s in (store, reference):
                await s.put(part + dup, now_ms=1000 + i)  # with an already held copy
            i += size
        last = await store.last_cursor()
        assert last == len(alerts) == await reference.last_cursor()
        queries = [
            Query(now_ms=now_ms()),
            Query(now_ms=now_ms(), categories=frozenset([SCAM])),
            Query(now_ms=now_ms(), keys=frozenset(["domain:d3.example"])),
            Query(now_ms=now_ms(), origins=frozenset([b.key])),
        ]
        for cursor in [0, 1, last - TAIL_ROWS - 1, last - TAIL_ROWS, last - 300, last - 1, last]:
            for query in queries:
                before = store.reads
                got = await store.after(query, cursor=cursor, limit=256)
                want = await reference.after(query, cursor=cursor, limit=256)
                assert [(s.local_seq, s.record) for s in got] == [
                    (s.local_seq, s.record) for s in want
                ], (cursor, query)
                from_memory = cursor >= last - TAIL_ROWS
                assert (store.reads == before) == from_memory, (cursor, store.reads - before)


def publish(title: str, n: int) -> api.PublishRequest:
    return api.PublishRequest(
        category=PHISHING,
        severity=alert_pb2.SEVERITY_HIGH,
        title=title,
        indicators=[alert_pb2.Indicator(type=DOMAIN, value=f"drainer-{n}.example")],
    )


async def received(client: AlertClient, request: api.SubscribeRequest, n: int) -> list[bytes]:
    ids = []
    call = client.subscribe(request)
    async for event in call:
        ids.append(event.alert.id)
        if len(ids) == n:
            break
    call.cancel()  # type: ignore[attr-defined]
    return ids


async def test_a_subscriber_gets_every_alert_once_in_order_across_a_gap(tmp_path: Path) -> None:
    node = new_node(tmp_path / "node", "acme", {})
    try:
        async with AlertClient(node.address) as client:
            live = asyncio.create_task(
                received(client, api.SubscribeRequest(from_start=True), 60 + 2 * TAIL_ROWS)
            )
            ids: list[bytes] = []
            for i in range(30):  # paced single publishes: answered from memory
                ids.append((await client.publish(publish(f"single {i}", i))).alert.id)
                await asyncio.sleep(0.005)
            for start in range(30, 30 + 2 * TAIL_ROWS, 1000):  # more rows than the tail
                size = min(1000, 30 + 2 * TAIL_ROWS - start)
                batch = [publish(f"batch {start + j}", start + j) for j in range(size)]
                ids += [r.id for r in (await client.publish_batch(batch)).results]
            for i in range(30):
                ids.append((await client.publish(publish(f"late {i}", 10**6 + i))).alert.id)
            assert len(set(ids)) == len(ids) == 60 + 2 * TAIL_ROWS
            async with asyncio.timeout(60):
                assert await live == ids
            # A subscriber replaying the whole store starts far behind the tail: the
            # query first, then memory, with no seam.
            replay = await received(client, api.SubscribeRequest(from_start=True), len(ids))
            assert replay == ids
    finally:
        node.kill()
