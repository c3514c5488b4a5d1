"""The operator's allowlist and the shipped warninglist (docs/lifecycle.md).

- Allowlist: HOME/allowlist.txt, one value per line (TYPE:VALUE, or a bare value whose
  type is inferred), `#` comments. Values this node never reports as flagged (its own
  hot wallets, other exchanges' deposit addresses, well-known domains). Re-read with
  the roster (SIGHUP, `alertmesh roster-reload`).
- Warninglist: node/data/warninglist-domains.txt, widely used domains (MISP
  warninglists, moz-top500, CC0). `publish` refuses to flag one of them unless forced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from node._pb.alertmesh.v1 import alert_pb2
from node.core import indicators
from node.core.errors import ConfigError, InvalidAlert

log = logging.getLogger(__name__)

ALLOWLIST_FILE = "allowlist.txt"
WARNINGLIST_RESOURCE = "warninglist-domains.txt"


def _lines(text: str) -> Iterable[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            yield number, line


MAX_ALLOWLIST_BYTES = 16 * 2**20


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Values never reported as flagged: a checked value is allowlisted when one of its
    lookup keys is an index key of an entry (so an allowlisted domain covers its
    subdomains, and a bare account every chain of its family)."""

    keys: frozenset[str] = frozenset()
    size: int = 0

    @classmethod
    def parse(cls, text: str, source: str = ALLOWLIST_FILE) -> Allowlist:
        keys: set[str] = set()
        size = 0
        for number, line in _lines(text):
            try:
                ind = indicators.parse(line, strict=False)
            except InvalidAlert as exc:
                raise ConfigError(f"{source}:{number}: {exc}") from exc
            keys.update(indicators.index_keys(ind))
            size += 1
        return cls(frozenset(keys), size)

    @classmethod
    def load(cls, home: Path) -> Allowlist:
        path = home / ALLOWLIST_FILE
        if not path.exists():
            return cls()
        try:
            if path.stat().st_size > MAX_ALLOWLIST_BYTES:
                raise ConfigError(
                    f"{path} is larger than {MAX_ALLOWLIST_BYTES // 2**20} MiB; an allowlist "
                    "names the values this node must never flag, not a feed"
                )
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the allowlist {path}: {exc}") from exc
        allowlist = cls.parse(text, str(path))
        log.info("allowlist: %d values", allowlist.size)
        return allowlist

    def covers(self, lookup_keys: Iterable[str]) -> bool:
        return bool(self.keys) and not self.keys.isdisjoint(lookup_keys)


def _bare(domain: str) -> str:
    return domain.removeprefix("www.")


@dataclass(frozen=True, slots=True)
class Warninglist:
    name: str
    domains: frozenset[str]

    @classmethod
    def default(cls) -> Warninglist:
        text = resources.files("node.data").joinpath(WARNINGLIST_RESOURCE).read_text("utf-8")
        name = next((line[1:].strip() for line in text.splitlines() if line.startswith("#")), "")
        return cls(name, frozenset(_bare(value) for _, value in _lines(text)))

    def hits(self, draft: alert_pb2.Alert) -> list[str]:
        """The draft's domain indicators (normalised) that are on the list."""
        hits = []
        for ind in draft.indicators:
            if ind.type != alert_pb2.INDICATOR_TYPE_DOMAIN:
                continue
            try:
                value = indicators.normalize(ind.type, ind.value, strict=False).value
            except InvalidAlert:
                continue  # publishing refuses it anyway, with the indicator's own error
            if _bare(value) in self.domains:
                hits.append(value)
        return hits

    def refuse(self, draft: alert_pb2.Alert) -> None:
        hits = self.hits(draft)
        if hits:
            raise InvalidAlert(
                f"{', '.join(hits)} {'is' if len(hits) == 1 else 'are'} on the warninglist of "
                "widely used domains (MISP moz-top500): flagging it would flag a site most "
                "people use; if you mean it, publish again with --force (PublishRequest.force)"
            )
