"""Store behaviour, identical for the in-memory and the SQLite store."""

import sqlite3
from pathlib import Path

import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node.core import indicators
from node.core.alerts import AlertRecord, make_record
from node.core.errors import ConfigError
from node.core.index_keys import link_key
from node.store import PutOutcome, Query, SqliteStore, sqlite_writer
from node.store.base import AlertStore, classify
from node.store.sqlite_writer import ID_LEVELS, KEY_LEVELS, LEVELS
from tests.factory import ADDRESS, DOMAIN, Author, now_ms

EVM = "eip155:1:0x00000000000000000000000000000000000000aa"


def keys(text: str) -> frozenset[str]:
    return frozenset(indicators.lookup_keys(indicators.parse(text, strict=False)))


async def test_new_alerts_are_accepted_and_duplicates_deduped(store: AlertStore) -> None:
    author = Author()
    a, b = author.record(), author.record()
    assert await store.put([a, b], now_ms=now_ms()) == [PutOutcome.ACCEPTED] * 2
    assert await store.put([a], now_ms=now_ms()) == [PutOutcome.DUPLICATE]
    assert await store.put([b, b], now_ms=now_ms()) == [PutOutcome.DUPLICATE] * 2
    assert await store.count() == 2
    got = await store.get(a.id)
    assert got is not None and got.record == a
    assert await store.get(b"\0" * 32) is None
    assert await store.missing([a.id, b"\1" * 32]) == {b"\1" * 32}


async def test_equivocation_is_recorded_not_overwritten(store: AlertStore) -> None:
    author = Author()
    first = author.record(title="first version")
    author.seq, author.head = 0, b""
    second = author.record(title="second version")
    assert first.seq == second.seq == 1 and first.id != second.id
    assert await store.put([first], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
    assert await store.put([second], now_ms=now_ms()) == [PutOutcome.EQUIVOCATION]
    assert await store.put([second], now_ms=now_ms()) == [PutOutcome.DUPLICATE]
    stored = await store.get(first.id)
    assert stored is not None and stored.record.title == "first version"
    assert await store.get(second.id) is None
    [proof] = await store.equivocations()
    assert proof.first.id == first.id and proof.second.id == second.id
    assert proof.second.body == second.body and proof.second.signature == second.signature


async def test_equivocation_within_one_batch(store: AlertStore) -> None:
    author = Author()
    first = author.record(title="a")
    author.seq, author.head = 0, b""
    second = author.record(title="b")
    assert await store.put([first, second], now_ms=now_ms()) == [
        PutOutcome.ACCEPTED,
        PutOutcome.EQUIVOCATION,
    ]
    [proof] = await store.equivocations()
    assert proof.first.id == first.id


async def test_a_batch_mixing_new_alerts_with_held_slots_gets_each_outcome(
    store: AlertStore,
) -> None:
    """Each store tells classify which (origin, seq) slots it holds: a second copy of a
    held slot is an equivocation whatever else its batch holds, a held copy is a
    duplicate, and new alerts (of this origin and of another) are accepted around them."""
    author, other = Author(), Author()
    first, kept = author.record(title="first"), author.record(title="kept")
    assert await store.put([first, kept], now_ms=now_ms()) == [PutOutcome.ACCEPTED] * 2
    author.seq, author.head = 0, b""
    second = author.record(title="second copy of seq 1")
    author.seq, author.head = kept.seq, kept.id
    new, fresh = author.record(), other.record()
    assert await store.put([new, second, kept, fresh], now_ms=now_ms()) == [
        PutOutcome.ACCEPTED,
        PutOutcome.EQUIVOCATION,
        PutOutcome.DUPLICATE,
        PutOutcome.ACCEPTED,
    ]
    # A batch in which no slot is held asks nothing of the held ones.
    assert (
        await store.put([other.record(), other.record()], now_ms=now_ms())
        == [PutOutcome.ACCEPTED] * 2
    )
    assert await store.count() == 6
    [proof] = await store.equivocations()
    assert (proof.first.id, proof.second.id) == (first.id, second.id)
    assert store.chains.get(author.key).contiguous == 3
    assert store.chains.get(other.key).contiguous == 3
    # The held slots are asked again on the next put: the second copy is known now.
    assert await store.put([second, new], now_ms=now_ms()) == [PutOutcome.DUPLICATE] * 2


def test_classify_asks_holds_about_each_slot_it_has_not_seen_as_a_duplicate() -> None:
    author = Author()
    a, b, c = (author.record() for _ in range(3))
    asked: list[tuple[bytes, int]] = []

    def holds(origin: bytes, seq: int) -> bool:
        asked.append((origin, seq))
        return seq == b.seq

    outcomes = classify([a, b, a, c], held={c.id}, known_equivocations=(), holds=holds)
    assert outcomes == [
        PutOutcome.ACCEPTED,
        PutOutcome.EQUIVOCATION,  # held by the store under another id
        PutOutcome.DUPLICATE,  # earlier in this batch
        PutOutcome.DUPLICATE,  # held by id: no slot question
    ]
    assert asked == [(a.origin, a.seq), (b.origin, b.seq)]


async def test_chain_state_tracks_contiguous_seq_and_gaps(store: AlertStore) -> None:
    author = Author()
    r1, r2, r3, r4 = (author.record() for _ in range(4))
    await store.put([r1, r3, r4], now_ms=now_ms())
    state = store.chains.get(author.key)
    assert (state.contiguous, state.max_seq, state.count) == (1, 4, 3)
    await store.put([r2], now_ms=now_ms())
    state = store.chains.get(author.key)
    assert (state.contiguous, state.max_seq) == (4, 4)
    assert store.chains.vector() == {author.key: 4}
    got = await store.range(author.key, 2, 3, limit=10)
    assert [r.seq for r in got] == [2, 3]
    assert [r.seq for r in await store.range(author.key, 1, 10**9, limit=2)] == [1, 2]


async def test_lookup_of_more_keys_than_one_query_takes(store: AlertStore) -> None:
    author = Author()
    records = [author.record(indicators=[(DOMAIN, f"many{i}.example")]) for i in range(3)]
    await store.put(records, now_ms=now_ms())
    asked = {f"d:absent{i}.example" for i in range(25_000)} | {"d:many0.example", "d:many2.example"}
    found = await store.lookup(asked, now_ms=now_ms())
    assert {k: [s.record.id for s in v] for k, v in found.items()} == {
        "d:many0.example": [records[0].id],
        "d:many2.example": [records[2].id],
    }


async def test_lookup_by_every_spelling(store: AlertStore) -> None:
    author = Author()
    flagged = author.record(indicators=[(ADDRESS, EVM), (DOMAIN, "evil.example")])
    await store.put([flagged, author.record()], now_ms=now_ms())
    for spelling in [
        "0x00000000000000000000000000000000000000AA",
        EVM,
        "address:eip155:1:0x00000000000000000000000000000000000000aA",
        "https://Evil.Example./claim?x=1",
        "login.evil.example",
    ]:
        found = await store.lookup(keys(spelling), now_ms=now_ms())
        ids = {s.record.id for hits in found.values() for s in hits}
        assert ids == {flagged.id}, spelling
    assert await store.lookup(keys("good.example"), now_ms=now_ms()) == {}


async def test_search_pages_are_stable_while_alerts_arrive(store: AlertStore) -> None:
    author = Author()
    for _ in range(25):
        await store.put([author.record()], now_ms=now_ms())
    q = Query(now_ms=now_ms())
    seen = []
    before = None
    page = await store.search(q, limit=10, before=before)
    while page:
        seen.extend(s.record.seq for s in page)
        await store.put([author.record()], now_ms=now_ms())  # arrives mid-pagination
        before = page[-1].local_seq
        page = await store.search(q, limit=10, before=before)
    assert seen == list(range(25, 0, -1))


async def test_filters(store: AlertStore) -> None:
    a, b = Author(), Author()
    t = now_ms()
    low = a.record(severity=alert_pb2.SEVERITY_LOW, category=alert_pb2.CATEGORY_SCAM)
    high = b.record(severity=alert_pb2.SEVERITY_CRITICAL, indicators=[(DOMAIN, "x.example")])
    expired = a.record(created_at_ms=t - 10_000, expires_at_ms=t - 5_000)
    await store.put([low, high, expired], now_ms=t)

    async def ids(**kw: object) -> set[bytes]:
        rows = await store.search(Query(now_ms=t, **kw), limit=100)  # type: ignore[arg-type]
        return {s.record.id for s in rows}

    assert await ids() == {low.id, high.id}
    assert await ids(include_expired=True) == {low.id, high.id, expired.id}
    assert await ids(min_severity=alert_pb2.SEVERITY_HIGH) == {high.id}
    assert await ids(categories=frozenset({alert_pb2.CATEGORY_SCAM})) == {low.id}
    assert await ids(origins=frozenset({b.key})) == {high.id}
    assert await ids(keys=keys("x.example"), any_key=True) == {high.id}
    assert await ids(keys=keys("y.example"), any_key=True) == set()
    assert await ids(since_ms=t - 1000, include_expired=True) == {low.id, high.id}
    assert await ids(until_ms=t - 1000, include_expired=True) == {expired.id}
    assert await store.lookup(keys("x.example"), now_ms=t) != {}


async def test_after_is_the_feed_in_commit_order(store: AlertStore) -> None:
    author = Author()
    records = [author.record() for _ in range(5)]
    for r in records:
        await store.put([r], now_ms=now_ms())
    feed = await store.after(Query(now_ms=now_ms()), cursor=2, limit=10)
    assert [s.record.id for s in feed] == [r.id for r in records[2:]]
    assert await store.last_cursor() == 5


async def test_publish_request_ids_are_remembered(store: AlertStore) -> None:
    r = Author().record()
    await store.put([r], now_ms=now_ms(), request_id="req-1")
    assert await store.request("req-1") == r.id
    assert await store.request("req-2") is None


async def test_sqlite_store_survives_a_restart(tmp_path: Path) -> None:
    author = Author()
    records = [author.record(indicators=[(DOMAIN, f"d{i}.example")]) for i in range(10)]
    async with SqliteStore(tmp_path / "a.db") as store:
        await store.put(records[:7], now_ms=now_ms(), request_id="r")
        await store.put(records[8:], now_ms=now_ms())
    async with SqliteStore(tmp_path / "a.db") as store:
        assert await store.count() == 9
        assert store.chains.get(author.key).contiguous == 7
        assert await store.request("r") == records[0].id
        assert await store.put([records[7]], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        assert store.chains.get(author.key).contiguous == 10
        assert await store.last_cursor() == 10
        found = await store.lookup(keys("d3.example"), now_ms=now_ms())
        assert [s.record.id for hits in found.values() for s in hits] == [records[3].id]


async def test_a_store_written_before_key_hashing_is_migrated(tmp_path: Path) -> None:
    """A database from before schema versions (indicator keys as text) opens, re-indexed."""
    author = Author()
    records = [author.record(indicators=[(DOMAIN, f"old{i}.example")]) for i in range(5)]
    async with SqliteStore(tmp_path / "a.db") as store:
        await store.put(records, now_ms=now_ms())
    with sqlite3.connect(tmp_path / "a.db") as db:  # rewind it to the old layout
        _rewind_alerts_to_unique_ids(db)
        for table in KEY_LEVELS + ID_LEVELS:
            db.execute(f"DROP TABLE {table}")
        db.executescript(
            " CREATE TABLE indicator_keys (key TEXT NOT NULL, local_seq INTEGER NOT NULL,"
            " PRIMARY KEY (key, local_seq)) WITHOUT ROWID; PRAGMA user_version = 0;"
        )
        db.executemany(
            "INSERT INTO indicator_keys VALUES (?, ?)",
            [(k, i + 1) for i, r in enumerate(records) for k in r.index_keys],
        )
    async with SqliteStore(tmp_path / "a.db") as store:
        found = await store.lookup(keys("https://www.OLD3.example/x"), now_ms=now_ms())
        assert [s.record.id for hits in found.values() for s in hits] == [records[3].id]
        hits = await store.search(Query(now_ms=now_ms(), keys=keys("old1.example")), limit=10)
        assert [s.record.id for s in hits] == [records[1].id]
        for r in records:
            got = await store.get(r.id)
            assert got is not None and got.record == r
    with sqlite3.connect(tmp_path / "a.db") as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert "indicator_keys" not in tables
        assert not _unique_id_index(db)
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError, match="newer alertmesh"):
        async with SqliteStore(tmp_path / "a.db"):
            pass


async def test_alerts_an_older_alertmesh_wrote_are_indexed_on_the_next_open(
    tmp_path: Path,
) -> None:
    """Rolled back and forward again: an older node ignores the schema version and
    stores new alerts without hashed keys; the newer one indexes them when it opens."""
    author = Author()
    records = [author.record(indicators=[(DOMAIN, f"roll{i}.example")]) for i in range(6)]
    async with SqliteStore(tmp_path / "a.db") as store:
        await store.put(records, now_ms=now_ms())
    with sqlite3.connect(tmp_path / "a.db") as db:  # what the older node left behind
        for table in KEY_LEVELS + ID_LEVELS:
            db.execute(f"DELETE FROM {table} WHERE local_seq > 3")
        db.execute(
            "CREATE TABLE indicator_keys (key TEXT NOT NULL, local_seq INTEGER NOT NULL,"
            " PRIMARY KEY (key, local_seq)) WITHOUT ROWID"
        )
    async with SqliteStore(tmp_path / "a.db") as store:
        for i in range(6):
            found = await store.lookup(keys(f"roll{i}.example"), now_ms=now_ms())
            assert [s.record.id for hits in found.values() for s in hits] == [records[i].id]
            assert await store.get(records[i].id) is not None


async def put(store: SqliteStore, records: list[AlertRecord]) -> list[PutOutcome]:
    """store.put, and then whatever the writer does after answering it (moving index
    rows): a second put waits behind it."""
    outcomes = await store.put(records, now_ms=now_ms())
    await store.put(records[:1], now_ms=now_ms())  # a duplicate: writes nothing
    return outcomes


def _level_rows(path: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Rows in each level, newest first: (indicator keys, alert ids)."""
    with sqlite3.connect(path) as db:
        return tuple(  # type: ignore[return-value]
            tuple(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)
            for tables in LEVELS
        )


async def test_index_rows_move_down_the_levels_and_stay_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Key and id rows go to level 0 and move down once a level is full; every alert is
    found exactly once, by indicator and by id, wherever its rows are, also after a
    restart (which must not index anything again), and a copy of any is a duplicate."""
    monkeypatch.setattr(sqlite_writer, "LEVEL_ROWS", (8, 16))
    author = Author()
    records = [author.record(indicators=[(DOMAIN, f"m{i}.example")]) for i in range(13)]
    db = tmp_path / "a.db"

    async def all_found(store: SqliteStore, upto: int) -> None:
        for i in range(upto):
            found = await store.lookup(keys(f"https://m{i}.example/x"), now_ms=now_ms())
            assert [s.record.id for hits in found.values() for s in hits] == [records[i].id]
            hits = await store.search(Query(now_ms=now_ms(), keys=keys(f"m{i}.example")), limit=5)
            assert [s.record.id for s in hits] == [records[i].id]
            got = await store.get(records[i].id)
            assert got is not None and got.record == records[i]
        ids = [r.id for r in records]
        assert await store.missing(ids) == set(ids[upto:])
        assert set(await store.held(ids)) == set(ids[:upto])
        outcomes = await store.put(records[:upto], now_ms=now_ms())
        assert outcomes == [PutOutcome.DUPLICATE] * upto

    async with SqliteStore(db) as store:
        await put(store, records[:3])  # one key row and one id row each
        await all_found(store, 3)
        assert _level_rows(db) == ((3, 0, 0), (3, 0, 0))
        await put(store, records[3:4])  # level 0 full: moved
        assert _level_rows(db) == ((0, 4, 0), (0, 4, 0))
        await all_found(store, 4)
        await put(store, records[4:8])  # level 1 full too: all to level 2
        assert _level_rows(db) == ((0, 0, 8), (0, 0, 8))
    monkeypatch.setattr(sqlite_writer, "LEVEL_ROWS", (100, 1000))  # no moves to hide in
    async with SqliteStore(db) as store:  # a restart with empty upper levels
        assert _level_rows(db) == ((0, 0, 8), (0, 0, 8))
        await all_found(store, 8)
    monkeypatch.setattr(sqlite_writer, "LEVEL_ROWS", (8, 16))
    async with SqliteStore(db) as store:
        await put(store, records[8:10])
        assert _level_rows(db) == ((2, 0, 8), (2, 0, 8))
        await all_found(store, 10)
    async with SqliteStore(db) as store:  # a restart indexes nothing twice
        assert _level_rows(db) == ((2, 0, 8), (2, 0, 8))
        await all_found(store, 10)
    monkeypatch.setattr(sqlite_writer, "LEVEL_ROWS", (4, 16))
    async with SqliteStore(db) as store:  # opening moves a full level
        assert _level_rows(db) == ((0, 2, 8), (0, 2, 8))
        await put(store, records[10:12])  # 4 rows: moved again
        assert _level_rows(db) == ((0, 4, 8), (0, 4, 8))
        await put(store, records[12:13])
        assert _level_rows(db) == ((1, 4, 8), (1, 4, 8))  # rows in all three levels
        await all_found(store, 13)


async def test_a_failed_move_changes_nothing_and_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A move that fails (here: the first one) is logged; puts and reads go on, every
    row stays found where it was, and a later put moves the rows."""
    monkeypatch.setattr(sqlite_writer, "LEVEL_ROWS", (4, 1000))
    monkeypatch.setattr(sqlite_writer, "MERGE_RETRY_ROWS", 6)
    real = sqlite_writer.Writer._move_full
    failures = iter([sqlite3.OperationalError("database or disk is full")])

    def flaky(self: sqlite_writer.Writer, counts: list[int]) -> list[int]:
        moved = real(self, counts)  # the rows move, then the transaction fails
        if counts[0] >= sqlite_writer.LEVEL_ROWS[0] and (failure := next(failures, None)):
            raise failure
        return moved

    monkeypatch.setattr(sqlite_writer.Writer, "_move_full", flaky)
    author = Author()
    records = [author.record(indicators=[(DOMAIN, f"f{i}.example")]) for i in range(6)]
    db = tmp_path / "a.db"
    async with SqliteStore(db) as store:
        assert await put(store, records[:2]) == [PutOutcome.ACCEPTED] * 2
        assert "moving index rows down failed" in caplog.text
        assert _level_rows(db) == ((2, 0, 0), (2, 0, 0))  # rolled back
        assert await put(store, records[2:4]) == [PutOutcome.ACCEPTED] * 2
        assert _level_rows(db) == ((4, 0, 0), (4, 0, 0))  # not yet: 6 more rows first
        assert await put(store, records[4:]) == [PutOutcome.ACCEPTED] * 2
        assert _level_rows(db) == ((0, 6, 0), (0, 6, 0))
        for i, r in enumerate(records):
            assert await store.get(r.id) is not None
            found = await store.lookup(keys(f"f{i}.example"), now_ms=now_ms())
            assert [s.record.id for hits in found.values() for s in hits] == [r.id]


async def test_a_move_still_failing_when_the_node_starts_again_does_not_stop_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sqlite_writer, "LEVEL_ROWS", (4, 1000))
    real = sqlite_writer.Writer._move_full

    def failing(self: sqlite_writer.Writer, counts: list[int]) -> list[int]:
        real(self, counts)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(sqlite_writer.Writer, "_move_full", failing)
    author = Author()
    records = [author.record(indicators=[(DOMAIN, f"s{i}.example")]) for i in range(3)]
    db = tmp_path / "a.db"
    async with SqliteStore(db) as store:
        await put(store, records[:2])
    async with SqliteStore(db) as store:  # the move is due at once, and fails again
        assert caplog.text.count("moving index rows down failed") == 2
        await put(store, records[2:])
        assert _level_rows(db) == ((3, 0, 0), (3, 0, 0))
    monkeypatch.setattr(sqlite_writer.Writer, "_move_full", real)
    async with SqliteStore(db) as store:  # the disk has room again
        assert _level_rows(db) == ((0, 3, 0), (0, 3, 0))
        for r in records:
            assert await store.get(r.id) is not None


async def test_lookup_hides_expired_alerts_unless_asked_and_keeps_store_order(
    store: AlertStore,
) -> None:
    a, t = Author(), now_ms()
    old = a.record(indicators=[(DOMAIN, "exp.example")], created_at_ms=t - 10_000)
    gone = a.record(
        indicators=[(DOMAIN, "exp.example")], created_at_ms=t - 10_000, expires_at_ms=t - 5_000
    )
    new = a.record(indicators=[(DOMAIN, "exp.example")])
    await store.put([old, gone, new], now_ms=t)

    async def hits(include_expired: bool) -> list[bytes]:
        found = await store.lookup(keys("exp.example"), now_ms=t, include_expired=include_expired)
        return [s.record.id for hits in found.values() for s in hits]

    assert await hits(False) == [old.id, new.id]
    assert await hits(True) == [old.id, gone.id, new.id]


async def test_ids_of_the_wrong_size_are_not_held(store: AlertStore) -> None:
    """Ids from a peer are not checked before the store sees them (IHAVE, IWANT)."""
    author = Author()
    a = author.record()
    await store.put([a], now_ms=now_ms())
    assert await store.get(b"short") is None
    assert await store.missing([b"short", b"", a.id]) == {b"short", b""}
    assert await store.held([b"x" * 40, a.id]) == {a.id: (await store.held([a.id]))[a.id]}


async def test_a_store_from_before_schema_4_is_rebuilt_without_a_unique_id_index(
    tmp_path: Path,
) -> None:
    """Schema 3 kept a UNIQUE index on alerts.id; opening rebuilds the table without it
    once and indexes the ids, and everything held is found as before."""
    author = Author()
    records = [author.record(indicators=[(DOMAIN, f"v3-{i}.example")]) for i in range(5)]
    author.seq, author.head = 4, records[3].id
    second = author.record(title="another fifth")  # same slot as records[4]
    async with SqliteStore(tmp_path / "a.db") as store:
        await store.put([*records, second], now_ms=now_ms())
    with sqlite3.connect(tmp_path / "a.db") as db:  # rewind it to the schema 3 layout
        _rewind_alerts_to_unique_ids(db)
        db.executescript(
            "INSERT INTO indicator_key_hashes SELECT * FROM middle_key_hashes;"
            " DROP TABLE middle_key_hashes; DROP TABLE middle_alert_ids;"
            " DROP TABLE alert_ids; DROP TABLE recent_alert_ids; PRAGMA user_version = 3;"
        )
        assert _unique_id_index(db)
    async with SqliteStore(tmp_path / "a.db") as store:
        for r in records:
            got = await store.get(r.id)
            assert got is not None and got.record == r
        assert await store.missing([r.id for r in records] + [second.id]) == {second.id}
        [proof] = await store.equivocations()
        assert (proof.first.id, proof.second.id) == (records[4].id, second.id)
        found = await store.lookup(keys("v3-2.example"), now_ms=now_ms())
        assert [s.record.id for hits in found.values() for s in hits] == [records[2].id]
        assert await store.put([records[0]], now_ms=now_ms()) == [PutOutcome.DUPLICATE]
    with sqlite3.connect(tmp_path / "a.db") as db:
        assert not _unique_id_index(db)
        assert db.execute("PRAGMA user_version").fetchone() == (sqlite_writer.SCHEMA_VERSION,)


def _rewind_alerts_to_unique_ids(db: sqlite3.Connection) -> None:
    """The alerts table as it was before schema 4: a UNIQUE index on id."""
    db.execute("ALTER TABLE alerts RENAME TO alerts_new")
    db.execute(
        sqlite_writer.ALERTS_TABLE.format(name="alerts").replace(
            "BLOB NOT NULL,  -- indexed", "BLOB NOT NULL UNIQUE,  -- indexed"
        )
    )
    db.execute("INSERT INTO alerts SELECT * FROM alerts_new")
    db.execute("DROP TABLE alerts_new")
    assert _unique_id_index(db)


def _unique_id_index(db: sqlite3.Connection) -> bool:
    return any(
        unique and [c[2] for c in db.execute(f"PRAGMA index_info({name})")] == ["id"]
        for _, name, unique, *_ in db.execute("PRAGMA index_list(alerts)").fetchall()
    )


async def test_concurrent_puts_share_commits(tmp_path: Path) -> None:
    import asyncio

    authors = [Author() for _ in range(4)]
    batches = [[a.record() for _ in range(50)] for a in authors]
    async with SqliteStore(tmp_path / "a.db") as store:
        results = await asyncio.gather(
            *(store.put([r], now_ms=now_ms()) for batch in batches for r in batch)
        )
        assert all(r == [PutOutcome.ACCEPTED] for r in results)
        assert await store.count() == 200


async def test_a_put_is_visible_to_reads_at_once_under_concurrent_reads(store: AlertStore) -> None:
    """Overlapping reads must not pin an old snapshot (a regression seen under gossip load)."""
    import asyncio

    author = Author()
    records = [author.record() for _ in range(200)]
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            await store.missing([r.id for r in records[:20]])
            await store.search(Query(now_ms=now_ms()), limit=5)
            await asyncio.sleep(0)  # the memory store never suspends by itself

    async def writer(r: object) -> bool:
        await store.put([r], now_ms=now_ms())  # type: ignore[list-item]
        return await store.get(r.id) is not None  # type: ignore[attr-defined]

    readers = [asyncio.create_task(reader()) for _ in range(16)]
    try:
        seen = await asyncio.gather(*(writer(r) for r in records))
    finally:
        stop.set()
        await asyncio.gather(*readers)
    assert all(seen)


async def test_schema_6_reindexes_international_host_names_as_idna_2008_maps_them(
    tmp_path: Path,
) -> None:
    """A store written when domains were mapped by IDNA 2003 (faß -> fass): on upgrade
    the keys of held alerts are recomputed from their signed bodies, which stay as they
    are, so a lookup finds them in the spelling a browser visits."""
    author = Author()
    raw = [
        (DOMAIN, "FAß.example."),
        (indicators.URL, "https://faß.example/claim"),
        (indicators.EMAIL, "bob@faß.example"),
    ]
    international = author.record(indicators=raw)
    plain = author.record(indicators=[(DOMAIN, "plain.example")])
    # An IDNA 2003 name that IDNA 2008 refuses (a symbol): it keeps its old keys.
    snowman_alert = author.alert(indicators=[(DOMAIN, "☃.example")])
    signed = author.sign(snowman_alert)
    snowman = make_record(signed.body, signed.signature, snowman_alert, ("d:xn--n3h.example",))
    old_keys = {  # what schema 5 stored (the stdlib codec's IDNA 2003)
        international.id: ("d:fass.example", "u:https://fass.example/claim", "e:bob@fass.example"),
    }
    async with SqliteStore(tmp_path / "a.db") as store:
        await store.put([international, plain, snowman], now_ms=now_ms())
    with sqlite3.connect(tmp_path / "a.db") as db:  # rewind it to the schema 5 index
        for alert_id, old in old_keys.items():
            [(seq, new)] = db.execute(
                "SELECT local_seq, index_keys FROM alerts WHERE id = ?", (alert_id,)
            ).fetchall()
            db.executemany(
                f"DELETE FROM {KEY_LEVELS[0]} WHERE key = ? AND local_seq = ?",
                [(sqlite_writer.key_hash(k), seq) for k in new.split(sqlite_writer.KEY_SEP)],
            )
            db.executemany(
                f"INSERT INTO {KEY_LEVELS[0]} VALUES (?, ?)",
                [(sqlite_writer.key_hash(k), seq) for k in old],
            )
            db.execute(
                "UPDATE alerts SET index_keys = ? WHERE local_seq = ?",
                (sqlite_writer.KEY_SEP.join(old), seq),
            )
        db.execute("PRAGMA user_version = 5")
    async with SqliteStore(tmp_path / "a.db") as store:
        for spelling in ("faß.example", "https://login.FAß.example/", "bob@faß.example"):
            found = await store.lookup(keys(spelling), now_ms=now_ms())
            assert {s.record.id for hits in found.values() for s in hits} == {international.id}
        assert await store.lookup(keys("fass.example"), now_ms=now_ms()) == {}
        got = await store.get(international.id)
        assert got is not None and got.record.body == international.body  # signed, unchanged
        assert got.record.index_keys == international.index_keys
        for spelling, record in (("plain.example", plain), ("xn--n3h.example", snowman)):
            found = await store.lookup(keys(spelling), now_ms=now_ms())
            assert [s.record.id for hits in found.values() for s in hits] == [record.id]
    with sqlite3.connect(tmp_path / "a.db") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (6,)


async def test_alerts_linking_to_an_alert_are_found_by_its_link_key(store: AlertStore) -> None:
    """Lifecycle lookups (node/app/lifecycle.py) need no store method of their own: a
    retraction, update, sighting or dispute is indexed under link:<hex id> of its target."""
    author, other = Author(), Author()
    flag = author.record(indicators=[(DOMAIN, "linked.example")])
    retraction = author.record(
        links=[alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_RETRACTION, alert_id=flag.id)]
    )
    dispute = other.record(
        links=[alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_DISPUTE, alert_id=flag.id)]
    )
    about_value = other.record(
        indicators=[(DOMAIN, "linked.example")],
        links=[alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_SIGHTING, count=3)],
    )
    await store.put([flag, retraction, dispute, about_value], now_ms=now_ms())
    found = await store.lookup([link_key(flag.id), link_key(retraction.id)], now_ms=now_ms())
    assert [s.record.id for s in found[link_key(flag.id)]] == [retraction.id, dispute.id]
    assert link_key(retraction.id) not in found
    by_value = await store.lookup(keys("linked.example"), now_ms=now_ms())
    assert {s.record.id for hits in by_value.values() for s in hits} == {flag.id, about_value.id}
