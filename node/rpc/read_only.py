"""The interceptor of a read-only API process (alertmesh serve-api): calls that
would write (publish, ingest) or administer the node are refused before they run,
with FAILED_PRECONDITION and a message naming the writing node. Which methods are
reads is decided in node/core/api_access.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from node.core.api_access import read_only_serves
from node.core.errors import ReadOnly
from node.rpc.auth import _refusal
from node.rpc.errors import status_of

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]


class ReadOnlyInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, service: str, writer: str) -> None:
        self.prefix = f"/{service}/"
        self.writer = writer  # where the writing node is, for the message

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        method_path: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if not method_path.startswith(self.prefix):
            return handler
        method = method_path.removeprefix(self.prefix)
        if read_only_serves(method):
            return handler
        refused = ReadOnly(
            f"{method}: this is a read-only API process (alertmesh serve-api); send it to the"
            f" writing node ({self.writer})"
        )
        return _refusal(handler, status_of(refused), str(refused))
