"""An honest member's node in the simulator: a driver of node/core/peer_engine.py.

The decisions are the engine's, the same object node/app/peers.py drives: this
module only feeds it the simulator's events (sessions, frames, the virtual clock) and
executes its actions on the simulated `Link`s, with the simulator's synchronous store
in place of `await store...`. It also stands in for AlertNode's ingest and publish.
"""

from __future__ import annotations

from collections.abc import Sequence

from node.core import gossip
from node.core import peer_engine as pe
from node.core.alerts import AlertRecord, alert_id
from node.core.errors import AlertmeshError, LimitExceeded
from node.sim.process import Env, Host, Link, Process
from node.sim.store import Arrival
from node.sim.wire import (
    Alerts,
    Digest,
    Frame,
    Ids,
    Kind,
    Proof,
    Prune,
    Ranges,
    Signed,
    Tree,
    Vector,
)
from node.sim.workload import wall_ms
from node.store.base import PutOutcome

_IDS_KINDS = {"ihave": Kind.IHAVE, "iwant": Kind.IWANT, "graft": Kind.GRAFT}


class Flood(gossip.Gossip):
    """The baseline: every new alert goes in full to every peer but its sender."""

    def set_key(self, key: bytes) -> None:
        pass  # no tree: flooding sends no TREE frames

    def publish(self, id: bytes, now: float) -> list[gossip.Action]:
        return self._to_all(id, None)

    def on_alert(self, peer: bytes, id: bytes, is_new: bool, now: float) -> list[gossip.Action]:
        return self._to_all(id, peer) if is_new else []

    def _to_all(self, id: bytes, sender: bytes | None) -> list[gossip.Action]:
        peers = sorted(self.eager_peers() | self.lazy_peers())
        return [gossip.SendAlerts(p, (id,)) for p in peers if p != sender]


class HonestNode(Process):
    def __init__(self, env: Env, host: Host, core: gossip.Gossip) -> None:
        super().__init__(env, host)
        self.store = host.store
        self.engine: pe.PeerEngine[Link] = pe.PeerEngine(
            host.key, self.store.chains, core, env.catchup_config
        )
        core.set_priority(lambda key: env.roster.tree_priority(key))  # T1, as peers.py
        # AlertNode.start: the own chain continues from what the store holds.
        own = host.key
        seq = self.store.chains.get(own).max_seq
        head = self.store.range(own, seq, seq, limit=1) if seq else []
        host.author.resume(seq, head[0].id if head else b"")

    @property
    def gossip(self) -> gossip.Gossip:
        return self.engine.gossip

    @property
    def links(self) -> dict[bytes, Link]:
        return {peer: s.link for peer, s in self.engine.sessions.items()}

    # -- sessions ----------------------------------------------------------------------

    def session_up(self, link: Link) -> None:
        proofs = [(p.first, p.second) for p in self.store.equivocations]
        session, actions = self.engine.session_opened(
            link, link.peer, link.role, self.env.now, proofs, link.rtt
        )
        if session is None:
            self.env.close(link)
            return
        link.engine_session = session
        self._run(actions)

    def session_down(self, link: Link) -> None:
        if link.engine_session is not None:
            self._run(self.engine.session_closed(link.engine_session, self.env.now))

    # -- frames (PeerManager._read; _pump closes the session on AlertmeshError) ----------

    def on_frame(self, link: Link, frame: Frame) -> None:
        s = link.engine_session
        if s is None or not self.engine.current(s):
            return
        try:
            self._run(self._read(s, frame))
        except AlertmeshError:
            self.env.close(link)

    def _read(self, s: pe.PeerSession[Link], frame: Frame) -> list[pe.Action[Link]]:
        now = self.env.now
        engine = self.engine
        if isinstance(frame, Alerts):
            return self._on_alerts(s, frame)
        if isinstance(frame, Digest):
            return engine.on_digest(s, frame.digest, now)
        if isinstance(frame, Vector):
            return engine.on_vector(s, frame.heads, frame.reply, now)
        if isinstance(frame, Proof):
            engine.check_proof(frame.first[0], frame.second[0])
            results = self._ingest(s.link, [frame.first, frame.second], (0, 0), catchup=True)
            engine.proof_received(s, [(r.origin, r.seq) if r else None for r, _ in results])
            return []
        if isinstance(frame, Ranges):
            return engine.on_ranges(s, frame.ranges, now)
        if isinstance(frame, Ids) and frame.kind is Kind.IHAVE:
            return engine.on_ihave(s, frame.ids, now, self.store.holds)
        if isinstance(frame, Ids) and frame.kind is Kind.IWANT:
            return engine.on_iwant(s, frame.ids, now)
        if isinstance(frame, Ids) and frame.kind is Kind.GRAFT:
            return engine.on_graft(s, frame.ids, now)
        if isinstance(frame, Prune):
            return engine.on_prune(s, now)
        if isinstance(frame, Tree):
            return engine.on_tree(s, frame.root, frame.cost, frame.parent, now)
        return []

    def _ingest(
        self, link: Link, items: Sequence[Signed], hops: Sequence[int], catchup: bool
    ) -> list[tuple[AlertRecord | None, PutOutcome | None]]:
        """AlertNode.ingest: verify, store, then run the equivocation hooks.

        An alert held already, byte for byte with its signature, is a duplicate and is
        not verified again.
        """
        if len(items) > self.env.limits.max_batch:
            raise LimitExceeded(f"{len(items)} alerts in one frame")
        now = self.env.now
        now_ms = wall_ms(now)
        ids = [alert_id(body) for body, _ in items]
        checked: list[AlertRecord | AlertmeshError | None] = []
        for (body, signature), id in zip(items, ids, strict=True):
            held = self.store.get(id)
            if held is not None and held.signature == signature:
                checked.append(None)
            else:
                checked.append(self.env.verifier.check(body, signature, self.env.roster, now_ms))
        valid: list[AlertRecord] = []
        arrivals: list[Arrival] = []
        for c, hop in zip(checked, hops, strict=True):
            if isinstance(c, AlertRecord):
                valid.append(c)
                arrivals.append(Arrival(now, hop, catchup))
            elif c is not None:
                self.env.invalid_received(self.host.index, link.peer_index, c)
        outcomes = iter(self.store.put(valid, arrivals, now_ms) if valid else [])
        results: list[tuple[AlertRecord | None, PutOutcome | None]] = []
        equivocations: list[AlertRecord] = []
        for c, id in zip(checked, ids, strict=True):
            if c is None:
                results.append((self.store.get(id), PutOutcome.DUPLICATE))
                continue
            if not isinstance(c, AlertRecord):
                results.append((None, None))
                continue
            outcome = next(outcomes)
            results.append((c, outcome))
            if outcome is not PutOutcome.DUPLICATE:
                self.env.stored(self.host.index, c, second_copy=outcome is PutOutcome.EQUIVOCATION)
            if outcome is PutOutcome.EQUIVOCATION:
                equivocations.append(c)
        for record in equivocations:
            self._spread_proof(record)
        return results

    def _on_alerts(self, s: pe.PeerSession[Link], frame: Alerts) -> list[pe.Action[Link]]:
        hops = frame.hops or (0,) * len(frame.alerts)
        results = self._ingest(s.link, frame.alerts, hops, frame.catchup)
        received: list[pe.Received] = []
        invalid = 0
        for record, outcome in results:
            if record is None:
                invalid += 1
                continue
            new = outcome is PutOutcome.ACCEPTED
            copy = new or outcome is PutOutcome.DUPLICATE
            if frame.catchup or copy:
                self.env.copy_received(self.host.index, record, catchup=frame.catchup)
            received.append(
                pe.Received(
                    record.id,
                    record.origin,
                    record.seq,
                    new,
                    copy,
                    record.created_at_ms,
                    answer=frame.answer,
                )
            )
        now = self.env.now
        return self.engine.alerts_received(s, received, invalid, frame.catchup, now, wall_ms(now))

    def _spread_proof(self, second: AlertRecord) -> None:
        """PeerManager.spread_proof: a new equivocation was recorded here."""
        stored = self.store.range(second.origin, second.seq, second.seq, limit=1)
        if stored:
            self._run(self.engine.proof_recorded(stored[0], second))

    # -- alerts from this node (AlertNode._publish_new, PeerManager._on_local_alerts) ------

    def publish(self) -> AlertRecord | None:
        now = self.env.now
        record = self.host.author.next(now)
        self.env.published(self.host.index, record)
        [outcome] = self.store.put([record], [Arrival(now, 0, False)], wall_ms(now))
        if outcome is PutOutcome.ACCEPTED:
            self.env.stored(self.host.index, record, second_copy=False)
            self._run(self.engine.published([record.id], now))
        return record

    # -- the engine's actions -------------------------------------------------------------

    def _run(self, actions: list[pe.Action[Link]]) -> None:
        for action in actions:
            if isinstance(action, pe.Send):
                self._send(action)
            elif isinstance(action, pe.Push):
                found = (self.store.get(i) for i in action.ids)
                held = (r for r in found if r is not None)
                self._run(self.engine.push(action.peer, held, action.answer))
            elif isinstance(action, pe.Serve):
                records = [
                    record
                    for r in action.ranges
                    for record in self.store.range(r.origin, r.from_seq, r.to_seq, limit=r.size)
                ]
                self._run(self.engine.serve(action.session, records))
            elif isinstance(action, pe.Close):
                self.env.close(action.session.link)

    def _send(self, action: pe.Send[Link]) -> None:
        link = action.session.link
        for frame in action.frames:
            if not link.send(self._encode(frame)):
                if action.gossip:
                    self._run(self.engine.backlogged(action.session.peer, self.env.now))
                return

    def _encode(self, frame: pe.Frame) -> Frame:
        if isinstance(frame, pe.AlertsFrame):
            hops = tuple(self.store.hops(r.id) + 1 for r in frame.records)
            signed = tuple(_signed(r) for r in frame.records)
            return Alerts(signed, frame.catchup, hops, frame.answer)
        if isinstance(frame, pe.IdsFrame):
            kind = _IDS_KINDS[frame.kind]
            if kind is Kind.IHAVE:
                return Ids(kind, frame.ids, tuple(self.store.hops(i) + 1 for i in frame.ids))
            return Ids(kind, frame.ids)
        if isinstance(frame, pe.PruneFrame):
            return Prune()
        if isinstance(frame, pe.TreeFrame):
            return Tree(frame.root, frame.cost, frame.parent)
        if isinstance(frame, pe.DigestFrame):
            return Digest(frame.digest)
        if isinstance(frame, pe.VectorFrame):
            return Vector(frame.heads, frame.reply)
        if isinstance(frame, pe.RangesFrame):
            return Ranges(tuple((r.origin, r.from_seq, r.to_seq) for r in frame.ranges))
        return Proof(_signed(frame.first), _signed(frame.second))

    # -- timers (PeerManager._timers) ----------------------------------------------------

    def next_deadline(self) -> float | None:
        return self.engine.next_deadline()

    def wake(self) -> None:
        self._run(self.engine.handle_timer(self.env.now))


def _signed(record: pe.Carried) -> Signed:
    return (record.body, record.signature)
