"""A verifier worker process: `python -m node.app.verify_worker`, started by the node.

It reads tasks from stdin and writes results to stdout, each a frame: a 4-byte
big-endian length, then a pickle. A task is (number, now_ms, limits, lengths, blob):
the alerts' bodies and signatures back to back in one bytes object, `blob`, and their
sizes in `lengths` (an array of unsigned 32-bit integers, body then signature for each
alert), so that a task of a hundred alerts pickles as one buffer, not hundreds of
objects. Its result is (number, [record fields or the error, ...]): for each alert
the fields of its AlertRecord from `origin` on (alerts.record_fields), decoded here, so
that the node builds the record without decoding the body itself. Both ends are this
package, so pickle is safe here. The worker exits when stdin closes, which is also
what happens when the node dies.
"""

from __future__ import annotations

import pickle
import signal
import struct
import sys
import traceback
from array import array
from collections.abc import Sequence
from typing import BinaryIO

from node._pb.alertmesh.v1 import alert_pb2
from node.core import alerts
from node.core.alerts import RecordFields
from node.core.errors import AlertmeshError, InvalidAlert
from node.core.limits import Limits
from node.crypto import verify_alert
from node.crypto.succession import verify_succession

HEADER = struct.Struct(">I")

Result = RecordFields | AlertmeshError


def check_rules_and_signature(
    alert: alert_pb2.Alert, body: bytes, signature: bytes, now_ms: int, limits: Limits
) -> RecordFields:
    """The record fields (alerts.record_fields, index keys last) of an admitted alert (it
    decodes, its origin is a member), or the first rule it breaks: protocol rules and
    indicators first, then the signature.

    Every path that checks received alerts goes through here, so their errors agree. An
    exception other than AlertmeshError is a bug in the checks: the alert is refused,
    with the bug logged, rather than taking the worker (or the batch) down with it.
    """
    try:
        fields = alerts.checked_fields(alert, now_ms=now_ms, limits=limits)
        verify_alert(fields[0], body, signature)
        verify_succession(alert)
    except AlertmeshError:
        raise
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        raise InvalidAlert(
            f"this alert could not be checked ({type(exc).__name__}); it is refused"
        ) from None
    return fields


def check_admitted_bytes(
    items: Sequence[tuple[bytes, bytes]], now_ms: int, limits: Limits
) -> list[Result]:
    """check_rules_and_signature over admitted (body, signature) pairs: the record
    fields of each, or the rule it breaks. The node admitted each by its head only
    (alerts.decode_head), so a body that does not decode as a whole is refused here,
    with decode_body's error."""
    out: list[Result] = []
    for body, signature in items:
        try:
            alert = alerts.decode_body(body, limits)
            out.append(check_rules_and_signature(alert, body, signature, now_ms, limits))
        except AlertmeshError as exc:
            out.append(exc)
    return out


def task(number: int, items: Sequence[tuple[bytes, bytes]], now_ms: int, limits: Limits) -> bytes:
    """The frame of a task: what the node writes to a worker's stdin."""
    parts = [part for item in items for part in item]
    lengths = array("I", map(len, parts))
    return frame((number, now_ms, limits, lengths.tobytes(), b"".join(parts)))


def items_of(lengths: bytes, blob: bytes) -> list[tuple[bytes, bytes]]:
    """The (body, signature) pairs of a task; ValueError if the sizes do not add up."""
    sizes = array("I")
    sizes.frombytes(lengths)
    if len(sizes) % 2 or sum(sizes) != len(blob):
        raise ValueError("a task's sizes do not match its bytes")
    out = []
    at = 0
    for i in range(0, len(sizes), 2):
        body_end = at + sizes[i]
        end = body_end + sizes[i + 1]
        out.append((blob[at:body_end], blob[body_end:end]))
        at = end
    return out


def frame(payload: object) -> bytes:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def serve(tasks: BinaryIO, results: BinaryIO) -> None:
    while header := tasks.read(HEADER.size):
        if len(header) < HEADER.size:
            return
        (size,) = HEADER.unpack(header)
        number, now_ms, limits, lengths, blob = pickle.loads(tasks.read(size))
        items = items_of(lengths, blob)
        results.write(frame((number, check_admitted_bytes(items, now_ms, limits))))
        results.flush()


def main() -> None:
    # Ctrl-C reaches the node's whole process group; the node stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
