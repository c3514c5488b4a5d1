"""What the gossip core takes from the rooted tree's peers, and how long it waits for them.

Two rules of docs/gossip.md that sit beside the tree router (node/core/gossip_tree.py)
and the dissemination state machine (node/core/gossip.py), kept here so that neither
grows a second idea:

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
    """T9: whether the tree parent is working through a backlog that holds an awaited id.

    A parent that verifies and stores each batch before passing it on forwards in the
    order the alerts were announced to us, however far behind it falls. So its position
    is the first-announcement time of the last first copy it brought (the time it
    brought it, if nobody had announced it: it is on time), and an awaited id announced
    at or after that position is still ahead of it: it will bring it. An id announced
    before it was passed over (lost on the way) and is pulled at once. This reads the
    backlog from the parent's own deliveries, not from how late they are, so a backlog
    that keeps growing through a burst does not look like a loss.

    T9 applies only in a burst: while the parent's last `tree_busy` first copies came
    within one graft timeout of each other and the newest within the last graft timeout
    (at low rates a late id is a lost one)."""

    def __init__(self, params: GossipParams) -> None:
        self.params = params
        self._fed: deque[float] = deque(maxlen=params.tree_busy)
        self._at = 0.0  # the parent's position: see above

    def delivered(self, now: float, announced_at: float | None) -> None:
        """The parent brought a first copy; `announced_at`: when someone had first
        announced it to us, None if nobody had."""
        self._at = now if announced_at is None else announced_at
        self._fed.append(now)

    def behind(self, since: float, asked: bool, waited: int, now: float) -> bool:
        """An id first announced at `since` is due: wait one more graft timeout for the
        parent? At most `tree_patience` times (`waited` so far); never for an id we asked
        for already (the request stands)."""
        p = self.params
        if asked or waited >= p.tree_patience:
            return False
        fed = self._fed
        if len(fed) < p.tree_busy or fed[-1] - fed[0] > p.graft_timeout:
            return False  # not a burst
        if fed[-1] < now - p.graft_timeout:
            return False  # the parent stopped bringing anything
        return self._at <= since
