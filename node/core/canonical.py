"""The canonical spelling of each kind of indicator (node/core/indicators.py keeps the
types, the keys and the table of which rule normalises which type).

Each rule takes the stripped text of a value and `strict` (publishing and ingesting:
checksums are checked; lookups: never rejected on checksum grounds), and returns the
canonical value or raises Reason. The rules per type:

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
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import idna

from node.core import blockchains as chains

_DOMAIN_FAST = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})+")
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
URL_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")
_AUTHORITY_END = re.compile(r"[/?#]")
IPV4_SHAPE = re.compile(r"[0-9.]+")
_ESCAPE_OR_UNSAFE = re.compile(r"%([0-9A-Fa-f]{2})|[^\x21-\x7e]")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_EMAIL_LOCAL = re.compile(r"[^\s@]{1,64}")
_PLATFORM = re.compile(r"[a-z][a-z0-9._-]{0,31}")
_HANDLE_NAME = re.compile(r"[^\s:]{1,256}")
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
CANONICAL_IPV4 = _CANONICAL_IPV4.pattern  # also indicators.flagged_keys's fast path
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


class Reason(Exception):
    """Why a value is invalid; indicators.normalize() prefixes the type and the value."""


def address(text: str, strict: bool) -> str:
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
        raise Reason(str(exc)) from None


def tx(text: str, strict: bool) -> str:
    if _PLAIN_EVM_TX.fullmatch(text):
        return text.lower()  # all that the chain and hash rules below would change
    chain, sep, tx_hash = text.rpartition(":")
    try:
        if not sep:
            return chains.bare_tx_hash(tx_hash)
        chain = chains.caip2(chain)
        return f"{chain}:{chains.tx_hash(chain, tx_hash)}"
    except ValueError as exc:
        raise Reason(str(exc)) from None


def domain(text: str, strict: bool) -> str:
    return hostname(text, wildcard=True)


def hostname(text: str, *, wildcard: bool = False) -> str:
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
        raise Reason("a domain is a host name only, without scheme, port or path (see url:)")
    if len(host) > 253:
        raise Reason(f"a domain is at most 253 characters, not {len(host)}")
    if not _DOMAIN_FAST.fullmatch(host):
        labels = host.split(".")
        if len(labels) < 2:
            raise Reason("a domain has at least two labels, e.g. evil.example")
        bad = next((label for label in labels if not _LABEL.fullmatch(label)), host)
        raise Reason(f"label '{bad}' is not 1-63 letters, digits, hyphens or underscores")
    if host.rpartition(".")[2].isdigit():
        raise Reason("the last label is all digits; write an IP address as ip:ADDRESS")
    if _underscore_in_registrable(host):
        label = next(label for label in host.rsplit(".", 2)[-2:] if "_" in label)
        raise Reason(
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
        raise Reason(f"not a valid internationalised domain name (IDNA 2008): {exc}") from None


def _plain_hostname(text: str) -> str | None:
    """hostname(text) for a text _PLAIN_HOST matches (only the case, [.] and one trailing
    dot to undo), or None where hostname raises or could read it as an IPv4 address."""
    host = text.replace("[.]", ".").lower().removesuffix(".")
    if (
        len(host) <= 253
        and not host.rpartition(".")[2].isdigit()
        and not _underscore_in_registrable(host)
    ):
        return host
    return None


def url(text: str, strict: bool) -> str:
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
    match = URL_SCHEME.match(text)
    if not match:
        raise Reason("a URL starts with http:// or https:// (to flag a whole site, use domain:)")
    scheme = _SCHEMES.get(match.group(1).lower())
    if scheme is None:
        raise Reason(f"only http(s) URLs are accepted, not {match.group(1)}:; use other: instead")
    rest = text[match.end() :]
    end = _AUTHORITY_END.search(rest)
    cut = end.start() if end else len(rest)
    try:
        parts = urlsplit(f"{scheme}://{rest[:cut].replace('[.]', '.')}{rest[cut:]}")
        port = parts.port
    except ValueError as exc:
        raise Reason(f"not a valid URL: {exc}") from None
    if not parts.hostname:
        raise Reason("the URL has no host")
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
        ip = ip_address(host)
        return f"[{ip}]" if ":" in ip else ip
    if IPV4_SHAPE.fullmatch(host):
        return ip_address(host)
    return hostname(host)


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


def ip(text: str, strict: bool) -> str:
    return ip_address(text.replace("[.]", "."))


def ip_address(text: str) -> str:
    if _CANONICAL_IPV4.fullmatch(text):  # what str(IPv4Address(text)) would give
        return text
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "/" in text:
        raise Reason("one address is expected, not a network (CIDR); flag each address")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise Reason("not an IPv4 or IPv6 address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def email(text: str, strict: bool) -> str:
    match = _PLAIN_EMAIL.fullmatch(text)
    if match and (host := _plain_hostname(match.group(2))) is not None:
        return f"{match.group(1).lower()}@{host}"  # the replacements below change nothing
    if text[:7].lower() == "mailto:":
        text = text[7:]
    text = text.partition("?")[0].replace("[at]", "@").replace("[@]", "@").replace("[.]", ".")
    local, at, domain = text.rpartition("@")
    if not at:
        raise Reason("an email address is local@domain")
    if not _EMAIL_LOCAL.fullmatch(local):
        raise Reason("the part before @ is 1-64 characters without spaces or @")
    return f"{local.lower()}@{hostname(domain)}"


def handle(text: str, strict: bool) -> str:
    platform, sep, name = text.lower().rpartition(":")
    name = name.strip().removeprefix("@")
    platform = platform.strip()
    if sep and not _PLATFORM.fullmatch(platform):
        raise Reason(f"platform '{platform}' is not a-z, 0-9, '.', '_', '-' (e.g. telegram:)")
    if not _HANDLE_NAME.fullmatch(name):
        raise Reason("a handle is a name without spaces or ':', optionally PLATFORM:name")
    return f"{platform}:{name}" if sep else name


def other(text: str, strict: bool) -> str:
    return " ".join(text.split())
