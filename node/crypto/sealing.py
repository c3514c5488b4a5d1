"""End-to-end encryption of an alert's content to named members.

The author encrypts the content once, with a fresh 32-byte key, under
XChaCha20-Poly1305 (libsodium's IETF AEAD, via pynacl), and wraps that key for each
recipient in a sealed box (an ephemeral X25519 key agreement, then XSalsa20-Poly1305)
to the X25519 form of the recipient's Ed25519 member key. Deriving the encryption key
from the signing key (libsodium's birational map, as Secure Scuttlebutt's private
messages do) means the roster, which every member already holds, is also the
directory of encryption keys: nothing new to publish, exchange or pin.

The associated data binds the ciphertext to its envelope: the domain, the origin, the
seq and the recipient list. Copied into another alert, or given another recipient
list, it does not decrypt. The envelope itself is signed by the author like any alert.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Callable

import nacl.bindings
import nacl.exceptions
import nacl.signing

from node._pb.alertmesh.v1 import alert_pb2
from node.core.alerts import ENVELOPE_FIELDS
from node.core.errors import InvalidAlert
from node.crypto.identity import Identity

SEALED_DOMAIN = b"alertmesh/v1/sealed\0"
COMMITMENT_DOMAIN = b"alertmesh/v1/key-commitment"
NONCE_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
KEY_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES  # 32
WRAPPED_KEY_BYTES = 32 + 16 + KEY_BYTES  # ephemeral X25519 key, MAC, the key: 80
_SEQ = struct.Struct(">Q")


class Undecryptable(InvalidAlert):
    """An encrypted alert addressed to this node that does not open: a wrapped key or a
    ciphertext that was not made for it, or was altered before it was signed."""


def key_commitment(key: bytes) -> bytes:
    """What binds every recipient to one content key: XChaCha20-Poly1305 is not
    key-committing, so without it an author could craft one ciphertext that opens to
    different content under the keys it wraps for different recipients."""
    return nacl.bindings.crypto_generichash_blake2b_salt_personal(
        COMMITMENT_DOMAIN, digest_size=32, key=key
    )


def associated_data(origin: bytes, seq: int, recipients: list[bytes]) -> bytes:
    return SEALED_DOMAIN + origin + _SEQ.pack(seq) + b"".join(recipients)


def seal(
    content: alert_pb2.Alert,
    *,
    origin: bytes,
    seq: int,
    recipients: list[bytes],
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> alert_pb2.SealedContent:
    """Encrypt `content` (an Alert holding only content fields) for `recipients`.
    `random_bytes` is os.urandom, except in the simulator, whose runs replay a seed."""
    key = random_bytes(KEY_BYTES)
    nonce = random_bytes(NONCE_BYTES)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        content.SerializeToString(deterministic=True),
        associated_data(origin, seq, recipients),
        nonce,
        key,
    )
    wrapped = [_sealed_box(key, recipient, random_bytes) for recipient in recipients]
    return alert_pb2.SealedContent(
        nonce=nonce,
        ciphertext=ciphertext,
        wrapped_keys=wrapped,
        key_commitment=key_commitment(key),
    )


def envelope(
    full: alert_pb2.Alert,
    recipients: list[bytes],
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> alert_pb2.Alert:
    """The body to sign for `full` (origin, seq, prev and created_at set) encrypted to
    `recipients`: the envelope fields in clear, everything else sealed."""
    content = alert_pb2.Alert()
    content.CopyFrom(full)
    for name in ENVELOPE_FIELDS:
        content.ClearField(name)  # type: ignore[arg-type]
    sealed = seal(
        content, origin=full.origin, seq=full.seq, recipients=recipients, random_bytes=random_bytes
    )
    return alert_pb2.Alert(
        origin=full.origin,
        seq=full.seq,
        prev=full.prev,
        created_at_ms=full.created_at_ms,
        recipients=recipients,
        sealed=sealed,
    )


def _sealed_box(message: bytes, recipient: bytes, random_bytes: Callable[[int], bytes]) -> bytes:
    """libsodium's crypto_box_seal, with the ephemeral key from `random_bytes`:
    epk || crypto_box(message, nonce = BLAKE2b-24(epk || pk), pk, esk). It opens with
    nacl.public.SealedBox (Identity.open_sealed_box)."""
    public = bytes(nacl.signing.VerifyKey(recipient).to_curve25519_public_key())
    ephemeral_secret = random_bytes(32)
    ephemeral_public = nacl.bindings.crypto_scalarmult_base(ephemeral_secret)
    nonce = nacl.bindings.crypto_generichash_blake2b_salt_personal(
        ephemeral_public + public, digest_size=nacl.bindings.crypto_box_NONCEBYTES
    )
    boxed = nacl.bindings.crypto_box(message, nonce, public, ephemeral_secret)
    return ephemeral_public + boxed


def open_sealed(envelope: alert_pb2.Alert, identities: list[Identity]) -> alert_pb2.Alert | None:
    """The content of `envelope` if one of `identities` is among its recipients (None if
    none is). Raises Undecryptable if it is addressed to us but does not open."""
    recipients = list(envelope.recipients)
    for identity in identities:
        if identity.public_key not in recipients:
            continue
        wrapped = envelope.sealed.wrapped_keys[recipients.index(identity.public_key)]
        try:
            key = identity.open_sealed_box(wrapped)
            if not hmac.compare_digest(key_commitment(key), envelope.sealed.key_commitment):
                raise ValueError("the content key does not match the envelope's commitment")
            plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                envelope.sealed.ciphertext,
                associated_data(envelope.origin, envelope.seq, recipients),
                envelope.sealed.nonce,
                key,
            )
        except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
            raise Undecryptable(
                "this encrypted alert is addressed to this node but does not decrypt "
                "(its wrapped key or ciphertext was not made for it, or was altered)"
            ) from exc
        try:
            return alert_pb2.Alert.FromString(plain)
        except Exception as exc:
            raise Undecryptable("the decrypted content is not an alertmesh.v1.Alert") from exc
    return None
