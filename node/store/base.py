"""The storage interface every store implements, and the types it speaks.

A store is an async context manager: entering it opens it (and starts whatever
background writer it needs), leaving it writes everything already accepted and
closes it. Both implementations keep per-origin chain state in memory
(`chains`) so catch-up summaries and equivocation checks cost no query.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self

from node.core.alerts import AlertRecord
from node.core.chain import Chains


class PutOutcome(enum.Enum):
    ACCEPTED = "accepted"  # new; stored
    DUPLICATE = "duplicate"  # this id (or this equivocating copy) was already held
    EQUIVOCATION = "equivocation"  # same origin+seq as a held alert, other body; proof kept


@dataclass(frozen=True, slots=True)
class Stored:
    record: AlertRecord
    local_seq: int  # position in this store; the cursor clients page and resume by
    received_at_ms: int


class Held(NamedTuple):
    signature: bytes
    origin: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class Equivocation:
    """Proof that `first.origin` signed two bodies for one seq."""

    first: AlertRecord
    second: AlertRecord
    detected_at_ms: int


@dataclass(frozen=True, slots=True)
class Query:
    """A filter over stored alerts; empty fields match everything."""

    now_ms: int
    categories: frozenset[int] = frozenset()
    origins: frozenset[bytes] = frozenset()
    min_severity: int = 0
    since_ms: int = 0
    until_ms: int = 0
    keys: frozenset[str] = field(default_factory=frozenset)  # indicator lookup keys
    any_key: bool = False  # True: keys is a filter even when it is empty (matches nothing)
    include_expired: bool = False

    def matches(self, r: AlertRecord) -> bool:
        return (
            (not self.categories or r.category in self.categories)
            and (not self.origins or r.origin in self.origins)
            and r.severity >= self.min_severity
            and (not self.since_ms or r.created_at_ms >= self.since_ms)
            and (not self.until_ms or r.created_at_ms < self.until_ms)
            and (not (self.keys or self.any_key) or not self.keys.isdisjoint(r.index_keys))
            and (self.include_expired or not r.expired(self.now_ms))
        )


class AlertStore(Protocol):
    @property
    def chains(self) -> Chains: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def put(
        self,
        records: Sequence[AlertRecord],
        *,
        now_ms: int,
        request_id: str = "",
        gathered: bool = False,
    ) -> list[PutOutcome]:
        """Store what is new, durably, before returning; one outcome per record.

        `request_id` (publish only) is remembered with the first record so a
        retried publish finds the alert it already created. `gathered`: the caller
        makes several puts at once (asyncio.gather), meant to share one commit.
        """
        ...

    async def get(self, alert_id: bytes) -> Stored | None: ...

    async def missing(self, ids: Collection[bytes]) -> set[bytes]:
        """The ids among `ids` this store does not hold."""
        ...

    async def held(self, ids: Collection[bytes]) -> dict[bytes, Held]:
        """For the ids among `ids` this store holds: signature, origin and seq."""
        ...

    async def search(self, query: Query, *, limit: int, before: int | None = None) -> list[Stored]:
        """Newest first, local_seq < before."""
        ...

    async def after(self, query: Query, *, cursor: int, limit: int) -> list[Stored]:
        """Oldest first, local_seq > cursor: the subscription feed."""
        ...

    async def lookup(
        self, keys: Collection[str], *, now_ms: int, include_expired: bool = False
    ) -> dict[str, list[Stored]]:
        """For each key that matches, the alerts indexed under it."""
        ...

    async def range(
        self, origin: bytes, from_seq: int, to_seq: int, *, limit: int
    ) -> list[AlertRecord]:
        """The origin's alerts with from_seq <= seq <= to_seq, in seq order."""
        ...

    async def request(self, request_id: str) -> bytes | None:
        """The alert id a publish with this client request id created, if any."""
        ...

    async def count(self) -> int: ...

    async def last_cursor(self) -> int: ...

    async def equivocations(self) -> list[Equivocation]: ...


SlotHeld = Callable[[bytes, int], bool]


def classify(
    records: Sequence[AlertRecord],
    *,
    held: Collection[bytes],
    known_equivocations: Collection[bytes],
    holds: SlotHeld,
) -> list[PutOutcome]:
    """Decide each record's outcome against what is held (shared by every store).

    `held`: ids already stored; `known_equivocations`: ids already kept as the
    second copy of an equivocation; `holds(origin, seq)`: whether the store holds an
    alert in that slot (its chains' `holds`, or an answer the store worked out for this
    batch already). Records earlier in the batch count as held.
    """
    outcomes: list[PutOutcome] = []
    batch_ids: set[bytes] = set()
    batch_slots: set[tuple[bytes, int]] = set()
    for r in records:
        if r.id in held or r.id in batch_ids or r.id in known_equivocations:
            outcomes.append(PutOutcome.DUPLICATE)
        elif holds(r.origin, r.seq) or (r.origin, r.seq) in batch_slots:
            outcomes.append(PutOutcome.EQUIVOCATION)
        else:
            outcomes.append(PutOutcome.ACCEPTED)
            batch_slots.add((r.origin, r.seq))
        batch_ids.add(r.id)
    return outcomes


def record_from_row(row: Any, index_keys: tuple[str, ...]) -> AlertRecord:
    """An AlertRecord from a row (a sequence, or a driver record indexed the same way)
    whose first twelve columns are its fields in order
    (id ... title); each store decodes its own index keys."""
    return AlertRecord(
        id=row[0],
        body=row[1],
        signature=row[2],
        origin=row[3],
        seq=row[4],
        prev=row[5],
        created_at_ms=row[6],
        expires_at_ms=row[7],
        category=row[8],
        severity=row[9],
        confidence=row[10],
        title=row[11],
        index_keys=index_keys,
    )
