"""The alert model: decoding a signed body, the protocol rules, and the stored record.

Rules every alert must satisfy, wherever it comes from (limits in node/core/limits.py):
- the body is a valid serialised `Alert` no larger than max_body_bytes;
- origin is a 32-byte key, seq >= 1, prev is empty for seq 1 and a 32-byte id otherwise;
- created_at is set and at most max_clock_skew ahead of the receiver's clock;
- expiry, if set, is after creation;
- category, severity and TLP are known values, confidence is 0..100;
- a title is present; strings, indicators, references and links are within limits;
- every indicator is valid for its type (and chain) and is indexed in normalised form;
- a key succession (after a key rotation) is on seq 1 only, names another 32-byte key,
  and has a 32-byte head exactly when its previous seq is 1 or more (node.crypto
  checks its signature);
- an encrypted alert (`sealed`) shows nothing but its envelope in clear: origin, seq,
  prev, created_at and 1..max_recipients distinct 32-byte recipient keys, one wrapped
  content key of the right size for each; its decrypted content (node.crypto.sealing)
  holds only content fields and obeys every rule above (`open_content`).
The signature is checked by node.crypto; the roster check by node.core.roster.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple, Protocol

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from node._pb.alertmesh.v1 import alert_pb2
from node.core.errors import InvalidAlert, LimitExceeded
from node.core.index_keys import indicator_keys, links_of
from node.core.limits import Limits, check_len

ID_BYTES = 32
KEY_BYTES = 32

CATEGORY_NAMES: dict[str, int] = {
    name.removeprefix("CATEGORY_").lower().replace("_", "-"): value
    for name, value in alert_pb2.Category.items()
    if value
}
SEVERITY_NAMES: dict[str, int] = {
    name.removeprefix("SEVERITY_").lower(): value
    for name, value in alert_pb2.Severity.items()
    if value
}
TLP_NAMES: dict[str, int] = {
    name.removeprefix("TLP_").lower().replace("_", "+"): value
    for name, value in alert_pb2.Tlp.items()
    if value
}


_CATEGORIES = frozenset(CATEGORY_NAMES.values())
_SEVERITIES = frozenset(alert_pb2.Severity.values())
_TLPS = frozenset(alert_pb2.Tlp.values())


def name_of(names: dict[str, int], value: int) -> str:
    for name, v in names.items():
        if v == value:
            return name
    return str(value)


def alert_id(body: bytes) -> bytes:
    """Alerts are content-addressed: id = SHA-256(body)."""
    return hashlib.sha256(body).digest()


class AlertRecord(NamedTuple):
    """A verified alert as the store keeps it: the original bytes plus indexed fields.

    A named tuple, not a frozen dataclass: a node builds one per ingested alert, and a
    frozen dataclass's __init__ costs about 1.5 µs more (docs/benchmarks.md)."""

    id: bytes
    body: bytes
    signature: bytes
    origin: bytes
    seq: int
    prev: bytes
    created_at_ms: int
    expires_at_ms: int
    category: int
    severity: int
    confidence: int
    title: str
    index_keys: tuple[str, ...]

    @property
    def sealed(self) -> bool:
        """An encrypted alert this node cannot read: every clear alert has a title, and
        a recipient stores the decrypted content's (docs/sharing.md)."""
        return not self.title

    def expired(self, now_ms: int) -> bool:
        return 0 < self.expires_at_ms <= now_ms

    def decode(self) -> alert_pb2.Alert:
        return alert_pb2.Alert.FromString(self.body)


def _check_size(body: bytes, limits: Limits) -> None:
    if len(body) > limits.max_body_bytes:
        raise LimitExceeded(
            f"alert body is {len(body)} bytes; the limit is {limits.max_body_bytes}"
        )
    if not body:
        raise InvalidAlert("alert body is empty")


_UNDECODABLE = "alert body is not a valid alertmesh.v1.Alert protobuf"


def decode_body(body: bytes, limits: Limits) -> alert_pb2.Alert:
    _check_size(body, limits)
    try:
        return alert_pb2.Alert.FromString(body)
    except DecodeError as exc:
        raise InvalidAlert(_UNDECODABLE) from exc


class AlertHead(Protocol):
    """The fields a node admits a received alert by, before anything is verified."""

    @property
    def origin(self) -> bytes: ...
    @property
    def seq(self) -> int: ...
    @property
    def created_at_ms(self) -> int: ...


HEAD_FIELDS = ("origin", "seq", "created_at_ms")


def _head_message() -> type[Message]:
    """A message type of Alert's HEAD_FIELDS alone, made from Alert's own field
    descriptors: protobuf reads those fields from a body exactly as Alert does (the last
    occurrence wins in both), and passes over the others in C, about twice as fast as
    decoding the whole Alert (docs/benchmarks.md)."""
    alert = descriptor_pb2.DescriptorProto()
    alert_pb2.Alert.DESCRIPTOR.CopyToProto(alert)
    file = descriptor_pb2.FileDescriptorProto(
        name="alertmesh/v1/alert_head.proto", package="alertmesh.v1.head", syntax="proto3"
    )
    file.message_type.add(name="AlertHead").field.extend(
        f for f in alert.field if f.name in HEAD_FIELDS
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("alertmesh.v1.head.AlertHead")
    )


_HEAD = _head_message()


def decode_head(body: bytes, limits: Limits) -> AlertHead:
    """An alert's origin, seq and created_at_ms, as decode_body would read them, and the
    same size errors. It parses only those fields: a body that decode_body refuses can
    pass here, and is refused when the whole of it is decoded (decode_body), which
    every received alert is before it is verified."""
    _check_size(body, limits)
    try:
        head: AlertHead = _HEAD.FromString(body)  # type: ignore[assignment]
    except DecodeError as exc:
        raise InvalidAlert(_UNDECODABLE) from exc
    return head


RecordFields = tuple[bytes, int, bytes, int, int, int, int, int, str, tuple[str, ...]]


def validate(
    alert: alert_pb2.Alert, *, now_ms: int, limits: Limits, encrypted: bool = False
) -> tuple[str, ...]:
    """Check the protocol rules; return the alert's index keys (normalised indicators).
    `encrypted`: `alert` is the full view of an encrypted alert (envelope + content)."""
    return checked_fields(alert, now_ms=now_ms, limits=limits, encrypted=encrypted)[-1]


def checked_fields(
    alert: alert_pb2.Alert, *, now_ms: int, limits: Limits, encrypted: bool = False
) -> RecordFields:
    """validate(), returning record_fields(alert, keys): the fields the rules read, each
    read once (a verifier process sends them back for every alert)."""
    # Each read of a field makes a new Python object: every field is read once.
    origin = alert.origin
    if len(origin) != KEY_BYTES:
        raise InvalidAlert(f"origin must be a {KEY_BYTES}-byte Ed25519 public key")
    seq = alert.seq
    if seq < 1:
        raise InvalidAlert("seq must be 1 or more")
    prev = alert.prev
    if seq == 1 and prev:
        raise InvalidAlert("prev must be empty for an origin's first alert (seq 1)")
    if seq > 1 and len(prev) != ID_BYTES:
        raise InvalidAlert(f"prev must be the {ID_BYTES}-byte id of the origin's alert seq-1")
    created_at_ms = alert.created_at_ms
    if created_at_ms <= 0:
        raise InvalidAlert("created_at_ms is missing")
    ahead = created_at_ms - now_ms
    if ahead > limits.max_clock_skew_ms:
        raise InvalidAlert(
            f"created_at is {ahead / 1000:.0f} s in the future; at most "
            f"{limits.max_clock_skew_ms / 1000:.0f} s of clock skew is accepted "
            "(check the author's clock)"
        )
    if alert.HasField("sealed"):
        _check_envelope(alert, limits)
        return record_fields(alert, ())
    tlp = alert.tlp
    recipients = alert.recipients
    if not encrypted:
        if recipients:
            raise InvalidAlert("recipients are only for encrypted alerts (sealed content)")
        if tlp == alert_pb2.TLP_RED:
            raise InvalidAlert(
                "a TLP:RED alert must be encrypted to its recipients; it cannot travel in clear"
            )
    expires_at_ms = alert.expires_at_ms
    if expires_at_ms and expires_at_ms <= created_at_ms:
        raise InvalidAlert("expires_at_ms must be after created_at_ms")
    category = alert.category
    if category not in _CATEGORIES:
        raise InvalidAlert(f"unknown category {category}; use one of {sorted(CATEGORY_NAMES)}")
    severity = alert.severity
    if severity not in _SEVERITIES:
        raise InvalidAlert(f"unknown severity {severity}")
    if tlp not in _TLPS:
        raise InvalidAlert(f"unknown TLP marking {tlp}")
    confidence = alert.confidence
    if confidence > 100:
        raise InvalidAlert(f"confidence is {confidence}; it must be 0..100")
    title = alert.title
    if not title.strip():
        raise InvalidAlert("title is empty")
    check_len("title", title, limits.max_title_chars)
    check_len("description", alert.description, limits.max_description_chars)
    indicators_ = alert.indicators
    if len(indicators_) > limits.max_indicators:
        raise LimitExceeded(
            f"{len(indicators_)} indicators; the limit is {limits.max_indicators} per alert"
        )
    references = alert.references
    if len(references) > limits.max_references:
        raise LimitExceeded(f"{len(references)} references; the limit is {limits.max_references}")
    for ref in references:
        check_len("a reference", ref, limits.max_reference_chars)
    links = alert.links
    if len(links) > limits.max_links:
        raise LimitExceeded(f"{len(links)} links; the limit is {limits.max_links}")
    for link in links:
        _check_link(
            link,
            has_indicators=bool(indicators_),
            created_at_ms=created_at_ms,
            skew_ms=limits.max_clock_skew_ms,
        )
    if len(recipients) > limits.max_recipients:
        raise LimitExceeded(f"{len(recipients)} recipients; the limit is {limits.max_recipients}")
    if alert.HasField("succession"):
        _check_succession(alert)
    keys = indicator_keys(alert, limits) + links_of(links)
    return (origin, seq, prev, created_at_ms, expires_at_ms, category, severity, confidence,
            title, keys)  # fmt: skip


_LINK_KINDS = frozenset(alert_pb2.LinkKind.values()) - {alert_pb2.LINK_KIND_UNSPECIFIED}
_ABOUT_VALUES = frozenset({alert_pb2.LINK_KIND_SIGHTING, alert_pb2.LINK_KIND_DISPUTE})


SIGHTING_WINDOW_MAX_AGE_MS = 10 * 365 * 86_400_000  # a sighting reports the last ten years


def _check_link(
    link: alert_pb2.AlertLink, *, has_indicators: bool, created_at_ms: int, skew_ms: int
) -> None:
    if link.kind not in _LINK_KINDS:
        raise InvalidAlert(f"a link needs a known kind (got {link.kind})")
    if not link.alert_id and link.kind in _ABOUT_VALUES:
        if not has_indicators:
            raise InvalidAlert("a sighting or dispute about values needs indicators")
    elif len(link.alert_id) != ID_BYTES:
        raise InvalidAlert("a link needs a 32-byte alert id")
    if link.first_seen_ms and link.last_seen_ms and link.last_seen_ms < link.first_seen_ms:
        raise InvalidAlert("a sighting's last_seen_ms is before its first_seen_ms")
    # Seen times are shown to people and scored: a window outside (ten years before the
    # alert, its creation] is a lie or a bug, and would break whoever formats it.
    earliest = created_at_ms - SIGHTING_WINDOW_MAX_AGE_MS
    for name, value in (("first_seen_ms", link.first_seen_ms), ("last_seen_ms", link.last_seen_ms)):
        if value and not earliest <= value <= created_at_ms + skew_ms:
            raise InvalidAlert(
                f"a sighting's {name} must lie within the ten years before the alert's "
                "creation (and not after it)"
            )


SEALED_NONCE_BYTES = 24  # XChaCha20-Poly1305 (node/crypto/sealing.py)
KEY_COMMITMENT_BYTES = 32
WRAPPED_KEY_BYTES = 80  # a sealed box of a 32-byte key
ENVELOPE_FIELDS = ("origin", "seq", "prev", "created_at_ms", "recipients", "sealed")


def _check_envelope(alert: alert_pb2.Alert, limits: Limits) -> None:
    clear = [f.name for f, _ in alert.ListFields() if f.name not in ENVELOPE_FIELDS]
    if clear:
        raise InvalidAlert(
            f"an encrypted alert must not carry {', '.join(clear)} in clear (they belong "
            "in the sealed content)"
        )
    recipients = list(alert.recipients)
    if not recipients:
        raise InvalidAlert("an encrypted alert needs at least one recipient")
    if len(recipients) > limits.max_recipients:
        raise LimitExceeded(f"{len(recipients)} recipients; the limit is {limits.max_recipients}")
    if any(len(r) != KEY_BYTES for r in recipients) or len(set(recipients)) != len(recipients):
        raise InvalidAlert("recipients must be distinct 32-byte member keys")
    sealed = alert.sealed
    if (
        len(sealed.nonce) != SEALED_NONCE_BYTES
        or not sealed.ciphertext
        or len(sealed.key_commitment) != KEY_COMMITMENT_BYTES
    ):
        raise InvalidAlert(
            f"sealed content needs a {SEALED_NONCE_BYTES}-byte nonce, a ciphertext and a "
            f"{KEY_COMMITMENT_BYTES}-byte key commitment"
        )
    if len(sealed.wrapped_keys) != len(recipients) or any(
        len(w) != WRAPPED_KEY_BYTES for w in sealed.wrapped_keys
    ):
        raise InvalidAlert(
            f"sealed content needs one {WRAPPED_KEY_BYTES}-byte wrapped key per recipient"
        )


def open_content(
    envelope: alert_pb2.Alert, content: alert_pb2.Alert, *, limits: Limits
) -> tuple[alert_pb2.Alert, tuple[str, ...]]:
    """The full alert a recipient reads (envelope fields + decrypted content) and its
    index keys. Raises InvalidAlert if the content breaks a rule or sets an envelope
    field (it could otherwise contradict the signed envelope)."""
    smuggled = [f.name for f, _ in content.ListFields() if f.name in ENVELOPE_FIELDS]
    if smuggled or content.HasField("succession"):
        raise InvalidAlert(
            f"the decrypted content sets {', '.join(smuggled) or 'succession'}, which only "
            "the envelope may"
        )
    full = alert_pb2.Alert()
    full.CopyFrom(content)
    full.origin, full.seq, full.prev = envelope.origin, envelope.seq, envelope.prev
    full.created_at_ms = envelope.created_at_ms
    full.recipients.extend(envelope.recipients)
    # The envelope passed the clock-skew rule already: no clock here.
    keys = validate(full, now_ms=envelope.created_at_ms, limits=limits, encrypted=True)
    return full, keys


def _check_succession(alert: alert_pb2.Alert) -> None:
    s = alert.succession
    if alert.seq != 1:
        raise InvalidAlert("only an origin's first alert (seq 1) may carry a key succession")
    if len(s.previous_key) != KEY_BYTES or s.previous_key == alert.origin:
        raise InvalidAlert("a key succession needs the previous key, another 32-byte key")
    if len(s.previous_head) != (ID_BYTES if s.previous_seq else 0):
        raise InvalidAlert(
            f"a key succession's previous_head is the {ID_BYTES}-byte id of the previous "
            "key's last alert, and empty when previous_seq is 0"
        )


def record_fields(alert: alert_pb2.Alert, keys: tuple[str, ...]) -> RecordFields:
    """AlertRecord's fields from `origin` on, as a verifier process sends them back."""
    return (
        alert.origin,
        alert.seq,
        alert.prev,
        alert.created_at_ms,
        alert.expires_at_ms,
        alert.category,
        alert.severity,
        alert.confidence,
        alert.title,
        keys,
    )


def make_record(
    body: bytes,
    signature: bytes,
    alert: alert_pb2.Alert,
    keys: tuple[str, ...],
    id: bytes | None = None,  # alert_id(body), when the caller has it already
) -> AlertRecord:
    return AlertRecord(
        id=id or alert_id(body),
        body=body,
        signature=signature,
        origin=alert.origin,
        seq=alert.seq,
        prev=alert.prev,
        created_at_ms=alert.created_at_ms,
        expires_at_ms=alert.expires_at_ms,
        category=alert.category,
        severity=alert.severity,
        confidence=alert.confidence,
        title=alert.title,
        index_keys=keys,
    )
