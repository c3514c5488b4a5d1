"""One running node: the store, the verifier, the gRPC servers and the peer layer,
all inside one TaskGroup, with orderly shutdown on SIGINT/SIGTERM and roster
reload on SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.app.collector import Collector
from node.app.config import Config
from node.app.metrics import NodeMetrics
from node.app.metrics_http import MetricsServer
from node.app.peers import PeerManager
from node.app.rotation import own_member, publish_pending_succession
from node.app.service import AlertNode, wall_ms
from node.app.sharing import readers_in
from node.app.startup import check_can_listen, listen_problem, warn_if_exposed
from node.app.stores import open_store, store_files
from node.app.tokens import TokenFile, TokenGate
from node.app.valuelists import Allowlist
from node.app.verify import Verifier
from node.core.api_access import AUTH_TOKEN, exposure_problem
from node.core.errors import ConfigError
from node.core.limits import DEFAULT_LIMITS, Limits
from node.rpc.alert_service import AlertService
from node.rpc.auth import TokenInterceptor
from node.rpc.peer_transport import (
    PEER_SERVICE,
    SERVER_KEEPALIVE_OPTIONS,
    PeerSecurity,
    PeerServicer,
)
from node.rpc.registry import add_service

log = logging.getLogger(__name__)

ALERT_SERVICE = api.DESCRIPTOR.services_by_name["AlertService"]
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]
# A stop takes at most SHUTDOWN_GRACE_S, then DRAIN_TIMEOUT_S (node/app/service.py: the
# commits in flight and what follows them), then the store's close: 8 s and the close,
# inside the 15 s `cluster down` waits before SIGKILL (STOP_TIMEOUT_S, node/cluster.py).
SHUTDOWN_GRACE_S = 3.0
# What an operator changes when a listener cannot bind.
LISTEN_SETTINGS = {
    "the client API": "--listen or [api] listen in config.toml",
    "peers": "--peer-listen or [peers] listen in config.toml",
    "metrics": "--metrics-listen or [metrics] listen in config.toml",
}


@dataclass(frozen=True)
class Endpoints:
    api: str
    peer: str
    taxii: str = ""
    metrics: str = ""  # HOST:PORT of /metrics, if served


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def bind(
    server: grpc.aio.Server,
    address: str,
    what: str,
    credentials: grpc.ServerCredentials | None = None,
) -> str:
    host, wanted = split_host_port(address)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:  # grpcio: "Failed to bind to address ..."
        setting = LISTEN_SETTINGS.get(what, "config.toml")
        raise ConfigError(listen_problem(host, wanted, what, setting, None)) from exc
    if not port:
        raise ConfigError(f"cannot listen for {what} on {address} (address in use?)")
    return f"{host}:{port}"


def token_interceptors(config: Config) -> list[grpc.aio.ServerInterceptor]:
    """The bearer-token check on the client API, when the config asks for tokens."""
    if config.api_auth != AUTH_TOKEN:
        return []
    gate = TokenGate(TokenFile(config.api_tokens_path))
    return [TokenInterceptor(gate, ALERT_SERVICE.full_name)]


def client_api_server(
    node: AlertNode, interceptors: Sequence[grpc.aio.ServerInterceptor]
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """The client API's server, for the node and for read-only API processes alike:
    AlertService, the standard health service and reflection (grpcurl, grpc_health_probe)."""
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
    add_service(server, ALERT_SERVICE, AlertService(node))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [ALERT_SERVICE.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    return server, health_servicer


async def serving(health_servicer: health.aio.HealthServicer) -> None:
    """Tell health checks that the client API serves."""
    for service in ("", ALERT_SERVICE.full_name):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)


def peer_security(config: Config) -> PeerSecurity:
    """TLS with the node's key pair (created for an older home), unless the operator
    turned peer encryption off for a lab."""
    if config.insecure_plaintext:
        log.warning(
            "peer sessions are PLAINTEXT (peers.insecure_plaintext = true): anyone on the "
            "path reads every alert; use this in a lab only"
        )
        return PeerSecurity(None)
    tls, created = config.tls_identity()
    if created:
        log.warning(
            "created a TLS key and certificate for this node (%s, %s), pin %s; other members "
            "must add it to their rosters (alertmesh member-card)",
            config.tls_key_path,
            config.tls_cert_path,
            tls.pin,
        )
    log.info("peer sessions: TLS 1.3, pinned to the roster; this node's pin is %s", tls.pin)
    return PeerSecurity(tls)


async def run_node(
    config: Config,
    *,
    api_listen: str | None = None,
    peer_listen: str | None = None,
    taxii_listen: str | None = None,
    metrics_listen: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    on_ready: Callable[[Endpoints], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or `stop`), then shut down without losing acknowledged alerts."""
    api_listen = api_listen or config.api_listen
    # Refused before anything is opened or bound: nothing is ever exposed unprotected.
    problem = exposure_problem(
        split_host_port(api_listen)[0], tls=config.api_tls, auth=config.api_auth
    )
    if problem:
        raise ConfigError(problem)
    peer_listen = peer_listen or config.peer_listen
    metrics_listen = config.metrics_listen if metrics_listen is None else metrics_listen
    # Files and ports first, before anything is logged: a mistake is one line.
    identity = config.identity()
    roster = config.roster()
    own_member(roster, identity.public_key, wall_ms(), config.roster_path)
    allowlist = Allowlist.load(config.home)  # a bad file stops the start, with its line
    for address, what in ((api_listen, "the client API"), (peer_listen, "peers"),
                          (metrics_listen, "metrics")):  # fmt: skip
        if address:
            check_can_listen(*split_host_port(address), what, LISTEN_SETTINGS[what])
    security = peer_security(config)
    api_credentials = None
    if config.api_tls:
        api_tls, _ = config.tls_identity()
        api_credentials = grpc.ssl_server_credentials([(api_tls.key_pem, api_tls.cert_pem)])
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    async with Verifier(limits, config.verify_processes) as verifier, open_store(config) as store:
        node = AlertNode(
            identity=identity,
            roster=roster,
            store=store,
            verifier=verifier,
            limits=limits,
            readers=readers_in(config.key_path),  # retired keys still read old alerts
        )
        node.allowlist = allowlist
        await node.start()
        await publish_pending_succession(node, config.home)

        peers = PeerManager(node, connect=config.connect, security=security)
        collector = Collector.attach(node)

        def reload_roster() -> None:
            roster = config.roster()
            own_member(roster, identity.public_key, wall_ms(), config.roster_path)
            connect = Config.load(config.home).connect  # `roster add --connect` edits it
            node.allowlist = Allowlist.load(config.home)  # reloaded with the roster
            node.roster = roster
            peers.connect = connect
            log.info("roster reloaded: %d members", len(roster))
            peers.roster_reloaded()

        def reload_on_signal() -> None:
            try:
                reload_roster()
            except ConfigError as exc:
                log.error("roster not reloaded: %s", exc)

        node.reload_roster = reload_roster

        def set_peer_blocked(key: bytes, blocked: bool) -> list[bytes]:
            peers.set_blocked(key, blocked)
            return sorted(peers.blocked)

        node.set_peer_blocked = set_peer_blocked

        server, health_servicer = client_api_server(node, token_interceptors(config))
        api_address = bind(server, api_listen, "the client API", api_credentials)
        peer_server = grpc.aio.server(options=SERVER_KEEPALIVE_OPTIONS)
        add_service(
            peer_server,
            PEER_SERVICE,
            PeerServicer(
                identity, lambda: node.roster, peers.session, security, peers.handshake_refused
            ),
        )
        peer_credentials = (
            None if security.plaintext else security.server_credentials(lambda: node.roster)
        )
        peer_address = bind(peer_server, peer_listen, "peers", peer_credentials)
        metrics_server = None
        metrics_address = ""
        if metrics_listen:
            metrics = NodeMetrics(node, peers, store_files(config))
            host, port = split_host_port(metrics_listen)
            warn_if_exposed(host)
            metrics_server = MetricsServer(metrics.registry, host, port)
            try:
                metrics_address = await metrics_server.start()
            except OSError as exc:
                raise ConfigError(
                    listen_problem(host, port, "metrics", LISTEN_SETTINGS["metrics"], exc.errno)
                ) from exc
        taxii, taxii_address = None, ""
        if taxii_listen or config.taxii_listen:
            from node.app.taxii_app import start_taxii

            taxii, taxii_address = await start_taxii(
                config, node, taxii_listen or config.taxii_listen
            )
        await server.start()
        await peer_server.start()
        await serving(health_servicer)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload_on_signal)
        log.info(
            "node %s serving the client API on %s",
            config.name,
            api_address,
            extra={"event": "serving", "address": api_address},
        )
        if metrics_address:
            log.info(
                "metrics at http://%s/metrics",
                metrics_address,
                extra={"event": "metrics_serving", "address": metrics_address},
            )
        # What start-up built is frozen, young collections are rarer, and after a large
        # ingest the node settles once it is quiet (node/app/collector.py).
        collector.serving()
        if on_ready:
            on_ready(
                Endpoints(
                    api=api_address, peer=peer_address, taxii=taxii_address, metrics=metrics_address
                )
            )
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(peers.run(), name="peers"),
                    tg.create_task(collector.run(), name="collector"),
                ]
                if metrics_server is not None:
                    tasks.append(tg.create_task(metrics_server.serve(), name="metrics"))
                if taxii is not None:
                    tasks.append(tg.create_task(taxii.serve(), name="taxii"))
                await stop.wait()
                for task in tasks:
                    task.cancel()
        finally:
            log.info("shutting down", extra={"event": "shutting_down"})
            if metrics_server is not None:
                await metrics_server.close()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await health_servicer.enter_graceful_shutdown()
            # In-flight calls finish (their alerts are committed) before the store closes.
            await asyncio.gather(server.stop(SHUTDOWN_GRACE_S), peer_server.stop(1.0))
            await node.drain()  # commits whose callers left still finish and follow up
    log.info("stopped", extra={"event": "stopped"})
