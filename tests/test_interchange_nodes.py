"""Interchange on real nodes: `alertmesh export` in three formats under the TLP rules, a
round trip STIX export -> another member's node, and the TAXII 2.1 collection pulled
incrementally with taxii2-client."""

from __future__ import annotations

import json
import queue
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pymisp import MISPEvent
from stix2validator import ValidationOptions, validate_instance
from taxii2client.common import _HTTPConnection
from taxii2client.v21 import ApiRoot, Server

from tests.procs import LISTEN_ANY_PORT, NodeProcess, alertmesh

pytestmark = pytest.mark.cluster

EVM = "eip155:1:0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
GREEN_VALUES = [
    "drain-claim.example",
    "https://drain-claim.example/connect",
    "198.51.100.23",
    "support@drain-claim.example",
    EVM,
]


def start(home: Path, name: str, *extra: str, init: bool = True) -> tuple[NodeProcess, str]:
    if init:
        alertmesh("init", "--home", str(home), "--name", name)
    proc = NodeProcess(home)
    proc.listen = (*LISTEN_ANY_PORT, *extra)
    proc.start()
    taxii = ""
    while extra and not taxii:
        try:
            line = proc.lines.get(timeout=30)
        except queue.Empty:
            raise RuntimeError(f"no taxii line:\n{proc.log.read_text()}") from None
        if line.startswith("taxii on "):
            taxii = line.removeprefix("taxii on ")
    return proc, taxii


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NodeProcess, str, NodeProcess]]:
    base = tmp_path_factory.mktemp("interchange")
    acme, taxii = start(base / "acme", "acme", "--taxii-listen", "127.0.0.1:0")
    other, _ = start(base / "other", "other")
    yield acme, taxii, other
    acme.kill()
    other.kill()


def publish(address: str, title: str, tlp: str, values: list[str]) -> None:
    alertmesh(
        "publish",
        "--node",
        address,
        "--category",
        "phishing",
        "--title",
        title,
        "--severity",
        "high",
        "--tlp",
        tlp,
        *[f"--indicator={v}" for v in values],
    )


async def test_export_formats_tlp_rules_and_round_trip(
    nodes: tuple[NodeProcess, str, NodeProcess],
) -> None:
    acme, _, other = nodes
    publish(acme.address, "Drainer kit", "green", GREEN_VALUES)
    publish(acme.address, "Partner-only lead", "amber", ["amber-only.example"])
    publish(acme.address, "Public list", "clear", ["public-list.example"])

    out = alertmesh("export", "--node", acme.address, "--format", "stix")
    bundle = json.loads(out.stdout)
    result = validate_instance(bundle, ValidationOptions(version="2.1"))
    assert result.is_valid
    patterns = " ".join(o["pattern"] for o in bundle["objects"] if o["type"] == "indicator")
    assert "drain-claim.example" in patterns and "public-list.example" in patterns
    assert "amber-only.example" not in out.stdout
    assert "not exported under the TLP rules: 1 amber" in out.stderr
    assert alertmesh("export", "--node", acme.address, "--format", "stix").stdout == out.stdout

    amber = alertmesh("export", "--node", acme.address, "--include-amber", "--format", "csv")
    assert "amber-only.example" in amber.stdout and "--include-amber" in amber.stderr
    assert len(amber.stdout.splitlines()) == 1 + len(GREEN_VALUES) + 2

    misp = alertmesh("export", "--node", acme.address, "--format", "misp")
    event = MISPEvent()
    event.load(misp.stdout)
    assert "drain-claim.example" in {a.value for a in event.attributes}

    # The other member's node learns the values from the bundle alone, through the
    # import command an operator runs; and from the MISP event the same way.
    bundle_file = acme.home.parent / "acme-export.json"
    bundle_file.write_text(out.stdout)
    imported = alertmesh("import", "--node", other.address, str(bundle_file), check=False)
    assert imported.returncode == 0, imported.stderr
    check = alertmesh("check", "--node", other.address, "--json", *GREEN_VALUES)
    assert all(r["matches"] for r in json.loads(check.stdout)), check.stdout
    assert (
        alertmesh("check", "--node", other.address, "amber-only.example", check=False).returncode
        == 1
    )
    again = alertmesh("import", "--node", other.address, str(bundle_file))
    assert "0 new alerts, 2 already published" in again.stdout, again.stdout
    event_file = acme.home.parent / "acme-export.misp.json"
    event_file.write_text(misp.stdout)
    from_misp = alertmesh("import", "--node", other.address, str(event_file), check=False)
    assert from_misp.returncode == 0, from_misp.stderr


async def test_taxii_client_pulls_incrementally(
    nodes: tuple[NodeProcess, str, NodeProcess],
) -> None:
    acme, taxii, _ = nodes
    publish(acme.address, "Before the first pull", "green", ["first-pull.example"])
    server = Server(f"http://{taxii}/taxii2/")
    root = server.api_roots[0]
    collection = root.collections[0]
    assert (collection.title, collection.can_read, collection.can_write) == (
        "alertmesh",
        True,
        False,
    )
    first = collection.get_objects()
    assert "first-pull.example" in json.dumps(first)
    assert "amber-only.example" not in json.dumps(first)
    latest = max(o["date_added"] for o in collection.get_manifest()["objects"])

    publish(acme.address, "After the first pull", "green", ["second-pull.example"])
    newer = collection.get_objects(added_after=latest)
    indicators_seen = [o for o in newer["objects"] if o["type"] == "indicator"]
    assert [o["name"] for o in indicators_seen] == ["After the first pull"]

    # Pages of one alert each walk the whole collection with `next`.
    pages, names, envelope = 0, [], collection.get_objects(limit=1)
    while True:
        pages += 1
        names += [o["name"] for o in envelope.get("objects", []) if o["type"] == "indicator"]
        if not envelope["more"]:
            break
        envelope = collection.get_objects(limit=1, next=envelope["next"])
    assert len(names) == len(set(names)) == pages >= 2
    assert "After the first pull" in names and "Partner-only lead" not in names

    # Hostile requests get an answer and leave the node serving: a cursor past any
    # store position, and a connection that sends half a request and goes.
    with pytest.raises(requests.HTTPError) as err:
        collection.get_objects(next=str(10**30))
    assert err.value.response.status_code == 400
    host, port = taxii.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as half:
        half.sendall(b"GET /taxii2/ HTT")
    assert "second-pull.example" in json.dumps(collection.get_objects())


class Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def connection(verify: str | bool, token: str | None) -> _HTTPConnection:
    """A TAXII connection that trusts `verify` only: requests would otherwise let
    REQUESTS_CA_BUNDLE from the environment override a session's CA file (and
    taxii2client opens API roots with sessions of their own, so each is built here)."""
    conn = _HTTPConnection(verify=verify, auth=Bearer(token) if token else None, version="2.1")
    conn.session.trust_env = False
    return conn


def test_taxii_over_tls_needs_the_pinned_certificate_and_a_token(tmp_path: Path) -> None:
    home = tmp_path / "secure"
    alertmesh("init", "--home", str(home), "--name", "secure")
    config = home / "config.toml"
    config.write_text(
        config.read_text()
        .replace("tls = false", "tls = true")
        .replace('auth = "none"', 'auth = "token"')
    )
    reader = alertmesh("token", "create", "--home", str(home), "--scope", "taxii").stdout.strip()
    writer = alertmesh("token", "create", "--home", str(home), "--scope", "publish")
    node, taxii = start(home, "secure", "--taxii-listen", "127.0.0.1:0", init=False)
    try:
        ca = str(home / "tls.crt")
        alertmesh(
            "publish", "--node", node.address, "--ca", ca, "--token", writer.stdout.strip(),
            "--category", "phishing", "--title", "Over TLS", "--indicator", "tls-pull.example",
        )  # fmt: skip
        base = f"https://localhost:{taxii.rpartition(':')[2]}"
        discovery = Server(f"{base}/taxii2/", conn=connection(ca, reader))
        assert discovery.api_roots[0].url == f"{base}/alertmesh/"
        collection = ApiRoot(f"{base}/alertmesh/", conn=connection(ca, reader)).collections[0]
        assert "tls-pull.example" in json.dumps(collection.get_objects())
        # A feed consumer's token reads nothing else.
        refused = alertmesh(
            "check", "--node", node.address, "--ca", ca, "--token", reader, "tls-pull.example",
            check=False,
        )  # fmt: skip
        assert refused.returncode == 2 and "scope" in refused.stderr, refused.stderr
        with pytest.raises(requests.HTTPError) as err:
            ApiRoot(f"{base}/alertmesh/", conn=connection(ca, None)).collections  # noqa: B018
        assert err.value.response.status_code == 401
        with pytest.raises(requests.exceptions.SSLError):  # the system's CAs do not know it
            Server(f"{base}/taxii2/", conn=connection(True, reader)).api_roots  # noqa: B018
        with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP
            Server(base.replace("https", "http") + "/taxii2/", conn=connection(ca, reader)).title  # noqa: B018
    finally:
        node.kill()
