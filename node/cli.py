"""The `alertmesh` command: the tree of subcommands and how a command's outcome becomes an
exit status. Each group of commands lives in its own module (node/*_cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from node.alerts_cli import add_alert_commands
from node.app.config import DEFAULT_API, Config, init_home
from node.app.logs import LOG_FORMATS, LOG_LEVELS
from node.cli_args import EXIT_ERROR, CliError, choice, time_arg
from node.cluster_cli import add_cluster_commands
from node.core.errors import AlertmeshError
from node.crypto.tls import parse_certificate
from node.lifecycle_cli import add_lifecycle_commands
from node.member_cli import add_member_commands
from node.operate_cli import add_operate_commands
from node.rpc.client import AlertClient
from node.store_cli import add_store_commands
from node.token_cli import TOKEN_ENV, add_token_commands, token_from

# -- a node's home: init, run, rotate-key -------------------------------------


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

    add_alert_commands(client_command)
    add_operate_commands(client_command)
    add_lifecycle_commands(client_command, time_arg, choice)
    add_token_commands(sub)
    add_store_commands(sub)
    add_member_commands(sub)
    add_cluster_commands(sub)
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
