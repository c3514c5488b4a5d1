"""A node's TLS key and self-signed certificate, and the pins other members hold of it.

There is no certificate authority. Each member's roster entry carries its node's
certificate (PEM), and each side of a peer session trusts exactly the certificate
pinned there for the member it expects (docs/security.md). The certificate is a
self-signed ECDSA P-256 certificate, separate from the member's Ed25519 signing key:
TLS stacks do not offer Ed25519 by default, and one key per purpose keeps a TLS
compromise from forging alerts.

The certificate names one fixed host, PEER_TLS_NAME: the dialer asks for that name
and trusts only the pinned certificate, so the name carries no trust of its own. It
also names localhost, 127.0.0.1 and ::1, so that an HTTPS client on the node's own
host (a TAXII client given tls.crt as its CA file) can check the name it connects to.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.core.errors import ConfigError
from node.core.roster import certificate_fingerprint, format_pin

PEER_TLS_NAME = "peer.alertmesh.invalid"
CERT_VALID_DAYS = 3650  # pinned, not CA-issued: expiry would only break the network
TLS_KEY_FILE = "tls.key"
TLS_CERT_FILE = "tls.crt"


@dataclass(frozen=True)
class TlsIdentity:
    """The node's TLS key pair. repr shows only the certificate's pin."""

    key_pem: bytes = field(repr=False)
    cert_pem: bytes = field(repr=False)

    @property
    def fingerprint(self) -> bytes:
        return certificate_fingerprint(self.cert_pem)

    @property
    def pin(self) -> str:
        return format_pin(self.fingerprint)

    def __repr__(self) -> str:
        return f"TlsIdentity(pin={self.pin})"


def generate_tls_identity(name: str) -> TlsIdentity:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"alertmesh {name}"[:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(PEER_TLS_NAME),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return TlsIdentity(key_pem, cert.public_bytes(serialization.Encoding.PEM))


def create_tls_identity(key_path: Path, cert_path: Path, name: str) -> TlsIdentity:
    """Write a new TLS key (0600, never overwriting) and certificate; return them."""
    tls = generate_tls_identity(name)
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError(
            f"{key_path} already exists; refusing to overwrite a private key"
        ) from exc
    with os.fdopen(fd, "wb") as f:
        f.write(tls.key_pem)
    cert_path.write_bytes(tls.cert_pem)
    return tls


def load_tls_identity(key_path: Path, cert_path: Path) -> TlsIdentity:
    try:
        mode = key_path.stat().st_mode & 0o777
        key_pem = key_path.read_bytes()
        cert_pem = cert_path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the node's TLS key pair: {exc.strerror}: {exc.filename}"
        ) from exc
    if mode & 0o077:
        raise ConfigError(
            f"{key_path} is readable by others (mode {mode:o}); run: chmod 600 {key_path}"
        )
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{key_path} does not hold an unencrypted PEM private key") from exc
    cert = parse_certificate(cert_pem, str(cert_path))
    if cert.public_key() != key.public_key():
        raise ConfigError(f"{cert_path} is not the certificate of the key in {key_path}")
    return TlsIdentity(key_pem, cert_pem)


def ensure_tls_identity(key_path: Path, cert_path: Path, name: str) -> tuple[TlsIdentity, bool]:
    """Load the node's TLS key pair, creating it first if the home has none (an older
    home). Returns the pair and whether it was created."""
    if not key_path.exists() and not cert_path.exists():
        return create_tls_identity(key_path, cert_path, name), True
    return load_tls_identity(key_path, cert_path), False


def parse_certificate(pem: bytes, source: str) -> x509.Certificate:
    """Parse one PEM certificate, or raise ConfigError naming `source`."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ConfigError(f"{source}: not a PEM certificate") from exc
