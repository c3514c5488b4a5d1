"""A node's Ed25519 identity and the alert signature.

The signature covers a domain-separation prefix followed by the exact body bytes,
so an alert signature can never be confused with any other signature a member
key makes (for example the peer-session handshake).
"""

from __future__ import annotations

import os
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

from node.core.errors import ConfigError, InvalidSignature

ALERT_DOMAIN = b"alertmesh/v1/alert\0"
KEY_BYTES = 32
SIGNATURE_BYTES = 64


class Identity:
    """A member's signing key. Never printed: repr shows only the public key."""

    __slots__ = ("_signing_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != KEY_BYTES:
            raise ConfigError(f"an Ed25519 seed is {KEY_BYTES} bytes, got {len(seed)}")
        self._signing_key = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._signing_key.verify_key)

    @classmethod
    def generate(cls) -> Identity:
        return cls(os.urandom(KEY_BYTES))

    def sign(self, message: bytes) -> bytes:
        return self._signing_key.sign(message).signature

    def open_sealed_box(self, sealed: bytes) -> bytes:
        """Open a sealed box made to the X25519 form of this key (node/crypto/sealing.py).
        Raises nacl.exceptions.CryptoError if it was not made to this key or was altered."""
        private = self._signing_key.to_curve25519_private_key()
        return nacl.public.SealedBox(private).decrypt(sealed)

    def __repr__(self) -> str:
        return f"Identity(public_key={self.public_key.hex()})"


def sign_alert(identity: Identity, body: bytes) -> bytes:
    return identity.sign(ALERT_DOMAIN + body)


def verify_detached(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise InvalidSignature unless `signature` is `public_key`'s over `message`."""
    _check_sizes(public_key, signature)
    _open(public_key, signature + message)


def verify_alert(origin: bytes, body: bytes, signature: bytes) -> None:
    _check_sizes(origin, signature)
    _open(origin, b"".join((signature, ALERT_DOMAIN, body)))


def _check_sizes(public_key: bytes, signature: bytes) -> None:
    if len(signature) != SIGNATURE_BYTES:
        raise InvalidSignature(
            f"signature must be {SIGNATURE_BYTES} bytes, got {len(signature)}"
            + (" (the alert is unsigned)" if not signature else "")
        )
    if len(public_key) != KEY_BYTES:
        raise InvalidSignature(f"public key must be {KEY_BYTES} bytes, got {len(public_key)}")


def _open(public_key: bytes, signed: bytes) -> None:
    """libsodium's crypto_sign_open of `signed` (signature, then message), through
    pynacl's public binding: what VerifyKey(public_key).verify does, without the key
    object. (Calling pynacl's private cffi module instead would skip its copy of the
    opened message, about 1 µs an alert; not worth a private interface on this path.)"""
    try:
        nacl.bindings.crypto_sign_open(signed, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
        raise InvalidSignature(
            "signature does not verify over the alert body with the origin's key"
        ) from exc


def create_identity(path: Path) -> Identity:
    """Write a new private key to `path` (mode 0600, never overwriting) and return it."""
    identity = Identity.generate()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise ConfigError(f"{path} already exists; refusing to overwrite a private key") from exc
    with os.fdopen(fd, "w") as f:
        f.write(identity._signing_key.encode().hex() + "\n")
    return identity


def load_identity(path: Path) -> Identity:
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the node's private key {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    try:
        return Identity(bytes.fromhex(text))
    except ValueError as exc:
        raise ConfigError(f"{path} does not hold a hex Ed25519 seed") from exc
