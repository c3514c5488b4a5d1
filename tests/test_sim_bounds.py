"""`scripts/simulate bounds` (node/sim/bounds.py): the hop bound under a time budget."""

from node.sim.bounds import _hops_within

# 0 - 1 - 2 - 3 over 10 ms links, and a direct 0 - 3 link of 100 ms.
GRAPH = {0: [1, 3], 1: [0, 2], 2: [1, 3], 3: [2, 0]}


def latency(u: int, v: int) -> float:
    return 0.100 if {u, v} == {0, 3} else 0.010


def test_the_fewest_hops_within_a_budget_take_slow_links_only_when_the_budget_allows() -> None:
    assert _hops_within(GRAPH, latency, 0, budget=0.2) == 2  # 3 direct; 2 is two hops away
    assert _hops_within(GRAPH, latency, 0, budget=0.05) == 3  # 3 only the long way round
    assert _hops_within(GRAPH, latency, 0, budget=0.005) == float("inf")
