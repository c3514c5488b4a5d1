"""TLP 2.0 as the interchange formats spell it, and what may leave the member.

The STIX marking definitions are the official ones of the OASIS TLP 2.0 extension
(extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d, in
oasis-open/cti-stix-common-objects, extension-definition-specifications/tlp-2.0):
fixed ids, fixed `created`, so every producer emits byte-identical objects.
"""

from __future__ import annotations

from typing import Any

from node._pb.alertmesh.v1 import alert_pb2
from node.core.tlp import exportable as exportable  # decided once, there

TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2_CREATED = "2022-10-01T00:00:00.000Z"

# Tlp enum value -> (name as the CLI spells it, official STIX marking-definition id).
TLP2_MARKINGS: dict[int, tuple[str, str]] = {
    alert_pb2.TLP_CLEAR: ("clear", "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"),
    alert_pb2.TLP_GREEN: ("green", "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"),
    alert_pb2.TLP_AMBER: ("amber", "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"),
    alert_pb2.TLP_AMBER_STRICT: (
        "amber+strict",
        "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    ),
    alert_pb2.TLP_RED: ("red", "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"),
}

# The TLP 1.0 markings of STIX 2.1 itself (section 7.2.1.4), still common in feeds:
# WHITE is read as CLEAR.
TLP1_MARKINGS: dict[str, str] = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "clear",
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "green",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "amber",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "red",
}

NAME_BY_MARKING: dict[str, str] = {
    **TLP1_MARKINGS,
    **{marking: name for name, marking in TLP2_MARKINGS.values()},
}
TLP_NAMES = ("clear", "green", "amber", "amber+strict", "red")

# Most permissive first: a bundle carrying several markings is as strict as the strictest.
_ORDER = {name: rank for rank, name in enumerate(TLP_NAMES)}


def tlp_name(text: str) -> str | None:
    """'TLP:AMBER+STRICT', 'tlp:white', 'Green' -> the CLI's name; None if not a TLP label."""
    key = text.strip().lower().removeprefix("tlp:").replace(" ", "")
    key = {"white": "clear", "amber-strict": "amber+strict"}.get(key, key)
    return key if key in _ORDER else None


def strictest(names: list[str]) -> str | None:
    return max(names, key=_ORDER.__getitem__) if names else None


def marking_definition(tlp: int) -> dict[str, Any]:
    """The official STIX 2.1 TLP 2.0 marking-definition object."""
    name, marking = TLP2_MARKINGS[tlp]
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": marking,
        "created": TLP2_CREATED,
        "name": f"TLP:{name.upper()}",
        "extensions": {TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": name}},
    }
