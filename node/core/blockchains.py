"""Blockchain identifiers: CAIP-2 chains, accounts and transaction hashes.

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

The address encodings they rest on (Keccak-256 and EIP-55, base58check, bech32/bech32m)
are in node/core/address_codecs.py.
"""

from __future__ import annotations

import re

from node.core.address_codecs import (
    BASE58_ALPHABET,
    BECH32_CHARSET,
    base58_decode,
    base58check_encode,
    check_base58check,
    decode_segwit,
    eip55,
    encode_segwit,
    keccak256,
)

__all__ = [  # the codecs are re-exported: callers know them as blockchains.*
    "BASE58_ALPHABET",
    "BECH32_CHARSET",
    "base58_decode",
    "base58check_encode",
    "check_base58check",
    "decode_segwit",
    "eip55",
    "encode_segwit",
    "keccak256",
]

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
