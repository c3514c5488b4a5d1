"""PeerFrames as the simulator moves them, and their exact size on the wire.

The simulator does not build protobuf messages for the millions of frames of a large
run; it moves these small records instead and computes the size the real
`alertmesh.v1.PeerFrame` would encode to (`encoded_size`), plus the per-message
framing of gRPC over HTTP/2 (`FRAME_OVERHEAD`). tests/test_sim.py checks every size
against `to_peer_frame(frame).ByteSize()`.

`Alerts.hops` and `Ids.hops` are simulator-only bookkeeping (the hop count of each
alert when it arrives; for an IHAVE, the hop count the alert would arrive with from
the announcer) and cost nothing on the wire: the real protocol does not carry them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import peer_service_pb2 as pb
from node.crypto.session import NONCE_BYTES

# gRPC's 5-byte length prefix and the 9-byte HTTP/2 DATA frame header, per message.
# TCP/IP headers are left out, as in docs/catchup.md's byte estimates.
FRAME_OVERHEAD = 5 + 9
KEY_BYTES = 32
SIGNATURE_BYTES = 64

Signed: TypeAlias = tuple[bytes, bytes]
"""A SignedAlert: (body, signature)."""


class Kind(enum.IntEnum):
    """The PeerFrame oneof; values are the field numbers."""

    HELLO = 1
    CHALLENGE = 2
    AUTH = 3
    ALERTS = 4
    IHAVE = 5
    IWANT = 6
    PRUNE = 7
    GRAFT = 8
    DIGEST = 9
    VECTOR = 10
    RANGES = 11
    EQUIVOCATION = 12
    TREE = 13


@dataclass(frozen=True, slots=True)
class Handshake:
    """Hello, Challenge or Auth, with real key, nonce and signature lengths."""

    kind: Kind


@dataclass(frozen=True, slots=True)
class Alerts:
    alerts: tuple[Signed, ...]
    catchup: bool = False
    hops: tuple[int, ...] = ()  # simulator-only: the hop count of each alert on arrival
    answer: bool = False  # asked for (IWANT, GRAFT): as the real wire's Alerts.answer

    @property
    def kind(self) -> Kind:
        return Kind.ALERTS


@dataclass(frozen=True, slots=True)
class Ids:
    """IHave, IWant or Graft."""

    kind: Kind
    ids: tuple[bytes, ...]
    hops: tuple[int, ...] = ()  # simulator-only, IHAVE: the announcer's hop count + 1


@dataclass(frozen=True, slots=True)
class Prune:
    @property
    def kind(self) -> Kind:
        return Kind.PRUNE


@dataclass(frozen=True, slots=True)
class Tree:
    """TreePosition: the sender's root, its cost to it, and whether we are its parent."""

    root: bytes
    cost: int
    parent: bool

    @property
    def kind(self) -> Kind:
        return Kind.TREE


@dataclass(frozen=True, slots=True)
class Digest:
    digest: bytes

    @property
    def kind(self) -> Kind:
        return Kind.DIGEST


@dataclass(frozen=True, slots=True)
class Vector:
    heads: tuple[tuple[bytes, int], ...]
    reply: bool

    @property
    def kind(self) -> Kind:
        return Kind.VECTOR


@dataclass(frozen=True, slots=True)
class Ranges:
    """Raw (origin, from_seq, to_seq) fields: a hostile peer may send nonsense."""

    ranges: tuple[tuple[bytes, int, int], ...]

    @property
    def kind(self) -> Kind:
        return Kind.RANGES


@dataclass(frozen=True, slots=True)
class Proof:
    first: Signed
    second: Signed

    @property
    def kind(self) -> Kind:
        return Kind.EQUIVOCATION


Frame: TypeAlias = Handshake | Alerts | Ids | Prune | Tree | Digest | Vector | Ranges | Proof


# -- sizes -----------------------------------------------------------------------------


def varint_len(n: int) -> int:
    length = 1
    while n >= 0x80:
        n >>= 7
        length += 1
    return length


def _bytes_field(n: int) -> int:
    """A length-delimited field of n bytes (tag < 16), as a present field or list item."""
    return 1 + varint_len(n) + n


def _optional_bytes(n: int) -> int:
    return _bytes_field(n) if n else 0  # proto3: empty bytes are not encoded


def _uint_field(v: int) -> int:
    return 1 + varint_len(v) if v else 0


def signed_size(alert: Signed) -> int:
    """Encoded size of a SignedAlert."""
    return _optional_bytes(len(alert[0])) + _optional_bytes(len(alert[1]))


def _alert_item(alert: Signed) -> int:
    """A SignedAlert as an item of Alerts.alerts (the common sizes inlined: it is hot)."""
    body, sig = len(alert[0]), len(alert[1])
    if 0 < body < 16384 and 0 < sig < 128:
        inner = body + (2 if body < 128 else 3) + sig + 2
        return inner + (2 if inner < 128 else 3 if inner < 16384 else 4)
    return _bytes_field(signed_size(alert))


def _ids_size(ids: tuple[bytes, ...]) -> int:
    return sum(_bytes_field(len(i)) for i in ids)


_HANDSHAKE_SIZES = {
    Kind.HELLO: pb.PeerFrame(
        hello=pb.Hello(key=b"k" * KEY_BYTES, nonce=b"n" * NONCE_BYTES, protocol_version=1)
    ).ByteSize(),
    Kind.CHALLENGE: pb.PeerFrame(
        challenge=pb.Challenge(
            key=b"k" * KEY_BYTES, nonce=b"n" * NONCE_BYTES, signature=b"s" * SIGNATURE_BYTES
        )
    ).ByteSize(),
    Kind.AUTH: pb.PeerFrame(auth=pb.Auth(signature=b"s" * SIGNATURE_BYTES)).ByteSize(),
}


def encoded_size(frame: Frame) -> int:
    """Bytes of the serialised PeerFrame (`to_peer_frame(frame).ByteSize()`)."""
    if isinstance(frame, Alerts):
        inner = sum(map(_alert_item, frame.alerts)) + 2 * frame.catchup
    elif isinstance(frame, Ids):
        inner = _ids_size(frame.ids)
    elif isinstance(frame, Prune):
        inner = 0
    elif isinstance(frame, Tree):
        inner = _optional_bytes(len(frame.root)) + _uint_field(frame.cost) + 2 * frame.parent
    elif isinstance(frame, Digest):
        inner = _optional_bytes(len(frame.digest))
    elif isinstance(frame, Vector):
        inner = sum(_bytes_field(_optional_bytes(len(o)) + _uint_field(s)) for o, s in frame.heads)
        inner += 2 * frame.reply
    elif isinstance(frame, Ranges):
        inner = sum(
            _bytes_field(_optional_bytes(len(o)) + _uint_field(a) + _uint_field(b))
            for o, a, b in frame.ranges
        )
    elif isinstance(frame, Proof):
        inner = _bytes_field(signed_size(frame.first)) + _bytes_field(signed_size(frame.second))
    else:
        return _HANDSHAKE_SIZES[frame.kind]
    return _bytes_field(inner)  # the oneof field of PeerFrame is present even when empty


def wire_size(frame: Frame) -> int:
    """Bytes a frame costs on the link: the PeerFrame plus gRPC/HTTP2 framing."""
    return encoded_size(frame) + FRAME_OVERHEAD


# -- the real message, for checking sizes ----------------------------------------------


def _signed_pb(alert: Signed) -> alert_pb2.SignedAlert:
    return alert_pb2.SignedAlert(body=alert[0], signature=alert[1])


def to_peer_frame(frame: Frame) -> pb.PeerFrame:
    """The protobuf PeerFrame a real node would send for `frame`."""
    if isinstance(frame, Alerts):
        alerts = [_signed_pb(a) for a in frame.alerts]
        return pb.PeerFrame(
            alerts=pb.Alerts(alerts=alerts, catchup=frame.catchup, answer=frame.answer)
        )
    if isinstance(frame, Ids):
        if frame.kind is Kind.IHAVE:
            return pb.PeerFrame(ihave=pb.IHave(ids=frame.ids))
        if frame.kind is Kind.IWANT:
            return pb.PeerFrame(iwant=pb.IWant(ids=frame.ids))
        return pb.PeerFrame(graft=pb.Graft(ids=frame.ids))
    if isinstance(frame, Prune):
        return pb.PeerFrame(prune=pb.Prune())
    if isinstance(frame, Tree):
        position = pb.TreePosition(root=frame.root, cost=frame.cost, parent=frame.parent)
        return pb.PeerFrame(tree=position)
    if isinstance(frame, Digest):
        return pb.PeerFrame(digest=pb.SummaryDigest(digest=frame.digest))
    if isinstance(frame, Vector):
        heads = [pb.Head(origin=o, seq=s) for o, s in frame.heads]
        return pb.PeerFrame(vector=pb.VersionVector(heads=heads, reply=frame.reply))
    if isinstance(frame, Ranges):
        ranges = [pb.RangeRequest(origin=o, from_seq=a, to_seq=b) for o, a, b in frame.ranges]
        return pb.PeerFrame(ranges=pb.RangeRequests(ranges=ranges))
    if isinstance(frame, Proof):
        proof = pb.EquivocationProof(first=_signed_pb(frame.first), second=_signed_pb(frame.second))
        return pb.PeerFrame(equivocation=proof)
    key, nonce, sig = b"k" * KEY_BYTES, b"n" * NONCE_BYTES, b"s" * SIGNATURE_BYTES
    if frame.kind is Kind.HELLO:
        return pb.PeerFrame(hello=pb.Hello(key=key, nonce=nonce, protocol_version=1))
    if frame.kind is Kind.CHALLENGE:
        return pb.PeerFrame(challenge=pb.Challenge(key=key, nonce=nonce, signature=sig))
    return pb.PeerFrame(auth=pb.Auth(signature=sig))


TRAFFIC_CLASSES = (
    "alerts",
    "ihave",
    "graft/iwant/prune",
    "tree",
    "catch-up alerts",
    "catch-up control",
    "proofs",
    "handshake",
)
_CLASS_OF_KIND = {
    Kind.IHAVE: "ihave",
    Kind.IWANT: "graft/iwant/prune",
    Kind.GRAFT: "graft/iwant/prune",
    Kind.PRUNE: "graft/iwant/prune",
    Kind.TREE: "tree",
    Kind.DIGEST: "catch-up control",
    Kind.VECTOR: "catch-up control",
    Kind.RANGES: "catch-up control",
    Kind.EQUIVOCATION: "proofs",
    Kind.HELLO: "handshake",
    Kind.CHALLENGE: "handshake",
    Kind.AUTH: "handshake",
}


def traffic_class(frame: Frame) -> str:
    """Which of TRAFFIC_CLASSES a frame's bytes count towards."""
    if isinstance(frame, Alerts):
        return "catch-up alerts" if frame.catchup else "alerts"
    return _CLASS_OF_KIND[frame.kind]
