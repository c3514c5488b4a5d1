"""Membership: who may author alerts and open peer sessions.

A roster is a TOML document:

    [[member]]
    name = "acme-exchange"
    key = "<64 hex chars: Ed25519 public key>"
    addresses = ["peer.acme.example:7401"]
    tls_cert = '''
    -----BEGIN CERTIFICATE-----
    ...the member node's self-signed TLS certificate (its pin)...
    -----END CERTIFICATE-----
    '''

A member that has rotated its signing key lists each of its keys instead of `key`:

    [[member.keys]]
    key = "<hex>"
    valid_from = "2026-01-01T00:00:00Z"      # optional: valid since always
    valid_until = "2026-12-01T09:30:00Z"     # optional: retired at this time
    last_seq = 41                            # optional, with valid_until: its last alert
    # compromised = true                     # then valid_until is the compromise time
    [[member.keys]]
    key = "<hex>"
    valid_from = "2026-12-01T09:30:00Z"

Every key is its own origin (its own hash chain); the roster says which member each
key belongs to and when it may sign. An alert is judged by the time it claims
(created_at) and, once the key has a last_seq, by its seq too: whoever steals a key
can backdate created_at, but cannot put an alert above last_seq (and one at or below
it takes a slot the owner filled: an equivocation, proven and shown to operators).
`alertmesh rotate-key` writes valid_until and last_seq for the key it retires.
The member's current key (the last listed, by valid_from) is the one its node signs
and opens peer sessions with.

Names and keys are unique. A node's own entry must be on its roster. Peer sessions
over TLS trust exactly the `tls_cert` of the member they expect; a member without one
can only be reached over plaintext, which an operator turns on for a lab.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from node.core.errors import ConfigError, KeyNotValid, UnknownOrigin


@dataclass(frozen=True, slots=True)
class MemberKey:
    """One signing key of a member and when it may sign (times in Unix ms)."""

    key: bytes
    valid_from_ms: int = 0  # 0: since always
    valid_until_ms: int = 0  # 0: no end; else retired (or compromised) from this time on
    compromised: bool = False
    last_seq: int | None = None  # with valid_until: alerts above this seq are refused

    @property
    def retired(self) -> bool:
        return bool(self.valid_until_ms)

    @property
    def unbounded(self) -> bool:
        """Valid forever: `refusal` refuses nothing of this key (and it is not
        compromised: that needs valid_until)."""
        return not (self.valid_from_ms or self.valid_until_ms)

    def refusal(self, seq: int, created_at_ms: int) -> str:
        """Why an alert of this key with this seq and creation time is refused; "" if not."""
        if self.unbounded:
            return ""
        created = _Created(created_at_ms)
        if self.last_seq is not None and seq > self.last_seq:
            state = "is compromised" if self.compromised else "was retired"
            return (
                f"which {state} after its alert #{self.last_seq} (at "
                f"{format_time(self.valid_until_ms)}); this alert is #{seq}"
            )
        if self.compromised:
            if created_at_ms >= self.valid_until_ms:
                return f"which is compromised since {format_time(self.valid_until_ms)}; {created}"
        elif self.valid_until_ms and created_at_ms >= self.valid_until_ms:
            return f"which was retired at {format_time(self.valid_until_ms)}; {created}"
        if created_at_ms < self.valid_from_ms:
            return f"which is valid only from {format_time(self.valid_from_ms)}; {created}"
        return ""

    def __post_init__(self) -> None:
        if (self.compromised or self.last_seq is not None) and not self.valid_until_ms:
            raise ConfigError("a compromised key, or one with last_seq, needs valid_until")

    def valid_at(self, now_ms: int) -> bool:
        """May this key sign (and open peer sessions) at `now_ms`?"""
        ends = self.valid_until_ms or (1 << 62)
        return not self.compromised and self.valid_from_ms <= now_ms < ends


@dataclass(frozen=True, slots=True)
class _Created:
    """ "the alert was created at ...", formatted only when a refusal is."""

    ms: int

    def __str__(self) -> str:
        return f"the alert was created at {format_time(self.ms)}"


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    key: bytes  # the current key: the one the member's node signs and opens sessions with
    addresses: tuple[str, ...] = ()
    tls_cert: bytes = b""  # PEM; empty when the member has not shared one
    keys: tuple[MemberKey, ...] = ()  # every key, oldest first; () means (MemberKey(key),)
    # The rooted gossip tree's root is the live member with the highest priority, then
    # the smallest key (docs/gossip.md, T1): the federation names a few well-connected
    # members as hubs, as 802.1D's operators set bridge priorities. 0: not a hub.
    tree_priority: int = 0

    def __post_init__(self) -> None:
        if not self.keys:
            object.__setattr__(self, "keys", (MemberKey(self.key),))
        elif self.key != self.keys[-1].key:
            raise ConfigError(f"member {self.name!r}: its current key must be its last key")

    @property
    def tls_fingerprint(self) -> bytes:
        return certificate_fingerprint(self.tls_cert) if self.tls_cert else b""

    def key_entry(self, key: bytes) -> MemberKey | None:
        return next((k for k in self.keys if k.key == key), None)


def format_time(ms: int) -> str:
    """RFC 3339 in UTC, as the roster writes times: 2026-12-01T09:30:00Z (ms if any)."""
    when = datetime.fromtimestamp(ms / 1000, UTC)
    text = when.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
    return text.replace("+00:00", "Z")


def parse_time(value: object, what: str) -> int:
    """A roster time (a TOML datetime or an RFC 3339 string with a zone) in Unix ms."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(
                f'{what} {value!r} is not a time; write e.g. "2026-12-01T09:30:00Z"'
            ) from None
    if not isinstance(value, datetime):
        raise ConfigError(f'{what} must be a time such as "2026-12-01T09:30:00Z"')
    if value.tzinfo is None:
        raise ConfigError(f"{what} {value.isoformat()} needs a time zone (add Z for UTC)")
    return (value - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
PEM_END = b"-----END CERTIFICATE-----"


def certificate_fingerprint(pem: bytes) -> bytes:
    """SHA-256 of a PEM certificate's DER bytes: the pin shown to operators."""
    return hashlib.sha256(certificate_der(pem)).digest()


def certificate_der(pem: bytes) -> bytes:
    """The DER bytes of the single certificate in `pem`; ValueError if there is none."""
    start, end = pem.find(PEM_BEGIN), pem.find(PEM_END)
    if start < 0 or end < start or pem.count(PEM_BEGIN) != 1:
        raise ValueError("expected exactly one PEM certificate")
    try:
        return base64.b64decode(b"".join(pem[start + len(PEM_BEGIN) : end].split()), validate=True)
    except binascii.Error as exc:
        raise ValueError("the PEM certificate is not valid base64") from exc


def format_pin(fingerprint: bytes) -> str:
    return "sha256:" + fingerprint.hex()


@dataclass(frozen=True)
class Roster:
    """An immutable snapshot; a reload builds a new one. `members` maps every key of
    every member (current, retired or compromised) to its member."""

    members: Mapping[bytes, Member] = field(default_factory=dict)
    _entries: Mapping[bytes, MemberKey] = field(init=False, repr=False, compare=False)
    # Fields the roster file has and this version does not know, each as "where: name"
    # (a misspelling, or a field of a newer version): accepted, and the loader warns;
    # to_toml() does not write them back. Inside [[member.keys]] they are refused.
    unknown_fields: tuple[str, ...] = field(default=(), compare=False)
    # The member keys whose alerts require_author never refuses (no validity bounds):
    # a node ingesting a batch checks these with a set lookup, not three calls an alert.
    unbounded_keys: frozenset[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        entries = {k.key: k for m in self.members.values() for k in m.keys}
        object.__setattr__(self, "_entries", entries)  # key -> its MemberKey
        unbounded = frozenset(
            key for key in self.members if (entry := entries.get(key)) is None or entry.unbounded
        )
        object.__setattr__(self, "unbounded_keys", unbounded)

    @classmethod
    def of(cls, members: list[Member], unknown_fields: tuple[str, ...] = ()) -> Roster:
        by_key: dict[bytes, Member] = {}
        names: set[str] = set()
        for m in members:
            for k in m.keys:
                if k.key in by_key:
                    raise ConfigError(f"roster lists key {k.key.hex()} twice")
                by_key[k.key] = m
            if m.name in names:
                raise ConfigError(f"roster lists member name {m.name!r} twice")
            names.add(m.name)
        return cls(by_key, unknown_fields)

    @classmethod
    def from_toml(cls, text: str, source: str = "roster") -> Roster:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
        members = []
        unknown = [f"top level: {k}" for k in doc if k != "member"]
        for i, entry in enumerate(doc.get("member", [])):
            where = f"{source}: member {i + 1}"
            name = entry.get("name")
            addresses = entry.get("addresses", [])
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{where} needs a name")
            unknown += [f"member {i + 1} ({name}): {k}" for k in entry if k not in MEMBER_FIELDS]
            where = f"{where} ({name})"
            keys = _member_keys(entry, where)
            if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
                raise ConfigError(f"{where}: addresses must be a list of HOST:PORT")
            tls_cert = entry.get("tls_cert", "")
            if not isinstance(tls_cert, str):
                raise ConfigError(f"{where}: tls_cert must be a PEM certificate")
            cert = tls_cert.strip().encode() + b"\n" if tls_cert.strip() else b""
            if cert:
                try:
                    certificate_der(cert)
                except ValueError as exc:
                    raise ConfigError(f"{where}: tls_cert: {exc}") from exc
            priority = entry.get("tree_priority", 0)
            if not isinstance(priority, int) or isinstance(priority, bool) or priority < 0:
                raise ConfigError(f"{where}: tree_priority must be a whole number, 0 or more")
            members.append(Member(name, keys[-1].key, tuple(addresses), cert, keys, priority))
        return cls.of(members, tuple(unknown))

    def to_toml(self) -> str:
        return "\n".join(member_toml(m) for m in sorted(self, key=lambda m: m.name))

    def __contains__(self, key: object) -> bool:
        """Is `key` any member's key (whatever its validity)?"""
        return key in self.members

    def tree_priority(self, key: bytes) -> int:
        """The tree priority of the member whose key this is; 0 for no member."""
        member = self.members.get(key)
        return member.tree_priority if member is not None else 0

    def __iter__(self) -> Iterator[Member]:
        return iter({m.name: m for m in self.members.values()}.values())

    def __len__(self) -> int:
        return len({m.name for m in self.members.values()})

    def get(self, key: bytes) -> Member | None:
        return self.members.get(key)

    def by_name(self, name: str) -> Member | None:
        return next((m for m in self.members.values() if m.name == name), None)

    def require(self, key: bytes, what: str = "origin") -> Member:
        member = self.members.get(key)
        if member is None:
            raise UnknownOrigin(f"{what} {key.hex()[:16]}… is not a member on this node's roster")
        return member

    def require_author(self, origin: bytes, seq: int, created_at_ms: int) -> Member:
        """The member whose key `origin` signed an alert with this seq and creation
        time; UnknownOrigin if none, KeyNotValid (with the reason) if the key could not
        sign it: retired or compromised before, or not yet valid at, `created_at_ms`."""
        member = self.require(origin)
        reason = self.refusal(origin, seq, created_at_ms)
        if reason:
            raise KeyNotValid(reason)
        return member

    def refusal(self, origin: bytes, seq: int, created_at_ms: int) -> str:
        """Why a member key's alert is outside that key's validity; "" if it is within
        it, or if `origin` is no member's key (that is require's business)."""
        entry = self._entries.get(origin)
        if entry is None:
            return ""
        why = entry.refusal(seq, created_at_ms)
        return f"signed by {self.name_of(origin)}'s key {origin.hex()[:16]}… {why}" if why else ""

    def require_session_key(self, key: bytes, now_ms: int, what: str = "peer key") -> Member:
        """The member that may open a peer session with `key` now: UnknownOrigin if it
        is nobody's key, KeyNotValid if it is retired, compromised or not yet valid."""
        member = self.require(key, what)
        entry = member.key_entry(key)
        if entry is None or not entry.valid_at(now_ms):
            state = "compromised" if entry and entry.compromised else "not valid now"
            raise KeyNotValid(
                f"{what} {key.hex()[:16]}… is {member.name}'s key, {state}"
                + (
                    f" (valid until {format_time(entry.valid_until_ms)})"
                    if entry and entry.valid_until_ms and not entry.compromised
                    else ""
                )
            )
        return member

    def name_of(self, key: bytes) -> str:
        m = self.members.get(key)
        return m.name if m else ""


# A [[member]] entry's fields; others are kept out of the roster, and reported.
MEMBER_FIELDS = frozenset({"name", "key", "keys", "addresses", "tls_cert", "tree_priority"})


def _member_keys(entry: Mapping[str, object], where: str) -> tuple[MemberKey, ...]:
    """A member's keys: `key = "hex"` (valid forever) or [[member.keys]] tables."""
    listed = entry.get("keys")
    if listed is None:
        return (MemberKey(_key(entry.get("key"), where)),)
    if "key" in entry:
        raise ConfigError(f"{where}: give either key or [[member.keys]], not both")
    if not isinstance(listed, list) or not listed or not all(isinstance(k, dict) for k in listed):
        raise ConfigError(f"{where}: keys must be one or more [[member.keys]] tables")
    keys = []
    for j, table in enumerate(listed):
        at = f"{where} key {j + 1}"
        unknown = set(table) - {
            "key", "valid_from", "valid_until", "compromised", "last_seq"
        }  # fmt: skip
        if unknown:
            raise ConfigError(f"{at}: unknown field(s) {', '.join(sorted(unknown))}")
        key = _key(table.get("key"), at)
        start = parse_time(table["valid_from"], f"{at}: valid_from") if "valid_from" in table else 0
        end = (
            parse_time(table["valid_until"], f"{at}: valid_until") if "valid_until" in table else 0
        )
        compromised = table.get("compromised", False)
        last = table.get("last_seq")
        if not isinstance(compromised, bool):
            raise ConfigError(f"{at}: compromised must be true or false")
        if compromised and not end:
            raise ConfigError(
                f"{at}: a compromised key needs valid_until, the time since which it is "
                "compromised (when unsure, choose it early)"
            )
        if last is not None and (not end or type(last) is not int or last < 0):
            raise ConfigError(
                f"{at}: last_seq is a seq (0 or more) and goes with valid_until (the key's end)"
            )
        if end and end <= start:
            raise ConfigError(f"{at}: valid_until must be after valid_from")
        keys.append(MemberKey(key, start, end, compromised, last))
    keys.sort(key=lambda k: k.valid_from_ms)
    return tuple(keys)


def _key(value: object, where: str) -> bytes:
    try:
        key = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(f"{where}: key must be 64 hex characters")
    return key


def member_toml(m: Member) -> str:
    """A member's roster entry, in the short form while it has a single unbounded key."""
    addrs = ", ".join(f'"{a}"' for a in m.addresses)
    entry = f'[[member]]\nname = "{m.name}"\n'
    if m.keys == (MemberKey(m.key),):
        entry += f'key = "{m.key.hex()}"\n'
    entry += f"addresses = [{addrs}]\n"
    if m.tree_priority:
        entry += f"tree_priority = {m.tree_priority}\n"
    if m.tls_cert:
        entry += f'# TLS pin {format_pin(m.tls_fingerprint)}\ntls_cert = """\n'
        entry += m.tls_cert.decode().strip() + '\n"""\n'
    for k in m.keys if m.keys != (MemberKey(m.key),) else ():
        entry += f'[[member.keys]]\nkey = "{k.key.hex()}"\n'
        if k.valid_from_ms:
            entry += f'valid_from = "{format_time(k.valid_from_ms)}"\n'
        if k.valid_until_ms:
            entry += f'valid_until = "{format_time(k.valid_until_ms)}"\n'
        if k.compromised:
            entry += "compromised = true\n"
        if k.last_seq is not None:
            entry += f"last_seq = {k.last_seq}\n"
    return entry
