"""The peer layer: sessions with other members, driving the peer engine.

One `Link` per authenticated session, run by a `SessionRunner` (node/app/peer_session.py):
frames from a link are handled in order; while one Alerts frame is verified and stored
the next frames are read ahead into a bounded inbox, and the next ingest takes every
Alerts frame that queued up meanwhile (a full inbox is the flow control a fast sender
meets). This module admits sessions, dials (node/app/peer_dialing.py), runs the timers,
keeps the recent alerts (node/app/recent_alerts.py) and executes the engine's actions.
Frames to a link wait in a bounded outbox, where gossip Alerts frames queued while the
writer is busy are joined into one (node/app/peer_frames.py): batching that adds
nothing at low rates. What to send, and to whom, is decided by node/core/peer_engine.py,
the object the simulator (node/sim/honest.py) drives too; this module keeps the sockets,
tasks and queues, the store and verifier calls, the log lines, and executes the engine's
actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable, Sequence

from node.app import latency_trace, peer_stats
from node.app.peer_dialing import Dialing
from node.app.peer_frames import OUTBOX_FRAMES, Inbox, InboxStats, Outbox, OutboxStats
from node.app.peer_session import Arrivals, Link, SessionRunner
from node.app.recent_alerts import RecentAlerts
from node.app.service import AlertNode
from node.core import catchup, gossip
from node.core import peer_engine as pe
from node.core.alerts import AlertRecord
from node.core.errors import AlertmeshError
from node.core.peer_engine import (  # re-exported: the engine's limits and counters
    ALERTS_PER_FRAME,
    MAX_INVALID_PER_SESSION,
    MAX_PROOFS_ON_OPEN,
    SERVE_FRAME_BYTES,
    PeerCounters,
)
from node.rpc.peer_transport import FrameTransport, PeerSecurity, PinMismatch

__all__ = [
    "ALERTS_PER_FRAME",
    "MAX_INVALID_PER_SESSION",
    "MAX_PROOFS_ON_OPEN",
    "OUTBOX_FRAMES",
    "SERVE_FRAME_BYTES",
    "Link",
    "PeerCounters",
    "PeerManager",
]

log = logging.getLogger(__name__)


class PeerManager:
    def __init__(
        self,
        node: AlertNode,
        *,
        connect: Sequence[str],
        security: PeerSecurity | None = None,
        params: gossip.GossipParams | None = None,
        catchup_config: catchup.CatchupConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node = node
        self.connect = tuple(connect)
        self.security = security or PeerSecurity(None)
        self.engine: pe.PeerEngine[Link] = pe.PeerEngine(
            node.identity.public_key,
            node.store.chains,
            gossip.Gossip(params or gossip.GossipParams(), rng or random.Random()),
            catchup_config,
            members=lambda key: key in node.roster,  # a TREE frame's root must be a member
        )
        self.gossip = self.engine.gossip
        self.gossip.set_priority(lambda key: node.roster.tree_priority(key))  # T1
        self.counters = self.engine.counters
        self.recent = RecentAlerts()
        self._wake = asyncio.Event()
        self._armed: float | None = None  # the deadline the timer task sleeps to
        self.timer_wakes = 0  # times the timer task woke (a count for tests)
        self._roster_changed = asyncio.Event()
        self.blocked: set[bytes] = set()
        # Alerts received and still being verified/stored: an IHAVE for one of them must
        # not start a repair (GRAFT) just because the store does not hold it yet.
        self.arrivals = Arrivals()
        self._dialing = Dialing(self)  # node/app/peer_dialing.py
        # Frames through the outboxes and inboxes of all sessions: how well they batch.
        self.outbox_stats = OutboxStats()
        self.inbox_stats = InboxStats()
        node.hooks.append(self._on_local_alerts)
        node.equivocation_hooks.append(self.spread_proof)
        node.peer_stats = self.peer_stats
        node.extra_counters = self.gossip_counters

    @property
    def links(self) -> dict[bytes, Link]:
        """The open sessions, one per peer."""
        return {peer: s.link for peer, s in self.engine.sessions.items()}

    @property
    def key(self) -> bytes:
        return self.node.identity.public_key

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- running -----------------------------------------------------------

    async def run(self) -> None:
        """Dial the configured peers (again after failures) and drive gossip timers."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._timers(), name="gossip-timers")
            while True:
                self._dialing.reconcile(tg)
                await self._roster_changed.wait()
                self._roster_changed.clear()

    def set_blocked(self, key: bytes, blocked: bool) -> None:
        """Operator control: cut a member's node off (or let it back) without a restart."""
        if blocked:
            self.blocked.add(key)
            link = self.links.get(key)
            if link is not None:
                log.warning("closing the session with %s: blocked by the operator", link.name)
                self._close(link)
        else:
            self.blocked.discard(key)
            self._dialing.unblocked()

    def roster_reloaded(self) -> None:
        now_ms = time.time_ns() // 1_000_000
        for key, link in list(self.links.items()):
            member = self.node.roster.get(key)
            if member is None:
                log.warning("closing the session with %s: no longer on the roster", link.name)
                self._close(link)
            elif (entry := member.key_entry(key)) is None or not entry.valid_at(now_ms):
                log.warning("closing the session with %s: its key is no longer valid", link.name)
                self._close(link)
            elif not self.security.plaintext and member.tls_fingerprint != link.tls_fingerprint:
                log.warning("closing the session with %s: its TLS pin changed", link.name)
                self._close(link)
        self._roster_changed.set()

    def handshake_refused(self, exc: AlertmeshError) -> None:
        """A session refused before it opened: one log line, counted in stats."""
        extra = {"event": "handshake_refused", "error": type(exc).__name__}
        if isinstance(exc, PinMismatch):
            self.node.counters.add("peer_tls_pin_mismatch")
            log.warning("peer session refused: %s", exc, extra=extra)
        else:
            self.node.counters.add("peer_handshakes_refused")
            log.info("peer session refused: %s", exc, extra=extra)

    async def _timers(self) -> None:
        """Call the engine's handle_timer when its deadline passes (woken early on changes)."""
        while True:
            due = self._armed = self.engine.next_deadline()
            timeout = max(0.0, due - self.now()) if due is not None else None
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that races with the wake-up, and shutdown then hangs.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            self.timer_wakes += 1
            actions = self.engine.handle_timer(self.now())
            if actions:  # the loop then takes the new deadline at its top
                await self._run(actions)

    # -- sessions ------------------------------------------------------------

    async def session(
        self, key: bytes, transport: FrameTransport, role: str, tls_fingerprint: bytes = b""
    ) -> None:
        """Run one authenticated session until either side ends it. `tls_fingerprint`:
        the peer certificate the TLS handshake authenticated."""
        # Read before the checks: no await may stand between them and the session's
        # registration, or a reload or a block in between would miss it.
        proofs = [(p.first, p.second) for p in await self.node.equivocations()]
        member = self.node.roster.get(key)
        name = member.name if member else key.hex()[:16]
        if key in self.blocked:
            log.info("refusing a session with %s: blocked by the operator", name)
            return
        # The roster may have been reloaded while the handshake ran: check again what
        # the handshake checked, against the roster as it is now.
        entry = member.key_entry(key) if member else None
        if entry is None or not entry.valid_at(time.time_ns() // 1_000_000):
            log.warning("refusing a session with %s: its key is not valid now", name)
            return
        if not self.security.plaintext and member and member.tls_fingerprint != tls_fingerprint:
            self.handshake_refused(PinMismatch(f"{name}'s TLS pin changed during the handshake"))
            return
        link = Link(
            key,
            name,
            role,
            transport,
            outbox=Outbox(stats=self.outbox_stats),
            inbox=Inbox(stats=self.inbox_stats),
            tls_fingerprint=tls_fingerprint,
        )
        session, actions = self.engine.session_opened(link, key, role, self.now(), proofs)
        if session is None:  # both sides dialed: the other session is kept
            return
        link.session = session
        self._dialing.session_opened(self.now())
        log.info(
            "session with %s open (%s)", name, role, extra={"event": "session_open", "peer": name}
        )
        await self._run(actions)
        try:
            await SessionRunner(self, link).run(session)
        finally:
            await self._run(self.engine.session_closed(session, self.now()))
            log.info(
                "session with %s closed", name, extra={"event": "session_closed", "peer": name}
            )

    def _close(self, link: Link) -> None:
        link.closed.set()

    # -- what session runners need (node/app/peer_session.py) ----------------------

    def cached(self, alert: bytes) -> bool:
        return alert in self.recent

    async def run_actions(self, actions: list[pe.Action[Link]]) -> None:
        await self._run(actions)

    def forward_verified(self, s: pe.PeerSession[Link], records: list[AlertRecord]) -> None:
        """Gossiped alerts that verified and are new here, before their commit: forward
        them now (the cache answers the pushes; node/core/peer_engine.py alerts_verified)."""
        self.recent.remember(records)
        self._run_now(self.engine.alerts_verified(s, [r.id for r in records], self.now()))

    def forget_cached(self, alerts: Iterable[bytes]) -> None:
        """Forwarded alerts whose commit failed: not held here, whatever the cache says."""
        self.recent.forget(alerts)

    # -- equivocation proofs -------------------------------------------------

    async def spread_proof(self, second: AlertRecord) -> None:
        """A new equivocation was recorded here: send the proof to every peer."""
        stored = await self.node.store.range(second.origin, second.seq, second.seq, limit=1)
        if not stored:
            return
        log.warning(
            "origin %s signed two alerts with seq %d: equivocation",
            self.node.roster.name_of(second.origin) or second.origin.hex()[:16],
            second.seq,
            extra={
                "event": "equivocation",
                "origin": second.origin,
                "seq": second.seq,
                "alert_id": second.id,
            },
        )
        await self._run(self.engine.proof_recorded(stored[0], second))

    # -- alerts from this node ----------------------------------------------

    def _on_local_alerts(self, records: Sequence[AlertRecord], source: bytes | None) -> None:
        self.recent.remember(records)
        if source is None:  # published here or ingested by a client: start spreading it
            # Called from synchronous hooks: the alerts of a local publish are always in
            # the cache, so no await is needed.
            self._run_now(self.engine.published([r.id for r in records], self.now()))

    # -- the engine's actions ------------------------------------------------------

    async def _run(self, actions: list[pe.Action[Link]]) -> None:
        """Execute the engine's actions in order, reading the store where they need it."""
        for action in _pushes_joined(actions):
            if isinstance(action, pe.Push):
                alerts, missing = self.recent.split(action.ids)
                for i in missing:
                    stored = await self.node.store.get(i)
                    if stored is not None:
                        alerts.append(stored.record)
                self._run_now(self.engine.push(action.peer, alerts, action.answer))
            elif isinstance(action, pe.Serve):
                records: list[pe.Carried] = []
                for r in action.ranges:
                    records += await self.node.store.range(
                        r.origin, r.from_seq, r.to_seq, limit=r.size
                    )
                self._run_now(self.engine.serve(action.session, records))
            else:
                self._run_now([action])
        self._rearm()

    def _rearm(self) -> None:
        """Actions ran, so the engine's next deadline may have moved: wake the timer task
        only if it is now earlier than the one the task sleeps to. A later one is taken
        when that one passes (handle_timer then finds nothing due), so a frame or an
        alert costs no wake-up of the timer task of its own."""
        due, armed = self.engine.next_deadline(), self._armed
        if due is not None and (armed is None or due < armed):
            self._wake.set()

    def _run_now(self, actions: list[pe.Action[Link]]) -> None:
        """The actions that need no store; a Push is answered from the cache alone."""
        for action in _pushes_joined(actions):
            if isinstance(action, pe.Send):
                self._send(action)
            elif isinstance(action, pe.Push):
                found = self.recent.split(action.ids)[0]
                self._run_now(self.engine.push(action.peer, found, action.answer))
            elif isinstance(action, pe.Close):
                if action.event == "peer_disconnected_invalid":
                    log.warning(
                        "disconnecting %s: %d invalid alerts",
                        action.session.link.name,
                        action.session.invalid,
                        extra={"event": action.event, "peer": action.session.link.name},
                    )
                self._close(action.session.link)
            elif isinstance(action, pe.Shortfall):
                log.info(
                    "%s did not deliver %d alerts of a catch-up range in time",
                    action.session.link.name,
                    action.missing,
                )
        self._rearm()

    def _send(self, action: pe.Send[Link]) -> None:
        link = action.session.link
        counters = self.counters.setdefault(link.key, PeerCounters())
        for frame in action.frames:
            if not link.send(frame):
                if action.gossip:
                    log.warning(
                        "%s is backlogged; announcing instead of pushing",
                        link.name,
                        extra={"event": "peer_backlogged", "peer": link.name},
                    )
                    self._run_now(self.engine.backlogged(link.key, self.now()))
                return
            if latency_trace.ON and isinstance(frame, pe.AlertsFrame):
                for r in frame.records:
                    latency_trace.mark(f"queued>{link.name}", r.id)
            if isinstance(frame, pe.AlertsFrame) and frame.catchup:
                counters.served += len(frame.records)
                counters.catchup_bytes_sent += sum(
                    len(r.body) + len(r.signature) for r in frame.records
                )

    # -- inspection ------------------------------------------------------------

    def gossip_counters(self) -> dict[str, int]:
        """Dissemination totals over the current sessions (for `alertmesh stats`)."""
        return peer_stats.gossip_counters(self)

    def peer_stats(self) -> list[dict[str, object]]:
        return peer_stats.peer_rows(self)


def _pushes_joined(actions: list[pe.Action[Link]]) -> list[pe.Action[Link]]:
    """The actions with each peer's Pushes joined into one, where no other action for
    that peer stands between them: a batch of alerts to forward becomes one Push (and
    one frame) per peer instead of one per alert and peer. Order per peer is kept, and
    an answer is never joined to a push (M3: a PRUNE must not take it along)."""
    if sum(isinstance(a, pe.Push) for a in actions) < 2:
        return actions
    out: list[pe.Action[Link]] = []
    groups: list[tuple[int, pe.Push, list[bytes]]] = []  # (index in out, first Push, ids)
    open_: dict[bytes, tuple[bool, list[bytes]]] = {}  # peer -> its open Push: answer, ids
    for action in actions:
        if isinstance(action, pe.Push):
            run = open_.get(action.peer)
            if run is None or run[0] != action.answer:
                run = open_[action.peer] = (action.answer, [])
                groups.append((len(out), action, run[1]))
                out.append(action)  # replaced below
            run[1].extend(action.ids)
            continue
        session = getattr(action, "session", None)
        if session is not None:
            open_.pop(session.peer, None)  # a later Push to it goes after this action
        out.append(action)
    for index, first, ids in groups:
        out[index] = pe.Push(first.peer, tuple(ids), first.answer)
    return out
