"""The node's verifier processes: they come and go with the node, and losing one loses
nothing."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import pickle
import random
import signal
import time
from array import array
from pathlib import Path

import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.app.sharing import Sharing
from node.app.verify import PROCESS_MIN, Admitted, Verifier, admit, check_batch, require_author
from node.app.verify_worker import HEADER, items_of, serve, task
from node.core.alerts import (
    AlertRecord,
    alert_id,
    checked_fields,
    decode_head,
    make_record,
    record_fields,
    validate,
)
from node.core.errors import AlertmeshError, InvalidAlert, InvalidSignature, UnknownOrigin
from node.core.limits import DEFAULT_LIMITS
from node.core.roster import Member, Roster
from node.crypto import Identity, sign_alert
from node.rpc.client import AlertClient
from tests.clusters import eventually
from tests.factory import DOMAIN, Author, now_ms
from tests.procs import NodeProcess, alive, children, cpu_ticks, new_node

BATCH = max(PROCESS_MIN, 200)


async def exited(pids: list[int]) -> bool:
    return not any(alive(p) for p in pids)


async def ingest_batch(node: NodeProcess, author: Author, tag: str) -> list[int]:
    batch = [author.next(indicators=[(DOMAIN, f"{tag}{i}.example")]) for i in range(BATCH)]
    async with AlertClient(node.address) as client:
        response = await client.ingest(batch)
    return [r.outcome for r in response.results]


async def test_a_killed_verifier_process_is_replaced_and_its_batch_still_checked(
    tmp_path: Path,
) -> None:
    author = Author()
    node = new_node(tmp_path / "n", "acme", {"m": author.key})
    try:
        assert node.proc is not None
        assert children(node.proc.pid) == []  # started on the first large batch only
        outcomes = await ingest_batch(node, author, "first")
        assert outcomes == [api.INGEST_OUTCOME_ACCEPTED] * BATCH
        workers = children(node.proc.pid)
        assert workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        await eventually(lambda: exited(workers), "the killed workers to exit", timeout=20)
        # Every batch is still checked and stored; new workers take over within seconds.
        batches, replaced = 1, []
        deadline = time.monotonic() + 30
        while not replaced and time.monotonic() < deadline:
            outcomes = await ingest_batch(node, author, f"after{batches}")
            assert outcomes == [api.INGEST_OUTCOME_ACCEPTED] * BATCH
            batches += 1
            replaced = children(node.proc.pid)
            if not replaced:
                await asyncio.sleep(1.0)
        assert replaced and not set(replaced) & set(workers)
        async with AlertClient(node.address) as client:
            assert (await client.stats()).alerts == batches * BATCH
        assert "verifier process" in node.log.read_text()
    finally:
        node.kill()


async def test_workers_killed_mid_batch_lose_nothing(tmp_path: Path) -> None:
    author = Author()
    node = new_node(tmp_path / "n", "acme", {"m": author.key})
    try:
        assert node.proc is not None
        await ingest_batch(node, author, "warm")  # the workers are up
        stored = BATCH
        for attempt in range(3):
            batches = [
                [
                    author.next(indicators=[(DOMAIN, f"r{attempt}b{b}i{i}.example")])
                    for i in range(1000)
                ]
                for b in range(6)
            ]
            workers = children(node.proc.pid)
            busy_from = sum(cpu_ticks(p) for p in workers)
            async with AlertClient(node.address) as client:
                calls = [asyncio.create_task(client.ingest(b)) for b in batches]
                # Kill them once they are working on these batches, none answered yet.
                for _ in range(2000):  # polling /proc: at most ~10 s
                    busy = sum(cpu_ticks(p) for p in workers) > busy_from + 1
                    if busy or any(c.done() for c in calls):
                        break
                    await asyncio.sleep(0.005)
                mid_batch = not any(c.done() for c in calls)
                for pid in workers:
                    os.kill(pid, signal.SIGKILL)
                responses = await asyncio.gather(*calls)
            for response in responses:
                assert [r.outcome for r in response.results] == [api.INGEST_OUTCOME_ACCEPTED] * 1000
            stored += 6000
            if mid_batch:
                break
        assert mid_batch, "the workers finished before they could be killed, 3 times"
        assert "checking its batch on a thread" in node.log.read_text()
        async with AlertClient(node.address) as client:
            assert (await client.stats()).alerts == stored
    finally:
        node.kill()


async def test_verifier_processes_end_with_the_node(tmp_path: Path) -> None:
    author = Author()
    for how in (signal.SIGTERM, signal.SIGKILL):
        node = new_node(tmp_path / how.name, "acme", {"m": author.key})
        try:
            assert node.proc is not None
            await ingest_batch(node, author, how.name)
            workers = children(node.proc.pid)
            assert workers
            node.stop(how)
            await eventually(
                functools.partial(exited, workers), f"workers to exit after {how.name}", 20
            )
        finally:
            node.kill()


async def test_workers_that_cannot_start_leave_the_checks_to_a_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fault injection: the worker command fails at once (here, a module that does not
    exist). Every alert is still checked, bad ones refused, on the thread."""
    author = Author()
    roster = Roster.of([Member("m", author.key)])
    signed = [author.next(indicators=[(DOMAIN, f"t{i}.example")]) for i in range(BATCH)]
    signed[7] = alert_pb2.SignedAlert(body=signed[7].body, signature=bytes(64))
    items = [
        Admitted(alert_id(s.body), s.body, s.signature, admit(s.body, DEFAULT_LIMITS, roster))
        for s in signed
    ]
    async with Verifier(DEFAULT_LIMITS, processes=2, worker="node.app.no_such_worker") as v:
        for _ in range(3):
            checked = await v.check(items, now_ms())
            assert isinstance(checked[7], InvalidSignature)
            assert [c.id for c in checked if isinstance(c, AlertRecord)] == [
                item.id for i, item in enumerate(items) if i != 7
            ]
    assert "checking its batch on a thread" in caplog.text


def hostile_batch(author: Author, stranger: Author) -> tuple[list[tuple[bytes, bytes]], list[str]]:
    """Good alerts with, among them, one of each kind of junk the worker must refuse
    (admitted by its head only, so some do not even decode), and what each should get."""
    items: list[tuple[bytes, bytes]] = []
    expected: list[str] = []
    good = [author.next(indicators=[(DOMAIN, f"h{i}.example")]) for i in range(PROCESS_MIN)]
    undecodable = good[1].body + b"\x4a\x02\xff\xfe"  # a title that is not UTF-8
    twice = stranger.alert().SerializeToString() + b"\x0a\x20" + author.key
    junk = {
        "InvalidAlert": (undecodable, sign_alert(author.identity, undecodable)),
        "InvalidSignature": (good[2].body, bytes(64)),
        "InvalidSignature ": (good[3].body, b""),
        "LimitExceeded": (b"\x0a" * (DEFAULT_LIMITS.max_body_bytes + 1), bytes(64)),
        "InvalidAlert ": (b"", bytes(64)),
        "InvalidAlert  ": (b"\xff\xff\xff\xff", bytes(64)),
        "AlertRecord": (twice, sign_alert(author.identity, twice)),  # the last origin counts
    }
    for i, s in enumerate(good):
        items.append((s.body, s.signature))
        expected.append("AlertRecord")
        if i < len(junk):
            kind, item = list(junk.items())[i]
            items.append(item)
            expected.append(kind.strip())
    return items, expected


def test_the_worker_answers_every_alert_of_a_hostile_task_and_keeps_serving() -> None:
    """The compact worker protocol end to end (node.app.verify_worker.serve over byte
    streams): each alert gets its record's fields or its error, the fields are those
    of the record decoded directly, and junk does not stop the worker."""
    author, stranger = Author(), Author()
    items, expected = hostile_batch(author, stranger)
    now = now_ms()
    tasks = io.BytesIO(
        task(1, items, now, DEFAULT_LIMITS) + task(2, items[:3], now, DEFAULT_LIMITS)
    )
    answers = io.BytesIO()
    serve(tasks, answers)  # returns at the end of its input, as when the node closes stdin
    answers.seek(0)
    results = []
    while header := answers.read(HEADER.size):
        (size,) = HEADER.unpack(header)
        results.append(pickle.loads(answers.read(size)))
    assert [number for number, _ in results] == [1, 2]
    first = results[0][1]
    kinds = [type(r).__name__ if isinstance(r, Exception) else "AlertRecord" for r in first]
    assert kinds == expected
    for (body, _), result in zip(items, first, strict=True):
        if not isinstance(result, Exception):
            alert = alert_pb2.Alert.FromString(body)
            keys = validate(alert, now_ms=now, limits=DEFAULT_LIMITS)
            assert result == record_fields(alert, keys)
            assert result[0] == author.key
    shown = [r if not isinstance(r, Exception) else (type(r), str(r)) for r in results[1][1]]
    assert shown == [r if not isinstance(r, Exception) else (type(r), str(r)) for r in first[:3]]


def test_a_task_whose_sizes_do_not_add_up_is_refused() -> None:
    with pytest.raises(ValueError, match="sizes"):
        items_of(array("I", [3, 64]).tobytes(), b"abc")
    with pytest.raises(ValueError, match="sizes"):
        items_of(array("I", [3]).tobytes(), b"abc")
    assert items_of(array("I", [3, 1, 0, 2]).tobytes(), b"abcdef") == [
        (b"abc", b"d"),
        (b"", b"ef"),
    ]


@pytest.mark.parametrize("processes", [True, False])
async def test_records_from_the_verifier_are_those_checked_directly(processes: bool) -> None:
    """Worker processes (and the thread, for small batches) send back record fields: the
    records built from them equal check_signed's, and junk gets check_signed's errors."""
    author, stranger = Author(), Author()
    roster = Roster.of([Member("m", author.key)])
    items, _ = hostile_batch(author, stranger)
    now = now_ms()
    admitted, direct = [], []
    for body, signature in items:
        try:
            head = decode_head(body, DEFAULT_LIMITS)
        except AlertmeshError:
            continue
        item = Admitted(alert_id(body), body, signature, head)
        require_author(item, DEFAULT_LIMITS, roster)
        admitted.append(item)
        direct.append(check_batch([(body, signature)], roster, now, DEFAULT_LIMITS)[0])
    if not processes:
        admitted, direct = admitted[: PROCESS_MIN - 1], direct[: PROCESS_MIN - 1]
    async with Verifier(DEFAULT_LIMITS, processes=1) as verifier:
        checked = await verifier.check(admitted, now)
        assert bool(verifier._workers) == processes
    assert len(checked) == len(direct)
    for mine, theirs in zip(checked, direct, strict=True):
        if isinstance(theirs, AlertRecord):
            assert mine == theirs
        else:
            assert (type(mine), str(mine)) == (type(theirs), str(theirs))
    kinds = {type(c).__name__ for c in checked}
    assert kinds == {"AlertRecord", "InvalidAlert", "InvalidSignature"}


def test_require_author_finds_decoding_errors_before_roster_errors() -> None:
    author, stranger = Author(), Author()
    roster = Roster.of([Member("m", author.key)])
    body = stranger.alert().SerializeToString()
    for junk, error in ((body + b"\x4a\x01\xff", InvalidAlert), (body, UnknownOrigin)):
        item = Admitted(alert_id(junk), junk, bytes(64), decode_head(junk, DEFAULT_LIMITS))
        with pytest.raises(error):
            require_author(item, DEFAULT_LIMITS, roster)


def test_the_fields_a_worker_sends_are_those_of_the_record_of_what_validate_indexes() -> None:
    """checked_fields reads each field once while it checks the rules (the worker sends
    them back): for clear alerts of every category, severity, TLP and confidence, with
    and without expiry, links and indicators, and for an encrypted envelope, they are
    record_fields(alert, validate(alert)), and check_batch's record is make_record's."""
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    author = Author()
    now = now_ms()
    cases = []
    for i in range(200):
        alert = author.alert(
            category=rng.choice([v for v in alert_pb2.Category.values() if v]),
            severity=rng.choice(alert_pb2.Severity.values()),
            tlp=rng.choice([t for t in alert_pb2.Tlp.values() if t != alert_pb2.TLP_RED]),
            confidence=rng.randrange(101),
            indicators=[(DOMAIN, f"c{i}-{j}.example") for j in range(rng.randrange(4))],
        )
        if rng.random() < 0.3:
            alert.expires_at_ms = alert.created_at_ms + rng.randrange(1, 10**9)
        if rng.random() < 0.2:
            alert.links.add(kind=alert_pb2.LINK_KIND_UPDATE, alert_id=rng.randbytes(32))
        cases.append(author.sign(alert).body)
    full = author.alert(tlp=alert_pb2.TLP_RED, indicators=[(DOMAIN, "red.example")])
    bob = Identity.generate()
    full.recipients.append(bob.public_key)
    envelope = Sharing(author.identity, [], DEFAULT_LIMITS).envelope(full, [bob.public_key])
    cases.append(author.sign(envelope).body)
    roster = Roster.of([Member("m", author.key)])
    for body in cases:
        alert = alert_pb2.Alert.FromString(body)
        fields = checked_fields(alert, now_ms=now, limits=DEFAULT_LIMITS)
        keys = validate(alert, now_ms=now, limits=DEFAULT_LIMITS)
        assert fields == record_fields(alert, keys)
        signature = sign_alert(author.identity, body)
        (record,) = check_batch([(body, signature)], roster, now, DEFAULT_LIMITS)
        assert record == make_record(body, signature, alert, keys)
