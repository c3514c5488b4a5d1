"""The `alertmesh` command."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.app.config import DEFAULT_API, Config, init_home
from node.app.logs import LOG_FORMATS, LOG_LEVELS
from node.core import indicators
from node.core.alerts import CATEGORY_NAMES, SEVERITY_NAMES, TLP_NAMES, name_of
from node.core.errors import AlertmeshError
from node.crypto.tls import parse_certificate
from node.lifecycle_cli import (
    add_lifecycle_commands,
    history_dicts,
    iso_time,
    print_history,
    verdict_dict,
    verdict_line,
)
from node.rpc.client import AlertClient
from node.store_cli import add_store_commands
from node.token_cli import TOKEN_ENV, add_token_commands, token_from

EXIT_ERROR = 2


class CliError(Exception):
    """A one-line message for the user; exit status 2."""


def _time_arg(text: str) -> int:
    """ISO 8601 (UTC if no zone) or Unix milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _choice(names: dict[str, int], what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        key = text.lower().replace("_", "-")
        if what == "tlp":
            key = key.removeprefix("tlp:").replace("-strict", "+strict")
        if key not in names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {text!r}; use one of {', '.join(names)}"
            )
        return names[key]

    parse.__name__ = what
    return parse


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


# -- commands -----------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    config = init_home(
        Path(args.home), name=args.name, api_listen=args.listen, peer_listen=args.peer_listen
    )
    print(f"created node {config.name!r} in {config.home}")
    print(f"public key  {config.identity().public_key.hex()}")
    print(f"config      {config.home / 'config.toml'}")
    print(f"start it:   alertmesh run --home {config.home}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from node.app.logs import setup_logging
    from node.app.runtime import Endpoints, run_node

    config = Config.load(Path(args.home))
    setup_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    # `kill -USR1 PID` writes every thread's stack to the log: for a node that seems stuck.
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)

    def ready(endpoints: Endpoints) -> None:
        print(f"listening on {endpoints.api}", flush=True)
        if endpoints.peer:
            print(f"peers on {endpoints.peer}", flush=True)
        if endpoints.taxii:
            print(f"taxii on {endpoints.taxii}", flush=True)
        if endpoints.metrics:
            print(f"metrics on {endpoints.metrics}", flush=True)

    asyncio.run(
        run_node(
            config,
            api_listen=args.listen,
            peer_listen=args.peer_listen,
            taxii_listen=args.taxii_listen,
            metrics_listen=args.metrics_listen,
            on_ready=ready,
        )
    )
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    from node.app.rotation import rotate_key, rotation_report
    from node.app.service import wall_ms

    rotation = asyncio.run(rotate_key(Config.load(Path(args.home)), wall_ms()))
    print(rotation_report(rotation), end="")
    return 0


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


async def cmd_stats(client: AlertClient, args: argparse.Namespace) -> int:
    st = await client.stats()
    if args.json:
        print(
            json.dumps(
                {
                    "node": st.node_name,
                    "key": st.node_key.hex(),
                    "alerts": st.alerts,
                    "digest": st.digest,
                    "equivocations": st.equivocations,
                    "origins": [
                        {
                            "origin": o.origin.hex(),
                            "name": o.name,
                            "alerts": o.alerts,
                            "contiguous_seq": o.contiguous_seq,
                            "max_seq": o.max_seq,
                            "equivocated": o.equivocated,
                        }
                        for o in st.origins
                    ],
                    "peers": [
                        {
                            "name": p.name,
                            "connected": p.connected,
                            "blocked": p.blocked,
                            "eager": p.eager,
                            "full_received": p.full_received,
                            "duplicates_received": p.duplicates_received,
                            "invalid_received": p.invalid_received,
                            "full_sent": p.full_sent,
                            "ihave_sent": p.ihave_sent,
                        }
                        for p in st.peers
                    ],
                    "counters": dict(st.counters),
                    "compromised": [
                        {
                            "id": c.id.hex(),
                            "origin": c.origin.hex(),
                            "name": c.name,
                            "seq": c.seq,
                            "created_at": iso_time(c.created_at_ms),
                            "reason": c.reason,
                        }
                        for c in st.compromised
                    ],
                    "compromised_total": st.compromised_total,
                }
            )
        )
        return 0
    print(f"node          {st.node_name} ({st.node_key.hex()[:16]}…)")
    print(f"alerts        {st.alerts}")
    print(f"digest        {st.digest}")
    print(f"equivocations {st.equivocations}")
    for o in st.origins:
        flag = "  EQUIVOCATED" if o.equivocated else ""
        print(f"origin        {o.name or o.origin.hex()[:16]}: {o.alerts} alerts, "
              f"contiguous to #{o.contiguous_seq}{flag}")  # fmt: skip
    if st.compromised_total:
        print(f"compromised   {st.compromised_total} held alerts the roster now refuses "
              "(not reported by check):")  # fmt: skip
    for c in st.compromised:
        print(f"  {c.id.hex()} {c.name} #{c.seq}: {c.reason}")
    for p in st.peers:
        state = ("eager" if p.eager else "lazy") if p.connected else "down"
        state += " (blocked)" if p.blocked else ""
        print(f"peer          {p.name} {p.address} {state}: {p.full_received} received "
              f"({p.duplicates_received} duplicate, {p.invalid_received} invalid)")  # fmt: skip
    for name, value in sorted(st.counters.items()):
        print(f"counter       {name} = {value}")
    return 0


def cmd_member_card(args: argparse.Namespace) -> int:
    from node.app.onboarding import own_card
    from node.core.card import describe

    config = Config.load(Path(args.home))
    card, text = own_card(config, args.address or [], int(datetime.now(UTC).timestamp() * 1000))
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text, end="", flush=True)
    print(f"member card of {card.name}{f', in {args.out}' if args.out else ''}:", file=sys.stderr)
    for line in describe(card):
        print(f"  {line}", file=sys.stderr)
    print(
        "Send the card to the other member's operator, then read them the TLS pin on a call;\n"
        "`alertmesh roster add` shows them the pin of the card they got.",
        file=sys.stderr,
    )
    return 0


def cmd_roster_add(args: argparse.Namespace) -> int:
    from node.app.onboarding import add_card, add_connect, read_card
    from node.core.card import describe

    config = Config.load(Path(args.home))
    card = read_card(args.card)
    print(f"card of {card.name}, signed by its key, made {iso_time(card.created_at_ms)}:")
    for line in describe(card):
        print(f"  {line}")
    admission = add_card(config, card, replace=args.replace, dry_run=args.dry_run)
    if args.dry_run:
        changes = "; ".join(admission.changes)
        print(f"dry run: {config.roster_path} not changed; would do: {changes}")
        return 0
    for change in admission.changes:
        print(f"{config.roster_path}: {change}")
    print(
        f"The node trusts {card.name} once it reloads its roster. First compare the TLS pin",
        f"above with {card.name}'s operator on a call (not the channel the card came by).",
    )
    if args.connect and add_connect(config, card.name):
        print(f"{config.home / 'config.toml'}: peers.connect now lists {card.name}")
    print(f"Running node? Reload it: alertmesh roster-reload --home {config.home}")
    if not args.connect and card.name not in config.connect:
        print(
            f"This node will not dial {card.name} ({card.name}'s node may dial it). To dial it",
            f"too, add {card.name!r} to peers.connect in {config.home / 'config.toml'}",
            "(or add the card with --connect).",
        )
    return 0


async def cmd_roster_reload(client: AlertClient, args: argparse.Namespace) -> int:
    response = await client.reload_roster()
    print(f"roster reloaded: {response.members} members")
    return 0


async def cmd_peer_block(client: AlertClient, args: argparse.Namespace) -> int:
    response = await client.set_peer_blocked(args.name, args.command == "peer-block")
    print(f"blocked: {', '.join(response.blocked) or 'none'}")
    return 0


def cmd_cluster_up(args: argparse.Namespace) -> int:
    from node import cluster

    nodes = cluster.up(
        Path(args.dir), args.nodes, seed=args.seed, plaintext=args.insecure_plaintext
    )
    for node in nodes:
        print(f"{node.name} {node.api}", flush=True)
    return 0


def cmd_cluster_down(args: argparse.Namespace) -> int:
    from node import cluster

    directory = Path(args.dir)
    killed = cluster.down(directory)
    print(f"stopped {len(cluster.load(directory))} nodes")
    return 1 if killed else 0


def cmd_cluster_status(args: argparse.Namespace) -> int:
    from node import cluster

    for node in cluster.load(Path(args.dir)):
        pid = node.pid()
        print(f"{node.name} {node.api} {'running pid ' + str(pid) if pid else 'stopped'}")
    return 0


# -- argument parsing ---------------------------------------------------------


def _node_address(args: argparse.Namespace) -> str:
    if args.node:
        return str(args.node)
    if args.home:
        return Config.load(Path(args.home)).api_listen
    return DEFAULT_API


def _ca(args: argparse.Namespace) -> bytes | None:
    """--ca FILE, else the home's own tls.crt when its API uses TLS, else plaintext."""
    path = Path(args.ca) if args.ca else None
    if path is None and args.home:
        config = Config.load(Path(args.home))
        path = config.tls_cert_path if config.api_tls else None
    if path is None:
        return None
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read --ca {path}: {exc.strerror}") from exc
    parse_certificate(pem, str(path))  # one clear line here, not gRPC's log lines later
    return pem


def _add_filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--category", action="append", type=_choice(CATEGORY_NAMES, "category"))
    p.add_argument("--origin", action="append", help="origin public key (hex); repeatable")
    p.add_argument("--min-severity", type=_choice(SEVERITY_NAMES, "severity"))
    p.add_argument("--since", type=_time_arg, help="created at or after (ISO 8601 or Unix ms)")
    p.add_argument("--until", type=_time_arg, help="created before (ISO 8601 or Unix ms)")
    p.add_argument("--indicator", help="only alerts flagging this indicator (any spelling)")
    p.add_argument("--include-expired", action="store_true")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alertmesh", description="A member node of the alertmesh alert-sharing network."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create a node's identity and config")
    p.add_argument("--home", required=True, help="directory for the node's files")
    p.add_argument("--name", help="member name (default: node-XXXXXX)")
    p.add_argument("--listen", default=DEFAULT_API, help="client API address (HOST:PORT)")
    p.add_argument("--peer-listen", default="127.0.0.1:7401", help="peer address (HOST:PORT)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("run", help="run the node until SIGINT/SIGTERM")
    p.add_argument("--home", required=True)
    p.add_argument("--listen", help="client API HOST:PORT (port 0: pick a free port)")
    p.add_argument("--peer-listen", help="peer HOST:PORT (overrides the config)")
    p.add_argument("--taxii-listen", help="serve a read-only TAXII 2.1 collection on HOST:PORT")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="default: [log] level, else info")
    p.add_argument(
        "--log-format", choices=LOG_FORMATS, help="text or json lines (default: [log] format)"
    )
    p.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: [metrics] listen)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("rotate-key", help="give a stopped node a new signing key")
    p.add_argument("--home", required=True)
    p.set_defaults(func=cmd_rotate_key)

    def client_command(name: str, help: str, func: Callable[..., Awaitable[int]]) -> Any:
        p = sub.add_parser(name, help=help)
        p.add_argument("--node", help=f"the node's client API HOST:PORT (default {DEFAULT_API})")
        p.add_argument("--home", help="take the node address from this home's config")
        p.add_argument("--token", help=f"client API token (default ${TOKEN_ENV})")
        p.add_argument("--ca", metavar="FILE", help="use TLS, trusting only this tls.crt")
        p.set_defaults(func=func, client=True)
        return p

    p = client_command("publish", "sign and publish an alert", cmd_publish)
    p.add_argument("--category", required=True, type=_choice(CATEGORY_NAMES, "category"))
    p.add_argument("--title", required=True)
    p.add_argument("--indicator", action="append", type=_indicator_arg, metavar="TYPE:VALUE")
    p.add_argument(
        "--severity", default=SEVERITY_NAMES["medium"], type=_choice(SEVERITY_NAMES, "severity")
    )
    p.add_argument("--confidence", type=int, default=50, choices=range(101), metavar="0-100")
    p.add_argument("--description")
    p.add_argument("--reference", action="append", metavar="URL")
    p.add_argument("--tlp", default=TLP_NAMES["green"], type=_choice(TLP_NAMES, "tlp"))
    p.add_argument(
        "--to",
        action="append",
        metavar="NAME",
        help="a recipient (roster name, repeatable): the alert is encrypted to them "
        "and this node only; required with --tlp red",
    )
    p.add_argument("--expires", type=_time_arg, help="expiry (ISO 8601 or Unix ms)")
    p.add_argument("--request-id", help="idempotency key: a retry returns the first alert")
    p.add_argument("--json", action="store_true", help="also print the alert as JSON")
    p.add_argument("--force", action="store_true", help="even a value on the warninglist")

    p = client_command("import", "publish the values of a list, CSV, STIX or MISP file", cmd_import)
    p.add_argument("file", nargs="?", default="-", metavar="FILE|-", help="input (- : stdin)")
    p.add_argument("--format", choices=["list", "csv", "stix", "misp"], help="default: sniffed")
    p.add_argument("--category", type=_choice(CATEGORY_NAMES, "category"), help="default other")
    p.add_argument("--severity", type=_choice(SEVERITY_NAMES, "severity"), help="default medium")
    p.add_argument("--tlp", type=_choice(TLP_NAMES, "tlp"), help="default green")
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

    p = client_command("stats", "counts, digest, peers", cmd_stats)
    p.add_argument("--json", action="store_true")

    client_command("roster-reload", "re-read the roster file (like SIGHUP)", cmd_roster_reload)
    p = client_command("peer-block", "cut a member's node off until unblocked", cmd_peer_block)
    p.add_argument("name", help="the member's roster name")
    p = client_command("peer-unblock", "let a blocked member's node back", cmd_peer_block)
    p.add_argument("name", help="the member's roster name")

    add_lifecycle_commands(client_command, _time_arg, _choice)
    add_token_commands(sub)
    add_store_commands(sub)

    p = sub.add_parser("member-card", help="print this node's signed member card")
    p.add_argument("--home", required=True)
    p.add_argument(
        "--address",
        action="append",
        metavar="HOST:PORT",
        help="peer address other members dial (repeatable; default: the roster's)",
    )
    p.add_argument("--out", metavar="FILE", help="write the card to FILE (default: stdout)")
    p.set_defaults(func=cmd_member_card)

    roster = sub.add_parser("roster", help="this node's roster").add_subparsers(
        dest="roster_command", required=True, metavar="COMMAND"
    )
    p = roster.add_parser("add", help="check a member card and add the member to the roster")
    p.add_argument("card", metavar="CARD", help="file holding the card, or - for stdin")
    p.add_argument("--home", required=True)
    p.add_argument(
        "--replace",
        action="store_true",
        help="update the member of that name or key (new addresses, certificate)",
    )
    p.add_argument("--connect", action="store_true", help="also add it to peers.connect")
    p.add_argument("--dry-run", action="store_true", help="check and show; change nothing")
    p.set_defaults(func=cmd_roster_add)

    cluster = sub.add_parser("cluster", help="local multi-node clusters").add_subparsers(
        dest="cluster_command", required=True, metavar="COMMAND"
    )
    p = cluster.add_parser("up", help="create (if needed) and start N local nodes")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--dir", required=True)
    p.add_argument("--seed", type=int, default=1, help="seed of the random peer graph")
    p.add_argument(
        "--insecure-plaintext",
        action="store_true",
        help="a new cluster's peer sessions without TLS (lab comparisons only)",
    )
    p.set_defaults(func=cmd_cluster_up)
    p = cluster.add_parser("down", help="stop every node of the cluster")
    p.add_argument("--dir", required=True)
    p.set_defaults(func=cmd_cluster_down)
    p = cluster.add_parser("status", help="which nodes run")
    p.add_argument("--dir", required=True)
    p.set_defaults(func=cmd_cluster_status)
    return parser


async def _run_client(args: argparse.Namespace) -> int:
    async with AlertClient(_node_address(args), token=token_from(args), ca=_ca(args)) as client:
        result: int = await args.func(client, args)
        return result


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "client", False):
            return asyncio.run(_run_client(args))
        result: int = args.func(args)
        return result
    except KeyboardInterrupt:
        return 130
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            tls = " over TLS with that --ca" if getattr(args, "ca", None) else ""
            print(f"error: cannot reach the node at {_node_address(args)}{tls}", file=sys.stderr)
        else:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return EXIT_ERROR
    except (AlertmeshError, CliError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a bug: still one line and exit 2, never "not flagged" (1)
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
