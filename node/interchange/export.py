"""`alertmesh export`: stored alerts, through the client API, out as STIX, MISP or CSV.

What may leave is decided here, once, for every format and for TAXII (tlp.exportable):
CLEAR and GREEN always, AMBER and AMBER+STRICT only on the operator's --include-amber,
RED never. Retraction alerts, and alerts retracted by one in the same selection, are
left out: a retracted value must not be pushed to blocklists.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core import indicators
from node.core.alerts import CATEGORY_NAMES, SEVERITY_NAMES, TLP_NAMES, name_of
from node.interchange.misp import misp_event
from node.interchange.stix_write import stix_bundle, timestamp
from node.interchange.tlp import exportable
from node.rpc.client import AlertClient

FORMATS = ("stix", "misp", "csv")
CSV_COLUMNS = (
    "alert_id",
    "origin",
    "category",
    "severity",
    "tlp",
    "title",
    "type",
    "value",
    "created",
)
PAGE_SIZE = 1000


@dataclass
class Selection:
    """The alerts to export, and how many the TLP rules kept in."""

    alerts: list[api.StoredAlert] = field(default_factory=list)
    withheld: dict[str, int] = field(default_factory=dict)  # TLP name -> alerts kept in


def select(stored: Sequence[api.StoredAlert], *, include_amber: bool) -> Selection:
    by_id = {s.id: s for s in stored}
    # Only its author (the same member, whichever of its keys) retracts an alert: a
    # retraction by anyone else would let one member hide another's alerts from feeds.
    retracted = {
        link.alert_id
        for s in stored
        for link in s.alert.links
        if link.kind == alert_pb2.LINK_KIND_RETRACTION
        and (target := by_id.get(link.alert_id)) is not None
        and _same_member(s, target)
    }
    out = Selection()
    for s in stored:
        if s.id in retracted or any(
            link.kind == alert_pb2.LINK_KIND_RETRACTION for link in s.alert.links
        ):
            continue
        if exportable(s.alert.tlp, include_amber=include_amber, encrypted=s.encrypted):
            out.alerts.append(s)
        else:
            name = name_of(TLP_NAMES, s.alert.tlp) if s.alert.tlp else "unmarked"
            name = "encrypted to named members" if s.encrypted else name
            out.withheld[name] = out.withheld.get(name, 0) + 1
    return out


def _same_member(a: api.StoredAlert, b: api.StoredAlert) -> bool:
    if a.alert.origin == b.alert.origin:
        return True
    return bool(a.origin_name) and a.origin_name == b.origin_name


async def fetch(client: AlertClient, alert_filter: api.AlertFilter) -> list[api.StoredAlert]:
    """Every stored alert the filter selects, page by page (SearchAlerts' cursor)."""
    found: list[api.StoredAlert] = []
    token = ""
    while True:
        page = await client.search(
            api.SearchAlertsRequest(filter=alert_filter, page_size=PAGE_SIZE, page_token=token)
        )
        found += page.alerts
        token = page.next_page_token
        if not token:
            return found


def csv_rows(alerts: Sequence[api.StoredAlert]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in sorted(alerts, key=lambda s: (s.alert.created_at_ms, s.id)):
        a = s.alert
        for ind in a.indicators:
            writer.writerow(
                (
                    s.id.hex(),
                    s.origin_name or a.origin.hex(),
                    name_of(CATEGORY_NAMES, a.category),
                    name_of(SEVERITY_NAMES, a.severity),
                    name_of(TLP_NAMES, a.tlp) if a.tlp else "",
                    a.title,
                    indicators.type_name(ind.type),
                    ind.value,
                    timestamp(a.created_at_ms),
                )
            )
    return out.getvalue()


def render(fmt: str, alerts: Sequence[api.StoredAlert], *, node_name: str = "") -> str:
    """The export document (ending in a newline)."""
    if fmt == "stix":
        return json.dumps(stix_bundle(alerts), indent=2, ensure_ascii=False) + "\n"
    if fmt == "misp":
        return json.dumps(misp_event(alerts, node_name=node_name), indent=2) + "\n"
    if fmt == "csv":
        return csv_rows(alerts)
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
