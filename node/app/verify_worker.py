"""A verifier worker process: `python -m node.app.verify_worker`, started by the node.

It reads tasks from stdin and writes results to stdout, each a frame: a 4-byte
big-endian length, then a pickle. A task is (number, [(body, signature), ...],
now_ms, limits), its result (number, [index keys or the error, ...]). Both ends are
this package, so pickle is safe here. The worker exits when stdin closes, which is
also what happens when the node dies.
"""

from __future__ import annotations

import pickle
import signal
import struct
import sys
from collections.abc import Sequence
from typing import BinaryIO

from node._pb.alertmesh.v1 import alert_pb2
from node.core import alerts
from node.core.errors import AlertmeshError
from node.core.limits import Limits
from node.crypto import verify_alert

HEADER = struct.Struct(">I")

Keys = tuple[str, ...]


def check_admitted_bytes(
    items: Sequence[tuple[bytes, bytes]], now_ms: int, limits: Limits
) -> list[Keys | AlertmeshError]:
    """The index keys of each admitted alert (it decodes, its origin is a member), or
    the rule it breaks: protocol rules and indicators first, then the signature."""
    out: list[Keys | AlertmeshError] = []
    for body, signature in items:
        try:
            alert = alert_pb2.Alert.FromString(body)
            keys = alerts.validate(alert, now_ms=now_ms, limits=limits)
            verify_alert(alert.origin, body, signature)
            out.append(keys)
        except AlertmeshError as exc:
            out.append(exc)
    return out


def frame(payload: object) -> bytes:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def serve(tasks: BinaryIO, results: BinaryIO) -> None:
    while header := tasks.read(HEADER.size):
        if len(header) < HEADER.size:
            return
        (size,) = HEADER.unpack(header)
        number, items, now_ms, limits = pickle.loads(tasks.read(size))
        results.write(frame((number, check_admitted_bytes(items, now_ms, limits))))
        results.flush()


def main() -> None:
    # Ctrl-C reaches the node's whole process group; the node stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
