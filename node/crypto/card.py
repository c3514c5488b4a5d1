"""Signing and opening member cards (the format is in node/core/card.py).

    signature = Ed25519(b"alertmesh/v1/member-card\\0" + payload)

by the key the card names, so a card signature cannot be taken for an alert or a
session signature made by the same key, nor the other way round.
"""

from __future__ import annotations

from node.core.card import MemberCard, armor, new_card, parse_payload, unarmor
from node.core.errors import ConfigError, InvalidCard, InvalidSignature
from node.crypto.identity import Identity, verify_detached
from node.crypto.tls import parse_certificate

CARD_DOMAIN = b"alertmesh/v1/member-card\0"


def make_card(
    identity: Identity, name: str, addresses: tuple[str, ...], tls_cert: bytes, now_ms: int
) -> tuple[MemberCard, str]:
    """This node's card and its text, signed by its key."""
    card = new_card(name, identity.public_key, addresses, tls_cert, now_ms)
    payload = card.payload()
    return card, armor(payload, identity.sign(CARD_DOMAIN + payload))


def open_card(text: str) -> MemberCard:
    """The card in `text`, once its signature verifies with the key it names and its
    certificate parses; InvalidCard saying why not."""
    payload, signature = unarmor(text)
    card = parse_payload(payload)
    try:
        verify_detached(card.key, CARD_DOMAIN + payload, signature)
    except InvalidSignature as exc:
        raise InvalidCard(
            f"the card of {card.name!r} is not signed by the key it names: it was altered "
            "after it was made, or it is not that member's card"
        ) from exc
    try:
        parse_certificate(card.tls_cert, f"card of {card.name}: tls_cert")
    except ConfigError as exc:
        raise InvalidCard(str(exc)) from exc
    return card
