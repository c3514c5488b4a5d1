"""What every command of `alertmesh` shares: the one-line error, its exit status, and
the argument types for times and named choices (node/cli.py builds the tree)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

EXIT_ERROR = 2


class CliError(Exception):
    """A one-line message for the user; exit status 2."""


def time_arg(text: str) -> int:
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


def choice(names: dict[str, int], what: str) -> Callable[[str], int]:
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


# client_command(name, help, func) in build_parser: a subcommand that talks to a node.
ClientCommand = Callable[[str, str, Callable[..., Awaitable[int]]], Any]
