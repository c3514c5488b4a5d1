"""A client that retries a Publish with the same request id gets the first alert's id,
also when its first call was cancelled while the store committed: the node's commit task
(node/app/commits.py), not the caller that left, answers the retries of its request."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node.app.publish_requests import unstored_error
from node.core.alerts import AlertRecord
from node.core.errors import StoreClosed
from node.store.base import OwnChainBroken, PutOutcome, nothing_written
from tests.factory import Author
from tests.test_ingest_follow_up import HeldStore, draft, node_with, until


class HeldBatchStore(HeldStore):
    """HeldStore that also takes PublishBatch's puts (gathered=True)."""

    async def put(
        self,
        records: Sequence[AlertRecord],
        *,
        now_ms: int,
        request_id: str = "",
        gathered: bool = False,
        own: bool = False,
    ) -> list[PutOutcome]:
        return await HeldStore.put(self, records, now_ms=now_ms, request_id=request_id, own=own)


async def cancelled(task: asyncio.Task[object]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_retry_after_the_first_caller_left_gets_the_first_alert() -> None:
    store = HeldBatchStore()
    async with node_with(store, Author()) as node:
        store.open.clear()
        first = asyncio.create_task(node.publish(draft("one"), request_id="r1"))
        await until(lambda: store.waiting == 1, "the first commit is held back")
        await cancelled(first)  # the client gives up while the disk is slow ...
        retry = asyncio.create_task(node.publish(draft("one"), request_id="r1"))
        await asyncio.sleep(0.02)  # ... and retries before the first commit lands
        store.open.set()
        stored, retried = await retry
        await node.drain()
        own = await store.range(node.identity.public_key, 1, 10, limit=10)
        assert [a.seq for a in own] == [1]  # one alert for one request
        assert retried and stored.record.id == own[0].id
        assert await store.request("r1") == own[0].id


async def test_a_retry_waiting_when_the_first_caller_leaves_gets_the_first_alert() -> None:
    store = HeldBatchStore()
    async with node_with(store, Author()) as node:
        store.open.clear()
        first = asyncio.create_task(node.publish(draft("one"), request_id="r1"))
        await until(lambda: store.waiting == 1, "the first commit is held back")
        retry = asyncio.create_task(node.publish(draft("one"), request_id="r1"))
        await asyncio.sleep(0.02)  # the retry waits on the first's answer
        await cancelled(first)
        store.open.set()
        stored, retried = await retry
        await node.drain()
        assert retried and stored.record.seq == 1


async def test_a_retry_batch_gets_its_answers_when_the_first_batch_was_cancelled() -> None:
    store = HeldBatchStore()
    async with node_with(store, Author()) as node:
        store.open.clear()
        first = asyncio.create_task(node.publish_batch([(draft("x"), "q1")]))
        await until(lambda: store.waiting == 1, "the first batch's commit is held back")
        retry = asyncio.create_task(node.publish_batch([(draft("x"), "q1"), (draft("y"), "q2")]))
        await asyncio.sleep(0.02)
        await cancelled(first)
        store.open.set()
        results = await retry
        await node.drain()
        own = await store.range(node.identity.public_key, 1, 10, limit=10)
        assert [a.seq for a in own] == [1, 2]
        assert [(r.id, r.duplicate, r.error) for r in results] == [
            (own[0].id, True, None),
            (own[1].id, False, None),
        ]
        assert await store.request("q2") == own[1].id
        again = await node.publish_batch([(draft("y"), "q2")])
        assert again[0].duplicate and again[0].id == own[1].id


@pytest.mark.parametrize("batch", [False, True])
async def test_no_request_is_left_pending_after_the_commits(batch: bool) -> None:
    store = HeldBatchStore()
    async with node_with(store, Author()) as node:
        store.open.clear()
        if batch:
            first = asyncio.create_task(node.publish_batch([(draft("x"), "q1")]))
        else:
            first = asyncio.create_task(node.publish(draft("x"), request_id="q1"))
        await until(lambda: store.waiting == 1, "the commit is held back")
        await cancelled(first)
        store.open.set()
        await node.drain()
        assert node.requests.pending == {}


async def test_a_hook_that_fails_is_logged_and_changes_neither_the_answer_nor_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, author = HeldBatchStore(), Author()
    async with node_with(store, author) as node:

        def broken(records: Sequence[AlertRecord], source: bytes | None) -> None:
            raise RuntimeError("a bug in a hook")

        gossiped: list[bytes] = []
        node.hooks.insert(0, broken)
        node.hooks.append(lambda records, source: gossiped.extend(r.id for r in records))
        with caplog.at_level("ERROR"):
            stored, _ = await node.publish(draft("h"), request_id="h1")
            (item,) = await node.publish_batch([(draft("i"), "h2")])
            signed = author.next()
            (ingested,) = await node.ingest([(signed.body, signed.signature)], source=b"p" * 32)
        assert item.error is None and ingested.error is None
        assert gossiped == [stored.record.id, item.id, ingested.id]
        assert await store.request("h1") == stored.record.id
        failures = [r for r in caplog.records if "hook failed" in r.getMessage()]
        assert len(failures) == 3 and all(r.exc_info for r in failures)


class DiskFullOnce(HeldBatchStore):
    """A store whose next `full` puts fail as SQLite's do when the disk is full (the
    puts of one batch share one group commit: they fail together). Puts wait for `open`
    first, as HeldStore's commits do (a slow disk that turns out to be full)."""

    full = 0

    async def put(
        self,
        records: Sequence[AlertRecord],
        *,
        now_ms: int,
        request_id: str = "",
        gathered: bool = False,
        own: bool = False,
    ) -> list[PutOutcome]:
        await self.open.wait()
        if self.full:
            self.full -= 1
            await asyncio.sleep(0)
            # As SqliteStore marks a transaction that never committed (rolled back).
            raise nothing_written(sqlite3.OperationalError("database or disk is full"))
        return await HeldBatchStore.put(
            self, records, now_ms=now_ms, request_id=request_id, own=own
        )


@pytest.mark.parametrize("batch", [False, True])
async def test_a_failed_put_leaves_no_hole_in_the_nodes_own_chain(batch: bool) -> None:
    store = DiskFullOnce()
    async with node_with(store, Author()) as node:
        first, _ = await node.publish(draft("a"))
        store.full = 2 if batch else 1
        if batch:
            items = await node.publish_batch([(draft("b"), "b1"), (draft("c"), "c1")])
            assert all(isinstance(r.error, StoreClosed) for r in items)  # UNAVAILABLE
            assert "send it again" in str(items[0].error)
            assert await store.request("b1") is None and "b1" not in node.requests.pending
        else:  # UNAVAILABLE and what to do, as a batch item (review s22 L1), not INTERNAL
            with pytest.raises(StoreClosed, match="send it again") as failed:
                await node.publish(draft("b"), request_id="b1")
            assert isinstance(failed.value.__cause__, sqlite3.OperationalError)  # logged
        after, _ = await node.publish(draft("d"))  # the disk has room again
        assert (after.record.seq, after.record.prev) == (2, first.record.id)
        own = await store.range(node.identity.public_key, 1, 10, limit=10)
        assert [a.seq for a in own] == [1, 2]
        assert store.chains.head(node.identity.public_key) == 2


async def test_alerts_signed_on_one_whose_put_failed_are_not_chained_on() -> None:
    store = DiskFullOnce()
    async with node_with(store, Author()) as node:
        first, _ = await node.publish(draft("a"))
        store.full = 2  # the next two puts fail; the second was signed on the first
        store.open.clear()
        x = asyncio.create_task(node.publish(draft("x")))
        y = asyncio.create_task(node.publish(draft("y")))
        await asyncio.sleep(0.02)
        store.open.set()
        for task in (x, y):
            with pytest.raises(StoreClosed):
                await task
        after, _ = await node.publish(draft("z"))
        assert (after.record.seq, after.record.prev) == (2, first.record.id)
        assert store.chains.head(node.identity.public_key) == 2


async def test_a_lifecycle_check_that_fails_is_logged_and_the_hooks_still_run(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, author = HeldBatchStore(), Author()
    async with node_with(store, author) as node:

        async def broken(record: AlertRecord) -> bool:
            raise RuntimeError("a bug in the lifecycle check")

        monkeypatch.setattr(node.lifecycle, "refuses", broken)
        gossiped: list[bytes] = []
        node.hooks.append(lambda records, source: gossiped.extend(r.id for r in records))
        link = alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_SIGHTING, alert_id=bytes([1]) * 32)
        signed = author.next(links=[link])
        with caplog.at_level("ERROR"):
            (ingested,) = await node.ingest([(signed.body, signed.signature)], source=b"p" * 32)
        assert ingested.error is None and gossiped == [ingested.id]
        failures = [r for r in caplog.records if "lifecycle check" in r.getMessage()]
        assert len(failures) == 1 and failures[0].exc_info


async def test_a_retry_whose_first_call_left_before_signing_publishes_once() -> None:
    store = HeldBatchStore()
    async with node_with(store, Author()) as node:
        asked = asyncio.Event()
        release = asyncio.Event()
        request = store.request

        async def slow_request(request_id: str) -> bytes | None:
            asked.set()
            await release.wait()
            return await request(request_id)

        store.request = slow_request  # type: ignore[method-assign]
        first = asyncio.create_task(node.publish(draft("one"), request_id="r1"))
        await asked.wait()  # the first call looks up its request id ...
        retry = asyncio.create_task(node.publish(draft("one"), request_id="r1"))
        await asyncio.sleep(0.02)  # ... a retry waits on it, and the first call leaves
        await cancelled(first)
        release.set()
        stored, _ = await retry
        own = await store.range(node.identity.public_key, 1, 10, limit=10)
        assert [a.id for a in own] == [stored.record.id]


class SlowHeadRead(DiskFullOnce):
    """Reading a range waits, as SQLite's and PostgreSQL's reads do; `range_fails` makes
    the next read fail as a broken disk would."""

    range_fails = False

    async def range(self, *args: Any, **kwargs: Any) -> list[AlertRecord]:
        await asyncio.sleep(0.01)
        if self.range_fails:
            self.range_fails = False
            raise sqlite3.OperationalError("disk I/O error")
        return await DiskFullOnce.range(self, *args, **kwargs)


@pytest.mark.parametrize("during_the_read", ["another publish", "a cancel", "a failed read"])
async def test_reading_the_own_head_again_is_all_or_nothing(during_the_read: str) -> None:
    """After a lost put with alerts signed on it, the next publish reads the head from the
    store. A second publish meanwhile, a cancelled reader or a failed read must not leave
    the node signing on a half-read head (prev empty): publishing goes on, chained."""
    store = SlowHeadRead()
    async with node_with(store, Author()) as node:
        first, _ = await node.publish(draft("a"))
        store.full = 2
        store.open.clear()
        lost = [asyncio.create_task(node.publish(draft(t))) for t in ("x", "y")]
        await asyncio.sleep(0.02)
        store.open.set()
        for task in lost:
            with pytest.raises(StoreClosed):
                await task
        assert node.own.lost
        reader = asyncio.create_task(node.publish(draft("p")))
        await asyncio.sleep(0.002)  # the reader waits in the store's range
        if during_the_read == "another publish":
            other, _ = await node.publish(draft("q"))
            assert other.record.prev != b""
        elif during_the_read == "a cancel":
            await cancelled(reader)
        else:
            store.range_fails = True
        with contextlib.suppress(asyncio.CancelledError, sqlite3.OperationalError):
            await reader
        later = [(await node.publish(draft(f"z{i}")))[0].record for i in range(3)]
        own = await store.range(node.identity.public_key, 1, 20, limit=20)
        assert [a.seq for a in own] == list(range(1, len(own) + 1))  # no hole
        assert own[0].id == first.record.id
        for prev, this in itertools.pairwise(own):
            assert this.prev == prev.id
        assert later[-1].id == own[-1].id


async def test_a_batch_item_retrying_a_publish_whose_put_failed_fails_alone() -> None:
    """The batch answers each item, not fail as a whole (a client resending it would
    publish the committed ones twice). Here its new item was signed on the lost alert,
    so the store refuses it too (no hole in the chain): it fails with its own reason,
    and publishing it again takes the lost alert's seq."""
    store = DiskFullOnce()
    async with node_with(store, Author()) as node:
        store.full = 1
        store.open.clear()
        first = asyncio.create_task(node.publish(draft("one"), request_id="r1"))
        await until(lambda: "r1" in node.requests.pending, "the first call is pending")
        await asyncio.sleep(0.01)  # the first call's put waits for the disk
        batch = asyncio.create_task(node.publish_batch([(draft("one"), "r1"), (draft("new"), "")]))
        await asyncio.sleep(0.01)
        store.open.set()
        with pytest.raises(StoreClosed):
            await first
        retried, new = await batch
        assert retried.error is not None and "send it again" in str(retried.error)
        assert isinstance(new.error, OwnChainBroken) and "publish it again" in str(new.error)
        again = await node.publish_batch([(draft("new"), "")])
        assert again[0].error is None
        own = await store.range(node.identity.public_key, 1, 10, limit=10)
        assert [(a.seq, a.id) for a in own] == [(1, again[0].id)]


class LosesAnswers(HeldBatchStore):
    """A store whose next `lost` puts commit and then fail, unmarked, as a PostgreSQL put
    does when the connection drops during its COMMIT: the alert is stored, the answer
    lost, and the store cannot say it wrote nothing."""

    lost = 0

    async def put(
        self,
        records: Sequence[AlertRecord],
        *,
        now_ms: int,
        request_id: str = "",
        gathered: bool = False,
        own: bool = False,
    ) -> list[PutOutcome]:
        outcomes = await HeldBatchStore.put(
            self, records, now_ms=now_ms, request_id=request_id, own=own
        )
        if self.lost:
            self.lost -= 1
            raise ConnectionResetError("connection lost during COMMIT")
        return outcomes


@pytest.mark.parametrize("batch", [False, True])
async def test_a_put_whose_commit_landed_but_failed_is_not_signed_over(batch: bool) -> None:
    """A failure the store does not mark as clean may have committed: the node must not
    sign another alert with the same seq (it would equivocate against itself), but read
    its head from the store and chain on what landed."""
    store = LosesAnswers()
    async with node_with(store, Author()) as node:
        first, _ = await node.publish(draft("a"))
        store.lost = 1
        if batch:
            (item,) = await node.publish_batch([(draft("b"), "b1")])
            assert isinstance(item.error, StoreClosed) and "cannot tell" in str(item.error)
        else:
            with pytest.raises(StoreClosed, match="cannot tell"):
                await node.publish(draft("b"), request_id="b1")
        landed = await store.request("b1")
        assert landed is not None  # the commit landed
        after, _ = await node.publish(draft("c"))
        assert (after.record.seq, after.record.prev) == (3, landed)
        assert await node.equivocations() == []
        own = await store.range(node.identity.public_key, 1, 10, limit=10)
        assert [a.seq for a in own] == [1, 2, 3]
        assert [a.prev for a in own] == [b"", first.record.id, landed]


async def test_an_alert_signed_on_one_whose_put_failed_is_refused_not_stored_above_a_hole() -> None:
    """Seq 2's put fails while seq 3, signed on it, commits in another transaction: the
    store refuses seq 3 (its seq 2 is not held), so the node's own chain has no hole."""
    store = DiskFullOnce()
    async with node_with(store, Author()) as node:
        first, _ = await node.publish(draft("a"))
        store.full = 1  # only the next put fails
        store.open.clear()
        x = asyncio.create_task(node.publish(draft("x")))
        y = asyncio.create_task(node.publish(draft("y")))
        await until(lambda: node.own.seq == 3, "both are signed, their puts wait")
        store.open.set()
        with pytest.raises(StoreClosed):
            await x
        with pytest.raises(OwnChainBroken, match="publish it again"):
            await y
        after, _ = await node.publish(draft("z"))
        assert (after.record.seq, after.record.prev) == (2, first.record.id)
        own = await store.range(node.identity.public_key, 1, 10, limit=10)
        assert [a.seq for a in own] == [1, 2]
        assert store.chains.head(node.identity.public_key) == 2


class FailsTitles(HeldBatchStore):
    """A store whose put of an alert titled in `failing` fails alone, having written
    nothing (as a store's put does when its own transaction fails or it is refused)."""

    def __init__(self, *failing: str) -> None:
        super().__init__()
        self.failing = set(failing)

    async def put(
        self,
        records: Sequence[AlertRecord],
        *,
        now_ms: int,
        request_id: str = "",
        gathered: bool = False,
        own: bool = False,
    ) -> list[PutOutcome]:
        if any(r.title in self.failing for r in records):
            await asyncio.sleep(0)
            raise nothing_written(sqlite3.OperationalError("database or disk is full"))
        return await HeldBatchStore.put(
            self, records, now_ms=now_ms, request_id=request_id, own=own
        )


async def test_a_batch_whose_puts_fail_in_part_answers_each_item_truly() -> None:
    """Committed items are answered with their ids (a client resending only the failed
    ones publishes nothing twice), failed ones with an actionable UNAVAILABLE."""
    store = FailsTitles("c")
    async with node_with(store, Author()) as node:
        results = await node.publish_batch([(draft(t), "") for t in ("a", "b", "c")])
        assert [r.error is None for r in results] == [True, True, False]
        assert isinstance(results[2].error, StoreClosed)
        assert "send it again" in str(results[2].error)
        own = await store.range(node.identity.public_key, 1, 10, limit=10)
        assert [a.id for a in own] == [results[0].id, results[1].id]
        store.failing.clear()
        (again,) = await node.publish_batch([(draft("c"), "")])  # the client resends "c"
        own = await store.range(node.identity.public_key, 1, 10, limit=10)
        assert [a.id for a in own] == [results[0].id, results[1].id, again.id]
        assert own[2].prev == own[1].id


async def test_a_batch_item_after_a_failed_one_is_refused_and_the_earlier_ones_answered() -> None:
    store = FailsTitles("b")
    async with node_with(store, Author()) as node:
        a, b, c = await node.publish_batch([(draft(t), f"r{t}") for t in ("a", "b", "c")])
        assert a.error is None and await store.request("ra") == a.id
        assert isinstance(b.error, StoreClosed) and "send it again" in str(b.error)
        assert isinstance(c.error, OwnChainBroken)  # signed on b: refused, no hole
        store.failing.clear()
        again = await node.publish_batch([(draft(t), f"r{t}") for t in ("a", "b", "c")])
        assert [(r.duplicate, r.error) for r in again] == [
            (True, None),
            (False, None),
            (False, None),
        ]
        own = await store.range(node.identity.public_key, 1, 10, limit=10)
        assert [x.id for x in own] == [a.id, again[1].id, again[2].id]
        for prev, this in itertools.pairwise(own):
            assert this.prev == prev.id


def test_a_write_in_doubt_is_resent_safely_only_with_a_request_id() -> None:
    """A publish whose commit may have landed: resending it is safe with its request id;
    without one the client is told to look for it first (review s22 L2)."""
    in_doubt = ConnectionResetError("connection lost during COMMIT")
    assert "with the same client_request_id" in str(unstored_error(in_doubt, "r1"))
    without = str(unstored_error(in_doubt, ""))
    assert "look for it" in without and "same client_request_id" not in without
    clean = nothing_written(sqlite3.OperationalError("database or disk is full"))
    assert str(unstored_error(clean, "")).endswith("send it again")
