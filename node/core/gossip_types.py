"""Gossip's vocabulary: its parameters, the actions it returns, and its statistics.

The state machine is node/core/gossip.py, which re-exports all of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from node.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class GossipParams:
    """Tuning of the dissemination protocol. docs/gossip.md says why these defaults."""

    max_eager: int = 4  # eager peers this node picks itself; GRAFTs may add more
    ihave_interval: float = 0.1  # announcements to a lazy peer are batched this long
    ihave_max_ids: int = 512  # ids per IHAVE/IWANT/GRAFT frame, and per flush per peer
    # A lazy peer in our rooted tree gets each id down the tree; an IHAVE to it is only
    # repair, so its announcements wait up to this long, or until this many are queued.
    ihave_repair_delay: float = 0.5  # at least ihave_interval, below graft_timeout
    ihave_batch_ids: int = 32  # at most max_queue_ids
    graft_timeout: float = 1.0  # after an IHAVE, wait this long for the eager copy
    graft_retry: float = 0.5  # then ask the next announcer after this long
    graft_jitter: float = 0.2  # graft_timeout is stretched by up to this fraction
    prune_rate: float = 2.0  # under load, prunes per cycle per graft_timeout (rule 3)
    seen_ttl: float = 600.0  # ids are remembered (dedup, serving requests) this long
    max_seen: int = 100_000  # and at most this many (~29 MiB; 10 min at 166 alerts/s)
    max_queue_ids: int = 4096  # per peer: announcements queued to it, ids awaited from it
    max_missing: int = 10_000  # ids awaited after IHAVEs, all peers together
    backlog_backoff: float = 10.0  # a backlogged peer stays lazy at least this long
    # The rooted tree (node/core/gossip_tree.py); costs in whole milliseconds.
    tree: bool = True  # False: the eager links form whatever tree chance gives
    tree_hop_ms: int = 25  # T2: each hop costs this on top of the link's latency
    tree_unknown_ms: int = 50  # T2: a link's latency when the runtime did not measure it
    tree_max_cost: int = 3000  # T3: a route costing this much is no route
    tree_strikes: int = 3  # T5: GRAFT timers fired under one parent before it is passed over
    tree_penalty: float = 60.0  # T5: for this long
    tree_hold: float = 3.0  # T7: a root lost is not taken again for this long
    tree_patience: int = 5  # T9: graft timeouts waited for a parent still catching up
    tree_busy: int = 32  # T9: only while it brought this many copies in a timeout
    tree_burst: int = 100  # T8: TREE frames taken from one peer at once; refilled at
    tree_rate: float = 10.0  # this many per second (more than churn at N = 1,000 needs)
    tree_pull_margin: float = 0.05  # T10: added to the tree's bound on an IHAVE's lead

    def __post_init__(self) -> None:
        for name in (
            "max_eager",
            "ihave_max_ids",
            "ihave_batch_ids",
            "max_seen",
            "max_queue_ids",
            "max_missing",
            "tree_max_cost",
            "tree_strikes",
            "tree_burst",
            "tree_busy",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"gossip: {name} must be at least 1")
        for name in (
            "ihave_interval",
            "ihave_repair_delay",
            "graft_timeout",
            "graft_retry",
            "seen_ttl",
            "prune_rate",
            "tree_rate",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"gossip: {name} must be positive")
        if not 0 <= self.graft_jitter <= 1:
            raise ConfigError("gossip: graft_jitter must be between 0 and 1")
        for name in (
            "backlog_backoff",
            "tree_hop_ms",
            "tree_unknown_ms",
            "tree_penalty",
            "tree_hold",
            "tree_patience",
            "tree_pull_margin",
        ):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"gossip: {name} must not be negative")
        if self.ihave_repair_delay < self.ihave_interval:
            raise ConfigError("gossip: ihave_repair_delay must be at least ihave_interval")
        # A repair IHAVE leaves before a pull off the tree would (graft_timeout), and long
        # before its ids are forgotten (seen_ttl); below either, it is finite.
        for name in ("graft_timeout", "seen_ttl"):
            if not self.ihave_repair_delay < getattr(self, name):
                raise ConfigError(f"gossip: ihave_repair_delay must be below {name}")
        if self.ihave_batch_ids > self.max_queue_ids:
            # A queue never that long would drop its oldest ids while it waits.
            raise ConfigError("gossip: ihave_batch_ids must be at most max_queue_ids")


# Actions: what the runtime must send. For SendAlerts it loads the signed alerts from its
# store, and skips any it no longer holds.


@dataclass(frozen=True, slots=True)
class SendAlerts:
    """Send these alerts in full. `answer`: the peer asked for them (IWANT, GRAFT), so
    they go in full even if it prunes the link before they leave; pushes would be
    announced instead then."""

    peer: bytes
    ids: tuple[bytes, ...]
    answer: bool = False


@dataclass(frozen=True, slots=True)
class SendIHave:
    """Announce that we hold these alerts."""

    peer: bytes
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SendIWant:
    """Ask for these alerts, leaving the link as it is."""

    peer: bytes
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SendPrune:
    """The link is lazy from now on: announce to us, don't push."""

    peer: bytes


@dataclass(frozen=True, slots=True)
class SendGraft:
    """The link is eager from now on; also send us these alerts (maybe none)."""

    peer: bytes
    ids: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class SendTree:
    """Tell the peer where we sit in the tree: our root, our cost to it, and whether the
    peer is our parent (node/core/gossip_tree.py, T1)."""

    peer: bytes
    root: bytes
    cost: int
    parent: bool


Action: TypeAlias = SendAlerts | SendIHave | SendIWant | SendPrune | SendGraft | SendTree


@dataclass(frozen=True, slots=True)
class PeerStats:
    eager: bool
    backlogged: bool
    alerts_received: int  # full copies, pushed or asked for
    duplicates_received: int
    alerts_sent: int
    ihave_ids_received: int
    ihave_ids_sent: int
    ihave_ids_dropped: int  # announcements lost because its queue was full
    prunes_sent: int
    prunes_received: int
    grafts_sent: int
    grafts_received: int
    tree_refused: int = 0  # TREE frames ignored (T8)


@dataclass(frozen=True, slots=True)
class GossipStats:
    peers: int
    eager_peers: int
    remembered_ids: int
    awaited_ids: int  # announced to us, not received yet
    queued_announcements: int
    awaited_dropped: int  # announced ids not awaited because a bound was reached
    awaited_abandoned: int  # every announcer was asked, and none delivered
    tree_refused: int = 0  # TREE frames ignored (T8), all peers, since the start
