"""`alertmesh publish | import | get | check | search | export | watch`: the client
commands on alerts, and how an alert is printed."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import grpc

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.cli_args import EXIT_ERROR, ClientCommand, CliError, choice, time_arg
from node.core import indicators
from node.core.alerts import CATEGORY_NAMES, SEVERITY_NAMES, TLP_NAMES, name_of
from node.core.errors import AlertmeshError
from node.lifecycle_cli import history_dicts, iso_time, print_history, verdict_dict, verdict_line
from node.rpc.client import AlertClient


def _indicator_arg(text: str) -> alert_pb2.Indicator:
    """TYPE:VALUE, or a bare value whose type is inferred; the node normalises and validates."""
    prefix, sep, rest = text.partition(":")
    if sep and prefix.lower() in indicators.TYPE_NAMES:
        kind = indicators.TYPE_NAMES[prefix.lower()]
        return alert_pb2.Indicator(type=alert_pb2.IndicatorType.ValueType(kind), value=rest)
    try:
        kind = indicators.parse(text, strict=False).type
        return alert_pb2.Indicator(type=alert_pb2.IndicatorType.ValueType(kind), value=text)
    except AlertmeshError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _typed(ind: alert_pb2.Indicator) -> str:
    return f"{indicators.type_name(ind.type)}:{ind.value}" if ind.value else ""


def alert_dict(s: api.StoredAlert) -> dict[str, Any]:
    a = s.alert
    return {
        "id": s.id.hex(),
        "origin": a.origin.hex(),
        "origin_name": s.origin_name,
        "seq": a.seq,
        "category": name_of(CATEGORY_NAMES, a.category),
        "severity": name_of(SEVERITY_NAMES, a.severity),
        "confidence": a.confidence,
        "tlp": name_of(TLP_NAMES, a.tlp) if a.tlp else "",
        "title": a.title,
        "description": a.description,
        "indicators": [_typed(i) for i in a.indicators],
        "references": list(a.references),
        "created_at": iso_time(a.created_at_ms),
        "expires_at": iso_time(a.expires_at_ms),
        "expired": s.expired,
        "cursor": s.cursor,
        "encrypted": s.encrypted,
        "readable": s.readable,
        "recipients": [a.recipients[i].hex() for i in range(len(a.recipients))],
        "handling": s.handling,
    }


ENCRYPTED_FOR_OTHERS = "(encrypted for other members)"


def print_alert(s: api.StoredAlert, as_json: bool) -> None:
    d = alert_dict(s)
    if as_json:
        print(json.dumps(d), flush=True)
        return
    what = f"{d['category']}/{d['severity']}  " if not s.encrypted or s.readable else ""
    title = d["title"] if not s.encrypted or s.readable else ENCRYPTED_FOR_OTHERS
    print(
        f"{d['id']}  {d['created_at']}  {what}"
        f"{d['origin_name'] or d['origin'][:16]}#{d['seq']}  {title}",
        flush=True,
    )


def print_alert_long(s: api.StoredAlert) -> None:
    d = alert_dict(s)
    if s.encrypted and not s.readable:
        for key in ("id", "origin", "origin_name", "seq", "created_at", "cursor"):
            print(f"{key:12} {d[key]}")
        print(f"{'content':12} {ENCRYPTED_FOR_OTHERS}")
        for key in d["recipients"]:
            print(f"{'recipient':12} {key}")
        return
    for key in ("id", "origin", "origin_name", "seq", "category", "severity", "confidence",
                "tlp", "handling", "title", "description", "created_at", "expires_at",
                "cursor"):  # fmt: skip
        if d[key] not in ("", None):
            print(f"{key:12} {d[key]}")
    if s.encrypted:
        print(f"{'encrypted':12} to {len(d['recipients'])} members (this node is one)")
    for ind in d["indicators"]:
        print(f"{'indicator':12} {ind}")
    for ref in d["references"]:
        print(f"{'reference':12} {ref}")


def _filter(args: argparse.Namespace) -> api.AlertFilter:
    origins = []
    for o in args.origin or []:
        try:
            origins.append(bytes.fromhex(o))
        except ValueError as exc:
            raise CliError(f"--origin {o!r} is not a hex public key") from exc
    return api.AlertFilter(
        categories=args.category or [],
        origins=origins,
        min_severity=alert_pb2.Severity.ValueType(args.min_severity or 0),
        since_ms=args.since or 0,
        until_ms=args.until or 0,
        indicator=args.indicator or "",
        include_expired=args.include_expired,
    )


async def cmd_publish(client: AlertClient, args: argparse.Namespace) -> int:
    request = api.PublishRequest(
        category=args.category,
        severity=args.severity,
        confidence=args.confidence,
        title=args.title,
        description=args.description or "",
        indicators=args.indicator or [],
        references=args.reference or [],
        expires_at_ms=args.expires or 0,
        tlp=args.tlp,
        client_request_id=args.request_id or "",
        recipients=args.to or [],
        force=args.force,
    )
    response = await client.publish(request)
    if args.json:
        print(json.dumps({**alert_dict(response.alert), "duplicate": response.duplicate}))
    print(response.id.hex())
    return 0


async def cmd_import(client: AlertClient, args: argparse.Namespace) -> int:
    from node.interchange.importer import run_import

    return await run_import(client, args)


async def cmd_get(client: AlertClient, args: argparse.Namespace) -> int:
    try:
        alert_id = bytes.fromhex(args.id)
    except ValueError as exc:
        raise CliError(f"{args.id!r} is not a hex alert id") from exc
    try:
        stored = await client.get(alert_id)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            print(f"not found: {args.id}", file=sys.stderr)
            return 1
        raise
    if args.json:
        print(json.dumps({**alert_dict(stored), "history": history_dicts(stored)}))
    else:
        print_alert_long(stored)
        print_history(stored)
    return 0


async def cmd_check(client: AlertClient, args: argparse.Namespace) -> int:
    response = await client.check(args.values, include_expired=args.include_expired)
    if args.json:
        out = [
            {
                "query": r.query,
                "normalized": _typed(r.normalized),
                "error": r.error,
                "verdict": verdict_dict(r.verdict) if not r.error else None,
                "matches": [
                    {
                        "alert_id": m.alert_id.hex(),
                        "origin": m.origin.hex(),
                        "origin_name": m.origin_name,
                        "category": name_of(CATEGORY_NAMES, m.category),
                        "severity": name_of(SEVERITY_NAMES, m.severity),
                        "confidence": m.confidence,
                        "title": m.title,
                        "indicator": _typed(m.indicator),
                        "handling": m.handling,
                    }
                    for m in r.matches
                ],
            }
            for r in response.results
        ]
        print(json.dumps(out))
    else:
        for r in response.results:
            print(verdict_line(r))
    if any(r.error for r in response.results) and not response.any_flagged:
        return EXIT_ERROR
    return 0 if response.any_flagged else 1


async def cmd_search(client: AlertClient, args: argparse.Namespace) -> int:
    token = ""
    shown = 0
    while True:
        page = await client.search(
            api.SearchAlertsRequest(
                filter=_filter(args), page_size=min(args.limit - shown, 1000), page_token=token
            )
        )
        for stored in page.alerts:
            print_alert(stored, args.json)
        shown += len(page.alerts)
        token = page.next_page_token
        if not token or shown >= args.limit:
            return 0


async def cmd_export(client: AlertClient, args: argparse.Namespace) -> int:
    from node.interchange.export import fetch, render, select

    chosen = select(await fetch(client, _filter(args)), include_amber=args.include_amber)
    stats = await client.stats()
    sys.stdout.write(render(args.format, chosen.alerts, node_name=stats.node_name))
    withheld = ", ".join(f"{n} {tlp}" for tlp, n in sorted(chosen.withheld.items()))
    print(f"exported {len(chosen.alerts)} alerts as {args.format}", file=sys.stderr)
    if args.include_amber:
        print("--include-amber: TLP:AMBER alerts are in this export; keep it inside your "
              "organisation (and its clients, not for AMBER+STRICT)", file=sys.stderr)  # fmt: skip
    if withheld:
        print(f"not exported under the TLP rules: {withheld}", file=sys.stderr)
    return 0


async def cmd_watch(client: AlertClient, args: argparse.Namespace) -> int:
    request = api.SubscribeRequest(
        filter=_filter(args), cursor=args.cursor or "", from_start=args.from_start
    )
    count = 0
    async for event in client.subscribe(request):
        print_alert(event.alert, args.json)
        count += 1
        if args.count and count >= args.count:
            break
    return 0


def _add_filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--category", action="append", type=choice(CATEGORY_NAMES, "category"))
    p.add_argument("--origin", action="append", help="origin public key (hex); repeatable")
    p.add_argument("--min-severity", type=choice(SEVERITY_NAMES, "severity"))
    p.add_argument("--since", type=time_arg, help="created at or after (ISO 8601 or Unix ms)")
    p.add_argument("--until", type=time_arg, help="created before (ISO 8601 or Unix ms)")
    p.add_argument("--indicator", help="only alerts flagging this indicator (any spelling)")
    p.add_argument("--include-expired", action="store_true")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def add_alert_commands(client_command: ClientCommand) -> None:
    p = client_command("publish", "sign and publish an alert", cmd_publish)
    p.add_argument("--category", required=True, type=choice(CATEGORY_NAMES, "category"))
    p.add_argument("--title", required=True)
    p.add_argument("--indicator", action="append", type=_indicator_arg, metavar="TYPE:VALUE")
    p.add_argument(
        "--severity", default=SEVERITY_NAMES["medium"], type=choice(SEVERITY_NAMES, "severity")
    )
    p.add_argument("--confidence", type=int, default=50, choices=range(101), metavar="0-100")
    p.add_argument("--description")
    p.add_argument("--reference", action="append", metavar="URL")
    p.add_argument("--tlp", default=TLP_NAMES["green"], type=choice(TLP_NAMES, "tlp"))
    p.add_argument(
        "--to",
        action="append",
        metavar="NAME",
        help="a recipient (roster name, repeatable): the alert is encrypted to them "
        "and this node only; required with --tlp red",
    )
    p.add_argument("--expires", type=time_arg, help="expiry (ISO 8601 or Unix ms)")
    p.add_argument("--request-id", help="idempotency key: a retry returns the first alert")
    p.add_argument("--json", action="store_true", help="also print the alert as JSON")
    p.add_argument("--force", action="store_true", help="even a value on the warninglist")

    p = client_command("import", "publish the values of a list, CSV, STIX or MISP file", cmd_import)
    p.add_argument("file", nargs="?", default="-", metavar="FILE|-", help="input (- : stdin)")
    p.add_argument("--format", choices=["list", "csv", "stix", "misp"], help="default: sniffed")
    p.add_argument("--category", type=choice(CATEGORY_NAMES, "category"), help="default other")
    p.add_argument("--severity", type=choice(SEVERITY_NAMES, "severity"), help="default medium")
    p.add_argument("--tlp", type=choice(TLP_NAMES, "tlp"), help="default green")
    p.add_argument("--title", help='default "Imported from FILE (n/N)"')
    p.add_argument("--confidence", type=int, choices=range(101), metavar="0-100")
    p.add_argument("--per-alert", type=int, default=25, help="indicators per alert (1-256)")

    p = client_command("get", "print one alert", cmd_get)
    p.add_argument("id", help="alert id (hex)")
    p.add_argument("--json", action="store_true")

    p = client_command("check", "are these indicators flagged? (exit 0 yes, 1 no)", cmd_check)
    p.add_argument("values", nargs="+", metavar="VALUE", help="TYPE:VALUE or a bare value")
    p.add_argument("--include-expired", action="store_true")
    p.add_argument("--json", action="store_true")

    p = client_command("search", "list stored alerts, newest first", cmd_search)
    _add_filter_args(p)
    p.add_argument("--limit", type=int, default=50)

    p = client_command("export", "stored alerts as STIX 2.1, MISP or CSV, to stdout", cmd_export)
    _add_filter_args(p)
    p.add_argument("--format", choices=("stix", "misp", "csv"), default="stix")
    p.add_argument(
        "--include-amber",
        action="store_true",
        help="also export TLP:AMBER and AMBER+STRICT alerts (for your own organisation)",
    )

    p = client_command("watch", "stream new alerts as they arrive", cmd_watch)
    _add_filter_args(p)
    p.add_argument("--cursor", help="resume after this cursor")
    p.add_argument("--from-start", action="store_true", help="replay stored alerts first")
    p.add_argument("--count", type=int, default=0, help="stop after N alerts")
