"""MISP event JSON in and out (docs/interchange.md, "MISP").

Reading: an event as MISP's API or pymisp writes it (`{"Event": {...}}`, the bare event,
or a list of them). Attribute types map to indicator types (`MISP_TYPES`); event info
-> title, threat_level_id -> severity, tlp:* tags -> TLP, a tag naming a category ->
category. Attributes that MISP marks not for detection (to_ids false) and types with no
alertmesh counterpart are handed on as refused, with the reason.

Writing: one event holding every exported alert, one attribute per value; each attribute
carries its alert's id, category, severity, origin and TLP as tags, so reading the event
back yields the same alerts, not one merged alert.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core.alerts import CATEGORY_NAMES, SEVERITY_NAMES, name_of
from node.interchange.model import ImportedAlert, ImportedIndicator
from node.interchange.stix import InvalidFeed
from node.interchange.stix_map import ALERTMESH_NS
from node.interchange.tlp import TLP2_MARKINGS, strictest, tlp_name
from node.interchange.vocab import category_from_labels

Obj = dict[str, Any]

# MISP attribute type -> indicator type name. Composite types (`a|b`) give each part.
MISP_TYPES: dict[str, str] = {
    "domain": "domain",
    "hostname": "domain",
    "url": "url",
    "ip-dst": "ip",
    "ip-src": "ip",
    "email": "email",
    "email-src": "email",
    "email-dst": "email",
    "email-reply-to": "email",
    "btc": "address",
    "xmr": "address",
    "dash": "address",
}
COMPOSITE_TYPES: dict[str, tuple[str | None, str | None]] = {
    "domain|ip": ("domain", "ip"),
    "hostname|port": ("domain", None),
    "ip-dst|port": ("ip", None),
    "ip-src|port": ("ip", None),
}
# (object name, object relation) of a generic text attribute that holds a wallet.
WALLET_RELATIONS = {("coin-address", "address-crypto")}
# threat_level_id: 1 high, 2 medium, 3 low, 4 undefined.
SEVERITY_OF_THREAT_LEVEL = {"1": "high", "2": "medium", "3": "low"}
THREAT_LEVEL_OF_SEVERITY = {
    alert_pb2.SEVERITY_CRITICAL: 1,
    alert_pb2.SEVERITY_HIGH: 1,
    alert_pb2.SEVERITY_MEDIUM: 2,
    alert_pb2.SEVERITY_LOW: 3,
    alert_pb2.SEVERITY_INFO: 3,
}
BITCOIN = "bip122:000000000019d6689c085ae165831e93:"
ALERT_TAG = "alertmesh:alert-id"


# -- reading -----------------------------------------------------------------------


def read_misp(text: str) -> list[ImportedAlert]:
    """Alerts to publish from MISP event JSON (values unchecked: the pipeline checks)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidFeed(f"not JSON: {exc}") from exc
    if isinstance(doc, dict) and isinstance(doc.get("response"), list):
        doc = doc["response"]  # what MISP's restSearch returns
    events = doc if isinstance(doc, list) else [doc]
    alerts: list[ImportedAlert] = []
    for item in events:
        event = item.get("Event", item) if isinstance(item, dict) else None
        if not isinstance(event, dict) or not ("Attribute" in event or "info" in event):
            raise InvalidFeed("not a MISP event: no Event, Attribute or info")
        alerts += _event(event)
    return alerts


def _tags(obj: Obj) -> list[str]:
    tags = obj.get("Tag", [])
    if not isinstance(tags, list):
        return []
    return [str(t["name"]) for t in tags if isinstance(t, dict) and "name" in t]


def _tag_value(tags: list[str], predicate: str) -> str | None:
    for tag in tags:
        key, sep, value = tag.partition("=")
        if sep and key == predicate:
            return value.strip('"')
    return None


def _event(event: Obj) -> list[ImportedAlert]:
    tags = _tags(event)
    where = f"event {event.get('uuid', '')}".strip()
    base = ImportedAlert(
        title=event.get("info") if isinstance(event.get("info"), str) else None,
        category=category_from_labels(tags),
        severity=SEVERITY_OF_THREAT_LEVEL.get(str(event.get("threat_level_id", ""))),
        tlp=strictest([n for t in tags if t.startswith("tlp:") and (n := tlp_name(t))]),
        source_id=event.get("uuid") if isinstance(event.get("uuid"), str) else None,
    )
    # Attributes our writer tagged with an alert id go back into that alert.
    by_alert: dict[str, ImportedAlert] = {}
    plain: list[ImportedIndicator] = []
    attributes: list[tuple[Obj, str | None]] = [
        (a, None) for a in event.get("Attribute", []) if isinstance(a, dict)
    ]
    for obj in event.get("Object", []):
        if isinstance(obj, dict) and not obj.get("deleted"):
            name = str(obj.get("name", ""))
            attributes += [(a, name) for a in obj.get("Attribute", []) if isinstance(a, dict)]
    for attribute, object_name in attributes:
        if attribute.get("deleted"):
            continue
        found = _values(attribute, object_name, where)
        attribute_tags = _tags(attribute)
        alert_id = _tag_value(attribute_tags, ALERT_TAG)
        if alert_id is None:
            plain += found
            continue
        alert = by_alert.get(alert_id)
        if alert is None:
            alert = by_alert[alert_id] = _tagged_alert(base, attribute, attribute_tags, alert_id)
        alert.indicators += found
    alerts = list(by_alert.values())
    if plain:
        base.indicators = plain
        alerts.insert(0, base)
    return alerts


def _tagged_alert(base: ImportedAlert, attribute: Obj, tags: list[str], alert_id: str) -> Any:
    severity = _tag_value(tags, "alertmesh:severity")
    confidence = _tag_value(tags, "alertmesh:confidence")
    comment = attribute.get("comment")
    return ImportedAlert(
        title=comment if isinstance(comment, str) and comment else base.title,
        category=category_from_labels(tags) or base.category,
        severity=severity if severity in SEVERITY_NAMES else base.severity,
        confidence=int(confidence) if confidence and confidence.isdigit() else None,
        tlp=strictest([n for t in tags if t.startswith("tlp:") and (n := tlp_name(t))]) or base.tlp,
        source_id=alert_id,
    )


def _values(attribute: Obj, object_name: str | None, where: str) -> list[ImportedIndicator]:
    kind = str(attribute.get("type", ""))
    value = str(attribute.get("value", ""))
    where = f"{where} attribute {attribute.get('uuid', kind)}"
    if (object_name, attribute.get("object_relation")) in WALLET_RELATIONS:
        # A generic text attribute, never to_ids by MISP's defaults: the object says what it is.
        return [ImportedIndicator(value, "address", where)]
    if _false(attribute.get("to_ids", True)):
        return [ImportedIndicator(value, None, where, "to_ids is false: not for detection")]
    if kind in MISP_TYPES:
        return [ImportedIndicator(value, MISP_TYPES[kind], where)]
    if kind in COMPOSITE_TYPES:
        parts = value.split("|")
        hints = COMPOSITE_TYPES[kind]
        return [ImportedIndicator(p, h, where) for p, h in zip(parts, hints, strict=False) if h]
    reason = f"MISP type {kind!r} has no alertmesh indicator type"
    return [ImportedIndicator(value, None, where, reason)]


def _false(flag: object) -> bool:
    return flag is False or str(flag).lower() in ("0", "false")


# -- writing -----------------------------------------------------------------------


def _attribute(ind: alert_pb2.Indicator) -> tuple[str, str, str] | None:
    """(MISP type, MISP category, value) of an indicator; None if MISP gets it as an object."""
    value = ind.value
    if ind.type == alert_pb2.INDICATOR_TYPE_DOMAIN:
        return "domain", "Network activity", value
    if ind.type == alert_pb2.INDICATOR_TYPE_URL:
        return "url", "Network activity", value
    if ind.type == alert_pb2.INDICATOR_TYPE_IP:
        return "ip-dst", "Network activity", value
    if ind.type == alert_pb2.INDICATOR_TYPE_EMAIL:
        return "email-src", "Payload delivery", value
    if ind.type == alert_pb2.INDICATOR_TYPE_ADDRESS:
        bare = value.removeprefix(BITCOIN)
        if ":" not in bare and bare[:1] in ("1", "3", "b"):
            return "btc", "Financial fraud", bare
    return None


def _uuid(kind: str, key: str) -> str:
    return str(uuid.uuid5(ALERTMESH_NS, f"misp-{kind}:{key}"))


def misp_event(alerts: Sequence[api.StoredAlert], *, node_name: str = "") -> Obj:
    """One MISP event with every alert's values; the same alerts give the same event."""
    ordered = sorted(alerts, key=lambda s: s.id)
    digest = hashlib.sha256(b"".join(s.id for s in ordered)).hexdigest()
    newest = max((s.alert.created_at_ms for s in ordered), default=0)
    severities = [THREAT_LEVEL_OF_SEVERITY.get(s.alert.severity, 4) for s in ordered]
    tlps = [
        TLP2_MARKINGS[s.alert.tlp][0] if s.alert.tlp in TLP2_MARKINGS else "amber" for s in ordered
    ]
    attributes: list[Obj] = []
    objects: list[Obj] = []
    for stored, tlp in zip(ordered, tlps, strict=True):
        a = stored.alert
        tags = [
            f"tlp:{tlp}",
            f'{ALERT_TAG}="{stored.id.hex()}"',
            f'alertmesh:category="{name_of(CATEGORY_NAMES, a.category)}"',
            f'alertmesh:severity="{name_of(SEVERITY_NAMES, a.severity)}"',
            f'alertmesh:confidence="{a.confidence}"',
            f'alertmesh:origin="{stored.origin_name or a.origin.hex()}"',
        ]
        common: Obj = {
            "to_ids": True,
            "comment": a.title,
            "timestamp": str(a.created_at_ms // 1000),
            "distribution": "5",  # inherit the event's
            "Tag": [{"name": t} for t in tags],
        }
        for ind in a.indicators:
            key = f"{stored.id.hex()}:{ind.type}:{ind.value}"
            mapped = _attribute(ind)
            if mapped:
                kind, category, value = mapped
                attributes.append(
                    {
                        "uuid": _uuid("attribute", key),
                        "type": kind,
                        "category": category,
                        "value": value,
                        **common,
                    }
                )
            elif ind.type == alert_pb2.INDICATOR_TYPE_ADDRESS:
                objects.append(
                    {
                        "uuid": _uuid("object", key),
                        "name": "coin-address",
                        "meta-category": "financial",
                        "description": "An address used in a cryptocurrency",
                        "timestamp": common["timestamp"],
                        "distribution": "5",
                        "Attribute": [
                            {
                                "uuid": _uuid("attribute", key),
                                "type": "text",
                                "category": "Financial fraud",
                                "object_relation": "address-crypto",
                                "value": ind.value,
                                **common,
                            }
                        ],
                    }
                )
    event: Obj = {
        "uuid": _uuid("event", digest),
        "info": ordered[0].alert.title
        if len(ordered) == 1
        else f"alertmesh export{f' from {node_name}' if node_name else ''}: {len(ordered)} alerts",
        "date": _date(newest),
        "timestamp": str(newest // 1000),
        "threat_level_id": str(min(severities, default=4)),
        "analysis": "2",
        "distribution": "0",  # this organisation only: the MISP operator widens it
        "published": False,
        "Tag": [{"name": f"tlp:{strictest(tlps) or 'clear'}"}],
        "Attribute": attributes,
        "Object": objects,
    }
    return {"Event": event}


def _date(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).date().isoformat()
