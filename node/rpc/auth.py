"""The client API's token check as a server interceptor: it reads the
`authorization` metadata, asks the TokenGate, and turns a refusal into a status.
Health and reflection pass untouched, so probes and `grpcurl list` work."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from node.app.tokens import TokenGate
from node.core.errors import AlertmeshError
from node.rpc.errors import status_of

log = logging.getLogger(__name__)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, gate: TokenGate, service: str) -> None:
        self.gate = gate
        self.prefix = f"/{service}/"

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        method_path: str = handler_call_details.method
        if not method_path.startswith(self.prefix):
            return await continuation(handler_call_details)
        method = method_path.removeprefix(self.prefix)
        authorization = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                authorization = value if isinstance(value, str) else value.decode()
        try:
            record = self.gate.authorize(method, authorization)
        except AlertmeshError as exc:
            code = status_of(exc)
            log.info("refused %s: %s", method, code.name)
            return _refusal(await continuation(handler_call_details), code, str(exc))
        log.debug("%s by token %s", method, record.id)
        return await continuation(handler_call_details)


def _refusal(
    handler: grpc.RpcMethodHandler | None, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that fails the call without running it."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    if handler is None or not (handler.request_streaming or handler.response_streaming):
        return grpc.unary_unary_rpc_method_handler(refuse)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    return grpc.unary_stream_rpc_method_handler(refuse)
