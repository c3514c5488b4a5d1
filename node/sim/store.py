"""A synchronous store with node.store.MemoryStore's behaviour, for simulated hosts.

MemoryStore is async (it implements the AlertStore protocol); the simulator needs a
store it can call between two events. This one decides outcomes with the same
`classify` and keeps chain state in the same `Chains`, so heads, digests and
equivocation detection are exactly the real ones. It outlives a crash of its host,
like the SQLite file of a real node: every accepted alert is durable.

It also keeps, per alert, when it arrived (virtual seconds) and after how many hops:
measurements, not protocol state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from node.core.alerts import AlertRecord
from node.core.chain import Chains
from node.store.base import Equivocation, PutOutcome, classify


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # virtual seconds
    hops: int  # 0 at the origin
    catchup: bool  # came by catch-up or in a proof, not by gossip


class SimStore:
    def __init__(self) -> None:
        self.chains = Chains()
        self._by_id: dict[bytes, AlertRecord] = {}
        self._by_slot: dict[tuple[bytes, int], AlertRecord] = {}
        self._second_ids: dict[bytes, None] = {}
        self.equivocations: list[Equivocation] = []
        self.arrivals: dict[bytes, Arrival] = {}

    def put(
        self, records: Sequence[AlertRecord], arrivals: Sequence[Arrival], now_ms: int
    ) -> list[PutOutcome]:
        """Store what is new; one outcome per record (node.store.base.classify)."""
        outcomes = classify(
            records, held=self._by_id, known_equivocations=self._second_ids, holds=self.chains.holds
        )
        for r, arrival, outcome in zip(records, arrivals, outcomes, strict=True):
            if outcome is PutOutcome.ACCEPTED:
                self._by_id[r.id] = r
                self._by_slot[(r.origin, r.seq)] = r
                self.chains.add(r.origin, r.seq)
                self.arrivals[r.id] = arrival
            elif outcome is PutOutcome.EQUIVOCATION:
                first = self._by_slot[(r.origin, r.seq)]
                self.equivocations.append(Equivocation(first, r, now_ms))
                self._second_ids[r.id] = None
        return outcomes

    def holds(self, alert_id: bytes) -> bool:
        return alert_id in self._by_id

    def get(self, alert_id: bytes) -> AlertRecord | None:
        return self._by_id.get(alert_id)

    def hops(self, alert_id: bytes) -> int:
        arrival = self.arrivals.get(alert_id)
        return arrival.hops if arrival is not None else 0

    def range(self, origin: bytes, from_seq: int, to_seq: int, *, limit: int) -> list[AlertRecord]:
        """The origin's alerts with from_seq <= seq <= to_seq, in seq order."""
        out: list[AlertRecord] = []
        for seq in range(from_seq, min(to_seq, self.chains.get(origin).max_seq) + 1):
            record = self._by_slot.get((origin, seq))
            if record is not None:
                out.append(record)
                if len(out) == limit:
                    break
        return out

    def __len__(self) -> int:
        return len(self._by_id)

    def records(self) -> list[AlertRecord]:
        return list(self._by_id.values())
