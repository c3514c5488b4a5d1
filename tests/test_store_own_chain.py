"""What a store promises the publish path about the node's own chain: an own alert is
stored only on top of what the store holds (no hole, no second alert for one seq), and a
put that fails says whether it wrote nothing (base.nothing_written) or may have committed
(a COMMIT in doubt), so that the node never signs a seq twice. Plus two older fixes of
the SQLite store's commit on the loop's thread, pinned here."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from node.core.errors import StoreClosed
from node.rpc.errors import status_of
from node.store import PutOutcome, SqliteStore, postgres_writer, sqlite
from node.store.base import AlertStore, OwnChainBroken, Query, wrote_nothing
from node.store.postgres import PostgresStore
from tests.factory import Author, now_ms
from tests.pg import PgServer
from tests.test_ingest_follow_up import draft, node_with
from tests.test_sparse_commit import Clock, committed_ids


async def test_an_own_alert_is_stored_only_on_top_of_what_the_store_holds(
    store: AlertStore,
) -> None:
    me, peer = Author(), Author()
    one, two, three = me.record(), me.record(), me.record()
    assert await store.put([one], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]
    with pytest.raises(OwnChainBroken, match="alert 2 is not held") as hole:
        await store.put([three], now_ms=now_ms(), own=True)
    assert wrote_nothing(hole.value) and await store.get(three.id) is None
    assert status_of(hole.value) == grpc.StatusCode.UNAVAILABLE  # the client publishes again
    assert await store.put([two], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]
    other_two = Author(me.identity).record(seq=2, prev=one.id, title="another 2")
    with pytest.raises(OwnChainBroken, match="alert 2 is already held") as taken:
        await store.put([other_two], now_ms=now_ms(), own=True)
    assert wrote_nothing(taken.value) and await store.equivocations() == []
    assert await store.put([three], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]
    # Alerts from peers may come in any order: only own ones are held to their chain.
    peer.record()
    assert await store.put([peer.record()], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
    # Own puts made together (a batch, concurrent publishes) follow each other.
    together = await asyncio.gather(
        *(store.put([me.record()], now_ms=now_ms(), gathered=True, own=True) for _ in range(3))
    )
    assert together == [[PutOutcome.ACCEPTED]] * 3
    assert store.chains.head(me.key) == 6


class FailingDb:
    """The SQLite writer's connection, with one statement made to fail: `fail(sql)` says
    whether (and how) the statement starting so fails; everything else passes through."""

    def __init__(self, db: sqlite3.Connection, fail: Callable[[str], None]) -> None:
        self._db, self._fail = db, fail

    def execute(self, sql: str, *args: Any) -> Any:
        self._fail(sql)
        return self._db.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        self._fail(sql)
        return self._db.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def once(prefix: str, error: Callable[[sqlite3.Connection], BaseException]) -> Any:
    """A `fail` for FailingDb: the first statement starting with `prefix` raises
    error(connection) instead (or after, if `error` runs it)."""
    state = {"done": False}

    def fail_with(db: sqlite3.Connection) -> Callable[[str], None]:
        def fail(sql: str) -> None:
            if not state["done"] and sql.startswith(prefix):
                state["done"] = True
                raise error(db)

        return fail

    return fail_with


def busy(db: sqlite3.Connection) -> BaseException:
    """SQLITE_BUSY as SQLite raises it: the statement did not run."""
    exc = sqlite3.OperationalError("database is locked")
    exc.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    return exc


def landed_then_io_error(db: sqlite3.Connection) -> BaseException:
    """The COMMIT happened, and then the answer is an I/O error: the store cannot know."""
    db.execute("COMMIT")
    return sqlite3.OperationalError("disk I/O error")


def disk_full(db: sqlite3.Connection) -> BaseException:
    return sqlite3.OperationalError("database or disk is full")


def failing(store: SqliteStore, fail_with: Any) -> None:
    writer = store._writer_db
    assert writer is not None
    writer.db = FailingDb(writer.db, fail_with(writer.db))  # type: ignore[assignment]


class LandedThenUnreadable:
    """For `failing`: the first COMMIT lands and then fails (an I/O error), and the next
    `reads_failing` reads back of what committed fail too (the same disk trouble)."""

    def __init__(self, reads_failing: int) -> None:
        self.reads_failing = reads_failing

    def __call__(self, db: sqlite3.Connection) -> Callable[[str], None]:
        committed = False

        def fail(sql: str) -> None:
            nonlocal committed
            if not committed and sql.startswith("COMMIT"):
                committed = True
                raise landed_then_io_error(db)
            if self.reads_failing and sql.startswith("SELECT local_seq"):
                self.reads_failing -= 1
                raise sqlite3.OperationalError("disk I/O error")

        return fail


@pytest.mark.parametrize("thread", ["loop", "writer"])
async def test_sqlite_marks_a_transaction_that_never_committed_and_not_a_commit_in_doubt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, thread: str
) -> None:
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0 if thread == "loop" else 3600.0)
    me = Author()
    async with SqliteStore(tmp_path / "a.db", clock=Clock()) as store:
        assert await store.put([me.record()], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]
        failing(store, once("INSERT", disk_full))
        with pytest.raises(sqlite3.OperationalError) as full:
            await store.put([me.record()], now_ms=now_ms(), own=True)
        assert wrote_nothing(full.value)
        assert len(committed_ids(tmp_path / "a.db")) == 1
        failing(store, once("COMMIT", landed_then_io_error))
        doubt = me.record()
        with pytest.raises(sqlite3.OperationalError) as io:
            await store.put([doubt], now_ms=now_ms())
        assert not wrote_nothing(io.value)  # and indeed it landed:
        assert committed_ids(tmp_path / "a.db")[-1] == doubt.id


async def test_sqlite_busy_at_commit_on_the_writer_thread_is_rolled_back_and_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 3600.0)
    me = Author()
    async with SqliteStore(tmp_path / "a.db", clock=Clock()) as store:
        assert await store.put([me.record()], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        failing(store, once("COMMIT", busy))
        lost = me.record()
        with pytest.raises(sqlite3.OperationalError, match="locked") as locked:
            await store.put([lost], now_ms=now_ms())
        assert wrote_nothing(locked.value)
        # Rolled back: the next put begins a transaction of its own, without the lost row.
        retried = await store.put([lost], now_ms=now_ms())
        assert retried == [PutOutcome.ACCEPTED]
        assert len(committed_ids(tmp_path / "a.db")) == 2


async def test_sqlite_busy_at_commit_on_the_loop_goes_to_the_writer_and_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins 30226af: a commit on the loop's thread that meets SQLITE_BUSY anywhere (here
    at the COMMIT, not at BEGIN) hands the put to the writer thread, which commits it:
    the client never sees "database is locked"."""
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0)
    me = Author()
    async with SqliteStore(tmp_path / "a.db", clock=Clock()) as store:
        assert await store.put([me.record()], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        assert store.inline_commits == 1
        failing(store, once("COMMIT", busy))
        second = me.record()
        assert await store.put([second], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        assert store.inline_commits == 1  # the writer thread committed it
        assert committed_ids(tmp_path / "a.db")[-1] == second.id


async def test_a_put_after_the_stop_is_queued_and_before_the_close_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins d0901ee: once the writer's stop is queued (the connection still open), a put
    is refused with StoreClosed at once; queued behind the stop, nothing would ever
    answer it."""
    me = Author()
    late: list[asyncio.Task[list[PutOutcome]]] = []
    stop = SqliteStore._stop

    async def stop_then_put(self: SqliteStore) -> None:
        await stop(self)
        assert self._writer_db is not None  # the connection is still open
        late.append(asyncio.create_task(self.put([me.record()], now_ms=now_ms())))
        await asyncio.sleep(0)  # the put runs now

    monkeypatch.setattr(SqliteStore, "_stop", stop_then_put)
    async with SqliteStore(tmp_path / "a.db") as store:
        assert await store.put([me.record()], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
    (put,) = late
    done, _ = await asyncio.wait([put], timeout=5)  # a bound, not a target: unanswered
    assert done, "a put made while the store closed was never answered"
    with pytest.raises(StoreClosed) as closed:
        await put
    assert wrote_nothing(closed.value)
    assert len(committed_ids(tmp_path / "a.db")) == 1


async def test_postgres_marks_a_failed_transaction_and_reads_again_after_a_commit_in_doubt(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await pg_server.new_database()
    me = Author()
    async with PostgresStore(url) as store:
        assert await store.put([me.record()], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]
        # The connection is lost inside the transaction: it never reached COMMIT.
        insert = postgres_writer.insert

        async def cut_off(*args: Any) -> None:
            monkeypatch.setattr(postgres_writer, "insert", insert)
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost in INSERT")

        monkeypatch.setattr(postgres_writer, "insert", cut_off)
        cut = me.record()
        with pytest.raises(Exception) as lost:
            await store.put([cut], now_ms=now_ms(), own=True)
        assert wrote_nothing(lost.value)
        assert await store.put([cut], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]

        # The COMMIT lands and its answer is lost (the connection stays open here).
        aexit = asyncpg.transaction.Transaction.__aexit__

        async def answer_lost(self: Any, *exc: Any) -> None:
            await aexit(self, *exc)
            monkeypatch.setattr(asyncpg.transaction.Transaction, "__aexit__", aexit)
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost in COMMIT")

        for reachable in (True, False):
            monkeypatch.setattr(asyncpg.transaction.Transaction, "__aexit__", answer_lost)
            if not reachable:  # nor can the store read the database right after

                async def unreachable(catch_up: Any = store._catch_up_if_behind) -> None:
                    monkeypatch.setattr(store, "_catch_up_if_behind", catch_up)
                    raise OSError("connection refused")

                monkeypatch.setattr(store, "_catch_up_if_behind", unreachable)
            landed = me.record()
            with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError) as doubt:
                await store.put([landed], now_ms=now_ms(), own=True)
            assert not wrote_nothing(doubt.value)
            # The store has read what committed, at once or before its next commit: the
            # node reads its head from it (here, at once) ...
            assert store.chains.get(me.key).max_seq == (landed.seq if reachable else landed.seq - 1)
            # ... and signing that seq again is refused either way.
            again = Author(me.identity).record(seq=landed.seq, prev=landed.prev, title="again")
            with pytest.raises(OwnChainBroken, match="is already held"):
                await store.put([again], now_ms=now_ms(), own=True)
            assert store.chains.get(me.key).max_seq == landed.seq
            assert await store.put([me.record()], now_ms=now_ms(), own=True) == [
                PutOutcome.ACCEPTED
            ]
        assert await store.equivocations() == []


@pytest.mark.parametrize("thread", ["loop", "writer"])
async def test_a_sqlite_commit_in_doubt_that_landed_is_taken_in_before_the_next_publish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, thread: str
) -> None:
    """The COMMIT of a publish lands and then fails (an I/O error): the node must not sign
    that seq again, and the store must not go on numbering rows as if it had not landed
    (each later commit would collide with it)."""
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0 if thread == "loop" else 3600.0)
    async with (
        SqliteStore(tmp_path / "a.db", clock=Clock()) as store,
        node_with(store, Author()) as node,  # type: ignore[arg-type]
    ):
        first, _ = await node.publish(draft("a"))
        failing(store, once("COMMIT", landed_then_io_error))
        with pytest.raises(StoreClosed, match="the same client_request_id") as doubt:
            await node.publish(draft("b"), request_id="b1")
        assert isinstance(doubt.value.__cause__, sqlite3.OperationalError)
        landed = await store.request("b1")
        assert landed is not None  # it did land
        after, _ = await node.publish(draft("c"))
        assert (after.record.seq, after.record.prev) == (3, landed)
        own = await store.range(node.identity.public_key, 1, 10, limit=10)
        assert [a.prev for a in own] == [b"", first.record.id, landed]
        assert await store.count() == 3 and await node.equivocations() == []
        fed = await store.after(Query(now_ms=now_ms()), cursor=0, limit=10)
        assert [s.local_seq for s in fed] == [1, 2, 3]


async def test_a_batch_whose_one_sqlite_transaction_fails_answers_every_item_failed(
    tmp_path: Path,
) -> None:
    """A PublishBatch's puts share one SQLite transaction: it fails as a whole, and each
    item says so (nothing was stored: sending the batch again publishes each once)."""
    async with (
        SqliteStore(tmp_path / "a.db") as store,
        node_with(store, Author()) as node,  # type: ignore[arg-type]
    ):
        first, _ = await node.publish(draft("a"))
        failing(store, once("INSERT", disk_full))
        items = [(draft(t), "") for t in ("b", "c", "d")]
        failed = await node.publish_batch(items)
        assert all(isinstance(r.error, StoreClosed) for r in failed)
        assert all("send it again" in str(r.error) for r in failed)
        assert len(committed_ids(tmp_path / "a.db")) == 1
        again = await node.publish_batch(items)
        assert all(r.error is None for r in again)
        own = await store.range(node.identity.public_key, 1, 10, limit=10)
        assert [a.id for a in own] == [first.record.id, *(r.id for r in again)]
        assert [a.prev for a in own[1:]] == [a.id for a in own[:-1]]


@pytest.mark.parametrize("thread", ["loop", "writer"])
async def test_a_sqlite_store_whose_read_after_a_commit_in_doubt_fails_reads_before_its_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, thread: str
) -> None:
    """A COMMIT lands and then fails, and reading back what it wrote fails too (the same
    disk trouble): the store stays in doubt and reads again before its next commit; while
    that read fails, a put fails having written nothing; once it succeeds, puts commit
    again on top of the landed row (review s22 M1: before, every later commit collided
    with it until a restart)."""
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0 if thread == "loop" else 3600.0)
    unreadable = LandedThenUnreadable(reads_failing=2)

    me, peer = Author(), Author()
    async with SqliteStore(tmp_path / "a.db", clock=Clock()) as store:
        assert await store.put([me.record()], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]
        failing(store, unreadable)
        landed = me.record()
        with pytest.raises(sqlite3.OperationalError) as io:
            await store.put([landed], now_ms=now_ms(), own=True)
        assert not wrote_nothing(io.value)
        assert committed_ids(tmp_path / "a.db")[-1] == landed.id  # it did land
        theirs = peer.record()
        with pytest.raises(StoreClosed, match="could not read back") as unread:
            await store.put([theirs], now_ms=now_ms())
        assert wrote_nothing(unread.value) and unreadable.reads_failing == 0
        assert await store.put([theirs], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        assert store.chains.get(me.key).max_seq == landed.seq
        assert await store.put([me.record()], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]
        assert await store.count() == 4 and len(committed_ids(tmp_path / "a.db")) == 4
        fed = await store.after(Query(now_ms=now_ms()), cursor=0, limit=10)
        assert [s.local_seq for s in fed] == [1, 2, 3, 4]


@pytest.mark.parametrize("thread", ["loop", "writer"])
async def test_the_first_publish_after_an_unread_commit_in_doubt_waits_for_the_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, thread: str
) -> None:
    """A publish's COMMIT lands and then fails, and reading it back fails too: the next
    publish has the store read it back before the node takes its head, so it is not signed
    on the stale head and refused as "already held" (review s22 round 2 L1). While the read
    fails, the publish fails signing nothing."""
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0 if thread == "loop" else 3600.0)
    unreadable = LandedThenUnreadable(reads_failing=2)

    async with (
        SqliteStore(tmp_path / "a.db", clock=Clock()) as store,
        node_with(store, Author()) as node,  # type: ignore[arg-type]
    ):
        await node.publish(draft("a"))
        failing(store, unreadable)
        with pytest.raises(StoreClosed, match="cannot tell"):
            await node.publish(draft("b"), request_id="b1")
        landed = await store.request("b1")
        assert landed is not None and node.own.lost  # it landed; the store is in doubt
        with pytest.raises(StoreClosed, match="could not read back"):
            await node.publish(draft("c"))
        assert unreadable.reads_failing == 0
        after, _ = await node.publish(draft("d"))
        assert (after.record.seq, after.record.prev) == (3, landed)
        own = await store.range(node.identity.public_key, 1, 10, limit=10)
        assert [a.seq for a in own] == [1, 2, 3] and await node.equivocations() == []


async def test_a_postgres_store_reads_back_a_commit_in_doubt_when_the_node_asks(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PostgreSQL side of the test above: settle_doubt reads back a commit in doubt
    that the store could not read right after it (through the writer), or raises, having
    changed nothing, while the database does not answer."""
    url = await pg_server.new_database()
    me = Author()
    async with PostgresStore(url) as store:
        assert await store.put([me.record()], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]
        aexit = asyncpg.transaction.Transaction.__aexit__

        async def answer_lost(self: Any, *exc: Any) -> None:
            await aexit(self, *exc)
            monkeypatch.setattr(asyncpg.transaction.Transaction, "__aexit__", aexit)
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost in COMMIT")

        catch_up, unanswered = store._catch_up_if_behind, 2

        async def unreachable() -> None:
            nonlocal unanswered
            if unanswered:
                unanswered -= 1
                raise OSError("connection refused")
            await catch_up()

        monkeypatch.setattr(asyncpg.transaction.Transaction, "__aexit__", answer_lost)
        monkeypatch.setattr(store, "_catch_up_if_behind", unreachable)
        landed = me.record()
        with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
            await store.put([landed], now_ms=now_ms(), own=True)
        assert store.chains.get(me.key).max_seq == landed.seq - 1
        with pytest.raises(StoreClosed, match="could not read back") as unread:
            await store.settle_doubt()
        assert wrote_nothing(unread.value) and unanswered == 0
        await store.settle_doubt()
        assert store.chains.get(me.key).max_seq == landed.seq
        assert await store.put([me.record()], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]


async def test_postgres_marks_a_commit_the_server_refused(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server answers the COMMIT with an error of its own (a serialization failure,
    SQLSTATE 40001; a deferred constraint): it rolled back, so the put wrote nothing and
    says so (review s22 L4), and the node's head simply goes back."""
    me = Author()
    async with PostgresStore(await pg_server.new_database()) as store:
        assert await store.put([me.record()], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]
        aexit = asyncpg.transaction.Transaction.__aexit__

        async def refused(self: Any, *exc: Any) -> None:
            monkeypatch.setattr(asyncpg.transaction.Transaction, "__aexit__", aexit)
            failure = asyncpg.exceptions.SerializationError("could not serialize access")
            await aexit(self, type(failure), failure, None)  # the server rolls back
            raise failure

        monkeypatch.setattr(asyncpg.transaction.Transaction, "__aexit__", refused)
        second = me.record()
        with pytest.raises(asyncpg.exceptions.SerializationError) as serialization:
            await store.put([second], now_ms=now_ms(), own=True)
        assert wrote_nothing(serialization.value)
        assert await store.get(second.id) is None and await store.count() == 1
        assert await store.put([second], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]


async def test_a_postgres_store_that_cannot_reconnect_says_so_without_naming_the_server(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's connection dropped and connecting again fails: the put fails with
    UNAVAILABLE ("send it again"), naming neither host nor user to the API client (the
    node's log does), and once the server answers again the next put is stored (review
    s22 L9: it was FAILED_PRECONDITION with the URL)."""
    me = Author()
    async with PostgresStore(await pg_server.new_database()) as store:
        assert await store.put([me.record()], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]
        assert store._wdb is not None
        await store._wdb.close()
        connect = asyncpg.connect

        async def refused(*args: Any, **kwargs: Any) -> None:
            raise OSError("connection refused")

        monkeypatch.setattr(asyncpg, "connect", refused)
        second = me.record()
        with pytest.raises(StoreClosed, match="send it again") as unavailable:
            await store.put([second], now_ms=now_ms(), own=True)
        assert status_of(unavailable.value) == grpc.StatusCode.UNAVAILABLE
        assert wrote_nothing(unavailable.value)
        message = str(unavailable.value)
        assert "@" not in message and "postgresql" not in message and "127.0.0.1" not in message
        monkeypatch.setattr(asyncpg, "connect", connect)
        assert await store.put([second], now_ms=now_ms(), own=True) == [PutOutcome.ACCEPTED]


async def test_a_postgres_put_after_the_stop_is_queued_is_refused(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As d0901ee for SQLite: once the PostgreSQL writer's stop is queued, a put (or a
    read-back) is refused with StoreClosed at once; queued behind the stop, nothing would
    ever answer it."""
    url = await pg_server.new_database()
    me = Author()
    late: list[asyncio.Task[list[PutOutcome]]] = []
    stop = PostgresStore._stop_writer

    async def stop_then_put(self: PostgresStore) -> None:
        await stop(self)
        late.append(asyncio.create_task(self.put([me.record()], now_ms=now_ms())))
        await asyncio.sleep(0)  # the put runs now

    monkeypatch.setattr(PostgresStore, "_stop_writer", stop_then_put)
    async with PostgresStore(url) as store:
        assert await store.put([me.record()], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
    (put,) = late
    done, _ = await asyncio.wait([put], timeout=5)  # a bound, not a target: unanswered
    assert done, "a put made while the store closed was never answered"
    with pytest.raises(StoreClosed) as closed:
        await put
    assert wrote_nothing(closed.value)
