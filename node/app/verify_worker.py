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
import traceback
from collections.abc import Sequence
from typing import BinaryIO

from node._pb.alertmesh.v1 import alert_pb2
from node.core import alerts
from node.core.errors import AlertmeshError, InvalidAlert
from node.core.limits import Limits
from node.crypto import verify_alert
from node.crypto.succession import verify_succession

HEADER = struct.Struct(">I")

Keys = tuple[str, ...]


def check_rules_and_signature(
    alert: alert_pb2.Alert, body: bytes, signature: bytes, now_ms: int, limits: Limits
) -> Keys:
    """The index keys of an admitted alert (it decodes, its origin is a member), or the
    first rule it breaks: protocol rules and indicators first, then the signature.

    Every path that checks received alerts goes through here, so their errors agree. An
    exception other than AlertmeshError is a bug in the checks: the alert is refused,
    with the bug logged, rather than taking the worker (or the batch) down with it.
    """
    try:
        keys = alerts.validate(alert, now_ms=now_ms, limits=limits)
        verify_alert(alert.origin, body, signature)
        verify_succession(alert)
    except AlertmeshError:
        raise
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        raise InvalidAlert(
            f"this alert could not be checked ({type(exc).__name__}); it is refused"
        ) from None
    return keys


def check_admitted_bytes(
    items: Sequence[tuple[bytes, bytes]], now_ms: int, limits: Limits
) -> list[Keys | AlertmeshError]:
    """check_rules_and_signature over a task's (body, signature) pairs."""
    out: list[Keys | AlertmeshError] = []
    for body, signature in items:
        try:
            alert = alert_pb2.Alert.FromString(body)  # admitted: it decodes
            out.append(check_rules_and_signature(alert, body, signature, now_ms, limits))
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
