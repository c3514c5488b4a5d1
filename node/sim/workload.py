"""Members' keys and the alerts they publish: real signed `Alert` protobufs.

Keys come from the run's seed (Identity accepts a 32-byte seed). An `Author` builds
the next alert of its chain the way AlertNode._publish_new does: origin, seq, prev,
created_at from the (virtual) clock, normalised indicators, `validate`, then an
Ed25519 signature over the deterministic serialisation. Bodies are 380–860 bytes,
600 on average, as docs/catchup.md assumes.

A share of the alerts (`sealed_share`) is encrypted to a few other members, as
`publish --to` does (node/crypto/sealing.py), with the sealing's randomness drawn
from the seed so that a run replays exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from node._pb.alertmesh.v1 import alert_pb2
from node.core import alerts
from node.core.alerts import AlertRecord
from node.core.limits import Limits
from node.crypto import Identity, sign_alert
from node.crypto.sealing import envelope
from node.sim.seeds import derive, derive_bytes

# Virtual time 0 is 2027-01-01T00:00:00Z; alerts carry created_at in wall-clock ms.
EPOCH_MS = 1_798_761_600_000

_TEXT = (
    "wallet drainer airdrop claim phishing kit exchange impersonation bridge exploit "
    "stolen funds mixer deposit address withdrawal seed phrase support scam telegram "
    "fake token presale rug pull liquidity removed approval malicious contract victim "
    "reported customers laundering chain hop sanctions ransomware payment domain"
)
_WORDS = tuple(_TEXT.split())
_CATEGORIES = [v for v in alert_pb2.Category.values() if v]
_SEVERITIES = [v for v in alert_pb2.Severity.values() if v]
_TLPS = [alert_pb2.TLP_CLEAR, alert_pb2.TLP_GREEN, alert_pb2.TLP_AMBER]


def wall_ms(now: float) -> int:
    """The wall clock every simulated host reads at virtual time `now` (seconds)."""
    return EPOCH_MS + round(now * 1000)


def identity(seed: int, index: int) -> Identity:
    """Member `index`'s signing key in the run with this seed."""
    return Identity(derive_bytes(seed, "identity", index))


def outsider(seed: int, index: int) -> Identity:
    """A key that is on no roster (used by forgers)."""
    return Identity(derive_bytes(seed, "outsider", index))


def draft(rng: random.Random, origin: bytes, seq: int, prev: bytes, created_ms: int) -> bytes:
    """A realistic alert body, serialised deterministically."""
    tag = rng.randrange(16**8)
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(20, 76)))
    alert = alert_pb2.Alert(
        origin=origin,
        seq=seq,
        prev=prev,
        created_at_ms=created_ms,
        category=rng.choice(_CATEGORIES),
        severity=rng.choice(_SEVERITIES),
        confidence=rng.randrange(40, 101),
        title=f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} campaign {tag:08x}",
        description=words,
        tlp=rng.choice(_TLPS),
    )
    alert.indicators.add(
        type=alert_pb2.INDICATOR_TYPE_DOMAIN, value=f"{rng.choice(_WORDS)}-{tag:08x}.example"
    )
    alert.indicators.add(
        type=alert_pb2.INDICATOR_TYPE_ADDRESS,
        value="eip155:1:0x" + rng.randbytes(20).hex(),
    )
    alert.references.append(f"https://reports.example/{tag:08x}")
    return alert.SerializeToString(deterministic=True)


def retraction(body: bytes, target: bytes) -> bytes:
    """`body` turned into the retraction of the author's alert `target` (docs/lifecycle.md):
    no flag of its own, a reason, the link."""
    alert = alert_pb2.Alert.FromString(body)
    alert.ClearField("indicators")
    alert.ClearField("tlp")
    alert.title = "Retracted: " + alert.title
    alert.links.add(kind=alert_pb2.LINK_KIND_RETRACTION, alert_id=target)
    return alert.SerializeToString(deterministic=True)


class Author:
    """A member's own chain: the seq and id of its last alert, as its store holds them."""

    def __init__(
        self,
        seed: int,
        index: int,
        ident: Identity,
        limits: Limits,
        *,
        sealed_share: float = 0.0,
        members: Callable[[], Sequence[bytes]] = tuple,
        recipients: int = 4,
        retract_share: float = 0.0,
    ) -> None:
        self.seed = seed
        self.index = index
        self.identity = ident
        self.limits = limits
        self.sealed_share = sealed_share
        self.members = members  # the roster's keys: whom an encrypted alert may go to
        self.recipients = recipients
        self.retract_share = retract_share  # share of alerts that retract the previous one
        self.seq = 0
        self.head = b""

    def resume(self, seq: int, head: bytes) -> None:
        """After a restart: continue the chain from what the store holds."""
        self.seq, self.head = seq, head

    def body(self, seq: int, prev: bytes, now: float, variant: int = 0) -> bytes:
        rng = derive(self.seed, "body", self.index, seq, variant)
        body = draft(rng, self.identity.public_key, seq, prev, wall_ms(now))
        if self.retract_share and seq > 1:
            pick = derive(self.seed, "retract", self.index, seq, variant)
            if pick.random() < self.retract_share:
                return retraction(body, prev)
        if self.sealed_share:
            pick = derive(self.seed, "sealed", self.index, seq, variant)  # leaves `rng` alone
            if pick.random() < self.sealed_share:
                body = self.sealed(body, pick)
        return body

    def sealed(self, body: bytes, rng: random.Random) -> bytes:
        """`body` encrypted to `recipients` other members and its author."""
        me = self.identity.public_key
        others = [key for key in self.members() if key != me]
        to = [*rng.sample(others, min(self.recipients, len(others))), me]
        full = alert_pb2.Alert.FromString(body)
        return envelope(full, to, rng.randbytes).SerializeToString(deterministic=True)

    def sign(self, body: bytes) -> AlertRecord:
        """Sign and check a body exactly as a publishing node does."""
        alert = alert_pb2.Alert.FromString(body)
        keys = alerts.validate(alert, now_ms=alert.created_at_ms, limits=self.limits)
        return alerts.make_record(body, sign_alert(self.identity, body), alert, keys)

    def next(self, now: float) -> AlertRecord:
        """The next alert of this chain, signed; the chain advances."""
        record = self.sign(self.body(self.seq + 1, self.head, now))
        self.seq, self.head = record.seq, record.id
        return record

    def fork(self, now: float) -> tuple[AlertRecord, AlertRecord]:
        """Two different signed bodies for the next seq (equivocation); the chain follows the
        first."""
        first = self.sign(self.body(self.seq + 1, self.head, now, variant=0))
        second = self.sign(self.body(self.seq + 1, self.head, now, variant=1))
        self.seq, self.head = first.seq, first.id
        return first, second
