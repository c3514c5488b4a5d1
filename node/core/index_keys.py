"""The keys under which a store indexes an alert: its indicators, normalised, and the
alerts it links to.

A store answers "is this value flagged?" by an indicator's key and "what updates,
retracts, sights or disputes this alert?" by the linked alert's key. validate()
(node/core/alerts.py) returns an alert's keys in that order: every indicator key first,
then every link key.
"""

from __future__ import annotations

from collections.abc import Sequence

from node._pb.alertmesh.v1 import alert_pb2
from node.core import indicators
from node.core.errors import InvalidIndicator
from node.core.limits import DEFAULT_LIMITS, Limits, check_len

LINK_KEY_PREFIX = "link:"


def indicator_keys(alert: alert_pb2.Alert, limits: Limits = DEFAULT_LIMITS) -> tuple[str, ...]:
    """The store keys of an alert's indicators (each normalised strictly); the error of
    the first indicator that is not valid."""
    keys: list[str] = []
    limit = limits.max_indicator_chars
    for i, ind in enumerate(alert.indicators):
        value = ind.value
        if len(value) > limit:
            check_len(f"indicator {i}", value, limit)
        try:
            keys += indicators.flagged_keys(ind.type, value)
        except InvalidIndicator as exc:
            raise InvalidIndicator(f"indicator {i}: {exc}") from exc
    return tuple(dict.fromkeys(keys))


def link_key(target: bytes) -> str:
    """The index key under which the alerts linking to `target` are stored."""
    return LINK_KEY_PREFIX + target.hex()


def link_keys(alert: alert_pb2.Alert) -> tuple[str, ...]:
    return links_of(alert.links)


def links_of(links: Sequence[alert_pb2.AlertLink]) -> tuple[str, ...]:
    """The link keys of an alert's links, each once (a link about values has none)."""
    if not links:  # most alerts
        return ()
    return tuple(dict.fromkeys(link_key(link.alert_id) for link in links if link.alert_id))


def links_to_alerts(index_keys: tuple[str, ...]) -> bool:
    """Whether index keys from validate() hold a link key. validate() puts them after
    every indicator key (which never starts with LINK_KEY_PREFIX), so looking at the last
    key is enough."""
    return bool(index_keys) and index_keys[-1].startswith(LINK_KEY_PREFIX)
