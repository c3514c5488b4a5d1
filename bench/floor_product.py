"""bench/latency_floor.py's `--work product`: each process does the product's own work
per alert with the node's own parts, and nothing the node adds around them.

What no implementation of alertmesh can skip, whatever its structure, done with the
functions the node itself calls:

- the origin: parses the client's PublishRequest, normalises its indicators, chains,
  validates and signs the alert (as node/app/publishing.py's `_sign_new`), commits it
  in the real store (node/store/sqlite.py: the alert row, its index rows, the chains),
  then pushes it to the root as a PeerFrame and answers the client with a
  PublishResponse carrying the stored alert;
- the root and the leaves: parse the PeerFrame, check each alert completely (decode,
  the roster, the rules, the signature: node/app/verify.py's `check_signed`), the root
  forwards the frame before its commit (as the real relay does), each commits the
  alert in the real store;
- every process sends each stored alert on its Subscribe streams as the node does: a
  SubscribeEvent with the StoredAlert node/rpc/convert.py builds.

Left out, because they are the node's orchestration, not the product's work: the peer
sessions' engine (gossip bookkeeping, repair announcements, catch-up), the ingest's
admission batching and commit tasks, the watch streams' cursor reads, the lifecycle's
event kinds, counters and metrics. The difference between this and the real cluster
is what those cost on the path.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from bench.cluster_bench import publish_request
from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node._pb.alertmesh.v1 import peer_service_pb2 as pb
from node.app.service import wall_ms
from node.app.verify import check_signed
from node.core import alerts, indicators
from node.core.alerts import AlertRecord
from node.core.limits import DEFAULT_LIMITS
from node.core.roster import Member, Roster
from node.crypto import Identity, sign_alert
from node.rpc import convert
from node.store import SqliteStore
from node.store.base import Stored


def request(number: int, rng: random.Random) -> bytes:
    """The client's PublishRequest for alert `number`, the cluster bench's draft, with
    the number first in its title (the event's key)."""
    req = publish_request(rng, str(number))
    return req.SerializeToString()


def event_key(frame: bytes) -> int:
    """The alert number of a SubscribeEvent (request's title)."""
    title = api.SubscribeEvent.FromString(frame).alert.alert.title
    return int(title.split(":", 1)[0])


class Product:
    """One process's work, on the real store at `path` (opened by `open`)."""

    def __init__(
        self,
        seed: bytes,
        path: str,
        synchronous: str,
        push: Callable[[bytes], None],
        event: Callable[[bytes], None],
    ) -> None:
        self.identity = Identity(seed)  # the origin's; every process knows its key
        self.roster = Roster.of([Member("origin", self.identity.public_key)])
        self.path = Path(path)
        self.synchronous = synchronous
        self.push = push
        self.event = event
        self.store: SqliteStore | None = None
        self.seq = 0
        self.head = b""

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Product]:
        async with SqliteStore(self.path, synchronous=self.synchronous) as store:
            self.store = store
            yield self

    def _reader(self, record: AlertRecord) -> tuple[alert_pb2.Alert, bool, bool]:
        """What a client is shown of an alert in clear (node/app/sharing.py's content)."""
        return record.decode(), False, False

    def _stored_alert(self, stored: Stored, now: int) -> api.StoredAlert:
        return convert.stored_alert(stored, roster=self.roster, now_ms=now, reader=self._reader)

    async def _stored(self, record: AlertRecord, now: int) -> api.StoredAlert:
        assert self.store is not None
        stored = await self.store.get(record.id)  # from the store's memory of recent puts
        assert stored is not None
        message = self._stored_alert(stored, now)
        event = api.SubscribeEvent(alert=message, kind=api.EVENT_KIND_NEW)
        self.event(event.SerializeToString())
        return message

    async def publish(self, request_bytes: bytes) -> bytes:
        """The origin: sign, commit, push, event, answer (publishing.py's order)."""
        assert self.store is not None
        req = api.PublishRequest.FromString(request_bytes)
        now = wall_ms()
        alert = convert.draft(req)
        for ind in alert.indicators:
            ind.value = indicators.normalize(ind.type, ind.value, strict=True).value
        alert.origin = self.identity.public_key
        alert.created_at_ms = now
        alert.seq = self.seq + 1
        alert.prev = self.head
        keys = alerts.validate(alert, now_ms=now, limits=DEFAULT_LIMITS)
        body = alert.SerializeToString(deterministic=True)
        record = alerts.make_record(body, sign_alert(self.identity, body), alert, keys)
        self.seq, self.head = record.seq, record.id
        await self.store.put([record], now_ms=now, own=True)
        signed = alert_pb2.SignedAlert(body=record.body, signature=record.signature)
        self.push(pb.PeerFrame(alerts=pb.Alerts(alerts=[signed])).SerializeToString())
        stored = await self._stored(record, now)
        return api.PublishResponse(id=record.id, alert=stored).SerializeToString()

    def received(self, frame_bytes: bytes) -> list[AlertRecord]:
        """A root or a leaf: check every alert of the frame; the relay forwards it
        before its commit. Raises the first rule an alert breaks."""
        frame = pb.PeerFrame.FromString(frame_bytes)
        now = wall_ms()
        records = [
            check_signed(a.body, a.signature, roster=self.roster, now_ms=now, limits=DEFAULT_LIMITS)
            for a in frame.alerts.alerts
        ]
        self.push(frame_bytes)
        return records

    async def commit(self, records: list[AlertRecord]) -> None:
        assert self.store is not None
        now = wall_ms()
        await self.store.put(records, now_ms=now)
        for record in records:
            await self._stored(record, now)
