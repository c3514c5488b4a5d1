"""Indicators: the typed values an alert flags, their canonical spelling, and index keys.

Normalisation makes "is this flagged?" answer the same for every spelling of a value.
`normalize(type, value, strict=True)` is for publishing and ingesting alerts and also
checks checksums; `strict=False` is for lookups and never rejects on checksum grounds.
Values are stripped of surrounding whitespace; an empty value, or one longer than
max_indicator_chars (2048), is invalid. The rules per type:

address  CAIP-10 `CHAIN:ACCOUNT`, or a bare EVM or bitcoin account meaning "on every
         chain of its family". Chains, aliases and per-chain rules: node/core/blockchains.py.
tx       `CHAIN:TXHASH`, or a bare EVM (0x + 64 hex) or bitcoin (64 hex) hash.
domain   `[.]` defanging undone, one trailing dot and a leading `*.` stripped, lower case.
         A name with non-ASCII characters is mapped as browsers map it: UTS #46 mapping
         (non-transitional, so `faß` stays `faß`), then each non-ASCII label to its IDNA
         2008 A-label (`faß.example` -> `xn--fa-hia.example`; the stdlib's IDNA 2003 codec
         would give `fass.example`, another domain). At least two labels; each 1-63
         letters, digits, hyphens or underscores; at most 253 characters; the last label
         is not all digits (that is an IP address: write ip:). An underscore may appear
         only below the registrable domain, i.e. not in the last two labels
         (`ether_promo.kissr.com` is a host name browsers resolve; `a_b.com` cannot be
         registered). Without a public-suffix list "the last two" is the rule, so
         `x_y.co.uk` passes too.
url      http/https only (hxxp/hxxps and `[.]` in the host are undone). Scheme and host
         lower case (the host normalised like a domain, or an IP literal), default port
         dropped, empty path -> "/", fragment dropped. In path and query, escapes are
         upper case, escaped unreserved characters are decoded, and spaces and non-ASCII
         characters are percent-encoded; the query is otherwise kept (not reordered).
ip       one IPv4 or IPv6 address (no CIDR), compressed; IPv4-mapped IPv6 becomes IPv4.
email    `mailto:` and any `?…` dropped; domain normalised like a domain; the local part
         is lower-cased too (most providers ignore its case). No dot or +tag folding.
handle   `@` dropped, lower case; an optional `platform:` prefix is kept (telegram:bob).
other    whitespace collapsed; compared case-sensitively.

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

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

from node._pb.alertmesh.v1 import alert_pb2
from node.core import blockchains as chains
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

_DOMAIN_FAST = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})+")
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_URL_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")
_AUTHORITY_END = re.compile(r"[/?#]")
_IPV4_SHAPE = re.compile(r"[0-9.]+")
_IP_SHAPE = re.compile(r"\[?[0-9a-fA-F:.]+(?:%[-\w.]+)?\]?(?:/[0-9]{1,3})?")
_ESCAPE_OR_UNSAFE = re.compile(r"%([0-9A-Fa-f]{2})|[^\x21-\x7e]")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_EMAIL_LOCAL = re.compile(r"[^\s@]{1,64}")
_EMAIL_SHAPE = re.compile(r"(?i:mailto:)?[^\s@:/]+@[^\s@:/]+\.[^\s@:/]+")
_PLATFORM = re.compile(r"[a-z][a-z0-9._-]{0,31}")
_HANDLE_NAME = re.compile(r"[^\s:]{1,256}")
_HANDLE_SHAPE = re.compile(r"(?:[a-zA-Z][a-zA-Z0-9._-]{0,31}:)?@[^\s:]+")
# Fast paths for the common spellings; each is checked against the general path in tests.
# EVM values on a decimal chain id (or bare) that normalise by lower-casing alone.
_EVM_PREFIX = r"(?:[eE][iI][pP]155:[1-9][0-9]{0,29}:)?0[xX]"
_PLAIN_EVM_ACCOUNT = re.compile(rf"{_EVM_PREFIX}[0-9a-fA-F]{{40}}")
_PLAIN_EVM_TX = re.compile(rf"{_EVM_PREFIX}[0-9a-fA-F]{{64}}")
_PLAIN_HOST = re.compile(r"[a-zA-Z0-9_-]{1,63}(?:(?:\.|\[\.\])[a-zA-Z0-9_-]{1,63})+\.?")
# An ASCII "mailto:" at most, and no "?…", "[at]" or second "@" to undo.
_PLAIN_EMAIL = re.compile(
    rf"(?:[mM][aA][iI][lL][tT][oO]:)?([^\s@?:\[]{{1,64}})@({_PLAIN_HOST.pattern})"
)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
# http(s)/hxxp(s), a plain host, a port, then path, query and fragment as urlsplit cuts
# them (it deletes tabs and newlines, so those take the general path).
_PLAIN_URL = re.compile(
    r"((?:[hH][tT][tT]|[hH][xX][xX])[pP][sS]?)://"
    rf"({_PLAIN_HOST.pattern})"
    r"(?::([0-9]{1,5}))?"
    r"(/[^?#\t\r\n]*)?"
    r"(?:\?([^#\t\r\n]*))?"
    r"(?:#.*)?",
    re.DOTALL,
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEMES = {"http": "http", "https": "https", "hxxp": "http", "hxxps": "https"}


@dataclass(frozen=True, slots=True)
class Indicator:
    """A normalised indicator; make one with normalize() or parse()."""

    type: int  # an alert_pb2.IndicatorType value
    value: str  # canonical spelling

    def __str__(self) -> str:
        return f"{type_name(self.type)}:{self.value}"


class _Reason(Exception):
    """Why a value is invalid; normalize() prefixes the type and the value."""


def type_name(t: int) -> str:
    """The CLI name of an indicator type ("address", "tx", ...); str(t) if unknown."""
    return _NAME_OF_TYPE.get(t, str(t))


def normalize(type: int, value: str, *, strict: bool = True) -> Indicator:
    """The canonical form of a typed value; InvalidIndicator says why it is not valid."""
    return Indicator(type, _normal(type, value, strict))


def flagged_keys(type: int, value: str) -> list[str]:
    """index_keys(normalize(type, value)), without the Indicator in between: a node
    runs this for every indicator of every alert it receives."""
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
    except _Reason as exc:
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
    if _IPV4_SHAPE.fullmatch(host):
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
        if _URL_SCHEME.match(text):
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
        _ip_address(text.partition("/")[0])  # a network is an ip, rejected with a reason
    except _Reason:
        return False
    return True


def _is_domain(text: str) -> bool:
    try:
        _hostname(text, wildcard=True)
    except _Reason:
        return False
    return True


# --- normalisers: each takes stripped text and returns the canonical value -------------


def _address(text: str, strict: bool) -> str:
    if _PLAIN_EVM_ACCOUNT.fullmatch(text) and (
        not strict or text[-40:].islower() or text[-40:].isupper()  # no checksum to check
    ):
        return text.lower()  # all that the chain and account rules below would change
    chain, sep, account = text.rpartition(":")
    try:
        if not sep:
            return chains.bare_account(account, strict=strict)
        chain = chains.caip2(chain)
        return f"{chain}:{chains.account(chain, account, strict=strict)}"
    except ValueError as exc:
        raise _Reason(str(exc)) from None


def _tx(text: str, strict: bool) -> str:
    if _PLAIN_EVM_TX.fullmatch(text):
        return text.lower()  # all that the chain and hash rules below would change
    chain, sep, tx_hash = text.rpartition(":")
    try:
        if not sep:
            return chains.bare_tx_hash(tx_hash)
        chain = chains.caip2(chain)
        return f"{chain}:{chains.tx_hash(chain, tx_hash)}"
    except ValueError as exc:
        raise _Reason(str(exc)) from None


def _domain(text: str, strict: bool) -> str:
    return _hostname(text, wildcard=True)


def _hostname(text: str, *, wildcard: bool = False) -> str:
    if _PLAIN_HOST.fullmatch(text) and (host := _plain_hostname(text)) is not None:
        return host  # ASCII labels: the steps below only undo case, [.] and a final dot
    host = text.replace("[.]", ".").lower()
    if not host.isascii():
        host = _idna_host(host)
    if host.endswith("."):
        host = host[:-1]
    if wildcard and host.startswith("*."):
        host = host[2:]
    if "/" in host or ":" in host:
        raise _Reason("a domain is a host name only, without scheme, port or path (see url:)")
    if len(host) > 253:
        raise _Reason(f"a domain is at most 253 characters, not {len(host)}")
    if not _DOMAIN_FAST.fullmatch(host):
        labels = host.split(".")
        if len(labels) < 2:
            raise _Reason("a domain has at least two labels, e.g. evil.example")
        bad = next((label for label in labels if not _LABEL.fullmatch(label)), host)
        raise _Reason(f"label '{bad}' is not 1-63 letters, digits, hyphens or underscores")
    if host.rpartition(".")[2].isdigit():
        raise _Reason("the last label is all digits; write an IP address as ip:ADDRESS")
    if _underscore_in_registrable(host):
        label = next(label for label in host.rsplit(".", 2)[-2:] if "_" in label)
        raise _Reason(
            f"label '{label}' has an underscore, which only labels below the registrable"
            " domain may have (not the last two)"
        )
    return host


def _underscore_in_registrable(host: str) -> bool:
    return "_" in host and "_" in ".".join(host.rsplit(".", 2)[-2:])


def _idna_host(host: str) -> str:
    """UTS #46 mapping (non-transitional), then IDNA 2008 A-labels for non-ASCII labels.

    ASCII labels are left to the rules above (idna would refuse an underscore)."""
    try:
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
        if "" in mapped.removesuffix(".").split("."):
            raise idna.IDNAError("a label is empty once mapped (UTS #46 drops some characters)")
        return ".".join(
            label if label.isascii() else idna.alabel(label).decode("ascii")
            for label in mapped.split(".")
        )
    except idna.IDNAError as exc:
        raise _Reason(f"not a valid internationalised domain name (IDNA 2008): {exc}") from None


def _plain_hostname(text: str) -> str | None:
    """_hostname(text) for a text _PLAIN_HOST matches (only the case, [.] and one trailing
    dot to undo), or None where _hostname raises or could read it as an IPv4 address."""
    host = text.replace("[.]", ".").lower().removesuffix(".")
    if (
        len(host) <= 253
        and not host.rpartition(".")[2].isdigit()
        and not _underscore_in_registrable(host)
    ):
        return host
    return None


def _url(text: str, strict: bool) -> str:
    match = _PLAIN_URL.fullmatch(text)
    if match:  # the steps of _any_url(), with urlsplit's cuts done by the regex
        scheme, host, port_digits, path, query = match.groups()
        port = int(port_digits) if port_digits else None
        if port is None or port <= 65535:  # else urlsplit's error, from _any_url()
            scheme = _SCHEMES[scheme.lower()]
            netloc = _plain_hostname(host)
            if netloc is None:  # an IPv4 address, or a reason to refuse it
                netloc = _url_host(host.replace("[.]", ".").lower())
            if port is not None and port != _DEFAULT_PORTS[scheme]:
                netloc = f"{netloc}:{port}"
            path = _normalize_escapes(path or "") or "/"
            query = _normalize_escapes(query or "")
            return f"{scheme}://{netloc}{path}?{query}" if query else f"{scheme}://{netloc}{path}"
    return _any_url(text)


def _any_url(text: str) -> str:
    match = _URL_SCHEME.match(text)
    if not match:
        raise _Reason("a URL starts with http:// or https:// (to flag a whole site, use domain:)")
    scheme = _SCHEMES.get(match.group(1).lower())
    if scheme is None:
        raise _Reason(f"only http(s) URLs are accepted, not {match.group(1)}:; use other: instead")
    rest = text[match.end() :]
    end = _AUTHORITY_END.search(rest)
    cut = end.start() if end else len(rest)
    try:
        parts = urlsplit(f"{scheme}://{rest[:cut].replace('[.]', '.')}{rest[cut:]}")
        port = parts.port
    except ValueError as exc:
        raise _Reason(f"not a valid URL: {exc}") from None
    if not parts.hostname:
        raise _Reason("the URL has no host")
    netloc = _url_host(parts.hostname)
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        netloc = f"{userinfo}@{netloc}"
    path = _normalize_escapes(parts.path) or "/"
    query = _normalize_escapes(parts.query)
    return f"{scheme}://{netloc}{path}?{query}" if query else f"{scheme}://{netloc}{path}"


def _url_host(host: str) -> str:
    if ":" in host:
        ip = _ip_address(host)
        return f"[{ip}]" if ":" in ip else ip
    if _IPV4_SHAPE.fullmatch(host):
        return _ip_address(host)
    return _hostname(host)


def _normalize_escapes(text: str) -> str:
    if "%" not in text and text.isascii() and text.isprintable() and " " not in text:
        return text
    return _ESCAPE_OR_UNSAFE.sub(_fix_escape, text)


def _fix_escape(match: re.Match[str]) -> str:
    pair = match.group(1)
    if pair is None:  # a space, control or non-ASCII character: percent-encode its UTF-8
        return "".join(f"%{b:02X}" for b in match.group().encode("utf-8", "surrogatepass"))
    char = chr(int(pair, 16))
    return char if char in _UNRESERVED else f"%{pair.upper()}"


def _ip(text: str, strict: bool) -> str:
    return _ip_address(text.replace("[.]", "."))


def _ip_address(text: str) -> str:
    if _CANONICAL_IPV4.fullmatch(text):  # what str(IPv4Address(text)) would give
        return text
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "/" in text:
        raise _Reason("one address is expected, not a network (CIDR); flag each address")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise _Reason("not an IPv4 or IPv6 address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _email(text: str, strict: bool) -> str:
    match = _PLAIN_EMAIL.fullmatch(text)
    if match and (host := _plain_hostname(match.group(2))) is not None:
        return f"{match.group(1).lower()}@{host}"  # the replacements below change nothing
    if text[:7].lower() == "mailto:":
        text = text[7:]
    text = text.partition("?")[0].replace("[at]", "@").replace("[@]", "@").replace("[.]", ".")
    local, at, domain = text.rpartition("@")
    if not at:
        raise _Reason("an email address is local@domain")
    if not _EMAIL_LOCAL.fullmatch(local):
        raise _Reason("the part before @ is 1-64 characters without spaces or @")
    return f"{local.lower()}@{_hostname(domain)}"


def _handle(text: str, strict: bool) -> str:
    platform, sep, name = text.lower().rpartition(":")
    name = name.strip().removeprefix("@")
    platform = platform.strip()
    if sep and not _PLATFORM.fullmatch(platform):
        raise _Reason(f"platform '{platform}' is not a-z, 0-9, '.', '_', '-' (e.g. telegram:)")
    if not _HANDLE_NAME.fullmatch(name):
        raise _Reason("a handle is a name without spaces or ':', optionally PLATFORM:name")
    return f"{platform}:{name}" if sep else name


def _other(text: str, strict: bool) -> str:
    return " ".join(text.split())


_NORMALIZERS: dict[int, Callable[[str, bool], str]] = {
    ADDRESS: _address,
    TX: _tx,
    DOMAIN: _domain,
    URL: _url,
    IP: _ip,
    EMAIL: _email,
    HANDLE: _handle,
    OTHER: _other,
}
