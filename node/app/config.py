"""A node's home directory: identity, config file and roster.

HOME/identity.key   private Ed25519 seed (hex), mode 0600, never printed or logged
HOME/identity.pub   public key (hex)
HOME/tls.key        private TLS key (PEM, ECDSA P-256), mode 0600, never printed or logged
HOME/tls.crt        the node's self-signed TLS certificate; members pin it (roster tls_cert)
HOME/config.toml    settings, commented
HOME/roster.toml    the members (starts with just this node)
HOME/tokens.json    client API tokens: hashes only (alertmesh token create), mode 0600
HOME/alerts.db      the store (SQLite, WAL), unless [store] url names a PostgreSQL database
"""

from __future__ import annotations

import logging
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from node.app.logs import LOG_FORMATS, LOG_LEVELS
from node.app.verify import parse_processes
from node.core.api_access import AUTH_MODES, AUTH_NONE
from node.core.errors import ConfigError
from node.core.roster import Member, Roster
from node.crypto import Identity, create_identity, load_identity
from node.crypto.tls import (
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    TlsIdentity,
    create_tls_identity,
    ensure_tls_identity,
)
from node.store.postgres_url import is_url

log = logging.getLogger(__name__)

CONFIG_FILE = "config.toml"
DEFAULT_API = "127.0.0.1:7400"
DEFAULT_PEER = "127.0.0.1:7401"
ROSTER_HEADER = (
    "# Members of the network: one [[member]] block each. Add a member from its card:\n"
    "# alertmesh roster add CARD --home DIR (docs/operations.md).\n\n"
)

CONFIG_TEMPLATE = """\
# alertmesh node configuration, written by `alertmesh init`.
# Relative paths are relative to this file's directory.

# This member's name on the roster.
name = "{name}"

[api]
# The client API (publish, check, search, watch). On localhost it may run without TLS
# or tokens (the default). Any other address needs tls = true and auth = "token":
# the node refuses to start otherwise.
listen = "{api}"
# TLS with the node's own key and certificate ([tls] below); clients pin tls.crt
# with --ca FILE.
tls = false
# "none", or "token": every call needs a bearer token (alertmesh token create).
auth = "none"
# Where token hashes are kept (never the tokens themselves).
tokens = "tokens.json"

[peers]
# Other members' nodes connect here. Use "0.0.0.0:7401" to accept them from
# other hosts (and list that reachable address in the roster).
listen = "{peer}"
# Roster names of the members this node dials; members may also dial it.
connect = []
# Peer sessions run over TLS 1.3, each side pinned to the other's roster tls_cert.
# Plaintext (no encryption, no certificate pins) is for a lab on one machine only:
# every node of that lab must set it.
insecure_plaintext = false

[store]
# SQLite database (WAL mode). Every acknowledged alert is on disk.
path = "alerts.db"
# Or a PostgreSQL database (used instead of path when set), e.g.
# "postgresql://alertmesh:PASSWORD@db.internal:5432/alertmesh". One node writes it;
# read-only API processes (alertmesh serve-api) may serve from it too. The password
# is never logged (prefer a ~/.pgpass file or PGPASSWORD over writing it here).
url = ""

[roster]
# Who is a member. Reload after editing: kill -HUP <pid> or `alertmesh roster-reload --home DIR`.
path = "roster.toml"

[identity]
# Private key, mode 0600. Never share it; the public key is in identity.pub.
key = "identity.key"

[taxii]
# A read-only TAXII 2.1 server of this member's exportable alerts (docs/interchange.md),
# off while empty. On loopback it may run without TLS; any other address uses the
# node's TLS key and certificate and needs api.auth = "token" (a token of scope read).
listen = ""

[tls]
# The node's TLS key (mode 0600) and self-signed certificate, created by init (or on
# the first start of an older home). Other members pin the certificate in their roster.
key = "tls.key"
cert = "tls.crt"

[log]
# "text" (one line per event) or "json" (one JSON object per line, stable keys:
# time, level, logger, message, event, peer, alert_id, ...). `run --log-format` wins.
format = "text"
# debug, info, warning or error. `run --log-level` wins.
level = "info"

[verify]
# Verifier processes for batches of 64 alerts or more: "auto" (one per CPU) or a number
# from 1 to 8. More verify a batch faster, fewer spend less CPU per alert; set fewer
# when other nodes or programs share this host's CPUs (docs/operations.md).
processes = "auto"

[metrics]
# Prometheus metrics at http://LISTEN/metrics, e.g. "127.0.0.1:9464"; empty: off.
# Metrics show operational data (peer names, counts, latencies), never alert content
# or keys; a non-loopback address is allowed, with a warning in the log.
listen = ""
"""


@dataclass(frozen=True)
class Config:
    home: Path
    name: str
    api_listen: str = DEFAULT_API
    peer_listen: str = DEFAULT_PEER
    connect: tuple[str, ...] = ()
    store_path: Path = Path("alerts.db")
    store_url: str = ""  # a PostgreSQL database, used instead of store_path when set
    roster_path: Path = Path("roster.toml")
    key_path: Path = Path("identity.key")
    tls_key_path: Path = Path(TLS_KEY_FILE)
    tls_cert_path: Path = Path(TLS_CERT_FILE)
    insecure_plaintext: bool = False
    api_tls: bool = False
    api_auth: str = AUTH_NONE
    api_tokens_path: Path = Path("tokens.json")
    taxii_listen: str = ""  # empty: no TAXII server
    log_format: str = "text"
    log_level: str = "info"
    metrics_listen: str = ""  # empty: no metrics endpoint
    verify_processes: int | None = None  # None: "auto" (node/app/verify.py)

    @classmethod
    def load(cls, home: Path) -> Config:
        path = home / CONFIG_FILE
        try:
            doc = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(
                f"{path} not found; create a node first: alertmesh init --home {home}"
            ) from exc
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc

        def section(name: str) -> dict[str, object]:
            value = doc.get(name, {})
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: [{name}] must be a table")
            return value

        def text(sec: dict[str, object], key: str, default: str) -> str:
            value = sec.get(key, default)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{path}: {key} must be a non-empty string")
            return value

        peers = section("peers")
        connect = peers.get("connect", [])
        if not isinstance(connect, list) or not all(isinstance(c, str) for c in connect):
            raise ConfigError(f"{path}: peers.connect must be a list of member names")
        plaintext = peers.get("insecure_plaintext", False)
        if not isinstance(plaintext, bool):
            raise ConfigError(f"{path}: peers.insecure_plaintext must be true or false")
        tls = section("tls")
        api = section("api")
        api_tls = api.get("tls", False)
        if not isinstance(api_tls, bool):
            raise ConfigError(f"{path}: api.tls must be true or false")
        api_auth = api.get("auth", AUTH_NONE)
        if api_auth not in AUTH_MODES:
            raise ConfigError(f"{path}: api.auth must be one of {', '.join(map(repr, AUTH_MODES))}")
        log = section("log")
        log_format = log.get("format", "text")
        if log_format not in LOG_FORMATS:
            raise ConfigError(f"{path}: log.format must be one of {', '.join(LOG_FORMATS)}")
        log_level = log.get("level", "info")
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"{path}: log.level must be one of {', '.join(LOG_LEVELS)}")
        metrics_listen = section("metrics").get("listen", "")
        if not isinstance(metrics_listen, str):
            raise ConfigError(f'{path}: metrics.listen must be "HOST:PORT" or ""')
        store_url = section("store").get("url", "")
        if not isinstance(store_url, str) or (store_url and not is_url(store_url)):
            raise ConfigError(f'{path}: store.url must be "postgresql://..." or ""')
        try:
            verify_processes = parse_processes(section("verify").get("processes", "auto"))
        except ValueError as exc:
            raise ConfigError(f"{path}: verify.processes {exc}") from None
        return cls(
            home=home,
            name=text(doc, "name", home.name),
            api_listen=text(api, "listen", DEFAULT_API),
            peer_listen=text(peers, "listen", DEFAULT_PEER),
            connect=tuple(connect),
            store_path=home / text(section("store"), "path", "alerts.db"),
            store_url=store_url,
            roster_path=home / text(section("roster"), "path", "roster.toml"),
            key_path=home / text(section("identity"), "key", "identity.key"),
            tls_key_path=home / text(tls, "key", TLS_KEY_FILE),
            tls_cert_path=home / text(tls, "cert", TLS_CERT_FILE),
            insecure_plaintext=plaintext,
            api_tls=api_tls,
            api_auth=str(api_auth),
            api_tokens_path=home / text(api, "tokens", "tokens.json"),
            taxii_listen=_optional_text(section("taxii"), "listen", path),
            log_format=str(log_format),
            log_level=str(log_level),
            metrics_listen=metrics_listen,
            verify_processes=verify_processes,
        )

    def identity(self) -> Identity:
        return load_identity(self.key_path)

    def tls_identity(self) -> tuple[TlsIdentity, bool]:
        """The node's TLS key pair, created if this home predates TLS (True then)."""
        return ensure_tls_identity(self.tls_key_path, self.tls_cert_path, self.name)

    def roster(self) -> Roster:
        try:
            text = self.roster_path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read roster {self.roster_path}: {exc.strerror}") from exc
        roster = Roster.from_toml(text, str(self.roster_path))
        # Accepted, so that a newer version's field does not stop this node; most often a
        # misspelling. Not kept: a rewrite of the file (roster add, key rotation) drops it.
        if roster.unknown_fields:
            log.warning(
                "roster %s: unknown fields ignored (misspelt?): %s",
                self.roster_path,
                "; ".join(roster.unknown_fields),
            )
        return roster


def _optional_text(sec: dict[str, object], key: str, path: Path) -> str:
    value = sec.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {key} must be a string")
    return value


def init_home(
    home: Path,
    *,
    name: str | None = None,
    api_listen: str = DEFAULT_API,
    peer_listen: str = DEFAULT_PEER,
) -> Config:
    """Create a node's identity, config and single-member roster; never overwrite."""
    home.mkdir(parents=True, exist_ok=True)
    for existing in (CONFIG_FILE, "identity.key", TLS_KEY_FILE):
        if (home / existing).exists():
            raise ConfigError(f"{home / existing} already exists; refusing to overwrite it")
    name = name or f"node-{secrets.token_hex(3)}"
    identity = create_identity(home / "identity.key")
    (home / "identity.pub").write_text(identity.public_key.hex() + "\n")
    tls = create_tls_identity(home / TLS_KEY_FILE, home / TLS_CERT_FILE, name)
    (home / CONFIG_FILE).write_text(
        CONFIG_TEMPLATE.format(name=name, api=api_listen, peer=peer_listen)
    )
    roster = Roster.of([Member(name, identity.public_key, (peer_listen,), tls.cert_pem)])
    (home / "roster.toml").write_text(ROSTER_HEADER + roster.to_toml())
    return Config.load(home)
