"""The peer engine: one member's peer orchestration, without I/O.

What a node does with its peer sessions (which frames to send, to whom and when, what
an Alerts frame's results set off, catch-up, equivocation proofs, serving ranges in
frames of bounded size, what a full outbox changes, when a session has sent too much
junk) is decided here, once. Two drivers run it, as any event loop drives aioquic's
connection object: node/app/peers.py (asyncio, gRPC streams, the real store) and
node/sim/honest.py (the simulator's virtual network and clock).

A driver tells the engine what happened (a session opened or closed, a frame arrived,
alerts were verified and stored, time passed) and executes the actions it gets back,
in order. Frames are neutral values (`Frame`); each driver encodes them for its wire.
Two actions need the store, which only the driver can read: `Push` (find these alerts,
then call `push`, passing its `answer` flag back) and `Serve` (read these ranges, then
call `serve`). Time is passed in; the gossip core brings its own `random.Random`. The
frames, actions and counters are defined in node/core/peer_types.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Generic

from node.core import catchup, gossip
from node.core.alerts import AlertRecord
from node.core.errors import InvalidAlert
from node.core.peer_types import (  # re-exported: drivers import the vocabulary from here
    Action,
    AlertsFrame,
    Carried,
    Close,
    DigestFrame,
    Frame,
    IdsFrame,
    L,
    PeerCounters,
    PeerSession,
    ProofFrame,
    PruneFrame,
    Push,
    RangesFrame,
    Received,
    Send,
    Serve,
    Shortfall,
    TreeFrame,
    VectorFrame,
)

ALERTS_PER_FRAME = 256
SERVE_FRAME_BYTES = 1024 * 1024  # catch-up answers: one frame holds at most about this much
MAX_INVALID_PER_SESSION = 1000  # a peer sending this much junk is disconnected
MAX_PROOFS_ON_OPEN = 100  # equivocation proofs re-sent to each new session

__all__ = [
    "ALERTS_PER_FRAME",
    "MAX_INVALID_PER_SESSION",
    "MAX_PROOFS_ON_OPEN",
    "SERVE_FRAME_BYTES",
    "Action",
    "AlertsFrame",
    "Carried",
    "Close",
    "DigestFrame",
    "Frame",
    "IdsFrame",
    "L",
    "PeerCounters",
    "PeerEngine",
    "PeerSession",
    "ProofFrame",
    "PruneFrame",
    "Push",
    "RangesFrame",
    "Received",
    "Send",
    "Serve",
    "Shortfall",
    "TreeFrame",
    "VectorFrame",
]


class PeerEngine(Generic[L]):
    """One member's sessions with its peers: gossip, catch-up, proofs, serving."""

    def __init__(
        self,
        key: bytes,
        chains: catchup.LocalChains,
        core: gossip.Gossip,
        config: catchup.CatchupConfig | None = None,
        members: Callable[[bytes], bool] | None = None,
    ) -> None:
        """`members(key)`: whether a key is a member's (the roster); a TREE frame naming a
        root that is not one is refused and counted by the gossip core (T8)."""
        self.key = key
        self.chains = chains
        self.gossip = core
        core.set_key(key)  # the rooted tree needs to know which member this is
        if members is not None:
            core.set_members(members)
        self.catchup_config = config or catchup.CatchupConfig()
        self.fetches = catchup.FetchRegistry()  # shared: each gap is fetched from one peer
        self.sessions: dict[bytes, PeerSession[L]] = {}
        self.counters: dict[bytes, PeerCounters] = {}
        self._catchup_due: dict[PeerSession[L], float] = {}  # kept current

    # -- sessions -----------------------------------------------------------------------

    def session_opened(
        self,
        link: L,
        peer: bytes,
        role: str,
        now: float,
        proofs: Sequence[tuple[AlertRecord, AlertRecord]] = (),
        rtt: float | None = None,
    ) -> tuple[PeerSession[L] | None, list[Action[L]]]:
        """An authenticated session opened. None: a session with this peer is kept
        instead (both sides dialed: the one dialed by the smaller key wins, on both
        ends); the driver ends the new one. `proofs`: the equivocations on record.
        `rtt`: the handshake's round trip in seconds, if measured (the tree's link cost)."""
        existing = self.sessions.get(peer)
        actions: list[Action[L]] = []
        if existing is not None:
            if (self.key < peer) != (role == "dialer"):
                return None, []
            actions.append(self._closing(existing, "session_replaced"))
        session = PeerSession(
            peer,
            role,
            link,
            catchup.CatchupSession(
                self.chains,
                initiator=role == "dialer",
                config=self.catchup_config,
                registry=self.fetches,
                peer=peer,  # its standing (does it serve what it advertises?) is per peer
            ),
        )
        self.sessions[peer] = session
        self.counters.setdefault(peer, PeerCounters()).sessions += 1
        actions += self._gossip(self.gossip.peer_up(peer, now, rtt))
        actions += self._catchup(session, session.catchup.start(now))
        frames = tuple(ProofFrame(a, b) for a, b in proofs[-MAX_PROOFS_ON_OPEN:])
        if frames:
            actions.append(Send(session, frames))
        return session, actions + self._replan(now)  # a replaced session's ranges

    def session_closed(self, session: PeerSession[L], now: float) -> list[Action[L]]:
        session.catchup.close()  # release its claimed ranges for other sessions
        self._catchup_due.pop(session, None)
        self.counters.setdefault(session.peer, PeerCounters()).sessions_closed += 1
        if self.sessions.get(session.peer) is not session:
            return self._replan(now)  # replaced: the new session has no vector yet
        del self.sessions[session.peer]
        return self._gossip(self.gossip.peer_down(session.peer, now)) + self._replan(now)

    def current(self, session: PeerSession[L]) -> bool:
        return self.sessions.get(session.peer) is session

    # -- frames from a peer -------------------------------------------------------------

    def on_digest(self, s: PeerSession[L], digest: bytes, now: float) -> list[Action[L]]:
        return self._catchup(s, s.catchup.on_digest(digest, now))

    def on_vector(
        self, s: PeerSession[L], heads: Iterable[tuple[bytes, int]], reply: bool, now: float
    ) -> list[Action[L]]:
        return self._catchup(s, s.catchup.on_vector(catchup.parse_vector(heads), reply, now))

    def on_ranges(
        self, s: PeerSession[L], ranges: Iterable[tuple[bytes, int, int]], now: float
    ) -> list[Action[L]]:
        requested = [catchup.Range(o, a, b) for o, a, b in ranges]
        return self._catchup(s, s.catchup.on_range_requests(requested))

    def on_ihave(
        self, s: PeerSession[L], ids: Sequence[bytes], now: float, held: Callable[[bytes], bool]
    ) -> list[Action[L]]:
        return self._gossip(self.gossip.on_ihave(s.peer, list(ids), now, held))

    def on_iwant(self, s: PeerSession[L], ids: Sequence[bytes], now: float) -> list[Action[L]]:
        return self._gossip(self.gossip.on_iwant(s.peer, list(ids), now))

    def on_graft(self, s: PeerSession[L], ids: Sequence[bytes], now: float) -> list[Action[L]]:
        return self._gossip(self.gossip.on_graft(s.peer, list(ids), now))

    def on_prune(self, s: PeerSession[L], now: float) -> list[Action[L]]:
        return self._gossip(self.gossip.on_prune(s.peer, now))

    def on_tree(
        self, s: PeerSession[L], root: bytes, cost: int, parent: bool, now: float
    ) -> list[Action[L]]:
        return self._gossip(self.gossip.on_tree(s.peer, root, cost, parent, now))

    def alerts_received(
        self,
        s: PeerSession[L],
        received: Sequence[Received],
        invalid: int,
        is_catchup: bool,
        now: float,
        now_ms: int,
    ) -> list[Action[L]]:
        """An Alerts frame was verified and stored: `received` its valid alerts, in order,
        `invalid` how many did not verify. `now_ms`: the wall clock, for alerts' ages."""
        counters = self.counters.setdefault(s.peer, PeerCounters())
        s.invalid += invalid
        counters.invalid_received += invalid
        actions: list[gossip.Action] = []
        caught_up: list[bytes] = []
        first_new: dict[bytes, int] = {}  # per origin, the lowest seq gossip pushed new
        last_answer: dict[bytes, int] = {}  # per origin, the highest seq answered new
        ttl = self.gossip.params.seen_ttl
        for r in received:
            if is_catchup:
                counters.caught_up += r.new
                # Created within the gossip core's memory (seen_ttl): still worth forwarding.
                if r.new and (now_ms - r.created_at_ms) / 1000 < ttl:
                    actions += self.gossip.forward_caught_up(s.peer, r.id, now)
                else:
                    caught_up.append(r.id)
            elif r.copy:
                if not r.forwarded:  # else alerts_verified gossiped it before the commit
                    counters.full_received += 1
                    counters.duplicates_received += not r.new
                    actions += self.gossip.on_alert(s.peer, r.id, r.new, now)
                if not r.new:
                    continue
                if not r.answer:
                    if r.seq < first_new.get(r.origin, r.seq + 1):
                        first_new[r.origin] = r.seq
                elif r.seq > last_answer.get(r.origin, 0):
                    last_answer[r.origin] = r.seq
        if caught_up:
            self.gossip.on_caught_up(caught_up, now)
        graft_timeout = self.gossip.params.graft_timeout
        for origin, seq in first_new.items():  # catch-up rule 7: did it move the head?
            if seq not in self.chains.out_of_order(origin):
                self.fetches.arriving(origin, now, graft_timeout)
        # An answer (IWANT, GRAFT) that filled a gap, with the head now above it, says
        # nothing of the tree bringing more; one that is the new head (an IWANT after an
        # IHAVE at the tip, a new parent's GRAFT) is the burst arriving, like a push.
        for origin, seq in last_answer.items():
            if origin not in first_new and self.chains.head(origin) == seq:
                self.fetches.arriving(origin, now, graft_timeout)
        out = self._gossip(actions)
        if s.invalid >= MAX_INVALID_PER_SESSION:
            # Closed first, so its catch-up asks this peer for nothing more; the other
            # sessions ask for what it held before it is told to go.
            close = self._closing(s, "peer_disconnected_invalid")
            return out + self._replan(now) + [close]
        verified = [(r.origin, r.seq) for r in received]
        out += self._catchup(s, s.catchup.on_alerts_received(verified, now))
        return out

    def alerts_verified(
        self, s: PeerSession[L], ids: Sequence[bytes], now: float
    ) -> list[Action[L]]:
        """Alerts of a gossip Alerts frame that verified, whose (origin, seq) slots this
        node neither holds nor is storing: forward them now, before this node's commit, so
        a relay's commit is not in series with its peers' copies. Their `Received` after
        the commit says `forwarded`. A commit that fails leaves them with the peers and
        their author; catch-up brings them back here."""
        counters = self.counters.setdefault(s.peer, PeerCounters())
        actions: list[gossip.Action] = []
        for i in ids:
            counters.full_received += 1
            actions += self.gossip.on_alert(s.peer, i, True, now)
        return self._gossip(actions)

    @staticmethod
    def check_proof(first_body: bytes, second_body: bytes) -> None:
        """Before ingesting an equivocation proof's two copies."""
        if first_body == second_body:
            raise InvalidAlert("an equivocation proof needs two different bodies")

    def proof_received(self, s: PeerSession[L], slots: Sequence[tuple[bytes, int] | None]) -> None:
        """After ingesting it: (origin, seq) of each copy, None for one that did not
        verify. A proof that does not hold ends the session (InvalidAlert)."""
        if len(set(slots)) != 1 or None in slots or len(slots) != 2:
            self.counters.setdefault(s.peer, PeerCounters()).invalid_received += 1
            raise InvalidAlert("an equivocation proof that does not hold")

    def proof_recorded(self, first: AlertRecord, second: AlertRecord) -> list[Action[L]]:
        """A new equivocation was recorded here: send the proof to every peer."""
        frame = ProofFrame(first, second)
        return [Send(s, (frame,)) for s in self.sessions.values()]

    # -- alerts from this node, and what the driver found for a Push ---------------------

    def published(self, ids: Iterable[bytes], now: float) -> list[Action[L]]:
        """Alerts published here (or ingested from a client): start spreading them."""
        return self._gossip(self.gossip.publish_many(list(ids), now))

    def push(
        self, peer: bytes, records: Iterable[Carried], answer: bool = False
    ) -> list[Action[L]]:
        """The alerts a `Push` asked for, as found; `answer` as the Push said. An alert is
        never pushed back to its own author, whatever the gossip core decided."""
        s = self.sessions.get(peer)
        if s is None:
            return []
        alerts = [r for r in records if r.origin != peer]
        self.counters.setdefault(peer, PeerCounters()).full_sent += len(alerts)
        frames = tuple(
            AlertsFrame(tuple(alerts[i : i + ALERTS_PER_FRAME]), answer=answer)
            for i in range(0, len(alerts), ALERTS_PER_FRAME)
        )
        return [Send(s, frames, gossip=True)]

    def serve(self, s: PeerSession[L], records: Iterable[Carried]) -> list[Action[L]]:
        """The alerts a `Serve` asked for, in frames of at most ALERTS_PER_FRAME alerts and
        about SERVE_FRAME_BYTES. A full outbox drops the rest: the requester times the
        range out and asks again."""
        frames: list[Frame] = []
        batch: list[Carried] = []
        size = 0
        for record in records:
            batch.append(record)
            size += len(record.body) + len(record.signature)
            if len(batch) == ALERTS_PER_FRAME or size >= SERVE_FRAME_BYTES:
                frames.append(AlertsFrame(tuple(batch), catchup=True))
                batch, size = [], 0
        if batch:
            frames.append(AlertsFrame(tuple(batch), catchup=True))
        return [Send(s, tuple(frames))] if frames else []

    def backlogged(self, peer: bytes, now: float) -> list[Action[L]]:
        """A gossip frame did not fit the peer's outbox: announce instead of pushing."""
        actions = self.gossip.on_peer_backlogged(peer, now)
        return self._gossip([a for a in actions if not isinstance(a, gossip.SendAlerts)])

    # -- timers -------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        due = self.gossip.next_deadline()
        if self._catchup_due:
            first = min(self._catchup_due.values())
            due = first if due is None else min(due, first)
        return due

    def handle_timer(self, now: float) -> list[Action[L]]:
        actions: list[Action[L]] = []
        gossip_due = self.gossip.next_deadline()
        if gossip_due is not None and now >= gossip_due:
            actions += self._gossip(self.gossip.handle_timer(now))
        for s in list(self.sessions.values()):
            due = self._catchup_due.get(s)
            if due is not None and now >= due:
                actions += self._catchup(s, s.catchup.handle_timer(now))
        return actions + self._replan(now)

    def _closing(self, s: PeerSession[L], event: str) -> Close[L]:
        """The engine ends `s`: its catch-up stops now, so its claimed ranges go back to
        the other sessions at once and the frames it may still handle before the driver
        reports it closed plan nothing (the driver's session_closed follows)."""
        s.catchup.close()
        self._catchup_due.pop(s, None)  # a replaced session's timer is gone with it
        return Close(s, event)

    def _replan(self, now: float) -> list[Action[L]]:
        """Claimed ranges were released with seqs missing (a session ended, or abandoned
        them): each session asks its peer for what that peer's last vector offers of
        those origins and no session has in flight (catch-up rule 5), now rather than
        at its next round, up to `interval` (30 s) later."""
        freed = self.fetches.take_freed()
        if not freed:
            return []
        actions: list[Action[L]] = []
        for s in list(self.sessions.values()):
            actions += self._catchup(s, s.catchup.replan(now, freed))
        return actions

    # -- the cores' actions, as frames --------------------------------------------------

    def _gossip(self, actions: Iterable[gossip.Action]) -> list[Action[L]]:
        out: list[Action[L]] = []
        for a in actions:
            if isinstance(a, gossip.SendAlerts):
                out.append(Push(a.peer, tuple(a.ids), a.answer))
                continue
            s = self.sessions.get(a.peer)
            if s is None:
                continue
            frame: Frame
            if isinstance(a, gossip.SendIHave):
                self.counters.setdefault(a.peer, PeerCounters()).ihave_sent += len(a.ids)
                frame = IdsFrame("ihave", tuple(a.ids))
            elif isinstance(a, gossip.SendIWant):
                frame = IdsFrame("iwant", tuple(a.ids))
            elif isinstance(a, gossip.SendGraft):
                frame = IdsFrame("graft", tuple(a.ids))
            elif isinstance(a, gossip.SendTree):
                frame = TreeFrame(a.root, a.cost, a.parent)
            else:
                frame = PruneFrame()
            out.append(Send(s, (frame,), gossip=True))
        return out

    def _catchup(self, s: PeerSession[L], actions: list[catchup.Action]) -> list[Action[L]]:
        # Every call into a session ends here, so this is where its deadline can change.
        due = s.catchup.next_deadline()
        if due is None or self.sessions.get(s.peer) is not s:
            self._catchup_due.pop(s, None)
        else:
            self._catchup_due[s] = due
        counters = self.counters.setdefault(s.peer, PeerCounters())
        out: list[Action[L]] = []
        for a in actions:
            if isinstance(a, catchup.SendDigest):
                out.append(Send(s, (DigestFrame(a.digest),)))
            elif isinstance(a, catchup.SendVector):
                out.append(Send(s, (VectorFrame(tuple(a.heads), a.reply),)))
            elif isinstance(a, catchup.SendRangeRequests):
                counters.ranges_requested += len(a.ranges)
                out.append(Send(s, (RangesFrame(tuple(a.ranges)),)))
            elif isinstance(a, catchup.ServeRanges):
                counters.ranges_served += len(a.ranges)
                out.append(Serve(s, tuple(a.ranges)))
            else:
                out.append(Shortfall(s, a.missing))
        return out
