"""STIX 2.1 and MISP, read and written, checked with the tools members run:
inputs are built with the OASIS stix2 library and pymisp, outputs are checked with
stix2-validator and loaded by pymisp. No node process: the formats alone."""

from __future__ import annotations

import json

import pytest
import stix2
from pymisp import MISPEvent
from stix2validator import ValidationOptions, validate_instance

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.interchange.export import csv_rows, render, select
from node.interchange.misp import misp_event, read_misp
from node.interchange.stix import InvalidFeed, read_stix
from node.interchange.stix_write import indicator_id, stix_bundle
from node.interchange.tlp import TLP1_MARKINGS, TLP2_MARKINGS

ORIGIN = bytes(range(32))
EVM = "eip155:1:0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
BTC = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
CREATED = 1_700_000_000_123


def ind(kind: int, value: str) -> alert_pb2.Indicator:
    return alert_pb2.Indicator(type=kind, value=value)  # type: ignore[arg-type]


def stored(n: int, tlp: int = alert_pb2.TLP_GREEN, **kw: object) -> api.StoredAlert:
    fields: dict[str, object] = {
        "origin": ORIGIN,
        "seq": n,
        "created_at_ms": CREATED + n,
        "category": alert_pb2.CATEGORY_PHISHING,
        "severity": alert_pb2.SEVERITY_HIGH,
        "confidence": 80,
        "title": f"Fake airdrop #{n}",
        "tlp": tlp,
        "indicators": [
            ind(alert_pb2.INDICATOR_TYPE_DOMAIN, f"claim-{n}.example"),
            ind(alert_pb2.INDICATOR_TYPE_URL, f"https://claim-{n}.example/it's"),
            ind(alert_pb2.INDICATOR_TYPE_IP, "203.0.113.7"),
            ind(alert_pb2.INDICATOR_TYPE_IP, "2001:db8::7"),
            ind(alert_pb2.INDICATOR_TYPE_EMAIL, "support@claim.example"),
            ind(alert_pb2.INDICATOR_TYPE_ADDRESS, EVM),
            ind(alert_pb2.INDICATOR_TYPE_ADDRESS, BTC),
            ind(alert_pb2.INDICATOR_TYPE_TX, "eip155:1:0x" + "ab" * 32),
        ],
        "references": ["https://example.org/report"],
    }
    fields.update(kw)
    return api.StoredAlert(
        id=bytes([n]) * 32,
        alert=alert_pb2.Alert(**fields),
        origin_name="acme",  # type: ignore[arg-type]
    )


def valid_stix(doc: dict[str, object]) -> None:
    results = validate_instance(doc, ValidationOptions(version="2.1"))
    errors = [
        str(e)
        for r in [results, *getattr(results, "object_results", [])]
        for e in getattr(r, "errors", [])
    ]
    assert results.is_valid, errors


def test_tlp_ids_are_the_official_ones() -> None:
    # STIX 2.1's own TLP 1.0 definitions, as the OASIS library ships them.
    assert TLP1_MARKINGS[stix2.TLP_WHITE.id] == "clear"
    assert TLP1_MARKINGS[stix2.TLP_GREEN.id] == "green"
    assert TLP1_MARKINGS[stix2.TLP_AMBER.id] == "amber"
    assert TLP1_MARKINGS[stix2.TLP_RED.id] == "red"
    assert TLP2_MARKINGS[alert_pb2.TLP_CLEAR][1].endswith("94868c89-83c2-464b-929b-a1a8aa3c8487")


def test_exported_bundle_validates_and_reads_back_as_the_same_alerts() -> None:
    sighting = stored(
        3,
        indicators=[],
        links=[alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_SIGHTING, alert_id=bytes([1]) * 32)],
    )
    alerts = [stored(1), stored(2, tlp=alert_pb2.TLP_CLEAR), sighting]
    bundle = stix_bundle(alerts)
    valid_stix(bundle)
    by_type: dict[str, list[dict[str, object]]] = {}
    for obj in bundle["objects"]:
        by_type.setdefault(obj["type"], []).append(obj)
    assert {m["id"] for m in by_type["marking-definition"]} == {
        TLP2_MARKINGS[alert_pb2.TLP_GREEN][1],
        TLP2_MARKINGS[alert_pb2.TLP_CLEAR][1],
    }
    assert [s["sighting_of_ref"] for s in by_type["sighting"]] == [indicator_id(bytes([1]) * 32)]
    assert {o["value"] for o in by_type["x-alertmesh-wallet"]} == {EVM, BTC}
    assert "ipv6-addr" in by_type and "email-addr" in by_type
    # Stable: the same alerts give the same bundle, ids included.
    assert stix_bundle(list(reversed(alerts))) == bundle
    # And the stix2 library parses it.
    stix2.parse(json.dumps(bundle), allow_custom=True)

    read = read_stix(json.dumps(bundle))
    first = next(a for a in read if a.source_id == (bytes([1]) * 32).hex())
    assert {(i.type_hint, i.value) for i in first.indicators} == {
        ("domain", "claim-1.example"),
        ("url", "https://claim-1.example/it's"),
        ("ip", "203.0.113.7"),
        ("ip", "2001:db8::7"),
        ("email", "support@claim.example"),
        ("address", EVM),
        ("address", BTC),
        ("tx", "eip155:1:0x" + "ab" * 32),
    }
    assert (first.category, first.severity, first.tlp, first.confidence) == (
        "phishing",
        "high",
        "green",
        80,
    )
    assert first.title == "Fake airdrop #1"
    assert first.references == ["https://example.org/report"]
    assert len(read) == 2  # observables are all named by indicators: no extra alert


def test_bundle_built_with_the_stix2_library_is_read() -> None:
    indicator = stix2.Indicator(
        name="Wallet drainer",
        description="Drainer kit",
        pattern="[domain-name:value = 'drain.example'] OR [url:value = 'https://drain.example/x']"
        " OR [file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
        pattern_type="stix",
        valid_from="2024-01-01T00:00:00Z",
        labels=["phishing"],
        confidence=70,
        object_marking_refs=[stix2.TLP_AMBER],
    )
    in_set = stix2.Indicator(
        pattern="[ipv4-addr:value IN ('198.51.100.1', '198.51.100.2')]",
        pattern_type="stix",
        valid_from="2024-01-01T00:00:00Z",
    )
    other = stix2.Indicator(
        pattern="rule x {}", pattern_type="yara", valid_from="2024-01-01T00:00:00Z"
    )
    observables = [
        stix2.DomainName(value="loose.example"),
        stix2.EmailAddress(value="a@b.example"),
        stix2.IPv6Address(value="2001:db8::1"),
    ]
    bundle = stix2.Bundle(indicator, in_set, other, *observables, stix2.TLP_AMBER)
    alerts = read_stix(bundle.serialize())
    first, second, third, loose = alerts
    assert [(i.type_hint, i.value) for i in first.indicators if not i.refused] == [
        ("domain", "drain.example"),
        ("url", "https://drain.example/x"),
    ]
    refused = [i for i in first.indicators if i.refused]
    assert len(refused) == 1 and "file:hashes.MD5" in refused[0].refused  # type: ignore[operator]
    assert (first.title, first.category, first.tlp, first.confidence) == (
        "Wallet drainer",
        "phishing",
        "amber",
        70,
    )
    assert [i.value for i in second.indicators] == ["198.51.100.1", "198.51.100.2"]
    assert third.indicators[0].refused and "yara" in third.indicators[0].refused
    assert {(i.type_hint, i.value) for i in loose.indicators} == {
        ("domain", "loose.example"),
        ("email", "a@b.example"),
        ("ip", "2001:db8::1"),
    }


def test_tlp2_marking_defined_in_the_bundle_is_read() -> None:
    bundle = stix_bundle([stored(1, tlp=alert_pb2.TLP_AMBER_STRICT)])
    assert read_stix(json.dumps(bundle))[0].tlp == "amber+strict"


def test_not_stix_is_one_clear_error() -> None:
    with pytest.raises(InvalidFeed):
        read_stix("domain.example\n")


def test_event_built_with_pymisp_is_read() -> None:
    event = MISPEvent()
    event.info = "Phishing campaign against exchange users"
    event.threat_level_id = 1
    event.add_tag("tlp:amber")
    event.add_tag('rsit:fraud="phishing"')
    event.add_attribute("domain", "login-exchange.example")
    event.add_attribute("hostname", "www.login-exchange.example")
    event.add_attribute("url", "https://login-exchange.example/verify")
    event.add_attribute("ip-dst", "198.51.100.9")
    event.add_attribute("email-src", "security@login-exchange.example")
    event.add_attribute("btc", BTC)
    event.add_attribute("domain|ip", "pair.example|198.51.100.10")
    event.add_attribute("md5", "d41d8cd98f00b204e9800998ecf8427e")
    event.add_attribute("domain", "benign-context.example", to_ids=False)
    coin = event.add_object(name="coin-address")
    coin.add_attribute("address-crypto", value=EVM)
    alerts = read_misp(event.to_json())
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.title, alert.severity, alert.tlp, alert.category) == (
        "Phishing campaign against exchange users",
        "high",
        "amber",
        "phishing",
    )
    taken = [(i.type_hint, i.value) for i in alert.indicators if not i.refused]
    assert taken == [
        ("domain", "login-exchange.example"),
        ("domain", "www.login-exchange.example"),
        ("url", "https://login-exchange.example/verify"),
        ("ip", "198.51.100.9"),
        ("email", "security@login-exchange.example"),
        ("address", BTC),
        ("domain", "pair.example"),
        ("ip", "198.51.100.10"),
        ("address", EVM),
    ]
    reasons = {i.value: i.refused for i in alert.indicators if i.refused}
    assert "md5" in reasons["d41d8cd98f00b204e9800998ecf8427e"]  # type: ignore[operator]
    assert "to_ids" in reasons["benign-context.example"]  # type: ignore[operator]
    # The {"Event": ...} wrapper, as MISP's API returns it, reads the same.
    assert read_misp(json.dumps({"Event": json.loads(event.to_json())})) == alerts


def test_exported_event_loads_in_pymisp_and_reads_back_per_alert() -> None:
    alerts = [stored(1), stored(2, tlp=alert_pb2.TLP_CLEAR, severity=alert_pb2.SEVERITY_LOW)]
    doc = misp_event(alerts, node_name="acme")
    event = MISPEvent()
    event.load(json.dumps(doc))
    assert event.info == "alertmesh export from acme: 2 alerts"
    assert int(event.threat_level_id) == 1
    assert {a.type for a in event.attributes} == {"domain", "url", "ip-dst", "email-src", "btc"}
    assert [o.name for o in event.objects] == ["coin-address", "coin-address"]
    assert misp_event(list(reversed(alerts)), node_name="acme") == doc
    read = {a.source_id: a for a in read_misp(json.dumps(doc))}
    second = read[(bytes([2]) * 32).hex()]
    assert (second.title, second.severity, second.tlp, second.category, second.confidence) == (
        "Fake airdrop #2",
        "low",
        "clear",
        "phishing",
        80,
    )
    assert {i.value for i in second.indicators} == {
        "claim-2.example",
        "https://claim-2.example/it's",
        "203.0.113.7",
        "2001:db8::7",
        "support@claim.example",
        BTC,
        EVM,
    }


def test_tlp_rules_choose_what_leaves() -> None:
    alerts = [
        stored(n, tlp=t)
        for n, t in enumerate(
            (
                alert_pb2.TLP_CLEAR,
                alert_pb2.TLP_GREEN,
                alert_pb2.TLP_AMBER,
                alert_pb2.TLP_AMBER_STRICT,
                alert_pb2.TLP_RED,
                alert_pb2.TLP_UNSPECIFIED,
            ),
            start=1,
        )
    ]
    default = select(alerts, include_amber=False)
    assert [s.alert.tlp for s in default.alerts] == [alert_pb2.TLP_CLEAR, alert_pb2.TLP_GREEN]
    assert default.withheld == {"amber": 1, "amber+strict": 1, "red": 1, "unmarked": 1}
    amber = select(alerts, include_amber=True)
    assert alert_pb2.TLP_RED not in [s.alert.tlp for s in amber.alerts]
    assert len(amber.alerts) == 5
    valid_stix(json.loads(render("stix", amber.alerts)))


def test_retracted_alerts_are_not_exported() -> None:
    retraction = stored(
        9,
        indicators=[],
        links=[alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_RETRACTION, alert_id=bytes([1]) * 32)],
    )
    chosen = select([stored(1), stored(2), retraction], include_amber=False)
    assert [s.id for s in chosen.alerts] == [bytes([2]) * 32]
    # Another member's "retraction" of alert 1 hides nothing.
    other = stored(
        9,
        origin=bytes([7]) * 32,
        indicators=[],
        links=[alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_RETRACTION, alert_id=bytes([1]) * 32)],
    )
    other.origin_name = "mallory"
    chosen = select([stored(1), stored(2), other], include_amber=False)
    assert [s.id for s in chosen.alerts] == [bytes([1]) * 32, bytes([2]) * 32]


def test_csv_has_one_row_per_indicator() -> None:
    rows = csv_rows([stored(1)]).splitlines()
    assert rows[0] == "alert_id,origin,category,severity,tlp,title,type,value,created"
    assert len(rows) == 1 + 8
    assert rows[1].startswith(
        f"{(bytes([1]) * 32).hex()},acme,phishing,high,green,Fake airdrop #1,"
    )


async def test_taxii_server_refuses_without_a_token_and_stops_cleanly() -> None:
    import asyncio

    from node.core.errors import Unauthenticated
    from node.interchange.taxii import TaxiiServer

    def authorize(header: str | None) -> None:
        if header != "Bearer good":
            raise Unauthenticated("this node does not know that token")

    async def page(cursor: int, limit: int) -> list[api.StoredAlert]:
        return [s for s in [stored(1), stored(2)] if int(s.cursor or 0) > cursor][:limit]

    server = TaxiiServer(page, authorize=authorize)
    address = await server.start("127.0.0.1", 0)
    task = asyncio.create_task(server.serve())

    async def get(path: str, token: str | None) -> tuple[str, str]:
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
        raw = (await reader.read()).decode()
        writer.close()
        head, _, body = raw.partition("\r\n\r\n")
        return head.splitlines()[0], body

    status, _ = await get("/taxii2/", None)
    assert status.startswith("HTTP/1.1 401")
    status, body = await get("/taxii2/", "good")
    assert status.startswith("HTTP/1.1 200") and json.loads(body)["api_roots"] == ["/alertmesh/"]
    status, _ = await get("/nowhere/", "good")
    assert status.startswith("HTTP/1.1 404")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "bundle", "id": "bundle--1", "objects": [{"type": "indicator",'
        ' "extensions": "x", "pattern": "[domain-name:value = \'a.example\']"}]}',
        '{"type": "bundle", "id": "bundle--1", "objects": [{"type": "marking-definition",'
        ' "extensions": [1]}]}',
        '{"type": "bundle", "objects": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"Event": {"Attribute": "x", "Object": [1]}}',
    ],
    ids=["extensions-string", "extensions-list", "deep", "misp-shapes"],
)
def test_hostile_feeds_are_refused_in_one_line(text: str) -> None:
    from node.interchange.importer import ImportFailed, read_alerts

    try:
        read_alerts(text, None)
    except ImportFailed as exc:
        assert "\n" not in str(exc)
