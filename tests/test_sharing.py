"""Encrypted alerts, without processes: sealing, the envelope rules, reading them."""

from __future__ import annotations

import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node.app.sharing import Sharing, recipient_keys
from node.core import alerts
from node.core.errors import InvalidAlert
from node.core.limits import DEFAULT_LIMITS
from node.core.roster import Member, MemberKey, Roster
from node.core.tlp import exportable, handling
from node.crypto import Identity
from node.crypto.sealing import Undecryptable, open_sealed, seal
from tests.factory import DOMAIN, Author, now_ms

ALICE, BOB, CAROL = Identity.generate(), Identity.generate(), Identity.generate()
ROSTER = Roster.of(
    [
        Member("alice", ALICE.public_key),
        Member("bob", BOB.public_key),
        Member("carol", CAROL.public_key),
    ]
)


def red_alert(author: Author, to: list[Identity]) -> tuple[alert_pb2.Alert, alert_pb2.Alert]:
    """(the full alert, its signed envelope) from `author` to `to`."""
    full = author.alert(
        title="Exchange X hot wallet drained",
        tlp=alert_pb2.TLP_RED,
        indicators=[(DOMAIN, "attacker-cashout.example")],
    )
    recipients = [i.public_key for i in to]
    full.recipients.extend(recipients)
    envelope = Sharing(author.identity, [], DEFAULT_LIMITS).envelope(full, recipients)
    return full, envelope


def test_only_recipients_read_the_content_and_index_it() -> None:
    author = Author(ALICE)
    full, envelope = red_alert(author, [BOB, ALICE])
    body = envelope.SerializeToString()
    assert b"attacker-cashout" not in body and b"drained" not in body
    assert alerts.validate(envelope, now_ms=now_ms(), limits=DEFAULT_LIMITS) == ()

    read = Sharing(BOB, [], DEFAULT_LIMITS).read(envelope)
    assert read is not None
    opened, keys = read
    assert opened.title == full.title and opened.tlp == alert_pb2.TLP_RED
    assert (opened.origin, opened.seq) == (envelope.origin, envelope.seq)
    assert any("attacker-cashout.example" in k for k in keys)
    assert Sharing(CAROL, [], DEFAULT_LIMITS).read(envelope) is None
    # A retired key that was a recipient still reads it.
    assert Sharing(Identity.generate(), [BOB], DEFAULT_LIMITS).read(envelope) is not None


@pytest.mark.parametrize("part", ["ciphertext", "wrapped key", "seq", "recipients", "commitment"])
def test_altered_content_or_envelope_does_not_decrypt(part: str) -> None:
    _, envelope = red_alert(Author(ALICE), [BOB, ALICE])
    if part == "ciphertext":
        c = bytearray(envelope.sealed.ciphertext)
        c[5] ^= 1
        envelope.sealed.ciphertext = bytes(c)
    elif part == "wrapped key":
        w = bytearray(envelope.sealed.wrapped_keys[0])
        w[40] ^= 1
        envelope.sealed.wrapped_keys[0] = bytes(w)
    elif part == "commitment":  # recipients handed different keys would not agree with it
        envelope.sealed.key_commitment = bytes(32)
    elif part == "seq":  # the ciphertext copied into another slot of the chain
        envelope.seq += 1
    else:  # a recipient list rewritten around the same ciphertext
        envelope.recipients[1], envelope.recipients[0] = envelope.recipients[0], BOB.public_key
        envelope.sealed.wrapped_keys.reverse()
    with pytest.raises(Undecryptable):
        open_sealed(envelope, [BOB])


def test_the_envelope_shows_nothing_else_in_clear() -> None:
    _, envelope = red_alert(Author(ALICE), [BOB, ALICE])
    leaky = alert_pb2.Alert()
    leaky.CopyFrom(envelope)
    leaky.title = "in clear"
    with pytest.raises(InvalidAlert, match="must not carry title in clear"):
        alerts.validate(leaky, now_ms=now_ms(), limits=DEFAULT_LIMITS)
    short = alert_pb2.Alert()
    short.CopyFrom(envelope)
    del short.sealed.wrapped_keys[-1]
    with pytest.raises(InvalidAlert, match="one 80-byte wrapped key per recipient"):
        alerts.validate(short, now_ms=now_ms(), limits=DEFAULT_LIMITS)


def test_red_never_travels_in_clear_and_recipients_need_sealing() -> None:
    author = Author(ALICE)
    with pytest.raises(InvalidAlert, match="TLP:RED alert must be encrypted"):
        alerts.validate(author.alert(tlp=alert_pb2.TLP_RED), now_ms=now_ms(), limits=DEFAULT_LIMITS)
    clear = author.alert()
    clear.recipients.append(BOB.public_key)
    with pytest.raises(InvalidAlert, match="recipients are only for encrypted alerts"):
        alerts.validate(clear, now_ms=now_ms(), limits=DEFAULT_LIMITS)


def test_decrypted_content_cannot_override_the_envelope() -> None:
    author = Author(ALICE)
    envelope = author.alert()
    for name in ("category", "severity", "confidence", "title"):
        envelope.ClearField(name)  # type: ignore[arg-type]
    content = alert_pb2.Alert(title="x", category=alert_pb2.CATEGORY_SCAM, seq=99)
    recipients = [BOB.public_key]
    envelope.recipients.extend(recipients)
    envelope.sealed.CopyFrom(
        seal(content, origin=author.key, seq=envelope.seq, recipients=recipients)
    )
    with pytest.raises(Undecryptable, match="sets seq, which only the envelope may"):
        Sharing(BOB, [], DEFAULT_LIMITS).read(envelope)


def test_recipients_are_roster_names_and_the_author_reads_its_own() -> None:
    assert recipient_keys(["bob", "carol"], ROSTER, ALICE.public_key, now_ms()) == [
        BOB.public_key,
        CAROL.public_key,
        ALICE.public_key,
    ]
    with pytest.raises(InvalidAlert, match="'mallory' is not a member"):
        recipient_keys(["mallory"], ROSTER, ALICE.public_key, now_ms())
    with pytest.raises(InvalidAlert, match="besides this node"):
        recipient_keys(["alice"], ROSTER, ALICE.public_key, now_ms())


def test_a_member_whose_current_key_is_compromised_gets_no_encrypted_alerts() -> None:
    stolen = MemberKey(BOB.public_key, valid_until_ms=now_ms() - 1000, compromised=True)
    roster = Roster.of(
        [Member("alice", ALICE.public_key), Member("bob", BOB.public_key, keys=(stolen,))]
    )
    with pytest.raises(InvalidAlert, match="'bob' has no valid key"):
        recipient_keys(["bob"], roster, ALICE.public_key, now_ms())


def test_tlp_table() -> None:
    assert exportable(alert_pb2.TLP_CLEAR) and exportable(alert_pb2.TLP_GREEN)
    assert not exportable(alert_pb2.TLP_AMBER)
    assert exportable(alert_pb2.TLP_AMBER_STRICT, include_amber=True)
    assert not exportable(alert_pb2.TLP_RED, include_amber=True)
    assert not exportable(alert_pb2.TLP_GREEN, encrypted=True)
    assert not exportable(alert_pb2.TLP_UNSPECIFIED)
    assert "this organisation only" in handling(alert_pb2.TLP_AMBER_STRICT)


def test_sealing_replays_from_a_seed_and_still_opens() -> None:
    """The simulator's runs replay a seed: its sealing draws from a seeded generator."""
    import random

    content = alert_pb2.Alert(title="seeded", category=alert_pb2.CATEGORY_SCAM)

    def sealed(seed: int) -> alert_pb2.SealedContent:
        return seal(
            content,
            origin=ALICE.public_key,
            seq=1,
            recipients=[BOB.public_key],
            random_bytes=random.Random(seed).randbytes,
        )

    assert sealed(7) == sealed(7) != sealed(8)
    envelope = alert_pb2.Alert(
        origin=ALICE.public_key, seq=1, created_at_ms=now_ms(), recipients=[BOB.public_key]
    )
    envelope.sealed.CopyFrom(sealed(7))
    opened = open_sealed(envelope, [BOB])
    assert opened is not None and opened.title == "seeded"
