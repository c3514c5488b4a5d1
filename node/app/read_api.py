"""`alertmesh serve-api --home DIR`: an extra, read-only client API process over the
PostgreSQL store one node writes (read scale-out).

It serves get, search, check, watch and stats with the same code as the node
(AlertNode over a PostgresStore that follows the writer) and the same exposure,
TLS and token rules as the node's API; publish, ingest and admin calls are refused
with FAILED_PRECONDITION naming the writing node. Watch streams see new alerts as
the writer commits them: the store LISTENs for the writer's NOTIFY.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import grpc

from node.app.config import Config
from node.app.runtime import (
    ALERT_SERVICE,
    SHUTDOWN_GRACE_S,
    bind,
    client_api_server,
    serving,
    split_host_port,
    token_interceptors,
)
from node.app.service import AlertNode
from node.app.sharing import readers_in
from node.app.startup import check_can_listen
from node.app.stores import store_name
from node.app.verify import Verifier
from node.core.api_access import exposure_problem
from node.core.errors import ConfigError
from node.core.limits import DEFAULT_LIMITS
from node.rpc.read_only import ReadOnlyInterceptor
from node.store.postgres import PostgresStore

log = logging.getLogger(__name__)
LISTEN_SETTING = "--listen or [api] listen in config.toml"


async def run_read_api(
    config: Config,
    *,
    api_listen: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve reads until SIGINT/SIGTERM (or `stop`)."""
    if not config.store_url:
        raise ConfigError(
            f"serve-api reads a PostgreSQL store; {config.home / 'config.toml'} has no"
            ' [store] url = "postgresql://..." (a SQLite store is served by its node alone)'
        )
    api_listen = api_listen or config.api_listen
    problem = exposure_problem(
        split_host_port(api_listen)[0], tls=config.api_tls, auth=config.api_auth
    )
    if problem:
        raise ConfigError(problem)
    identity = config.identity()  # opens the alerts encrypted to this member
    roster = config.roster()  # a broken roster is one line now, not a failed call later
    check_can_listen(*split_host_port(api_listen), "the client API", LISTEN_SETTING)
    credentials = None
    if config.api_tls:
        tls, _ = config.tls_identity()
        credentials = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)])
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    store = PostgresStore(config.store_url, follow=True)
    async with Verifier(DEFAULT_LIMITS) as verifier, store:
        node = AlertNode(
            identity=identity,
            roster=roster,
            store=store,
            verifier=verifier,
            limits=DEFAULT_LIMITS,
            readers=readers_in(config.key_path),
        )
        store.on_change = node.wake_watchers

        def reload_roster() -> None:
            try:
                node.roster = config.roster()
            except ConfigError as exc:
                log.error("roster not reloaded: %s", exc)
            else:
                log.info("roster reloaded: %d members", len(node.roster))

        read_only = ReadOnlyInterceptor(
            ALERT_SERVICE.full_name, f"[api] listen {config.api_listen}"
        )
        # Tokens first: an unauthenticated caller learns nothing about what this process serves.
        server, health_servicer = client_api_server(node, [*token_interceptors(config), read_only])
        address = bind(server, api_listen, "the client API", credentials)
        await server.start()
        await serving(health_servicer)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload_roster)
        log.info(
            "read-only API of %s serving on %s (store %s)",
            config.name,
            address,
            store_name(config),
            extra={"event": "serving", "address": address},
        )
        if on_ready:
            on_ready(address)
        try:
            await stop.wait()
        finally:
            log.info("shutting down", extra={"event": "shutting_down"})
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await health_servicer.enter_graceful_shutdown()
            await server.stop(SHUTDOWN_GRACE_S)
    log.info("stopped", extra={"event": "stopped"})
