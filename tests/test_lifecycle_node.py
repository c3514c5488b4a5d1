"""Lifecycle through a node's own code, on the in-memory store: what `check` answers
must not depend on what else is checked with it, nor on hostile sighting windows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node.app.lifecycle import EventKind
from node.app.service import AlertNode
from node.core import alerts
from node.core.errors import InvalidAlert
from node.core.limits import DEFAULT_LIMITS
from node.core.roster import Member, Roster
from node.crypto import Identity
from node.store.base import Query
from tests.factory import DOMAIN, Author, memory_node, now_ms

HANDLE = alert_pb2.INDICATOR_TYPE_HANDLE


def draft(*domains: str, links: tuple[alert_pb2.AlertLink, ...] = ()) -> alert_pb2.Alert:
    alert = alert_pb2.Alert(
        category=alert_pb2.CATEGORY_PHISHING,
        severity=alert_pb2.SEVERITY_HIGH,
        confidence=80,
        title="lifecycle",
    )
    for domain in domains:
        alert.indicators.add(type=DOMAIN, value=domain)
    alert.links.extend(links)
    return alert


@pytest.fixture
async def node() -> AsyncIterator[AlertNode]:
    identity = Identity.generate()
    roster = Roster.of([Member("beta", identity.public_key)])
    async with memory_node(identity, roster) as node:
        await node.start()
        yield node


async def test_a_retracted_value_is_retracted_whatever_else_is_checked(node: AlertNode) -> None:
    first, _ = await node.publish(draft("y-value.example"))
    update = alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_UPDATE, alert_id=first.record.id)
    await node.publish(draft("x-value.example", "y-value.example", links=(update,)))
    retract = alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_RETRACTION, alert_id=first.record.id)
    await node.publish(draft(links=(retract,)))
    alone = {}
    for value in ("x-value.example", "y-value.example"):
        [result] = await node.check([value], include_expired=False)
        alone[value] = result.verdict.state
    for batch in (["x-value.example", "y-value.example"], ["y-value.example", "x-value.example"]):
        together = await node.check(batch, include_expired=False)
        assert {r.query: r.verdict.state for r in together} == alone
    assert not any(r.matches for r in together)


@pytest.mark.parametrize(
    ("first_seen", "last_seen"),
    [(2**62, 2**63 - 1), (-5, 10), (0, 10), (10, 2**62)],
    ids=["far-future", "negative", "zero", "after-creation"],
)
def test_a_sighting_window_outside_time_is_refused(first_seen: int, last_seen: int) -> None:
    author = Author()
    link = alert_pb2.AlertLink(
        kind=alert_pb2.LINK_KIND_SIGHTING,
        alert_id=bytes(32),
        first_seen_ms=first_seen,
        last_seen_ms=last_seen,
    )
    sighting = author.alert(links=[link])
    with pytest.raises(InvalidAlert, match="sighting"):
        alerts.validate(sighting, now_ms=now_ms(), limits=DEFAULT_LIMITS)


async def test_a_retraction_releases_only_values_nothing_else_flags(node: AlertNode) -> None:
    """Downstream systems unfreeze what a retraction event lists: a value another active
    alert still flags must not be in it."""
    first_draft = draft("both.example", "only-first.example")
    first_draft.indicators.add(type=HANDLE, value="telegram:still-flagged")
    first, _ = await node.publish(first_draft)
    second = draft("both.example")
    second.indicators.add(type=HANDLE, value="telegram:still-flagged")
    await node.publish(second)
    retract = alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_RETRACTION, alert_id=first.record.id)
    await node.publish(draft(links=(retract,)))
    events = node.watch_events(Query(now_ms=now_ms()), cursor=0)
    seen = [await anext(events) for _ in range(3)]
    await events.aclose()  # type: ignore[attr-defined]
    retraction = seen[-1]
    assert retraction.kind is EventKind.RETRACTED
    assert [i.value for i in retraction.released] == ["only-first.example"]
