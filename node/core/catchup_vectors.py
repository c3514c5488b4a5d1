"""Catch-up's arithmetic: version vectors, their digest, and the ranges to fetch.

Pure functions and values, used by the catch-up session (node/core/catchup.py, which
re-exports them) and by the store's equivocation check (`AlertRef`).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from node.core.chain import HeldRuns
from node.core.errors import AlertmeshError, LimitExceeded

VersionVector = Mapping[bytes, int]
"""origin (32-byte key) -> highest contiguous seq held. A missing origin means 0."""

ORIGIN_BYTES = 32
DIGEST_BYTES = 32
MAX_SEQ = 2**64 - 1  # seq is a uint64 on the wire
DIGEST_DOMAIN = b"alertmesh/v1/summary\0"

# Protocol limits a server enforces on RangeRequests (a requester's config must fit).
MAX_RANGES_PER_FRAME = 64
MAX_RANGE_LEN = 1024
# Limit on heads in a received vector: far above any roster we expect.
MAX_HEADS = 10_000


class InvalidCatchupFrame(AlertmeshError):
    """A catch-up frame from a peer is malformed (bad origin, seq or digest)."""


# --- pure functions -------------------------------------------------------------


def summary_digest(vector: VersionVector) -> bytes:
    """SHA-256 over the domain prefix and the (origin, seq) pairs sorted by origin.

    Zero heads are left out, so {} and {o: 0} have the same digest, and the digest
    of the empty vector is SHA-256 of the prefix alone. Each pair is the 32-byte
    origin followed by seq as 8 bytes big-endian: fixed width, so unambiguous.
    """
    h = hashlib.sha256(DIGEST_DOMAIN)
    for origin in sorted(vector):
        seq = vector[origin]
        _check_head(origin, seq, ValueError)
        if seq:
            h.update(origin)
            h.update(seq.to_bytes(8, "big"))
    return h.digest()


def vector_diff(
    mine: VersionVector, theirs: VersionVector
) -> tuple[dict[bytes, int], dict[bytes, int]]:
    """(alerts I lack per origin, alerts they lack per origin), counting contiguous heads only."""
    i_lack: dict[bytes, int] = {}
    they_lack: dict[bytes, int] = {}
    for origin in mine.keys() | theirs.keys():
        delta = theirs.get(origin, 0) - mine.get(origin, 0)
        if delta > 0:
            i_lack[origin] = delta
        elif delta < 0:
            they_lack[origin] = -delta
    return i_lack, they_lack


@dataclass(frozen=True, slots=True, order=True)
class Range:
    """An origin's alerts with from_seq <= seq <= to_seq (a RangeRequest)."""

    origin: bytes
    from_seq: int
    to_seq: int

    def __post_init__(self) -> None:
        if len(self.origin) != ORIGIN_BYTES:
            raise InvalidCatchupFrame(f"range origin must be {ORIGIN_BYTES} bytes")
        if not 1 <= self.from_seq <= self.to_seq <= MAX_SEQ:
            raise InvalidCatchupFrame(f"bad range {self.from_seq}..{self.to_seq}")

    @property
    def size(self) -> int:
        return self.to_seq - self.from_seq + 1

    def __contains__(self, key: object) -> bool:
        return (
            isinstance(key, tuple)
            and len(key) == 2
            and key[0] == self.origin
            and isinstance(key[1], int)
            and self.from_seq <= key[1] <= self.to_seq
        )


def missing_ranges(
    mine: VersionVector,
    theirs: VersionVector,
    *,
    max_per_range: int,
    held: Mapping[bytes, Iterable[int]] | None = None,
    limit: int | None = None,
) -> list[Range]:
    """The ranges I should ask a peer for, given both vectors.

    For each origin where theirs > mine: seqs mine+1 .. theirs, minus the seqs in
    `held[origin]` (out-of-order alerts I hold above my head), split into ranges of
    at most `max_per_range`. Ranges are ordered round-robin across origins (each
    origin's lowest first), so one long chain does not starve the others. At most
    `limit` ranges are returned.
    """
    held = held or {}

    def excluded(origin: bytes) -> list[tuple[int, int]]:
        return _runs(held.get(origin, ()))

    ranges, _ = _plan(mine, theirs, max_per_range, excluded, limit)
    return ranges


def parse_vector(
    heads: Iterable[tuple[bytes, int]], *, max_heads: int = MAX_HEADS
) -> dict[bytes, int]:
    """A peer's VersionVector from its (origin, seq) heads, checked; zeros dropped."""
    vector: dict[bytes, int] = {}
    for i, (origin, seq) in enumerate(heads):
        if i >= max_heads:
            raise LimitExceeded(f"vector has more than {max_heads} heads")
        _check_head(origin, seq, InvalidCatchupFrame)
        if origin in vector:
            raise InvalidCatchupFrame("vector names an origin twice")
        vector[origin] = seq
    return {o: s for o, s in vector.items() if s}


@dataclass(frozen=True, slots=True)
class AlertRef:
    """Where an alert sits in its origin's chain, and its id (SHA-256 of the body)."""

    origin: bytes
    seq: int
    id: bytes


def is_equivocation(a: AlertRef, b: AlertRef) -> bool:
    """True when a and b are two different bodies for one (origin, seq).

    With both signatures verified against `origin`, the two signed bodies are the
    EquivocationProof.
    """
    return a.origin == b.origin and a.seq == b.seq and a.id != b.id


def _check_head(origin: bytes, seq: int, error: type[Exception]) -> None:
    if len(origin) != ORIGIN_BYTES:
        raise error(f"origin must be {ORIGIN_BYTES} bytes, got {len(origin)}")
    if not 0 <= seq <= MAX_SEQ:
        raise error(f"seq out of range: {seq}")


def _runs(seqs: Iterable[int], lo: int = 0, hi: int | None = None) -> list[tuple[int, int]]:
    """Sorted maximal intervals covering the given seqs; at least those overlapping
    lo..hi. Runs a store keeps as runs (`HeldRuns`) are taken as they are, never
    expanded into their seqs."""
    if isinstance(seqs, HeldRuns):
        return seqs.runs(lo, hi)
    runs: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if runs and runs[-1][1] + 1 == s:
            runs[-1] = (runs[-1][0], s)
        else:
            runs.append((s, s))
    return runs


def _holes(lo: int, hi: int, excluded: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Sub-intervals of lo..hi not covered by the excluded intervals."""
    cursor = lo
    for a, b in sorted(excluded):
        if b < cursor:
            continue
        if a > hi:
            break
        if a > cursor:
            yield cursor, a - 1
        cursor = b + 1
    if cursor <= hi:
        yield cursor, hi


def _chunks(origin: bytes, holes: Iterable[tuple[int, int]], size: int) -> Iterator[Range]:
    for a, b in holes:
        for start in range(a, b + 1, size):
            yield Range(origin, start, min(start + size - 1, b))


def _plan(
    mine: VersionVector,
    theirs: VersionVector,
    max_per_range: int,
    excluded: Callable[[bytes], Iterable[tuple[int, int]]],
    limit: int | None,
) -> tuple[list[Range], bool]:
    """(ranges, truncated): what to request, round-robin across origins, lazily."""
    if max_per_range < 1:
        raise ValueError("max_per_range must be at least 1")
    queues: deque[Iterator[Range]] = deque()
    for origin in sorted(theirs):
        lo, hi = mine.get(origin, 0) + 1, theirs[origin]
        if hi >= lo:
            queues.append(_chunks(origin, _holes(lo, hi, excluded(origin)), max_per_range))
    ranges: list[Range] = []
    while queues:
        if limit is not None and len(ranges) >= limit:
            return ranges, any(next(q, None) is not None for q in queues)
        queue = queues.popleft()
        nxt = next(queue, None)
        if nxt is not None:
            ranges.append(nxt)
            queues.append(queue)
    return ranges, False


# --- local state ----------------------------------------------------------------
