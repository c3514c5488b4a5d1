"""The one place alertmesh errors become gRPC status codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from node.core.errors import (
    AlertmeshError,
    ConfigError,
    Forbidden,
    InvalidAlert,
    InvalidSignature,
    LimitExceeded,
    NotFound,
    ReadOnly,
    StoreClosed,
    Unauthenticated,
    UnknownOrigin,
)

log = logging.getLogger(__name__)

CODES: list[tuple[type[AlertmeshError], grpc.StatusCode]] = [
    (InvalidAlert, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidSignature, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownOrigin, grpc.StatusCode.PERMISSION_DENIED),
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (ConfigError, grpc.StatusCode.FAILED_PRECONDITION),
    (ReadOnly, grpc.StatusCode.FAILED_PRECONDITION),
    (StoreClosed, grpc.StatusCode.UNAVAILABLE),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (Forbidden, grpc.StatusCode.PERMISSION_DENIED),
]


def status_of(exc: AlertmeshError) -> grpc.StatusCode:
    for cls, code in CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INVALID_ARGUMENT


class MalformedRequest(InvalidAlert):
    """The request bytes are not the protobuf message the method expects."""


R = TypeVar("R")
Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[R]]
StreamHandler = Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[R]]


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, AlertmeshError):
        await context.abort(status_of(exc), str(exc))
    log.exception("internal error", exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; the node's log has details")


def unary(fn: Handler[R]) -> Handler[R]:
    """Map exceptions raised by a unary handler to status codes."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            if isinstance(request, MalformedRequest):
                raise request
            return await fn(self, request, context)
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            await _abort(context, exc)
            raise AssertionError("unreachable") from exc

    return wrapper


def streaming(fn: StreamHandler[R]) -> StreamHandler[R]:
    """Map exceptions raised by a server-streaming handler to status codes."""

    @functools.wraps(fn)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[R]:
        try:
            if isinstance(request, MalformedRequest):
                raise request
            async for item in fn(self, request, context):
                yield item
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            await _abort(context, exc)

    return wrapper


def safe_deserializer(message_type: Any) -> Callable[[bytes], Any]:
    """Parse a request; on garbage return a MalformedRequest for the handler to report.

    grpcio answers a deserializer exception with an opaque INTERNAL status; this
    turns it into INVALID_ARGUMENT with a message naming the expected type.
    """

    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except (DecodeError, ValueError):
            return MalformedRequest(
                f"request is not a valid {message_type.DESCRIPTOR.full_name} protobuf message"
            )

    return parse
