"""Peer sessions between simulated hosts, over the virtual network.

This is the part of World that stands in for gRPC streams and the dial loop of
node/app/peers.py and node/rpc/peer_transport.py (docs in node/sim/world.py): the
handshake, backoff, keepalive, session ends, and moving frames (outbox, uplink,
latency, order, loss, partitions). It also wakes processes at their deadlines.
"""

from __future__ import annotations

from node.app.peers import OUTBOX_FRAMES
from node.core.redial import Backoff
from node.rpc.peer_transport import HANDSHAKE_TIMEOUT_S, KEEPALIVE_OPTIONS
from node.sim.loop import EventLoop
from node.sim.metrics import Recorder
from node.sim.network import Network
from node.sim.process import ACCEPTOR, CLOSED, DIALER, OPEN, PENDING, Host, Link, Session
from node.sim.wire import Frame, Handshake, Kind, traffic_class, wire_size

_KEEPALIVE = dict(KEEPALIVE_OPTIONS)
KEEPALIVE_S = float(_KEEPALIVE["grpc.keepalive_time_ms"]) / 1000
KEEPALIVE_TIMEOUT_S = float(_KEEPALIVE["grpc.keepalive_timeout_ms"]) / 1000
# TCP resends an unanswered SYN after 1, 3, 7 s (Linux: initial RTO 1 s, doubling), so a
# dial that started during a partition connects at the next resend after the heal.
SYN_RESENDS_S = (1.0, 3.0, 7.0)

# Trace record types.
T_FRAME, T_WAKE, T_PUBLISH, T_CRASH, T_START, T_OPEN, T_CLOSE = range(1, 8)


class Sessions:
    def __init__(self, loop: EventLoop, net: Network, record: Recorder) -> None:
        self.loop = loop
        self.net = net
        self.record = record
        self.hosts: list[Host] = []
        self.sessions: dict[int, Session] = {}  # not closed on both sides yet
        self._session_ids = 0
        self.backlogged = 0  # frames refused because an outbox was full
        self._dial_tokens = 0

    @property
    def now(self) -> float:
        return self.loop.now

    def close(self, link: Link) -> None:
        """End a session from one side (Env.close): the peer notices a latency later."""
        self._end_side(link.session, link.side, notify=True)

    def cut_sessions(self) -> None:
        """After a partition starts: sessions across it end by keepalive."""
        for session in list(self.sessions.values()):
            if self.net.reachable(*session.hosts):
                continue
            for side in (DIALER, ACCEPTOR):
                if session.state[side] != CLOSED:
                    self.loop.after(self._keepalive_delay(), self._keepalive, session, side)

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
        self.loop.record(T_WAKE, host.index)
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
        for resend in SYN_RESENDS_S:
            if resend < HANDSHAKE_TIMEOUT_S:
                self.loop.after(resend, self._resend_hello, session)
        self.loop.after(HANDSHAKE_TIMEOUT_S, self._handshake_timeout, session, DIALER)

    def _resend_hello(self, session: Session) -> None:
        """The dial's SYN went unanswered (lost in a partition): TCP sends it again."""
        acceptor = self.hosts[session.hosts[ACCEPTOR]]
        if session.state[DIALER] == PENDING and session.id not in acceptor.sessions:
            self._transmit(session, ACCEPTOR, Handshake(Kind.HELLO))

    def _redial(self, host: Host, target: int) -> None:
        """What the dial loop (node/app/peer_dialing.py) does after a session ends or a
        dial fails (R1)."""
        backoff = host.backoff.setdefault(target, Backoff())
        started = host.dial_started.get(target, self.now)
        up = host.last_open > started
        self._dial_later(
            host, target, backoff.wait_after(self.now - started, self.net.random(), up)
        )

    def _dial_later(self, host: Host, target: int, delay: float) -> None:
        self._dial_tokens += 1
        token = host.waiting[target] = self._dial_tokens
        self.loop.after(delay, self._dial_due, host.index, target, host.epoch, token)

    def _dial_due(self, index: int, target: int, epoch: int, token: int) -> None:
        host = self.hosts[index]
        if host.waiting.get(target) == token:
            del host.waiting[target]
            self._dial(index, target, epoch)

    def _network_up(self, host: Host) -> None:
        """R2 with R3 and R4 (node/core/redial.py): a session opened, so dials that have
        backed off long enough (all of them, at the process's first) are due soon, as in
        node/app/peer_dialing.py's dial loop."""
        first = host.last_open < 0
        host.last_open = self.now
        for target in list(host.waiting):
            wait = host.backoff.setdefault(target, Backoff()).wake(self.net.random(), first)
            if wait is not None:
                self._dial_later(host, target, wait)

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
            session.challenged = self.now
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
            # Hello to Challenge, or Challenge to Auth: what either side can time.
            rtt=self.now - (session.started if side == DIALER else session.challenged),
        )
        session.links[side] = link
        self.loop.record(T_OPEN, me, peer, session.id)
        host = self.hosts[me]
        assert host.process is not None
        host.process.session_up(link)
        self._touch(host)
        self._network_up(host)

    def _end_side(self, session: Session, side: int, notify: bool) -> None:
        state = session.state[side]
        if state == CLOSED:
            return
        session.state[side] = CLOSED
        host = self.hosts[session.hosts[side]]
        mine = host.epoch == session.epochs[side] and host.process is not None
        if host.sessions.get(session.id) is session:
            del host.sessions[session.id]
        self.loop.record(T_CLOSE, host.index, session.id)
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
            elif isinstance(frame, Handshake):
                session.handshake_arrival[to_side] = arrival
            else:  # reordered, but never ahead of the handshake (one stream)
                arrival = max(arrival, session.handshake_arrival[to_side])
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
        self.loop.record(T_FRAME, src.index, dst.index, int(frame.kind))
        dst.process.on_frame(link, frame)
        self._touch(dst)
