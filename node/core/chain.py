"""Per-origin chain state: which seqs a node holds, and its highest contiguous seq.

Each origin's alerts are numbered 1, 2, 3, ... The highest contiguous seq is the
whole of an origin's state in a catch-up summary; seqs held above a gap (alerts
that arrived out of order) are kept until the gap is filled.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ChainState:
    contiguous: int = 0
    above: set[int] = field(default_factory=set)  # seqs held above a gap

    def holds(self, seq: int) -> bool:
        return seq <= self.contiguous or seq in self.above

    def add(self, seq: int) -> None:
        if self.holds(seq):
            return
        if seq == self.contiguous + 1:
            self.contiguous = seq
            while self.contiguous + 1 in self.above:
                self.contiguous += 1
                self.above.discard(self.contiguous)
        else:
            self.above.add(seq)

    @property
    def max_seq(self) -> int:
        return max(self.above, default=self.contiguous)

    @property
    def count(self) -> int:
        return self.contiguous + len(self.above)


class Chains:
    """Chain state for every origin a store holds alerts from."""

    def __init__(self) -> None:
        self._by_origin: dict[bytes, ChainState] = {}

    def holds(self, origin: bytes, seq: int) -> bool:
        state = self._by_origin.get(origin)
        return state is not None and state.holds(seq)

    def add(self, origin: bytes, seq: int) -> None:
        state = self._by_origin.get(origin)
        if state is None:
            state = self._by_origin[origin] = ChainState()
        state.add(seq)

    def get(self, origin: bytes) -> ChainState:
        return self._by_origin.get(origin) or ChainState()

    def vector(self) -> dict[bytes, int]:
        """origin -> highest contiguous seq (the catch-up summary)."""
        return {o: s.contiguous for o, s in self._by_origin.items() if s.contiguous}

    def out_of_order(self, origin: bytes) -> frozenset[int]:
        """Seqs held above the origin's first gap."""
        state = self._by_origin.get(origin)
        return frozenset(state.above) if state else frozenset()

    def items(self) -> list[tuple[bytes, ChainState]]:
        return sorted(self._by_origin.items())
