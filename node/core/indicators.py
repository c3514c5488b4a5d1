"""Indicators: the typed values an alert flags, their canonical spelling, and index keys.

Normalisation makes "is this flagged?" answer the same for every spelling of a value.
`normalize(type, value, strict=True)` is for publishing and ingesting alerts and also
checks checksums; `strict=False` is for lookups and never rejects on checksum grounds.
Values are stripped of surrounding whitespace; an empty value, or one longer than
max_indicator_chars (2048), is invalid. The rules per type:

address  CAIP-10 `CHAIN:ACCOUNT`; CHAIN is CAIP-2 `namespace:reference` (namespace lower
         case) or an alias in CHAIN_ALIASES. Tron has no registered CAIP-2 id: we use
         `tron:mainnet`. Accounts by namespace:
         eip155  0x + 40 hex, stored lower case; chain id decimal without leading zeros
                 (`eip155:0x1` is accepted). Strict: mixed case must pass EIP-55.
         bip122  reference is 32 lower-case hex digits. base58check (kept as is) or
                 bech32/bech32m segwit (stored lower case). On bitcoin mainnet and testnet
                 the prefix/version must fit the network. Strict: checksums, segwit rules.
         solana  base58 of 32 bytes, case-sensitive.  tron  base58check T… (strict: checksum).
         other   [-.%a-zA-Z0-9]{1,128}, unchanged.
         A bare account (no chain) is allowed for EVM (0x…) and bitcoin mainnet (1…, 3…,
         bc1…) and means "this account on every chain of its family".
tx       `CHAIN:TXHASH`. eip155: 0x + 64 hex, lower case. bip122 and tron: 64 hex, lower
         case, written without 0x (0x is rejected, not stripped). solana: base58 of 64
         bytes. Bare: 0x + 64 hex (EVM family) or 64 hex (bitcoin family).
domain   lower case, IDNA 2003 (stdlib codec) to punycode, `[.]` defanging undone, one
         trailing dot and a leading `*.` stripped. At least two labels; each 1-63 letters,
         digits or hyphens; at most 253 characters; the last label is not all digits.
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

Keys (a lookup matches when any lookup key equals any index key). FAM is `evm` (all
eip155 chains) or `btc` (all bip122 chains):

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
from typing import TypeVar
from urllib.parse import urlsplit

from node._pb.alertmesh.v1 import alert_pb2
from node.core import chains
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
_T = TypeVar("_T")
_NAME_OF_TYPE = {value: name for name, value in TYPE_NAMES.items()}

MAX_VALUE_CHARS = DEFAULT_LIMITS.max_indicator_chars

BITCOIN_MAINNET = "bip122:000000000019d6689c085ae165831e93"
BITCOIN_TESTNET = "bip122:000000000933ea01ad0ee984209779ba"
CHAIN_ALIASES: dict[str, str] = {
    "ethereum": "eip155:1",
    "eth": "eip155:1",
    "mainnet": "eip155:1",
    "polygon": "eip155:137",
    "matic": "eip155:137",
    "bsc": "eip155:56",
    "bnb": "eip155:56",
    "arbitrum": "eip155:42161",
    "optimism": "eip155:10",
    "base": "eip155:8453",
    "avalanche": "eip155:43114",
    "bitcoin": BITCOIN_MAINNET,
    "btc": BITCOIN_MAINNET,
    "tron": "tron:mainnet",
    "trx": "tron:mainnet",
    "solana": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
    "sol": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
}
# Namespaces whose accounts and tx hashes this module checks; a bare CAIP-10 string is
# recognised by parse() only for these (or an alias).
KNOWN_NAMESPACES = frozenset({"eip155", "bip122", "solana", "tron"})
_FAMILIES = {"eip155": "evm:", "bip122": "btc:"}
_CASE_INSENSITIVE_REFERENCES = frozenset({"bip122", "tron"})
# Well-known bitcoin networks: segwit prefix, base58 version bytes, what they look like.
_BITCOIN_NETWORKS = {
    BITCOIN_MAINNET: ("bc", frozenset({0x00, 0x05}), "1… or 3…"),
    BITCOIN_TESTNET: ("tb", frozenset({0x6F, 0xC4}), "m…, n… or 2…"),
}

_EVM_ACCOUNT = re.compile(r"0[xX][0-9a-fA-F]{40}")
_EVM_TX = re.compile(r"0[xX][0-9a-fA-F]{64}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX32_LOWER = re.compile(r"[0-9a-f]{32}")
_EVM_CHAIN_ID = re.compile(r"([0-9]{1,30})|0[xX]([0-9a-fA-F]{1,24})")
_CAIP2_NAMESPACE = re.compile(r"[-a-z0-9]{3,8}")
_CAIP2_REFERENCE = re.compile(r"[-_a-zA-Z0-9]{1,32}")
_CAIP10_ACCOUNT = re.compile(r"[-.%a-zA-Z0-9]{1,128}")
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]+")
_BECH32_SHAPE = re.compile(r"[a-zA-Z]{1,83}1[02-9ac-hj-np-zAC-HJ-NP-Z]{6,87}")
_BARE_BITCOIN = re.compile(r"[13][1-9A-HJ-NP-Za-km-z]{24,34}|(?i:bc1[02-9ac-hj-np-z]{6,87})")
_DOMAIN_FAST = re.compile(r"[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})+")
_LABEL = re.compile(r"[a-z0-9-]{1,63}")
_URL_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")
_AUTHORITY_END = re.compile(r"[/?#]")
_IPV4_SHAPE = re.compile(r"[0-9.]+")
_IP_SHAPE = re.compile(r"\[?[0-9a-fA-F:.]+(?:%[-\w.]+)?\]?")
_ESCAPE_OR_UNSAFE = re.compile(r"%([0-9A-Fa-f]{2})|[^\x21-\x7e]")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_EMAIL_LOCAL = re.compile(r"[^\s@]{1,64}")
_EMAIL_SHAPE = re.compile(r"(?i:mailto:)?[^\s@:/]+@[^\s@:/]+\.[^\s@:/]+")
_PLATFORM = re.compile(r"[a-z][a-z0-9._-]{0,31}")
_HANDLE_NAME = re.compile(r"[^\s:]{1,256}")
_HANDLE_SHAPE = re.compile(r"(?:[a-zA-Z][a-zA-Z0-9._-]{0,31}:)?@[^\s:]+")
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
        return Indicator(type, _NORMALIZERS[type](text, strict))
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
    t, v = ind.type, ind.value
    if t in (ADDRESS, TX):
        prefix = "a" if t == ADDRESS else "t"
        scope, _, ident = v.rpartition(":")
        return _scoped_index_keys(prefix, scope, ident, _chain_family(scope, ident))
    if t == HANDLE:
        scope, _, ident = v.rpartition(":")
        return _scoped_index_keys("h", scope, ident, "")
    return [_exact_key(ind)]


def lookup_keys(ind: Indicator) -> list[str]:
    """The store keys to look up for "is this flagged?"; see the table above."""
    t, v = ind.type, ind.value
    if t in (ADDRESS, TX):
        prefix = "a" if t == ADDRESS else "t"
        scope, _, ident = v.rpartition(":")
        return _scoped_lookup_keys(prefix, scope, ident, _chain_family(scope, ident))
    if t == HANDLE:
        scope, _, ident = v.rpartition(":")
        return _scoped_lookup_keys("h", scope, ident, "")
    if t == DOMAIN:
        return _domain_keys(v)
    if t == URL:
        return [f"u:{v}", *_host_keys(_url_host_of(v))]
    if t == EMAIL:
        return [f"e:{v}", *_domain_keys(v.rpartition("@")[2])]
    return [_exact_key(ind)]


# --- keys -----------------------------------------------------------------------------

_EXACT_PREFIX = {DOMAIN: "d", URL: "u", IP: "i", EMAIL: "e", OTHER: "o"}


def _exact_key(ind: Indicator) -> str:
    return f"{_EXACT_PREFIX[ind.type]}:{ind.value}"


def _chain_family(chain: str, ident: str) -> str | None:
    if not chain:  # a bare account or tx hash
        return "evm:" if ident.startswith("0x") else "btc:"
    return _FAMILIES.get(chain.partition(":")[0])


def _scoped_index_keys(prefix: str, scope: str, ident: str, family: str | None) -> list[str]:
    if not scope:
        return [f"{prefix}f:{family}{ident}", f"{prefix}a:{family}{ident}"]
    keys = [f"{prefix}:{scope}:{ident}"]
    if family is not None:
        keys.append(f"{prefix}f:{family}{ident}")
    return keys


def _scoped_lookup_keys(prefix: str, scope: str, ident: str, family: str | None) -> list[str]:
    if not scope:
        return [f"{prefix}f:{family}{ident}"]
    keys = [f"{prefix}:{scope}:{ident}"]
    if family is not None:
        keys.append(f"{prefix}a:{family}{ident}")
    return keys


def _domain_keys(domain: str) -> list[str]:
    labels = domain.split(".")
    return [f"d:{'.'.join(labels[i:])}" for i in range(len(labels) - 1)]


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
    if _EVM_ACCOUNT.fullmatch(text) or _is_bare_bitcoin(text):
        return ADDRESS
    if _EVM_TX.fullmatch(text):
        return TX
    if _URL_SCHEME.match(text):
        return URL
    caip = _caip_type(text)
    if caip is not None:
        return caip
    if _is_ip(text):
        return IP
    if _EMAIL_SHAPE.fullmatch(text):
        return EMAIL
    if _HANDLE_SHAPE.fullmatch(text):
        return HANDLE
    if _is_domain(text):
        return DOMAIN
    return OTHER


def _caip_type(text: str) -> int | None:
    """ADDRESS or TX for a CAIP-10-looking string on a known chain, else None."""
    chain, sep, last = text.rpartition(":")
    if not sep:
        return None
    if ":" not in chain:
        chain = CHAIN_ALIASES.get(chain.lower(), "")
    namespace = chain.partition(":")[0].lower()
    if namespace not in KNOWN_NAMESPACES:
        return None
    if namespace == "eip155":
        is_tx = bool(_EVM_TX.fullmatch(last))
    elif namespace == "solana":
        is_tx = len(last) > 44  # a signature (64 bytes), not a key (32 bytes)
    else:
        is_tx = bool(_HEX64.fullmatch(last))
    return TX if is_tx else ADDRESS


def _is_bare_bitcoin(text: str) -> bool:
    if not _BARE_BITCOIN.fullmatch(text):
        return False
    return text[0] not in "13" or len(chains.base58_decode(text)) == 25


def _is_ip(text: str) -> bool:
    text = text.replace("[.]", ".")
    if not _IP_SHAPE.fullmatch(text):
        return False
    try:
        _ip_address(text)
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
    chain_text, sep, account = text.rpartition(":")
    if not sep:
        return _bare_account(account, strict)
    chain = _chain(chain_text)
    return f"{chain}:{_account(chain, account, strict)}"


def _bare_account(text: str, strict: bool) -> str:
    if _EVM_ACCOUNT.fullmatch(text):
        return _evm_account(text, strict)
    if _is_bare_bitcoin(text):
        return _bitcoin_account(BITCOIN_MAINNET, text, strict)
    raise _Reason(
        "give the chain as CHAIN:ACCOUNT (e.g. eip155:1:0x…, bitcoin:bc1…, tron:T…, "
        "solana:…); only EVM (0x…) and bitcoin (1…, 3…, bc1…) accounts may be bare"
    )


def _chain(text: str) -> str:
    """The CAIP-2 chain id for a chain written as namespace:reference or as an alias."""
    if ":" not in text:
        alias = CHAIN_ALIASES.get(text.lower())
        if alias is None:
            raise _Reason(
                f"unknown chain '{text}'; write it as CAIP-2 namespace:reference "
                f"(e.g. eip155:1) or use one of {', '.join(CHAIN_ALIASES)}"
            )
        return alias
    namespace, _, reference = text.partition(":")
    namespace = namespace.lower()
    if not _CAIP2_NAMESPACE.fullmatch(namespace):
        raise _Reason(f"chain namespace '{namespace}' is not CAIP-2 (3-8 of a-z, 0-9, -)")
    if namespace == "eip155":
        return f"eip155:{_evm_chain_id(reference)}"
    if namespace in _CASE_INSENSITIVE_REFERENCES:
        reference = reference.lower()
    if not _CAIP2_REFERENCE.fullmatch(reference):
        raise _Reason(f"chain reference '{reference}' is not CAIP-2 (1-32 of a-z, A-Z, 0-9, -, _)")
    if namespace == "bip122" and not _HEX32_LOWER.fullmatch(reference):
        raise _Reason("a bip122 chain reference is the first 32 hex digits of the genesis hash")
    return f"{namespace}:{reference}"


def _evm_chain_id(reference: str) -> int:
    match = _EVM_CHAIN_ID.fullmatch(reference)
    chain_id = 0
    if match:
        decimal, hexadecimal = match.groups()
        chain_id = int(decimal) if decimal is not None else int(hexadecimal, 16)
    if chain_id <= 0:
        raise _Reason(f"an eip155 chain id is a positive number (e.g. eip155:1), not '{reference}'")
    return chain_id


def _account(chain: str, account: str, strict: bool) -> str:
    namespace = chain.partition(":")[0]
    if namespace == "eip155":
        return _evm_account(account, strict)
    if namespace == "bip122":
        return _bitcoin_account(chain, account, strict)
    if namespace == "solana":
        return _solana_key(account, 32, "a solana account is a base58 public key (32 bytes)")
    if namespace == "tron":
        return _tron_account(account, strict)
    if not _CAIP10_ACCOUNT.fullmatch(account):
        raise _Reason("a CAIP-10 account is 1-128 of a-z, A-Z, 0-9, '-', '.', '%'")
    return account


def _evm_account(text: str, strict: bool) -> str:
    if not _EVM_ACCOUNT.fullmatch(text):
        raise _Reason("an EVM account is 0x followed by 40 hex digits")
    digits = text[2:]
    lower = digits.lower()
    if strict and digits not in (lower, digits.upper()) and chains.eip55(digits) != digits:
        raise _Reason(
            "the mixed-case EIP-55 checksum does not match, so a character is probably "
            "wrong; copy the address again from its source"
        )
    return "0x" + lower


def _bitcoin_account(chain: str, text: str, strict: bool) -> str:
    network = _BITCOIN_NETWORKS.get(chain)
    if _BASE58.fullmatch(text) and 25 <= len(text) <= 35:
        raw = chains.base58_decode(text)
        if len(raw) == 25:
            if network and raw[0] not in network[1]:
                raise _Reason(f"a base58 address on this chain starts with {network[2]}")
            if strict:
                _check(chains.check_base58check, raw)
            return text
    if _BECH32_SHAPE.fullmatch(text) and len(text) <= 90:
        lower = text.lower()
        if network and not lower.startswith(network[0] + "1"):
            raise _Reason(f"a segwit address on this chain starts with {network[0]}1")
        if strict:
            _check(chains.decode_segwit, text)
        return lower
    raise _Reason(
        "a bitcoin account is a base58check address (1…, 3…) or a bech32/bech32m "
        "segwit address (bc1…)"
    )


def _tron_account(text: str, strict: bool) -> str:
    raw = b""
    if len(text) == 34 and text[0] == "T" and _BASE58.fullmatch(text):
        raw = chains.base58_decode(text)
    if len(raw) != 25 or raw[0] != 0x41:
        raise _Reason("a tron account is 34 base58 characters starting with T")
    if strict:
        _check(chains.check_base58check, raw)
    return text


def _solana_key(text: str, size: int, rule: str) -> str:
    if not (
        _BASE58.fullmatch(text) and len(text) <= 90 and len(chains.base58_decode(text)) == size
    ):
        raise _Reason(f"{rule}; base58 is case-sensitive and has no 0, O, I or l")
    return text


def _check(check: Callable[[_T], object], arg: _T) -> None:
    """Run a codec check from node.core.chains, turning its ValueError into a reason."""
    try:
        check(arg)
    except ValueError as exc:
        raise _Reason(str(exc)) from None


def _tx(text: str, strict: bool) -> str:
    chain_text, sep, tx_hash = text.rpartition(":")
    if not sep:
        if _EVM_TX.fullmatch(tx_hash) or _HEX64.fullmatch(tx_hash):
            return tx_hash.lower()
        raise _Reason(
            "give the chain as CHAIN:TXHASH (e.g. eip155:1:0x…); only EVM (0x + 64 hex) "
            "and bitcoin (64 hex) hashes may be bare"
        )
    chain = _chain(chain_text)
    namespace = chain.partition(":")[0]
    if namespace == "eip155":
        if not _EVM_TX.fullmatch(tx_hash):
            raise _Reason("an EVM transaction hash is 0x followed by 64 hex digits")
        return f"{chain}:{tx_hash.lower()}"
    if namespace in ("bip122", "tron"):
        if not _HEX64.fullmatch(tx_hash):
            raise _Reason(f"a {namespace} txid is 64 hex digits, written without 0x")
        return f"{chain}:{tx_hash.lower()}"
    if namespace == "solana":
        return f"{chain}:{_solana_key(tx_hash, 64, 'a solana transaction is a base58 signature (64 bytes)')}"
    if not _CAIP10_ACCOUNT.fullmatch(tx_hash):
        raise _Reason("a transaction hash is 1-128 of a-z, A-Z, 0-9, '-', '.', '%'")
    return f"{chain}:{tx_hash}"


def _domain(text: str, strict: bool) -> str:
    return _hostname(text, wildcard=True)


def _hostname(text: str, *, wildcard: bool = False) -> str:
    host = text.replace("[.]", ".").lower()
    if host.endswith("."):
        host = host[:-1]
    if wildcard and host.startswith("*."):
        host = host[2:]
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _Reason("not a valid internationalised domain name") from None
    if len(host) > 253:
        raise _Reason(f"a domain is at most 253 characters, not {len(host)}")
    if not _DOMAIN_FAST.fullmatch(host):
        labels = host.split(".")
        if len(labels) < 2:
            raise _Reason("a domain has at least two labels, e.g. evil.example")
        bad = next((label for label in labels if not _LABEL.fullmatch(label)), host)
        raise _Reason(f"label '{bad}' is not 1-63 letters, digits or hyphens")
    if host.rpartition(".")[2].isdigit():
        raise _Reason("the last label is all digits; write an IP address as ip:ADDRESS")
    return host


def _url(text: str, strict: bool) -> str:
    match = _URL_SCHEME.match(text)
    if not match:
        raise _Reason("a URL starts with http:// or https:// (to flag a whole site, use domain:)")
    scheme = _SCHEMES.get(match.group(1).lower())
    if scheme is None:
        raise _Reason(f"only http and https URLs are accepted, not {match.group(1)}:")
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
