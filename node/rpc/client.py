"""A small async client for a node's AlertService (used by the CLI and tests).

With `ca` (the node's tls.crt, PEM) the channel is TLS and trusts only that
certificate; with `token` every call, streams included, carries
`authorization: Bearer <token>`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self

import grpc

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node._pb.alertmesh.v1.alerts_service_pb2_grpc import AlertServiceStub
from node.crypto.tls import PEER_TLS_NAME

CLIENT_OPTIONS = [
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
]


class AlertClient:
    def __init__(self, address: str, *, token: str | None = None, ca: bytes | None = None) -> None:
        self.address = address
        if ca is None:
            self._channel = grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS)
        else:
            # The node's certificate names PEER_TLS_NAME, whatever address it is reached at.
            options = [*CLIENT_OPTIONS, ("grpc.ssl_target_name_override", PEER_TLS_NAME)]
            credentials = grpc.ssl_channel_credentials(root_certificates=ca)
            self._channel = grpc.aio.secure_channel(address, credentials, options=options)
        self.stub = AlertServiceStub(self._channel)
        self._md: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def wait_ready(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._channel.channel_ready()

    async def publish(
        self, request: api.PublishRequest, timeout: float = 30
    ) -> api.PublishResponse:
        response: api.PublishResponse = await self.stub.Publish(
            request, timeout=timeout, metadata=self._md
        )
        return response

    async def publish_batch(
        self, requests: Sequence[api.PublishRequest], timeout: float = 60
    ) -> api.PublishBatchResponse:
        """One result per request, in order; a refused item has `error` set."""
        response: api.PublishBatchResponse = await self.stub.PublishBatch(
            api.PublishBatchRequest(requests=requests), timeout=timeout, metadata=self._md
        )
        return response

    async def ingest(
        self, alerts: Sequence[alert_pb2.SignedAlert], timeout: float = 60
    ) -> api.IngestResponse:
        response: api.IngestResponse = await self.stub.Ingest(
            api.IngestRequest(alerts=alerts), timeout=timeout, metadata=self._md
        )
        return response

    async def get(self, alert_id: bytes, timeout: float = 30) -> api.StoredAlert:
        response: api.StoredAlert = await self.stub.GetAlert(
            api.GetAlertRequest(id=alert_id), timeout=timeout, metadata=self._md
        )
        return response

    async def search(
        self, request: api.SearchAlertsRequest, timeout: float = 30
    ) -> api.SearchAlertsResponse:
        response: api.SearchAlertsResponse = await self.stub.SearchAlerts(
            request, timeout=timeout, metadata=self._md
        )
        return response

    async def check(
        self, values: Sequence[str], *, include_expired: bool = False, timeout: float = 30
    ) -> api.CheckIndicatorsResponse:
        request = api.CheckIndicatorsRequest(values=values, include_expired=include_expired)
        response: api.CheckIndicatorsResponse = await self.stub.CheckIndicators(
            request, timeout=timeout, metadata=self._md
        )
        return response

    def subscribe(self, request: api.SubscribeRequest) -> AsyncIterator[api.SubscribeEvent]:
        call: AsyncIterator[api.SubscribeEvent] = self.stub.Subscribe(request, metadata=self._md)
        return call

    async def reload_roster(self, timeout: float = 30) -> api.ReloadRosterResponse:
        request = api.ReloadRosterRequest()
        response: api.ReloadRosterResponse = await self.stub.ReloadRoster(
            request, timeout=timeout, metadata=self._md
        )
        return response

    async def set_peer_blocked(
        self, name: str, blocked: bool, timeout: float = 30
    ) -> api.SetPeerBlockedResponse:
        request = api.SetPeerBlockedRequest(name=name, blocked=blocked)
        response: api.SetPeerBlockedResponse = await self.stub.SetPeerBlocked(
            request, timeout=timeout, metadata=self._md
        )
        return response

    async def stats(self, timeout: float = 30) -> api.Stats:
        response: api.Stats = await self.stub.GetStats(
            api.GetStatsRequest(), timeout=timeout, metadata=self._md
        )
        return response
