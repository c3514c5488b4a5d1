"""A sparse stream of single puts commits on the event loop's own thread; anything
denser goes through the writer thread's group commit (issue 15 target 3). Either way
a put returns only once its row is committed, the rows are numbered in commit order
with no gap, and index moves run on the writer thread."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from node.core.alerts import AlertRecord
from node.core.chain import Chains
from node.core.errors import StoreClosed
from node.store import PutOutcome, SqliteStore, sqlite, sqlite_writer
from node.store.base import Query
from node.store.memory import MemoryStore
from tests.factory import DOMAIN, Author, now_ms


def committed_ids(path: Path) -> list[bytes]:
    """What another connection sees committed, in local_seq order."""
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT id FROM alerts ORDER BY local_seq")]


class Clock:
    """The store's clock, moved by the test: a commit takes what the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_sparse_put_commits_on_the_loop_and_is_durable_when_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0)  # every put finding the writer idle
    author = Author()
    records = [author.record() for _ in range(5)]
    async with SqliteStore(tmp_path / "a.db", clock=Clock()) as store:
        for i, r in enumerate(records):
            assert await store.put([r], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
            assert committed_ids(tmp_path / "a.db") == [x.id for x in records[: i + 1]]
        assert store.inline_commits == 5
        assert await store.put(records[:1], now_ms=now_ms()) == [PutOutcome.DUPLICATE]
        got = await store.get(records[4].id)
        assert got is not None and got.local_seq == 5


async def test_puts_close_behind_a_commit_go_to_the_writer_and_share_its_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 3600.0)  # every put is close behind one
    author = Author()
    records = [author.record() for _ in range(41)]
    async with SqliteStore(tmp_path / "a.db", clock=Clock()) as store:
        assert await store.put(records[:1], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        assert store.inline_commits == 1  # the first commit of the store: nothing before
        results = await asyncio.gather(*(store.put([r], now_ms=now_ms()) for r in records[1:]))
        assert results == [[PutOutcome.ACCEPTED]] * 40
        for r in records[1:6]:  # one after the other, each just behind the last
            assert await store.put([r], now_ms=now_ms()) == [PutOutcome.DUPLICATE]
        assert store.inline_commits == 1
        assert store.commits < 40  # the concurrent ones shared transactions
        assert committed_ids(tmp_path / "a.db") == [r.id for r in records]


async def test_commits_on_both_threads_number_rows_in_order_with_no_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds of one put alone (on the loop) and of concurrent puts (on the writer),
    with duplicates, equivocations and batches: the store ends as the in-memory store
    does, and a watch from any cursor, from memory or by query, reads the commit order."""
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    authors = [Author() for _ in range(3)]
    pool: list[AlertRecord] = []
    chains: dict[Author, list[bytes]] = {a: [] for a in authors}  # each author's ids by seq
    memory = MemoryStore()
    async with memory, SqliteStore(tmp_path / "a.db", clock=Clock()) as store:
        for _ in range(60):
            # Either every put finds the writer idle (on the loop, one after the other)
            # or every put is close behind a commit (the writer's group commits).
            monkeypatch.setattr(sqlite, "SPARSE_GAP_S", rng.choice([0.0, 3600.0]))
            puts: list[list[AlertRecord]] = []
            for _ in range(rng.choice([1, 1, 3, 6])):
                author = rng.choice(authors)
                if pool and rng.random() < 0.15:
                    puts.append([rng.choice(pool)])  # a duplicate
                elif author.seq >= 2 and rng.random() < 0.05:
                    seq, head = author.seq, author.head
                    # A second alert for the author's last slot (an equivocation).
                    author.seq, author.head = seq - 1, chains[author][seq - 2]
                    puts.append([author.record(title="other")])
                    author.seq, author.head = seq, head
                else:
                    n = rng.choice([1, 1, 1, 4])
                    puts.append([author.record() for _ in range(n)])
                    chains[author] += [r.id for r in puts[-1]]
                pool += puts[-1]
            got = await asyncio.gather(*(store.put(p, now_ms=1) for p in puts))
            want = [await memory.put(p, now_ms=1) for p in puts]
            # Concurrent puts commit in the order they were made, on either thread.
            assert got == want
        assert store.inline_commits > 0 and store.commits > store.inline_commits
        everything = Query(now_ms=now_ms())
        mine = await store.after(everything, cursor=0, limit=10_000)
        theirs = await memory.after(everything, cursor=0, limit=10_000)
        assert [s.record.id for s in mine] == [s.record.id for s in theirs]
        assert [s.local_seq for s in mine] == list(range(1, len(mine) + 1))
        assert committed_ids(tmp_path / "a.db") == [s.record.id for s in mine]
        for cursor in rng.sample(range(len(mine)), 5):
            tail = await store.after(everything, cursor=cursor, limit=10_000)
            assert tail == mine[cursor:]


async def test_index_moves_after_a_commit_on_the_loop_run_on_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0)
    monkeypatch.setattr(sqlite_writer, "LEVEL_ROWS", (4, 1000))
    moved_on: list[str] = []
    merge = sqlite_writer.Writer.merge

    def recorded(self: sqlite_writer.Writer) -> None:
        moved_on.append(threading.current_thread().name)
        merge(self)

    monkeypatch.setattr(sqlite_writer.Writer, "merge", recorded)
    author = Author()
    records = [author.record(indicators=[(DOMAIN, f"m{i}.example")]) for i in range(6)]
    async with SqliteStore(tmp_path / "a.db", clock=Clock()) as store:
        on_loop = []
        for r in records:
            before = store.inline_commits
            assert await store.put([r], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
            on_loop.append(store.inline_commits > before)
        # The put after the one that filled level 0 found the move queued and waited
        # for the writer behind it; the move ran on the writer's thread.
        assert on_loop[0] and not all(on_loop)
        assert moved_on and all(name.startswith("store-writer") for name in moved_on)
        for r in records:
            got = await store.get(r.id)
            assert got is not None and got.record == r
            found = await store.search(Query(now_ms=now_ms(), keys=keys_of(r)), limit=5)
            assert [s.record.id for s in found] == [r.id]
    with sqlite3.connect(tmp_path / "a.db") as db:
        moved = db.execute(f"SELECT count(*) FROM {sqlite_writer.KEY_LEVELS[1]}").fetchone()[0]
    assert moved > 0


async def test_a_single_put_while_the_writer_commits_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single put that finds the queue empty and the gap past, while the writer thread
    is inside a commit, must not commit on the loop: it would join that transaction."""
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0)
    inside = threading.Lock()
    entered, release = threading.Event(), threading.Event()
    overlaps: list[str] = []
    write = sqlite_writer.Writer.write

    def held(self: sqlite_writer.Writer, *args: Any) -> sqlite_writer.Committed:
        if not inside.acquire(blocking=False):
            overlaps.append(threading.current_thread().name)
            return write(self, *args)
        try:
            if threading.current_thread().name.startswith("store-writer"):
                entered.set()
                release.wait(10)  # the pair's commit holds the writer thread until told
            return write(self, *args)
        finally:
            inside.release()

    monkeypatch.setattr(sqlite_writer.Writer, "write", held)
    author = Author()
    a, b, c = (author.record() for _ in range(3))
    async with SqliteStore(tmp_path / "a.db", clock=Clock()) as store:
        pair = asyncio.create_task(store.put([a, b], now_ms=now_ms()))  # to the writer
        assert await asyncio.to_thread(entered.wait, 10)  # the writer is inside its commit
        single = asyncio.create_task(store.put([c], now_ms=now_ms()))
        for _ in range(5):
            await asyncio.sleep(0)  # the single put runs as far as it can
        release.set()
        assert await single == [PutOutcome.ACCEPTED]
        assert await pair == [PutOutcome.ACCEPTED] * 2
        assert store.inline_commits == 0
    assert overlaps == []
    assert committed_ids(tmp_path / "a.db") == [a.id, b.id, c.id]


def test_the_write_connection_refuses_a_second_thread_while_in_use(tmp_path: Path) -> None:
    writer = sqlite_writer.Writer(tmp_path / "a.db", "FULL")
    writer.migrate()
    entered, leave = threading.Event(), threading.Event()
    merge = threading.Thread(target=lambda: hold(writer, entered, leave))
    merge.start()
    entered.wait()
    try:
        with pytest.raises(RuntimeError, match="already in use"):
            writer.write([], Chains(), 0)
    finally:
        leave.set()
        merge.join()
    writer.close()


def hold(writer: sqlite_writer.Writer, entered: threading.Event, leave: threading.Event) -> None:
    with writer._alone():
        entered.set()
        leave.wait()


async def test_a_single_put_does_not_wait_on_the_loop_for_another_connections_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection (the sqlite3 shell, a backup) holds the write lock: a sparse
    single put must not stop the event loop waiting for it; the writer thread waits
    instead and commits once the lock is free."""
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0)
    author = Author()
    first, second = author.record(), author.record()
    # A clock that stands still: the writer's wait for the lock does not count as a slow
    # commit (it would close the loop path for a few commits; tested below).
    async with SqliteStore(tmp_path / "a.db", clock=Clock()) as store:
        assert await store.put([first], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        other = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        put = asyncio.create_task(store.put([second], now_ms=now_ms()))
        await asyncio.sleep(0.05)  # the loop runs on: the put waits on the writer thread
        assert not put.done() and store.inline_commits == 1
        other.execute("COMMIT")
        other.close()
        assert await put == [PutOutcome.ACCEPTED]
        assert store.inline_commits == 1
        assert await store.put([second], now_ms=now_ms()) == [PutOutcome.DUPLICATE]
        assert await store.put([author.record()], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        assert store.inline_commits == 3  # the loop path is back once the lock is free
    assert len(committed_ids(tmp_path / "a.db")) == 3


async def test_a_put_while_the_store_closes_is_refused_and_never_meets_the_closing_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0)
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    closing = asyncio.Event()
    close, write = sqlite_writer.Writer.close, sqlite_writer.Writer.write

    def slow_close(self: sqlite_writer.Writer) -> None:
        seen.append("close")
        loop.call_soon_threadsafe(closing.set)
        time.sleep(0.05)  # the loop runs on meanwhile
        close(self)

    def traced(self: sqlite_writer.Writer, *args: Any, **kwargs: Any) -> sqlite_writer.Committed:
        seen.append("write")
        return write(self, *args, **kwargs)

    monkeypatch.setattr(sqlite_writer.Writer, "close", slow_close)
    monkeypatch.setattr(sqlite_writer.Writer, "write", traced)
    author = Author()
    store = SqliteStore(tmp_path / "a.db", clock=Clock())

    async def late_put() -> list[PutOutcome]:
        await closing.wait()
        return await store.put([author.record()], now_ms=now_ms())

    async with store:
        assert await store.put([author.record()], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        late = asyncio.create_task(late_put())
    with pytest.raises(StoreClosed):
        await late
    with pytest.raises(StoreClosed):
        await store.put([author.record()], now_ms=now_ms())
    assert seen == ["write", "close"]
    assert len(committed_ids(tmp_path / "a.db")) == 1


async def test_a_commit_on_the_loop_never_checkpoints_and_the_writer_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copying the WAL back (milliseconds at 40 MiB) would hold the loop up: a commit on
    the loop's thread runs with the auto-checkpoint off, and every CHECKPOINT_COMMITS of
    them the writer thread checkpoints instead."""
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0)
    monkeypatch.setattr(sqlite, "CHECKPOINT_COMMITS", 3)
    autocheckpoint: list[tuple[str, int]] = []
    checkpoints: list[tuple[str, int]] = []
    write, checkpoint = sqlite_writer.Writer._write, sqlite_writer.Writer.checkpoint

    def traced(self: sqlite_writer.Writer, *args: Any) -> sqlite_writer.Committed:
        [(pages,)] = self.db.execute("PRAGMA wal_autocheckpoint").fetchall()
        autocheckpoint.append((threading.current_thread().name, pages))
        return write(self, *args)

    def traced_checkpoint(self: sqlite_writer.Writer) -> tuple[int, int, int]:
        done = checkpoint(self)
        checkpoints.append((threading.current_thread().name, done[2]))
        return done

    monkeypatch.setattr(sqlite_writer.Writer, "_write", traced)
    monkeypatch.setattr(sqlite_writer.Writer, "checkpoint", traced_checkpoint)
    author = Author()
    records = [author.record() for _ in range(8)]
    async with SqliteStore(tmp_path / "a.db", clock=Clock()) as store:
        for r in records[:7]:
            assert await store.put([r], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        await store.put(records[7:], now_ms=now_ms())  # behind the queued checkpoints
        # The put just behind a queued checkpoint went to the writer.
        assert store.inline_commits == 6
    on_loop = [pages for name, pages in autocheckpoint if not name.startswith("store-writer")]
    on_writer = [pages for name, pages in autocheckpoint if name.startswith("store-writer")]
    assert on_loop == [0] * 6 and on_writer and 0 not in on_writer
    assert len(checkpoints) == 2
    assert all(name.startswith("store-writer") and copied > 0 for name, copied in checkpoints)


async def test_while_commits_are_slow_single_puts_commit_on_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk whose fsync takes 15 ms (an HDD, a busy volume) must not stop the loop
    for each sparse put: once commits are slow the writer thread takes them, and once
    they are quick again (measured on the writer's commits) the loop path returns."""
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0)
    clock = Clock()
    fsync = {"s": 0.0002}
    write = sqlite_writer.Writer.write

    def timed(self: sqlite_writer.Writer, *args: Any, **kwargs: Any) -> sqlite_writer.Committed:
        clock.now += fsync["s"]
        return write(self, *args, **kwargs)

    monkeypatch.setattr(sqlite_writer.Writer, "write", timed)
    author = Author()

    async def put_one() -> bool:
        """Whether the put committed on the loop."""
        before = store.inline_commits
        assert await store.put([author.record()], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        return store.inline_commits > before

    async with SqliteStore(tmp_path / "a.db", clock=clock) as store:
        assert [await put_one() for _ in range(3)] == [True] * 3
        fsync["s"] = 0.015
        assert [await put_one() for _ in range(6)] == [True] + [False] * 5
        fsync["s"] = 0.0002
        back = [await put_one() for _ in range(20)]
        assert back[0] is False and back[-1] is True
        assert back.index(True) > 1 and all(back[back.index(True) :])
        assert store.commits == 29


async def test_a_failed_commit_on_the_loop_leaves_the_store_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "SPARSE_GAP_S", 0.0)
    insert = sqlite_writer.Writer._insert
    fail = {"on": False}

    def failing(self: sqlite_writer.Writer, sql: str, values: list[Any], width: int) -> None:
        if fail["on"] and sqlite_writer.ID_LEVELS[0] in sql:
            raise sqlite3.OperationalError("database or disk is full")
        insert(self, sql, values, width)

    monkeypatch.setattr(sqlite_writer.Writer, "_insert", failing)
    author = Author()
    r1, r2 = author.record(), author.record()
    async with SqliteStore(tmp_path / "a.db", clock=Clock()) as store:
        assert await store.put([r1], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        fail["on"] = True
        with pytest.raises(sqlite3.OperationalError, match="disk is full"):
            await store.put([r2], now_ms=now_ms())
        assert store.inline_commits == 1 and await store.count() == 1
        assert await store.get(r2.id) is None
        fail["on"] = False
        assert await store.put([r2], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        got = await store.after(Query(now_ms=now_ms()), cursor=0, limit=10)
        assert [s.local_seq for s in got] == [1, 2]
    assert committed_ids(tmp_path / "a.db") == [r1.id, r2.id]


def keys_of(record: AlertRecord) -> frozenset[str]:
    return frozenset(record.index_keys)
