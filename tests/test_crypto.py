"""Alert signatures: over the exact body bytes, with a domain-separation prefix."""

import os
import random
import stat

import nacl.exceptions
import nacl.signing
import pytest

from node.core.errors import ConfigError, InvalidSignature
from node.crypto import ALERT_DOMAIN, Identity, create_identity, load_identity, verify_alert
from node.crypto.identity import verify_detached
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


# The group order of Ed25519: S + L is the same signature with a non-canonical S.
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
SMALL_ORDER_KEY = bytes(32)  # the identity point's encoding is 1, 0, ...: 0 is not on it
IDENTITY_KEY = bytes([1]) + bytes(31)


def pynacl_says(key: bytes, message: bytes, signature: bytes) -> str:
    try:
        nacl.signing.VerifyKey(key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        return "refused"
    return "verified"


def ours(key: bytes, message: bytes, signature: bytes) -> str:
    try:
        verify_detached(key, message, signature)
    except InvalidSignature:
        return "refused"
    return "verified"


def test_verdicts_are_pynacls_on_signatures_altered_at_random() -> None:
    """verify_detached calls libsodium's crypto_sign_open itself: on good signatures and
    on signatures, keys and messages altered at random (flipped bits, a non-canonical
    S, small-order and identity keys, other keys) its verdict is VerifyKey.verify's."""
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    keys = [Identity.generate() for _ in range(4)]
    verdicts = {"verified": 0, "refused": 0}
    for i in range(1500):
        signer = rng.choice(keys)
        message = ALERT_DOMAIN + rng.randbytes(rng.randrange(0, 800))
        signature = signer.sign(message)
        key = signer.public_key
        change = i % 6
        if change == 1:
            sig = bytearray(signature)
            sig[rng.randrange(64)] ^= 1 << rng.randrange(8)
            signature = bytes(sig)
        elif change == 2:
            s = int.from_bytes(signature[32:], "little") + GROUP_ORDER
            signature = signature[:32] + s.to_bytes(32, "little")
        elif change == 3 and message:
            altered = bytearray(message)
            altered[rng.randrange(len(altered))] ^= 1 << rng.randrange(8)
            message = bytes(altered)
        elif change == 4:
            key = rng.choice([SMALL_ORDER_KEY, IDENTITY_KEY, rng.choice(keys).public_key])
        elif change == 5:
            key = bytes(rng.randrange(256) for _ in range(32))
        theirs = pynacl_says(key, message, signature)
        assert ours(key, message, signature) == theirs, (i, change)
        verdicts[theirs] += 1
    assert verdicts["verified"] > 200 and verdicts["refused"] > 1000
    with pytest.raises(InvalidSignature, match="public key must be 32 bytes"):
        verify_detached(bytes(31), b"m", bytes(64))
    with pytest.raises(InvalidSignature, match="signature must be 64 bytes, got 63"):
        verify_detached(bytes(32), b"m", bytes(63))
