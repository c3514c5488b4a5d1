"""The ingest write path in one process: a batch large enough for every statement shape
of the store writer (multi-row INSERTs and their tail) stores each alert field for field,
with its keys findable, while duplicates and equivocations inside the same batch and
against held alerts keep their outcomes and their counters; the protocol rules that
validate reads once still refuse what they refused."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node.app.service import AlertNode
from node.app.verify import Verifier
from node.core import alerts, index_keys, indicators
from node.core.errors import InvalidAlert, LimitExceeded
from node.core.limits import DEFAULT_LIMITS
from node.core.roster import Member, Roster
from node.crypto import Identity
from node.store import PutOutcome, SqliteStore
from node.store.sqlite_writer import ROWS_PER_INSERT
from tests.factory import ADDRESS, DOMAIN, Author, now_ms

EVM = "eip155:1:0x00000000000000000000000000000000000000%02x"


@pytest.fixture
async def verifier() -> AsyncIterator[Verifier]:
    async with Verifier(DEFAULT_LIMITS, processes=1) as v:
        yield v


async def test_a_large_batch_is_stored_field_for_field_with_its_outcomes(tmp_path: Path) -> None:
    author, other = Author(), Author()
    records = [
        author.record(indicators=[(DOMAIN, f"d{i}.example"), (ADDRESS, EVM % i)])
        for i in range(2 * ROWS_PER_INSERT + 7)  # two full statements and a tail
    ]
    first = other.record(title="first")
    other.seq, other.head = 0, b""
    second = other.record(title="second")  # the same slot: an equivocation
    batch = [*records[:60], records[3], first, second, *records[60:]]
    at = now_ms()
    async with SqliteStore(tmp_path / "a.db") as store:
        outcomes = await store.put(batch, now_ms=at)
        assert outcomes == [
            *[PutOutcome.ACCEPTED] * 60,
            PutOutcome.DUPLICATE,
            PutOutcome.ACCEPTED,
            PutOutcome.EQUIVOCATION,
            *[PutOutcome.ACCEPTED] * (len(records) - 60),
        ]
        # Against held alerts now: a slot is held, so the store is asked.
        assert (
            await store.put([records[0], second, records[-1]], now_ms=at)
            == [PutOutcome.DUPLICATE] * 3
        )
        stored = [await store.get(r.id) for r in [*records, first]]
        assert [s.record if s else None for s in stored] == [*records, first]
        assert [s.local_seq for s in stored if s] == [
            *range(1, 61),
            *range(62, len(records) + 2),
            61,
        ]
        assert all(s.received_at_ms == at for s in stored if s)
        [proof] = await store.equivocations()
        assert (proof.first.id, proof.second.id) == (first.id, second.id)
        for i in (0, ROWS_PER_INSERT - 1, ROWS_PER_INSERT, len(records) - 1):
            wanted = indicators.lookup_keys(indicators.parse(f"d{i}.example", strict=False))
            found = await store.lookup(wanted, now_ms=at)
            assert [s.record.id for hits in found.values() for s in hits] == [records[i].id]
            found = await store.lookup(
                indicators.lookup_keys(indicators.parse(EVM % i, strict=False)), now_ms=at
            )
            assert {s.record.id for hits in found.values() for s in hits} == {records[i].id}
        assert await store.count() == len(records) + 1
    # One index row per key and one id row per alert, whatever the statement shape.
    with sqlite3.connect(tmp_path / "a.db") as db:
        [(key_rows,)] = db.execute("SELECT count(*) FROM recent_key_hashes").fetchall()
        [(id_rows,)] = db.execute("SELECT count(*) FROM recent_alert_ids").fetchall()
    assert key_rows == sum(len(r.index_keys) for r in [*records, first])
    assert id_rows == len(records) + 1


async def test_ingest_counts_each_outcome(tmp_path: Path, verifier: Verifier) -> None:
    author, liar = Author(), Author()
    identity = Identity.generate()
    roster = Roster.of(
        [
            Member("self", identity.public_key),
            Member("author", author.key),
            Member("liar", liar.key),
        ]
    )
    held = [author.next() for _ in range(3)]
    fresh = [author.next() for _ in range(70)]  # enough for the worker processes
    first = liar.next(title="first")
    liar.seq, liar.head = 0, b""
    second = liar.next(title="second")
    junk = alert_pb2.SignedAlert(body=b"\xff\xff", signature=b"\0" * 64)
    async with SqliteStore(tmp_path / "a.db") as store:
        node = AlertNode(
            identity=identity, roster=roster, store=store, verifier=verifier, limits=DEFAULT_LIMITS
        )
        await node.ingest([(s.body, s.signature) for s in [*held, first]])
        batch = [*held, *fresh, fresh[0], second, junk]
        results = await node.ingest([(s.body, s.signature) for s in batch])
        counters = (await node.stats()).counters
    assert [r.outcome for r in results] == [
        *[PutOutcome.DUPLICATE] * 3,
        *[PutOutcome.ACCEPTED] * 70,
        PutOutcome.DUPLICATE,
        PutOutcome.EQUIVOCATION,
        None,
    ]
    assert isinstance(results[-1].error, InvalidAlert)
    assert [r.id for r in results[:-1]] == [alerts.alert_id(s.body) for s in batch[:-1]]
    assert all(r.record is not None for r in results[3:-1])
    assert counters["ingest_accepted"] == 4 + 70
    assert counters["ingest_duplicate"] == 4
    assert counters["ingest_equivocation"] == 1
    assert counters["rejected_InvalidAlert"] == 1


def test_the_rules_validate_reads_once_still_refuse() -> None:
    author = Author()
    now = now_ms()
    limits = DEFAULT_LIMITS

    def check(alert: alert_pb2.Alert, encrypted: bool = False) -> tuple[str, ...]:
        return alerts.validate(alert, now_ms=now, limits=limits, encrypted=encrypted)

    clear = author.alert()
    clear.recipients.append(b"\1" * 32)
    with pytest.raises(InvalidAlert, match="recipients are only for encrypted alerts"):
        check(clear)
    full = author.alert()
    full.recipients.extend(bytes([i]) * 32 for i in range(limits.max_recipients + 1))
    with pytest.raises(LimitExceeded, match="recipients; the limit is"):
        check(full, encrypted=True)
    many = author.alert()
    many.references.extend(["https://r.example/"] * (limits.max_references + 1))
    with pytest.raises(LimitExceeded, match="references; the limit is"):
        check(many)
    long_ref = author.alert()
    long_ref.references.append("x" * (limits.max_reference_chars + 1))
    with pytest.raises(LimitExceeded, match="a reference is"):
        check(long_ref)
    linked = author.alert(indicators=[(DOMAIN, "linked.example")])
    target = b"\7" * 32
    linked.links.add(kind=alert_pb2.LINK_KIND_UPDATE, alert_id=target)
    linked.links.add(kind=alert_pb2.LINK_KIND_SIGHTING, alert_id=target)
    assert check(linked) == ("d:linked.example", index_keys.link_key(target))
    assert index_keys.link_keys(linked) == (index_keys.link_key(target),)
    assert index_keys.link_keys(author.alert()) == ()
    bad_tlp = author.alert()
    bad_tlp.tlp = 99  # type: ignore[assignment]
    with pytest.raises(InvalidAlert, match="unknown TLP marking 99"):
        check(bad_tlp)
    red = author.alert()
    red.tlp = alert_pb2.TLP_RED
    with pytest.raises(InvalidAlert, match="TLP:RED"):
        check(red)
