"""Member cards: what one operator sends another so that their nodes can meet."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from node.app.config import Config, init_home
from node.app.onboarding import add_card, add_connect
from node.core.card import BEGIN, END, MemberCard, admit, armor, unarmor
from node.core.errors import InvalidCard
from node.core.roster import Member, MemberKey, Roster
from node.crypto import Identity
from node.crypto.card import CARD_DOMAIN, make_card, open_card
from node.crypto.identity import ALERT_DOMAIN
from node.crypto.tls import generate_tls_identity

NOW_MS = 1_790_000_000_000
ACME = Identity.generate()
ACME_CERT = generate_tls_identity("acme").cert_pem


def acme_card(*addresses: str) -> tuple[MemberCard, str]:
    return make_card(ACME, "acme", addresses or ("peer.acme.example:7401",), ACME_CERT, NOW_MS)


def resigned(text: str, edit: dict[str, object], by: Identity = ACME) -> str:
    """The card with fields of its payload changed, signed again by `by`."""
    payload, _ = unarmor(text)
    doc = {**json.loads(payload), **edit}
    new = json.dumps(doc).encode()
    return armor(new, by.sign(CARD_DOMAIN + new))


def test_a_card_reads_back_as_made_even_rewrapped_and_quoted_in_a_mail() -> None:
    card, text = acme_card("peer.acme.example:7401", "[2001:db8::1]:7401")
    assert text.startswith(BEGIN) and text.rstrip().endswith(END)
    assert open_card(text) == card
    assert card.tls_pin.startswith("sha256:") and card.member().tls_fingerprint
    body = text.splitlines()[1:-1]
    mail = "Hi, here is our card:\n\n" + BEGIN + "\n"
    mail += "\n".join("> " + line[:30] + "\n>  " + line[30:] for line in body)
    mail += "\n" + END + "\n-- \nAcme security team\n"
    assert open_card(mail) == card


def test_a_changed_card_is_refused_saying_it_was_altered() -> None:
    _, text = acme_card()
    payload, signature = unarmor(text)
    doc = json.loads(payload)
    doc["addresses"] = ["evil.example:7401"]
    tampered = armor(json.dumps(doc).encode(), signature)
    with pytest.raises(InvalidCard, match="not signed by the key it names: it was altered"):
        open_card(tampered)


def test_a_card_naming_another_key_than_the_one_that_signed_it_is_refused() -> None:
    other = Identity.generate()
    _, text = acme_card()
    forged = resigned(text, {"key": other.public_key.hex()}, by=ACME)
    with pytest.raises(InvalidCard, match="not signed by the key it names"):
        open_card(forged)


def test_a_signature_without_the_card_domain_or_cut_short_is_refused() -> None:
    _, text = acme_card()
    payload, signature = unarmor(text)
    for wrong in (ACME.sign(payload), ACME.sign(ALERT_DOMAIN + payload), signature[:32]):
        with pytest.raises(InvalidCard, match="not signed by the key it names"):
            open_card(armor(payload, wrong))
    with pytest.raises(InvalidCard, match="no signature part"):
        open_card(text.replace(".", ""))
    with pytest.raises(InvalidCard, match="no member card found"):
        open_card(text.replace(END, ""))


def test_a_card_says_what_is_wrong_with_its_fields() -> None:
    _, text = acme_card()
    cases: list[tuple[dict[str, object], str]] = [
        ({"version": 2}, "card version 2 is not one this alertmesh reads"),
        ({"name": 'acme"\n[[member]]'}, "is not usable on a card"),
        ({"key": "abcd"}, "key must be 64 hex characters"),
        ({"addresses": ["0.0.0.0:7401"]}, "not an address other members can dial"),
        ({"addresses": ["peer.acme.example"]}, "is not HOST:PORT"),
        ({"addresses": ["peer.acme.example:0"]}, "is not HOST:PORT"),
        ({"tls_pin": "sha256:" + "00" * 32}, "is not the pin of its tls_cert"),
        ({"tls_cert": "no certificate"}, "expected exactly one PEM certificate"),
        ({"created_at_ms": "yesterday"}, "created_at_ms must be a time"),
    ]
    for edit, reason in cases:
        with pytest.raises(InvalidCard, match=reason):
            open_card(resigned(text, edit))


def test_a_later_card_with_more_fields_is_read() -> None:
    card, text = acme_card()
    later = resigned(text, {"keys": [{"key": ACME.public_key.hex(), "from_ms": 0}]})
    assert open_card(later) == card


def test_text_around_the_certificate_never_reaches_the_roster() -> None:
    card, text = acme_card()
    smuggled = ACME_CERT.decode() + '"""\n[[member]]\nname = "mallory"\nkey = "' + "11" * 32 + '"\n'
    got = open_card(resigned(text, {"tls_cert": smuggled}))
    assert got.tls_cert == card.tls_cert
    roster = admit(Roster.of([]), got, b"\x00" * 32, replace=False).roster
    assert [m.name for m in Roster.from_toml(roster.to_toml())] == ["acme"]


def test_admitting_a_card_adds_refuses_clashes_and_replaces_on_request() -> None:
    me = Identity.generate()
    own = Member("beta", me.public_key, ("127.0.0.1:7501",))
    roster = Roster.of([own])
    card, _ = acme_card()
    added = admit(roster, card, me.public_key, replace=False)
    assert added.roster.by_name("acme") == card.member()
    assert added.changes == ("added member acme",)

    with pytest.raises(InvalidCard, match="already has member 'acme' with this key"):
        admit(added.roster, card, me.public_key, replace=False)
    impostor, _ = make_card(Identity.generate(), "acme", (), ACME_CERT, NOW_MS)
    with pytest.raises(InvalidCard, match="already has member 'acme' with this name"):
        admit(added.roster, impostor, me.public_key, replace=False)

    moved, _ = make_card(
        ACME, "acme", ("new.acme.example:7401",), generate_tls_identity("acme").cert_pem, NOW_MS
    )
    replaced = admit(added.roster, moved, me.public_key, replace=True)
    assert replaced.roster.by_name("acme") == moved.member()
    assert len(replaced.roster) == 2
    assert any(c.startswith("addresses") for c in replaced.changes)
    assert any(c.startswith("TLS pin sha256:") for c in replaced.changes)

    mine, _ = make_card(me, "beta", (), ACME_CERT, NOW_MS)
    with pytest.raises(InvalidCard, match="this node's own card"):
        admit(roster, mine, me.public_key, replace=True)
    namesake, _ = make_card(Identity.generate(), "beta", (), ACME_CERT, NOW_MS)
    with pytest.raises(InvalidCard, match="this node's own name"):
        admit(roster, namesake, me.public_key, replace=True)


def test_roster_add_writes_the_file_and_connect_edits_only_peers_connect(tmp_path: Path) -> None:
    config = init_home(tmp_path / "beta", name="beta")
    card, _ = acme_card()
    add_card(config, card, replace=False, dry_run=True)
    assert config.roster().by_name("acme") is None
    add_card(config, card, replace=False, dry_run=False)
    assert config.roster().by_name("acme") == card.member()
    assert (config.roster_path.read_text()).startswith("# Members of the network")

    before = (config.home / "config.toml").read_text()
    assert add_connect(config, "acme")
    after = Config.load(config.home)
    assert after.connect == ("acme",)
    assert not add_connect(after, "acme")
    now = (config.home / "config.toml").read_text().splitlines()
    changed = [(a, b) for a, b in zip(before.splitlines(), now, strict=True) if a != b]
    assert changed == [("connect = []", 'connect = ["acme"]')]
    assert not list(config.home.glob(".*.tmp"))


def test_the_card_body_is_base64url_of_the_payload_and_signature() -> None:
    card, text = acme_card()
    body = "".join(text.splitlines()[1:-1])
    payload_b64, _, signature_b64 = body.partition(".")
    payload = base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4))
    assert json.loads(payload)["name"] == "acme"
    assert payload == card.payload()
    assert len(base64.urlsafe_b64decode(signature_b64 + "==")) == 64


def test_a_card_cannot_revive_an_old_key_or_swap_a_members_key() -> None:
    """A thief holding a member's compromised key makes a valid card with it: refused,
    even with --replace; and a card with a new key cannot replace the member's history."""
    me = Identity.generate()
    old, new = Identity.generate(), Identity.generate()
    history = (
        MemberKey(old.public_key, valid_until_ms=NOW_MS - 1000, compromised=True),
        MemberKey(new.public_key, valid_from_ms=NOW_MS - 1000),
    )
    roster = Roster.of(
        [Member("beta", me.public_key), Member("acme", new.public_key, keys=history)]
    )
    thief, _ = make_card(old, "acme", ("thief.example:7401",), ACME_CERT, NOW_MS)
    with pytest.raises(InvalidCard, match="signed with a compromised key of member 'acme'"):
        admit(roster, thief, me.public_key, replace=True)
    stranger, _ = make_card(Identity.generate(), "acme", (), ACME_CERT, NOW_MS)
    with pytest.raises(InvalidCard, match="changes by rotation"):
        admit(roster, stranger, me.public_key, replace=True)
    fresh, _ = make_card(new, "acme", ("acme.example:7401",), ACME_CERT, NOW_MS)
    kept = admit(roster, fresh, me.public_key, replace=True).roster.by_name("acme")
    assert kept is not None and kept.keys == history  # the history stays
