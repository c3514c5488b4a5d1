"""TLP:RED on a real 5-node cluster: node1 warns node2 and node4, and nobody else reads it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from node import cluster
from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core.roster import Member, Roster
from node.crypto.sealing import seal
from node.rpc.client import AlertClient
from tests.clusters import cluster_running, counts, digests, eventually, stats
from tests.factory import Author
from tests.procs import alertmesh

pytestmark = pytest.mark.cluster

TITLE = "Hot wallet drained 7b2e, funds moving to your deposit addresses"
DOMAIN_VALUE = "cashout-d41c.example"
ADDRESS_VALUE = "0x52908400098527886E0F7030069857D2E4169EE7"  # EIP-55 checksummed
SECRETS = [TITLE, DOMAIN_VALUE, ADDRESS_VALUE, ADDRESS_VALUE.lower(), ADDRESS_VALUE[2:].lower()]
ROGUE = Author()  # a member without a node: crafts encrypted alerts by hand


async def flagged(node: cluster.ClusterNode, value: str) -> bool:
    async with AlertClient(node.api) as client:
        return (await client.check([value])).any_flagged


async def view(node: cluster.ClusterNode, alert_id: bytes) -> api.StoredAlert:
    async with AlertClient(node.api) as client:
        return await client.get(alert_id)


async def counter(node: cluster.ClusterNode, name: str) -> int:
    return (await stats([node]))[0].counters[name]


async def same_everywhere(nodes: list[cluster.ClusterNode]) -> bool:
    return len(set(await digests(nodes))) == 1 and len(set(await counts(nodes))) == 1


def files_mention(home: Path, secrets: list[str]) -> list[str]:
    """Every (file, secret) where the secret's bytes occur in a file of the home."""
    found = []
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path.name}: {s}" for s in secrets if s.encode() in data]
    return found


async def test_a_red_alert_reaches_only_its_recipients(tmp_path: Path) -> None:
    layout = cluster.create(tmp_path, 5)
    roster = Roster.from_toml((layout[0].home / "roster.toml").read_text())
    roster = Roster.of([*roster, Member("rogue", ROGUE.key)])
    for node in layout:
        (node.home / "roster.toml").write_text(roster.to_toml())
    keys = {m.name: m.key for m in roster}

    async with cluster_running(tmp_path, 5) as nodes:
        node1, node2, node3, node4, node5 = nodes
        published = await asyncio.to_thread(
            alertmesh, "publish", "--node", node1.api, "--category", "stolen-funds",
            "--title", TITLE, "--indicator", f"domain:{DOMAIN_VALUE}",
            "--indicator", f"address:eip155:1:{ADDRESS_VALUE}",
            "--tlp", "red", "--to", "node2", "--to", "node4",
        )  # fmt: skip
        alert_id = bytes.fromhex(published.stdout.split()[-1])
        await eventually(lambda: same_everywhere(nodes), "the encrypted alert on all five")
        assert await counts(nodes) == [1] * 5

        # Recipients (and the author) flag its values; the others hold only ciphertext.
        for node in nodes:
            expected = node.name in ("node1", "node2", "node4")
            assert await flagged(node, DOMAIN_VALUE) is expected, node.name
            assert await flagged(node, ADDRESS_VALUE.lower()) is expected, node.name
        seen = await view(node2, alert_id)
        assert seen.encrypted and seen.readable and seen.alert.title == TITLE
        assert "named recipients only" in seen.handling
        hidden = await view(node3, alert_id)
        assert hidden.encrypted and not hidden.readable and not hidden.alert.title
        assert list(hidden.alert.recipients) == [keys["node2"], keys["node4"], keys["node1"]]
        cli = await asyncio.to_thread(alertmesh, "get", "--node", node3.api, alert_id.hex())
        assert "encrypted for other members" in cli.stdout and TITLE not in cli.stdout

        # Search and watch: an entry with the envelope, and no hint of a match.
        async with AlertClient(node3.api) as client:
            by_value = await client.search(
                api.SearchAlertsRequest(filter=api.AlertFilter(indicator=DOMAIN_VALUE))
            )
            assert not by_value.alerts
            listed = await client.search(api.SearchAlertsRequest())
            assert [(a.id, a.encrypted, a.readable) for a in listed.alerts] == [
                (alert_id, True, False)
            ]
        async with AlertClient(node4.api) as client:
            stream = client.subscribe(api.SubscribeRequest(from_start=True))
            event = await anext(aiter(stream))
            assert event.alert.readable and event.alert.alert.title == TITLE
            stream.cancel()  # type: ignore[attr-defined]

        # A forged ciphertext (validly signed by a member) is kept but counted by the
        # recipient; one altered on the way fails the signature and is refused.
        bogus = ROGUE.alert()
        for name in ("category", "severity", "confidence", "title"):
            bogus.ClearField(name)  # type: ignore[arg-type]
        bogus.recipients.append(keys["node2"])
        bogus.sealed.CopyFrom(
            seal(alert_pb2.Alert(title="x"), origin=ROGUE.key, seq=1, recipients=[keys["rogue"]])
        )
        signed = ROGUE.sign(bogus)
        async with AlertClient(node1.api) as client:
            await client.ingest([signed])
        await eventually(
            lambda: _positive(counter(node2, "encrypted_undecryptable")),
            "node2 counting the ciphertext that does not open",
        )
        altered = alert_pb2.SignedAlert()
        altered.CopyFrom(signed)
        altered.body = signed.body[:-3] + bytes([signed.body[-3] ^ 1]) + signed.body[-2:]
        async with AlertClient(node3.api) as client:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.ingest([altered])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "signature does not verify" in (err.value.details() or "")
        assert await counter(node3, "rejected_InvalidSignature") == 1
        await eventually(lambda: same_everywhere(nodes), "the forged alert on all five")

        # A recipient that restarts still reads it.
        cluster.stop(node2)
        await asyncio.to_thread(cluster.wait_serving, node2, cluster.start(node2), 60)
        assert await flagged(node2, DOMAIN_VALUE)
        assert (await view(node2, alert_id)).alert.title == TITLE

        # A member who joins later holds it (catch-up) but cannot read it: intended.
        node6 = cluster.add_node(tmp_path)
        for node in nodes:
            async with AlertClient(node.api) as client:
                await client.reload_roster()
        await asyncio.to_thread(cluster.wait_serving, node6, cluster.start(node6), 60)
        everyone = [*nodes, node6]
        await eventually(lambda: same_everywhere(everyone), "the newcomer caught up")
        assert not await flagged(node6, DOMAIN_VALUE)
        assert not (await view(node6, alert_id)).readable

    # Nothing of the content on the non-recipients' disks: store, WAL, logs.
    for node in (node3, node5, node6):
        assert files_mention(node.home, SECRETS) == [], node.name
    # ... while a recipient's store has it (the search above is not vacuous).
    assert files_mention(node2.home, [TITLE])


async def _positive(value: object) -> bool:
    return bool(await value)  # type: ignore[misc]
