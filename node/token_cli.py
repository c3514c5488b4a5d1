"""`alertmesh token create|list|revoke --home DIR`: client API tokens.

These work on the home's token file directly, so the node need not be running; a
running node sees each change on its next call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from node.app.config import Config
from node.app.tokens import TokenFile
from node.core.api_access import AUTH_TOKEN, Scope

TOKEN_ENV = "ALERTMESH_TOKEN"


def _tokens(args: argparse.Namespace) -> tuple[Config, TokenFile]:
    config = Config.load(Path(args.home))
    return config, TokenFile(config.api_tokens_path)


def cmd_create(args: argparse.Namespace) -> int:
    config, tokens = _tokens(args)
    token, record = tokens.create(Scope.parse(args.scope), args.name or "", datetime.now(UTC))
    print(
        f"created token {record.id} (scope {record.scope.label}); it is shown only now, "
        f"pass it with --token or {TOKEN_ENV}",
        file=sys.stderr,
    )
    if config.api_auth != AUTH_TOKEN:
        print(f'note: {config.home} has api.auth = "{config.api_auth}"; tokens are not checked '
              f'until it is "token"', file=sys.stderr)  # fmt: skip
    print(token)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    _, tokens = _tokens(args)
    records = list(tokens.records().values())
    if args.json:
        for r in records:
            d = r.to_json()
            del d["sha256"]
            print(json.dumps(d))
        return 0
    for r in records:
        state = f"revoked {r.revoked}" if r.revoked else "active"
        print(f"{r.id}  {r.scope.label:7}  {r.created}  {state:28}  {r.name}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    _, tokens = _tokens(args)
    record = tokens.revoke(args.id, datetime.now(UTC))
    print(f"token {record.id} revoked at {record.revoked}")
    return 0


def token_from(args: argparse.Namespace) -> str | None:
    """--token, else $ALERTMESH_TOKEN, else none."""
    return getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None


def add_token_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tokens = sub.add_parser("token", help="client API tokens").add_subparsers(
        dest="token_command", required=True, metavar="COMMAND"
    )
    p = tokens.add_parser("create", help="create a token and print it (shown only once)")
    p.add_argument("--home", required=True)
    p.add_argument("--scope", required=True, choices=[s.label for s in Scope])
    p.add_argument("--name", help="a label: who or what uses the token")
    p.set_defaults(func=cmd_create)
    p = tokens.add_parser("list", help="id, scope, created, name (never the token)")
    p.add_argument("--home", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = tokens.add_parser("revoke", help="refuse a token from the next call on")
    p.add_argument("--home", required=True)
    p.add_argument("id", help="the token's id (from token list)")
    p.set_defaults(func=cmd_revoke)
