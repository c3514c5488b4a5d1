"""`alertmesh member-card` and `alertmesh roster add`: admitting members by their signed
cards (node/app/onboarding.py does the work; docs/operations.md, "Joining a network: two
organisations")."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from node.app.config import Config
from node.lifecycle_cli import iso_time


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


def add_member_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
