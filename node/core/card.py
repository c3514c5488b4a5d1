"""Member cards: how one node's operator introduces it to another's.

A card is text to paste into an e-mail or a chat:

    -----BEGIN ALERTMESH MEMBER CARD-----
    eyJhZGRyZXNzZXMiOlsicGVlci5hY21lLmV4YW1wbGU6NzQwMSJdLCJjcmVhdGVk
    ...
    -----END ALERTMESH MEMBER CARD-----

Between the two lines: base64url(payload) "." base64url(signature), wrapped at 64
columns. Line breaks, spaces and any text around the two lines are ignored, so a card
survives mail clients that re-wrap or quote it.

The payload is a UTF-8 JSON object:

    version        1
    name           the member's roster name (letters, digits, '.', '_', '-'; at most 64)
    key            its Ed25519 signing key, 64 hex characters
    addresses      peer HOST:PORTs other nodes dial (at most 16; may be empty)
    tls_cert       its node's self-signed TLS certificate (PEM)
    tls_pin        "sha256:<hex>" of that certificate (checked against it)
    created_at_ms  when the card was made (Unix ms)

The signature is Ed25519 by `key` over b"alertmesh/v1/member-card\\0" + the payload
bytes exactly as sent (node/crypto/card.py), so no canonical JSON is needed. A card
proves only that its maker holds the key it names; that the key is the member's you
mean is what comparing the pin or key out of band (a phone call) establishes.

Readers ignore fields they do not know, so a later version 1 card may carry more
(for example a list of keys with validity times); a card of another version is
refused. Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from dataclasses import dataclass

from node.core.errors import InvalidCard
from node.core.roster import (
    PEM_BEGIN,
    PEM_END,
    Member,
    Roster,
    certificate_der,
    certificate_fingerprint,
    format_pin,
)

CARD_VERSION = 1
BEGIN = "-----BEGIN ALERTMESH MEMBER CARD-----"
END = "-----END ALERTMESH MEMBER CARD-----"
WRAP = 64
MAX_CARD_CHARS = 32 * 1024
MAX_ADDRESSES = 16
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ADDRESS = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")
UNSPECIFIED_HOSTS = {"0.0.0.0", "[::]", ""}


@dataclass(frozen=True, slots=True)
class MemberCard:
    name: str
    key: bytes
    addresses: tuple[str, ...]
    tls_cert: bytes  # canonical PEM
    created_at_ms: int

    @property
    def tls_pin(self) -> str:
        return format_pin(certificate_fingerprint(self.tls_cert))

    def payload(self) -> bytes:
        return json.dumps(
            {
                "version": CARD_VERSION,
                "name": self.name,
                "key": self.key.hex(),
                "addresses": list(self.addresses),
                "tls_cert": self.tls_cert.decode(),
                "tls_pin": self.tls_pin,
                "created_at_ms": self.created_at_ms,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    def member(self) -> Member:
        return Member(self.name, self.key, self.addresses, self.tls_cert)


def new_card(
    name: str, key: bytes, addresses: tuple[str, ...], tls_cert: bytes, now_ms: int
) -> MemberCard:
    """A card for this node, checked by the same rules a reader applies."""
    card = MemberCard(name, key, tuple(addresses), canonical_pem(tls_cert), now_ms)
    return parse_payload(card.payload())


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidCard(
            f"member name {name!r} is not usable on a card: use 1-64 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_address(address: object) -> str:
    """HOST:PORT that another node can dial (not 0.0.0.0, not port 0)."""
    match = ADDRESS.fullmatch(address) if isinstance(address, str) else None
    if match is None or not 0 < int(match[2]) < 65536:
        raise InvalidCard(f"address {address!r} is not HOST:PORT")
    if match[1] in UNSPECIFIED_HOSTS:
        raise InvalidCard(
            f"address {address} is where a node listens on every interface, not an "
            "address other members can dial"
        )
    assert isinstance(address, str)
    return address


def canonical_pem(pem: bytes) -> bytes:
    """The certificate re-encoded from its DER bytes, so that nothing around or inside
    the PEM markers but the certificate itself reaches the roster file."""
    try:
        der = certificate_der(pem)
    except ValueError as exc:
        raise InvalidCard(f"tls_cert: {exc}") from exc
    b64 = base64.b64encode(der)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return b"\n".join([PEM_BEGIN, *lines, PEM_END]) + b"\n"


def parse_payload(payload: bytes) -> MemberCard:
    """The card a payload describes; InvalidCard saying what is wrong. The signature is
    checked separately (node/crypto/card.py)."""
    try:
        doc = json.loads(payload.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidCard(f"the card's payload is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidCard("the card's payload is not a JSON object")
    version = doc.get("version")
    if version != CARD_VERSION:
        raise InvalidCard(
            f"card version {version!r} is not one this alertmesh reads (it reads "
            f"{CARD_VERSION}); is one side running an older alertmesh?"
        )
    name = check_name(doc.get("name"))
    key_hex = doc.get("key")
    try:
        key = bytes.fromhex(key_hex) if isinstance(key_hex, str) else b""
    except ValueError:
        key = b""
    if len(key) != 32:
        raise InvalidCard(f"card of {name}: key must be 64 hex characters")
    addresses = doc.get("addresses")
    if not isinstance(addresses, list) or len(addresses) > MAX_ADDRESSES:
        raise InvalidCard(f"card of {name}: addresses must be a list of at most 16 HOST:PORT")
    cert = doc.get("tls_cert")
    if not isinstance(cert, str):
        raise InvalidCard(f"card of {name}: tls_cert must be a PEM certificate")
    tls_cert = canonical_pem(cert.encode())
    created = doc.get("created_at_ms")
    if not isinstance(created, int) or isinstance(created, bool) or created < 0:
        raise InvalidCard(f"card of {name}: created_at_ms must be a time in Unix ms")
    card = MemberCard(name, key, tuple(check_address(a) for a in addresses), tls_cert, created)
    if doc.get("tls_pin") != card.tls_pin:
        raise InvalidCard(
            f"card of {name}: tls_pin {doc.get('tls_pin')!r} is not the pin of its tls_cert "
            f"({card.tls_pin})"
        )
    return card


def armor(payload: bytes, signature: bytes) -> str:
    body = _b64(payload) + "." + _b64(signature)
    lines = [body[i : i + WRAP] for i in range(0, len(body), WRAP)]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def unarmor(text: str) -> tuple[bytes, bytes]:
    """(payload, signature) from a pasted card; InvalidCard if it is not one."""
    if len(text) > MAX_CARD_CHARS:
        raise InvalidCard(f"a card is at most {MAX_CARD_CHARS} characters; this is not one")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise InvalidCard(f"no member card found: expected the lines {BEGIN} ... {END}")
    if text.count(BEGIN) != 1:
        raise InvalidCard("more than one member card given; add them one at a time")
    # Mail clients quote ("> ") and re-wrap; only base64url characters and '.' count.
    body = "".join(re.findall(r"[A-Za-z0-9_.=-]+", text[start + len(BEGIN) : end]))
    payload, dot, signature = body.partition(".")
    if not dot or not payload or not signature:
        raise InvalidCard("the card is cut short: its text has no signature part")
    try:
        return _unb64(payload), _unb64(signature)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCard(f"the card's text is damaged (not base64url): {exc}") from exc


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    text = text.rstrip("=")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Admission:
    """What adding a card to a roster does: the new roster and what changed, in words."""

    roster: Roster
    changes: tuple[str, ...]
    replaced: Member | None = None


def admit(roster: Roster, card: MemberCard, own_key: bytes, *, replace: bool) -> Admission:
    """The roster with `card`'s member added, or (with `replace`) the member of that name
    or key updated. InvalidCard if the card is this node's own, or clashes without
    `replace`."""
    if card.key == own_key:
        raise InvalidCard("this is this node's own card; add it on the other member's node")
    own = roster.get(own_key)
    if own is not None and own.name == card.name:
        raise InvalidCard(
            f"the card's name {card.name!r} is this node's own name; two members cannot share "
            "a name"
        )
    by_key, by_name = roster.get(card.key), roster.by_name(card.name)
    if by_key is not None and by_key.key != card.key:
        entry = by_key.key_entry(card.key)
        state = "compromised" if entry is not None and entry.compromised else "retired"
        raise InvalidCard(
            f"the card is signed with a {state} key of member {by_key.name!r}; a card must "
            "come from the member's current key (ask them for a new one)"
        )
    if by_key is not None and by_name is not None and by_key is not by_name:
        raise InvalidCard(
            f"the card's key belongs to member {by_key.name!r} and its name to another "
            "member; sort the roster out by hand"
        )
    existing = by_key or by_name
    if existing is None:
        return Admission(Roster.of([*roster, card.member()]), (f"added member {card.name}",), None)
    if not replace:
        what = "key" if by_key is not None else "name"
        raise InvalidCard(
            f"the roster already has member {existing.name!r} with this {what}; "
            "to take in the card's addresses and certificate, add it with --replace"
        )
    if existing.key != card.key:
        # A card cannot carry key history: replacing the member by it would drop its
        # retired and compromised keys (and their cut-offs) and trust a new key on the
        # word of whoever holds it.
        raise InvalidCard(
            f"the card's key is not member {existing.name!r}'s current key; a member's key "
            "changes by rotation (paste the roster block `alertmesh rotate-key` printed "
            "on their side), or remove the member from roster.toml first if it re-joined"
        )
    # Keep whatever else the roster holds on this member; the card brings these.
    updated = dataclasses.replace(
        existing, name=card.name, addresses=card.addresses, tls_cert=card.tls_cert
    )
    changes = _differences(existing, updated)
    others = [m for m in roster if m.key != existing.key]
    return Admission(Roster.of([*others, updated]), changes or ("no change",), existing)


def _differences(old: Member, new: Member) -> tuple[str, ...]:
    out = []
    if old.name != new.name:
        out.append(f"name {old.name} -> {new.name}")
    if old.key != new.key:
        out.append(
            f"KEY of {new.name} {old.key.hex()} -> {new.key.hex()}: alerts signed by the old "
            "key are no longer accepted from peers"
        )
    if old.addresses != new.addresses:
        out.append(f"addresses {list(old.addresses)} -> {list(new.addresses)}")
    if old.tls_cert != new.tls_cert:
        before = format_pin(old.tls_fingerprint) if old.tls_cert else "none"
        out.append(f"TLS pin {before} -> {format_pin(new.tls_fingerprint)}")
    return tuple(out)


def describe(card: MemberCard) -> list[str]:
    """The lines an operator reads aloud to compare a card out of band."""
    return [
        f"member      {card.name}",
        f"key         {card.key.hex()}",
        f"TLS pin     {card.tls_pin}",
        f"addresses   {', '.join(card.addresses) or '(none: this member only dials out)'}",
    ]
