"""The client API with TLS and bearer tokens: a real node, its token file, the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core.api_access import METHOD_SCOPES
from node.crypto.tls import PEER_TLS_NAME
from node.rpc.client import AlertClient
from tests.procs import NodeProcess, alertmesh

ALERT_SERVICE = api.DESCRIPTOR.services_by_name["AlertService"]


def secure(home: Path) -> None:
    """Turn on TLS and tokens in a home's config (the listen address stays loopback)."""
    config = home / "config.toml"
    text = config.read_text()
    text = text.replace("tls = false", "tls = true").replace('auth = "none"', 'auth = "token"')
    config.write_text(text)


def create_token(home: Path, scope: str, name: str = "") -> str:
    out = alertmesh("token", "create", "--home", str(home), "--scope", scope, "--name", name)
    return out.stdout.strip().splitlines()[-1]


def token_id(token: str) -> str:
    return token.split("_")[1]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    home = tmp_path_factory.mktemp("secured") / "acme"
    alertmesh("init", "--home", str(home), "--name", "acme")
    secure(home)
    proc = NodeProcess(home).start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def ca(node: NodeProcess) -> bytes:
    return (node.home / "tls.crt").read_bytes()


def client(node: NodeProcess, ca: bytes, token: str | None = None) -> AlertClient:
    return AlertClient(node.address, token=token, ca=ca)


def phishing(title: str, domain: str) -> api.PublishRequest:
    return api.PublishRequest(
        category=alert_pb2.CATEGORY_PHISHING,
        severity=alert_pb2.SEVERITY_HIGH,
        title=title,
        indicators=[alert_pb2.Indicator(type=alert_pb2.INDICATOR_TYPE_DOMAIN, value=domain)],
    )


def test_every_api_method_has_a_scope() -> None:
    assert {m.name for m in ALERT_SERVICE.methods} == set(METHOD_SCOPES)


async def test_a_call_without_a_token_is_unauthenticated(node: NodeProcess, ca: bytes) -> None:
    async with client(node, ca) as c:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.check(["evil.example"])
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "alertmesh token create" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in c.subscribe(api.SubscribeRequest(from_start=True)):
                pass
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with client(node, ca, "amt_00000000_" + "A" * 43) as c:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.stats()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_health_stays_open_without_a_token(node: NodeProcess, ca: bytes) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    options = [("grpc.ssl_target_name_override", PEER_TLS_NAME)]
    async with grpc.aio.secure_channel(node.address, credentials, options=options) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_read_token_reads_but_cannot_publish_or_administer(
    node: NodeProcess, ca: bytes
) -> None:
    reader = create_token(node.home, "read", "dashboard")
    async with client(node, ca, reader) as c:
        assert not (await c.check(["read-only.example"])).any_flagged
        assert (await c.stats()).node_name == "acme"
        await c.search(api.SearchAlertsRequest())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.get(b"\0" * 32)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND  # authorised, just absent
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.publish(phishing("Not allowed", "nope.example"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        details = err.value.details() or ""
        assert "scope publish" in details and "alertmesh token create" in details
        assert reader not in details
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.reload_roster()
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reader not in (node.home / "node.log").read_text()


async def test_a_publish_token_publishes_and_a_reader_watches_it(
    node: NodeProcess, ca: bytes
) -> None:
    publisher = create_token(node.home, "publish", "soc")
    reader = create_token(node.home, "read")
    async with client(node, ca, publisher) as pub, client(node, ca, reader) as watcher:
        published = await pub.publish(phishing("Fake wallet", "fake-wallet.example"))
        assert (await pub.check(["fake-wallet.example"])).any_flagged  # publish includes read
        async with asyncio.timeout(30):
            async for event in watcher.subscribe(api.SubscribeRequest(from_start=True)):
                if event.alert.id == published.id:
                    break
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pub.set_peer_blocked("acme", True)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_an_admin_token_reloads_the_roster(node: NodeProcess, ca: bytes) -> None:
    admin = create_token(node.home, "admin", "ops")
    async with client(node, ca, admin) as c:
        assert (await c.reload_roster()).members == 1
        assert (await c.stats()).alerts >= 0


async def test_tokens_created_and_revoked_while_running_count_on_the_next_call(
    node: NodeProcess, ca: bytes
) -> None:
    token = create_token(node.home, "read", "short-lived")
    async with client(node, ca, token) as c:
        await c.stats()
        alertmesh("token", "revoke", "--home", str(node.home), token_id(token))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.stats()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (err.value.details() or "")


async def test_plaintext_and_the_wrong_certificate_do_not_connect(
    node: NodeProcess, tmp_path: Path
) -> None:
    reader = create_token(node.home, "read")
    async with AlertClient(node.address, token=reader) as plain:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await plain.stats(timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    other = tmp_path / "other"
    alertmesh("init", "--home", str(other), "--name", "other")
    async with AlertClient(node.address, token=reader, ca=(other / "tls.crt").read_bytes()) as c:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.stats(timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_token_file_holds_hashes_only(node: NodeProcess) -> None:
    token = create_token(node.home, "admin", "hash-check")
    path = node.home / "tokens.json"
    assert token not in path.read_text()
    assert token.split("_", 2)[2] not in path.read_text()  # the secret may hold "_" too
    assert path.stat().st_mode & 0o777 == 0o600
    listing = alertmesh("token", "list", "--home", str(node.home)).stdout
    assert token_id(token) in listing and "hash-check" in listing and token not in listing


def cli(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ALERTMESH_TOKEN"}
    if token:
        env["ALERTMESH_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_cli_token_commands_and_client_flags_end_to_end(node: NodeProcess) -> None:
    home, ca = str(node.home), str(node.home / "tls.crt")
    created = cli("token", "create", "--home", home, "--scope", "publish", "--name", "cli")
    assert created.returncode == 0
    token = created.stdout.strip()
    assert token.startswith("amt_") and token not in created.stderr

    target = ("--node", node.address, "--ca", ca)
    published = cli("publish", *target, "--token", token, "--category", "scam",
                    "--title", "CLI alert", "--indicator", "cli-scam.example")  # fmt: skip
    assert published.returncode == 0, published.stderr

    by_flag = cli("check", "--node", node.address, "--ca", ca, "--token", token, "cli-scam.example")
    assert by_flag.returncode == 0 and "FLAGGED" in by_flag.stdout
    by_env = cli("check", "--node", node.address, "--ca", ca, "cli-scam.example", token=token)
    assert by_env.returncode == 0 and "FLAGGED" in by_env.stdout
    # --home: the node's certificate comes from the home whose config says tls = true.
    by_home = cli("stats", "--node", node.address, "--home", home, token=token)
    assert by_home.returncode == 0 and "acme" in by_home.stdout

    refused = cli("check", "--node", node.address, "--ca", ca, "cli-scam.example")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "UNAUTHENTICATED" in refused.stderr
    wrong_scope = cli("roster-reload", "--node", node.address, "--ca", ca, token=token)
    assert wrong_scope.returncode == 2 and "PERMISSION_DENIED" in wrong_scope.stderr
    assert "--scope admin" in wrong_scope.stderr and token not in wrong_scope.stderr

    revoked = cli("token", "revoke", "--home", home, token_id(token))
    assert revoked.returncode == 0
    listing = cli("token", "list", "--home", home).stdout
    assert any(token_id(token) in line and "revoked" in line for line in listing.splitlines())
    after = cli("check", "--node", node.address, "--ca", ca, "cli-scam.example", token=token)
    assert after.returncode == 2 and "revoked" in after.stderr
    unknown = cli("token", "revoke", "--home", home, "00000000")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: ")


@pytest.mark.parametrize(("tls", "auth"), [("false", "none"), ("true", "none"), ("false", "token")])
def test_a_non_loopback_api_without_tls_and_tokens_is_refused_before_binding(
    tmp_path: Path, tls: str, auth: str
) -> None:
    home = tmp_path / "exposed"
    alertmesh("init", "--home", str(home), "--name", "exposed")
    config = home / "config.toml"
    config.write_text(
        config.read_text().replace("tls = false", f"tls = {tls}")
        .replace('auth = "none"', f'auth = "{auth}"')
    )  # fmt: skip
    # 0.0.0.0 would be every interface: the node must refuse before it binds anything.
    out = alertmesh("run", "--home", str(home), "--listen", "0.0.0.0:0",
                    "--peer-listen", "127.0.0.1:0", check=False)  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "refusing to serve the client API on non-loopback address 0.0.0.0" in out.stderr
    assert "listening on" not in out.stdout
    assert not (home / "alerts.db").exists()  # refused before the store was even opened


def test_a_bad_auth_setting_is_a_one_line_error(tmp_path: Path) -> None:
    home = tmp_path / "typo"
    alertmesh("init", "--home", str(home), "--name", "typo")
    config = home / "config.toml"
    config.write_text(config.read_text().replace('auth = "none"', 'auth = "tokens"'))
    out = alertmesh("run", "--home", str(home), "--listen", "127.0.0.1:0", check=False)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "api.auth must be one of" in out.stderr


async def test_a_refused_stream_call_gets_the_status_too(node: NodeProcess, ca: bytes) -> None:
    reader = create_token(node.home, "read")
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    options = [("grpc.ssl_target_name_override", PEER_TLS_NAME)]
    async with grpc.aio.secure_channel(node.address, credentials, options=options) as channel:
        ingest = channel.stream_stream(
            "/alertmesh.v1.AlertService/IngestStream",
            request_serializer=api.IngestRequest.SerializeToString,
            response_deserializer=api.IngestResponse.FromString,
        )
        call = ingest(metadata=(("authorization", f"Bearer {reader}"),))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            # No write: the refusal comes from the call's metadata, and a write would race it.
            await call.read()
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_tokens_without_tls_on_loopback(tmp_path: Path) -> None:
    home = tmp_path / "local"
    alertmesh("init", "--home", str(home), "--name", "local")
    config = home / "config.toml"
    config.write_text(config.read_text().replace('auth = "none"', 'auth = "token"'))
    proc = NodeProcess(home).start()
    try:
        token = create_token(home, "read")
        async with AlertClient(proc.address) as anonymous:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await anonymous.stats()
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        async with AlertClient(proc.address, token=token) as c:
            assert (await c.stats()).node_name == "local"
    finally:
        proc.kill()
