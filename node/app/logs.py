"""The node's log: one line per event, as text (the default) or as JSON.

JSON lines have stable keys: `time` (UTC, ISO 8601 with milliseconds), `level`,
`logger`, `message`, and, when the event has them, `event` (a short fixed name such
as "session_open"), `peer`, `alert_id`, `origin`, `seq`, `address`, `error` and
`exc` (a traceback, as one string). Call sites pass the optional keys with
`extra={...}` (only the names in EXTRA_KEYS are written). The text format writes the
same event on one line too: line breaks inside a message or a traceback are written
as a literal backslash-n.

Secrets never reach a log because no call site passes one: private keys live in
`Identity` and `TlsIdentity`, whose repr shows only public parts, and client tokens
are compared by hash (node/app/tokens.py). tests/test_ops_logs.py greps a cluster's
logs for every key and token to keep it so.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
EXTRA_KEYS = ("event", "peer", "alert_id", "origin", "seq", "address", "error")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _one_line(text: str) -> str:
    return text.replace("\r", "").replace("\n", "\\n")


class TextFormatter(logging.Formatter):
    """The classic text line, with line breaks escaped so an event stays one line."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return _one_line(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in EXTRA_KEYS:
            value = record.__dict__.get(key)
            if value is None:
                continue
            out[key] = value.hex() if isinstance(value, bytes) else value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str)


def setup_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every log record to `stream` (stderr) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
