"""The SQLite store's filter of held indicator keys (node/store/keyfilter.py): it never
rules out a key the store holds, through growth and restarts, and a check of values
nobody flagged costs no query."""

import random
from pathlib import Path

import pytest

from node.core import indicators
from node.store import SqliteStore, keyfilter
from node.store.keyfilter import KeyFilter
from node.store.sqlite import key_hashes, maybe_held_keys
from node.store.sqlite_writer import key_hash
from tests.factory import DOMAIN, Author, now_ms


def keys(text: str) -> frozenset[str]:
    return frozenset(indicators.lookup_keys(indicators.parse(text, strict=False)))


def test_never_rules_out_a_key_it_holds_and_rarely_admits_one_it_does_not() -> None:
    rng = random.Random(7)
    held = [rng.getrandbits(64) - (1 << 63) for _ in range(300_000)]
    f = KeyFilter(1000)  # far too small: grows by new tables
    for i in range(0, len(held), 4096):
        f.add(held[i : i + 4096])
    assert f.tables > 1 and f.count == len(held)
    assert all(f.may_hold(h) for h in held)
    assert f.maybe_held(held) == held
    others = [rng.getrandbits(64) - (1 << 63) for _ in range(20_000)]
    false_positives = len(f.maybe_held(others))
    assert false_positives < 0.03 * len(others)  # sized for about 1 %
    one = KeyFilter(len(held))
    one.add(held)
    assert one.tables == 1 and one.maybe_held(held) == held
    assert len(one.maybe_held(others)) < 0.03 * len(others)


async def test_the_store_finds_every_key_through_filter_growth_and_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyfilter, "MIN_KEYS", 4)  # tiny tables: a new one every few puts
    author = Author()
    records = [author.record(indicators=[(DOMAIN, f"f{i}.example")]) for i in range(60)]

    async def all_found(store: SqliteStore, upto: int) -> None:
        for i in range(upto):
            found = await store.lookup(keys(f"https://F{i}.example/x"), now_ms=now_ms())
            assert [s.record.id for hits in found.values() for s in hits] == [records[i].id]

    db = tmp_path / "a.db"
    async with SqliteStore(db) as store:
        for i in range(0, 30, 3):
            await store.put(records[i : i + 3], now_ms=now_ms())
            await all_found(store, i + 3)
        assert store._filter is not None and store._filter.tables > 1
    async with SqliteStore(db) as store:  # built again from the index, in one table
        assert store._filter is not None and store._filter.tables == 1
        await all_found(store, 30)
        await store.put(records[30:], now_ms=now_ms())
        await all_found(store, 60)


async def test_a_check_of_values_nobody_flagged_runs_no_query(tmp_path: Path) -> None:
    author = Author()
    records = [author.record(indicators=[(DOMAIN, f"q{i}.example")]) for i in range(50)]
    async with SqliteStore(tmp_path / "a.db") as store:
        await store.put(records, now_ms=now_ms())
        statements: list[str] = []
        assert store._rdb is not None
        await store._rdb.set_trace_callback(statements.append)
        queried = 0
        for i in range(200):  # one value per check, as a withdrawal is screened
            assert await store.lookup(keys(f"clean{i}.example"), now_ms=now_ms()) == {}
            queried += bool(statements)
            statements.clear()
        assert queried <= 10  # a false positive (~1 % of keys) costs one query
        found = await store.lookup(keys("q7.example") | keys("clean1.example"), now_ms=now_ms())
        assert [s.record.id for hits in found.values() for s in hits] == [records[7].id]
        assert len(statements) == 1
        await store._rdb.set_trace_callback(None)


def test_hashes_the_store_indexes_are_the_filters_hashes() -> None:
    """The filter is fed the index's own key hashes (signed 64-bit), and lookups hash
    asked keys the same way."""
    f = KeyFilter()
    asked = ["domain:example.com", "address:eip155:1:0xab", "url:https://a.example/é"]
    h = key_hash(asked[0])
    assert -(1 << 63) <= h < (1 << 63)
    f.add([h])
    assert f.may_hold(h)
    assert key_hashes(asked) == [key_hash(k) for k in asked]


def test_the_lookups_single_loop_keeps_exactly_the_keys_the_filter_may_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SqliteStore.lookup hashes and tests keys in one loop (maybe_held_keys): it keeps a
    key exactly when may_hold(key_hash(key)) says so, with one table or several."""
    monkeypatch.setattr(keyfilter, "MIN_KEYS", 4)  # tiny tables: a new one every few keys
    held = [f"d:held{i}.example" for i in range(3000)]
    asked = held[::7] + [f"d:other{i}.example" for i in range(20_000)]
    for tables in (KeyFilter(len(held)), KeyFilter(100)):  # one table; grown to several
        tables.add(key_hash(k) for k in held)
        kept = maybe_held_keys(asked, tables)
        expected = [k for k in asked if tables.may_hold(key_hash(k))]
        assert [k for keys in kept.values() for k in keys] == expected
        assert all(key_hash(k) == h for h, keys in kept.items() for k in keys)
        assert set(held[::7]) <= set(expected) and len(expected) < len(held[::7]) + 600
    assert KeyFilter(len(held)).tables == 1 and tables.tables > 4
    everything = maybe_held_keys(asked, None)  # no filter: every key, by its hash
    assert sorted(k for keys in everything.values() for k in keys) == sorted(asked)


def _three_bits(h: int) -> int:
    """The bits a key sets, as the filter has always computed them (shifts)."""
    return (1 << ((h >> 40) & 63)) | (1 << ((h >> 46) & 63)) | (1 << ((h >> 52) & 63))


def test_the_tables_set_and_test_exactly_the_three_bits_of_each_hash() -> None:
    # add and maybe_held take the bits from lookup tables (keyfilter._TWO_BITS, _BIT); a
    # filter built before, or read by sqlite_reads' inline test, uses the shifts above.
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    hashes = [rng.getrandbits(64) - (1 << 63) for _ in range(50_000)]
    hashes += [0, -1, (1 << 63) - 1, -(1 << 63)]
    hashes += [s << b for s in (1, -1) for b in range(63)]
    assert [keyfilter.bits_of(h) for h in hashes] == [_three_bits(h) for h in hashes]
    f = KeyFilter()
    f.add(hashes)
    [(words, mask)] = f.probes()
    expected = [0] * len(words)
    for h in hashes:
        expected[h & mask] |= _three_bits(h)
    assert list(words) == expected
    probe = [rng.getrandbits(64) - (1 << 63) for _ in range(50_000)]
    assert f.maybe_held(probe) == [
        h for h in probe if words[h & mask] & _three_bits(h) == _three_bits(h)
    ]
