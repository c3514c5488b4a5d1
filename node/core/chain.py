"""Per-origin chain state: which seqs a node holds, and its highest contiguous seq.

Each origin's alerts are numbered 1, 2, 3, ... The highest contiguous seq is the
whole of an origin's state in a catch-up summary; seqs held above a gap (alerts
that arrived out of order) are kept until the gap is filled, as runs of consecutive
seqs: a node that holds a million alerts of an origin above one missing seq keeps two
integers for them, not a set of a million (about 60 MiB).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field


class _Above(Collection[int]):
    """The seqs of a state's runs, read-only (what `Chains.out_of_order` returns)."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, starts: list[int], ends: list[int]) -> None:
        self._starts, self._ends = starts, ends

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int):
            return False
        i = bisect_right(self._starts, seq) - 1
        return i >= 0 and seq <= self._ends[i]

    def __iter__(self) -> Iterator[int]:
        for start, end in zip(self._starts, self._ends, strict=True):
            yield from range(start, end + 1)

    def __len__(self) -> int:
        return sum(end - start + 1 for start, end in zip(self._starts, self._ends, strict=True))


@dataclass(slots=True)
class ChainState:
    contiguous: int = 0
    # Seqs held above a gap, as sorted, disjoint, non-adjacent runs starts[i]..ends[i],
    # all above contiguous + 1.
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    held_above: int = 0  # how many seqs the runs hold

    def holds(self, seq: int) -> bool:
        if seq <= self.contiguous:
            return True
        i = bisect_right(self.starts, seq) - 1
        return i >= 0 and seq <= self.ends[i]

    def add(self, seq: int) -> None:
        if self.holds(seq):
            return
        starts, ends = self.starts, self.ends
        if seq == self.contiguous + 1:
            self.contiguous = seq
            if starts and starts[0] == seq + 1:  # the gap closed: the first run joins
                self.contiguous = ends[0]
                self.held_above -= ends[0] - starts[0] + 1
                del starts[0], ends[0]
            return
        self.held_above += 1
        i = bisect_right(starts, seq)  # runs before i start at or below seq
        joins_left = i > 0 and ends[i - 1] == seq - 1
        joins_right = i < len(starts) and starts[i] == seq + 1
        if joins_left and joins_right:
            ends[i - 1] = ends[i]
            del starts[i], ends[i]
        elif joins_left:
            ends[i - 1] = seq
        elif joins_right:
            starts[i] = seq
        else:
            starts.insert(i, seq)
            ends.insert(i, seq)

    @property
    def above(self) -> Collection[int]:
        """Seqs held above the first gap."""
        return _Above(self.starts, self.ends)

    @property
    def runs(self) -> list[tuple[int, int]]:
        """The seqs held above the first gap as (first, last) runs, in order."""
        return list(zip(self.starts, self.ends, strict=True))

    @property
    def max_seq(self) -> int:
        return self.ends[-1] if self.ends else self.contiguous

    @property
    def count(self) -> int:
        return self.contiguous + self.held_above


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

    def out_of_order(self, origin: bytes) -> Collection[int]:
        """Seqs held above the origin's first gap (a snapshot: later adds do not show)."""
        state = self._by_origin.get(origin)
        if state is None:
            return frozenset()
        return _Above(list(state.starts), list(state.ends))

    def items(self) -> list[tuple[bytes, ChainState]]:
        return sorted(self._by_origin.items())
