"""The simulated deployment: hosts, their sessions, and what happens to them.

Sessions follow the real node's life cycle (node/app/peers.py, node/rpc/peer_transport.py):
- A host dials the peers on its connect list. The handshake is three frames (Hello,
  Challenge, Auth) over the virtual network; the dialer's side opens when it sends
  Auth, the acceptor's when Auth arrives. A handshake not done in 10 s fails.
- A dial to a host that is down is refused after one round trip. After any session
  ends or fails, the dialer waits backoff × U(0.5, 1.5) and dials again; backoff
  doubles from 0.2 s to 10 s and resets after a session that lasted 10 s.
- When one side ends a session (a crash, a protocol error, too much junk) the other
  side notices one latency later. Across a partition nothing gets through: each
  side notices by keepalive, 5–15 s after the cut (ping every 10 s, 5 s timeout).
- A crash loses the process (its Gossip, catch-up sessions, registry, timers) and
  keeps the store. A restart builds a new process over that store, as a real restart
  does. Frames that had not left the uplink when the host crashed are never sent.
- A join adds a member to every roster at once (a roster reload everywhere), then
  starts its node with an empty store; it dials `degree` existing members.

The world also holds the invariants' ground truth (which alert ids members signed)
and raises `InvariantViolation`, with the seed, the moment one breaks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from node.app.peers import BACKOFF_MAX_S, BACKOFF_MIN_S, OUTBOX_FRAMES, STABLE_SESSION_S
from node.core.alerts import AlertRecord
from node.core.catchup import CatchupConfig
from node.core.errors import AlertmeshError
from node.core.gossip import Gossip, GossipParams
from node.core.limits import DEFAULT_LIMITS, Limits
from node.core.roster import Member, Roster
from node.rpc.peer_transport import HANDSHAKE_TIMEOUT_S, KEEPALIVE_OPTIONS
from node.sim import adversary
from node.sim.honest import Flood, HonestNode
from node.sim.loop import EventLoop
from node.sim.metrics import Recorder
from node.sim.network import NetParams, Network
from node.sim.process import (
    ACCEPTOR,
    CLOSED,
    DIALER,
    OPEN,
    PENDING,
    Host,
    Link,
    Process,
    Session,
)
from node.sim.seeds import derive
from node.sim.store import SimStore
from node.sim.verify import VerifyCache
from node.sim.wire import Frame, Handshake, Kind, traffic_class, wire_size
from node.sim.workload import Author, identity

_KEEPALIVE = dict(KEEPALIVE_OPTIONS)
KEEPALIVE_S = float(_KEEPALIVE["grpc.keepalive_time_ms"]) / 1000
KEEPALIVE_TIMEOUT_S = float(_KEEPALIVE["grpc.keepalive_timeout_ms"]) / 1000

PUBLISHERS = ("honest", "equivocator")  # roles whose members publish alerts

# Trace record types.
_T_FRAME, _T_WAKE, _T_PUBLISH, _T_CRASH, _T_START, _T_OPEN, _T_CLOSE = range(1, 8)


class InvariantViolation(AssertionError):
    """A protocol invariant broke. The message names the seed that reproduces it."""


@dataclass(frozen=True)
class WorldParams:
    protocol: str = "gossip"  # or "flood": the baseline
    degree: int = 7
    net: NetParams = field(default_factory=NetParams)
    gossip: GossipParams = field(default_factory=GossipParams)
    catchup: CatchupConfig = field(default_factory=CatchupConfig)
    limits: Limits = DEFAULT_LIMITS


class World:
    def __init__(
        self,
        seed: int,
        params: WorldParams,
        *,
        label: str = "",
        verifier: VerifyCache | None = None,
        loop: EventLoop | None = None,
    ) -> None:
        self.seed = seed
        self.params = params
        self.label = label
        self.loop = loop or EventLoop()
        self.net = Network(params.net, seed)
        self.verifier = verifier or VerifyCache(params.limits)
        self.limits = params.limits
        self.gossip_params = params.gossip
        self.catchup_config = params.catchup
        self.hosts: list[Host] = []
        self._roster = Roster()
        self.sessions: dict[int, Session] = {}
        self._session_ids = 0
        self._rng = derive(seed, "world")
        self.record = Recorder()
        self.backlogged = 0
        self._component: tuple[int, list[int]] | None = None

    # -- Env ---------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.loop.now

    @property
    def roster(self) -> Roster:
        return self._roster

    def close(self, link: Link) -> None:
        self._end_side(link.session, link.side, notify=True)

    def published(self, host: int, record: AlertRecord) -> None:
        self.record.published(record, host, self.hosts[host].role, self.now)

    def equivocated(self, host: int, first: AlertRecord, second: AlertRecord) -> None:
        self.record.equivocated(first, second)

    def stored(self, host: int, record: AlertRecord, *, second_copy: bool) -> None:
        if not self.hosts[host].honest:
            return
        origin = self.record.genuine.get(record.id)
        if origin is None:
            self.fail(f"honest host {host} stored an alert no member signed: {record.id.hex()}")
        if second_copy and (record.origin, record.seq) not in self.record.forks:
            self.fail(f"honest host {host} holds two bodies for an honest origin's seq")
        self.record.stored(host, record, second_copy=second_copy)

    def copy_received(self, host: int, record: AlertRecord, *, catchup: bool) -> None:
        if self.hosts[host].honest:
            self.record.copy(record.id, catchup=catchup)

    def invalid_received(self, host: int, peer: int, error: AlertmeshError) -> None:
        if self.hosts[host].honest:
            self.record.invalid(type(error).__name__)

    def fail(self, message: str) -> None:
        raise InvariantViolation(
            f"seed={self.seed} {self.label} t={self.now:.3f}s: {message}".replace("  ", " ")
        )

    # -- building ----------------------------------------------------------------------

    def add_host(self, role: str, *, reload_roster: bool = True) -> Host:
        index = len(self.hosts)
        ident = identity(self.seed, index)
        host = Host(
            index=index,
            identity=ident,
            role=role,
            store=SimStore(),
            author=Author(self.seed, index, ident, self.limits),
            joined_at=self.now,
        )
        self.hosts.append(host)
        self.net.add_host(index)
        self.record.add_host(role)
        if reload_roster:
            self.reload_roster()
        return host

    def reload_roster(self) -> None:
        """Every host's roster lists every member (a roster reload everywhere)."""
        self._roster = Roster.of([Member(f"member-{h.index:05d}", h.key) for h in self.hosts])

    def connect_randomly(self, hosts: list[Host]) -> None:
        """A random connected graph of mean degree ~`degree`: a ring plus random pairs."""
        rng = derive(self.seed, "graph")
        n = len(hosts)
        order = [h.index for h in hosts]
        rng.shuffle(order)
        edges: dict[tuple[int, int], None] = {}
        if n > 1:
            for i in range(n):
                a, b = order[i], order[(i + 1) % n]
                if a != b:
                    edges[(min(a, b), max(a, b))] = None
            stubs = [h for h in order for _ in range(max(self.params.degree - 2, 0))]
            rng.shuffle(stubs)
            for a, b in zip(stubs[::2], stubs[1::2], strict=False):
                if a != b:
                    edges[(min(a, b), max(a, b))] = None
        for a, b in edges:
            dialer, acceptor = (a, b) if rng.random() < 0.5 else (b, a)
            self.hosts[dialer].dials.append(acceptor)

    def neighbours(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {h.index: [] for h in self.hosts}
        for h in self.hosts:
            for t in h.dials:
                out[h.index].append(t)
                out[t].append(h.index)
        return out

    # -- host life cycle ---------------------------------------------------------------

    def start(self, host: Host) -> None:
        """Start (or restart) the host's node over its store, and dial its peers."""
        host.epoch += 1
        host.backoff.clear()
        host.process = self._make_process(host)
        self.loop.record(_T_START, host.index, host.epoch)
        for target in host.dials:
            self._dial(host.index, target, host.epoch)
        self._touch(host)

    def crash(self, host: Host) -> None:
        if host.process is None:
            return
        host.process = None
        host.crashes.append(self.now)
        host.wake_at = None
        self.loop.record(_T_CRASH, host.index)
        for session in list(host.sessions.values()):
            side = DIALER if session.hosts[DIALER] == host.index else ACCEPTOR
            self._end_side(session, side, notify=True)
        host.sessions.clear()

    def join(self) -> Host:
        """A new member: on every roster at once, then its node starts and dials."""
        host = self.add_host("honest")
        rng = derive(self.seed, "join", host.index)
        others = [h.index for h in self.hosts[:-1]]
        host.dials = sorted(rng.sample(others, min(self.params.degree, len(others))))
        self.start(host)
        return host

    def publish(self, host: Host) -> AlertRecord | None:
        if host.process is None:
            return None
        record = host.process.publish()
        if record is not None:
            self.loop.record(_T_PUBLISH, host.index, record.seq)
        self._touch(host)
        return record

    def cut(self, groups: list[list[int]]) -> None:
        """Partition the network; sessions across the cut end by keepalive."""
        self.net.cut(groups)
        for session in list(self.sessions.values()):
            a, b = session.hosts
            if self.net.reachable(a, b):
                continue
            for side in (DIALER, ACCEPTOR):
                if session.state[side] != CLOSED:
                    self.loop.after(self._keepalive_delay(), self._keepalive, session, side)

    def heal(self) -> None:
        self.net.heal()

    def _make_process(self, host: Host) -> Process:
        if host.role in PUBLISHERS:
            rng = derive(self.seed, "gossip", host.index, host.epoch)
            core = (Flood if self.params.protocol == "flood" else Gossip)(self.gossip_params, rng)
            cls = adversary.Equivocator if host.role == "equivocator" else HonestNode
            return cls(self, host, core)
        return adversary.ROLES[host.role](self, host)

    # -- timers ------------------------------------------------------------------------

    def _touch(self, host: Host) -> None:
        """Make sure the host is woken at its process's next deadline."""
        process = host.process
        if process is None:
            return
        deadline = process.next_deadline()
        if deadline is not None and (host.wake_at is None or deadline < host.wake_at):
            host.wake_at = deadline
            self.loop.at(deadline, self._wake, host, host.epoch, deadline)

    def _wake(self, host: Host, epoch: int, when: float) -> None:
        if host.epoch != epoch or host.wake_at != when or host.process is None:
            return
        host.wake_at = None
        self.loop.record(_T_WAKE, host.index)
        host.process.wake()
        self._touch(host)

    # -- sessions ----------------------------------------------------------------------

    def _dial(self, index: int, target: int, epoch: int) -> None:
        host = self.hosts[index]
        if host.epoch != epoch or host.process is None:
            return
        host.dial_started[target] = self.now
        self._session_ids += 1
        session = Session(self._session_ids, (index, target), [epoch, 0], self.now)
        self.sessions[session.id] = session
        host.sessions[session.id] = session
        self._transmit(session, ACCEPTOR, Handshake(Kind.HELLO))
        self.loop.after(HANDSHAKE_TIMEOUT_S, self._handshake_timeout, session, DIALER)

    def _redial(self, host: Host, target: int) -> None:
        """What PeerManager._dial_loop does after a session ends or a dial fails."""
        backoff = host.backoff.get(target, BACKOFF_MIN_S)
        if self.now - host.dial_started.get(target, self.now) > STABLE_SESSION_S:
            backoff = BACKOFF_MIN_S
        host.backoff[target] = min(backoff * 2, BACKOFF_MAX_S)
        delay = backoff * (0.5 + self.net.random())
        self.loop.after(delay, self._dial, host.index, target, host.epoch)

    def _handshake(self, session: Session, to_side: int, frame: Handshake) -> None:
        dialer, acceptor = (self.hosts[i] for i in session.hosts)
        if frame.kind is Kind.HELLO:
            if session.state[ACCEPTOR] != PENDING or session.id in acceptor.sessions:
                return
            if acceptor.process is None:  # connection refused
                self.loop.after(self._latency(session), self._end_side, session, DIALER, False)
                return
            session.epochs[ACCEPTOR] = acceptor.epoch
            acceptor.sessions[session.id] = session
            self._transmit(session, DIALER, Handshake(Kind.CHALLENGE))
            self.loop.after(HANDSHAKE_TIMEOUT_S, self._handshake_timeout, session, ACCEPTOR)
        elif frame.kind is Kind.CHALLENGE:
            if session.state[DIALER] == PENDING and dialer.epoch == session.epochs[DIALER]:
                self._transmit(session, ACCEPTOR, Handshake(Kind.AUTH))
                self._open(session, DIALER)
        elif session.state[ACCEPTOR] == PENDING and acceptor.epoch == session.epochs[ACCEPTOR]:
            self._open(session, ACCEPTOR)

    def _handshake_timeout(self, session: Session, side: int) -> None:
        if session.state[side] == PENDING:
            self._end_side(session, side, notify=True)

    def _open(self, session: Session, side: int) -> None:
        session.state[side] = OPEN
        me, peer = session.hosts[side], session.hosts[1 - side]
        link = Link(
            session=session,
            side=side,
            me=me,
            peer_index=peer,
            peer=self.hosts[peer].key,
            role="dialer" if side == DIALER else "acceptor",
            transmit=self._send,
        )
        session.links[side] = link
        self.loop.record(_T_OPEN, me, peer, session.id)
        host = self.hosts[me]
        assert host.process is not None
        host.process.session_up(link)
        self._touch(host)

    def _end_side(self, session: Session, side: int, notify: bool) -> None:
        state = session.state[side]
        if state == CLOSED:
            return
        session.state[side] = CLOSED
        host = self.hosts[session.hosts[side]]
        mine = host.epoch == session.epochs[side] and host.process is not None
        if host.sessions.get(session.id) is session:
            del host.sessions[session.id]
        self.loop.record(_T_CLOSE, host.index, session.id)
        link = session.links[side]
        if state == OPEN and mine and link is not None and host.process is not None:
            host.process.session_down(link)
            self._touch(host)
        other = 1 - side
        if notify and session.state[other] != CLOSED:
            if self.net.reachable(*session.hosts):
                delay = self._latency(session)
            else:
                delay = self._keepalive_delay()  # nothing gets through: keepalive notices
            self.loop.after(delay, self._end_side, session, other, False)
        if session.state[other] == CLOSED:
            self.sessions.pop(session.id, None)
        if side == DIALER and mine:
            self._redial(host, session.hosts[ACCEPTOR])

    def _keepalive(self, session: Session, side: int) -> None:
        if not self.net.reachable(*session.hosts):
            self._end_side(session, side, notify=False)

    def _keepalive_delay(self) -> float:
        return KEEPALIVE_TIMEOUT_S + KEEPALIVE_S * self.net.random()

    def _latency(self, session: Session) -> float:
        return self.net.latency(*session.hosts)

    # -- frames ------------------------------------------------------------------------

    def _send(self, link: Link, frame: Frame) -> bool:
        """Link.send: queue on the outbox, or refuse when it holds OUTBOX_FRAMES."""
        outbox = link.outbox
        now = self.now
        while outbox and outbox[0] <= now:
            outbox.popleft()
        if len(outbox) >= OUTBOX_FRAMES:
            self.backlogged += 1
            return False
        if link.session.state[link.side] != OPEN:
            return True  # written to a stream that is going away
        outbox.append(self._transmit(link.session, 1 - link.side, frame))
        return True

    def _transmit(self, session: Session, to_side: int, frame: Frame) -> float:
        """Put a frame on the wire towards `to_side`; returns when it has left the uplink."""
        src, dst = session.hosts[1 - to_side], session.hosts[to_side]
        size = wire_size(frame)
        if self.hosts[src].honest:
            self.record.sent(traffic_class(frame), size)
        left, arrival = self.net.send(src, dst, size, self.now)
        if arrival is not None:
            if not self.net.params.reorder:
                arrival = max(arrival, session.last_arrival[to_side])
                session.last_arrival[to_side] = arrival
            self.loop.at(arrival, self._arrive, session, to_side, frame, left)
        return left

    def _arrive(self, session: Session, to_side: int, frame: Frame, left: float) -> None:
        src_side = 1 - to_side
        src = self.hosts[session.hosts[src_side]]
        epoch = session.epochs[src_side]
        if len(src.crashes) >= epoch > 0 and src.crashes[epoch - 1] < left:
            return  # it had not left the uplink when the sender crashed
        dst = self.hosts[session.hosts[to_side]]
        if not self.net.reachable(src.index, dst.index):
            self.net.dropped_cut += 1
            return
        if isinstance(frame, Handshake):
            self._handshake(session, to_side, frame)
            return
        link = session.links[to_side]
        if session.state[to_side] != OPEN or link is None or dst.process is None:
            return
        self.loop.record(_T_FRAME, src.index, dst.index, int(frame.kind))
        dst.process.on_frame(link, frame)
        self._touch(dst)

    # -- running -----------------------------------------------------------------------

    def run_until(self, until: float, every: float = 5.0) -> None:
        """Advance the clock, checking the invariants that must hold at every moment."""
        while self.now < until:
            self.loop.run_until(min(until, self.now + every))
            self.check_bounds()

    def run_until_true(self, done: Callable[[], bool], limit: float, step: float = 1.0) -> bool:
        while not done():
            if self.now >= limit:
                return False
            self.run_until(min(limit, self.now + step), every=step)
        return True

    def check_bounds(self) -> None:
        """Memory bounds of the cores hold on every live honest node."""
        p = self.gossip_params
        for host in self.hosts:
            process = host.process
            if not isinstance(process, HonestNode):
                continue
            stats = process.gossip.stats()
            if stats.awaited_ids > p.max_missing or stats.remembered_ids > p.max_seen:
                self.fail(f"host {host.index} exceeds gossip bounds: {stats}")
            if stats.queued_announcements > p.max_queue_ids * max(stats.peers, 1):
                self.fail(f"host {host.index} queues too many announcements: {stats}")

    def honest_component(self) -> list[int]:
        """Honest hosts that can reach one another through honest hosts (the largest group)."""
        if self._component is not None and self._component[0] == len(self.hosts):
            return self._component[1]
        graph = self.neighbours()
        honest = {h.index for h in self.hosts if h.honest}
        best: list[int] = []
        seen: set[int] = set()
        for start in sorted(honest):
            if start in seen:
                continue
            group, todo = [start], [start]
            seen.add(start)
            while todo:
                for n in graph[todo.pop()]:
                    if n in honest and n not in seen:
                        seen.add(n)
                        group.append(n)
                        todo.append(n)
            if len(group) > len(best):
                best = sorted(group)
        self._component = (len(self.hosts), best)
        return best

    def converged(self) -> bool:
        """Every live honest member holds every alert of every honest member."""
        target = self.record.honest_published
        held = self.record.honest_held
        return all(held[h] >= target for h in self.honest_component() if self.hosts[h].up)
