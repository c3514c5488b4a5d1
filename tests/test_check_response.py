"""CheckIndicators answers the same whichever way it is built: the response written by
node/rpc/check_response.py equals the one built message by message, and a check of many
values at once on the SQLite store (filter, one query per batch) gives every value the
result it gets alone and on the in-memory store."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.app.service import AlertNode
from node.app.valuelists import Allowlist
from node.app.verify import Verifier
from node.core.limits import DEFAULT_LIMITS
from node.core.roster import Member, Roster
from node.crypto import Identity
from node.rpc.alert_service import AlertService
from node.rpc.check_response import _varint, check_response, result_message
from node.store.memory import MemoryStore
from node.store.sqlite import SqliteStore

ADDRESS = alert_pb2.INDICATOR_TYPE_ADDRESS
DOMAIN = alert_pb2.INDICATOR_TYPE_DOMAIN
HANDLE = alert_pb2.INDICATOR_TYPE_HANDLE
URL = alert_pb2.INDICATOR_TYPE_URL
EVM = "0x" + "ab12" * 10
NOW = [1_900_000_000_000]  # the nodes' clock; moved on once all is published


def draft(
    *indicators: tuple[int, str], links: Sequence[alert_pb2.AlertLink] = ()
) -> alert_pb2.Alert:
    alert = alert_pb2.Alert(
        category=alert_pb2.CATEGORY_PHISHING,
        severity=alert_pb2.SEVERITY_HIGH,
        confidence=80,
        title="check response",
    )
    for t, v in indicators:
        alert.indicators.add(type=t, value=v)
    alert.links.extend(links)
    return alert


async def populate(node: AlertNode) -> None:
    """Flagged, updated, retracted and expired values, and an allowlisted one."""
    first, _ = await node.publish(draft((DOMAIN, "flagged.example"), (DOMAIN, "old.example")))
    update = alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_UPDATE, alert_id=first.record.id)
    await node.publish(draft((DOMAIN, "flagged.example"), (ADDRESS, EVM), links=[update]))
    gone, _ = await node.publish(draft((DOMAIN, "retracted.example"), (HANDLE, "telegram:gone")))
    retract = alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_RETRACTION, alert_id=gone.record.id)
    await node.publish(draft(links=[retract]))
    await node.publish(draft((URL, "https://phish.example/login"), (DOMAIN, "allowed.example")))
    for i in range(40):
        await node.publish(draft((DOMAIN, f"many{i}.example")))
    expiring = draft((DOMAIN, "expired.example"))
    expiring.expires_at_ms = NOW[0] + 1_000
    await node.publish(expiring)
    node.allowlist = Allowlist.parse("allowed.example\nnever-flagged.example\n")


def later() -> None:
    NOW[0] += 60_000  # expired.example has expired


def values(seed: int, n: int) -> list[str]:
    """A mix: flagged values respelled, subdomains and URLs of flagged domains, retracted,
    allowlisted, values nobody flagged (some long, some not ASCII), and invalid ones."""
    rng = random.Random(seed)
    pool = [
        "flagged.example",
        "FLAGGED.example.",
        "https://www.flagged.example/a?b=c",
        "sub.old.example",
        EVM,
        EVM.upper().replace("0X", "0x"),
        f"address:eip155:1:{EVM}",
        "retracted.example",
        "handle:telegram:gone",
        "https://phish.example/login",
        "allowed.example",
        "www.never-flagged.example",
        "many7.example",
        "expired.example",
        "https://many12.example/x",
        "",
        "   ",
        "domain:",
        "address:not-an-address",
        "x" * 300,
        "tx:eip155:1:0x" + "cd" * 32,  # a result of 128 bytes or more (a 2-byte length)
        "https://clean.example/" + "q" * 90,
    ]
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.3:
            out.append(rng.choice(pool))
        elif r < 0.4:
            out.append(f"bücher-{i}.example")
        elif r < 0.5:
            out.append("https://clean.example/" + "p" * rng.randrange(100, 20_000))
        else:
            out.append(f"clean-{rng.randrange(10**9)}.example")
    return out


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[AlertNode, AlertNode]]:
    NOW[0] = 1_900_000_000_000
    identity = Identity.generate()
    roster = Roster.of([Member("beta", identity.public_key)])
    async with (
        Verifier(DEFAULT_LIMITS, processes=1) as verifier,
        SqliteStore(tmp_path / "alerts.db") as sqlite_store,
    ):
        made = []
        for store in (sqlite_store, MemoryStore()):
            node = AlertNode(
                identity=identity,
                roster=roster,
                store=store,
                verifier=verifier,
                limits=DEFAULT_LIMITS,
                clock=lambda: NOW[0],
            )
            await node.start()
            made.append(node)
        yield made[0], made[1]


def plain(results: Sequence[object], node: AlertNode) -> api.CheckIndicatorsResponse:
    """The response as the handler built it before: one message per result."""
    out = api.CheckIndicatorsResponse()
    for r in results:
        out.results.append(result_message(r, node.roster.name_of))  # type: ignore[arg-type]
        out.any_flagged |= r.verdict is not None and r.verdict.flagged  # type: ignore[attr-defined]
    return out


async def test_the_written_response_equals_the_one_built_message_by_message(
    nodes: tuple[AlertNode, AlertNode],
) -> None:
    node, _ = nodes
    await populate(node)
    later()
    asked = values(1, 600)
    results = await node.check(asked, include_expired=False)
    states = {r.verdict.state.name for r in results if r.verdict is not None}
    assert states >= {"FLAGGED", "RETRACTED", "ALLOWLISTED", "NOT_FLAGGED", "EXPIRED"}
    assert any(r.error for r in results) and any(r.matches for r in results)
    built = check_response(results, node.roster.name_of)
    assert built == plain(results, node)
    assert built.any_flagged
    wire = built.SerializeToString()
    assert api.CheckIndicatorsResponse.FromString(wire) == plain(results, node)
    served = await AlertService(node).CheckIndicators(
        api.CheckIndicatorsRequest(values=asked),
        None,  # type: ignore[arg-type]
    )
    assert served == built
    clean = await node.check(["clean-1.example", "x.invalid"], include_expired=False)
    assert not check_response(clean, node.roster.name_of).any_flagged


async def test_a_value_gets_the_same_result_alone_in_a_batch_and_on_either_store(
    nodes: tuple[AlertNode, AlertNode],
) -> None:
    sqlite_node, memory_node = nodes
    for node in nodes:
        await populate(node)
    later()
    asked = values(2, 400)
    together = check_response(
        await sqlite_node.check(asked, include_expired=False), sqlite_node.roster.name_of
    )
    on_memory = check_response(
        await memory_node.check(asked, include_expired=False), memory_node.roster.name_of
    )
    assert together == on_memory
    for value, result in zip(asked[:150], together.results, strict=False):
        [alone] = await sqlite_node.check([value], include_expired=False)
        assert result_message(alone, sqlite_node.roster.name_of) == result
    with_expired = await sqlite_node.check(asked, include_expired=True)
    assert check_response(with_expired, sqlite_node.roster.name_of) == plain(
        with_expired, sqlite_node
    )


def test_lengths_of_any_size_are_varints() -> None:
    for n in (1, 127, 128, 300, 16_383, 16_384, 2_000_000):
        message = api.CheckResult(query="q" * n)
        assert message.SerializeToString()[1:] == _varint(n) + b"q" * n
