"""How alertmesh's indicator types map onto STIX 2.1 observables, and the ids we mint.

Shared by the reader (stix.py) and the writer (stix_write.py), so that what one writes
the other reads back.

Wallets and transactions have no STIX 2.1 observable, so alertmesh defines two custom
cyber-observable types the STIX 2.1 way (section 7.3, a `new-sco` extension): an
`extension-definition` object, written once per bundle, that both custom types and
the indicator's severity property extension point to.

  x-alertmesh-wallet       value: the account as stored (CAIP-10 `CHAIN:ACCOUNT`, or a
                           bare account such as `bc1q…` or `0x…`)
  x-alertmesh-transaction  value: `CHAIN:TXHASH` as stored
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from node._pb.alertmesh.v1 import alert_pb2

SPEC = "2.1"

# Our namespace for the ids of objects made from alerts: uuid5(ALERTMESH_NS, "kind:key").
# Fixed forever: re-exporting an alert yields the same ids, so consumers update, not duplicate.
ALERTMESH_NS = uuid.UUID("7d1c9a4e-4f3b-5b8e-9a51-2f6c0e8b1a77")
# STIX 2.1's namespace for deterministic cyber-observable ids (section 2.9).
SCO_NS = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")

WALLET = "x-alertmesh-wallet"
TRANSACTION = "x-alertmesh-transaction"

# Indicator type -> STIX observable type (the property is always `value`). An IP's
# type depends on its family, decided by `observable_type`.
OBSERVABLE_OF_TYPE: dict[int, str] = {
    alert_pb2.INDICATOR_TYPE_DOMAIN: "domain-name",
    alert_pb2.INDICATOR_TYPE_URL: "url",
    alert_pb2.INDICATOR_TYPE_IP: "ipv4-addr",
    alert_pb2.INDICATOR_TYPE_EMAIL: "email-addr",
    alert_pb2.INDICATOR_TYPE_ADDRESS: WALLET,
    alert_pb2.INDICATOR_TYPE_TX: TRANSACTION,
}

# STIX observable type -> the indicator type name the import pipeline takes as a hint.
TYPE_OF_OBSERVABLE: dict[str, str] = {
    "domain-name": "domain",
    "url": "url",
    "ipv4-addr": "ip",
    "ipv6-addr": "ip",
    "email-addr": "email",
    WALLET: "address",
    TRANSACTION: "tx",
}


def observable_type(indicator: alert_pb2.Indicator) -> str | None:
    """The STIX observable type of an indicator, or None when STIX has none (handle, other)."""
    kind = OBSERVABLE_OF_TYPE.get(indicator.type)
    if kind == "ipv4-addr" and ":" in indicator.value:
        return "ipv6-addr"
    return kind


def object_id(kind: str, key: str) -> str:
    """A deterministic id for an object alertmesh derives from `key` (an alert id, a key)."""
    return f"{kind}--{uuid.uuid5(ALERTMESH_NS, f'{kind}:{key}')}"


def observable_id(kind: str, value: str) -> str:
    """STIX 2.1's deterministic observable id: UUIDv5 over the id-contributing `value`."""
    canonical = json.dumps({"value": value}, sort_keys=True, separators=(",", ":"))
    return f"{kind}--{uuid.uuid5(SCO_NS, canonical)}"


def pattern_literal(value: str) -> str:
    """A STIX pattern string literal: quotes and backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# The extension that defines the custom observables and the severity property.
EXTENSION_ID = object_id("extension-definition", "alertmesh/v1")
PUBLISHER_ID = object_id("identity", "alertmesh")
EXTENSION_CREATED = "2025-01-01T00:00:00.000Z"
EXTENSION_SCHEMA = (
    "alertmesh interchange (docs/interchange.md). New observables: x-alertmesh-wallet "
    "{value: a blockchain account, CAIP-10 CHAIN:ACCOUNT or a bare account} and "
    "x-alertmesh-transaction {value: CHAIN:TXHASH}; id-contributing property: value. "
    "Property extension on indicator: severity, one of info, low, medium, high, critical."
)


def extension_objects() -> list[dict[str, Any]]:
    """The extension-definition and the identity that publishes it (fixed content)."""
    return [
        {
            "type": "identity",
            "spec_version": SPEC,
            "id": PUBLISHER_ID,
            "created": EXTENSION_CREATED,
            "modified": EXTENSION_CREATED,
            "name": "alertmesh",
            "description": "The alertmesh project, publisher of the alertmesh STIX extension.",
            "identity_class": "system",
        },
        {
            "type": "extension-definition",
            "spec_version": SPEC,
            "id": EXTENSION_ID,
            "created_by_ref": PUBLISHER_ID,
            "created": EXTENSION_CREATED,
            "modified": EXTENSION_CREATED,
            "name": "alertmesh",
            "description": "Blockchain wallets and transactions as observables; alert severity.",
            "schema": EXTENSION_SCHEMA,
            "version": "1.0.0",
            "extension_types": ["new-sco", "property-extension"],
        },
    ]
