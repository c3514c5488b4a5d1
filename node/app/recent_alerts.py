"""The recent signed alerts a node keeps in memory to answer its peers.

Pushes and IWANTs name alerts by id; most are alerts this node just published or
received, so their signed bytes are kept here (the last CACHE_ALERTS, oldest out first)
and a push needs no store read. A relay puts an alert here when it forwards it before
its commit; if that commit fails, the alert is taken out again (node/app/peer_session.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from node.core import peer_engine as pe
from node.core.alerts import AlertRecord

CACHE_ALERTS = 20_000  # recent signed alerts kept in memory to answer pushes and IWANTs


class _Cached(NamedTuple):
    """A recent alert's signed bytes (pe.Carried), lighter than its AlertRecord. A named
    tuple, like AlertRecord: one is made per alert committed, and a frozen dataclass's
    __init__ costs 0.63 µs against 0.25."""

    id: bytes
    body: bytes
    signature: bytes
    origin: bytes


class RecentAlerts:
    def __init__(self, size: int = CACHE_ALERTS) -> None:
        self.size = size
        self._alerts: OrderedDict[bytes, _Cached] = OrderedDict()

    def __contains__(self, alert: bytes) -> bool:
        return alert in self._alerts

    def remember(self, records: Sequence[AlertRecord]) -> None:
        alerts = self._alerts
        for r in records:
            alerts[r.id] = _Cached(r.id, r.body, r.signature, r.origin)
        while len(alerts) > self.size:
            alerts.popitem(last=False)

    def forget(self, ids: Iterable[bytes]) -> None:
        for i in ids:
            self._alerts.pop(i, None)

    def split(self, ids: Iterable[bytes]) -> tuple[list[pe.Carried], list[bytes]]:
        """The cached alerts, and the ids not in the cache."""
        found: list[pe.Carried] = []
        missing: list[bytes] = []
        for i in ids:
            hit = self._alerts.get(i)
            if hit is None:
                missing.append(i)
            else:
                found.append(hit)
        return found, missing
