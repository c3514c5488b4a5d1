"""Key succession: a member's old key vouches for its new one.

When a member rotates its signing key, the first alert of the new key (seq 1) carries
a `KeySuccession`: the old key, the old chain's last seq and head id, and the old
key's signature over those and the new key. Any node can check it, so a member's
history reads as one line across rotations: old chain ... head <- succession <- new
chain. The roster still decides which keys a member has and when each may sign; the
succession is the evidence that the change came from the holder of the old key.
"""

from __future__ import annotations

from node._pb.alertmesh.v1 import alert_pb2
from node.core.errors import InvalidSignature
from node.crypto.identity import Identity, verify_detached

SUCCESSION_DOMAIN = b"alertmesh/v1/succession\0"


def succession_message(new_key: bytes, previous_seq: int, previous_head: bytes) -> bytes:
    return SUCCESSION_DOMAIN + new_key + previous_seq.to_bytes(8, "big") + previous_head


def sign_succession(
    previous: Identity, new_key: bytes, previous_seq: int, previous_head: bytes
) -> alert_pb2.KeySuccession:
    """The succession record `previous` signs for `new_key`, its chain ending at
    `previous_seq` (0: it never published) with id `previous_head`."""
    return alert_pb2.KeySuccession(
        previous_key=previous.public_key,
        previous_seq=previous_seq,
        previous_head=previous_head,
        signature=previous.sign(succession_message(new_key, previous_seq, previous_head)),
    )


def verify_succession(alert: alert_pb2.Alert) -> None:
    """Raise InvalidSignature unless the alert's succession (if any) is signed by its
    previous key. Its shape is checked with the other rules (node.core.alerts)."""
    if not alert.HasField("succession"):
        return
    s = alert.succession
    try:
        verify_detached(
            s.previous_key,
            succession_message(alert.origin, s.previous_seq, s.previous_head),
            s.signature,
        )
    except InvalidSignature as exc:
        raise InvalidSignature(
            f"the key succession is not signed by the previous key {s.previous_key.hex()[:16]}…"
            f" ({exc})"
        ) from None
