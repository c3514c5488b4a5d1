"""Peer sessions over TLS 1.3 pinned to the roster, with relays on the path.

Two real node processes on 127.0.0.1; node1 dials node2. A relay in this test
process sits where node1's roster says node2 is: one that forwards bytes (and
records them), or one that terminates TLS with a certificate of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from node import cluster
from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node._pb.alertmesh.v1 import peer_service_pb2 as peer_pb
from node._pb.alertmesh.v1.peer_service_pb2_grpc import PeerServiceStub
from node.core.roster import Member, Roster
from node.crypto import Identity
from node.crypto.identity import load_identity
from node.crypto.tls import generate_tls_identity, load_tls_identity
from node.rpc.client import AlertClient
from node.rpc.peer_transport import CallTransport, PeerSecurity, dial_handshake
from tests.clusters import cluster_running, counts, eventually, stats
from tests.factory import DOMAIN
from tests.procs import NodeProcess, alertmesh

pytestmark = pytest.mark.cluster

SECRETS = {
    "title": "Relay-Secret-Title-8c1f",
    "description": "relay secret description 51d0",
    "indicator": "relay-secret-indicator-e27a.example",
}


class Relay:
    """A TCP relay on 127.0.0.1 that forwards to `upstream` and records every byte."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.to_upstream = bytearray()
        self.to_client = bytearray()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=ssl_context)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = self.upstream.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer, self.to_upstream)),
            asyncio.create_task(self._pipe(up_reader, writer, self.to_client)),
        ]
        self.tasks.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray
    ) -> None:
        try:
            while data := await reader.read(65536):
                record += data
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


def point_roster_at(node: cluster.ClusterNode, member_name: str, **changes: object) -> None:
    """Rewrite `node`'s roster entry for `member_name` (its address, its pinned cert)."""
    roster = Roster.from_toml((node.home / "roster.toml").read_text())
    members = []
    for m in roster:
        if m.name == member_name:
            m = Member(
                m.name,
                m.key,
                tuple(changes.get("addresses", m.addresses)),  # type: ignore[call-overload]
                changes.get("tls_cert", m.tls_cert),  # type: ignore[arg-type]
            )
        members.append(m)
    (node.home / "roster.toml").write_text(Roster.of(members).to_toml())


def entry(node: cluster.ClusterNode, name: str) -> Member:
    member = Roster.from_toml((node.home / "roster.toml").read_text()).by_name(name)
    assert member is not None
    return member


def secret_request() -> api.PublishRequest:
    return api.PublishRequest(
        category=alert_pb2.CATEGORY_PHISHING,
        severity=alert_pb2.SEVERITY_HIGH,
        title=SECRETS["title"],
        description=SECRETS["description"],
        indicators=[alert_pb2.Indicator(type=DOMAIN, value=SECRETS["indicator"])],
    )


async def connected(node: cluster.ClusterNode, peer: str) -> bool:
    return any(p.name == peer and p.connected for p in (await stats([node]))[0].peers)


async def refused_a_pin(node: cluster.ClusterNode) -> bool:
    return (await stats([node]))[0].counters["peer_tls_pin_mismatch"] > 0


@contextlib.asynccontextmanager
async def serving(nodes: list[cluster.ClusterNode]) -> AsyncIterator[None]:
    """Start the nodes and wait until they serve clients (not until they connect)."""
    try:
        procs = [cluster.start(node) for node in nodes]
        for node, proc in zip(nodes, procs, strict=True):
            await asyncio.to_thread(cluster.wait_serving, node, proc, cluster.START_TIMEOUT_S)
        yield
    finally:
        await asyncio.to_thread(cluster.down, nodes[0].home.parent)


async def test_a_recording_relay_sees_no_alert_content(tmp_path: Path) -> None:
    layout = cluster.create(tmp_path, 2)
    relay = Relay(layout[1].peer)
    await relay.start()
    point_roster_at(layout[0], "node2", addresses=[relay.address])
    try:
        async with cluster_running(tmp_path, 2) as nodes:
            async with AlertClient(nodes[0].api) as client:
                await client.publish(secret_request())
            other = secret_request()
            other.title, other.indicators[0].value = "second " + SECRETS["title"], "b.example"
            async with AlertClient(nodes[1].api) as client:
                await client.publish(other)
            await eventually(lambda: _both_hold(nodes, 2), "both alerts on both nodes")
    finally:
        await relay.close()
    # The whole session went through the relay, as TLS records (0x16: a handshake record).
    assert relay.to_upstream[:1] == b"\x16" and relay.to_client[:1] == b"\x16"
    assert len(relay.to_upstream) > 1000 and len(relay.to_client) > 1000
    recorded = bytes(relay.to_upstream + relay.to_client)
    for what, secret in SECRETS.items():
        for spelling in {secret, secret.lower(), secret.upper()}:
            assert spelling.encode() not in recorded, f"the relay read the {what}"


async def _both_hold(nodes: list[cluster.ClusterNode], n: int) -> bool:
    return await counts(nodes) == [n, n]


async def test_a_relay_terminating_tls_is_refused_on_both_sides(tmp_path: Path) -> None:
    layout = cluster.create(tmp_path, 2)
    relay_tls = generate_tls_identity("relay")
    cert_file, key_file = tmp_path / "relay.crt", tmp_path / "relay.key"
    cert_file.write_bytes(relay_tls.cert_pem)
    key_file.write_bytes(relay_tls.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["h2"])
    relay = Relay(layout[1].peer)
    await relay.start(context)
    point_roster_at(layout[0], "node2", addresses=[relay.address])
    try:
        async with serving(layout):
            # node1 dials the relay, sees a certificate that is not node2's pin: refused,
            # logged and counted.
            await eventually(lambda: refused_a_pin(layout[0]), "node1 refusing the relay")
            assert not await connected(layout[0], "node2")
            log = layout[0].log_file.read_text()
            assert "node2's node at" in log and "is not the one on the roster" in log
            # The relay's own onward TLS connection to node2 is refused too: node2 does not
            # accept a client certificate that no roster entry pins.
            node2 = entry(layout[0], "node2")
            relay_side = PeerSecurity(relay_tls)
            async with relay_side.channel(layout[1].peer, node2) as channel:
                call = PeerServiceStub(channel).Session()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await dial_handshake(
                        CallTransport(call),
                        Identity.generate(),
                        node2.key,
                        relay_side.dialer_channel(node2),
                    )
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await relay.close()
    assert not relay.to_upstream, "node1 sent nothing past the TLS handshake"


async def test_a_changed_pin_ends_sessions_with_the_old_certificate(tmp_path: Path) -> None:
    async with cluster_running(tmp_path, 2) as nodes:
        real_cert = entry(nodes[0], "node2").tls_cert
        point_roster_at(nodes[0], "node2", tls_cert=generate_tls_identity("new").cert_pem)
        async with AlertClient(nodes[0].api) as client:
            await client.reload_roster()
        # node1 closes the session and refuses node2's (old) certificate from now on.
        await eventually(lambda: refused_a_pin(nodes[0]), "node1 refusing node2's old cert")
        assert "closing the session with node2: its TLS pin changed" in (
            nodes[0].log_file.read_text()
        )
        assert not await connected(nodes[0], "node2")
        async with AlertClient(nodes[1].api) as client:
            await client.publish(secret_request())
        # Back to the real pin: the session reopens and catch-up brings the alert over.
        point_roster_at(nodes[0], "node2", tls_cert=real_cert)
        async with AlertClient(nodes[0].api) as client:
            await client.reload_roster()
        await eventually(lambda: _both_hold(nodes, 1), "the alert on node1 after the fix")


async def test_plaintext_is_refused_unless_both_sides_ask_for_it(tmp_path: Path) -> None:
    async with cluster_running(tmp_path / "tls", 1) as (tls_node,):
        async with grpc.aio.insecure_channel(tls_node.peer) as channel:
            call = PeerServiceStub(channel).Session()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    async with cluster_running(tmp_path / "lab", 2, plaintext=True) as nodes:
        async with AlertClient(nodes[0].api) as client:
            await client.publish(secret_request())
        await eventually(lambda: _both_hold(nodes, 1), "the alert on both lab nodes")
        assert "peer sessions are PLAINTEXT" in nodes[0].log_file.read_text()


def test_a_home_made_before_tls_gets_its_key_pair_on_the_next_start(tmp_path: Path) -> None:
    home = tmp_path / "old"
    alertmesh("init", "--home", str(home), "--name", "old")
    (home / "tls.key").unlink()
    (home / "tls.crt").unlink()
    node = NodeProcess(home).start()
    try:
        assert (home / "tls.key").stat().st_mode & 0o777 == 0o600
        tls = load_tls_identity(home / "tls.key", home / "tls.crt")
        log = home.joinpath("node.log").read_text()
        assert "created a TLS key and certificate for this node" in log and tls.pin in log
        assert "BEGIN" not in log  # the pin, never the key
    finally:
        node.stop()


async def test_a_frame_of_more_alerts_than_a_batch_ends_the_session(tmp_path: Path) -> None:
    # A member's node sends one Alerts frame of max_batch + 1 (junk) alerts: node2 ends
    # the session as soon as it reads the frame, before it hashes or queues any of it,
    # and says so in its log. (Read-ahead would otherwise hold and hash it.)
    layout = cluster.create(tmp_path, 2)
    node1, node2_home = layout[0], layout[1]
    identity = load_identity(node1.home / "identity.key")
    security = PeerSecurity(load_tls_identity(node1.home / "tls.key", node1.home / "tls.crt"))
    node2 = entry(node1, "node2")
    too_many = [alert_pb2.SignedAlert(body=b"junk %d" % i) for i in range(1001)]
    async with serving([node2_home]):
        async with security.channel(node2_home.peer, node2) as channel:
            call = PeerServiceStub(channel).Session()
            transport = CallTransport(call)
            await dial_handshake(transport, identity, node2.key, security.dialer_channel(node2))
            await transport.write(peer_pb.PeerFrame(alerts=peer_pb.Alerts(alerts=too_many)))

            async def session_ends() -> bool:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    while await asyncio.wait_for(transport.read(), 10) is not None:
                        pass
                return True

            assert await session_ends()
        await eventually(
            lambda: _logged(node2_home, "a frame of 1001 alerts (at most 1000)"),
            "node2 logging the oversized frame",
        )


async def _logged(node: cluster.ClusterNode, text: str) -> bool:
    return text in node.log_file.read_text()
