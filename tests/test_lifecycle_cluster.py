"""An alert's life on five real nodes: a retraction, an update, a dispute, an expiry, an
allowlist and the warninglist, with one node down throughout that catches up after."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from node import cluster
from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core.roster import Member, Roster
from node.rpc.client import AlertClient
from tests.clusters import cluster_running, eventually, stats
from tests.factory import DOMAIN, Author
from tests.procs import alertmesh

pytestmark = pytest.mark.cluster


def flag(title: str, domain: str, **fields: object) -> api.PublishRequest:
    return api.PublishRequest(
        category=alert_pb2.CATEGORY_PHISHING,
        severity=alert_pb2.SEVERITY_HIGH,
        confidence=80,
        title=title,
        indicators=[alert_pb2.Indicator(type=DOMAIN, value=domain)],
        **fields,  # type: ignore[arg-type]
    )


async def verdict(node: cluster.ClusterNode, value: str) -> api.Verdict:
    async with AlertClient(node.api) as client:
        [result] = (await client.check([value])).results
        return result.verdict


async def verdicts(nodes: list[cluster.ClusterNode], value: str) -> list[api.Verdict]:
    return [await verdict(node, value) for node in nodes]


def summary(v: api.Verdict) -> tuple[int, int, tuple[str, ...], int, int]:
    return (v.state, v.confidence, tuple(v.members), v.disputes, len(v.retractions))


def cli(node: cluster.ClusterNode, *args: str) -> tuple[int, str]:
    done = alertmesh(*args, "--node", node.api, check=False)
    assert done.returncode != 2, done.stderr
    return done.returncode, done.stdout


async def on_all(nodes: list[cluster.ClusterNode], value: str, state: int, what: str) -> None:
    async def reached() -> bool:
        return all(v.state == state for v in await verdicts(nodes, value))

    await eventually(reached, what)


async def test_retraction_update_dispute_and_expiry_reach_every_node(tmp_path: Path) -> None:
    async with cluster_running(tmp_path, 5) as nodes:
        late, up = nodes[4], nodes[:4]
        author, other = nodes[0], nodes[2]
        await asyncio.to_thread(cluster.stop, late)  # down during all of what follows

        async with AlertClient(author.api) as client:
            retracted = (await client.publish(flag("drainer", "retract.example"))).id
            updated = (await client.publish(flag("old kit", "update-old.example"))).id
            disputed = (await client.publish(flag("maybe", "disputed.example"))).id
        await on_all(up, "retract.example", api.VERDICT_STATE_FLAGGED, "flagged everywhere")
        await on_all(up, "disputed.example", api.VERDICT_STATE_FLAGGED, "flagged everywhere")
        for node in up:
            assert cli(node, "check", "retract.example")[0] == 0

        # Someone downstream froze funds on the flag: it must hear of the retraction.
        events: list[api.SubscribeEvent] = []

        async def watch() -> None:
            async with AlertClient(other.api) as client:
                async for event in client.subscribe(api.SubscribeRequest()):
                    events.append(event)

        watching = asyncio.create_task(watch())
        try:
            await asyncio.sleep(0.5)  # the subscription is open

            # 1. Only the author may retract; then check flips from 0 to 1 on every node.
            async with AlertClient(other.api) as client:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await client.publish(
                        api.PublishRequest(
                            category=alert_pb2.CATEGORY_OTHER,
                            title="not mine",
                            links=[
                                alert_pb2.AlertLink(
                                    kind=alert_pb2.LINK_KIND_RETRACTION, alert_id=retracted
                                )
                            ],
                        )
                    )
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            code, out = cli(author, "retract", retracted.hex(), "--reason", "wrong address")
            assert code == 0
            await on_all(up, "retract.example", api.VERDICT_STATE_RETRACTED, "retracted everywhere")
            for node in up:
                code, out = cli(node, "check", "retract.example")
                assert code == 1 and f"retracted (by {author.name}" in out
                assert "wrong address" in out

            async def retraction_event() -> bool:
                return any(e.kind == api.EVENT_KIND_RETRACTED for e in events)

            await eventually(retraction_event, "watch emits the retraction")
            [event] = [e for e in events if e.kind == api.EVENT_KIND_RETRACTED]
            assert list(event.targets) == [retracted]
            assert [i.value for i in event.released] == ["retract.example"]

            # 2. An update changes what matches; `get` shows the history.
            code, _ = cli(
                author, "update", updated.hex(), "--indicator", "domain:update-new.example"
            )
            assert code == 0
            await on_all(up, "update-new.example", api.VERDICT_STATE_FLAGGED, "new version")
            await on_all(up, "update-old.example", api.VERDICT_STATE_NOT_FLAGGED, "old value")
            code, out = cli(other, "get", updated.hex())
            assert code == 0 and f"updated by {author.name}" in out

            # 3. A dispute by another member lowers the verdict everywhere.
            before = (await verdict(author, "disputed.example")).confidence
            code, _ = cli(other, "dispute", disputed.hex(), "--reason", "our customer")
            assert code == 0

            async def lowered() -> bool:
                return all(
                    v.disputes == 1 and v.confidence < before
                    for v in await verdicts(up, "disputed.example")
                )

            await eventually(lowered, "the dispute lowers the verdict on every node")
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

        # 4. The node that was down converges by catch-up to the same verdicts.
        proc = cluster.start(late)
        await asyncio.to_thread(cluster.wait_serving, late, proc, 60)
        values = ("retract.example", "update-old.example", "update-new.example", "disputed.example")

        async def same_verdicts() -> bool:
            for value in values:
                if len({summary(v) for v in await verdicts(nodes, value)}) != 1:
                    return False
            return True

        await eventually(same_verdicts, "the restarted node has the same verdicts")
        assert cli(late, "check", "retract.example")[0] == 1
        assert cli(late, "check", "update-new.example")[0] == 0


async def test_expiry_allowlist_and_warninglist(tmp_path: Path) -> None:
    async with cluster_running(tmp_path, 2) as nodes:
        author, reader = nodes
        expires = time.time_ns() // 1_000_000 + 4000
        async with AlertClient(author.api) as client:
            short = await client.publish(
                flag("short-lived", "expiring.example", expires_at_ms=expires)
            )
            await client.publish(flag("hot wallet", "ours.example"))
        await on_all(nodes, "expiring.example", api.VERDICT_STATE_FLAGGED, "flagged")
        events: list[api.SubscribeEvent] = []

        async def watch() -> None:
            async with AlertClient(reader.api) as client:
                async for event in client.subscribe(api.SubscribeRequest(from_start=True)):
                    events.append(event)

        watching = asyncio.create_task(watch())
        try:
            # Expiry: check, search and watch all stop showing it once it passes.
            await on_all(nodes, "expiring.example", api.VERDICT_STATE_EXPIRED, "expired")
            assert cli(reader, "check", "expiring.example")[0] == 1
            assert cli(reader, "check", "--include-expired", "expiring.example")[0] == 0
            _, listed = cli(reader, "search", "--indicator", "expiring.example")
            assert short.id.hex() not in listed
            _, listed = cli(
                reader, "search", "--indicator", "expiring.example", "--include-expired"
            )
            assert short.id.hex() in listed

            async def expired_event() -> bool:
                return any(
                    e.kind == api.EVENT_KIND_EXPIRED and e.alert.id == short.id for e in events
                )

            await eventually(expired_event, "watch emits the expiry")
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

        # Allowlist: reloaded with the roster; the value is no longer reported as flagged.
        assert cli(reader, "check", "ours.example")[0] == 0
        (reader.home / "allowlist.txt").write_text("# our own\ndomain:ours.example\n")
        assert cli(reader, "roster-reload")[0] == 0
        code, out = cli(reader, "check", "ours.example")
        assert code == 1 and "ours.example: allowlisted" in out
        assert cli(author, "check", "ours.example")[0] == 0  # only that node's list

        # Warninglist: a widely used domain is refused unless forced.
        done = alertmesh(
            "publish", "--node", author.api, "--category", "phishing", "--title", "oops",
            "--indicator", "domain:facebook.com", check=False,
        )  # fmt: skip
        assert done.returncode == 2 and "warninglist" in done.stderr and "--force" in done.stderr
        done = alertmesh(
            "publish", "--node", author.api, "--category", "phishing", "--title", "meant it",
            "--indicator", "domain:facebook.com", "--force", check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


async def test_a_retraction_signed_by_another_member_is_kept_counted_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """A member's node (here a key driven by hand) signs a retraction of someone else's
    alert and gossips it: every node keeps it (its chain stays whole), counts it, and
    the value stays flagged."""
    rogue = Author()
    layout = cluster.create(tmp_path, 2)
    roster = Roster.from_toml((layout[0].home / "roster.toml").read_text())
    roster = Roster.of([*roster, Member("rogue", rogue.key)])
    for node in layout:
        (node.home / "roster.toml").write_text(roster.to_toml())
    async with cluster_running(tmp_path, 2) as nodes:
        async with AlertClient(nodes[0].api) as client:
            victim = await client.publish(flag("victim's alert", "victim-flag.example"))
        await on_all(nodes, "victim-flag.example", api.VERDICT_STATE_FLAGGED, "flagged")
        link = alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_RETRACTION, alert_id=victim.id)
        forged = rogue.next(title="retracting someone else's alert", links=[link])
        async with AlertClient(nodes[0].api) as client:
            await client.ingest([forged])

        async def counted_everywhere() -> bool:
            found = await stats(nodes)
            return all(s.counters["lifecycle_changes_refused"] == 1 for s in found)

        await eventually(counted_everywhere, "both nodes counting the refused retraction")
        for v in await verdicts(nodes, "victim-flag.example"):
            assert v.state == api.VERDICT_STATE_FLAGGED and v.refused_links == 1
