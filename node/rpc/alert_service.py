"""The client-facing AlertService: translation only; AlertNode decides."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import grpc

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.app import latency_trace
from node.app.ingesting import IngestResult
from node.app.service import AlertNode
from node.core.errors import AlertmeshError, InvalidAlert, NotFound
from node.rpc import convert
from node.rpc.check_response import check_response
from node.rpc.errors import MalformedRequest, status_of, streaming, unary
from node.store.base import PutOutcome, Query, Stored

DEFAULT_PAGE = 50
MAX_PAGE = 1000

_OUTCOMES = {
    PutOutcome.ACCEPTED: api.INGEST_OUTCOME_ACCEPTED,
    PutOutcome.DUPLICATE: api.INGEST_OUTCOME_DUPLICATE,
    PutOutcome.EQUIVOCATION: api.INGEST_OUTCOME_EQUIVOCATION,
}


def _ingest_response(results: Sequence[IngestResult]) -> api.IngestResponse:
    out = api.IngestResponse()
    add = out.results.add  # built in place: 0.2 µs per result, against 0.5 copied in
    for r in results:
        if r.error is not None:
            add(
                id=r.id,
                outcome=api.INGEST_OUTCOME_REJECTED,
                code=status_of(r.error).value[0],
                error=str(r.error),
            )
        elif r.outcome is PutOutcome.ACCEPTED:  # no Enum hash (Python code) per result
            add(id=r.id, outcome=api.INGEST_OUTCOME_ACCEPTED)
        else:
            assert r.outcome is not None
            add(id=r.id, outcome=_OUTCOMES[r.outcome])
    return out


class AlertService:
    def __init__(self, node: AlertNode) -> None:
        self.node = node

    def _stored(self, stored: Stored) -> api.StoredAlert:
        return convert.stored_alert(
            stored,
            roster=self.node.roster,
            now_ms=self.node.clock(),
            reader=self.node.sharing.content,
        )

    @unary
    async def Publish(
        self, request: api.PublishRequest, context: grpc.aio.ServicerContext
    ) -> api.PublishResponse:
        started = time.monotonic() if latency_trace.ON else 0.0
        stored, duplicate = await self.node.publish(
            convert.draft(request),
            request.client_request_id,
            request.recipients,
            force=request.force,
        )
        if latency_trace.ON:
            latency_trace.mark("publish_in", stored.record.id, started)
            latency_trace.mark("acked", stored.record.id)
        return api.PublishResponse(
            id=stored.record.id, alert=self._stored(stored), duplicate=duplicate
        )

    @unary
    async def PublishBatch(
        self, request: api.PublishBatchRequest, context: grpc.aio.ServicerContext
    ) -> api.PublishBatchResponse:
        results = await self.node.publish_batch(
            [(convert.draft(r), r.client_request_id) for r in request.requests],
            [r.force for r in request.requests],
        )
        out = api.PublishBatchResponse()
        add = out.results.add
        for r in results:
            if r.error is not None:
                add(code=status_of(r.error).value[0], error=str(r.error))
            else:
                add(id=r.id, duplicate=r.duplicate)
        return out

    async def _ingest(self, request: api.IngestRequest) -> api.IngestResponse:
        results = await self.node.ingest([(a.body, a.signature) for a in request.alerts])
        if results and all(r.error is not None for r in results):
            # Nothing was stored: fail the call so a single bad alert gets a plain status.
            first = results[0].error
            assert first is not None
            prefix = "" if len(results) == 1 else f"all {len(results)} alerts rejected; first: "
            raise type(first)(prefix + str(first))
        return _ingest_response(results)

    @unary
    async def Ingest(
        self, request: api.IngestRequest, context: grpc.aio.ServicerContext
    ) -> api.IngestResponse:
        return await self._ingest(request)

    async def IngestStream(
        self,
        requests: AsyncIterator[api.IngestRequest | MalformedRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[api.IngestResponse]:
        async for request in requests:
            try:
                if isinstance(request, MalformedRequest):
                    raise request
                yield await self._ingest(request)
            except AlertmeshError as exc:
                await context.abort(status_of(exc), str(exc))

    @unary
    async def GetAlert(
        self, request: api.GetAlertRequest, context: grpc.aio.ServicerContext
    ) -> api.StoredAlert:
        if len(request.id) != 32:
            raise InvalidAlert("an alert id is 32 bytes (64 hex characters)")
        out = self._stored(await self.node.get(request.id))
        for fact, target, kind, refused in await self.node.lifecycle.history(request.id):
            out.history.add(
                alert_id=fact.id,
                kind=alert_pb2.LinkKind.ValueType(kind),
                target=target,
                member=fact.member,
                created_at_ms=fact.created_at_ms,
                title=fact.title,
                description=fact.description,
                refused=refused,
            )
        return out

    def _query(self, f: api.AlertFilter) -> Query:
        keys = self.node.lookup_keys(f.indicator) if f.indicator else None
        return convert.query(f, now_ms=self.node.clock(), keys=keys)

    @unary
    async def SearchAlerts(
        self, request: api.SearchAlertsRequest, context: grpc.aio.ServicerContext
    ) -> api.SearchAlertsResponse:
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        before = convert.decode_cursor(request.page_token, "page_token")
        rows = await self.node.search(self._query(request.filter), limit=size + 1, before=before)
        page = rows[:size]
        token = convert.encode_cursor(page[-1].local_seq) if len(rows) > size else ""
        return api.SearchAlertsResponse(
            alerts=[self._stored(s) for s in page], next_page_token=token
        )

    @unary
    async def CheckIndicators(
        self, request: api.CheckIndicatorsRequest, context: grpc.aio.ServicerContext
    ) -> api.CheckIndicatorsResponse:
        results = await self.node.check(request.values, include_expired=request.include_expired)
        return check_response(results, self.node.roster.name_of)

    @streaming
    async def Subscribe(
        self, request: api.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api.SubscribeEvent]:
        cursor = convert.decode_cursor(request.cursor)
        if cursor is None and request.from_start:
            cursor = 0
        query = self._query(request.filter)
        async for event in self.node.watch_events(query, cursor):
            if latency_trace.ON:
                latency_trace.mark("subscribe_sent", event.stored.record.id)
            yield api.SubscribeEvent(
                alert=self._stored(event.stored),
                kind=api.EventKind.ValueType(event.kind),
                targets=event.targets,
                released=event.released,
            )

    @unary
    async def ReloadRoster(
        self, request: api.ReloadRosterRequest, context: grpc.aio.ServicerContext
    ) -> api.ReloadRosterResponse:
        self.node.reload_roster()
        return api.ReloadRosterResponse(members=len(self.node.roster))

    @unary
    async def SetPeerBlocked(
        self, request: api.SetPeerBlockedRequest, context: grpc.aio.ServicerContext
    ) -> api.SetPeerBlockedResponse:
        member = self.node.roster.by_name(request.name)
        if member is None:
            raise NotFound(f"no member named {request.name!r} on this node's roster")
        if member.key == self.node.identity.public_key:
            raise InvalidAlert("a node cannot block itself")
        blocked = self.node.set_peer_blocked(member.key, request.blocked)
        return api.SetPeerBlockedResponse(blocked=[self.node.roster.name_of(k) for k in blocked])

    @unary
    async def GetStats(
        self, request: api.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> api.Stats:
        st = await self.node.stats()
        return api.Stats(
            alerts=st.alerts,
            digest=st.digest.hex(),
            equivocations=st.equivocations,
            origins=[
                api.OriginStats(
                    origin=o.origin,
                    name=o.name,
                    alerts=o.alerts,
                    contiguous_seq=o.contiguous_seq,
                    max_seq=o.max_seq,
                    equivocated=o.equivocated,
                )
                for o in st.origins
            ],
            peers=[api.PeerStats(**p) for p in st.peers],  # type: ignore[arg-type]
            node_name=self.node.roster.name_of(self.node.identity.public_key),
            node_key=self.node.identity.public_key,
            counters=st.counters,
            compromised=[
                api.CompromisedAlert(
                    id=c.id,
                    origin=c.origin,
                    name=c.name,
                    seq=c.seq,
                    created_at_ms=c.created_at_ms,
                    reason=c.reason,
                )
                for c in st.compromised
            ],
            compromised_total=st.compromised_total,
        )


__all__ = ["AlertService", "alert_pb2"]
