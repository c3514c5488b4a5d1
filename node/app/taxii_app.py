"""The node's TAXII 2.1 server (node/interchange/taxii.py) wired to its store and tokens.

Off unless the operator gives an address (`run --taxii-listen`, or [taxii] listen).
Loopback may be plain HTTP; any other address (or loopback when the client API itself
uses TLS, api.tls = true) is served over TLS with the node's own key and certificate,
and off loopback only with bearer tokens (api.auth = "token", scope read), or the node
refuses to start. Tokens, once configured, are required on loopback too.
"""

from __future__ import annotations

import ssl

from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.app.config import Config
from node.app.service import AlertNode
from node.app.tokens import TokenFile, TokenGate
from node.core.api_access import AUTH_TOKEN, TAXII_FEED, is_loopback
from node.core.errors import ConfigError
from node.interchange.taxii import Authorize, TaxiiServer
from node.rpc.convert import stored_alert
from node.store.base import Query

# A token of any scope pulls the feed; a taxii-scope token pulls only the feed.
TAXII_METHOD = TAXII_FEED


async def start_taxii(config: Config, node: AlertNode, listen: str) -> tuple[TaxiiServer, str]:
    """A bound TAXII server and its HOST:PORT; `serve()` it in the node's TaskGroup."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"TAXII address {listen!r} is not HOST:PORT")
    loopback = is_loopback(host)
    if not loopback and config.api_auth != AUTH_TOKEN:
        raise ConfigError(
            f"refusing to serve TAXII on {listen}: off loopback it needs tokens; set "
            f'api.auth = "token" in {config.home / "config.toml"} and give TAXII clients a '
            "token of scope read (alertmesh token create --scope read)"
        )
    tls = None
    if not loopback or config.api_tls:
        config.tls_identity()  # created if this home predates TLS
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(config.tls_cert_path, config.tls_key_path)
    authorize: Authorize | None = None
    if config.api_auth == AUTH_TOKEN:
        gate = TokenGate(TokenFile(config.api_tokens_path))

        def authorize(header: str | None) -> None:
            gate.authorize(TAXII_METHOD, header)

    async def page(cursor: int, limit: int) -> list[api.StoredAlert]:
        now = node.clock()
        rows = await node.store.after(Query(now_ms=now), cursor=cursor, limit=limit)
        return [
            stored_alert(s, roster=node.roster, now_ms=now, reader=node.sharing.content)
            for s in rows
        ]

    server = TaxiiServer(page, authorize=authorize, tls=tls, title=f"alertmesh {config.name}")
    try:
        address = await server.start(host, int(port))
    except OSError as exc:
        raise ConfigError(f"cannot listen for TAXII on {listen}: {exc.strerror}") from exc
    return server, address
