"""The peer layer: sessions with other members, driven by the gossip core.

One `Link` per authenticated session. Frames from a link are handled in order
(an Alerts frame is verified and stored before the next frame is read, which is
the flow control a fast sender meets). What to send, and to whom, is decided by
node.core.gossip; this module executes its actions and keeps per-peer counters.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import peer_service_pb2 as pb
from node.app.service import AlertNode, IngestResult
from node.core import catchup, gossip
from node.core.alerts import AlertRecord, alert_id
from node.core.errors import AlertmeshError, InvalidAlert
from node.core.roster import Member
from node.rpc.peer_transport import FrameTransport, HandshakeFailed, PeerSecurity, PinMismatch, dial
from node.store.base import PutOutcome

log = logging.getLogger(__name__)

OUTBOX_FRAMES = 1024  # frames queued to one peer before it counts as backlogged
ALERTS_PER_FRAME = 256
SERVE_FRAME_BYTES = 1024 * 1024  # catch-up answers: one frame holds at most about this much
CACHE_ALERTS = 20_000  # recent signed alerts kept in memory to answer pushes and IWANTs
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 10.0
STABLE_SESSION_S = 10.0  # a session that lasted this long resets the backoff
MAX_INVALID_PER_SESSION = 1000  # a peer sending this much junk is disconnected
MAX_PROOFS_ON_OPEN = 100  # equivocation proofs re-sent to each new session


@dataclass
class Link:
    key: bytes
    name: str
    role: str  # "dialer" (we dialed) or "acceptor"
    transport: FrameTransport
    catchup: catchup.CatchupSession
    outbox: asyncio.Queue[pb.PeerFrame] = field(
        default_factory=lambda: asyncio.Queue(OUTBOX_FRAMES)
    )
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    invalid: int = 0
    tls_fingerprint: bytes = b""  # the roster pin the session was authenticated with

    def send(self, frame: pb.PeerFrame) -> bool:
        try:
            self.outbox.put_nowait(frame)
            return True
        except asyncio.QueueFull:
            return False


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
        self.gossip = gossip.Gossip(params or gossip.GossipParams(), rng or random.Random())
        self.catchup_config = catchup_config or catchup.CatchupConfig()
        self.fetches = catchup.FetchRegistry()  # shared: each gap is fetched from one peer
        self.links: dict[bytes, Link] = {}
        self.counters: dict[bytes, PeerCounters] = {}
        self._cache: OrderedDict[bytes, tuple[bytes, bytes, bytes]] = OrderedDict()
        self._wake = asyncio.Event()
        self._roster_changed = asyncio.Event()
        self._dialers: dict[bytes, asyncio.Task[None]] = {}
        self.blocked: set[bytes] = set()
        # Alerts received and still being verified/stored: an IHAVE for one of them must
        # not start a repair (GRAFT) just because the store does not hold it yet.
        self._arriving: dict[bytes, int] = {}
        self._unblocked = asyncio.Event()
        node.hooks.append(self._on_local_alerts)
        node.equivocation_hooks.append(self.spread_proof)
        node.peer_stats = self.peer_stats
        node.extra_counters = self.gossip_counters

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
                self._reconcile_dialers(tg)
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
            self._unblocked.set()
            self._unblocked = asyncio.Event()

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

    def _reconcile_dialers(self, tg: asyncio.TaskGroup) -> None:
        wanted: dict[bytes, Member] = {}
        for name in self.connect:
            member = self.node.roster.by_name(name)
            if member is None:
                log.warning("peers.connect names %r, which is not on the roster", name)
            elif member.key != self.key and member.addresses:
                wanted[member.key] = member
        for key, task in list(self._dialers.items()):
            if key not in wanted:
                task.cancel()
                del self._dialers[key]
        for key, member in wanted.items():
            if key not in self._dialers or self._dialers[key].done():
                self._dialers[key] = tg.create_task(
                    self._dial_loop(member), name=f"dial {member.name}"
                )

    async def _dial_loop(self, member: Member) -> None:
        backoff = BACKOFF_MIN_S
        rng = random.Random()
        while True:
            # The roster may have been reloaded since (a new address or TLS pin).
            member = self.node.roster.get(member.key) or member
            if member.key in self.blocked:
                await self._unblocked.wait()
                backoff = BACKOFF_MIN_S
                continue
            existing = self.links.get(member.key)
            if existing is not None:  # the peer dialed us: use that session
                await existing.closed.wait()
                continue
            started = self.now()
            failed = True
            extra = {"event": "session_failed", "peer": member.name}
            try:
                await dial(member, self.node.identity, self.security, self.session)
                failed = False
            except PinMismatch as exc:
                self.handshake_refused(exc)
            except grpc.aio.AioRpcError as exc:
                log.info(
                    "session with %s failed: %s %s",
                    member.name,
                    exc.code().name,
                    exc.details(),
                    extra=extra,
                )
            except (HandshakeFailed, AlertmeshError, TimeoutError) as exc:
                log.warning("session with %s failed: %s", member.name, exc, extra=extra)
            except Exception:
                log.error(
                    "session with %s failed unexpectedly", member.name, exc_info=True, extra=extra
                )
            if failed:
                self.counters.setdefault(member.key, PeerCounters()).dial_failures += 1
            if self.now() - started > STABLE_SESSION_S:
                backoff = BACKOFF_MIN_S
            await asyncio.sleep(backoff * (0.5 + rng.random()))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _timers(self) -> None:
        """Call the cores' handle_timer when their deadlines pass (woken early on changes)."""
        while True:
            deadlines = [self.gossip.next_deadline()]
            deadlines += [link.catchup.next_deadline() for link in self.links.values()]
            due = [d for d in deadlines if d is not None]
            timeout = max(0.0, min(due) - self.now()) if due else None
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that races with the wake-up, and shutdown then hangs.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            now = self.now()
            gossip_due = self.gossip.next_deadline()
            if gossip_due is not None and now >= gossip_due:
                await self._execute(self.gossip.handle_timer(now))
            for link in list(self.links.values()):
                link_due = link.catchup.next_deadline()
                if link_due is not None and now >= link_due:
                    await self._catchup(link, link.catchup.handle_timer(now))

    # -- sessions ------------------------------------------------------------

    async def session(
        self, key: bytes, transport: FrameTransport, role: str, tls_fingerprint: bytes = b""
    ) -> None:
        """Run one authenticated session until either side ends it. `tls_fingerprint`:
        the peer certificate the TLS handshake authenticated."""
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
        session = catchup.CatchupSession(
            self.node.store.chains,
            initiator=role == "dialer",
            config=self.catchup_config,
            registry=self.fetches,
        )
        link = Link(key, name, role, transport, session)
        link.tls_fingerprint = tls_fingerprint
        existing = self.links.get(key)
        if existing is not None:
            # Both sides dialed: keep the session dialed by the smaller key, on both ends.
            mine_dialed = role == "dialer"
            keep_new = (self.key < key) == mine_dialed
            if not keep_new:
                return
            self._close(existing)
        self.links[key] = link
        counters = self.counters.setdefault(key, PeerCounters())
        counters.sessions += 1
        log.info(
            "session with %s open (%s)", name, role, extra={"event": "session_open", "peer": name}
        )
        await self._execute(self.gossip.peer_up(key, self.now()))
        await self._catchup(link, session.start(self.now()))
        for proof in (await self.node.equivocations())[-MAX_PROOFS_ON_OPEN:]:
            link.send(_proof_frame(proof.first, proof.second))
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._pump(link, self._read(link))),
                         tg.create_task(self._pump(link, self._write(link)))]  # fmt: skip
                await link.closed.wait()
                for task in tasks:
                    task.cancel()
        finally:
            link.closed.set()
            session.close()  # release its claimed ranges for other sessions
            counters.sessions_closed += 1
            if self.links.get(key) is link:
                del self.links[key]
                await self._execute(self.gossip.peer_down(key, self.now()))
            log.info(
                "session with %s closed", name, extra={"event": "session_closed", "peer": name}
            )

    async def _pump(self, link: Link, loop: Coroutine[Any, Any, None]) -> None:
        """Run a session's reader or writer; any way it ends closes the session."""
        try:
            await loop
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, AlertmeshError) as exc:
            log.info(
                "session with %s ends: %s",
                link.name,
                _one_line(exc),
                extra={"event": "session_ends", "peer": link.name},
            )
        except Exception:
            # grpcio raises its own internal errors when a stream breaks mid-write; no
            # failure of one session may take the node down.
            log.warning(
                "session with %s failed",
                link.name,
                exc_info=True,
                extra={"event": "session_failed", "peer": link.name},
            )
        finally:
            link.closed.set()

    def _close(self, link: Link) -> None:
        link.closed.set()

    async def _write(self, link: Link) -> None:
        while True:
            frame = await link.outbox.get()
            await link.transport.write(frame)

    async def _read(self, link: Link) -> None:
        while True:
            frame = await link.transport.read()
            if frame is None:
                return
            kind = frame.WhichOneof("frame")
            self.counters[link.key].frames_received[kind or ""] += 1
            now = self.now()
            if kind == "alerts":
                await self._on_alerts(link, frame.alerts)
            elif kind == "digest":
                await self._catchup(link, link.catchup.on_digest(frame.digest.digest, now))
            elif kind == "vector":
                heads = catchup.parse_vector((h.origin, h.seq) for h in frame.vector.heads)
                await self._catchup(link, link.catchup.on_vector(heads, frame.vector.reply, now))
            elif kind == "equivocation":
                await self._on_proof(link, frame.equivocation)
            elif kind == "ranges":
                ranges = [
                    catchup.Range(r.origin, r.from_seq, r.to_seq) for r in frame.ranges.ranges
                ]
                await self._catchup(link, link.catchup.on_range_requests(ranges))
            elif kind == "ihave":
                missing = await self.node.store.missing(frame.ihave.ids) - self._arriving.keys()
                await self._execute(
                    self.gossip.on_ihave(
                        link.key, list(frame.ihave.ids), self.now(), _not_in(missing)
                    )
                )
            elif kind == "iwant":
                await self._execute(
                    self.gossip.on_iwant(link.key, list(frame.iwant.ids), self.now())
                )
            elif kind == "graft":
                await self._execute(
                    self.gossip.on_graft(link.key, list(frame.graft.ids), self.now())
                )
            elif kind == "prune":
                await self._execute(self.gossip.on_prune(link.key, self.now()))
            else:
                log.debug("ignoring %s frame from %s", kind, link.name)

    async def _on_alerts(self, link: Link, frame: pb.Alerts) -> None:
        items = [(a.body, a.signature) for a in frame.alerts]
        arriving = [alert_id(body) for body, _ in items]
        for i in arriving:
            self._arriving[i] = self._arriving.get(i, 0) + 1
        try:
            results = await self.node.ingest(items, source=link.key)
        finally:
            for i in arriving:
                left = self._arriving.pop(i) - 1
                if left:
                    self._arriving[i] = left
        actions: list[gossip.Action] = []
        now = self.now()
        counters = self.counters[link.key]
        verified: list[tuple[bytes, int]] = []
        caught_up: list[bytes] = []
        if frame.catchup:
            counters.catchup_bytes_received += sum(len(b) + len(s) for b, s in items)
        for result in results:
            if result.error is not None:
                link.invalid += 1
                counters.invalid_received += 1
                log.warning(
                    "dropped an invalid alert from %s: %s",
                    link.name,
                    result.error,
                    extra={
                        "event": "invalid_alert",
                        "peer": link.name,
                        "alert_id": result.id,
                        "error": type(result.error).__name__,
                    },
                )
                continue
            verified.append((result.origin, result.seq))
            if frame.catchup:
                counters.caught_up += result.outcome is PutOutcome.ACCEPTED
                if result.outcome is PutOutcome.ACCEPTED and self._recent(result):
                    actions += self.gossip.forward_caught_up(link.key, result.id, now)
                else:
                    caught_up.append(result.id)
            elif result.outcome in (PutOutcome.ACCEPTED, PutOutcome.DUPLICATE):
                is_new = result.outcome is PutOutcome.ACCEPTED
                counters.full_received += 1
                counters.duplicates_received += not is_new
                actions += self.gossip.on_alert(link.key, result.id, is_new, now)
        if caught_up:
            self.gossip.on_caught_up(caught_up, now)
        await self._execute(actions)
        await self._catchup(link, link.catchup.on_alerts_received(verified, now))
        if link.invalid >= MAX_INVALID_PER_SESSION:
            log.warning(
                "disconnecting %s: %d invalid alerts",
                link.name,
                link.invalid,
                extra={"event": "peer_disconnected_invalid", "peer": link.name},
            )
            self._close(link)

    def _recent(self, result: IngestResult) -> bool:
        """Created within the gossip core's memory (seen_ttl): still worth forwarding."""
        assert result.record is not None
        age_s = (self.node.clock() - result.record.created_at_ms) / 1000
        return age_s < self.gossip.params.seen_ttl

    # -- equivocation proofs -------------------------------------------------

    async def _on_proof(self, link: Link, proof: pb.EquivocationProof) -> None:
        """Both copies are verified and stored like any alert; a new proof is passed on."""
        first, second = proof.first, proof.second
        if first.body == second.body:
            raise InvalidAlert("an equivocation proof needs two different bodies")
        results = await self.node.ingest(
            [(first.body, first.signature), (second.body, second.signature)], source=link.key
        )
        slots = {(r.origin, r.seq) for r in results if r.error is None}
        if len(slots) != 1 or any(r.error is not None for r in results):
            self.counters[link.key].invalid_received += 1
            raise InvalidAlert(f"{link.name} sent an equivocation proof that does not hold")
        # A proof that is new here was passed on by spread_proof (an ingest hook).

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
        frame = _proof_frame(stored[0], second)
        for link in self.links.values():
            link.send(frame)

    # -- catch-up ------------------------------------------------------------

    async def _catchup(self, link: Link, actions: list[catchup.Action]) -> None:
        for action in actions:
            if isinstance(action, catchup.SendDigest):
                link.send(pb.PeerFrame(digest=pb.SummaryDigest(digest=action.digest)))
            elif isinstance(action, catchup.SendVector):
                heads = [pb.Head(origin=o, seq=s) for o, s in action.heads]
                link.send(pb.PeerFrame(vector=pb.VersionVector(heads=heads, reply=action.reply)))
            elif isinstance(action, catchup.SendRangeRequests):
                self.counters[link.key].ranges_requested += len(action.ranges)
                ranges = [
                    pb.RangeRequest(origin=r.origin, from_seq=r.from_seq, to_seq=r.to_seq)
                    for r in action.ranges
                ]
                link.send(pb.PeerFrame(ranges=pb.RangeRequests(ranges=ranges)))
            elif isinstance(action, catchup.ServeRanges):
                self.counters[link.key].ranges_served += len(action.ranges)
                await self._serve(link, action.ranges)
            else:
                log.info(
                    "%s did not deliver %d alerts of a catch-up range in time",
                    link.name,
                    action.missing,
                )
        self._wake.set()

    async def _serve(self, link: Link, ranges: Sequence[catchup.Range]) -> None:
        """Answer range requests with the original signed bytes, a bounded batch per frame.

        A full outbox drops the rest: the requester times the range out and asks again.
        """
        batch: list[alert_pb2.SignedAlert] = []
        size = 0
        for r in ranges:
            records = await self.node.store.range(r.origin, r.from_seq, r.to_seq, limit=r.size)
            for x in records:
                batch.append(alert_pb2.SignedAlert(body=x.body, signature=x.signature))
                size += len(x.body) + len(x.signature)
                if len(batch) == ALERTS_PER_FRAME or size >= SERVE_FRAME_BYTES:
                    if not self._send_served(link, batch):
                        return
                    batch, size = [], 0
        if batch:
            self._send_served(link, batch)

    def _send_served(self, link: Link, batch: list[alert_pb2.SignedAlert]) -> bool:
        if not link.send(pb.PeerFrame(alerts=pb.Alerts(alerts=batch, catchup=True))):
            return False
        counters = self.counters[link.key]
        counters.served += len(batch)
        counters.catchup_bytes_sent += sum(len(a.body) + len(a.signature) for a in batch)
        return True

    # -- alerts from this node ----------------------------------------------

    def _on_local_alerts(self, records: Sequence[AlertRecord], source: bytes | None) -> None:
        for r in records:
            self._cache[r.id] = (r.body, r.signature, r.origin)
        while len(self._cache) > CACHE_ALERTS:
            self._cache.popitem(last=False)
        if source is None:  # published here or ingested by a client: start spreading it
            now = self.now()
            actions = [a for r in records for a in self.gossip.publish(r.id, now)]
            self._execute_soon(actions)

    def _execute_soon(self, actions: list[gossip.Action]) -> None:
        # Called from synchronous hooks: only SendAlerts may need the store, and the
        # alerts of a local publish are always in the cache, so no await is needed.
        for action in actions:
            alerts = self._from_cache(action)[0] if isinstance(action, gossip.SendAlerts) else []
            self._send(action, alerts)
        self._wake.set()

    def _from_cache(
        self, action: gossip.SendAlerts
    ) -> tuple[list[alert_pb2.SignedAlert], list[bytes]]:
        """The cached alerts to send, and the ids not in the cache. An alert is never
        pushed back to its own author, whatever the gossip core decided."""
        found, missing = [], []
        for i in action.ids:
            hit = self._cache.get(i)
            if hit is None:
                missing.append(i)
            elif hit[2] != action.peer:
                found.append(alert_pb2.SignedAlert(body=hit[0], signature=hit[1]))
        return found, missing

    async def _execute(self, actions: list[gossip.Action]) -> None:
        for action in actions:
            alerts: list[alert_pb2.SignedAlert] = []
            if isinstance(action, gossip.SendAlerts):
                alerts, missing = self._from_cache(action)
                for i in missing:
                    stored = await self.node.store.get(i)
                    if stored is not None and stored.record.origin != action.peer:
                        r = stored.record
                        alerts.append(alert_pb2.SignedAlert(body=r.body, signature=r.signature))
            self._send(action, alerts)
        self._wake.set()

    def _send(self, action: gossip.Action, alerts: list[alert_pb2.SignedAlert]) -> None:
        link = self.links.get(action.peer)
        if link is None:
            return
        frames: list[pb.PeerFrame]
        if isinstance(action, gossip.SendAlerts):
            frames = [
                pb.PeerFrame(alerts=pb.Alerts(alerts=alerts[i : i + ALERTS_PER_FRAME]))
                for i in range(0, len(alerts), ALERTS_PER_FRAME)
            ]
        elif isinstance(action, gossip.SendIHave):
            frames = [pb.PeerFrame(ihave=pb.IHave(ids=action.ids))]
        elif isinstance(action, gossip.SendIWant):
            frames = [pb.PeerFrame(iwant=pb.IWant(ids=action.ids))]
        elif isinstance(action, gossip.SendGraft):
            frames = [pb.PeerFrame(graft=pb.Graft(ids=action.ids))]
        else:
            frames = [pb.PeerFrame(prune=pb.Prune())]
        counters = self.counters[link.key]
        if isinstance(action, gossip.SendAlerts):
            counters.full_sent += len(alerts)
        elif isinstance(action, gossip.SendIHave):
            counters.ihave_sent += len(action.ids)
        for frame in frames:
            if not link.send(frame):
                log.warning(
                    "%s is backlogged; announcing instead of pushing",
                    link.name,
                    extra={"event": "peer_backlogged", "peer": link.name},
                )
                for a in self.gossip.on_peer_backlogged(link.key, self.now()):
                    if not isinstance(a, gossip.SendAlerts):
                        self._send(a, [])
                return
            counters.frames_sent[frame.WhichOneof("frame") or ""] += 1

    # -- inspection ------------------------------------------------------------

    def gossip_counters(self) -> dict[str, int]:
        """Dissemination totals over the current sessions (for `alertmesh stats`)."""
        now = self.now()
        totals: dict[str, int] = {}
        for key in self.links:
            st = self.gossip.peer_stats(key, now)
            if st is None:
                continue
            for name in ("prunes_sent", "prunes_received", "grafts_sent", "grafts_received",
                         "ihave_ids_received", "ihave_ids_dropped"):  # fmt: skip
                totals[f"gossip_{name}"] = totals.get(f"gossip_{name}", 0) + getattr(st, name)
        g = self.gossip.stats()
        totals["gossip_eager_peers"] = g.eager_peers
        totals["gossip_awaited_ids"] = g.awaited_ids
        totals["gossip_awaited_abandoned"] = g.awaited_abandoned
        totals["catchup_alerts_received"] = sum(c.caught_up for c in self.counters.values())
        totals["catchup_alerts_served"] = sum(c.served for c in self.counters.values())
        return totals

    def peer_stats(self) -> list[dict[str, object]]:
        now = self.now()
        out: list[dict[str, object]] = []
        for member in self.node.roster:
            if member.key == self.key:
                continue
            st = self.gossip.peer_stats(member.key, now)
            counters = self.counters.get(member.key, PeerCounters())
            if st is None and member.key not in self.counters and member.name not in self.connect:
                continue
            out.append(
                {
                    "name": member.name,
                    "key": member.key,
                    "address": member.addresses[0] if member.addresses else "",
                    "connected": member.key in self.links,
                    "eager": bool(st and st.eager),
                    "blocked": member.key in self.blocked,
                    "full_received": counters.full_received,
                    "duplicates_received": counters.duplicates_received,
                    "invalid_received": counters.invalid_received,
                    "full_sent": counters.full_sent,
                    "ihave_sent": counters.ihave_sent,
                }
            )
        return out


def _not_in(missing: set[bytes]) -> Callable[[bytes], bool]:
    return lambda alert_id: alert_id not in missing


def _proof_frame(first: AlertRecord, second: AlertRecord) -> pb.PeerFrame:
    return pb.PeerFrame(
        equivocation=pb.EquivocationProof(
            first=alert_pb2.SignedAlert(body=first.body, signature=first.signature),
            second=alert_pb2.SignedAlert(body=second.body, signature=second.signature),
        )
    )


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name} {exc.details()}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
