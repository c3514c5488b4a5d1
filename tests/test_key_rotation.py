"""A member rotates its signing key, and another member's key is compromised: two
real node processes on 127.0.0.1, rosters edited and reloaded as an operator would."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from node import cluster
from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node._pb.alertmesh.v1.peer_service_pb2_grpc import PeerServiceStub
from node.core.alerts import alert_id
from node.core.roster import Member, MemberKey, Roster, format_time
from node.crypto import load_identity
from node.crypto.tls import load_tls_identity
from node.rpc.client import AlertClient
from node.rpc.peer_transport import CallTransport, PeerSecurity, dial_handshake
from tests.clusters import cluster_running, eventually
from tests.factory import DOMAIN, Author, now_ms
from tests.procs import alertmesh

pytestmark = pytest.mark.cluster

PARTNER = Author()  # a member without a node: the test signs its alerts by hand


def publish_request(domain: str) -> api.PublishRequest:
    return api.PublishRequest(
        category=alert_pb2.CATEGORY_PHISHING,
        severity=alert_pb2.SEVERITY_HIGH,
        title=f"phishing at {domain}",
        indicators=[alert_pb2.Indicator(type=DOMAIN, value=domain)],
    )


async def publish(node: cluster.ClusterNode, domain: str) -> bytes:
    async with AlertClient(node.api) as client:
        return (await client.publish(publish_request(domain))).id


async def holds(node: cluster.ClusterNode, *ids: bytes) -> bool:
    async with AlertClient(node.api) as client:
        for i in ids:
            try:
                await client.get(i)
            except grpc.aio.AioRpcError:
                return False
    return True


def set_member(home: Path, member: Member) -> None:
    """Replace (or add) one member's entry in a node's roster file."""
    path = home / "roster.toml"
    others = [m for m in Roster.from_toml(path.read_text()) if m.name != member.name]
    path.write_text(Roster.of([*others, member]).to_toml())


def reload_roster(node: cluster.ClusterNode) -> None:
    assert "roster reloaded" in alertmesh("roster-reload", "--node", node.api).stdout


async def test_a_rotated_key_keeps_the_members_history_and_the_old_key_stops_signing(
    tmp_path: Path,
) -> None:
    layout = cluster.create(tmp_path, 2)
    for node in layout:
        set_member(node.home, Member("partner", PARTNER.key))
    async with cluster_running(tmp_path, 2) as (acme, beta):
        old_key = load_identity(acme.home / "identity.key").public_key
        first = await publish(acme, "before-rotation.example")
        await eventually(lambda: holds(beta, first), "acme's first alert on beta")

        # beta is down while acme publishes two more with its old key, then rotates.
        cluster.stop(beta)
        missed = [await publish(acme, f"missed-{i}.example") for i in range(2)]
        cluster.stop(acme)
        rotated = alertmesh("rotate-key", "--home", str(acme.home)).stdout
        assert f"old key     {old_key.hex()} (retired, its chain ends at #3)" in rotated
        retired = next(acme.home.glob("identity.key.retired-*"))
        assert retired.stat().st_mode & 0o777 == 0o600
        new_key = load_identity(acme.home / "identity.key").public_key
        assert new_key != old_key

        # beta's operator pastes the printed entry into its roster and reloads it.
        block = rotated[rotated.index("[[member]]") :]
        [entry] = list(Roster.from_toml(block))
        assert entry.key == new_key and [k.key for k in entry.keys] == [old_key, new_key]
        cluster.wait_serving(beta, cluster.start(beta), 60)
        set_member(beta.home, entry)
        reload_roster(beta)
        cluster.wait_serving(acme, cluster.start(acme), 60)
        after = await publish(acme, "after-rotation.example")

        # Catch-up brings beta the old chain's tail and the new chain, succession first.
        await eventually(lambda: holds(beta, *missed, after), "both of acme's chains on beta")
        async with AlertClient(acme.api) as a, AlertClient(beta.api) as b:
            await eventually(
                lambda: _same_digest(a, b), "the same alerts on both nodes after catch-up"
            )
            sa, sb = await a.stats(), await b.stats()
            by_origin = {o.origin: o for o in sb.origins}
            assert by_origin[old_key].contiguous_seq == by_origin[old_key].max_seq == 3
            assert by_origin[new_key].contiguous_seq == by_origin[new_key].max_seq == 2
            assert by_origin[old_key].name == by_origin[new_key].name == acme.name
            assert sa.node_key == new_key
            found = await b.search(
                api.SearchAlertsRequest(filter=api.AlertFilter(origins=[new_key]), page_size=10)
            )
            [succession] = [s for s in found.alerts if s.alert.HasField("succession")]
            assert succession.alert.seq == 1 and succession.origin_name == acme.name
            link = succession.alert.succession
            assert (link.previous_key, link.previous_seq) == (old_key, 3)
            assert link.previous_head == missed[-1]
            assert (await b.get(after)).origin_name == acme.name

            # The old key signs nothing more: not with a backdated time, not now.
            thief = Author(load_identity(retired))
            thief.seq, thief.head = 3, missed[-1]
            backdated = thief.alert(created_at_ms=now_ms() - 3_600_000)
            error = await refused(b, thief.sign(backdated, advance=False))
            assert "retired after its alert #3" in error and "this alert is #4" in error
            error = await refused(b, thief.sign(thief.alert(seq=2, prev=first), advance=False))
            assert f"{acme.name}'s key {old_key.hex()[:16]}… which was retired at" in error

            # ... nor opens a peer session, even from acme's host (its TLS key pair too).
            host = PeerSecurity(load_tls_identity(acme.home / "tls.key", acme.home / "tls.crt"))
            beta_entry = Roster.from_toml((beta.home / "roster.toml").read_text()).by_name("node2")
            assert beta_entry is not None
            async with host.channel(beta.peer, beta_entry) as channel:
                call = PeerServiceStub(channel).Session()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await dial_handshake(
                        CallTransport(call),
                        thief.identity,
                        beta_entry.key,
                        host.dialer_channel(beta_entry),
                    )
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "not valid now" in (err.value.details() or "")

            # Equivocation by the new key is caught as it was by the old one.
            signer = Author(load_identity(acme.home / "identity.key"))
            stored_after = await b.get(after)
            twin = alert_pb2.Alert()
            twin.CopyFrom(stored_after.alert)
            twin.title = "another body for acme's new #2"
            result = (await b.ingest([signer.sign(twin, advance=False)])).results[0]
            assert result.outcome == api.INGEST_OUTCOME_EQUIVOCATION
            stats = await b.stats()
            assert {o.origin for o in stats.origins if o.equivocated} == {new_key}


async def refused(client: AlertClient, signed: alert_pb2.SignedAlert) -> str:
    """Ingest one alert the node must refuse as outside its key's validity; the reason."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.ingest([signed])
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    return err.value.details() or ""


async def _same_digest(a: AlertClient, b: AlertClient) -> bool:
    return (await a.stats()).digest == (await b.stats()).digest


async def test_a_compromised_keys_later_alerts_are_refused_and_the_held_ones_shown(
    tmp_path: Path,
) -> None:
    layout = cluster.create(tmp_path, 2)
    for node in layout:
        set_member(node.home, Member("partner", PARTNER.key))
    async with cluster_running(tmp_path, 2) as (_, beta):
        genuine = PARTNER.next(
            indicators=[(DOMAIN, "genuine.example")], created_at_ms=now_ms() - 60_000
        )
        stolen = PARTNER.next(indicators=[(DOMAIN, "stolen.example")])
        created = alert_pb2.Alert.FromString(stolen.body).created_at_ms
        async with AlertClient(beta.api) as client:
            response = await client.ingest([genuine, stolen])
            assert {r.outcome for r in response.results} == {api.INGEST_OUTCOME_ACCEPTED}
            assert (await client.check(["stolen.example"])).any_flagged

            # The partner reports its key stolen since just before its second alert.
            compromised = MemberKey(PARTNER.key, valid_until_ms=created, compromised=True)
            set_member(beta.home, Member("partner", PARTNER.key, keys=(compromised,)))
            reload_roster(beta)
            listed = json.loads(alertmesh("stats", "--json", "--node", beta.api).stdout)
            assert listed["compromised_total"] == 1
            [held] = listed["compromised"]
            assert held["id"] == alert_id(stolen.body).hex() and held["name"] == "partner"
            assert f"compromised since {format_time(created)}" in held["reason"]
            assert not (await client.check(["stolen.example"])).any_flagged
            assert (await client.check(["genuine.example"])).any_flagged

            error = await refused(client, PARTNER.next())
            assert "partner's key" in error and "compromised since" in error


def test_a_rotation_cut_short_says_how_to_recover(tmp_path: Path) -> None:
    home = tmp_path / "cut"
    alertmesh("init", "--home", str(home), "--name", "cut")
    (home / "succession.pb").write_bytes(b"")  # left by a rotation that died half-way
    done = alertmesh("rotate-key", "--home", str(home), check=False)
    assert done.returncode == 2
    assert "roster.toml.pre-rotate-" in done.stderr and "Traceback" not in done.stderr
