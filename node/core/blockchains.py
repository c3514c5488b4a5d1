"""Blockchain identifiers: CAIP-2 chains, accounts and transaction hashes, and their codecs.

node.core.indicators uses this module for `address` and `tx` indicators. Every function
is pure; an invalid value raises ValueError with a reason a person can act on.

Rules:
- A chain is CAIP-2 `namespace:reference` (namespace lower case, 3-8 of a-z 0-9 -;
  reference 1-32 of a-z A-Z 0-9 - _) or an alias in CHAIN_ALIASES. Tron has no registered
  CAIP-2 id; we use `tron:mainnet`.
- eip155: the reference is the chain id in decimal without leading zeros (0x1 is read as
  hex). An account is 0x + 40 hex, stored lower case; strict checking requires a
  mixed-case spelling to pass EIP-55 (all lower or all upper has no checksum). A tx hash
  is 0x + 64 hex, lower case.
- bip122: the reference is 32 lower-case hex digits (start of the genesis hash). An
  account is base58check (kept as is, case-sensitive) or a bech32/bech32m segwit address
  (stored lower case). On bitcoin mainnet and testnet the prefix (bc1/tb1) and base58
  version byte must fit the network; other bip122 chains accept any. Strict checking
  verifies checksums and the segwit rules of BIP-173/BIP-350 (which reject mixed case).
  A txid is 64 hex digits, lower case, without 0x (0x is rejected, not stripped).
- tron: the reference is lower-cased. An account is base58check, 34 characters starting
  with T (strict: checksum). A txid is 64 hex digits like bitcoin.
- solana: an account is base58 of 32 bytes, a tx signature base58 of 64 bytes;
  case-sensitive, kept as is.
- Other namespaces: account or tx hash [-.%a-zA-Z0-9]{1,128}, unchanged.
- Bare values (no chain) are allowed for EVM accounts and tx hashes (family `evm`, every
  eip155 chain) and for bitcoin mainnet accounts (1…, 3…, bc1…) and 64-hex txids
  (family `btc`, every bip122 chain).

Codecs: Keccak-256 (the original Keccak padding, so hashlib.sha3_256 cannot be used),
EIP-55, base58 and base58check (double SHA-256), bech32/bech32m segwit.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import reduce
from operator import getitem, xor

BITCOIN_MAINNET = "bip122:000000000019d6689c085ae165831e93"
BITCOIN_TESTNET = "bip122:000000000933ea01ad0ee984209779ba"
TRON_MAINNET = "tron:mainnet"
SOLANA_MAINNET = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
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
    "tron": TRON_MAINNET,
    "trx": TRON_MAINNET,
    "solana": SOLANA_MAINNET,
    "sol": SOLANA_MAINNET,
}
# Namespaces whose accounts and tx hashes are checked here.
KNOWN_NAMESPACES = frozenset({"eip155", "bip122", "solana", "tron"})
_FAMILIES = {"eip155": "evm", "bip122": "btc"}
_CASE_INSENSITIVE_REFERENCES = frozenset({"bip122", "tron"})
# segwit prefix, base58 version bytes, and how base58 addresses start.
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
# Chains as caip2() spells them (the usual input: canonical values).
_ALIASED_CHAINS = frozenset(CHAIN_ALIASES.values())
_CANONICAL_CAIP2 = re.compile(r"eip155:[1-9][0-9]{0,29}|bip122:[0-9a-f]{32}")


# --- chains ---------------------------------------------------------------------------


def caip2(text: str) -> str:
    """The CAIP-2 id of a chain written as namespace:reference or as an alias."""
    if text in _ALIASED_CHAINS or _CANONICAL_CAIP2.fullmatch(text):  # already canonical
        return text
    if ":" not in text:
        alias = CHAIN_ALIASES.get(text.lower())
        if alias is None:
            raise ValueError(
                f"unknown chain '{text}'; write it as CAIP-2 namespace:reference "
                f"(e.g. eip155:1) or use one of {', '.join(CHAIN_ALIASES)}"
            )
        return alias
    namespace, _, reference = text.partition(":")
    namespace = namespace.lower()
    if not _CAIP2_NAMESPACE.fullmatch(namespace):
        raise ValueError(f"chain namespace '{namespace}' is not CAIP-2 (3-8 of a-z, 0-9, -)")
    if namespace == "eip155":
        return f"eip155:{_evm_chain_id(reference)}"
    if namespace in _CASE_INSENSITIVE_REFERENCES:
        reference = reference.lower()
    if not _CAIP2_REFERENCE.fullmatch(reference):
        raise ValueError(f"chain reference '{reference}' is not CAIP-2 (1-32 of a-zA-Z0-9-_)")
    if namespace == "bip122" and not _HEX32_LOWER.fullmatch(reference):
        raise ValueError("a bip122 chain reference is the first 32 hex digits of the genesis hash")
    return f"{namespace}:{reference}"


def _evm_chain_id(reference: str) -> int:
    match = _EVM_CHAIN_ID.fullmatch(reference)
    chain_id = 0
    if match:
        decimal, hexadecimal = match.groups()
        chain_id = int(decimal) if decimal is not None else int(hexadecimal, 16)
    if chain_id <= 0:
        raise ValueError(
            f"an eip155 chain id is a positive number (e.g. eip155:1), not '{reference}'"
        )
    return chain_id


def family(chain: str, ident: str) -> str | None:
    """The account family ("evm", "btc") of a chain, or of a bare account/tx if chain is ""."""
    if not chain:
        return "evm" if ident.startswith("0x") else "btc"
    return _FAMILIES.get(chain.partition(":")[0])


# --- accounts -------------------------------------------------------------------------


def account(chain: str, text: str, *, strict: bool) -> str:
    """The canonical spelling of an account on a (canonical CAIP-2) chain."""
    namespace = chain.partition(":")[0]
    if namespace == "eip155":
        return _evm_account(text, strict)
    if namespace == "bip122":
        return _bitcoin_account(chain, text, strict)
    if namespace == "solana":
        return _solana(text, 32, "a solana account is a base58 public key (32 bytes)")
    if namespace == "tron":
        return _tron_account(text, strict)
    if not _CAIP10_ACCOUNT.fullmatch(text):
        raise ValueError("a CAIP-10 account is 1-128 of a-z, A-Z, 0-9, '-', '.', '%'")
    return text


def bare_account(text: str, *, strict: bool) -> str:
    """The canonical spelling of an account given without its chain."""
    if text[:2] in ("0x", "0X"):
        return _evm_account(text, strict)
    if is_bare_bitcoin(text):
        return _bitcoin_account(BITCOIN_MAINNET, text, strict)
    raise ValueError(
        "give the chain as CHAIN:ACCOUNT (e.g. eip155:1:0x…, bitcoin:bc1…, tron:T…, "
        "solana:…); only EVM (0x…) and bitcoin (1…, 3…, bc1…) accounts may be bare"
    )


def is_bare_evm_account(text: str) -> bool:
    return _EVM_ACCOUNT.fullmatch(text) is not None


def is_bare_bitcoin(text: str) -> bool:
    """A bitcoin mainnet address shape: bc1…, or 1…/3… decoding to 25 bytes."""
    if not _BARE_BITCOIN.fullmatch(text):
        return False
    return text[0] not in "13" or len(base58_decode(text)) == 25


def _evm_account(text: str, strict: bool) -> str:
    if not _EVM_ACCOUNT.fullmatch(text):
        raise ValueError("an EVM account is 0x followed by 40 hex digits")
    digits = text[2:]
    lower = digits.lower()
    if strict and digits not in (lower, digits.upper()) and eip55(digits) != digits:
        raise ValueError(
            "the mixed-case EIP-55 checksum does not match, so a character is probably "
            "wrong; copy the address again from its source"
        )
    return "0x" + lower


def _bitcoin_account(chain: str, text: str, strict: bool) -> str:
    network = _BITCOIN_NETWORKS.get(chain)
    if 25 <= len(text) <= 35 and _BASE58.fullmatch(text):
        raw = base58_decode(text)
        if len(raw) == 25:
            if network and raw[0] not in network[1]:
                raise ValueError(f"a base58 address on this chain starts with {network[2]}")
            if strict:
                check_base58check(raw)
            return text
    if _BECH32_SHAPE.fullmatch(text) and len(text) <= 90:
        lower = text.lower()
        if network and not lower.startswith(network[0] + "1"):
            raise ValueError(f"a segwit address on this chain starts with {network[0]}1")
        if strict:
            decode_segwit(text)
        return lower
    raise ValueError(
        "a bitcoin account is a base58check address (1…, 3…) or a bech32/bech32m "
        "segwit address (bc1…)"
    )


def _tron_account(text: str, strict: bool) -> str:
    raw = b""
    if len(text) == 34 and text[0] == "T" and _BASE58.fullmatch(text):
        raw = base58_decode(text)
    if len(raw) != 25 or raw[0] != 0x41:
        raise ValueError("a tron account is 34 base58 characters starting with T")
    if strict:
        check_base58check(raw)
    return text


def _solana(text: str, size: int, rule: str) -> str:
    if not (_BASE58.fullmatch(text) and len(text) <= 90 and len(base58_decode(text)) == size):
        raise ValueError(f"{rule}; base58 is case-sensitive and has no 0, O, I or l")
    return text


# --- transaction hashes ---------------------------------------------------------------


def tx_hash(chain: str, text: str) -> str:
    """The canonical spelling of a transaction hash on a (canonical CAIP-2) chain."""
    namespace = chain.partition(":")[0]
    if namespace == "eip155":
        if not _EVM_TX.fullmatch(text):
            raise ValueError("an EVM transaction hash is 0x followed by 64 hex digits")
        return text.lower()
    if namespace in ("bip122", "tron"):
        if not _HEX64.fullmatch(text):
            raise ValueError(f"a {namespace} txid is 64 hex digits, written without 0x")
        return text.lower()
    if namespace == "solana":
        return _solana(text, 64, "a solana transaction is a base58 signature (64 bytes)")
    if not _CAIP10_ACCOUNT.fullmatch(text):
        raise ValueError("a transaction hash is 1-128 of a-z, A-Z, 0-9, '-', '.', '%'")
    return text


def bare_tx_hash(text: str) -> str:
    """The canonical spelling of a tx hash given without its chain (EVM or bitcoin)."""
    if _EVM_TX.fullmatch(text) or _HEX64.fullmatch(text):
        return text.lower()
    raise ValueError(
        "give the chain as CHAIN:TXHASH (e.g. eip155:1:0x…); only EVM (0x + 64 hex) "
        "and bitcoin (64 hex) hashes may be bare"
    )


def is_bare_evm_tx(text: str) -> bool:
    return _EVM_TX.fullmatch(text) is not None


def caip10_kind(text: str) -> str | None:
    """ "account" or "tx" for a CHAIN:VALUE string on a known chain or alias, else None."""
    chain, sep, last = text.rpartition(":")
    if not sep:
        return None
    if ":" not in chain:
        chain = CHAIN_ALIASES.get(chain.lower(), "")
    namespace = chain.partition(":")[0].lower()
    if namespace not in KNOWN_NAMESPACES:
        return None
    if namespace == "eip155":
        is_tx = _EVM_TX.fullmatch(last) is not None
    elif namespace == "solana":
        is_tx = len(last) > 44  # a signature (64 bytes) is longer than a key (32 bytes)
    else:
        is_tx = _HEX64.fullmatch(last) is not None
    return "tx" if is_tx else "account"


# --- Keccak-256 -----------------------------------------------------------------------

_MASK64 = (1 << 64) - 1
_ROUND_CONSTANTS = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)  # fmt: skip
# Rotation offset of lane (x, y), indexed x + 5 * y.
_ROTATIONS = (
    0, 1, 62, 28, 27,
    36, 44, 6, 55, 20,
    3, 10, 43, 25, 39,
    41, 45, 15, 21, 8,
    18, 2, 61, 56, 14,
)  # fmt: skip
# rho and pi together: lane x + 5y moves to lane y + 5 * ((2x + 3y) % 5).
_PI_TARGET = tuple(y + 5 * ((2 * x + 3 * y) % 5) for y in range(5) for x in range(5))
_RATE_BYTES = 136  # 1600 - 2 * 256 bits


def _keccak_f1600(a: list[int]) -> None:
    for rc in _ROUND_CONSTANTS:
        # theta
        c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
        for x in range(5):
            r = c[(x + 1) % 5]
            d = c[(x - 1) % 5] ^ (((r << 1) | (r >> 63)) & _MASK64)
            for y in range(0, 25, 5):
                a[x + y] ^= d
        # rho, pi
        b = [0] * 25
        for i in range(25):
            v, n = a[i], _ROTATIONS[i]
            b[_PI_TARGET[i]] = ((v << n) | (v >> (64 - n))) & _MASK64 if n else v
        # chi, iota
        for y in range(0, 25, 5):
            row = b[y : y + 5]
            for x in range(5):
                a[x + y] = row[x] ^ (~row[(x + 1) % 5] & row[(x + 2) % 5])
        a[0] ^= rc


def keccak256(data: bytes) -> bytes:
    """Keccak-256 as Ethereum uses it (pre-standard padding)."""
    return _sponge256(data, 0x01)


def _sponge256(data: bytes, domain_byte: int) -> bytes:
    # domain_byte 0x06 gives SHA3-256, which lets tests check the sponge against hashlib.
    padded = bytearray(data)
    padded.append(domain_byte)
    padded.extend(bytes(-len(padded) % _RATE_BYTES))
    padded[-1] |= 0x80
    state = [0] * 25
    for start in range(0, len(padded), _RATE_BYTES):
        for i in range(_RATE_BYTES // 8):
            offset = start + 8 * i
            state[i] ^= int.from_bytes(padded[offset : offset + 8], "little")
        _keccak_f1600(state)
    return b"".join(lane.to_bytes(8, "little") for lane in state[:4])


def eip55(hex40: str) -> str:
    """The EIP-55 mixed-case spelling of a 40-hex-digit account (without 0x)."""
    lower = hex40.lower()
    digest = keccak256(lower.encode("ascii")).hex()
    return "".join(
        ch.upper() if ch.isalpha() and int(digest[i], 16) >= 8 else ch for i, ch in enumerate(lower)
    )


# --- base58 ---------------------------------------------------------------------------

BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {ch: i for i, ch in enumerate(BASE58_ALPHABET)}
# bytes.translate table: an ASCII character to its base58 digit, 255 if it is not one.
_BASE58_DIGITS = bytes(_BASE58_INDEX.get(chr(b), 255) for b in range(256))


# Base58 digits as the bytes of one big-endian integer are slots of 8 bits. Each merge
# makes slots twice as wide: adjacent slots hi, lo (w bits, values below B = 58**(w/8))
# become one holding hi * B + lo, by subtracting (2**w - B) * hi from every pair at once;
# no pair borrows from the next. Six merges leave one 512-bit slot: up to 64 digits.
_BASE58_MERGED_DIGITS = 64
_BASE58_MERGES = tuple(
    (w, (1 << w) - 58 ** (w // 8), sum(((1 << w) - 1) << (2 * w * i) for i in range(256 // w)))
    for w in (8, 16, 32, 64, 128, 256)
)


def _base58_value(digits: bytes) -> int:
    """The number that base58 digit values (0-57, most significant first) spell."""
    if len(digits) > _BASE58_MERGED_DIGITS:
        n = 0
        for digit in digits:
            n = n * 58 + digit
        return n
    n = int.from_bytes(digits, "big")
    for width, excess, low_halves in _BASE58_MERGES:
        n -= excess * ((n >> width) & low_halves)
    return n


def base58_decode(text: str) -> bytes:
    """Decode base58; leading '1's are leading zero bytes. ValueError on a bad character."""
    digits = text.encode("ascii", "replace").translate(_BASE58_DIGITS)
    if 255 in digits:
        bad = next(ch for ch in text if ch not in _BASE58_INDEX)
        raise ValueError(f"{bad!r} is not a base58 character")
    n = _base58_value(digits)
    zeros = len(text) - len(text.lstrip("1"))
    return bytes(zeros) + n.to_bytes((n.bit_length() + 7) // 8, "big")


def base58check_encode(payload: bytes) -> str:
    """The base58check spelling of `payload` (version byte included): the inverse of
    base58_decode + check_base58check."""
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(raw, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(BASE58_ALPHABET[r])
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + "".join(reversed(out))


def check_base58check(raw: bytes) -> None:
    """Raise ValueError unless the last 4 bytes are the double-SHA-256 checksum of the rest."""
    payload, checksum = raw[:-4], raw[-4:]
    if len(raw) < 5 or hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        raise ValueError("the base58check checksum does not match (a character is wrong)")


# --- bech32 / bech32m segwit ----------------------------------------------------------

BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_INDEX = {ch: i for i, ch in enumerate(BECH32_CHARSET)}
# bytes.translate tables: an ASCII character to its 5-bit value (255 if not bech32), and
# 5-bit values to the digits of int(…, 32), which then regroups the bits into bytes.
_BECH32_VALUES = bytes(_BECH32_INDEX.get(chr(b), 255) for b in range(256))
_BASE32_DIGITS = bytes.maketrans(bytes(range(32)), b"0123456789abcdefghijklmnopqrstuv")
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _generators_of(top: int) -> int:
    """XOR of the generators picked by the 5 bits that one polymod step shifts out."""
    mixed = 0
    for i, generator in enumerate(_GENERATOR):
        if (top >> i) & 1:
            mixed ^= generator
    return mixed


_POLYMOD_TABLE = tuple(_generators_of(top) for top in range(32))


def _polymod(values: Iterable[int], chk: int = 1) -> int:
    """The BIP-173 checksum state after `values`, continuing from `chk`."""
    for v in values:
        chk = ((chk & 0x1FFFFFF) << 5) ^ v ^ _POLYMOD_TABLE[chk >> 25]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


# A step is linear over GF(2), so the checksum of values below 32 is the XOR of what each
# value, and the state before them, contribute; that depends only on how many values
# follow. _CONTRIBUTION[k][v] is what v followed by k values contributes, _shifted(state)[k]
# what a state followed by k values does. map() and reduce() then run the loop in C.
# The tables cover the longest input of decode_segwit (hrp and data in 90 characters).
_TABLED_VALUES = 2 * 90


def _shifted(state: int) -> tuple[int, ...]:
    states = [state]
    while len(states) <= _TABLED_VALUES:
        states.append(_polymod([0], states[-1]))
    return tuple(states)


_CONTRIBUTION = tuple(zip(*(_shifted(v) for v in range(32)), strict=True))
_START_SHIFTED = _shifted(1)
_BITCOIN_HRP_SHIFTED = {
    hrp: _shifted(_polymod(_hrp_expand(hrp))) for hrp, _, _ in _BITCOIN_NETWORKS.values()
}


def _checksum(hrp: str, data: bytes) -> int:
    """_polymod(_hrp_expand(hrp) + data) for data values below 32, mostly by table."""
    shifted = _BITCOIN_HRP_SHIFTED.get(hrp)
    if shifted is None:
        if not hrp.isascii():  # characters past U+03FF expand to values of 32 and more
            return _polymod([*_hrp_expand(hrp), *data])
        data = bytes(_hrp_expand(hrp)) + data
        shifted = _START_SHIFTED
    n = len(data)
    if n > _TABLED_VALUES:
        return _polymod(data, shifted[0])
    return reduce(xor, map(getitem, _CONTRIBUTION[n - 1 :: -1], data), shifted[n])


def _convert_5_to_8(data: bytes) -> bytes:
    """5-bit values regrouped into bytes; the 0-4 bits left over must be zero."""
    bits = 5 * len(data)
    pad = bits % 8
    acc = int(data.translate(_BASE32_DIGITS), 32) if data else 0
    if pad >= 5 or acc & ((1 << pad) - 1):
        raise ValueError("the address has invalid padding bits")
    return (acc >> pad).to_bytes(bits // 8, "big")


def encode_segwit(hrp: str, version: int, program: bytes) -> str:
    """The bech32 (version 0) or bech32m (version 1+) segwit address: decode_segwit's inverse."""
    acc = bits = 0
    data = [version]
    for byte in program:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    const = _BECH32_CONST if version == 0 else _BECH32M_CONST
    pm = _checksum(hrp, bytes(data) + bytes(6)) ^ const
    checksum = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32_CHARSET[d] for d in data + checksum)


def decode_segwit(address: str) -> tuple[str, int, bytes]:
    """Decode a segwit address to (hrp, witness version, program); ValueError if invalid.

    Checks character set, case, checksum (bech32 for v0, bech32m for v1+), version and
    program length. The human-readable part is returned, not checked.
    """
    lower = address.lower()
    if lower != address and address.upper() != address:
        raise ValueError("a bech32 address must not mix upper and lower case")
    address = lower
    hrp, sep, data_part = address.rpartition("1")
    if not sep or not hrp or len(address) > 90:
        raise ValueError("a bech32 address is PREFIX1DATA, at most 90 characters")
    if len(data_part) < 7:
        raise ValueError("the bech32 data part is too short to hold a witness program")
    data = data_part.encode("ascii", "replace").translate(_BECH32_VALUES)
    if 255 in data:
        raise ValueError(f"bech32 data uses only the characters {BECH32_CHARSET}")
    version = data[0]
    const = _checksum(hrp, data)
    if const not in (_BECH32_CONST, _BECH32M_CONST):
        raise ValueError("the bech32 checksum does not match (a character is wrong)")
    if version > 16:
        raise ValueError(f"witness version {version} does not exist (0..16)")
    if (const == _BECH32_CONST) != (version == 0):
        variant = "bech32" if version == 0 else "bech32m"
        raise ValueError(f"a witness v{version} address must use the {variant} checksum")
    program = _convert_5_to_8(data[1:-6])
    if not 2 <= len(program) <= 40 or (version == 0 and len(program) not in (20, 32)):
        raise ValueError(f"a {len(program)}-byte witness program is not valid for v{version}")
    return hrp, version, program
