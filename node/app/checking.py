"""CheckIndicators: whether each of many values is flagged, and by which alerts.

A check parses every value (cached: clients ask about the same hot values again and
again), looks all their keys up in one store query, gathers the lifecycle facts of the
values with a hit, and builds each value's verdict (the rules are in node/core/verdict.py).
`AlertNode.check` answers with it; the watch stream asks it which released values are
still flagged (node/app/watching.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from node._pb.alertmesh.v1 import alert_pb2
from node.app.lifecycle import Lifecycle
from node.app.sharing import Sharing
from node.app.valuelists import Allowlist
from node.core import indicators
from node.core import verdict as verdicts
from node.core.errors import InvalidAlert, LimitExceeded
from node.core.limits import Limits
from node.core.verdict import Fact, Verdict
from node.store.base import AlertStore, Stored


@dataclass(slots=True)  # not frozen: built 1,000 times per check, 0.5 µs less each
class CheckResult:
    query: str
    indicator: indicators.Indicator | None
    error: str
    matches: list[tuple[Stored, alert_pb2.Indicator, int]]  # (alert, what matched, its TLP)
    verdict: Verdict | None = None  # None when the value cannot be understood


class Checker:
    """Checks values against a node's store; `allowlist` is read at each check (the
    runtime reloads it with the roster)."""

    def __init__(
        self,
        *,
        store: AlertStore,
        lifecycle: Lifecycle,
        sharing: Sharing,
        limits: Limits,
        clock: Callable[[], int],
        allowlist: Callable[[], Allowlist],
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.sharing = sharing
        self.limits = limits
        self.clock = clock
        self._allowlist = allowlist

    async def check(self, values: Sequence[str], *, include_expired: bool) -> list[CheckResult]:
        if len(values) > self.limits.max_check_values:
            raise LimitExceeded(
                f"{len(values)} values in one check; send at most {self.limits.max_check_values}"
            )
        parsed = [_parse_for_lookup(value) for value in values]
        now = self.clock()
        # Expired, retracted and superseded alerts too: the verdict tells them apart.
        found = await self.store.lookup(
            {k for p in parsed for k in p[2]}, now_ms=now, include_expired=True
        )
        # Facts only for the values with a hit (usually a few of them); none for the rest.
        held = found.keys()
        hit = [n for n, p in enumerate(parsed) if not held.isdisjoint(p[2])] if found else []
        facts: dict[int, list[Fact]] = {}
        if hit:
            keys_per_value = [frozenset(parsed[n][2]) for n in hit]
            facts = dict(zip(hit, await self.lifecycle.facts(found, keys_per_value), strict=True))
        # The verdict of a value nothing held mentions (most of them), built once.
        clean = [verdicts.verdict((), now_ms=now, allowlisted=a) for a in (False, True)]
        allowlist = self._allowlist()
        covers = allowlist.covers if allowlist.keys else None
        results = []
        for n, (value, (parsed_ind, error, keys)) in enumerate(zip(values, parsed, strict=True)):
            if parsed_ind is None:
                results.append(CheckResult(value, None, error, []))
                continue
            value_facts = facts.get(n) if facts else None
            if not value_facts:  # and nothing matches
                allowlisted = covers is not None and covers(keys)
                results.append(CheckResult(value, parsed_ind, error, [], clean[allowlisted]))
                continue
            v = verdicts.verdict(
                value_facts,
                now_ms=now,
                include_expired=include_expired,
                allowlisted=allowlist.covers(keys),
            )
            active = set(v.alert_ids)
            matches: dict[bytes, tuple[Stored, alert_pb2.Indicator, int]] = {}
            for key in keys:
                for stored in found.get(key, ()):
                    r = stored.record
                    if r.id in active and r.id not in matches:
                        alert = self.sharing.content(r)[0]
                        matches[r.id] = (stored, _flagged(alert, key), alert.tlp)
            results.append(CheckResult(value, parsed_ind, error, list(matches.values()), v))
        return results


CACHED_VALUE_CHARS = 256  # longer values are parsed every time: they bound the cache's size


def _parse_value(value: str) -> tuple[indicators.Indicator | None, str, tuple[str, ...]]:
    """A checked value's indicator, the error if it has none, and its lookup keys."""
    try:
        ind = indicators.parse(value, strict=False)
    except InvalidAlert as exc:
        return None, str(exc), ()
    return ind, "", tuple(indicators.lookup_keys(ind))


# Clients check the same hot addresses and domains again and again, and parsing is most
# of a check's cost. Pure and bounded: 16,384 values of at most 256 characters, with
# their keys, are at most about 20 MiB (about 5 MiB for addresses and domains).
_parse_cached = functools.lru_cache(maxsize=16384)(_parse_value)


def _parse_for_lookup(value: str) -> tuple[indicators.Indicator | None, str, tuple[str, ...]]:
    if len(value) <= CACHED_VALUE_CHARS:
        return _parse_cached(value)
    return _parse_value(value)


def _flagged(alert: alert_pb2.Alert, key: str) -> alert_pb2.Indicator:
    """The indicator of `alert` that is indexed under `key`."""
    for ind in alert.indicators:
        try:
            normal = indicators.normalize(ind.type, ind.value, strict=False)
        except InvalidAlert:
            continue
        if key in indicators.index_keys(normal):
            return alert_pb2.Indicator(
                type=alert_pb2.IndicatorType.ValueType(normal.type), value=normal.value
            )
    return alert_pb2.Indicator()
