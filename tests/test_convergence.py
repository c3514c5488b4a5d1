"""Nothing is lost: crashes, partitions, newcomers and equivocation, on real node processes."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from node import cluster
from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core.roster import Member, Roster
from node.rpc.client import AlertClient
from tests.clusters import cluster_running, counts, digests, eventually
from tests.factory import DOMAIN, Author
from tests.procs import alertmesh

pytestmark = pytest.mark.cluster


def add_members(directory: Path, nodes: list[cluster.ClusterNode], authors: list[Author]) -> None:
    """Put test-held author keys on every node's roster (before the nodes start)."""
    roster = Roster.from_toml((nodes[0].home / "roster.toml").read_text())
    extra = [Member(f"author{i}", a.key) for i, a in enumerate(authors)]
    roster = Roster.of([*roster, *extra])
    for node in nodes:
        (node.home / "roster.toml").write_text(roster.to_toml())


def request(title: str) -> api.PublishRequest:
    return api.PublishRequest(
        category=alert_pb2.CATEGORY_SCAM,
        title=title,
        indicators=[alert_pb2.Indicator(type=DOMAIN, value=f"{abs(hash(title))}.example")],
    )


async def publish_many(node: cluster.ClusterNode, tag: str, n: int, acked: list[bytes]) -> None:
    async with AlertClient(node.api) as client:
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                acked.append((await client.publish(request(f"{tag} {i}"))).id)

        await asyncio.gather(*(one(i) for i in range(n)))


async def converged(nodes: list[cluster.ClusterNode], expected: int) -> bool:
    return set(await counts(nodes)) == {expected} and len(set(await digests(nodes))) == 1


async def test_a_node_killed_mid_stream_catches_up_after_restart(tmp_path: Path) -> None:
    async with cluster_running(tmp_path, 5) as nodes:
        victim = nodes[4]
        acked: list[bytes] = []
        publishing = asyncio.gather(
            *(publish_many(node, node.name, 1250, acked) for node in nodes[:4])
        )

        async def some_published() -> bool:
            return len(acked) >= 1000

        await eventually(some_published, "1,000 alerts published")
        await asyncio.to_thread(cluster.stop, victim, signal.SIGKILL)
        await publishing
        assert len(acked) == 5000
        proc = cluster.start(victim)
        await asyncio.to_thread(cluster.wait_serving, victim, proc, 60)
        started = time.monotonic()
        await eventually(lambda: converged(nodes, 5000), "all 5 nodes hold the same 5,000 alerts")
        print(f"\nrestarted node caught up {time.monotonic() - started:.1f} s after restart")
        async with AlertClient(victim.api) as client:
            for alert_id in acked[::50]:
                await client.get(alert_id)


async def test_a_partition_heals_and_both_sides_converge(tmp_path: Path) -> None:
    async with cluster_running(tmp_path, 6) as nodes:
        left, right = nodes[:3], nodes[3:]
        for side, other in ((left, right), (right, left)):
            for node in side:
                async with AlertClient(node.api) as client:
                    for peer in other:
                        await client.set_peer_blocked(peer.name, True)
        acked: list[bytes] = []
        await asyncio.gather(
            publish_many(left[0], "left", 150, acked), publish_many(right[0], "right", 150, acked)
        )

        async def halves_split() -> bool:
            return await counts(nodes) == [150] * 6

        await eventually(halves_split, "each half holding only its own 150 alerts")
        for node in nodes:
            async with AlertClient(node.api) as client:
                for peer in nodes:
                    if peer is not node:
                        await client.set_peer_blocked(peer.name, False)
        await eventually(lambda: converged(nodes, 300), "all 6 nodes hold the same 300 alerts")


async def test_a_new_member_joins_a_cluster_holding_20000_alerts(tmp_path: Path) -> None:
    authors = [Author() for _ in range(10)]
    nodes = cluster.create(tmp_path, 3)
    add_members(tmp_path, nodes, authors)
    signed = [a.next(indicators=[(DOMAIN, f"a{i}-{k}.example")]) for k in range(2000)
              for i, a in enumerate(authors)]  # fmt: skip
    async with cluster_running(tmp_path, 3) as nodes:
        async with AlertClient(nodes[0].api) as client:
            for i in range(0, len(signed), 1000):
                response = await client.ingest(signed[i : i + 1000])
                assert all(r.outcome == api.INGEST_OUTCOME_ACCEPTED for r in response.results)
        await eventually(lambda: converged(nodes, 20_000), "the cluster holding 20,000 alerts")

        new = cluster.add_node(tmp_path)
        for node in nodes:
            async with AlertClient(node.api) as client:
                await client.reload_roster()
        started = time.monotonic()
        proc = cluster.start(new)
        await asyncio.to_thread(cluster.wait_serving, new, proc, 60)
        everyone = [*nodes, new]
        await eventually(lambda: converged(everyone, 20_000), "the newcomer holding all 20,000")
        print(f"\nnew member converged {time.monotonic() - started:.1f} s after it started")


async def test_equivocation_is_detected_everywhere_and_the_proof_kept(tmp_path: Path) -> None:
    cheat = Author()
    nodes = cluster.create(tmp_path, 5)
    add_members(tmp_path, nodes, [cheat])
    body = cheat.alert(title="version A", indicators=[(DOMAIN, "a.example")])
    first = cheat.sign(body, advance=False)
    body.title = "version B"
    second = cheat.sign(body, advance=False)
    async with cluster_running(tmp_path, 5) as nodes:
        async with AlertClient(nodes[0].api) as a, AlertClient(nodes[3].api) as b:
            await asyncio.gather(a.ingest([first]), b.ingest([second]))

        async def everyone_has_the_proof() -> bool:
            for node in nodes:
                async with AlertClient(node.api) as client:
                    stats = await client.stats()
                flagged = [o for o in stats.origins if o.name == "author0" and o.equivocated]
                if stats.equivocations < 1 or not flagged:
                    return False
            return True

        await eventually(everyone_has_the_proof, "every node holding the proof")
        out = await asyncio.to_thread(alertmesh, "stats", "--node", nodes[2].api)
        assert "EQUIVOCATED" in out.stdout
