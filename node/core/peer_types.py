"""The peer engine's vocabulary: frames, actions, and what a driver reports.

node/core/peer_engine.py decides; this is what it decides in. Frames are neutral values
that each driver encodes for its wire; actions are what a driver executes, in order;
`Received` is what a driver reports of an Alerts frame it verified and stored. Callers
import all of it from node/core/peer_engine.py.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeAlias, TypeVar

from node.core import catchup
from node.core.alerts import AlertRecord

L = TypeVar("L")  # the driver's object for one session (its link)

# -- frames, as the engine sends them -------------------------------------------------


class Carried(Protocol):
    """An alert as a frame carries it: its original signed bytes. AlertRecord is one; a
    driver may keep something lighter (a cache of recent alerts)."""

    @property
    def id(self) -> bytes: ...

    @property
    def body(self) -> bytes: ...

    @property
    def signature(self) -> bytes: ...

    @property
    def origin(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class AlertsFrame:
    records: tuple[Carried, ...]
    catchup: bool = False
    # Gossip alerts the peer asked for (IWANT, GRAFT): unlike pushes, a PRUNE from the
    # peer does not turn them into IHAVEs in the outbox, and on the wire the frame says
    # so (Alerts.answer), so the receiver can tell a filled gap from its head moving (rule 7).
    answer: bool = False


@dataclass(frozen=True, slots=True)
class IdsFrame:
    kind: str  # "ihave", "iwant" or "graft" (the PeerFrame oneof's names)
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PruneFrame:
    pass


@dataclass(frozen=True, slots=True)
class TreeFrame:
    """The sender's place in the rooted tree (node/core/gossip_tree.py)."""

    root: bytes
    cost: int
    parent: bool


@dataclass(frozen=True, slots=True)
class DigestFrame:
    digest: bytes


@dataclass(frozen=True, slots=True)
class VectorFrame:
    heads: tuple[tuple[bytes, int], ...]
    reply: bool


@dataclass(frozen=True, slots=True)
class RangesFrame:
    ranges: tuple[catchup.Range, ...]


@dataclass(frozen=True, slots=True)
class ProofFrame:
    first: AlertRecord
    second: AlertRecord


Frame: TypeAlias = (
    AlertsFrame
    | IdsFrame
    | PruneFrame
    | TreeFrame
    | DigestFrame
    | VectorFrame
    | RangesFrame
    | ProofFrame
)

# -- what the engine asks its driver to do --------------------------------------------


@dataclass(eq=False)
class PeerSession(Generic[L]):
    """One open session as the engine sees it; `link` is the driver's object."""

    peer: bytes
    role: str  # "dialer" (we dialed) or "acceptor"
    link: L
    catchup: catchup.CatchupSession
    invalid: int = 0


@dataclass(frozen=True)
class Send(Generic[L]):
    """Queue these frames on the session, in order. A frame that does not fit the
    outbox is not sent, nor are the rest; for a gossip send (`gossip`), the driver then
    executes `engine.backlogged(peer, now)`."""

    session: PeerSession[L]
    frames: tuple[Frame, ...]
    gossip: bool = False


@dataclass(frozen=True)
class Push:
    """Find these alerts (a recent-alert cache, then the store) and call `push` with
    `answer`. `answer`: the peer asked for them (IWANT, GRAFT); a driver that joins a
    peer's Pushes never joins an answer to a push (a PRUNE from the peer turns queued
    pushes into IHAVEs, never answers: M3)."""

    peer: bytes
    ids: tuple[bytes, ...]
    answer: bool = False


@dataclass(frozen=True)
class Serve(Generic[L]):
    """Read these ranges from the store (original signed bytes) and call `serve`."""

    session: PeerSession[L]
    ranges: tuple[catchup.Range, ...]


@dataclass(frozen=True)
class Close(Generic[L]):
    """End this session. `event` names why, for the log."""

    session: PeerSession[L]
    event: str


@dataclass(frozen=True)
class Shortfall(Generic[L]):
    """A catch-up range was not delivered in time (worth a log line)."""

    session: PeerSession[L]
    missing: int


Action: TypeAlias = Send[L] | Push | Serve[L] | Close[L] | Shortfall[L]


@dataclass(frozen=True, slots=True)
class Received:
    """One verified alert of an Alerts frame, as stored."""

    id: bytes
    origin: bytes
    seq: int
    new: bool  # stored now for the first time
    copy: bool  # new, or a duplicate of a held alert (not an equivocation's second copy)
    created_at_ms: int = 0  # of a new alert
    forwarded: bool = False  # gossiped by alerts_verified already, before the commit
    answer: bool = False  # asked for (IWANT, GRAFT): a head move only if it ends at the head


@dataclass
class PeerCounters:
    """Per member, across sessions."""

    sessions: int = 0
    full_received: int = 0
    duplicates_received: int = 0
    invalid_received: int = 0
    full_sent: int = 0
    ihave_sent: int = 0
    caught_up: int = 0  # new alerts received through catch-up
    served: int = 0  # alerts sent through catch-up
    # For the metrics endpoint (node/app/metrics.py):
    sessions_closed: int = 0
    dial_failures: int = 0
    frames_sent: collections.Counter[str] = field(default_factory=collections.Counter)  # gossip
    frames_received: collections.Counter[str] = field(default_factory=collections.Counter)
    catchup_bytes_received: int = 0  # body + signature of alerts in catch-up frames
    catchup_bytes_sent: int = 0
    ranges_requested: int = 0  # catch-up ranges asked of this peer
    ranges_served: int = 0  # catch-up ranges this peer asked of us
