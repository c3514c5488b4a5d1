"""Peer sessions over gRPC: the PeerService servicer, the dialer, and the handshake.

Both ends of a session look alike once it is open: a `FrameTransport` that reads
and writes PeerFrames. The handshake here only moves frames and checks what the
crypto layer says; what a session carries is decided in node/app/peers.py.

Sessions run over TLS 1.3 with no certificate authority (`PeerSecurity`): the dialer
trusts exactly the certificate its roster pins for the member it dials, the acceptor
accepts client certificates pinned for any member and then checks that the one
presented is pinned for the member whose key the Hello claims. The signed handshake
covers both certificates' fingerprints (node/crypto/session.py), binding it to the
TLS connection it runs over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from node._pb.alertmesh.v1 import peer_service_pb2 as pb
from node._pb.alertmesh.v1.peer_service_pb2_grpc import PeerServiceStub
from node.core.errors import AlertmeshError, InvalidSignature, UnknownOrigin
from node.core.roster import Member, Roster, certificate_fingerprint, format_pin
from node.crypto import Identity
from node.crypto.session import (
    ACCEPTOR,
    DIALER,
    NONCE_BYTES,
    PLAINTEXT_CHANNEL,
    Transcript,
    new_nonce,
    tls_channel,
)
from node.crypto.tls import PEER_TLS_NAME, TlsIdentity
from node.rpc.errors import MalformedRequest

PROTOCOL_VERSION = 2  # 2: the handshake is bound to the TLS channel
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


class PinMismatch(HandshakeFailed):
    """The peer's TLS certificate is not the one the roster pins for the member it claims."""


@dataclass(frozen=True)
class PeerSecurity:
    """How this node's peer sessions are protected: TLS with its key pair, or, when an
    operator asked for it (peers.insecure_plaintext), no protection at all."""

    tls: TlsIdentity | None
    _roots: list[bytes] = field(default_factory=list, repr=False, compare=False)

    @property
    def plaintext(self) -> bool:
        return self.tls is None

    def server_credentials(self, roster: Callable[[], Roster]) -> grpc.ServerCredentials:
        """Require a client certificate pinned on the roster; the roster is read again at
        every TLS handshake, so a reload takes effect for the next connection."""
        tls = self.tls
        assert tls is not None

        def current() -> Any:
            # Our own certificate too, so that the root list is never empty.
            pins = {m.tls_cert for m in roster() if m.tls_cert} | {tls.cert_pem}
            roots = b"".join(sorted(pins))
            if self._roots and self._roots[0] == roots:
                return None  # unchanged
            self._roots[:] = [roots]
            return grpc.ssl_server_certificate_configuration(
                [(tls.key_pem, tls.cert_pem)], root_certificates=roots
            )

        return grpc.dynamic_ssl_server_credentials(
            current(), current, require_client_authentication=True
        )

    def channel(self, address: str, member: Member) -> grpc.aio.Channel:
        """A channel to `member`'s node that trusts only the certificate pinned for it."""
        if self.tls is None:
            return grpc.aio.insecure_channel(address, options=KEEPALIVE_OPTIONS)
        if not member.tls_cert:
            raise PinMismatch(
                f"{member.name} has no tls_cert on this node's roster, so its node cannot be "
                "authenticated; add its member card (or, in a lab, set peers.insecure_plaintext)"
            )
        credentials = grpc.ssl_channel_credentials(
            root_certificates=member.tls_cert,
            private_key=self.tls.key_pem,
            certificate_chain=self.tls.cert_pem,
        )
        options = [*KEEPALIVE_OPTIONS, ("grpc.ssl_target_name_override", PEER_TLS_NAME)]
        return grpc.aio.secure_channel(address, credentials, options=options)

    def dialer_channel(self, member: Member) -> bytes:
        """The channel binding the dialer signs: its certificate and the member's pin."""
        if self.tls is None:
            return PLAINTEXT_CHANNEL
        return tls_channel(self.tls.fingerprint, member.tls_fingerprint)

    def client_certificate(self, context: grpc.aio.ServicerContext) -> bytes | None:
        """The fingerprint of the dialer's TLS certificate (None over plaintext).
        Raises HandshakeFailed when the connection is not TLS 1.3."""
        if self.tls is None:
            return None
        auth = context.auth_context()
        version = b"".join(auth.get("ssl_tls_version", []))
        if auth.get("transport_security_type") != [b"ssl"] or version != b"TLSv1.3":
            raise HandshakeFailed(
                f"peer sessions need TLS 1.3; this connection uses {version.decode() or 'none'}"
            )
        pem = b"".join(auth.get("x509_pem_cert", []))
        if not pem:
            raise HandshakeFailed("the peer presented no TLS client certificate")
        return certificate_fingerprint(pem)


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
    transport: FrameTransport,
    identity: Identity,
    expected_key: bytes,
    channel: bytes = PLAINTEXT_CHANNEL,
) -> None:
    """Prove our key to the acceptor and check that it holds `expected_key`, both bound
    to `channel` (PeerSecurity.dialer_channel)."""
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
    transcript = Transcript(identity.public_key, nonce, challenge.key, challenge.nonce, channel)
    try:
        transcript.verify(ACCEPTOR, challenge.signature)
    except InvalidSignature as exc:
        raise HandshakeFailed(f"the peer failed to prove its key: {exc}") from exc
    await transport.write(pb.PeerFrame(auth=pb.Auth(signature=transcript.sign(identity, DIALER))))


async def accept_handshake(
    transport: FrameTransport,
    identity: Identity,
    roster: Callable[[], Roster],
    tls: tuple[bytes, bytes] | None = None,
) -> bytes:
    """Check the dialer is a member holding its key; return that key.

    `tls` is (the dialer's certificate fingerprint, ours) when the session runs over
    TLS: the dialer's certificate must be the one pinned for the member it claims to be.
    """
    hello = await _expect(transport, "hello")
    if hello.protocol_version != PROTOCOL_VERSION:
        raise HandshakeFailed(
            f"peer speaks protocol version {hello.protocol_version}; this node speaks "
            f"{PROTOCOL_VERSION}"
        )
    if len(hello.nonce) != NONCE_BYTES:
        raise HandshakeFailed(f"the hello nonce must be {NONCE_BYTES} bytes")
    member = roster().require_session_key(hello.key, time.time_ns() // 1_000_000)  # valid now
    channel = PLAINTEXT_CHANNEL
    if tls is not None:
        client, ours = tls
        if client != member.tls_fingerprint:
            pinned = format_pin(member.tls_fingerprint) if member.tls_cert else "no tls_cert"
            raise PinMismatch(
                f"the dialer claims to be {member.name} but its TLS certificate "
                f"{format_pin(client)} is not the one on the roster ({pinned})"
            )
        channel = tls_channel(client, ours)
    nonce = new_nonce()
    transcript = Transcript(hello.key, hello.nonce, identity.public_key, nonce, channel)
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


# (peer key, transport, role, the fingerprint of the peer's certificate the TLS handshake
# authenticated: empty over plaintext)
SessionHandler = Callable[[bytes, FrameTransport, str, bytes], Awaitable[None]]
RefusalHandler = Callable[[AlertmeshError], None]


class PeerServicer:
    """PeerService.Session: authenticate the dialer, then hand the stream to the node."""

    def __init__(
        self,
        identity: Identity,
        roster: Callable[[], Roster],
        on_session: SessionHandler,
        security: PeerSecurity,
        on_refused: RefusalHandler = lambda exc: None,
    ) -> None:
        self.identity = identity
        self.roster = roster
        self.on_session = on_session
        self.security = security
        self.on_refused = on_refused

    async def Session(self, requests: Any, context: grpc.aio.ServicerContext) -> None:
        transport = ContextTransport(context)
        try:
            client = self.security.client_certificate(context)
            tls = None
            if client is not None and self.security.tls is not None:
                tls = (client, self.security.tls.fingerprint)
            key = await accept_handshake(transport, self.identity, self.roster, tls)
        except UnknownOrigin as exc:
            self.on_refused(exc)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except (HandshakeFailed, MalformedRequest) as exc:
            self.on_refused(exc)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except TimeoutError:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "handshake timed out")
        await self.on_session(key, transport, "acceptor", client or b"")


async def dial(
    member: Member,
    identity: Identity,
    security: PeerSecurity,
    on_session: SessionHandler,
) -> None:
    """Open a session to `member`'s first address, run it until it ends. Raises on
    failure to connect; PinMismatch when its node's certificate is not the pinned one."""
    address = member.addresses[0]
    async with security.channel(address, member) as channel:
        call = PeerServiceStub(channel).Session()
        transport = CallTransport(call)
        try:
            await dial_handshake(transport, identity, member.key, security.dialer_channel(member))
            pinned = b"" if security.plaintext else member.tls_fingerprint
            await on_session(member.key, transport, "dialer", pinned)
        except grpc.aio.AioRpcError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in (exc.details() or ""):
                raise PinMismatch(
                    f"{member.name}'s node at {address} presented a TLS certificate that is not "
                    f"the one on the roster ({format_pin(member.tls_fingerprint)})"
                ) from exc
            raise
        finally:
            call.cancel()
