"""`alertmesh store migrate` and `alertmesh serve-api`: the commands of the
PostgreSQL store (docs/operations.md, "Choosing the store")."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from node.app.config import Config
from node.app.logs import LOG_FORMATS, LOG_LEVELS
from node.core.errors import ConfigError
from node.store.postgres_url import redacted


def cmd_migrate(args: argparse.Namespace) -> int:
    from node.app.migrate import migrate

    if not Path(args.source).is_file():
        raise ConfigError(f"{args.source} is not a store file (alerts.db of a stopped node)")
    result = asyncio.run(migrate(Path(args.source), args.target, progress=args.progress))
    print(result.source.line(str(args.source)))
    print(result.target.line(redacted(args.target)))
    if not result.verified:
        print("error: the copy differs from its source (see above)", file=sys.stderr)
        return 1
    print("verified: equal digests and counts")
    return 0


def cmd_serve_api(args: argparse.Namespace) -> int:
    from node.app.logs import setup_logging
    from node.app.read_api import run_read_api

    config = Config.load(Path(args.home))
    setup_logging(args.log_level or config.log_level, args.log_format or config.log_format)

    def ready(address: str) -> None:
        print(f"listening on {address}", flush=True)

    asyncio.run(run_read_api(config, api_listen=args.listen, on_ready=ready))
    return 0


def add_store_commands(sub: Any) -> None:
    store = sub.add_parser("store", help="the node's store").add_subparsers(
        dest="store_command", required=True, metavar="COMMAND"
    )
    p = store.add_parser(
        "migrate", help="copy a SQLite store into an empty PostgreSQL database (node stopped)"
    )
    p.add_argument("--from", dest="source", required=True, metavar="FILE", help="alerts.db")
    p.add_argument("--to", dest="target", required=True, metavar="URL", help="postgresql://...")
    p.add_argument("--progress", action="store_true", help="print a line per 5,000 alerts")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("serve-api", help="a read-only client API over the node's PostgreSQL store")
    p.add_argument("--home", required=True)
    p.add_argument("--listen", help="HOST:PORT (default: [api] listen; port 0: a free port)")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="default: [log] level, else info")
    p.add_argument("--log-format", choices=LOG_FORMATS, help="default: [log] format")
    p.set_defaults(func=cmd_serve_api)
