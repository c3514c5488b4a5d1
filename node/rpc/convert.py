"""proto <-> model conversion for the client API."""

from __future__ import annotations

from collections.abc import Callable

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core.alerts import AlertRecord
from node.core.errors import InvalidAlert
from node.core.roster import Roster
from node.core.tlp import handling
from node.core.verdict import State, Verdict
from node.store.base import Query, Stored

# A stored record -> (the alert a client is shown, encrypted, readable): node/app/sharing.py
Reader = Callable[[AlertRecord], tuple[alert_pb2.Alert, bool, bool]]


def stored_alert(stored: Stored, *, roster: Roster, now_ms: int, reader: Reader) -> api.StoredAlert:
    r = stored.record
    alert, encrypted, readable = reader(r)
    return api.StoredAlert(
        id=r.id,
        signed=alert_pb2.SignedAlert(body=r.body, signature=r.signature),
        alert=alert,
        received_at_ms=stored.received_at_ms,
        cursor=encode_cursor(stored.local_seq),
        expired=r.expired(now_ms),
        origin_name=roster.name_of(r.origin),
        encrypted=encrypted,
        readable=readable,
        handling=handling(alert.tlp),
    )


def encode_cursor(local_seq: int) -> str:
    return str(local_seq)


def decode_cursor(token: str, what: str = "cursor") -> int | None:
    """Cursors are opaque to clients; today they are this store's row positions."""
    if not token:
        return None
    if not token.isdigit():
        raise InvalidAlert(f"{what} {token!r} is not one this node issued")
    return int(token)


def query(f: api.AlertFilter, *, now_ms: int, keys: frozenset[str] | None) -> Query:
    for origin in f.origins:
        if len(origin) != 32:
            raise InvalidAlert("filter origins must be 32-byte public keys")
    if f.until_ms and f.since_ms and f.until_ms <= f.since_ms:
        raise InvalidAlert("filter until_ms must be after since_ms")
    return Query(
        now_ms=now_ms,
        categories=frozenset(f.categories),
        origins=frozenset(f.origins),
        min_severity=f.min_severity,
        since_ms=f.since_ms,
        until_ms=f.until_ms,
        keys=keys or frozenset(),
        any_key=keys is not None,
        include_expired=f.include_expired,
    )


def draft(req: api.PublishRequest) -> alert_pb2.Alert:
    return alert_pb2.Alert(
        category=req.category,
        severity=req.severity,
        confidence=req.confidence,
        title=req.title,
        description=req.description,
        indicators=req.indicators,
        references=req.references,
        expires_at_ms=req.expires_at_ms,
        tlp=req.tlp,
        links=req.links,
    )


def verdict(out: api.Verdict, v: Verdict, name_of: Callable[[bytes], str]) -> None:
    """Fill `out` (a submessage, built in place) from the value's verdict."""
    out.state = api.VerdictState.ValueType(_VERDICT_STATES[v.state])
    if not (v.state is State.FLAGGED or v.disputes or v.retractions or v.refused_links):
        return  # a value nothing flags (most checked values): every other field is zero
    out.members.extend(v.members)
    out.sightings = v.sightings
    out.sighting_count = v.sighting_count
    out.disputes = v.disputes
    out.highest_severity = alert_pb2.Severity.ValueType(v.highest_severity)
    out.confidence = v.confidence
    out.first_seen_ms = v.first_seen_ms
    out.last_seen_ms = v.last_seen_ms
    out.alert_ids.extend(v.alert_ids)
    for r in v.retractions:
        out.retractions.add(
            alert_id=r.alert_id,
            retraction_id=r.retraction_id,
            member=r.member,
            retracted_at_ms=r.retracted_at_ms,
            reason=r.reason,
        )
    for d in v.dispute_details:
        out.dispute_details.add(
            alert_id=d.alert_id, member=d.member, reason=d.reason, created_at_ms=d.created_at_ms
        )
    out.refused_links = v.refused_links


_VERDICT_STATES = {
    State.NOT_FLAGGED: api.VERDICT_STATE_NOT_FLAGGED,
    State.FLAGGED: api.VERDICT_STATE_FLAGGED,
    State.RETRACTED: api.VERDICT_STATE_RETRACTED,
    State.EXPIRED: api.VERDICT_STATE_EXPIRED,
    State.ALLOWLISTED: api.VERDICT_STATE_ALLOWLISTED,
}
