"""What the gossip core takes from the rooted tree's peers, how long it waits for them,
and how it corrects them.

Rules of docs/gossip.md that sit beside the tree router (node/core/gossip_tree.py) and
the dissemination state machine (node/core/gossip.py), kept here so that neither grows
a second idea:

T5. A first copy that came as the answer to a request, not down the tree, is a strike
    against the parent (the router passes it over after `tree_strikes`), unless T9
    spares it (`TreeCorrections.first_copy`).
T6. A duplicate over a link this node does not hold as a tree link, or a PRUNE over one
    it does, means the peer's view of the link is stale: tell it our position again,
    at most once per graft timeout per peer (`TreeCorrections`).

T8. A TREE frame is taken only if it can be a position: its root a 32-byte key (of a
    member, when the core is given a membership test), its cost within 0 ..
    `tree_max_cost`; and only `tree_burst` frames from one peer at once, refilled at
    `tree_rate` a second. Any other is ignored and counted, once, here: a lying or
    flapping peer cannot make this node re-advertise without bound.
T9. In a burst a parent that verifies and stores before passing on brings copies late,
    but in order: a child waits for it instead of pulling duplicates from the
    announcers (`ParentPatience`).

No I/O; time is the `now` passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from node.core.gossip_links import PeerLink
from node.core.gossip_tree import TreeRouter
from node.core.gossip_types import GossipParams

ROOT_BYTES = 32  # a TREE frame's root is a member's Ed25519 key


@dataclass(slots=True)
class _Bucket:
    tokens: float  # TREE frames this peer may still send now
    stamp: float  # when `tokens` was last refilled
    refused: int = 0  # its TREE frames ignored


class TreeGuard:
    """T8: admission of TREE frames, per peer, with the one count of those refused."""

    def __init__(self, params: GossipParams, members: Callable[[bytes], bool] | None = None):
        self.params = params
        self.members = members  # None: any well-formed root may be a member
        self.refused = 0  # all peers, since this node started
        self._buckets: dict[bytes, _Bucket] = {}

    def admit(self, peer: bytes, root: bytes, cost: int, now: float) -> bool:
        """Whether to take `peer`'s position (root, cost); a refusal is counted."""
        p = self.params
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = self._buckets[peer] = _Bucket(tokens=p.tree_burst, stamp=now)
        if (
            len(root) != ROOT_BYTES
            or not 0 <= cost < p.tree_max_cost
            or (self.members is not None and not self.members(root))
        ):
            return self._refuse(bucket)
        tokens = min(p.tree_burst, bucket.tokens + (now - bucket.stamp) * p.tree_rate)
        bucket.stamp = now
        if tokens < 1:
            bucket.tokens = tokens
            return self._refuse(bucket)
        bucket.tokens = tokens - 1
        return True

    def refused_from(self, peer: bytes) -> int:
        bucket = self._buckets.get(peer)
        return 0 if bucket is None else bucket.refused

    def forget(self, peer: bytes) -> None:
        """The session ended: a new one starts with a full bucket."""
        self._buckets.pop(peer, None)

    def _refuse(self, bucket: _Bucket) -> bool:
        bucket.refused += 1
        self.refused += 1
        return False


class ParentPatience:
    """T9: whether to wait longer for the tree parent before pulling an awaited id.

    In a burst a parent that verifies and stores each batch before passing it on falls
    behind the IHAVEs of the burst's origin by a backlog that grows as long as the
    burst lasts; pulling from an announcer only makes the parent's copy a duplicate
    (and, pulled at scale, reshapes the tree). So in a burst an awaited id is waited
    for, one graft timeout at a time, at most `tree_patience` times. A burst is either
    - the parent busy: its last `tree_busy` copies, first copies or not, came within
      one graft timeout of each other, the newest within the last graft timeout; or
    - a burst in view: the peer that announced the id first did so for at least
      `tree_busy` ids still awaited (a burst's origin, or the relay's sibling, far
      ahead of the parent), and the parent brought a copy within the last
      `tree_patience` graft timeouts (it is there, and behind). This covers the start
      of a burst, before the parent's first copies, and a parent that stalls for a
      second or two in the middle of one (two cores, five nodes: it happens).
    A burst in view whose parent has been quiet longer than that (a burst after an idle
    spell) still waits one graft timeout: the parent may not have verified its first
    batch yet (session 20: each child of a relay pulled 400-800 alerts of a burst that
    began after 25 idle seconds, and every pull became a duplicate at the child or,
    forwarded up, at the relay). A parent that then brings nothing is pulled from.
    Otherwise a late id is a lost one and is pulled at once.

    Neither how late the parent's copies come nor the announcement times of what it
    brings tell reliably which ids it has passed over: the backlog grows through the
    burst, and an id first announced to us by a sibling carries a later time than its
    place in the parent's queue. On a reliable stream the parent loses nothing it does
    not announce to us instead (a backlogged link), so patience alone is enough.

    A timer handled over a graft timeout after its deadline means this node itself was
    stalled (CPU):
    what its peers sent meanwhile is still unread, the parent's copies among them, so
    it looks again shortly after instead of pulling (this counts as a wait too)."""

    def __init__(self, params: GossipParams) -> None:
        self.params = params
        self._parent: bytes | None = None
        self._fed: deque[float] = deque(maxlen=params.tree_busy)
        self._first_at = float("-inf")  # when the parent last brought a first copy

    def delivered(self, parent: bytes, now: float, first: bool) -> None:
        """The parent brought a copy (a first copy, or a duplicate)."""
        if parent != self._parent:  # a new parent: nothing is known of its backlog
            self._parent = parent
            self._fed.clear()
            self._first_at = float("-inf")
        self._fed.append(now)
        if first:
            self._first_at = now

    def spares(self, awaited: int, now: float) -> bool:
        """T5 spares the parent a strike: it is in a burst and brought a first copy
        within the last graft timeout. Duplicates alone cost a parent nothing to send
        (ingest drops them before any signature check), so they keep patience going but
        never spare a parent that brings nothing new: its ids are pulled once patience
        runs out, and three such pulls pass it over (found in review)."""
        return self._first_at >= now - self.params.graft_timeout and self.in_burst(awaited, now)

    def wait(self, asked: bool, waited: int, late: float, awaited: int, now: float) -> float | None:
        """An awaited id's timer is due, `late` seconds after its deadline; its first
        announcer did so for `awaited` ids still awaited: how much longer to wait for
        the parent, or None to pull it now. Never for an id asked for already (the
        request stands)."""
        p = self.params
        if asked or waited >= p.tree_patience:
            return None
        if late > p.graft_timeout:
            return p.ihave_interval  # stalled here: read what arrived before deciding
        if self.in_burst(awaited, now):
            return p.graft_timeout
        # A burst in view after a quiet spell: the parent gets one timeout to start on it.
        return p.graft_timeout if waited == 0 and awaited >= p.tree_busy else None

    def in_burst(self, awaited: int, now: float) -> bool:
        """The parent is busy, or a burst is in view (see above)."""
        p, fed = self.params, self._fed
        if not fed:
            return False
        busy = (
            len(fed) >= p.tree_busy
            and fed[-1] - fed[0] <= p.graft_timeout
            and fed[-1] >= now - p.graft_timeout
        )
        in_view = awaited >= p.tree_busy and fed[-1] >= now - p.tree_patience * p.graft_timeout
        return busy or in_view


class TreeCorrections:
    """T5, T6 and T9 where copies and PRUNEs meet the rooted tree (rule 9). A method that
    returns True changed what the router knows: choose and send the position again."""

    def __init__(self, params: GossipParams, router: TreeRouter) -> None:
        self.params = params
        self.router = router
        self.patience = ParentPatience(params)  # T9

    def first_copy(self, peer: bytes, asked: int, peer_bit: int, awaited: int, now: float) -> bool:
        """A first copy came from `peer` (`peer_bit` its bit); `asked`: the bits of the
        peers we had asked for it; `awaited`: how many ids the peer that announced it
        first made us await (T9: a burst in view)."""
        router = self.router
        if peer == router.parent:
            self.patience.delivered(peer, now, first=True)  # T9: it is busy
        pushed = not asked & peer_bit
        if not asked or (peer == router.parent and pushed):
            # The tree brought it (M1 of review: a copy the parent pushed while we asked
            # another is no strike against the parent).
            router.delivered(peer)
            return False
        # T5: the tree did not bring it, a request did. Not while the parent is bringing
        # a burst: a batch of answers would bar it at once.
        return not self.patience.spares(awaited, now) and router.strike(now)

    def duplicate(self, peer: bytes, now: float) -> None:
        """A duplicate came from `peer`: from the parent, it is busy all the same (T9)."""
        if peer == self.router.parent:
            self.patience.delivered(peer, now, first=False)

    def stale_push(self, peer: bytes, state: PeerLink, now: float) -> bool | None:
        """T6: `peer` sent a duplicate over a link that is no tree link here. None: it was
        told within the last graft timeout (these are its pushes still in flight), so
        leave the link; True: it pushes over a link we hold lazy, tell it our position;
        False: an eager repair link, pruned as any other."""
        if not self._once(state, now):
            return None
        if state.eager:
            return False
        self.router.resend(peer)
        return True

    def stale_prune(self, peer: bytes, state: PeerLink, now: float) -> bool:
        """T6: `peer` pruned a tree link, which only a stale view does: True to tell it
        where we stand (at most once per graft timeout)."""
        if not self._once(state, now):
            return False
        self.router.resend(peer)
        return True

    def _once(self, state: PeerLink, now: float) -> bool:
        """T6, once per graft timeout per peer: a burst brings many duplicates (or PRUNEs)
        from one stale view, all sent before our correction arrived. Answering each
        with a PRUNE and a TREE frame was a storm that T8 then cut, correction and all."""
        if now - state.corrected_at < self.params.graft_timeout:
            return False
        state.corrected_at = now
        return True
