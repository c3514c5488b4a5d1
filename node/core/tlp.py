"""TLP 2.0 (FIRST, https://www.first.org/tlp/) as this network enforces it.

| marking | who receives it | leaves the node (export, TAXII) |
|---|---|---|
| CLEAR | every member | yes |
| GREEN | every member | yes |
| AMBER | every member | only with the operator's explicit flag |
| AMBER+STRICT | every member; "this organisation only" in every API answer | only with the flag |
| RED | named recipients only, end-to-end encrypted (node/crypto/sealing.py) | never |

An alert encrypted to named members never leaves, whatever its marking; an unmarked
alert leaves as AMBER does. docs/sharing.md has the full table.
"""

from __future__ import annotations

from node._pb.alertmesh.v1 import alert_pb2

HANDLING: dict[int, str] = {
    alert_pb2.TLP_CLEAR: "TLP:CLEAR: may be shared without restriction",
    alert_pb2.TLP_GREEN: "TLP:GREEN: members and their community; not to be made public",
    alert_pb2.TLP_AMBER: (
        "TLP:AMBER: this organisation and its clients, on a need-to-know basis only"
    ),
    alert_pb2.TLP_AMBER_STRICT: (
        "TLP:AMBER+STRICT: this organisation only; do not share outside it"
    ),
    alert_pb2.TLP_RED: "TLP:RED: for the named recipients only; do not share",
}


def handling(tlp: int) -> str:
    """What an API answer says about how the organisation may use an alert."""
    return HANDLING.get(tlp, "")


def exportable(tlp: int, *, include_amber: bool = False, encrypted: bool = False) -> bool:
    """May an alert with this marking leave the node in an export or a TAXII feed?

    CLEAR and GREEN: yes. AMBER and AMBER+STRICT: only when the operator asks
    (`--include-amber`), for its own organisation's tools. RED, and any alert encrypted
    to named members whatever its marking: never. An unmarked alert is treated as
    AMBER: when in doubt, keep it in.
    """
    if encrypted or tlp == alert_pb2.TLP_RED:
        return False
    if tlp in (alert_pb2.TLP_CLEAR, alert_pb2.TLP_GREEN):
        return True
    return include_amber
