"""Peer-session authentication: each side signs a transcript bound to both fresh nonces
and to the TLS channel.

    sig = Ed25519(SESSION_DOMAIN + role + nonce_dialer + nonce_acceptor + key_dialer
                  + key_acceptor + channel)

The role label stops a signature being reflected back at its maker, the two
nonces make every transcript unique (a recorded handshake cannot be replayed),
and the domain prefix keeps these signatures apart from alert signatures.

`channel` binds the handshake to the TLS connection it runs over: the SHA-256
fingerprints of the dialer's and the acceptor's TLS certificates, as each side saw
them in the TLS handshake. A relay that forwards the handshake over a TLS connection
of its own presents its own certificate, so the two sides compute different channels
and the signatures fail. Over plaintext (a lab only) `channel` is empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from node.crypto.identity import Identity, verify_detached

SESSION_DOMAIN = b"alertmesh/v1/session\0"
NONCE_BYTES = 32
DIALER = b"dialer"
ACCEPTOR = b"acceptor"
PLAINTEXT_CHANNEL = b""


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def tls_channel(dialer_fingerprint: bytes, acceptor_fingerprint: bytes) -> bytes:
    """The channel binding of a TLS session: both certificates' fingerprints, dialer first."""
    return b"tls-certs\0" + dialer_fingerprint + acceptor_fingerprint


@dataclass(frozen=True, slots=True)
class Transcript:
    dialer_key: bytes
    dialer_nonce: bytes
    acceptor_key: bytes
    acceptor_nonce: bytes
    channel: bytes = PLAINTEXT_CHANNEL

    def message(self, role: bytes) -> bytes:
        return (
            SESSION_DOMAIN
            + role
            + self.dialer_nonce
            + self.acceptor_nonce
            + self.dialer_key
            + self.acceptor_key
            + self.channel
        )

    def sign(self, identity: Identity, role: bytes) -> bytes:
        return identity.sign(self.message(role))

    def verify(self, role: bytes, signature: bytes) -> None:
        """Raise InvalidSignature unless the other side (of `role`) signed this transcript."""
        key = self.dialer_key if role == DIALER else self.acceptor_key
        verify_detached(key, self.message(role), signature)
