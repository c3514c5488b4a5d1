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

from node.core.errors import ConfigError, UnknownOrigin


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    key: bytes
    addresses: tuple[str, ...] = ()
    tls_cert: bytes = b""  # PEM; empty when the member has not shared one

    @property
    def tls_fingerprint(self) -> bytes:
        return certificate_fingerprint(self.tls_cert) if self.tls_cert else b""


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
    """An immutable snapshot; a reload builds a new one."""

    members: Mapping[bytes, Member] = field(default_factory=dict)

    @classmethod
    def of(cls, members: list[Member]) -> Roster:
        by_key: dict[bytes, Member] = {}
        names: set[str] = set()
        for m in members:
            if m.key in by_key:
                raise ConfigError(f"roster lists key {m.key.hex()} twice")
            if m.name in names:
                raise ConfigError(f"roster lists member name {m.name!r} twice")
            by_key[m.key] = m
            names.add(m.name)
        return cls(by_key)

    @classmethod
    def from_toml(cls, text: str, source: str = "roster") -> Roster:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
        members = []
        for i, entry in enumerate(doc.get("member", [])):
            where = f"{source}: member {i + 1}"
            name = entry.get("name")
            key_hex = entry.get("key")
            addresses = entry.get("addresses", [])
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{where} needs a name")
            try:
                key = bytes.fromhex(key_hex) if isinstance(key_hex, str) else b""
            except ValueError:
                key = b""
            if len(key) != 32:
                raise ConfigError(f"{where} ({name}): key must be 64 hex characters")
            if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
                raise ConfigError(f"{where} ({name}): addresses must be a list of HOST:PORT")
            tls_cert = entry.get("tls_cert", "")
            if not isinstance(tls_cert, str):
                raise ConfigError(f"{where} ({name}): tls_cert must be a PEM certificate")
            cert = tls_cert.strip().encode() + b"\n" if tls_cert.strip() else b""
            if cert:
                try:
                    certificate_der(cert)
                except ValueError as exc:
                    raise ConfigError(f"{where} ({name}): tls_cert: {exc}") from exc
            members.append(Member(name, key, tuple(addresses), cert))
        return cls.of(members)

    def to_toml(self) -> str:
        out = []
        for m in sorted(self.members.values(), key=lambda m: m.name):
            addrs = ", ".join(f'"{a}"' for a in m.addresses)
            entry = f'[[member]]\nname = "{m.name}"\nkey = "{m.key.hex()}"\naddresses = [{addrs}]\n'
            if m.tls_cert:
                entry += f'# TLS pin {format_pin(m.tls_fingerprint)}\ntls_cert = """\n'
                entry += m.tls_cert.decode().strip() + '\n"""\n'
            out.append(entry)
        return "\n".join(out)

    def __contains__(self, key: object) -> bool:
        return key in self.members

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members.values())

    def __len__(self) -> int:
        return len(self.members)

    def get(self, key: bytes) -> Member | None:
        return self.members.get(key)

    def by_name(self, name: str) -> Member | None:
        return next((m for m in self.members.values() if m.name == name), None)

    def require(self, key: bytes, what: str = "origin") -> Member:
        member = self.members.get(key)
        if member is None:
            raise UnknownOrigin(f"{what} {key.hex()[:16]}… is not a member on this node's roster")
        return member

    def name_of(self, key: bytes) -> str:
        m = self.members.get(key)
        return m.name if m else ""
