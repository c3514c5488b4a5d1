"""Indicators: the typed values an alert flags, their canonical spelling, and index keys.

Normalisation makes "is this flagged?" answer the same for every spelling of a value.
`normalize(type, value, strict=True)` is for publishing and ingesting alerts and also
checks checksums; `strict=False` is for lookups and never rejects on checksum grounds.
Values are stripped of surrounding whitespace; an empty value, or one longer than
max_indicator_chars (2048), is invalid.

The rules per type, and the code that applies them: node/core/canonical.py.

Keys (a lookup matches when any lookup key equals any index key). FAM is `evm` (every
eip155 chain) or `btc` (every bip122 chain); a full CAIP-10 lookup matches only its chain:

  key                 index_keys (flagged)             lookup_keys (asked about)
  a:CHAIN:ACCT        address on that chain            full CAIP-10 address
  af:FAM:ACCT         any address of a family          bare account
  aa:FAM:ACCT         bare account (all chains)        full CAIP-10 address of a family
  t:, tf:, ta:        the same for tx hashes
  h:PLATFORM:NAME     handle on a platform             handle with platform
  hf:NAME / ha:NAME   any handle / bare handle         bare handle / handle with platform
  d:DOMAIN            flagged domain                   the domain and its parents down to
                                                       two labels; also for URL and email
                                                       hosts (no public-suffix list)
  u:URL               flagged URL                      URL (plus d: or i: of its host)
  i:IP, e:EMAIL, o:TEXT  exact values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from node._pb.alertmesh.v1 import alert_pb2
from node.core import blockchains as chains
from node.core import canonical
from node.core.errors import InvalidIndicator
from node.core.limits import DEFAULT_LIMITS

ADDRESS = alert_pb2.INDICATOR_TYPE_ADDRESS
TX = alert_pb2.INDICATOR_TYPE_TX
DOMAIN = alert_pb2.INDICATOR_TYPE_DOMAIN
URL = alert_pb2.INDICATOR_TYPE_URL
IP = alert_pb2.INDICATOR_TYPE_IP
EMAIL = alert_pb2.INDICATOR_TYPE_EMAIL
HANDLE = alert_pb2.INDICATOR_TYPE_HANDLE
OTHER = alert_pb2.INDICATOR_TYPE_OTHER

TYPE_NAMES: dict[str, int] = {
    name.removeprefix("INDICATOR_TYPE_").lower(): value
    for name, value in alert_pb2.IndicatorType.items()
    if value
}
_NAME_OF_TYPE = {value: name for name, value in TYPE_NAMES.items()}

MAX_VALUE_CHARS = DEFAULT_LIMITS.max_indicator_chars

_IP_SHAPE = re.compile(r"\[?[0-9a-fA-F:.]+(?:%[-\w.]+)?\]?(?:/[0-9]{1,3})?")
_EMAIL_SHAPE = re.compile(r"(?i:mailto:)?[^\s@:/]+@[^\s@:/]+\.[^\s@:/]+")
_HANDLE_SHAPE = re.compile(r"(?:[a-zA-Z][a-zA-Z0-9._-]{0,31}:)?@[^\s:]+")


@dataclass(frozen=True, slots=True)
class Indicator:
    """A normalised indicator; make one with normalize() or parse()."""

    type: int  # an alert_pb2.IndicatorType value
    value: str  # canonical spelling

    def __str__(self) -> str:
        return f"{type_name(self.type)}:{self.value}"


def type_name(t: int) -> str:
    """The CLI name of an indicator type ("address", "tx", ...); str(t) if unknown."""
    return _NAME_OF_TYPE.get(t, str(t))


def normalize(type: int, value: str, *, strict: bool = True) -> Indicator:
    """The canonical form of a typed value; InvalidIndicator says why it is not valid."""
    return Indicator(type, _normal(type, value, strict))


def flagged_keys(type: int, value: str) -> list[str]:
    """index_keys(normalize(type, value)), without the Indicator in between: a node
    runs this for every indicator of every alert it receives."""
    fast = _CANONICAL.get(type)
    if fast is not None and fast.fullmatch(value) and len(value) <= MAX_VALUE_CHARS:
        # Already canonical (normalize() would return it unchanged): its keys at once.
        exact = _EXACT_PREFIX.get(type)
        if exact is not None:
            return [f"{exact}:{value}"]
        p = _SCOPED_PREFIX[type]  # an EVM account or tx hash
        scope, _, ident = value.rpartition(":")
        if scope:
            return [f"{p}:{value}", f"{p}f:evm:{ident}"]
        return [f"{p}f:evm:{ident}", f"{p}a:evm:{ident}"]
    normal = _normal(type, value, True)
    prefix = _SCOPED_PREFIX.get(type)
    if prefix is None:
        return [f"{_EXACT_PREFIX[type]}:{normal}"]
    return _scoped_keys(prefix, type, normal)


def _normal(type: int, value: str, strict: bool) -> str:
    name = _NAME_OF_TYPE.get(type)
    if name is None:
        raise InvalidIndicator(f"unknown indicator type {type}; use one of {', '.join(TYPE_NAMES)}")
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidIndicator(
            f"{name} is {len(value)} characters long; the limit is {MAX_VALUE_CHARS}"
        )
    text = value.strip()
    if not text:
        raise InvalidIndicator(f"{name} is empty")
    try:
        return _NORMALIZERS[type](text, strict)
    except canonical.Reason as exc:
        shown = text if len(text) <= 100 else text[:100] + "…"
        raise InvalidIndicator(f"{name} '{shown}': {exc}") from None


def parse(text: str, *, strict: bool = True) -> Indicator:
    """Parse "TYPE:VALUE" (TYPE case-insensitive) or a bare value whose type is inferred."""
    stripped = text.strip()
    head, sep, rest = stripped.partition(":")
    typed = TYPE_NAMES.get(head.lower()) if sep else None
    if typed is not None:
        return normalize(typed, rest, strict=strict)
    if not stripped:
        raise InvalidIndicator("the indicator is empty")
    if len(stripped) > MAX_VALUE_CHARS:
        raise InvalidIndicator(
            f"the indicator is {len(stripped)} characters long; the limit is {MAX_VALUE_CHARS}"
        )
    return normalize(_infer_type(stripped), stripped, strict=strict)


def index_keys(ind: Indicator) -> list[str]:
    """The store keys of a flagged (published) indicator."""
    prefix = _SCOPED_PREFIX.get(ind.type)
    if prefix is None:
        return [_exact_key(ind)]
    return _scoped_keys(prefix, ind.type, ind.value)


def _scoped_keys(prefix: str, type: int, value: str) -> list[str]:
    scope, family, ident = _scoped(type, value)
    if not scope:
        return [f"{prefix}f:{family}{ident}", f"{prefix}a:{family}{ident}"]
    if family is None:
        return [f"{prefix}:{scope}:{ident}"]
    return [f"{prefix}:{scope}:{ident}", f"{prefix}f:{family}{ident}"]


def lookup_keys(ind: Indicator) -> list[str]:
    """The store keys to look up for "is this flagged?"; see the table above."""
    t, v = ind.type, ind.value
    prefix = _SCOPED_PREFIX.get(t)
    if prefix is not None:
        scope, family, ident = _scoped(t, v)
        if not scope:
            return [f"{prefix}f:{family}{ident}"]
        if family is None:
            return [f"{prefix}:{scope}:{ident}"]
        return [f"{prefix}:{scope}:{ident}", f"{prefix}a:{family}{ident}"]
    if t == DOMAIN:
        return _domain_keys(v)
    if t == URL:
        return [f"u:{v}", *_host_keys(_url_host_of(v))]
    if t == EMAIL:
        return [f"e:{v}", *_domain_keys(v.rpartition("@")[2])]
    return [_exact_key(ind)]


# --- keys -----------------------------------------------------------------------------

_EXACT_PREFIX: dict[int, str] = {DOMAIN: "d", URL: "u", IP: "i", EMAIL: "e", OTHER: "o"}
_SCOPED_PREFIX: dict[int, str] = {ADDRESS: "a", TX: "t", HANDLE: "h"}
# Values as normalize() spells them, which authors' nodes sign, so nearly every value a
# node receives: normalize() returns them unchanged (strict checks included), and
# flagged_keys() builds their keys without it. Each is checked against the general path
# in tests (tests/test_ingest_fast_paths.py). EVM accounts and tx hashes in lower case
# (no EIP-55 checksum to check) on a decimal chain id without leading zeros, or bare; a
# host name in lower case whose last label is not all digits and whose last two labels
# have no underscore, at most 253 characters; emails and http(s) URLs on such a host
# (a URL with a path, no port, no fragment, and nothing to escape or unescape).
_CANONICAL_HOST = (
    r"(?=[a-z0-9_.-]{1,253}(?![a-z0-9_.-]))(?:[a-z0-9_-]{1,63}\.)*"
    r"[a-z0-9-]{1,63}\.(?![0-9]+(?![a-z0-9-]))[a-z0-9-]{1,63}"
)
_CANONICAL: dict[int, re.Pattern[str]] = {
    ADDRESS: re.compile(r"(?:eip155:[1-9][0-9]{0,29}:)?0x[0-9a-f]{40}"),
    TX: re.compile(r"(?:eip155:[1-9][0-9]{0,29}:)?0x[0-9a-f]{64}"),
    DOMAIN: re.compile(_CANONICAL_HOST),
    EMAIL: re.compile(rf"[a-z0-9._%+-]{{1,64}}@{_CANONICAL_HOST}"),
    URL: re.compile(rf"https?://{_CANONICAL_HOST}/[!\"$&->@-~]*(?:\?[!\"$&-~]+)?"),
    IP: re.compile(canonical.CANONICAL_IPV4),
}


def _exact_key(ind: Indicator) -> str:
    return f"{_EXACT_PREFIX[ind.type]}:{ind.value}"


def _scoped(type: int, value: str) -> tuple[str, str | None, str]:
    """(scope, "FAM:" or None, ident) of an address or tx; for a handle FAM: is ""."""
    scope, _, ident = value.rpartition(":")
    if type == HANDLE:
        return scope, "", ident
    family = chains.family(scope, ident)
    return scope, None if family is None else f"{family}:", ident


def _domain_keys(domain: str) -> list[str]:
    keys = []
    while "." in domain:  # the domain and its parents of two labels or more
        keys.append(f"d:{domain}")
        domain = domain.partition(".")[2]
    return keys


def _url_host_of(url: str) -> str:
    authority = url.partition("://")[2].partition("/")[0]
    host = authority.rpartition("@")[2]
    return host.partition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]


def _host_keys(host: str) -> list[str]:
    if host.startswith("["):
        return [f"i:{host[1:-1]}"]
    if canonical.IPV4_SHAPE.fullmatch(host):
        return [f"i:{host}"]
    return _domain_keys(host)


# --- type inference -------------------------------------------------------------------


def _infer_type(text: str) -> int:
    # The first shape that fits decides; the `in` tests only skip shapes that cannot fit.
    if text[:2] in ("0x", "0X"):  # never a bare bitcoin address
        if chains.is_bare_evm_account(text):
            return ADDRESS
        if chains.is_bare_evm_tx(text):
            return TX
    elif chains.is_bare_bitcoin(text):
        return ADDRESS
    if ":" in text:
        if canonical.URL_SCHEME.match(text):
            return URL
        kind = chains.caip10_kind(text)  # only for known namespaces and aliases
        if kind is not None:
            return ADDRESS if kind == "account" else TX
    if _is_ip(text):
        return IP
    if "@" in text:
        if _EMAIL_SHAPE.fullmatch(text):
            return EMAIL
        if _HANDLE_SHAPE.fullmatch(text):
            return HANDLE
    if _is_domain(text):
        return DOMAIN
    return OTHER


def _is_ip(text: str) -> bool:
    text = text.replace("[.]", ".")
    if not _IP_SHAPE.fullmatch(text):
        return False
    try:
        canonical.ip_address(text.partition("/")[0])  # a network is an ip, rejected with a reason
    except canonical.Reason:
        return False
    return True


def _is_domain(text: str) -> bool:
    try:
        canonical.hostname(text, wildcard=True)
    except canonical.Reason:
        return False
    return True


_NORMALIZERS: dict[int, Callable[[str, bool], str]] = {
    ADDRESS: canonical.address,
    TX: canonical.tx,
    DOMAIN: canonical.domain,
    URL: canonical.url,
    IP: canonical.ip,
    EMAIL: canonical.email,
    HANDLE: canonical.handle,
    OTHER: canonical.other,
}
