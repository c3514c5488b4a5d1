"""Peer sessions over gRPC: the PeerService servicer, the dialer, and the handshake.

Both ends of a session look alike once it is open: a `FrameTransport` that reads
and writes PeerFrames. The handshake here only moves frames and checks what the
crypto layer says; what a session carries is decided in node/app/peers.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc

from node._pb.alertmesh.v1 import peer_service_pb2 as pb
from node._pb.alertmesh.v1.peer_service_pb2_grpc import PeerServiceStub
from node.core.errors import AlertmeshError, InvalidSignature, UnknownOrigin
from node.core.roster import Roster
from node.crypto import Identity
from node.crypto.session import ACCEPTOR, DIALER, NONCE_BYTES, Transcript, new_nonce
from node.rpc.errors import MalformedRequest

PROTOCOL_VERSION = 1
HANDSHAKE_TIMEOUT_S = 10.0
MAX_FRAME_BYTES = 32 * 1024 * 1024

PEER_SERVICE = pb.DESCRIPTOR.services_by_name["PeerService"]

KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", MAX_FRAME_BYTES),
    ("grpc.max_send_message_length", MAX_FRAME_BYTES),
]
SERVER_KEEPALIVE_OPTIONS = [
    *KEEPALIVE_OPTIONS,
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.so_reuseport", 0),
]


class HandshakeFailed(AlertmeshError):
    """The peer did not prove it holds a roster key for this session."""


class FrameTransport(Protocol):
    async def read(self) -> pb.PeerFrame | None: ...  # None: the stream ended

    async def write(self, frame: pb.PeerFrame) -> None: ...


class CallTransport:
    """The dialer's end: a client stream-stream call."""

    def __init__(self, call: Any) -> None:
        self.call = call

    async def read(self) -> pb.PeerFrame | None:
        frame = await self.call.read()
        if frame is grpc.aio.EOF:
            return None
        assert isinstance(frame, pb.PeerFrame)
        return frame

    async def write(self, frame: pb.PeerFrame) -> None:
        await self.call.write(frame)


class ContextTransport:
    """The acceptor's end: the servicer context of PeerService.Session."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self.context = context

    async def read(self) -> pb.PeerFrame | None:
        frame = await self.context.read()
        if frame is grpc.aio.EOF:
            return None
        if isinstance(frame, MalformedRequest):
            raise frame
        assert isinstance(frame, pb.PeerFrame)
        return frame

    async def write(self, frame: pb.PeerFrame) -> None:
        await self.context.write(frame)


async def _expect(transport: FrameTransport, kind: str) -> Any:
    async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
        frame = await transport.read()
    if frame is None or frame.WhichOneof("frame") != kind:
        got = "end of stream" if frame is None else frame.WhichOneof("frame")
        raise HandshakeFailed(f"expected {kind} during the handshake, got {got}")
    return getattr(frame, kind)


async def dial_handshake(
    transport: FrameTransport, identity: Identity, expected_key: bytes
) -> None:
    """Prove our key to the acceptor and check that it holds `expected_key`."""
    nonce = new_nonce()
    await transport.write(
        pb.PeerFrame(
            hello=pb.Hello(key=identity.public_key, nonce=nonce, protocol_version=PROTOCOL_VERSION)
        )
    )
    challenge = await _expect(transport, "challenge")
    if challenge.key != expected_key:
        raise HandshakeFailed("the peer answered with a different key than its roster entry")
    if len(challenge.nonce) != NONCE_BYTES:
        raise HandshakeFailed("the peer's nonce has the wrong length")
    transcript = Transcript(identity.public_key, nonce, challenge.key, challenge.nonce)
    try:
        transcript.verify(ACCEPTOR, challenge.signature)
    except InvalidSignature as exc:
        raise HandshakeFailed(f"the peer failed to prove its key: {exc}") from exc
    await transport.write(pb.PeerFrame(auth=pb.Auth(signature=transcript.sign(identity, DIALER))))


async def accept_handshake(
    transport: FrameTransport, identity: Identity, roster: Callable[[], Roster]
) -> bytes:
    """Check the dialer is a member holding its key; return that key."""
    hello = await _expect(transport, "hello")
    if hello.protocol_version != PROTOCOL_VERSION:
        raise HandshakeFailed(
            f"peer speaks protocol version {hello.protocol_version}; this node speaks "
            f"{PROTOCOL_VERSION}"
        )
    if len(hello.nonce) != NONCE_BYTES:
        raise HandshakeFailed(f"the hello nonce must be {NONCE_BYTES} bytes")
    roster().require_session_key(hello.key, time.time_ns() // 1_000_000)  # valid now
    nonce = new_nonce()
    transcript = Transcript(hello.key, hello.nonce, identity.public_key, nonce)
    await transport.write(
        pb.PeerFrame(
            challenge=pb.Challenge(
                key=identity.public_key, nonce=nonce, signature=transcript.sign(identity, ACCEPTOR)
            )
        )
    )
    auth = await _expect(transport, "auth")
    try:
        transcript.verify(DIALER, auth.signature)
    except InvalidSignature as exc:
        raise HandshakeFailed(f"the peer failed to prove it holds its key: {exc}") from exc
    return bytes(hello.key)


SessionHandler = Callable[[bytes, FrameTransport, str], Awaitable[None]]


class PeerServicer:
    """PeerService.Session: authenticate the dialer, then hand the stream to the node."""

    def __init__(
        self, identity: Identity, roster: Callable[[], Roster], on_session: SessionHandler
    ) -> None:
        self.identity = identity
        self.roster = roster
        self.on_session = on_session

    async def Session(self, requests: Any, context: grpc.aio.ServicerContext) -> None:
        transport = ContextTransport(context)
        try:
            key = await accept_handshake(transport, self.identity, self.roster)
        except UnknownOrigin as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except (HandshakeFailed, MalformedRequest, TimeoutError) as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc) or "handshake timed out")
        await self.on_session(key, transport, "acceptor")


async def dial(
    address: str,
    identity: Identity,
    expected_key: bytes,
    on_session: SessionHandler,
) -> None:
    """Open a session to `address`, run it until it ends. Raises on failure to connect."""
    async with grpc.aio.insecure_channel(address, options=KEEPALIVE_OPTIONS) as channel:
        call = PeerServiceStub(channel).Session()
        transport = CallTransport(call)
        try:
            await dial_handshake(transport, identity, expected_key)
            await on_session(expected_key, transport, "dialer")
        finally:
            call.cancel()
