"""What runs on a simulated host, and what it may ask of the simulated world.

A `Process` is to the simulator what node/app/peers.py's PeerManager is to a real
node (the honest one drives the same node/core/peer_engine.py): it is told when a
peer session opens or closes and when a frame arrives, it is woken at the deadline it
asks for, and it sends frames on its `Link`s. When its host crashes the process
object is dropped; a restart builds a new one over the same store. The base class is
the silent member: it accepts sessions and never sends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from node.core.alerts import AlertRecord
from node.core.catchup import CatchupConfig
from node.core.errors import AlertmeshError
from node.core.gossip import GossipParams
from node.core.limits import Limits
from node.core.peer_engine import PeerSession
from node.core.redial import Backoff
from node.core.roster import Roster
from node.crypto import Identity
from node.sim.store import SimStore
from node.sim.verify import VerifyCache
from node.sim.wire import Frame
from node.sim.workload import Author

PENDING, OPEN, CLOSED = 0, 1, 2
DIALER, ACCEPTOR = 0, 1


@dataclass(eq=False, slots=True)
class Session:
    """One peer session (a gRPC stream) between a dialer and an acceptor host."""

    id: int
    hosts: tuple[int, int]  # (dialer, acceptor)
    epochs: list[int]  # each host's incarnation when it joined the session
    started: float
    state: list[int] = field(default_factory=lambda: [PENDING, PENDING])
    links: list[Link | None] = field(default_factory=lambda: [None, None])
    last_arrival: list[float] = field(default_factory=lambda: [0.0, 0.0])  # per receiving side
    handshake_arrival: list[float] = field(default_factory=lambda: [0.0, 0.0])
    challenged: float = 0.0  # when the acceptor sent its Challenge


@dataclass(eq=False, slots=True)
class Link:
    """One end of an open session, as its host's process sees it (peers.py's Link)."""

    session: Session
    side: int
    me: int
    peer_index: int
    peer: bytes  # the peer's member key
    role: str  # "dialer" or "acceptor"
    transmit: Callable[[Link, Frame], bool]
    outbox: deque[float] = field(default_factory=deque)  # when queued frames leave the uplink
    engine_session: PeerSession[Link] | None = None  # an honest process's, once admitted
    rtt: float | None = None  # the handshake's round trip, as this side measured it

    def send(self, frame: Frame) -> bool:
        """Queue a frame; False when the outbox is full (the frame is not sent)."""
        return self.transmit(self, frame)


class Env(Protocol):
    """The world as a process sees it."""

    seed: int
    verifier: VerifyCache
    limits: Limits
    gossip_params: GossipParams
    catchup_config: CatchupConfig

    @property
    def now(self) -> float: ...

    @property
    def roster(self) -> Roster: ...

    def close(self, link: Link) -> None:
        """End this session from this side (the peer notices after one latency)."""
        ...

    def published(self, host: int, record: AlertRecord) -> None:
        """A member signed this alert: it is genuine (the invariant's ground truth)."""
        ...

    def equivocated(self, host: int, first: AlertRecord, second: AlertRecord) -> None: ...

    def stored(self, host: int, record: AlertRecord, *, second_copy: bool) -> None:
        """An honest store accepted this alert (or kept it as an equivocation's second copy)."""
        ...

    def copy_received(self, host: int, record: AlertRecord, *, catchup: bool) -> None: ...

    def invalid_received(self, host: int, peer: int, error: AlertmeshError) -> None: ...


@dataclass(eq=False)
class Host:
    """A member's machine: identity and store survive crashes; the process does not."""

    index: int
    identity: Identity
    role: str
    store: SimStore
    author: Author
    joined_at: float
    dials: list[int] = field(default_factory=list)  # hosts it dials (peers.connect)
    process: Process | None = None
    epoch: int = 0  # incarnation: +1 at every start
    crashes: list[float] = field(default_factory=list)  # crashes[e - 1]: end of epoch e
    sessions: dict[int, Session] = field(default_factory=dict)  # pending or open
    wake_at: float | None = None
    backoff: dict[int, Backoff] = field(default_factory=dict)  # per dial target
    waiting: dict[int, int] = field(default_factory=dict)  # dial targets in backoff: token
    last_open: float = -1.0  # when this process's last session opened (R2); < 0: none yet (R4)
    dial_started: dict[int, float] = field(default_factory=dict)
    tree_priority: int = 0  # the roster's (node/sim/hubs.py)

    @property
    def key(self) -> bytes:
        return self.identity.public_key

    @property
    def up(self) -> bool:
        return self.process is not None

    @property
    def honest(self) -> bool:
        return self.role == "honest"


class Process:
    """A silent member: it opens and accepts sessions, and never forwards or answers."""

    def __init__(self, env: Env, host: Host) -> None:
        self.env = env
        self.host = host

    def session_up(self, link: Link) -> None:
        return None

    def session_down(self, link: Link) -> None:
        return None

    def on_frame(self, link: Link, frame: Frame) -> None:
        return None

    def next_deadline(self) -> float | None:
        return None

    def wake(self) -> None:
        return None

    def publish(self) -> AlertRecord | None:
        """Publish the member's next alert, if this kind of member does."""
        return None
