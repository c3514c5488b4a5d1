"""Identity and signatures: Ed25519 via pynacl. Small and boring on purpose."""

from node.crypto.identity import (
    ALERT_DOMAIN,
    Identity,
    create_identity,
    load_identity,
    sign_alert,
    verify_alert,
    verify_detached,
)

__all__ = [
    "ALERT_DOMAIN",
    "Identity",
    "create_identity",
    "load_identity",
    "sign_alert",
    "verify_alert",
    "verify_detached",
]
