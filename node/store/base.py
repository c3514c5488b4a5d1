"""The storage interface every store implements, and the types it speaks.

A store is an async context manager: entering it opens it (and starts whatever
background writer it needs), leaving it writes everything already accepted and
closes it. Both implementations keep per-origin chain state in memory
(`chains`) so catch-up summaries and equivocation checks cost no query.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self, TypeVar

from node.core.alerts import AlertRecord
from node.core.chain import Chains
from node.core.errors import StoreClosed


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
        own: bool = False,
    ) -> list[PutOutcome]:
        """Store what is new, durably, before returning; one outcome per record.

        `request_id` (publish only) is remembered with the first record so a
        retried publish finds the alert it already created. `gathered`: the caller
        makes several puts at once (asyncio.gather), meant to share one commit.
        `own`: the records are this node's own new alerts (publish): each must follow
        one the store holds (seq 1 excepted) in a slot still free, else the put raises
        `OwnChainBroken` and writes nothing (see `unchained`).

        A put that fails having written nothing (its transaction never committed) raises
        an exception marked so (`nothing_written`); an unmarked failure may have
        committed (a connection lost during COMMIT).

        A put queues (or commits) its records before its first await: the node starts
        its own puts in the step that signs them, and relies on this for them to reach
        the store in seq order (docs/architecture.md; `unchained` refuses any other).
        """
        ...

    async def settle_doubt(self) -> None:
        """Return once a commit in doubt that the store could not read back yet (its
        chains may be behind the database) has been read back: the node calls this before
        it takes its chain's head from `chains` after a lost put. Raises (marked
        `nothing_written`) if the read fails again; at once if nothing is in doubt."""
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

E = TypeVar("E", bound=BaseException)
_NOTHING_WRITTEN = "alertmesh_nothing_written"


def nothing_written(exc: E) -> E:
    """Mark `exc`, a put's failure, as one that wrote nothing: its transaction never
    reached COMMIT, or the database answered the COMMIT with an error. Each store marks
    the failures it knows to be clean; any other failure of a put may have committed."""
    setattr(exc, _NOTHING_WRITTEN, True)
    return exc


def wrote_nothing(exc: BaseException | None) -> bool:
    """Whether `exc` is a put's failure marked by `nothing_written`."""
    return getattr(exc, _NOTHING_WRITTEN, False) is True


def unread_doubt() -> StoreClosed:
    """The failure of a put or a `settle_doubt` while a commit in doubt cannot be read back."""
    return nothing_written(
        StoreClosed(
            "the node's store could not read back a failed commit (the node's log has "
            "details); nothing was written: send it again"
        )
    )


@dataclass(slots=True)
class ReadBack:
    """Queued for a store's writer by `settle_doubt`: answered once the writer has read
    back a commit in doubt, or tried to."""

    done: asyncio.Future[None]

    def answer(self) -> None:
        if not self.done.done():  # its caller may have left
            self.done.set_result(None)


async def read_back_by_writer(
    queue: asyncio.Queue[Any], closing: bool, in_doubt: Callable[[], bool]
) -> None:
    """A store's `settle_doubt` while it is in doubt: queue a ReadBack for its writer,
    which reads back between its commits, and wait; raise `unread_doubt()` if the store
    is closing (no writer would answer) or is still in doubt after the read."""
    if closing:
        raise unread_doubt()
    waiter = ReadBack(asyncio.get_running_loop().create_future())
    queue.put_nowait(waiter)
    await waiter.done
    if in_doubt():
        raise unread_doubt()


class OwnChainBroken(StoreClosed):
    """The store refused an own alert (put own=True) that does not follow what it holds:
    the alert before it is not held (its put failed) or its slot is taken (an earlier put
    whose answer was lost committed after all, or the node took in its own alerts from
    peers). Nothing was written; the node takes its chain's head from the store again,
    and the client publishes again (UNAVAILABLE, like StoreClosed)."""


def unchained(
    records: Sequence[AlertRecord], holds: SlotHeld, earlier: set[tuple[bytes, int]]
) -> OwnChainBroken | None:
    """Why an own put of `records` (in seq order) must be refused, or None (then their
    slots join `earlier`). `holds(origin, seq)`: the store holds that slot; `earlier`: the
    slots of the puts of the same commit accepted so far. Refusing here keeps the node's
    own chain free of holes and of two alerts for one seq, whatever became of the puts
    before. Costs O(len(records)): `earlier` is not copied."""
    mine: set[tuple[bytes, int]] = set()
    for r in records:
        slot = (r.origin, r.seq)
        if holds(r.origin, r.seq) or slot in earlier or slot in mine:
            return nothing_written(
                OwnChainBroken(
                    f"this node's alert {r.seq} was not stored: it does not follow this "
                    f"node's chain as stored (alert {r.seq} is already held); publish it again"
                )
            )
        before = (r.origin, r.seq - 1)
        if r.seq > 1 and not holds(*before) and before not in earlier and before not in mine:
            return nothing_written(
                OwnChainBroken(
                    f"this node's alert {r.seq} was not stored: it does not follow this "
                    f"node's chain as stored (alert {r.seq - 1} is not held); publish it again"
                )
            )
        mine.add(slot)
    earlier |= mine
    return None


class QueuedPut(Protocol):
    """A put waiting for a store's writer: its records, whether they are own, its answer."""

    @property
    def records(self) -> Sequence[AlertRecord]: ...

    @property
    def own(self) -> bool: ...

    @property
    def done(self) -> asyncio.Future[list[PutOutcome]]: ...


P = TypeVar("P", bound=QueuedPut)


def answer_puts(
    batch: Sequence[QueuedPut], answers: Sequence[list[PutOutcome]] | BaseException
) -> None:
    """Answer each put of one commit: its outcomes, or the commit's failure (a put whose
    caller has left is skipped)."""
    if isinstance(answers, BaseException):
        for put in batch:
            if not put.done.done():
                put.done.set_exception(answers)
        return
    for put, outcomes in zip(batch, answers, strict=True):
        if not put.done.done():
            put.done.set_result(outcomes)


def _first_slot(put: QueuedPut) -> tuple[bytes, int]:
    first = put.records[0]
    return first.origin, first.seq


def refuse_unchained(batch: list[P], holds: SlotHeld) -> list[P]:
    """The puts of `batch` (one commit's) but the own ones that do not follow what the
    store holds or another put of the batch: those fail (`unchained`). The check does not
    depend on the order the puts arrived in: own puts are checked, and written, in seq
    order (a put of alert N+1 may queue before the one of N), and peers' alerts in the
    batch count as held. One pass, O(records) (a sort of puts mostly in order)."""
    if not any(put.own for put in batch):
        return batch  # peers' alerts only (an ingest): nothing to check, no cost per alert
    own = [put for put in batch if put.own]
    if len(own) > 1:
        own.sort(key=_first_slot)
    earlier: set[tuple[bytes, int]] = set()
    if len(own) < len(batch):
        earlier.update((r.origin, r.seq) for put in batch if not put.own for r in put.records)
    accepted: list[P] = []
    for put in own:
        if refused := unchained(put.records, holds, earlier):
            if not put.done.done():
                put.done.set_exception(refused)
        else:
            accepted.append(put)
    if len(own) == len(batch):
        return accepted
    # The own puts kept take the first places of the own puts, in seq order.
    in_order = iter(accepted)
    kept: list[P] = []
    for put in batch:
        if not put.own:
            kept.append(put)
        elif (next_own := next(in_order, None)) is not None:
            kept.append(next_own)
    return kept


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
