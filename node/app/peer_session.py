"""One peer session's tasks: read frames ahead, handle them in order, write the outbox.

A `SessionRunner` runs the three tasks of one authenticated session (node/app/peers.py's
PeerManager admits the session and starts it):

- the reader reads frames into the link's bounded inbox; an Alerts frame read ahead
  counts as arriving (`Arrivals`) until it has been handled, so that an IHAVE for one
  of its alerts starts no repair;
- the handler takes the frames in order and gives each to the peer engine
  (node/core/peer_engine.py), verifying and storing Alerts frames first (every Alerts
  frame of the same kind queued behind the first joins the same ingest); the engine's
  actions go back to the manager, which executes them;
- the writer takes frames from the link's outbox and writes them to the stream.

Any of the three ending ends the session; frames read and never handled are then no
longer arriving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, KeysView, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Protocol

import grpc

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import peer_service_pb2 as pb
from node.app import latency_trace
from node.app.peer_frames import Inbox, Outbox
from node.app.service import AlertNode
from node.core import peer_engine as pe
from node.core.alerts import AlertRecord, alert_id
from node.core.errors import AlertmeshError
from node.core.peer_engine import PeerCounters
from node.rpc.peer_transport import FrameTransport
from node.store.base import PutOutcome

log = logging.getLogger("node.app.peers")  # the same logger as the manager's lines


@dataclass
class Link:
    key: bytes
    name: str
    role: str  # "dialer" (we dialed) or "acceptor"
    transport: FrameTransport
    outbox: Outbox = field(default_factory=Outbox)
    inbox: Inbox = field(default_factory=Inbox)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    tls_fingerprint: bytes = b""  # the roster pin the session was authenticated with
    session: pe.PeerSession[Link] | None = None  # the engine's, once admitted

    def send(self, frame: pe.Frame) -> bool:
        return self.outbox.put(frame)


class Arrivals:
    """Alerts read from peers and not yet verified and stored, counted by id over all
    sessions (the same alert may be read ahead on several at once)."""

    def __init__(self) -> None:
        self._count: dict[bytes, int] = {}

    def __contains__(self, alert: bytes) -> bool:
        return alert in self._count

    def __len__(self) -> int:
        return len(self._count)

    def ids(self) -> KeysView[bytes]:
        return self._count.keys()

    def add(self, frame: pb.Alerts, step: int) -> None:
        """Count the frame's alerts as arriving (step 1) or no longer arriving (-1)."""
        count = self._count
        for a in frame.alerts:
            i = alert_id(a.body)
            left = count.get(i, 0) + step
            if left > 0:
                count[i] = left
            else:
                count.pop(i, None)


class SessionHost(Protocol):
    """What a session's tasks need from the manager that runs them."""

    node: AlertNode
    engine: pe.PeerEngine[Link]
    counters: dict[bytes, PeerCounters]
    arrivals: Arrivals

    def now(self) -> float: ...

    def cached(self, alert: bytes) -> bool: ...  # a recent alert, held in memory

    async def run_actions(self, actions: list[pe.Action[Link]]) -> None: ...

    def forward_verified(self, s: pe.PeerSession[Link], records: list[AlertRecord]) -> None: ...

    def forget_cached(self, alerts: Iterable[bytes]) -> None: ...


class SessionRunner:
    """The reader, handler and writer of one session (the module docstring)."""

    def __init__(self, host: SessionHost, link: Link) -> None:
        self.host = host
        self.link = link
        self.counters = host.counters.setdefault(link.key, PeerCounters())

    async def run(self, session: pe.PeerSession[Link]) -> None:
        """Run the session's tasks until the link closes (any task ending closes it)."""
        link = self.link
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._pump(self.receive())),
                         tg.create_task(self._pump(self._handle(session))),
                         tg.create_task(self._pump(self._write()))]  # fmt: skip
                await link.closed.wait()
                for task in tasks:
                    task.cancel()
        finally:
            link.closed.set()
            self.forget_unhandled()

    def forget_unhandled(self) -> None:
        """The session ended: the frames read and never handled are no longer arriving."""
        for rest in self.link.inbox.drain():
            if rest is not None and rest.WhichOneof("frame") == "alerts":
                self.host.arrivals.add(rest.alerts, -1)

    async def _pump(self, loop: Coroutine[Any, Any, None]) -> None:
        """Run a session's reader or writer; any way it ends closes the session."""
        link = self.link
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

    async def _write(self) -> None:
        link, counters = self.link, self.counters
        while True:
            frame = await link.outbox.get()
            message = encode(frame)
            if _is_gossip(frame):
                counters.frames_sent[message.WhichOneof("frame") or ""] += 1
            await link.transport.write(message)
            if latency_trace.ON and isinstance(frame, pe.AlertsFrame):
                for r in frame.records:
                    latency_trace.mark(f"written>{link.name}", r.id)

    async def receive(self) -> None:
        """Read frames into the inbox until the stream ends (then queue None). Alerts
        read ahead count as arriving: an IHAVE for one of them starts no repair."""
        link, counters, arrivals = self.link, self.counters, self.host.arrivals
        max_batch = self.host.node.limits.max_batch
        while True:
            frame = await link.transport.read()
            if frame is None:  # the session ends once the frames read are handled
                await link.inbox.put(None)
                await link.closed.wait()
                return
            kind = frame.WhichOneof("frame")
            counters.frames_received[kind or ""] += 1
            if kind != "alerts":
                await link.inbox.put(frame, frame.ByteSize())
                continue
            alerts = frame.alerts
            if len(alerts.alerts) > max_batch:
                # Refused before anything is hashed or queued (ingest would refuse it too).
                log.warning(
                    "disconnecting %s: a frame of %d alerts (at most %d)",
                    link.name,
                    len(alerts.alerts),
                    max_batch,
                    extra={"event": "peer_frame_too_large", "peer": link.name},
                )
                link.closed.set()
                return
            arrivals.add(alerts, 1)
            if latency_trace.ON:
                for a in alerts.alerts:
                    latency_trace.mark(f"read<{link.name}", alert_id(a.body))
            try:
                await link.inbox.put(frame, frame.ByteSize())
            except BaseException:  # never queued: it will not be handled or drained
                arrivals.add(alerts, -1)
                raise

    async def _handle(self, s: pe.PeerSession[Link]) -> None:
        host, link = self.host, self.link
        engine = host.engine
        max_alerts = host.node.limits.max_batch
        while True:
            frame = await link.inbox.get()
            if frame is None:
                return
            kind = frame.WhichOneof("frame")
            now = host.now()
            actions: list[pe.Action[Link]] = []
            if kind == "alerts":
                frames = link.inbox.more_alerts(frame.alerts, max_alerts)
                if latency_trace.ON:
                    for a in (a for f in frames for a in f.alerts):
                        latency_trace.mark("ingest_start", alert_id(a.body))
                try:
                    actions = await self._on_alerts(s, frames)
                finally:
                    for f in frames:
                        host.arrivals.add(f, -1)
            elif kind == "digest":
                actions = engine.on_digest(s, frame.digest.digest, now)
            elif kind == "vector":
                heads = ((h.origin, h.seq) for h in frame.vector.heads)
                actions = engine.on_vector(s, heads, frame.vector.reply, now)
            elif kind == "equivocation":
                await self._on_proof(s, frame.equivocation)
            elif kind == "ranges":
                ranges = ((r.origin, r.from_seq, r.to_seq) for r in frame.ranges.ranges)
                actions = engine.on_ranges(s, ranges, now)
            elif kind == "ihave":
                actions = engine.on_ihave(s, frame.ihave.ids, now, await self._held(frame.ihave))
            elif kind == "iwant":
                actions = engine.on_iwant(s, frame.iwant.ids, now)
            elif kind == "graft":
                actions = engine.on_graft(s, frame.graft.ids, now)
            elif kind == "prune":
                actions = engine.on_prune(s, now)
                self._announce_instead()
            elif kind == "tree":
                t = frame.tree
                actions = engine.on_tree(s, t.root, t.cost, t.parent, now)
            else:
                log.debug("ignoring %s frame from %s", kind, link.name)
            await host.run_actions(actions)

    async def _held(self, ihave: pb.IHave) -> Callable[[bytes], bool]:
        """Which announced ids this node holds or is receiving. Recent alerts are in the
        cache (stored) or arriving; only the others are looked up in the store, so an
        IHAVE of what the tree brought already (the common case) costs no query."""
        cached, arriving = self.host.cached, self.host.arrivals
        unknown = [i for i in ihave.ids if not cached(i) and i not in arriving]
        missing = await self.host.node.store.missing(unknown) if unknown else set()
        missing -= arriving.ids()  # may have started arriving during the query
        return _not_in(missing)

    def _announce_instead(self) -> None:
        """The peer pruned the link: the pushes still queued to it become IHAVEs."""
        link = self.link
        ids = link.outbox.take_pushes()
        step = self.host.engine.gossip.params.ihave_max_ids
        for i in range(0, len(ids), step):
            if not link.send(pe.IdsFrame("ihave", tuple(ids[i : i + step]))):
                break  # backlogged: catch-up brings the rest
        if ids:
            self.host.node.counters.add("peer_pushes_announced_after_prune", len(ids))

    async def _on_alerts(
        self, s: pe.PeerSession[Link], frames: Sequence[pb.Alerts]
    ) -> list[pe.Action[Link]]:
        """Alerts frames of one kind (gossip or catch-up), verified and stored together."""
        host, link = self.host, self.link
        items = [(a.body, a.signature) for frame in frames for a in frame.alerts]
        is_catchup = frames[0].catchup
        forwarded: set[bytes] = set()

        def verified(records: list[AlertRecord]) -> Callable[[], None]:  # before the commit
            host.forward_verified(s, records)
            ids = [r.id for r in records]
            forwarded.update(ids)
            # If the commit fails they are not held here: not served from the cache either.
            # Gossip still remembers their ids, so catch-up brings them back, not an IHAVE.
            return lambda: host.forget_cached(ids)

        results = await host.node.ingest(
            items, source=link.key, verified=None if is_catchup else verified
        )
        if is_catchup:
            self.counters.catchup_bytes_received += sum(len(b) + len(sig) for b, sig in items)
        received: list[pe.Received] = []
        invalid = 0
        # Which alerts answer this node's IWANT/GRAFT (frames of both kinds may be joined).
        answers: Iterable[bool] = repeat(False)
        if any(frame.answer for frame in frames):
            answers = [frame.answer for frame in frames for _ in frame.alerts]
        for result, answer in zip(results, answers, strict=False):  # repeat() is endless
            if result.error is not None:
                invalid += 1
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
            new = result.outcome is PutOutcome.ACCEPTED
            copy = new or result.outcome is PutOutcome.DUPLICATE
            created = result.record.created_at_ms if result.record is not None else 0
            early = result.id in forwarded if forwarded else False
            received.append(
                pe.Received(result.id, result.origin, result.seq, new, copy, created, early, answer)
            )
        return host.engine.alerts_received(
            s, received, invalid, is_catchup, host.now(), host.node.clock()
        )

    async def _on_proof(self, s: pe.PeerSession[Link], proof: pb.EquivocationProof) -> None:
        """Both copies are verified and stored like any alert; a new proof is passed on
        (by the manager's spread_proof, an ingest hook). One that does not hold ends the
        session."""
        first, second = proof.first, proof.second
        self.host.engine.check_proof(first.body, second.body)
        results = await self.host.node.ingest(
            [(first.body, first.signature), (second.body, second.signature)],
            source=self.link.key,
        )
        self.host.engine.proof_received(
            s, [(r.origin, r.seq) if r.error is None else None for r in results]
        )


def _is_gossip(frame: pe.Frame) -> bool:
    if isinstance(frame, pe.AlertsFrame):
        return not frame.catchup
    return isinstance(frame, pe.IdsFrame | pe.PruneFrame)


def _not_in(missing: set[bytes]) -> Callable[[bytes], bool]:
    return lambda alert_id: alert_id not in missing


def _signed(alert: pe.Carried) -> alert_pb2.SignedAlert:
    return alert_pb2.SignedAlert(body=alert.body, signature=alert.signature)


def encode(frame: pe.Frame) -> pb.PeerFrame:
    """The engine's frame as the PeerFrame protobuf message."""
    if isinstance(frame, pe.AlertsFrame):
        alerts = [_signed(r) for r in frame.records]
        return pb.PeerFrame(
            alerts=pb.Alerts(alerts=alerts, catchup=frame.catchup, answer=frame.answer)
        )
    if isinstance(frame, pe.IdsFrame):
        if frame.kind == "ihave":
            return pb.PeerFrame(ihave=pb.IHave(ids=frame.ids))
        if frame.kind == "iwant":
            return pb.PeerFrame(iwant=pb.IWant(ids=frame.ids))
        return pb.PeerFrame(graft=pb.Graft(ids=frame.ids))
    if isinstance(frame, pe.PruneFrame):
        return pb.PeerFrame(prune=pb.Prune())
    if isinstance(frame, pe.TreeFrame):
        position = pb.TreePosition(root=frame.root, cost=frame.cost, parent=frame.parent)
        return pb.PeerFrame(tree=position)
    if isinstance(frame, pe.DigestFrame):
        return pb.PeerFrame(digest=pb.SummaryDigest(digest=frame.digest))
    if isinstance(frame, pe.VectorFrame):
        heads = [pb.Head(origin=o, seq=q) for o, q in frame.heads]
        return pb.PeerFrame(vector=pb.VersionVector(heads=heads, reply=frame.reply))
    if isinstance(frame, pe.RangesFrame):
        ranges = [
            pb.RangeRequest(origin=r.origin, from_seq=r.from_seq, to_seq=r.to_seq)
            for r in frame.ranges
        ]
        return pb.PeerFrame(ranges=pb.RangeRequests(ranges=ranges))
    return pb.PeerFrame(
        equivocation=pb.EquivocationProof(first=_signed(frame.first), second=_signed(frame.second))
    )


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name} {exc.details()}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
