"""A peer session's frame queues, which batch adaptively.

Outbox: the engine's frames waiting to be written to one peer. A gossip Alerts frame
queued while the writer is busy joins the last queued frame if that is a gossip Alerts
frame too (IHAVE joins IHAVE), up to ALERTS_PER_FRAME alerts and COALESCE_BYTES; any
other frame ends the run, so the order of frames is kept. At low rates the writer is
idle, takes each frame as it is queued and nothing waits; in a burst (a PublishBatch of
hundreds of alerts, a relay forwarding an ingested batch) the alerts queued for a peer
leave in a few frames instead of one each. The outbox is bounded by frames and by bytes:
a frame that does not fit is refused (the peer is backlogged).

Inbox: frames read from a peer while the previous ingest is still running. The reader
keeps reading into it; the session takes the next frame, and with an Alerts frame every
Alerts frame of the same kind queued right behind it (up to `max_alerts`), so one ingest
verifies and commits what arrived meanwhile. Bounded by frames and by bytes (one frame
is always taken, whatever its size): a full inbox stops the reader, and gRPC flow
control stops the sender.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from node._pb.alertmesh.v1 import peer_service_pb2 as pb
from node.core import peer_engine as pe

OUTBOX_FRAMES = 1024  # frames queued to one peer before it counts as backlogged
OUTBOX_BYTES = 8 * 1024 * 1024  # and bytes (alerts' signed bytes, ids)
COALESCE_BYTES = pe.SERVE_FRAME_BYTES  # a coalesced gossip Alerts frame holds about this much
IHAVE_IDS = 512  # ids per coalesced IHAVE (gossip's ihave_max_ids: receivers read no more)
INBOX_FRAMES = 32  # frames read ahead of the ingest
INBOX_BYTES = 8 * 1024 * 1024  # and their bytes (a frame may be up to 32 MiB)
_ID_BYTES = 34  # an id on the wire, roughly
_FRAME_BYTES = 64  # a control frame, roughly


def _alert_bytes(record: pe.Carried) -> int:
    return len(record.body) + len(record.signature) + 8


def frame_bytes(frame: pe.Frame) -> int:
    """About how many bytes a frame takes in memory and on the wire."""
    if isinstance(frame, pe.AlertsFrame):
        return sum(_alert_bytes(r) for r in frame.records)
    if isinstance(frame, pe.IdsFrame):
        return _ID_BYTES * len(frame.ids)
    if isinstance(frame, pe.VectorFrame):
        return _FRAME_BYTES + _ID_BYTES * len(frame.heads)
    if isinstance(frame, pe.RangesFrame):
        return _FRAME_BYTES + _ID_BYTES * len(frame.ranges)
    if isinstance(frame, pe.ProofFrame):
        return _alert_bytes(frame.first) + _alert_bytes(frame.second)
    return _FRAME_BYTES


@dataclass(slots=True)
class _Queued:
    frame: pe.Frame  # as queued; for a coalescing run, its first frame
    size: int
    records: list[pe.Carried] | None = None  # a gossip Alerts run, while it may grow
    ids: list[bytes] | None = None  # an IHAVE run

    def take(self) -> pe.Frame:
        if self.records is not None and len(self.records) > 1:
            return pe.AlertsFrame(tuple(self.records))
        if self.ids is not None and len(self.ids) > 1:
            return pe.IdsFrame("ihave", tuple(self.ids))
        return self.frame


@dataclass
class OutboxStats:
    frames_queued: int = 0  # frames the engine queued
    frames_taken: int = 0  # frames handed to the writer (after coalescing)
    alerts_taken: int = 0  # alerts in gossip Alerts frames handed to the writer
    alert_frames_taken: int = 0  # gossip Alerts frames handed to the writer


@dataclass
class Outbox:
    max_frames: int = OUTBOX_FRAMES
    max_bytes: int = OUTBOX_BYTES
    coalesce_bytes: int = COALESCE_BYTES
    alerts_per_frame: int = pe.ALERTS_PER_FRAME
    ihave_ids: int = IHAVE_IDS
    stats: OutboxStats = field(default_factory=OutboxStats)
    _queue: deque[_Queued] = field(default_factory=deque)
    _bytes: int = 0
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def qsize(self) -> int:
        """Frames waiting (a coalesced run counts once)."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def put(self, frame: pe.Frame) -> bool:
        """Queue a frame, joining it to the last one where it can; False if it does not
        fit (nothing is queued then)."""
        size = frame_bytes(frame)
        if self._bytes + size > self.max_bytes and self._queue:
            return False
        if self._queue and self._join(self._queue[-1], frame, size):
            self._bytes += size
            self.stats.frames_queued += 1
            return True
        if len(self._queue) >= self.max_frames:
            return False
        self.stats.frames_queued += 1
        queued = _Queued(frame, size)
        if isinstance(frame, pe.AlertsFrame) and not frame.catchup and not frame.answer:
            queued.records = list(frame.records)  # a push (answers are kept past a PRUNE)
        elif isinstance(frame, pe.IdsFrame) and frame.kind == "ihave":
            queued.ids = list(frame.ids)
        self._queue.append(queued)
        self._bytes += size
        self._ready.set()
        return True

    def _join(self, last: _Queued, frame: pe.Frame, size: int) -> bool:
        if isinstance(frame, pe.AlertsFrame):
            records = last.records
            if (
                records is None
                or frame.catchup
                or frame.answer  # kept apart: a PRUNE takes pushes only (M3)
                or len(records) + len(frame.records) > self.alerts_per_frame
                or last.size + size > self.coalesce_bytes
            ):
                return False
            records.extend(frame.records)
        elif isinstance(frame, pe.IdsFrame) and frame.kind == "ihave":
            ids = last.ids
            if ids is None or len(ids) + len(frame.ids) > self.ihave_ids:
                return False
            ids.extend(frame.ids)
        else:
            return False
        last.size += size
        return True

    def take_pushes(self) -> list[bytes]:
        """Remove the queued gossip Alerts frames; their ids, in order. The peer sent
        PRUNE: it wants announcements now, and each pushed copy it holds already would
        come back as one more PRUNE."""
        ids: list[bytes] = []
        kept: deque[_Queued] = deque()
        for queued in self._queue:
            if queued.records is None:
                kept.append(queued)
            else:
                ids += [r.id for r in queued.records]
                self._bytes -= queued.size
        self._queue = kept
        return ids

    async def get(self) -> pe.Frame:
        """The next frame to write, waiting for one."""
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        queued = self._queue.popleft()
        self._bytes -= queued.size
        frame = queued.take()
        self.stats.frames_taken += 1
        if queued.records is not None:
            self.stats.alert_frames_taken += 1
            self.stats.alerts_taken += len(queued.records)
        return frame


@dataclass
class InboxStats:
    frames_read: int = 0
    alert_frames_read: int = 0
    ingests: int = 0  # ingest calls for gossip and catch-up Alerts frames


@dataclass
class Inbox:
    """Frames read ahead of their handling; None marks the end of the stream."""

    max_frames: int = INBOX_FRAMES
    max_bytes: int = INBOX_BYTES
    stats: InboxStats = field(default_factory=InboxStats)
    _queue: deque[tuple[pb.PeerFrame | None, int]] = field(default_factory=deque)
    _bytes: int = 0
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _room: asyncio.Event = field(default_factory=asyncio.Event)

    def qsize(self) -> int:
        return len(self._queue)

    async def put(self, frame: pb.PeerFrame | None, size: int = 0) -> None:
        """Queue a frame read from the peer (`size`: its bytes), waiting while the inbox
        is full."""
        while self._queue and (
            len(self._queue) >= self.max_frames or self._bytes + size > self.max_bytes
        ):
            self._room.clear()
            await self._room.wait()
        self._queue.append((frame, size))
        self._bytes += size
        self.stats.frames_read += frame is not None
        self._ready.set()

    async def get(self) -> pb.PeerFrame | None:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        frame, size = self._queue.popleft()
        self._bytes -= size
        self._room.set()
        return frame

    def drain(self) -> list[pb.PeerFrame | None]:
        """Empty the inbox (the session ended)."""
        frames = [frame for frame, _ in self._queue]
        self._queue.clear()
        self._bytes = 0
        self._room.set()
        return frames

    def more_alerts(self, first: pb.Alerts, max_alerts: int) -> list[pb.Alerts]:
        """`first`, and the Alerts frames of its kind (gossip or catch-up) queued right
        behind it, as long as they hold at most `max_alerts` together."""
        frames = [first]
        count = len(first.alerts)
        queue = self._queue
        while queue:
            nxt, size = queue[0]
            if nxt is None or nxt.WhichOneof("frame") != "alerts":
                break
            alerts = nxt.alerts
            if alerts.catchup != first.catchup or count + len(alerts.alerts) > max_alerts:
                break
            queue.popleft()
            self._bytes -= size
            frames.append(alerts)
            count += len(alerts.alerts)
        if len(frames) > 1:
            self._room.set()
        self.stats.alert_frames_read += len(frames)
        self.stats.ingests += 1
        return frames
