"""What follows a commit happens even if its caller stops waiting.

A peer session that ends while its ingest waits for the store cancels the ingest, and a
client may cancel its Publish, but the store still commits what was queued. The node
then still counts the alerts, wakes the Subscribe streams, runs the new-alert hooks
(gossip) and an equivocation's proof hooks: they belong to the commit, not to whoever
waited for it. At shutdown the node waits for them (`drain`).

One node in this process on an in-memory store whose commits wait for `open`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node.app.runtime import SHUTDOWN_GRACE_S
from node.app.service import DRAIN_TIMEOUT_S, AlertNode
from node.app.verify import Verifier
from node.cluster import STOP_TIMEOUT_S
from node.core.alerts import AlertRecord, alert_id
from node.core.limits import DEFAULT_LIMITS
from node.core.roster import Member, Roster
from node.crypto import Identity
from node.store.base import PutOutcome, Query, Stored
from node.store.memory import MemoryStore
from tests.factory import ADDRESS, DOMAIN, Author

PEER = b"\x07" * 32  # the session the alerts came from


class HeldStore(MemoryStore):
    """A store whose commits wait for `open` (a slow disk; the event that is `open` when
    the put is called), and then commit even if their caller was cancelled meanwhile, as
    SqliteStore's writer does."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.open.set()
        self.waiting = 0  # puts held back now

    async def put(
        self,
        records: Sequence[AlertRecord],
        *,
        now_ms: int,
        request_id: str = "",
        own: bool = False,
    ) -> list[PutOutcome]:
        gate = self.open

        async def queued() -> list[PutOutcome]:
            self.waiting += 1
            try:
                await gate.wait()
            finally:
                self.waiting -= 1
            return await MemoryStore.put(
                self, records, now_ms=now_ms, request_id=request_id, own=own
            )

        return await asyncio.shield(asyncio.ensure_future(queued()))


class BrokenStore(HeldStore):
    """A store whose put, once it has committed, calls `broken` (which raises)."""

    broken: Callable[[], None] = staticmethod(lambda: None)

    async def put(
        self,
        records: Sequence[AlertRecord],
        *,
        now_ms: int,
        request_id: str = "",
        own: bool = False,
    ) -> list[PutOutcome]:
        outcomes = await HeldStore.put(self, records, now_ms=now_ms, request_id=request_id, own=own)
        self.broken()
        return outcomes


@contextlib.asynccontextmanager
async def node_with(store: MemoryStore, author: Author) -> AsyncIterator[AlertNode]:
    me = Identity.generate()
    roster = Roster.of([Member("me", me.public_key), Member("author", author.key)])
    async with Verifier(DEFAULT_LIMITS, processes=1) as verifier:
        yield AlertNode(
            identity=me, roster=roster, store=store, verifier=verifier, limits=DEFAULT_LIMITS
        )


async def until(done: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """Poll `done` until it holds (a bound, not a target)."""
    for _ in range(int(seconds / 0.005)):
        if done():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out: {what}")


async def cancelled_while_committing(
    node: AlertNode, store: HeldStore, signed: alert_pb2.SignedAlert
) -> None:
    """Ingest `signed` from PEER; the session ends (the ingest is cancelled) while the
    store holds the commit back; then the store commits."""
    store.open.clear()
    ingest = asyncio.create_task(node.ingest([(signed.body, signed.signature)], source=PEER))
    await until(lambda: store.waiting == 1, "the commit is held back")
    ingest.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ingest
    store.open.set()


async def test_a_cancelled_ingest_still_counts_wakes_watchers_and_runs_the_hooks() -> None:
    author, store = Author(), HeldStore()
    async with node_with(store, author) as node:
        hooked: list[tuple[list[bytes], bytes | None]] = []
        node.hooks.append(lambda records, source: hooked.append(([r.id for r in records], source)))
        watched: list[Stored] = []

        async def watch() -> None:  # a Subscribe stream from now on
            async for stored in node.watch(Query(now_ms=node.clock()), None):
                watched.append(stored)

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.05)  # the stream has looked once and waits for a commit
        signed = author.next(indicators=[(ADDRESS, "eip155:1:0x" + "ab" * 20)])
        await cancelled_while_committing(node, store, signed)
        await node.drain()  # the commit and its follow-up, as at shutdown

        assert await node.store.get(alert_id(signed.body)) is not None
        assert node.counters.values.get("ingest_accepted") == 1
        assert hooked == [([alert_id(signed.body)], PEER)]
        await until(lambda: len(watched) == 1, "the Subscribe stream gets the alert")
        assert watched[0].record.id == alert_id(signed.body)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def test_a_cancelled_ingest_of_an_equivocation_still_spreads_its_proof() -> None:
    author, store = Author(), HeldStore()
    async with node_with(store, author) as node:
        proofs: list[bytes] = []

        async def spread(second: AlertRecord) -> None:
            proofs.append(second.id)

        node.equivocation_hooks.append(spread)
        first = author.next(indicators=[(ADDRESS, "eip155:1:0x" + "cd" * 20)])
        author.seq, author.head = 0, b""  # the same seq again, another body
        second = author.next(indicators=[(ADDRESS, "eip155:1:0x" + "ef" * 20)])
        [result] = await node.ingest([(first.body, first.signature)], source=PEER)
        assert result.outcome is PutOutcome.ACCEPTED

        await cancelled_while_committing(node, store, second)
        await node.drain()

        assert proofs == [alert_id(second.body)]
        assert node.counters.values.get("ingest_equivocation") == 1
        assert len(await node.equivocations()) == 1


async def test_a_failure_after_the_caller_left_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    author, store = Author(), HeldStore()
    async with node_with(store, author) as node:

        def broken(records: Sequence[AlertRecord], source: bytes | None) -> None:
            raise RuntimeError("a hook with a bug")

        node.hooks.append(broken)
        signed = author.next(indicators=[(ADDRESS, "eip155:1:0x" + "12" * 20)])
        with caplog.at_level(logging.ERROR):
            await cancelled_while_committing(node, store, signed)
            await node.drain()
        assert await node.store.get(alert_id(signed.body)) is not None
        failures = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(failures) == 1 and failures[0].exc_info is not None
        assert "a hook with a bug" in str(failures[0].exc_info[1])


async def test_a_caller_that_waits_gets_the_failure_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unchanged: the peer session ends on it, and nothing is logged twice. (A hook that
    fails is logged and fails nothing: tests/test_publish_retry.py; a store that fails
    does.)"""
    author, store = Author(), BrokenStore()
    async with node_with(store, author) as node:

        def broken() -> None:
            raise RuntimeError("a store with a bug")

        store.broken = broken
        signed = author.next(indicators=[(ADDRESS, "eip155:1:0x" + "34" * 20)])
        with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError):
            await node.ingest([(signed.body, signed.signature)], source=PEER)
        await node.drain()
        assert not [r for r in caplog.records if r.levelno == logging.ERROR]


async def test_shutdown_cancels_a_commit_that_does_not_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store that never answers does not hold the node's shutdown for ever."""
    author, store = Author(), HeldStore()
    async with node_with(store, author) as node:
        signed = author.next(indicators=[(ADDRESS, "eip155:1:0x" + "56" * 20)])
        store.open.clear()  # the disk hangs
        ingest = asyncio.create_task(node.ingest([(signed.body, signed.signature)], PEER))
        await until(lambda: store.waiting == 1, "the commit is held back")
        with caplog.at_level(logging.WARNING):
            await node.drain(timeout=0.05)
        await asyncio.wait([ingest])
        assert ingest.cancelled()  # its caller learns it, as at any cancellation
        assert any("cancelled" in r.getMessage() for r in caplog.records)
        store.open.set()  # the store's own queued put ends before the loop does
        await until(lambda: store.waiting == 0, "the store's put ends")


def draft(title: str) -> alert_pb2.Alert:
    """A client's Publish: the node signs it as its own next alert."""
    alert = alert_pb2.Alert(
        category=alert_pb2.CATEGORY_PHISHING,
        severity=alert_pb2.SEVERITY_HIGH,
        confidence=80,
        title=title,
    )
    alert.indicators.add(type=DOMAIN, value=f"{title}.example")
    return alert


async def test_a_cancelled_publish_still_gossips_wakes_watchers_and_counts() -> None:
    """The client cancels its Publish while the store commits the alert: it is stored,
    so it is gossiped (the new-alert hook), the watchers see it and it is counted."""
    store = HeldStore()
    async with node_with(store, Author()) as node:
        gossiped: list[tuple[list[bytes], bytes | None]] = []
        node.hooks.append(
            lambda records, source: gossiped.append(([r.id for r in records], source))
        )
        watched: list[Stored] = []

        async def watch() -> None:
            async for stored in node.watch(Query(now_ms=node.clock()), None):
                watched.append(stored)

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.05)  # the stream has looked once and waits for a commit
        store.open.clear()
        publish = asyncio.create_task(node.publish(draft("cancelled-publish")))
        await until(lambda: store.waiting == 1, "the commit is held back")
        publish.cancel()
        with pytest.raises(asyncio.CancelledError):
            await publish
        store.open.set()
        await until(lambda: store.waiting == 0, "the store's put ends")
        await node.drain()

        [mine] = await node.store.range(node.identity.public_key, 1, 1, limit=1)
        assert gossiped == [([mine.id], None)]
        assert node.counters.values.get("published") == 1
        await until(lambda: len(watched) == 1, "the Subscribe stream gets the alert")
        assert watched[0].record.id == mine.id
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def test_shutdown_that_cancels_a_follow_up_does_not_undo_a_put_that_commits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Drain's timeout cancels what follows the commit, not the store's put: the alerts
    a relay forwarded before the commit stay in its peer cache, no failure is logged."""
    author, store = Author(), HeldStore()
    async with node_with(store, author) as node:
        calls: list[str] = []

        def verified(records: list[AlertRecord]) -> Callable[[], None]:
            calls.append("forwarded early")
            return lambda: calls.append("taken back")

        signed = author.next(indicators=[(ADDRESS, "eip155:1:0x" + "99" * 20)])
        store.open.clear()
        ingest = asyncio.create_task(node.ingest([(signed.body, signed.signature)], PEER, verified))
        await until(lambda: store.waiting == 1, "the commit is held back")
        with caplog.at_level(logging.WARNING):
            await node.drain(timeout=0.05)
            store.open.set()  # the store's writer commits what it had queued
            await until(lambda: store.waiting == 0, "the store's put ends")
            await asyncio.wait([ingest])
            await asyncio.sleep(0.01)  # the put's own callbacks run
        assert await node.store.get(alert_id(signed.body)) is not None
        assert calls == ["forwarded early"]
        assert not [r for r in caplog.records if "failed" in r.getMessage()]


async def test_shutdown_waits_for_a_commit_that_starts_while_it_drains() -> None:
    author, store = Author(), HeldStore()
    async with node_with(store, author) as node:
        first = author.next(indicators=[(ADDRESS, "eip155:1:0x" + "a1" * 20)])
        store.open.clear()
        ingest = asyncio.create_task(node.ingest([(first.body, first.signature)], PEER))
        await until(lambda: store.waiting == 1, "the first commit is held back")
        draining = asyncio.create_task(node.drain())
        await asyncio.sleep(0.01)  # drain has seen the first commit
        held_first, store.open = store.open, asyncio.Event()  # later puts wait longer
        publish = asyncio.create_task(node.publish(draft("while-draining")))
        await until(lambda: store.waiting == 2, "the second commit is held back")
        held_first.set()
        await ingest
        await asyncio.sleep(0.05)
        assert not draining.done()  # it waits for the publish too
        store.open.set()
        await draining
        assert publish.done() and node.counters.values.get("published") == 1


async def test_a_failure_reaches_its_caller_or_the_log_whenever_the_caller_is_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The follow-up fails and the caller is cancelled some loop turns later, also after
    the failure was on its way to it but before it resumed: the failure is reported once,
    to the caller or in the node's log, never as asyncio's "exception never retrieved"."""
    author, store = Author(), BrokenStore()
    async with node_with(store, author) as node:
        loop = asyncio.get_running_loop()
        callers: list[asyncio.Task[object]] = []

        def cancel_later(n: int) -> None:
            if n:
                loop.call_soon(cancel_later, n - 1)
            else:
                callers[0].cancel()

        def broken(turns: int) -> None:
            cancel_later(turns)
            raise RuntimeError("a store with a bug")

        outcomes = set()
        for turns in range(8):  # the failure passes a few tasks on its way to the caller
            store.broken = functools.partial(broken, turns)
            signed = author.next(indicators=[(ADDRESS, f"eip155:1:0x{turns:040x}")])
            caplog.clear()
            with caplog.at_level(logging.ERROR):
                callers.append(
                    asyncio.create_task(node.ingest([(signed.body, signed.signature)], PEER))
                )
                await asyncio.wait(callers)
                cancelled = callers[0].cancelled()
                if not cancelled:  # the caller got the failure itself
                    assert isinstance(callers[0].exception(), RuntimeError)
                callers.clear()
                await node.drain()
                gc.collect()  # a future whose failure nobody read reports it when freed
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            if cancelled:
                assert errors == ["an ingest whose caller had left failed"], (turns, errors)
            else:
                assert errors == [], (turns, errors)
            outcomes.add(cancelled)
        assert outcomes == {True, False}


async def test_a_publish_whose_caller_left_logs_its_store_failure_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A single Publish whose put fails after its client has gone: the store's failure
    is logged once with its traceback, where it became the answer (UNAVAILABLE), and
    the answer nobody read is one warning line, not a second traceback."""
    author, store = Author(), BrokenStore()
    async with node_with(store, author) as node:
        caller: list[asyncio.Task[object]] = []

        def broken() -> None:
            caller[0].cancel()  # the client leaves just as the commit fails
            raise RuntimeError("a full disk")

        store.broken = broken
        with caplog.at_level(logging.WARNING):
            caller.append(asyncio.create_task(node.publish(draft("left-early"))))
            await asyncio.wait(caller)
            assert caller[0].cancelled()
            await node.drain()
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert [r.getMessage() for r in errors] == ["an alert could not be stored"]
        assert errors[0].exc_info is not None  # the cause, once
        left = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(left) == 1 and left[0].startswith("a publish whose caller had left failed: ")
        assert "could not store" in left[0] or "cannot tell" in left[0]


def test_a_stopping_node_drains_within_what_cluster_down_waits_for() -> None:
    """The call grace and the drain's timeout leave the store time to close before
    `alertmesh cluster down` resorts to SIGKILL."""
    assert STOP_TIMEOUT_S - (SHUTDOWN_GRACE_S + DRAIN_TIMEOUT_S) >= 5.0
