"""Alert signatures: over the exact body bytes, with a domain-separation prefix."""

import os
import stat

import pytest

from node.core.errors import ConfigError, InvalidSignature
from node.crypto import ALERT_DOMAIN, Identity, create_identity, load_identity, verify_alert
from tests.factory import Author


def test_a_signed_alert_verifies_with_its_origin_key() -> None:
    author = Author()
    signed = author.next()
    verify_alert(author.key, signed.body, signed.signature)


def test_a_tampered_byte_anywhere_in_the_body_fails() -> None:
    author = Author()
    signed = author.next()
    for i in range(len(signed.body)):
        tampered = bytearray(signed.body)
        tampered[i] ^= 0x01
        with pytest.raises(InvalidSignature):
            verify_alert(author.key, bytes(tampered), signed.signature)


def test_a_signature_by_another_key_fails() -> None:
    author, other = Author(), Author()
    signed = author.next()
    forged = other.sign(author.alert())
    with pytest.raises(InvalidSignature, match="does not verify"):
        verify_alert(author.key, forged.body, forged.signature)
    with pytest.raises(InvalidSignature):
        verify_alert(other.key, signed.body, signed.signature)


def test_a_missing_signature_says_so() -> None:
    author = Author()
    signed = author.next()
    with pytest.raises(InvalidSignature, match="unsigned"):
        verify_alert(author.key, signed.body, b"")


def test_the_signature_is_domain_separated() -> None:
    """A key's signature over the bare body bytes (another context) is not an alert signature."""
    author = Author()
    signed = author.next()
    bare = author.identity.sign(signed.body)
    with pytest.raises(InvalidSignature):
        verify_alert(author.key, signed.body, bare)
    assert author.identity.sign(ALERT_DOMAIN + signed.body) == signed.signature


def test_identity_file_is_private_and_reloads(tmp_path) -> None:
    path = tmp_path / "identity.key"
    identity = create_identity(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_identity(path).public_key == identity.public_key
    assert identity.public_key.hex() in repr(identity)
    assert path.read_text().strip() not in repr(identity)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        create_identity(path)


def test_a_world_readable_key_is_refused(tmp_path) -> None:
    path = tmp_path / "identity.key"
    create_identity(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_identity(path)


def test_identities_differ() -> None:
    assert Identity.generate().public_key != Identity.generate().public_key
