"""The rooted tree as the gossip core's links see it (rule 9 of node/core/gossip.py).

The router (gossip_tree.py, T1-T4, T7, T10) chooses this node's parent from the peers'
TREE frames; the corrections (gossip_guard.py: T5, T6, T9) notice what says its view
is stale. This applies what they decide to the links (gossip_links.py): tree links
are eager (unless backlogged), former tree links lazy, and a change of this node's
position goes out to the peers as TREE frames. No I/O.
"""

from __future__ import annotations

from collections.abc import Callable

from node.core.gossip_guard import TreeCorrections
from node.core.gossip_links import Links, PeerLink
from node.core.gossip_tree import Advert, TreeRouter
from node.core.gossip_types import Action, GossipParams, SendTree


class RootedLinks:
    """The tree's router and corrections, and their effect on one node's links."""

    def __init__(self, key: bytes, params: GossipParams, links: Links) -> None:
        self.router = TreeRouter(key, params)
        self.corrections = TreeCorrections(params, self.router)
        self._links = links

    def set_priority(self, priority: Callable[[bytes], int]) -> None:
        self.router.priority = priority

    def peer_up(self, peer: bytes, rtt: float | None, now: float, actions: list[Action]) -> None:
        self.router.add(peer, rtt)
        self.sync(now, actions)

    def peer_down(self, peer: bytes, now: float, actions: list[Action]) -> None:
        self.router.remove(peer)
        self.sync(now, actions)

    def heard(self, peer: bytes, advert: Advert, now: float, actions: list[Action]) -> None:
        """A TREE frame from `peer`, admitted (T8)."""
        self.router.heard(peer, advert)
        self.sync(now, actions)

    def first_copy(
        self, peer: bytes, asked: int, bit: int, awaited: int, now: float, actions: list[Action]
    ) -> None:
        """A first copy of an alert from `peer` (T5, T9)."""
        if self.corrections.first_copy(peer, asked, bit, awaited, now):
            self.sync(now, actions)

    def told_already(self, peer: bytes, state: PeerLink, now: float, actions: list[Action]) -> bool:
        """A duplicate from `peer` over a link that is no tree link (T6). True: it was told
        so already, and this is one of its pushes still in flight (no more to do)."""
        stale = self.corrections.stale_push(peer, state, now)
        if stale:
            self.sync(now, actions)  # it pushes over a link we hold lazy
        return stale is None

    def stale_prune(self, peer: bytes, state: PeerLink, now: float, actions: list[Action]) -> None:
        """A PRUNE on a tree link: only a stale view prunes one (T6)."""
        if self.corrections.stale_prune(peer, state, now):
            self.sync(now, actions)

    def handle_timer(self, now: float, actions: list[Action]) -> None:
        if self.router.handle_timer(now):
            self.sync(now, actions)

    def position(self) -> tuple[bytes, int, bytes | None]:
        """(root, cost, parent)."""
        return self.router.root, self.router.cost, self.router.parent

    def sync(self, now: float, actions: list[Action]) -> None:
        """Choose the parent again; make tree links eager and former tree links lazy;
        send what is queued for a peer that leaves our root or becomes our child within
        `ihave_interval`; tell peers of any change in our position (rule 9)."""
        tree = self.router
        tree.update(now)
        for peer, state in self._links.peers.items():
            if not tree.aware(peer):
                continue
            ours = tree.shares_root(peer)
            if state.on_our_root and not ours:
                self._links.hurry(state, now)  # it left our tree: IHAVEs are its news now
            state.on_our_root = ours
            link = tree.tree_link(peer)
            if link == state.tree:
                continue
            if link and peer != tree.parent:
                # A new child: its queued ids were marked known for it, and we are now its
                # path from the tree, so they are never pushed to it: not repair, news.
                # (A new parent's queue stays repair: the tree brings it those ids.)
                self._links.hurry(state, now)
            state.tree = link
            state.eager = link and not state.backlogged(now)
        for peer, advert in tree.adverts():
            actions.append(SendTree(peer, advert.root, advert.cost, advert.parent))
