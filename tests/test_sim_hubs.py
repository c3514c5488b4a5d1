"""The simulator's tree hubs (node/sim/hubs.py): what a federation's latency survey would
name, best-placed first."""

from __future__ import annotations

import pytest

from node.sim import hubs


def grid(side: int) -> dict[int, list[int]]:
    graph: dict[int, list[int]] = {i: [] for i in range(side * side)}
    for i in graph:
        row, col = divmod(i, side)
        if col + 1 < side:
            graph[i].append(i + 1)
            graph[i + 1].append(i)
        if row + 1 < side:
            graph[i].append(i + side)
            graph[i + side].append(i)
    return graph


def test_the_member_at_the_middle_is_the_first_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 5 x 5 grid of 10 ms links, every member surveyed: the tree rooted at the middle
    # (member 12) is 8 hops across, any other root's is longer.
    monkeypatch.setattr(hubs, "SURVEYED", 1)
    graph = grid(5)
    assert hubs.choose(graph, lambda u, v: 0.010, 0.025, 1) == [12]
    assert len(hubs.choose(graph, lambda u, v: 0.010, 0.025, 8)) == 8
    assert hubs.choose(graph, lambda u, v: 0.010, 0.025, 0) == []


def test_only_every_tenth_member_is_surveyed() -> None:
    assert set(hubs.choose(grid(5), lambda u, v: 0.010, 0.025, 8)) == {0, 10, 20}
