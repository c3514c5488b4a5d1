"""The recent signed alerts a node keeps to answer pushes and IWANTs
(node/app/recent_alerts.py): each cached alert carries its record's id, signed bytes and
origin, and the cache keeps the newest `size`."""

from node.app.peer_session import _signed
from node.app.recent_alerts import RecentAlerts
from tests.factory import Author


def test_a_cached_alert_carries_its_records_signed_bytes_and_the_oldest_go_first() -> None:
    authors = [Author(), Author()]
    records = [authors[i % 2].record() for i in range(7)]
    recent = RecentAlerts(size=5)
    recent.remember(records[:4])
    recent.remember(records[4:])
    kept, gone = records[2:], records[:2]
    found, missing = recent.split([r.id for r in records])
    assert missing == [r.id for r in gone]
    assert [(c.id, c.body, c.signature, c.origin) for c in found] == [
        (r.id, r.body, r.signature, r.origin) for r in kept
    ]
    assert [_signed(c) for c in found] == [_signed(r) for r in kept]
    assert all(r.id in recent for r in kept) and not any(r.id in recent for r in gone)
    recent.forget([kept[0].id])
    assert recent.split([kept[0].id]) == ([], [kept[0].id])
