"""Who may call what on the client API: scopes, the method table, and when the API
may leave loopback. Pure data and decisions; node/app/tokens.py and node/rpc/auth.py
apply them.

Scopes are ordered: publish includes read, admin includes everything. A method
missing from the table needs admin, so a new method is closed until classified. The
lowest scope, taxii, opens only the TAXII feed (exportable alerts as STIX): a token
handed to a feed consumer outside the organisation reads nothing on the gRPC API, where
a read token would see everything the node holds (decrypted TLP:RED included).
"""

from __future__ import annotations

import enum
import ipaddress


class Scope(enum.IntEnum):
    TAXII = 0
    READ = 1
    PUBLISH = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Scope:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(
                f"unknown scope {text!r}; use one of {', '.join(s.label for s in cls)}"
            ) from None


# AlertService method -> the least scope that may call it.
METHOD_SCOPES: dict[str, Scope] = {
    "GetAlert": Scope.READ,
    "SearchAlerts": Scope.READ,
    "CheckIndicators": Scope.READ,
    "Subscribe": Scope.READ,
    "GetStats": Scope.READ,
    "Publish": Scope.PUBLISH,
    "PublishBatch": Scope.PUBLISH,
    "Ingest": Scope.PUBLISH,
    "IngestStream": Scope.PUBLISH,
    "ReloadRoster": Scope.ADMIN,
    "SetPeerBlocked": Scope.ADMIN,
}


# Not an AlertService method: what the TAXII server asks of a token (node/app/taxii_app.py).
TAXII_FEED = "taxii feed"


def required_scope(method: str) -> Scope:
    if method == TAXII_FEED:
        return Scope.TAXII
    return METHOD_SCOPES.get(method, Scope.ADMIN)


def read_only_serves(method: str) -> bool:
    """Whether a read-only API process (alertmesh serve-api) answers `method`: reads
    only; publish, ingest and admin calls go to the writing node."""
    return METHOD_SCOPES.get(method) is Scope.READ


def allows(granted: Scope, needed: Scope) -> bool:
    return granted >= needed


AUTH_NONE = "none"
AUTH_TOKEN = "token"
AUTH_MODES = (AUTH_NONE, AUTH_TOKEN)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP literals; any other name or address is not."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_problem(host: str, *, tls: bool, auth: str) -> str | None:
    """Why the client API must not listen on `host` with these settings, or None.

    Loopback may run without TLS or tokens (the default). Anywhere else needs both:
    tokens without TLS could be read off the wire, TLS without tokens lets anyone in.
    """
    if is_loopback(host):
        return None
    missing = [
        what
        for what, ok in (("api.tls = true", tls), ('api.auth = "token"', auth == AUTH_TOKEN))
        if not ok
    ]
    if not missing:
        return None
    return (
        f"refusing to serve the client API on non-loopback address {host} without "
        f"{' and '.join(missing)} in config.toml (or listen on 127.0.0.1)"
    )
