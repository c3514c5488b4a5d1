"""A real node process, driven through gRPC and the CLI as a member's systems would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.rpc.client import AlertClient
from tests.factory import ADDRESS, DOMAIN, Author
from tests.procs import NodeProcess, alertmesh, new_node

EVM = "eip155:1:0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"


@pytest.fixture(scope="module")
def member() -> Author:
    """Another member whose signed alerts the node accepts."""
    return Author()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, member: Author) -> Iterator[NodeProcess]:
    proc = new_node(tmp_path_factory.mktemp("node"), "acme", {"partner": member.key})
    yield proc
    proc.kill()


@pytest.fixture
async def client(node: NodeProcess) -> AsyncIterator[AlertClient]:
    async with AlertClient(node.address) as c:
        yield c


def phishing(title: str = "Fake airdrop site", **kw: object) -> api.PublishRequest:
    fields: dict[str, object] = {
        "category": alert_pb2.CATEGORY_PHISHING,
        "severity": alert_pb2.SEVERITY_HIGH,
        "confidence": 90,
        "title": title,
        "indicators": [
            # Upper-case hex (no checksum) and a domain with a trailing dot: both normalise.
            alert_pb2.Indicator(type=ADDRESS, value="eip155:1:0x" + EVM[-40:].upper()),
            alert_pb2.Indicator(type=DOMAIN, value="Claim-Airdrop.example."),
        ],
    }
    return api.PublishRequest(**{**fields, **kw})  # type: ignore[arg-type]


async def test_publish_then_read_back_every_way(client: AlertClient) -> None:
    published = await client.publish(phishing())
    alert = published.alert.alert
    assert alert.seq >= 1 and len(alert.origin) == 32
    assert [i.value for i in alert.indicators] == [EVM, "claim-airdrop.example"]

    got = await client.get(published.id)
    assert got.signed.body == published.alert.signed.body and got.origin_name == "acme"

    check = await client.check(
        [
            "0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED",
            "https://CLAIM-airdrop.example/x",
            "ok.example",
        ]
    )
    assert [len(r.matches) > 0 for r in check.results] == [True, True, False]
    assert check.any_flagged
    match = check.results[0].matches[0]
    assert match.alert_id == published.id and match.severity == alert_pb2.SEVERITY_HIGH
    assert match.origin_name == "acme" and match.indicator.value == EVM

    found = await client.search(
        api.SearchAlertsRequest(filter=api.AlertFilter(indicator="claim-airdrop.example"))
    )
    assert published.id in [s.id for s in found.alerts]


async def test_publish_retry_with_request_id_returns_the_first_alert(client: AlertClient) -> None:
    first, again = await asyncio.gather(
        client.publish(phishing(client_request_id="ticket-42")),
        client.publish(phishing(client_request_id="ticket-42")),
    )
    later = await client.publish(phishing(client_request_id="ticket-42"))
    assert first.id == again.id == later.id
    assert later.duplicate and (first.duplicate != again.duplicate)


async def test_ingest_accepts_dedupes_and_flags_equivocation(
    client: AlertClient, member: Author
) -> None:
    a1 = member.next(indicators=[(DOMAIN, "partner-flag.example")])
    response = await client.ingest([a1, a1])
    assert [r.outcome for r in response.results] == [
        api.INGEST_OUTCOME_ACCEPTED,
        api.INGEST_OUTCOME_DUPLICATE,
    ]
    twin = alert_pb2.Alert.FromString(a1.body)
    twin.title = "a different body for the same seq"
    response = await client.ingest([member.sign(twin, advance=False)])
    assert response.results[0].outcome == api.INGEST_OUTCOME_EQUIVOCATION
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.get(response.results[0].id)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    stats = await client.stats()
    assert stats.equivocations >= 1
    assert any(o.equivocated and o.name == "partner" for o in stats.origins)


async def test_batches_report_per_alert(client: AlertClient, member: Author) -> None:
    good = member.next()
    bad = alert_pb2.SignedAlert(body=member.alert().SerializeToString(), signature=b"\0" * 64)
    response = await client.ingest([good, bad])
    assert response.results[0].outcome == api.INGEST_OUTCOME_ACCEPTED
    assert response.results[1].outcome == api.INGEST_OUTCOME_REJECTED
    assert response.results[1].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "signature" in response.results[1].error


async def test_subscribe_resumes_from_a_cursor_without_gaps_or_duplicates(
    client: AlertClient,
) -> None:
    only = api.AlertFilter(categories=[alert_pb2.CATEGORY_RUG_PULL])
    start = await client.publish(phishing("marker", category=alert_pb2.CATEGORY_RUG_PULL))
    cursor = start.alert.cursor
    titles = [f"rug {i}" for i in range(6)]

    async def publish_all() -> None:
        for t in titles:
            await client.publish(phishing(t, category=alert_pb2.CATEGORY_RUG_PULL))
            await client.publish(phishing(t + " noise"))

    received: list[str] = []
    task = asyncio.create_task(publish_all())
    call = client.stub.Subscribe(api.SubscribeRequest(filter=only, cursor=cursor))
    async for event in call:  # first connection: take three, then drop it
        received.append(event.alert.alert.title)
        cursor = event.alert.cursor
        if len(received) == 3:
            call.cancel()
            break
    await task
    call = client.stub.Subscribe(api.SubscribeRequest(filter=only, cursor=cursor))
    async for event in call:
        received.append(event.alert.alert.title)
        if len(received) == len(titles):
            call.cancel()
            break
    assert received == titles


async def test_health_and_reflection_are_on(node: NodeProcess) -> None:
    async with grpc.aio.insecure_channel(node.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "alertmesh.v1.AlertService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names = set()
        async for reply in stub.ServerReflectionInfo(iter([request])):
            names = {s.name for s in reply.list_services_response.service}
        assert "alertmesh.v1.AlertService" in names


async def test_cli_publish_check_get_stats(node: NodeProcess) -> None:
    out = await asyncio.to_thread(
        alertmesh, "publish", "--node", node.address, "--category", "stolen-funds",
        "--title", "Bridge exploit proceeds", "--severity", "critical",
        "--indicator", "address:eip155:1:0x00000000000000000000000000000000000000f1",
    )  # fmt: skip
    alert_id = out.stdout.strip().splitlines()[-1]
    assert len(alert_id) == 64
    flagged = await asyncio.to_thread(
        alertmesh,
        "check",
        "--node",
        node.address,
        "0x00000000000000000000000000000000000000F1",
        check=False,
    )
    assert flagged.returncode == 0 and "FLAGGED stolen-funds/critical" in flagged.stdout
    clean = await asyncio.to_thread(
        alertmesh, "check", "--node", node.address, "nothing.example", check=False
    )
    assert clean.returncode == 1 and "not flagged" in clean.stdout
    got = await asyncio.to_thread(alertmesh, "get", "--node", node.address, alert_id)
    assert "Bridge exploit proceeds" in got.stdout
    missing = await asyncio.to_thread(
        alertmesh, "get", "--node", node.address, "ab" * 32, check=False
    )
    assert missing.returncode == 1
    stats = json.loads(
        (await asyncio.to_thread(alertmesh, "stats", "--node", node.address, "--json")).stdout
    )
    assert stats["alerts"] >= 1 and len(stats["digest"]) == 64


def test_cli_reports_an_unreachable_node_in_one_line() -> None:
    out = alertmesh("stats", "--node", "127.0.0.1:9", check=False)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: cannot reach the node at 127.0.0.1:9"
    out = alertmesh(
        "publish", "--node", "127.0.0.1:9", "--category", "nope", "--title", "x", check=False
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr


async def test_ingest_stream_answers_each_batch_in_order(
    client: AlertClient, member: Author
) -> None:
    batches = [[member.next() for _ in range(3)] for _ in range(4)]
    call = client.stub.IngestStream()
    outcomes = []
    for batch in batches:
        await call.write(api.IngestRequest(alerts=batch))
        reply = await call.read()
        outcomes.append([r.outcome for r in reply.results])
    await call.done_writing()
    assert outcomes == [[api.INGEST_OUTCOME_ACCEPTED] * 3] * 4


def test_cli_watch_streams_alerts_as_they_arrive(node: NodeProcess) -> None:
    import subprocess
    import sys

    # --from-start replays what is stored first, so the watcher cannot miss an alert
    # published before its subscription is in place; only this test uses "ransomware".
    watcher = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "watch", "--node", node.address,
         "--category", "ransomware", "--from-start", "--count", "2", "--json"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for title in ("locker one", "locker two"):
            alertmesh("publish", "--node", node.address, "--category", "ransomware",
                      "--title", title)  # fmt: skip
        out, _ = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    titles = [json.loads(line)["title"] for line in out.splitlines()]
    assert titles == ["locker one", "locker two"]


async def test_a_held_alert_with_another_signature_is_rejected_not_a_duplicate(
    client: AlertClient, member: Author
) -> None:
    """The duplicate fast path (no second verification) applies only to identical bytes."""
    signed = member.next()
    assert (await client.ingest([signed])).results[0].outcome == api.INGEST_OUTCOME_ACCEPTED
    forged = alert_pb2.SignedAlert(body=signed.body, signature=bytes(64))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.ingest([forged])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    again = await client.ingest([signed])
    assert again.results[0].outcome == api.INGEST_OUTCOME_DUPLICATE


async def test_alerts_of_a_member_removed_from_the_roster(tmp_path: Path) -> None:
    """What the node already holds stays a duplicate; anything new is refused."""
    from node.core.roster import Roster

    leaver = Author()
    node = new_node(tmp_path / "n", "acme", {"leaver": leaver.key})
    try:
        held = [leaver.next() for _ in range(3)]
        async with AlertClient(node.address) as client:
            await client.ingest(held)
            roster = Roster.from_toml((node.home / "roster.toml").read_text())
            kept = Roster.of([m for m in roster if m.key != leaver.key])
            (node.home / "roster.toml").write_text(kept.to_toml())
            alertmesh("roster-reload", "--node", node.address)
            again = await client.ingest(held)
            assert [r.outcome for r in again.results] == [api.INGEST_OUTCOME_DUPLICATE] * 3
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.ingest([leaver.next()])
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        node.kill()


async def test_every_answer_says_how_a_tlp_marking_may_be_used(client: AlertClient) -> None:
    published = await client.publish(
        phishing(
            "Partner-only lead",
            tlp=alert_pb2.TLP_AMBER_STRICT,
            indicators=[alert_pb2.Indicator(type=DOMAIN, value="strict-only.example")],
        )
    )
    assert "this organisation only" in published.alert.handling
    assert "this organisation only" in (await client.get(published.id)).handling
    checked = await client.check(["strict-only.example"])
    assert "this organisation only" in checked.results[0].matches[0].handling
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.publish(phishing("For a few", tlp=alert_pb2.TLP_RED))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "TLP:RED alerts go only to named members" in (err.value.details() or "")
