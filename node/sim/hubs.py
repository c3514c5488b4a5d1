"""Which members the federation names as tree hubs (the roster's `tree_priority`).

The rooted tree's root is the reachable member with the highest tree priority, then the
smallest key (node/core/gossip_tree.py, T1). Where the root sits sets most of the tree's
coverage time (docs/simulation.md), so a federation names a few well-connected members
as hubs, as the operators of an 802.1D network set the priority of the bridges they want
as root. This module is that choice in the simulator, made as an operator would make it
from a latency survey, before the run and without knowing who will misbehave: of every
`SURVEYED`-th member, the `count` whose shortest-path tree (each link its latency plus
the tree's hop cost, as T2 builds it) has the smallest diameter, ranked. The tree then
takes the best-ranked hub that is up and sends TREE frames; a hub that misbehaves or is
down is passed over as today's smallest key is.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

SURVEYED = 10  # every 10th member is surveyed (100 of 1,000)


def choose(
    graph: dict[int, list[int]], latency: Callable[[int, int], float], hop_s: float, count: int
) -> list[int]:
    """The `count` best-placed surveyed members, best first."""
    if count <= 0 or not graph:
        return []
    surveyed = sorted(graph)[::SURVEYED]
    return sorted(surveyed, key=lambda r: (_tree_diameter(graph, latency, hop_s, r), r))[:count]


def _tree_diameter(
    graph: dict[int, list[int]], latency: Callable[[int, int], float], hop_s: float, root: int
) -> float:
    """The latency diameter of the shortest-path tree from `root` under latency + hop."""
    dist = {root: 0.0}
    parent: dict[int, int] = {}
    queue = [(0.0, root)]
    while queue:
        d, u = heapq.heappop(queue)
        if d > dist[u]:
            continue
        for v in graph[u]:
            nd = d + latency(u, v) + hop_s
            if nd < dist.get(v, float("inf")) - 1e-12:
                dist[v], parent[v] = nd, u
                heapq.heappush(queue, (nd, v))
    height: dict[int, float] = {}
    branches: dict[int, list[float]] = {}
    diameter = 0.0
    for u in sorted(dist, key=lambda u: -dist[u]):  # children before their parents
        mine = sorted(branches.pop(u, []), reverse=True)
        height[u] = mine[0] if mine else 0.0
        diameter = max(diameter, sum(mine[:2]))
        if u in parent:
            branches.setdefault(parent[u], []).append(height[u] + latency(u, parent[u]))
    return diameter
