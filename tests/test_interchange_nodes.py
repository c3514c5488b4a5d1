"""Interchange on real nodes: `alertmesh export` in three formats under the TLP rules, a
round trip STIX export -> another member's node, and the TAXII 2.1 collection pulled
incrementally with taxii2-client."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymisp import MISPEvent
from stix2validator import ValidationOptions, validate_instance
from taxii2client.v21 import Server

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


def start(home: Path, name: str, *extra: str) -> tuple[NodeProcess, str]:
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
