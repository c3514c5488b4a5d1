"""`alertmesh retract | update | sighting | dispute`, and how `check` shows a verdict
(docs/lifecycle.md). Each change is an ordinary signed alert linked to the earlier one,
published through the node's Publish call."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core import indicators
from node.core.alerts import CATEGORY_NAMES, SEVERITY_NAMES, name_of
from node.core.errors import AlertmeshError
from node.rpc.client import AlertClient

MAX_TITLE = 200  # well inside the protocol's title limit

STATE_NAMES = {
    api.VERDICT_STATE_NOT_FLAGGED: "not flagged",
    api.VERDICT_STATE_FLAGGED: "FLAGGED",
    api.VERDICT_STATE_RETRACTED: "retracted",
    api.VERDICT_STATE_EXPIRED: "expired",
    api.VERDICT_STATE_ALLOWLISTED: "allowlisted",
}


def iso_time(ms: int) -> str:
    """An ISO 8601 time, or the raw number when no calendar holds it (a hostile value
    must not crash a report)."""
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else ""
    except (ValueError, OverflowError, OSError):
        return f"{ms} ms"


def _hex_id(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise AlertmeshError(f"{text!r} is not an alert id (64 hex characters)")
    return value


def _title(prefix: str, rest: str) -> str:
    return f"{prefix}: {rest}"[:MAX_TITLE]


async def _original(client: AlertClient, text: str) -> api.StoredAlert:
    return await client.get(_hex_id(text))


def _value(text: str) -> alert_pb2.Indicator:
    ind = indicators.parse(text, strict=False)
    return alert_pb2.Indicator(type=alert_pb2.IndicatorType.ValueType(ind.type), value=ind.value)


async def _publish(client: AlertClient, request: api.PublishRequest) -> int:
    response = await client.publish(request)
    print(response.id.hex())
    return 0


async def cmd_retract(client: AlertClient, args: argparse.Namespace) -> int:
    original = await _original(client, args.id)
    return await _publish(
        client,
        api.PublishRequest(
            category=original.alert.category or alert_pb2.CATEGORY_OTHER,
            severity=original.alert.severity,
            title=_title("Retracted", original.alert.title),
            description=args.reason,
            links=[alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_RETRACTION, alert_id=original.id)],
        ),
    )


async def cmd_update(client: AlertClient, args: argparse.Namespace) -> int:
    original = await _original(client, args.id)
    a = original.alert
    return await _publish(
        client,
        api.PublishRequest(
            category=args.category or a.category,
            severity=args.severity or a.severity,
            confidence=a.confidence if args.confidence is None else args.confidence,
            title=args.title or a.title,
            description=a.description if args.description is None else args.description,
            indicators=[_value(v) for v in args.indicator] if args.indicator else a.indicators,
            references=a.references,
            expires_at_ms=a.expires_at_ms,
            tlp=a.tlp,
            links=[alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_UPDATE, alert_id=original.id)],
            force=args.force,
        ),
    )


async def _about(
    client: AlertClient, args: argparse.Namespace, kind: int, word: str, link: dict[str, int]
) -> int:
    if bool(args.id) == bool(args.value):
        raise AlertmeshError(f"name either an alert ID or --value VALUE to {word.lower()}")
    if args.id:
        original = await _original(client, args.id)
        category = original.alert.category or alert_pb2.CATEGORY_OTHER
        title = _title(word, original.alert.title or original.id.hex())
        about: list[alert_pb2.Indicator] = []
        target = original.id
    else:
        about = [_value(v) for v in args.value]
        category, title, target = alert_pb2.CATEGORY_OTHER, _title(word, args.value[0]), b""
    return await _publish(
        client,
        api.PublishRequest(
            category=category,
            severity=alert_pb2.SEVERITY_INFO,
            title=title,
            description=getattr(args, "reason", "") or "",
            indicators=about,
            links=[
                alert_pb2.AlertLink(
                    kind=alert_pb2.LinkKind.ValueType(kind), alert_id=target, **link
                )
            ],
        ),
    )


async def cmd_sighting(client: AlertClient, args: argparse.Namespace) -> int:
    if (args.first_seen or 0) > (args.last_seen or args.first_seen or 0):
        raise AlertmeshError("--first-seen is after --last-seen")
    window = {"count": args.count, "first_seen_ms": args.first_seen or 0}
    window["last_seen_ms"] = args.last_seen or 0
    return await _about(client, args, alert_pb2.LINK_KIND_SIGHTING, "Sighting", window)


async def cmd_dispute(client: AlertClient, args: argparse.Namespace) -> int:
    return await _about(client, args, alert_pb2.LINK_KIND_DISPUTE, "Disputed", {})


def add_lifecycle_commands(
    client_command: Callable[..., Any],
    time_arg: Callable[[str], int],
    choice: Callable[[dict[str, int], str], Callable[[str], int]],
) -> None:
    p = client_command("retract", "withdraw one of this member's alerts", cmd_retract)
    p.add_argument("id", help="the alert id (hex)")
    p.add_argument("--reason", required=True, help="why, for everyone who acted on it")

    p = client_command("update", "publish a new version of one of this member's alerts", cmd_update)
    p.add_argument("id", help="the alert id (hex) of the version to supersede")
    p.add_argument("--severity", type=choice(SEVERITY_NAMES, "severity"))
    p.add_argument("--category", type=choice(CATEGORY_NAMES, "category"))
    p.add_argument("--confidence", type=int, choices=range(101), metavar="0-100")
    p.add_argument("--title")
    p.add_argument("--description")
    p.add_argument(
        "--indicator", action="append", metavar="TYPE:VALUE", help="replaces all (repeatable)"
    )
    p.add_argument("--force", action="store_true", help="even a warninglisted value")

    p = client_command("sighting", "say this member saw an alert's value(s) too", cmd_sighting)
    p.add_argument("id", nargs="?", help="the alert id (hex)")
    p.add_argument("--value", action="append", help="or: the value seen (repeatable)")
    p.add_argument("--count", type=int, default=1, help="how many times (default 1)")
    p.add_argument("--first-seen", type=time_arg, help="ISO 8601 or Unix ms")
    p.add_argument("--last-seen", type=time_arg, help="ISO 8601 or Unix ms")

    p = client_command("dispute", "say an alert or value is a false positive", cmd_dispute)
    p.add_argument("id", nargs="?", help="the alert id (hex)")
    p.add_argument("--value", action="append", help="or: the disputed value (repeatable)")
    p.add_argument("--reason", required=True)


def verdict_dict(v: api.Verdict) -> dict[str, Any]:
    return {
        "state": STATE_NAMES.get(v.state, "").lower(),
        "members": list(v.members),
        "sightings": v.sightings,
        "sighting_count": v.sighting_count,
        "disputes": v.disputes,
        "highest_severity": name_of(SEVERITY_NAMES, v.highest_severity)
        if v.highest_severity
        else "",
        "confidence": v.confidence,
        "first_seen": iso_time(v.first_seen_ms),
        "last_seen": iso_time(v.last_seen_ms),
        "alert_ids": [i.hex() for i in v.alert_ids],
        "retractions": [
            {
                "alert_id": r.alert_id.hex(),
                "by": r.member,
                "at": iso_time(r.retracted_at_ms),
                "reason": r.reason,
            }
            for r in v.retractions
        ],
        "dispute_details": [
            {"by": d.member, "reason": d.reason, "at": iso_time(d.created_at_ms)}
            for d in v.dispute_details
        ],
        "refused_links": v.refused_links,
    }


def verdict_line(r: api.CheckResult) -> str:
    """One line per value: the state, and what a person acting on it needs."""
    v = r.verdict
    if r.error:
        return f"{r.query}: error: {r.error}"
    disputes = f", {v.disputes} dispute{'s' * (v.disputes != 1)}" if v.disputes else ""
    if v.state == api.VERDICT_STATE_FLAGGED:
        top = max(r.matches, key=lambda m: m.severity) if r.matches else None
        what = (
            f"{name_of(CATEGORY_NAMES, top.category)}/{name_of(SEVERITY_NAMES, top.severity)} "
            if top
            else ""
        )
        handling = f" {top.handling.partition(':')[0]}" if top and top.handling else ""
        return (
            f"{r.query}: FLAGGED {what}by {', '.join(v.members)} (confidence {v.confidence}, "
            f"{v.sightings} sighting{'s' * (v.sightings != 1)}{disputes}, seen "
            f"{iso_time(v.first_seen_ms)} .. {iso_time(v.last_seen_ms)}): "
            f"{top.title if top else ''} [{' '.join(i.hex() for i in v.alert_ids)}]{handling}"
        )
    if v.state == api.VERDICT_STATE_RETRACTED:
        why = "; ".join(
            f"by {x.member} at {iso_time(x.retracted_at_ms)}: {x.reason}" for x in v.retractions
        )
        return f"{r.query}: retracted ({why}){disputes}"
    return f"{r.query}: {STATE_NAMES.get(v.state, 'not flagged')}{disputes}"


LINK_NAMES = {
    alert_pb2.LINK_KIND_UPDATE: "updated",
    alert_pb2.LINK_KIND_RETRACTION: "retracted",
    alert_pb2.LINK_KIND_SIGHTING: "sighting",
    alert_pb2.LINK_KIND_DISPUTE: "disputed",
}


def history_dicts(s: api.StoredAlert) -> list[dict[str, Any]]:
    return [
        {
            "alert_id": h.alert_id.hex(),
            "kind": LINK_NAMES.get(h.kind, str(h.kind)),
            "target": h.target.hex(),
            "by": h.member,
            "at": iso_time(h.created_at_ms),
            "title": h.title,
            "reason": h.description,
            "refused": h.refused,
        }
        for h in s.history
    ]


def print_history(s: api.StoredAlert) -> None:
    """`get`: the alert's later versions, retraction, sightings and disputes."""
    for h in history_dicts(s):
        refused = " (REFUSED: not the author)" if h["refused"] else ""
        said = f": {h['reason']}" if h["reason"] and h["kind"] != "updated" else ""
        print(
            f"{'history':12} {h['at']}  {h['kind']} by {h['by']}{refused}{said} [{h['alert_id']}]"
        )
