"""Per-origin chain state (node/core/chain.py): seqs above a gap are kept as runs, and
answer exactly as the set of seqs they stand for."""

import itertools
import random

from node.core import chain
from node.core.chain import Chains, ChainState

ORIGIN = b"o" * 32


def model_check(state: ChainState, held: set[int]) -> None:
    contiguous = 0
    while contiguous + 1 in held:
        contiguous += 1
    above = {s for s in held if s > contiguous}
    assert state.contiguous == contiguous
    assert set(state.above) == above and len(state.above) == len(above)
    assert state.count == len(held)
    assert state.max_seq == max(held, default=0)
    for seq in range(0, max(held, default=0) + 3):
        assert state.holds(seq) == (seq in held or seq == 0)
        assert (seq in state.above) == (seq in above)
    runs = state.runs
    assert all(a <= b for a, b in runs)
    assert all(b + 1 < c for (_, b), (c, _) in itertools.pairwise(runs))


def test_seqs_in_any_order_answer_as_the_set_they_stand_for() -> None:
    rng = random.Random(3)
    for _ in range(30):
        seqs = list(range(1, rng.randrange(2, 120)))
        rng.shuffle(seqs)
        seqs = seqs[: rng.randrange(1, len(seqs) + 1)]
        state, held = ChainState(), set()
        for seq in seqs + seqs[:5]:  # and some again
            state.add(seq)
            held.add(seq)
            model_check(state, held)


def test_a_million_seqs_above_one_gap_are_one_run() -> None:
    state = ChainState()
    for seq in range(2, 1_000_002):
        state.add(seq)
    assert state.runs == [(2, 1_000_001)] and state.contiguous == 0
    assert state.count == 1_000_000 and state.max_seq == 1_000_001
    state.add(1)
    assert state.contiguous == 1_000_001 and state.runs == [] and state.count == 1_000_001


def test_out_of_order_is_a_snapshot() -> None:
    chains = Chains()
    for seq in (1, 3, 4, 7):
        chains.add(ORIGIN, seq)
    seen = chains.out_of_order(ORIGIN)
    chains.add(ORIGIN, 5)
    chains.add(ORIGIN, 2)
    assert sorted(seen) == [3, 4, 7] and 4 in seen and 5 not in seen and len(seen) == 3
    assert sorted(chains.out_of_order(ORIGIN)) == [7]
    assert chains.vector() == {ORIGIN: 5}
    assert not chains.out_of_order(b"x" * 32)


def test_runs_split_across_blocks_answer_as_the_set_they_stand_for(monkeypatch) -> None:
    # Blocks of two to four runs, so that joins, splits and emptied blocks all happen
    # at block edges within a hundred seqs.
    monkeypatch.setattr(chain, "RUNS_PER_BLOCK", 2)
    rng = random.Random(5)
    for _ in range(30):
        seqs = list(range(1, rng.randrange(2, 120)))
        rng.shuffle(seqs)
        state, held = ChainState(), set()
        for seq in seqs:
            state.add(seq)
            held.add(seq)
            model_check(state, held)
            assert all(0 < size < 4 for size in state.block_sizes())


def test_seqs_arriving_in_descending_order_stay_cheap_to_add() -> None:
    # 20,000 runs, each new one before all the others (the worst case of one sorted
    # list, where every add shifts every run). Each add shifts at most one block's
    # runs, and the blocks stay small however many runs there are.
    state = ChainState()
    runs = 20_000
    for seq in range(2 * runs + 1, 2, -2):
        state.add(seq)
    sizes = state.block_sizes()
    assert sum(sizes) == runs == len(state.runs)
    assert max(sizes) < 2 * chain.RUNS_PER_BLOCK
    assert len(sizes) <= 2 * runs // chain.RUNS_PER_BLOCK
    assert state.runs[:2] == [(3, 3), (5, 5)] and state.max_seq == 2 * runs + 1
    # Filling the gaps, also in descending order, joins them back into one run.
    for seq in range(2 * runs, 3, -2):
        state.add(seq)
    assert state.runs == [(3, 2 * runs + 1)] and state.block_sizes() == [1]
    assert state.count == 2 * runs - 1
