"""Building signed alerts for tests, the way an author's node does."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from node._pb.alertmesh.v1 import alert_pb2
from node.app.service import AlertNode
from node.app.verify import Verifier
from node.core import alerts
from node.core.alerts import AlertRecord
from node.core.limits import DEFAULT_LIMITS
from node.core.roster import Roster
from node.crypto import Identity, sign_alert
from node.store.memory import MemoryStore

ADDRESS = alert_pb2.INDICATOR_TYPE_ADDRESS
DOMAIN = alert_pb2.INDICATOR_TYPE_DOMAIN


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@contextlib.asynccontextmanager
async def memory_node(identity: Identity, roster: Roster) -> AsyncIterator[AlertNode]:
    """A node of `identity` on an in-memory store, with one verifier process (not
    started: the test starts it if it needs its background work)."""
    async with Verifier(DEFAULT_LIMITS, processes=1) as verifier:
        yield AlertNode(
            identity=identity,
            roster=roster,
            store=MemoryStore(),
            verifier=verifier,
            limits=DEFAULT_LIMITS,
        )


class Author:
    """A member key that authors a chain of alerts (seq 1, 2, ...)."""

    def __init__(self, identity: Identity | None = None) -> None:
        self.identity = identity or Identity.generate()
        self.seq = 0
        self.head = b""

    @property
    def key(self) -> bytes:
        return self.identity.public_key

    def alert(self, **fields: object) -> alert_pb2.Alert:
        """The next alert body in this author's chain (does not advance it)."""
        alert = alert_pb2.Alert(
            origin=self.key,
            seq=self.seq + 1,
            prev=self.head,
            created_at_ms=now_ms(),
            category=alert_pb2.CATEGORY_PHISHING,
            severity=alert_pb2.SEVERITY_HIGH,
            confidence=80,
            title=f"test alert {self.seq + 1}",
        )
        for name, value in fields.items():
            if name == "indicators":
                alert.ClearField("indicators")
                for t, v in value:  # type: ignore[attr-defined]
                    alert.indicators.add(type=t, value=v)
            elif name == "links":
                alert.links.extend(value)  # type: ignore[arg-type]
            else:
                setattr(alert, name, value)
        return alert

    def sign(self, alert: alert_pb2.Alert, advance: bool = True) -> alert_pb2.SignedAlert:
        body = alert.SerializeToString(deterministic=True)
        signed = alert_pb2.SignedAlert(body=body, signature=sign_alert(self.identity, body))
        if advance:
            self.seq = alert.seq
            self.head = alerts.alert_id(body)
        return signed

    def next(self, **fields: object) -> alert_pb2.SignedAlert:
        return self.sign(self.alert(**fields))

    def record(self, **fields: object) -> AlertRecord:
        signed = self.next(**fields)
        alert = alert_pb2.Alert.FromString(signed.body)
        keys = alerts.validate(alert, now_ms=now_ms(), limits=DEFAULT_LIMITS)
        return alerts.make_record(signed.body, signed.signature, alert, keys)
