"""The CheckIndicators response, encoded cheaply for the values nothing flags.

A check of 1,000 values is mostly values no alert mentions: each result is its query,
its normalised indicator and a verdict that carries only its state. Building those as
protobuf submessages (`results.add(...)`, then the verdict's state) cost ~3 µs each in
Python, about a third of the handler at 1,000 values. Their wire form is a few bytes
around two strings, so this module writes it directly and has upb parse the whole
response once (C, ~0.2 ms for 1,000 results); every other result (an error, matches, a
verdict with more than its state) is built as a message, as before, and serialised into
its place. The response is the same message either way (tests/test_check_response.py
compares the two for every kind of result).

Wire format (https://protobuf.dev/programming-guides/encoding/): a field is a tag byte
(field number << 3 | wire type; 2 = length-delimited, 0 = varint) followed by a varint
or by a varint length and that many bytes. proto3 leaves out scalars at their default,
but a submessage that was set is written even when empty, as `add(normalized=...)` and
`item.verdict.state = ...` both set theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core.tlp import handling
from node.core.verdict import State, Verdict
from node.rpc import convert

if TYPE_CHECKING:
    from node.app.checking import CheckResult

# Tags: CheckIndicatorsResponse.results = 1; CheckResult.query = 1, normalized = 2,
# verdict = 5; Indicator.type = 1 (varint), value = 2.
_RESULT = b"\x0a"
_QUERY = b"\x0a"
_NORMALIZED = b"\x12"
_VERDICT = b"\x2a"
_TYPE = b"\x08"
_VALUE = b"\x12"
_SMALL = [bytes((n,)) for n in range(128)]


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _state_only(state: State) -> bytes:
    """The Verdict submessage (tag, length, body) of a verdict that is only `state`."""
    message = api.Verdict()
    convert.verdict(message, Verdict(state), str)
    body = message.SerializeToString()
    return _VERDICT + _varint(len(body)) + body


_STATE_ONLY = {state: _state_only(state) for state in State if state is not State.FLAGGED}


# One whole result: results tag, size, query, normalized {type, value}, then the verdict
# submessage, when the query and the value are below 124 bytes (one-byte lengths) and
# so the result below 16,384 (its length in one or two bytes): nearly every value.
_SHORT = b"\x0a%c\x0a%c%b\x12%c\x08%c\x12%c%b%b"
_MEDIUM = b"\x0a%c%c\x0a%c%b\x12%c\x08%c\x12%c%b%b"


def check_response(
    results: Sequence[CheckResult], name_of: Callable[[bytes], str]
) -> api.CheckIndicatorsResponse:
    """The response of `results`, equal to `result_message` of each in order."""
    chunks: list[bytes] = []
    append = chunks.append
    any_flagged = False
    for r in results:
        v, ind = r.verdict, r.indicator
        if (
            v is None
            or ind is None
            or r.matches
            or r.error
            or v.disputes
            or v.retractions
            or v.refused_links
            or v.state is State.FLAGGED
        ):
            body = result_message(r, name_of).SerializeToString()
            any_flagged |= v is not None and v.flagged
            append(_RESULT + _varint(len(body)) + body)
            continue
        # query, normalized {type, value}, verdict {state}
        tail = _STATE_ONLY[v.state]
        query, value, kind = r.query.encode(), ind.value.encode(), ind.type
        lq, lv = len(query), len(value)
        if 0 < kind < 128 and 0 < lq < 124 and 0 < lv < 124:
            size = lq + lv + 8 + len(tail)
            if size < 128:
                append(_SHORT % (size, lq, query, lv + 4, kind, lv, value, tail))
            else:
                head = (size & 0x7F) | 0x80, size >> 7
                append(_MEDIUM % (*head, lq, query, lv + 4, kind, lv, value, tail))
        else:
            body = _plain_result(query, kind, value, tail)
            append(_RESULT + _varint(len(body)) + body)
    out = api.CheckIndicatorsResponse.FromString(b"".join(chunks))
    out.any_flagged = any_flagged
    return out


def _plain_result(query: bytes, kind: int, value: bytes, verdict: bytes) -> bytes:
    """A result's body of any size: its query, its normalised indicator and `verdict`."""
    normal = (_TYPE + _varint(kind) if kind else b"") + (
        _VALUE + _varint(len(value)) + value if value else b""
    )
    return b"".join(
        (
            _QUERY + _varint(len(query)) + query if query else b"",
            _NORMALIZED + _varint(len(normal)) + normal,
            verdict,
        )
    )


def result_message(r: CheckResult, name_of: Callable[[bytes], str]) -> api.CheckResult:
    """One value's result as a message (what the handler built for every value)."""
    if r.indicator is None:
        item = api.CheckResult(query=r.query, error=r.error)
    else:
        item = api.CheckResult(
            query=r.query,
            error=r.error,
            normalized=alert_pb2.Indicator(
                type=alert_pb2.IndicatorType.ValueType(r.indicator.type), value=r.indicator.value
            ),
        )
    if r.verdict is not None:
        convert.verdict(item.verdict, r.verdict, name_of)
    for stored, flagged, tlp in r.matches:
        rec = stored.record
        item.matches.add(
            alert_id=rec.id,
            origin=rec.origin,
            origin_name=name_of(rec.origin),
            category=rec.category,
            severity=rec.severity,
            confidence=rec.confidence,
            title=rec.title,
            indicator=flagged,
            created_at_ms=rec.created_at_ms,
            handling=handling(tlp),
        )
    return item
