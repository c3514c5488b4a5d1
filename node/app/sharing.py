"""Alerts for named members only: choosing recipients, sealing, and reading.

The author's node encrypts an alert's content to its recipients and to itself
(node/crypto/sealing.py); every node stores and forwards the envelope like any alert;
a recipient decrypts it when it arrives (to index its indicators) and whenever a
client reads it. A node keeps the keys it can read with: its current key and the
retired keys `alertmesh rotate-key` left in its home.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from node._pb.alertmesh.v1 import alert_pb2
from node.core import alerts
from node.core.alerts import AlertRecord
from node.core.errors import InvalidAlert
from node.core.limits import Limits
from node.core.roster import Roster
from node.crypto import Identity, load_identity, sealing
from node.crypto.sealing import Undecryptable, open_sealed

log = logging.getLogger(__name__)

TLP_RED = alert_pb2.TLP_RED


def readers_in(key_path: Path) -> list[Identity]:
    """Retired keys kept beside the current one (identity.key.retired-*), newest first."""
    retired = sorted(key_path.parent.glob(f"{key_path.name}.retired-*"), reverse=True)
    return [load_identity(path) for path in retired]


def recipient_keys(
    names: Sequence[str], roster: Roster, own_key: bytes, now_ms: int
) -> list[bytes]:
    """The member keys to encrypt to: each named member's current key, then ours. A
    member whose current key is not valid now (retired, compromised, not yet valid) is
    refused: its key may be in a thief's hands."""
    keys: list[bytes] = []
    for name in names:
        member = roster.by_name(name)
        if member is None and len(name) == 64:
            try:
                member = roster.get(bytes.fromhex(name))
            except ValueError:
                member = None
        if member is None:
            raise InvalidAlert(
                f"recipient {name!r} is not a member on this node's roster; use roster names "
                f"({', '.join(sorted(m.name for m in roster)) or 'none'})"
            )
        entry = member.key_entry(member.key)
        if entry is None or not entry.valid_at(now_ms):
            raise InvalidAlert(
                f"recipient {member.name!r} has no valid key on this node's roster (its "
                "current key is retired or compromised); it cannot be sent encrypted alerts "
                "until the roster lists its new key (to update or retract an alert encrypted "
                "to it, name the other recipients with --to)"
            )
        if member.key not in keys and member.key != own_key:
            keys.append(member.key)
    if not keys:
        raise InvalidAlert("an encrypted alert needs at least one recipient besides this node")
    return [*keys, own_key]


class Sharing:
    def __init__(self, identity: Identity, readers: Sequence[Identity], limits: Limits) -> None:
        self.identities = [identity, *readers]
        self.limits = limits

    def envelope(self, full: alert_pb2.Alert, recipients: list[bytes]) -> alert_pb2.Alert:
        """The signed-to-be body of `full` (origin, seq, prev, created_at set) for
        `recipients`: everything but the envelope fields encrypted."""
        return sealing.envelope(full, recipients)

    def read(self, envelope: alert_pb2.Alert) -> tuple[alert_pb2.Alert, tuple[str, ...]] | None:
        """The full alert and its index keys if this node is a recipient, else None.
        Raises Undecryptable (an InvalidAlert) if it is one but the content does not
        open or breaks a rule."""
        content = open_sealed(envelope, self.identities)
        if content is None:
            return None
        try:
            return alerts.open_content(envelope, content, limits=self.limits)
        except InvalidAlert as exc:
            raise Undecryptable(f"the decrypted content is refused: {exc}") from exc

    def opened(self, record: AlertRecord) -> AlertRecord:
        """A received encrypted record as this node stores it: with the decrypted
        content's fields and index keys if it is a recipient, as it came otherwise."""
        envelope = record.decode()
        try:
            read = self.read(envelope)
        except Undecryptable:
            # The reason's type only: its text may quote decrypted content (a value).
            log.warning(
                "encrypted alert %s addressed to this node does not open; kept unread",
                record.id.hex()[:16],
            )
            raise
        if read is None:
            return record
        full, keys = read
        return alerts.make_record(record.body, record.signature, full, keys, record.id)

    def content(self, record: AlertRecord) -> tuple[alert_pb2.Alert, bool, bool]:
        """What a client is shown: (alert, encrypted, readable). A recipient sees the
        decrypted alert; anyone else the clear envelope."""
        alert = record.decode()
        if not alert.HasField("sealed"):
            return alert, False, False
        try:
            read = self.read(alert)
        except Undecryptable:
            return alert, True, False
        if read is None:
            return alert, True, False
        return read[0], True, True
