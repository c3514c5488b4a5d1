"""An in-memory store for tests and the simulator; same behaviour as SqliteStore."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from types import TracebackType
from typing import Self

from node.core.alerts import AlertRecord
from node.core.chain import Chains
from node.store.base import (
    Equivocation,
    Held,
    PutOutcome,
    Query,
    Stored,
    classify,
    nothing_written,
    unchained,
)


class MemoryStore:
    def __init__(self) -> None:
        self._chains = Chains()
        self._rows: list[Stored] = []  # in local_seq order (local_seq = index + 1)
        self._by_id: dict[bytes, Stored] = {}
        self._by_slot: dict[tuple[bytes, int], Stored] = {}
        self._by_key: dict[str, list[Stored]] = {}
        self._requests: dict[str, bytes] = {}
        self._equivocations: list[Equivocation] = []
        self._second_ids: set[bytes] = set()

    @property
    def chains(self) -> Chains:
        return self._chains

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def put(
        self,
        records: Sequence[AlertRecord],
        *,
        now_ms: int,
        request_id: str = "",
        gathered: bool = False,
        own: bool = False,
    ) -> list[PutOutcome]:
        # Everything that can fail comes before the first change: a failure wrote nothing.
        try:
            if own and (refused := unchained(records, self._chains.holds, set())):
                raise refused
            outcomes = classify(
                records,
                held=self._by_id,
                known_equivocations=self._second_ids,
                holds=self._chains.holds,
            )
        except Exception as exc:
            nothing_written(exc)
            raise
        for r, outcome in zip(records, outcomes, strict=True):
            if outcome is PutOutcome.ACCEPTED:
                stored = Stored(r, len(self._rows) + 1, now_ms)
                self._rows.append(stored)
                self._by_id[r.id] = stored
                self._by_slot[(r.origin, r.seq)] = stored
                for key in r.index_keys:
                    self._by_key.setdefault(key, []).append(stored)
                self._chains.add(r.origin, r.seq)
            elif outcome is PutOutcome.EQUIVOCATION:
                first = self._by_slot[(r.origin, r.seq)].record
                self._equivocations.append(Equivocation(first, r, now_ms))
                self._second_ids.add(r.id)
        if request_id and records and request_id not in self._requests:
            self._requests[request_id] = records[0].id
        return outcomes

    async def get(self, alert_id: bytes) -> Stored | None:
        return self._by_id.get(alert_id)

    async def missing(self, ids: Collection[bytes]) -> set[bytes]:
        return {i for i in ids if i not in self._by_id}

    async def held(self, ids: Collection[bytes]) -> dict[bytes, Held]:
        out = {}
        for i in ids:
            stored = self._by_id.get(i)
            if stored is not None:
                r = stored.record
                out[i] = Held(r.signature, r.origin, r.seq)
        return out

    async def search(self, query: Query, *, limit: int, before: int | None = None) -> list[Stored]:
        end = len(self._rows) if before is None else min(before - 1, len(self._rows))
        out: list[Stored] = []
        for stored in reversed(self._rows[: max(end, 0)]):
            if query.matches(stored.record):
                out.append(stored)
                if len(out) == limit:
                    break
        return out

    async def after(self, query: Query, *, cursor: int, limit: int) -> list[Stored]:
        out: list[Stored] = []
        for stored in self._rows[max(cursor, 0) :]:
            if query.matches(stored.record):
                out.append(stored)
                if len(out) == limit:
                    break
        return out

    async def lookup(
        self, keys: Collection[str], *, now_ms: int, include_expired: bool = False
    ) -> dict[str, list[Stored]]:
        found: dict[str, list[Stored]] = {}
        for key in keys:
            hits = [
                s
                for s in self._by_key.get(key, ())
                if include_expired or not s.record.expired(now_ms)
            ]
            if hits:
                found[key] = hits
        return found

    async def range(
        self, origin: bytes, from_seq: int, to_seq: int, *, limit: int
    ) -> list[AlertRecord]:
        out = []
        for seq in range(from_seq, min(to_seq, self._chains.get(origin).max_seq) + 1):
            stored = self._by_slot.get((origin, seq))
            if stored is not None:
                out.append(stored.record)
                if len(out) == limit:
                    break
        return out

    async def settle_doubt(self) -> None:
        """Nothing is ever in doubt here."""

    async def request(self, request_id: str) -> bytes | None:
        return self._requests.get(request_id)

    async def count(self) -> int:
        return len(self._rows)

    async def last_cursor(self) -> int:
        return len(self._rows)

    async def equivocations(self) -> list[Equivocation]:
        return list(self._equivocations)
