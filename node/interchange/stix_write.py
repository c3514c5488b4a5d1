"""Stored alerts -> a STIX 2.1 bundle (docs/interchange.md, "STIX 2.1").

One alert becomes one `indicator` whose pattern ORs the alert's values, one observable
per value, an `identity` for its origin (the member), a `sighting` per sighting link,
and the official TLP 2.0 marking. Every id is derived from the alert id, so exporting
the same alerts again yields the same objects. The caller has already applied the TLP
rules (tlp.exportable): this module writes what it is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core.alerts import CATEGORY_NAMES, SEVERITY_NAMES, name_of
from node.interchange.stix_map import (
    EXTENSION_CREATED,
    EXTENSION_ID,
    SPEC,
    TRANSACTION,
    WALLET,
    extension_objects,
    object_id,
    observable_id,
    observable_type,
    pattern_literal,
)
from node.interchange.tlp import marking_definition

Obj = dict[str, Any]
_CUSTOM = (WALLET, TRANSACTION)
_TLP_ORDER: tuple[int, ...] = (
    alert_pb2.TLP_CLEAR,
    alert_pb2.TLP_GREEN,
    alert_pb2.TLP_AMBER,
    alert_pb2.TLP_AMBER_STRICT,
    alert_pb2.TLP_RED,
)
_TLP_RANK: dict[int, int] = {t: rank for rank, t in enumerate(_TLP_ORDER)}


def timestamp(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds, as STIX writes times."""
    when = datetime.fromtimestamp(ms // 1000, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def identity_object(origin: bytes, name: str) -> Obj:
    """The member that authored alerts (created and modified fixed: ids stay stable)."""
    return {
        "type": "identity",
        "spec_version": SPEC,
        "id": object_id("identity", origin.hex()),
        "created": EXTENSION_CREATED,
        "modified": EXTENSION_CREATED,
        "name": name or f"alertmesh member {origin.hex()[:16]}",
        "description": f"alertmesh member, Ed25519 public key {origin.hex()}",
        "identity_class": "organization",
    }


def indicator_id(alert_id: bytes) -> str:
    return object_id("indicator", alert_id.hex())


def _tlp_of(alert: alert_pb2.Alert) -> int:
    # Unmarked alerts are only exported on --include-amber; they carry AMBER out.
    return int(alert.tlp) if alert.tlp in _TLP_RANK else alert_pb2.TLP_AMBER


def alert_objects(stored: api.StoredAlert) -> list[Obj]:
    """The indicator and sightings of one alert (observables, identities, markings apart)."""
    a = stored.alert
    created = timestamp(a.created_at_ms)
    author = object_id("identity", a.origin.hex())
    marking = [marking_definition(_tlp_of(a))["id"]]
    refs: list[Obj] = [{"source_name": "alertmesh", "external_id": stored.id.hex()}]
    refs += [{"source_name": "reference", "url": url} for url in a.references]
    out: list[Obj] = []
    comparisons = []
    for ind in a.indicators:
        kind = observable_type(ind)
        if kind:
            comparisons.append(f"[{kind}:value = {pattern_literal(ind.value)}]")
    if comparisons:
        indicator: Obj = {
            "type": "indicator",
            "spec_version": SPEC,
            "id": indicator_id(stored.id),
            "created_by_ref": author,
            "created": created,
            "modified": created,
            "name": a.title,
            "description": a.description or a.title,
            "indicator_types": ["malicious-activity"],
            "labels": [name_of(CATEGORY_NAMES, a.category)],
            "confidence": a.confidence,
            "pattern": " OR ".join(comparisons),
            "pattern_type": "stix",
            "pattern_version": SPEC,
            "valid_from": created,
            "external_references": refs,
            "object_marking_refs": marking,
            "extensions": {
                EXTENSION_ID: {
                    "extension_type": "property-extension",
                    "severity": name_of(SEVERITY_NAMES, a.severity),
                }
            },
        }
        if a.expires_at_ms > a.created_at_ms:
            indicator["valid_until"] = timestamp(a.expires_at_ms)
        out.append(indicator)
    for link in a.links:
        if link.kind != alert_pb2.LINK_KIND_SIGHTING:
            continue
        out.append(
            {
                "type": "sighting",
                "spec_version": SPEC,
                "id": object_id("sighting", f"{stored.id.hex()}:{link.alert_id.hex()}"),
                "created_by_ref": author,
                "created": created,
                "modified": created,
                "description": a.title,
                "first_seen": created,
                "last_seen": created,
                "count": 1,
                "sighting_of_ref": indicator_id(link.alert_id),
                "where_sighted_refs": [author],
                "confidence": a.confidence,
                "external_references": refs,
                "object_marking_refs": marking,
            }
        )
    return out


def observable_objects(alerts: Iterable[api.StoredAlert]) -> list[Obj]:
    """One observable per distinct value, marked as strictly as the strictest alert naming it."""
    found: dict[str, tuple[str, str, int]] = {}
    for stored in alerts:
        tlp = _tlp_of(stored.alert)
        for ind in stored.alert.indicators:
            kind = observable_type(ind)
            if not kind:
                continue
            oid = observable_id(kind, ind.value)
            held = found.get(oid)
            if held is None or _TLP_RANK[tlp] > _TLP_RANK[held[2]]:
                found[oid] = (kind, ind.value, tlp)
    out = []
    for oid, (kind, value, tlp) in sorted(found.items()):
        obj: Obj = {"type": kind, "spec_version": SPEC, "id": oid, "value": value}
        if kind in _CUSTOM:
            obj["extensions"] = {EXTENSION_ID: {"extension_type": "new-sco"}}
        obj["object_marking_refs"] = [marking_definition(tlp)["id"]]
        out.append(obj)
    return out


def support_objects(alerts: Sequence[api.StoredAlert]) -> list[Obj]:
    """Markings, the alertmesh extension and the members' identities these alerts need."""
    tlps = sorted({_tlp_of(s.alert) for s in alerts}, key=_TLP_RANK.__getitem__)
    origins = {s.alert.origin: s.origin_name for s in alerts}
    return [
        *(marking_definition(t) for t in tlps),
        *extension_objects(),
        *(identity_object(o, name) for o, name in sorted(origins.items())),
    ]


def stix_bundle(alerts: Sequence[api.StoredAlert]) -> Obj:
    """A STIX 2.1 bundle of these alerts; the same alerts always give the same bundle."""
    objects = [*support_objects(alerts), *observable_objects(alerts)]
    for stored in sorted(alerts, key=lambda s: s.id):
        objects += alert_objects(stored)
    digest = hashlib.sha256(b"".join(sorted(s.id for s in alerts))).hexdigest()
    return {"type": "bundle", "id": object_id("bundle", digest), "objects": objects}
