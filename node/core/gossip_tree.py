"""Where this node sits in the dissemination tree: one tree, rooted, with failover.

The gossip core (node/core/gossip.py) pushes alerts over eager links and announces them
over lazy ones. Left to chance, the eager links form a quasi-random spanning tree, long
and thin (docs/simulation.md, "Why the hop target is missed"). This module gives the
tree a shape: every member keeps, as its *parent*, the peer one step closer to a root,
and the eager links are the parent links. No I/O: the gossip core feeds it what peers
advertise and asks where this node stands. docs/gossip.md, "A rooted tree", says why.

The rules
---------
T1. The root is the member this node has a route to with the highest tree priority
    (the roster's `tree_priority`, the same on every node; 0 for most), then the
    smallest key. Each node advertises
    its position to every peer in a TREE frame: the root, its path cost to the root (0
    at the root) and whether the receiver is its parent. It sends one when that
    changes, and one to each new session.
T2. A link costs its one-way latency in milliseconds (half the handshake's round
    trip; `tree_unknown_ms` when the runtime did not measure it) plus `tree_hop_ms`.
    The hop term trades a little coverage time for fewer hops.
T3. The parent is the peer giving the smallest root, then the smallest cost through
    it (its advertised cost plus the link's); ties keep the current parent, then take
    the smallest key. A peer that names this node as its parent is never its parent
    (poison reverse: no two-node loops), and a route of `tree_max_cost` or more is no
    route, which bounds the counting to infinity after a root goes away (partition,
    crash): the costs climb to the cap and the next smallest key takes over.
T4. The parent link and the child links (peers that name this node as their parent)
    are the tree links. The gossip core keeps them eager and never prunes them for a
    duplicate; other links are lazy, except repair links a GRAFT opened for a while.
T5. A parent that lets IHAVEs beat its pushes (a first copy arrives as the answer to
    our GRAFT or IWANT, not down the tree) `tree_strikes` times without delivering a
    first copy in between is passed over for `tree_penalty` seconds: a silent or
    withholding member does not stay a parent. Members that never send a TREE frame
    are never parents at all. Junk ids announced by a flooder never arrive, so they
    count against nobody.
T6. The two ends of a link disagree about it only when a TREE frame was lost or
    overtaken (never on an ordered, reliable stream). Then one end pushes and the other
    sees duplicates on a link it holds lazy, or is pruned over a link it holds as a tree
    link: either way, that end sends its position again, which sets the other right.
T7. Loop freedom (the feasibility condition of EIGRP and Babel): a peer that offers a
    route to our current root is a candidate only if its own cost is below the least
    cost we have had to that root; otherwise its route may lead back through us, and
    taking it would start the counting to infinity that T3's cap only bounds. When no
    candidate is left for our root, we drop it, take the best other root (ourselves,
    at worst) and hold the lost root down for `tree_hold` seconds, long enough for the
    news to reach every member below us; then it may be taken again, over any path.
    When the root crashes, the members below it drop it within a few round trips and
    the next smallest key takes over; when only a link broke, the subtree below it is
    rooted elsewhere for `tree_hold` (alerts reach it by IHAVE meanwhile) and then
    rejoins.
T10. How long an IHAVE is waited on (graft_timeout otherwise) when the announcer and
    this node share a root and the link's latency was measured: an alert reaches the
    announcer and this node down one tree, so, unless a push was lost, the tree copy
    comes at most the tree path between the two after the announcer had it, and that
    path is at most the announcer's cost to the root plus ours. So we wait that sum,
    less the link's latency (the IHAVE crossed it), plus `tree_pull_margin`, and then
    pull. The costs' hop terms (T2) add slack for jitter and queues. Where a link's
    latency is not measured the costs bound nothing, and graft_timeout stands.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from node.core.gossip_types import GossipParams


def _no_priority(key: bytes) -> int:
    return 0


@dataclass(frozen=True, slots=True)
class Advert:
    """A TREE frame's content: the sender's root, its cost to it, and whether the
    receiver is the sender's parent."""

    root: bytes
    cost: int
    parent: bool


@dataclass(slots=True)
class _Neighbour:
    link_ms: int  # T2: this link's cost
    measured: bool  # T10: link_ms is a measured latency (plus the hop term)
    heard: Advert | None = None  # its last TREE frame; None: it never sent one
    sent: Advert | None = None  # the last TREE frame we sent it
    strikes: int = 0  # T5
    barred_until: float = -math.inf


class TreeRouter:
    """This node's parent, root and cost, from its peers' adverts (T1-T5)."""

    def __init__(self, key: bytes, params: GossipParams) -> None:
        self.key = key
        self.params = params
        self.root = key
        self.cost = 0
        self.parent: bytes | None = None
        self._peers: dict[bytes, _Neighbour] = {}
        self._feasible = 0  # T7: the least cost to `root` we have had since taking it
        self._held_root: bytes | None = None  # T7: a root lost, not taken again until...
        self._held_until = -math.inf
        self.priority: Callable[[bytes], int] = _no_priority  # T1: the roster's

    def _rank(self, root: bytes) -> tuple[int, bytes]:
        """T1: the smaller, the better a root."""
        return -self.priority(root), root

    # -- what the gossip core reports -----------------------------------------------------

    def add(self, peer: bytes, rtt: float | None) -> None:
        """A session opened; `rtt`: its measured round trip in seconds, if known."""
        p = self.params
        one_way = p.tree_unknown_ms if rtt is None else max(0, round(rtt * 500))
        self._peers[peer] = _Neighbour(link_ms=one_way + p.tree_hop_ms, measured=rtt is not None)

    def remove(self, peer: bytes) -> None:
        self._peers.pop(peer, None)

    def heard(self, peer: bytes, advert: Advert) -> None:
        n = self._peers.get(peer)
        if n is not None:
            n.heard = advert

    def delivered(self, peer: bytes) -> None:
        """A first copy of an alert came from `peer`."""
        if peer == self.parent:
            self._peers[peer].strikes = 0

    def strike(self, now: float) -> bool:
        """T5: a first copy came as the answer to a GRAFT or IWANT, not down the tree.
        True if the parent is now passed over (choose again)."""
        n = self._peers.get(self.parent) if self.parent is not None else None
        if n is None:
            return False
        n.strikes += 1
        if n.strikes < self.params.tree_strikes:
            return False
        n.strikes = 0
        n.barred_until = now + self.params.tree_penalty
        return True

    def resend(self, peer: bytes) -> None:
        """T6: `peer`'s view of our link is out of date: tell it our position again."""
        n = self._peers.get(peer)
        if n is not None:
            n.sent = None

    # -- what the gossip core asks ----------------------------------------------------

    def update(self, now: float) -> None:
        """Choose the parent again (T3, T7)."""
        held = self._held_root if now < self._held_until else None
        best: tuple[tuple[int, bytes], int, int, bytes] = (self._rank(self.key), 0, -1, b"")
        for peer, n in self._peers.items():
            a = n.heard
            if a is None or a.parent or now < n.barred_until or a.root == held:
                continue
            if a.root == self.root and a.cost >= self._feasible:
                continue  # T7: it may lead back through us
            cost = a.cost + n.link_ms
            if cost >= self.params.tree_max_cost:
                continue
            candidate = (self._rank(a.root), cost, 0 if peer == self.parent else 1, peer)
            if candidate < best:
                best = candidate
        root, cost = best[0][1], best[1]
        if best[0] > self._rank(self.root) and self.root != self.key:
            # T7: no loop-free route to our root is left: hold it down for a while.
            self._held_root, self._held_until = self.root, now + self.params.tree_hold
        if root != self.root:
            self._feasible = cost
        self.root, self.cost = root, cost
        self._feasible = min(self._feasible, cost)
        self.parent = best[3] or None

    def next_deadline(self) -> float | None:
        """When a held-down root may be taken again (T7)."""
        return self._held_until if self._held_root is not None else None

    def handle_timer(self, now: float) -> bool:
        """True if a hold-down ended (choose the parent again)."""
        if self._held_root is None or now < self._held_until:
            return False
        self._held_root = None
        return True

    def pull_delay(self, peer: bytes, default: float) -> float:
        """T10: how long to wait for the tree's copy of an id `peer` announced first."""
        n = self._peers.get(peer)
        a = n.heard if n is not None else None
        if n is None or a is None or not n.measured or a.root != self.root:
            return default
        # The announcer's cost is its word: no lower than ours less the link between us
        # (the triangle inequality), so a peer advertising cost 0 cannot make its IHAVEs
        # pull before the tree could have brought the copy (found in review).
        a_cost = max(a.cost, self.cost - n.link_ms)
        lead_ms = self.cost + a_cost - (n.link_ms - self.params.tree_hop_ms)
        return min(default, max(lead_ms, 0) / 1000 + self.params.tree_pull_margin)

    def aware(self, peer: bytes) -> bool:
        """Has `peer` ever sent a TREE frame? Links to peers that have not (an older
        node, or one that stays silent) follow the plain Plumtree rules."""
        n = self._peers.get(peer)
        return n is not None and n.heard is not None

    def shares_root(self, peer: bytes) -> bool:
        """Does `peer` say it is in our tree (our root)? Then it gets alerts down the tree."""
        n = self._peers.get(peer)
        return n is not None and n.heard is not None and n.heard.root == self.root

    def tree_link(self, peer: bytes) -> bool:
        """T4: is the link to `peer` the parent link or a child link?"""
        if peer == self.parent:
            return True
        n = self._peers.get(peer)
        return n is not None and n.heard is not None and n.heard.parent

    def children(self) -> list[bytes]:
        return [p for p, n in self._peers.items() if n.heard is not None and n.heard.parent]

    def adverts(self) -> list[tuple[bytes, Advert]]:
        """The TREE frames to send: to each peer whose last one is out of date (T1)."""
        out: list[tuple[bytes, Advert]] = []
        for peer, n in self._peers.items():
            advert = Advert(self.root, self.cost, peer == self.parent)
            if advert != n.sent:
                n.sent = advert
                out.append((peer, advert))
        return out
