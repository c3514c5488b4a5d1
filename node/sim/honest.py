"""An honest member's node: node/app/peers.py's PeerManager, minus asyncio and gRPC.

Each method below corresponds to one in peers.py (named in its docstring) and does
the same things in the same order, with the simulator's synchronous store in place
of `await store...` and `Link.send` in place of the asyncio outbox. The protocol
decisions are all made by the real cores: `Gossip` (or the `Flood` baseline), one
`CatchupSession` per session, one shared `FetchRegistry`, the store's `Chains`.
"""

from __future__ import annotations

from collections.abc import Sequence

from node.app.peers import (
    ALERTS_PER_FRAME,
    MAX_INVALID_PER_SESSION,
    MAX_PROOFS_ON_OPEN,
    SERVE_FRAME_BYTES,
)
from node.core import catchup, gossip
from node.core.alerts import AlertRecord, alert_id
from node.core.errors import AlertmeshError, InvalidAlert, LimitExceeded
from node.sim.process import Env, Host, Link, Process
from node.sim.store import Arrival
from node.sim.wire import Alerts, Digest, Frame, Ids, Kind, Proof, Prune, Ranges, Signed, Vector
from node.sim.workload import wall_ms
from node.store.base import PutOutcome


class Flood(gossip.Gossip):
    """The baseline: every new alert goes in full to every peer but its sender."""

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
        self.gossip = core
        self.fetches = catchup.FetchRegistry()  # shared: each gap is fetched from one peer
        self.links: dict[bytes, Link] = {}
        self._catchup_due: dict[Link, float] = {}  # each session's next deadline, kept current
        self.store = host.store
        # AlertNode.start: the own chain continues from what the store holds.
        own = host.key
        seq = self.store.chains.get(own).max_seq
        head = self.store.range(own, seq, seq, limit=1) if seq else []
        host.author.resume(seq, head[0].id if head else b"")

    # -- sessions (PeerManager.session) ------------------------------------------------

    def session_up(self, link: Link) -> None:
        now = self.env.now
        link.catchup = catchup.CatchupSession(
            self.store.chains,
            initiator=link.role == "dialer",
            config=self.env.catchup_config,
            registry=self.fetches,
        )
        existing = self.links.get(link.peer)
        if existing is not None:
            # Both sides dialed: keep the session dialed by the smaller key, on both ends.
            keep_new = (self.host.key < link.peer) == (link.role == "dialer")
            if not keep_new:
                self.env.close(link)
                return
            self.links[link.peer] = link
            self.env.close(existing)
        self.links[link.peer] = link
        self._execute(self.gossip.peer_up(link.peer, now))
        self._catchup(link, link.catchup.start(now))
        for proof in self.store.equivocations[-MAX_PROOFS_ON_OPEN:]:
            link.send(Proof(_signed(proof.first), _signed(proof.second)))

    def session_down(self, link: Link) -> None:
        """The `finally` of PeerManager.session."""
        if link.catchup is not None:
            link.catchup.close()  # release its claimed ranges for other sessions
        self._catchup_due.pop(link, None)
        if self.links.get(link.peer) is link:
            del self.links[link.peer]
            self._execute(self.gossip.peer_down(link.peer, self.env.now))

    # -- frames (PeerManager._read; _pump closes the session on AlertmeshError) ----------

    def on_frame(self, link: Link, frame: Frame) -> None:
        if self.links.get(link.peer) is not link:
            return
        try:
            self._read(link, frame)
        except AlertmeshError:
            self.env.close(link)

    def _read(self, link: Link, frame: Frame) -> None:
        now = self.env.now
        session = link.catchup
        assert session is not None
        if isinstance(frame, Alerts):
            self._on_alerts(link, frame)
        elif isinstance(frame, Digest):
            self._catchup(link, session.on_digest(frame.digest, now))
        elif isinstance(frame, Vector):
            heads = catchup.parse_vector(frame.heads)
            self._catchup(link, session.on_vector(heads, frame.reply, now))
        elif isinstance(frame, Proof):
            self._on_proof(link, frame)
        elif isinstance(frame, Ranges):
            ranges = [catchup.Range(o, a, b) for o, a, b in frame.ranges]
            self._catchup(link, session.on_range_requests(ranges))
        elif isinstance(frame, Ids) and frame.kind is Kind.IHAVE:
            actions = self.gossip.on_ihave(link.peer, list(frame.ids), now, self.store.holds)
            self._execute(actions)
        elif isinstance(frame, Ids) and frame.kind is Kind.IWANT:
            self._execute(self.gossip.on_iwant(link.peer, list(frame.ids), now))
        elif isinstance(frame, Ids) and frame.kind is Kind.GRAFT:
            self._execute(self.gossip.on_graft(link.peer, list(frame.ids), now))
        elif isinstance(frame, Prune):
            self._execute(self.gossip.on_prune(link.peer, now))

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

    def _on_alerts(self, link: Link, frame: Alerts) -> None:
        """PeerManager._on_alerts."""
        hops = frame.hops or (0,) * len(frame.alerts)
        results = self._ingest(link, frame.alerts, hops, frame.catchup)
        now = self.env.now
        actions: list[gossip.Action] = []
        verified: list[tuple[bytes, int]] = []
        caught_up: list[bytes] = []
        for record, outcome in results:
            if record is None:
                link.invalid += 1
                continue
            verified.append((record.origin, record.seq))
            if frame.catchup:
                self.env.copy_received(self.host.index, record, catchup=True)
                age_s = (wall_ms(now) - record.created_at_ms) / 1000
                if outcome is PutOutcome.ACCEPTED and age_s < self.gossip.params.seen_ttl:
                    actions += self.gossip.forward_caught_up(link.peer, record.id, now)
                else:
                    caught_up.append(record.id)
            elif outcome in (PutOutcome.ACCEPTED, PutOutcome.DUPLICATE):
                is_new = outcome is PutOutcome.ACCEPTED
                self.env.copy_received(self.host.index, record, catchup=False)
                actions += self.gossip.on_alert(link.peer, record.id, is_new, now)
        if caught_up:
            self.gossip.on_caught_up(caught_up, now)
        self._execute(actions)
        assert link.catchup is not None
        self._catchup(link, link.catchup.on_alerts_received(verified, now))
        if link.invalid >= MAX_INVALID_PER_SESSION:
            self.env.close(link)

    # -- equivocation proofs -------------------------------------------------------------

    def _on_proof(self, link: Link, proof: Proof) -> None:
        """PeerManager._on_proof: both copies are verified and stored like any alert."""
        if proof.first[0] == proof.second[0]:
            raise InvalidAlert("an equivocation proof needs two different bodies")
        results = self._ingest(link, [proof.first, proof.second], (0, 0), catchup=True)
        records = [r for r, _ in results if r is not None]
        if len(records) != 2 or (records[0].origin, records[0].seq) != (
            records[1].origin,
            records[1].seq,
        ):
            raise InvalidAlert("an equivocation proof that does not hold")

    def _spread_proof(self, second: AlertRecord) -> None:
        """PeerManager.spread_proof: a new equivocation was recorded here."""
        stored = self.store.range(second.origin, second.seq, second.seq, limit=1)
        if not stored:
            return
        frame = Proof(_signed(stored[0]), _signed(second))
        for link in self.links.values():
            link.send(frame)

    # -- catch-up (PeerManager._catchup, _serve) -----------------------------------------

    def _catchup(self, link: Link, actions: list[catchup.Action]) -> None:
        # Every call into a session ends here, so this is where its deadline can change.
        assert link.catchup is not None
        due = link.catchup.next_deadline()
        if due is None or self.links.get(link.peer) is not link:
            self._catchup_due.pop(link, None)
        else:
            self._catchup_due[link] = due
        for action in actions:
            if isinstance(action, catchup.SendDigest):
                link.send(Digest(action.digest))
            elif isinstance(action, catchup.SendVector):
                link.send(Vector(action.heads, action.reply))
            elif isinstance(action, catchup.SendRangeRequests):
                link.send(Ranges(tuple((r.origin, r.from_seq, r.to_seq) for r in action.ranges)))
            elif isinstance(action, catchup.ServeRanges):
                self._serve(link, action.ranges)

    def _serve(self, link: Link, ranges: Sequence[catchup.Range]) -> None:
        """Original signed bytes, frames of at most ALERTS_PER_FRAME alerts and about
        SERVE_FRAME_BYTES; a full outbox drops the rest."""
        batch: list[AlertRecord] = []
        size = 0
        for r in ranges:
            for record in self.store.range(r.origin, r.from_seq, r.to_seq, limit=r.size):
                batch.append(record)
                size += len(record.body) + len(record.signature)
                if len(batch) == ALERTS_PER_FRAME or size >= SERVE_FRAME_BYTES:
                    if not link.send(self._alerts_frame(batch, catchup=True)):
                        return
                    batch, size = [], 0
        if batch:
            link.send(self._alerts_frame(batch, catchup=True))

    # -- alerts from this node (AlertNode._publish_new, PeerManager._on_local_alerts) ------

    def publish(self) -> AlertRecord | None:
        now = self.env.now
        record = self.host.author.next(now)
        self.env.published(self.host.index, record)
        [outcome] = self.store.put([record], [Arrival(now, 0, False)], wall_ms(now))
        if outcome is PutOutcome.ACCEPTED:
            self.env.stored(self.host.index, record, second_copy=False)
            self._execute(self.gossip.publish(record.id, now))
        return record

    # -- gossip actions (PeerManager._execute, _send) ------------------------------------

    def _execute(self, actions: list[gossip.Action]) -> None:
        for action in actions:
            records: list[AlertRecord] = []
            if isinstance(action, gossip.SendAlerts):
                for i in action.ids:
                    record = self.store.get(i)
                    # Never pushed back to its own author, whatever the core decided.
                    if record is not None and record.origin != action.peer:
                        records.append(record)
            self._send(action, records)

    def _send(self, action: gossip.Action, records: list[AlertRecord]) -> None:
        link = self.links.get(action.peer)
        if link is None:
            return
        frames: list[Frame]
        if isinstance(action, gossip.SendAlerts):
            frames = [
                self._alerts_frame(records[i : i + ALERTS_PER_FRAME], catchup=False)
                for i in range(0, len(records), ALERTS_PER_FRAME)
            ]
        elif isinstance(action, gossip.SendIHave):
            hops = tuple(self.store.hops(i) + 1 for i in action.ids)
            frames = [Ids(Kind.IHAVE, action.ids, hops)]
        elif isinstance(action, gossip.SendIWant):
            frames = [Ids(Kind.IWANT, action.ids)]
        elif isinstance(action, gossip.SendGraft):
            frames = [Ids(Kind.GRAFT, action.ids)]
        else:
            frames = [Prune()]
        for frame in frames:
            if not link.send(frame):
                # Backlogged: announce instead of pushing.
                for a in self.gossip.on_peer_backlogged(link.peer, self.env.now):
                    if not isinstance(a, gossip.SendAlerts):
                        self._send(a, [])
                return

    def _alerts_frame(self, records: Sequence[AlertRecord], *, catchup: bool) -> Alerts:
        hops = tuple(self.store.hops(r.id) + 1 for r in records)
        return Alerts(tuple(_signed(r) for r in records), catchup, hops)

    # -- timers (PeerManager._timers) ----------------------------------------------------

    def next_deadline(self) -> float | None:
        due = self.gossip.next_deadline()
        if self._catchup_due:
            first = min(self._catchup_due.values())
            due = first if due is None else min(due, first)
        return due

    def wake(self) -> None:
        now = self.env.now
        gossip_due = self.gossip.next_deadline()
        if gossip_due is not None and now >= gossip_due:
            self._execute(self.gossip.handle_timer(now))
        for link in list(self.links.values()):
            due = self._catchup_due.get(link)
            if due is not None and now >= due and link.catchup is not None:
                self._catchup(link, link.catchup.handle_timer(now))


def _signed(record: AlertRecord) -> Signed:
    return (record.body, record.signature)
