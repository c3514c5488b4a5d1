"""Indicators: every spelling of a value normalises to one form, and lookups find flags.

The tables are the specification: each row is a spelling a person might paste and the
canonical value it must become, or the reason it is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
from collections.abc import Callable, Iterator
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core import address_codecs, canonical
from node.core import blockchains as chains
from node.core.errors import InvalidIndicator
from node.core.indicators import (
    ADDRESS,
    DOMAIN,
    EMAIL,
    HANDLE,
    IP,
    OTHER,
    TX,
    TYPE_NAMES,
    URL,
    Indicator,
    flagged_keys,
    index_keys,
    lookup_keys,
    normalize,
    parse,
    type_name,
)

BTC = "bip122:000000000019d6689c085ae165831e93"
BTC_TEST = "bip122:000000000933ea01ad0ee984209779ba"
SOL = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"

EVM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55 example
EVM_LOW = EVM.lower()
EVM_UPPER = "0x" + EVM[2:].upper()
EVM_BAD = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"  # one letter's case flipped
P2PKH = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"  # the genesis block's address
P2PKH_BAD = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb"
P2SH = "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"
P2WPKH = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"  # BIP-173
P2WPKH_BAD = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5"
P2TR = "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"  # BIP-350
TB_P2WSH = "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7"
TRON = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"  # USDT on Tron
TRON_BAD = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6T"
SOL_KEY = "So11111111111111111111111111111111111111112"  # wrapped SOL mint
EVM_TX = "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060"
BTC_TXID = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"


def b58encode(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, digit = divmod(n, 58)
        out = chains.BASE58_ALPHABET[digit] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def b58check(version: int, payload: bytes) -> str:
    raw = bytes([version]) + payload
    return b58encode(raw + hashlib.sha256(hashlib.sha256(raw).digest()).digest()[:4])


TESTNET_P2PKH = b58check(0x6F, bytes(range(20)))
SOL_SIGNATURE = b58encode(bytes(range(1, 65)))


def reason(type_: int, value: str, *, strict: bool = True) -> str:
    with pytest.raises(InvalidIndicator) as exc:
        normalize(type_, value, strict=strict)
    return str(exc.value)


# --- type names -----------------------------------------------------------------------


def test_type_names_are_the_cli_names_of_the_proto_enum() -> None:
    assert TYPE_NAMES == {
        "address": 1,
        "tx": 2,
        "domain": 3,
        "url": 4,
        "ip": 5,
        "email": 6,
        "handle": 7,
        "other": 8,
    }
    assert [type_name(t) for t in TYPE_NAMES.values()] == list(TYPE_NAMES)
    assert type_name(99) == "99"


def test_an_unknown_type_is_refused_with_the_known_names() -> None:
    message = reason(0, "x")
    assert "unknown indicator type 0" in message and "address, tx, domain" in message


# --- codecs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        (b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
        (b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
    ],
)
def test_keccak256_known_vectors(data: bytes, digest: str) -> None:
    assert chains.keccak256(data).hex() == digest
    assert hashlib.sha3_256(data).hexdigest() != digest  # NIST SHA-3 pads differently


def test_the_keccak_sponge_matches_hashlib_sha3_across_block_boundaries() -> None:
    data = bytes(range(256)) * 2
    for n in (0, 1, 134, 135, 136, 137, 271, 272, 273, 500):
        assert address_codecs._sponge256(data[:n], 0x06) == hashlib.sha3_256(data[:n]).digest(), n


@pytest.mark.parametrize(
    "address",
    [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ],
)
def test_eip55_spells_the_eip_examples(address: str) -> None:
    assert chains.eip55(address[2:].lower()) == address[2:]


def test_segwit_decodes_to_version_and_program() -> None:
    program = bytes.fromhex("751e76e8199196d454941c45d1b3a323f1433bd6")
    assert chains.decode_segwit(P2WPKH.upper()) == ("bc", 0, program)


# --- addresses ------------------------------------------------------------------------

VALID_ADDRESSES = [
    (f"eip155:1:{EVM}", f"eip155:1:{EVM_LOW}"),
    (f"eip155:1:{EVM_LOW}", f"eip155:1:{EVM_LOW}"),
    (f"eip155:1:{EVM_UPPER}", f"eip155:1:{EVM_LOW}"),
    (f"eip155:1:0X{EVM_LOW[2:]}", f"eip155:1:{EVM_LOW}"),
    (f"  EIP155:01:{EVM}  ", f"eip155:1:{EVM_LOW}"),
    (f"eip155:0x1:{EVM}", f"eip155:1:{EVM_LOW}"),
    (f"eip155:0x89:{EVM}", f"eip155:137:{EVM_LOW}"),
    (f"ethereum:{EVM}", f"eip155:1:{EVM_LOW}"),
    (f"ETH:{EVM}", f"eip155:1:{EVM_LOW}"),
    (f"mainnet:{EVM}", f"eip155:1:{EVM_LOW}"),
    (f"polygon:{EVM}", f"eip155:137:{EVM_LOW}"),
    (f"matic:{EVM}", f"eip155:137:{EVM_LOW}"),
    (f"bsc:{EVM}", f"eip155:56:{EVM_LOW}"),
    (f"bnb:{EVM}", f"eip155:56:{EVM_LOW}"),
    (f"arbitrum:{EVM}", f"eip155:42161:{EVM_LOW}"),
    (f"optimism:{EVM}", f"eip155:10:{EVM_LOW}"),
    (f"base:{EVM}", f"eip155:8453:{EVM_LOW}"),
    (f"avalanche:{EVM}", f"eip155:43114:{EVM_LOW}"),
    (EVM, EVM_LOW),
    (EVM_UPPER, EVM_LOW),
    (f"{BTC}:{P2PKH}", f"{BTC}:{P2PKH}"),
    (f"bip122:000000000019D6689C085AE165831E93:{P2PKH}", f"{BTC}:{P2PKH}"),
    (f"bitcoin:{P2PKH}", f"{BTC}:{P2PKH}"),
    (f"btc:{P2SH}", f"{BTC}:{P2SH}"),
    (f"bitcoin:{P2WPKH.upper()}", f"{BTC}:{P2WPKH}"),
    (f"bitcoin:{P2TR}", f"{BTC}:{P2TR}"),
    (f"{BTC_TEST}:{TB_P2WSH}", f"{BTC_TEST}:{TB_P2WSH}"),
    (f"{BTC_TEST}:{TESTNET_P2PKH}", f"{BTC_TEST}:{TESTNET_P2PKH}"),
    (P2PKH, P2PKH),
    (P2WPKH.upper(), P2WPKH),
    (f"tron:{TRON}", f"tron:mainnet:{TRON}"),
    (f"trx:{TRON}", f"tron:mainnet:{TRON}"),
    (f"TRON:MAINNET:{TRON}", f"tron:mainnet:{TRON}"),
    (f"solana:{SOL_KEY}", f"{SOL}:{SOL_KEY}"),
    (f"sol:{SOL_KEY}", f"{SOL}:{SOL_KEY}"),
    ("sol:11111111111111111111111111111111", f"{SOL}:11111111111111111111111111111111"),
    ("cosmos:cosmoshub-4:cosmos1t2uflqwqe0fsj0shcfkrvpukewcw40yjj6hdc0", None),
    ("Cosmos:cosmoshub-4:cosmos1abc", "cosmos:cosmoshub-4:cosmos1abc"),
]


@pytest.mark.parametrize(("spelling", "canonical"), VALID_ADDRESSES)
def test_address_spellings_normalise_to_one_form(spelling: str, canonical: str | None) -> None:
    expected = canonical if canonical is not None else spelling
    assert normalize(ADDRESS, spelling) == Indicator(ADDRESS, expected)
    assert normalize(ADDRESS, spelling, strict=False) == Indicator(ADDRESS, expected)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (f"eip155:1:{EVM_BAD}", "EIP-55 checksum does not match"),
        ("eip155:1:0x" + "g" * 40, "0x followed by 40 hex digits"),
        (f"eip155:0:{EVM}", "eip155 chain id"),
        (f"eip155:one:{EVM}", "eip155 chain id"),
        (f"eip155:-1:{EVM}", "eip155 chain id"),
        (f"ethereum-classic:{EVM}", "unknown chain 'ethereum-classic'"),
        ("ab:1:x", "namespace 'ab' is not CAIP-2"),
        ("cosmos:cosmos hub:x", "reference"),
        ("cosmos:cosmoshub-4:bad/acct", "CAIP-10 account"),
        (f"bip122:xyz:{P2PKH}", "genesis"),
        (f"bitcoin:{P2PKH_BAD}", "base58check checksum does not match"),
        (f"bitcoin:{P2WPKH_BAD}", "bech32 checksum does not match"),
        ("bitcoin:bc1QW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "mix upper and lower case"),
        (f"bitcoin:{TB_P2WSH}", "starts with bc1"),
        (f"bitcoin:{TESTNET_P2PKH}", "starts with 1… or 3…"),
        (f"{BTC_TEST}:{P2PKH}", "starts with m…, n… or 2…"),
        ("bitcoin:hello", "base58check address (1…, 3…) or a bech32"),
        (f"tron:{TRON_BAD}", "base58check checksum does not match"),
        (f"tron:X{TRON[1:]}", "starting with T"),
        (f"solana:{SOL_KEY[:-1]}0", "base58 public key (32 bytes)"),
        ("sol:abc", "32 bytes"),
        ("0x12", "0x followed by 40 hex digits"),
        (TRON, "give the chain as CHAIN:ACCOUNT"),
        ("eip155:1:", "0x followed by 40 hex digits"),
    ],
)
def test_invalid_addresses_are_refused_with_a_reason(value: str, why: str) -> None:
    assert why in reason(ADDRESS, value)


def test_the_error_names_the_type_the_value_and_the_rule() -> None:
    assert reason(ADDRESS, "eip155:1:0x12") == (
        "address 'eip155:1:0x12': an EVM account is 0x followed by 40 hex digits"
    )


# BIP-350 invalid addresses (sipa/bech32 ref tests), each on the chain its prefix names.
@pytest.mark.parametrize(
    "segwit",
    [
        "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut",
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",
        "tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf",
        "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",
        "tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47",
        "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",
        "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",
        "bc1pw5dgrnzv",
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
        "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",
        "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq",
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",
        "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j",
        "bc1gmk9yu",
    ],
)
def test_bip350_invalid_segwit_addresses_are_refused(segwit: str) -> None:
    chain = BTC_TEST if segwit.lower().startswith("tb1") else BTC
    reason(ADDRESS, f"{chain}:{segwit}")


@pytest.mark.parametrize(
    ("segwit", "chain"),
    [
        ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", BTC),
        ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", BTC_TEST),
        ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y", BTC),
        ("BC1SW50QGDZ25J", BTC),
        ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", BTC),
        ("tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy", BTC_TEST),
        ("tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c", BTC_TEST),
        ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", BTC),
    ],
)
def test_bip350_valid_segwit_addresses_are_stored_lower_case(segwit: str, chain: str) -> None:
    assert normalize(ADDRESS, f"{chain}:{segwit}").value == f"{chain}:{segwit.lower()}"


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        (f"eip155:1:{EVM_BAD}", f"eip155:1:{EVM_LOW}"),
        (EVM_BAD, EVM_LOW),
        (f"bitcoin:{P2PKH_BAD}", f"{BTC}:{P2PKH_BAD}"),
        (f"bitcoin:{P2WPKH_BAD}", f"{BTC}:{P2WPKH_BAD}"),
        ("bitcoin:bc1QW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", f"{BTC}:{P2WPKH}"),
        (f"tron:{TRON_BAD}", f"tron:mainnet:{TRON_BAD}"),
    ],
)
def test_lookups_never_refuse_a_value_on_checksum_grounds(value: str, canonical: str) -> None:
    reason(ADDRESS, value, strict=True)
    assert normalize(ADDRESS, value, strict=False).value == canonical


# --- transactions ---------------------------------------------------------------------

VALID_TXS = [
    (f"eip155:1:{EVM_TX}", f"eip155:1:{EVM_TX}"),
    (f"eip155:1:0X{EVM_TX[2:].upper()}", f"eip155:1:{EVM_TX}"),
    (f"eth:{EVM_TX}", f"eip155:1:{EVM_TX}"),
    (f"eip155:0x2105:{EVM_TX}", f"eip155:8453:{EVM_TX}"),
    (EVM_TX.upper().replace("0X", "0x"), EVM_TX),
    (f"bitcoin:{BTC_TXID}", f"{BTC}:{BTC_TXID}"),
    (f"{BTC}:{BTC_TXID.upper()}", f"{BTC}:{BTC_TXID}"),
    (BTC_TXID.upper(), BTC_TXID),
    (f"tron:{BTC_TXID}", f"tron:mainnet:{BTC_TXID}"),
    (f"sol:{SOL_SIGNATURE}", f"{SOL}:{SOL_SIGNATURE}"),
    ("cosmos:cosmoshub-4:ABCDEF0123", "cosmos:cosmoshub-4:ABCDEF0123"),
]


@pytest.mark.parametrize(("spelling", "canonical"), VALID_TXS)
def test_tx_spellings_normalise_to_one_form(spelling: str, canonical: str) -> None:
    assert normalize(TX, spelling) == Indicator(TX, canonical)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("eip155:1:0x1234", "0x followed by 64 hex digits"),
        (f"eip155:1:{EVM_TX[2:]}", "0x followed by 64 hex digits"),
        (f"bitcoin:0x{BTC_TXID}", "64 hex digits, written without 0x"),
        (f"tron:0x{BTC_TXID}", "without 0x"),
        ("sol:abc", "base58 signature (64 bytes)"),
        (f"nowhere:{EVM_TX}", "unknown chain"),
        ("0x1234", "give the chain as CHAIN:TXHASH"),
    ],
)
def test_invalid_txs_are_refused_with_a_reason(value: str, why: str) -> None:
    assert why in reason(TX, value)


# --- domains, URLs, IPs, emails, handles, other -----------------------------------------

VALID_DOMAINS = [
    ("evil.example", "evil.example"),
    ("Evil.Example", "evil.example"),
    ("  EVIL.EXAMPLE.  ", "evil.example"),
    ("*.evil.example", "evil.example"),
    ("evil[.]example", "evil.example"),
    ("login.evil.example", "login.evil.example"),
    ("a-b.123.example", "a-b.123.example"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("BÜCHER.example.", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("ｅｖｉｌ．ｅｘａｍｐｌｅ", "evil.example"),  # full-width letters and dot
    # Underscores below the registrable domain: host names browsers resolve.
    ("ether_promo.kissr.com", "ether_promo.kissr.com"),
    ("Ether_Promo.KISSR.com.", "ether_promo.kissr.com"),
    ("_dmarc.a_b.evil.example", "_dmarc.a_b.evil.example"),
    ("ether_promo.bücher.example", "ether_promo.xn--bcher-kva.example"),
    # UTS #46 non-transitional / IDNA 2008, as browsers map names (not IDNA 2003).
    ("faß.example", "xn--fa-hia.example"),
    ("FAß.example.", "xn--fa-hia.example"),
    ("fass.example", "fass.example"),
]


def test_international_names_are_mapped_by_idna_2008_not_the_stdlib_idna_2003_codec() -> None:
    """The stdlib codec maps ß to ss: a victim's browser would visit another domain."""
    assert "faß.example".encode("idna") == b"fass.example"  # what the codec would store
    assert normalize(DOMAIN, "faß.example").value == "xn--fa-hia.example"
    assert normalize(URL, "https://FAß.example/x").value == "https://xn--fa-hia.example/x"
    assert normalize(EMAIL, "bob@faß.example").value == "bob@xn--fa-hia.example"


@pytest.mark.parametrize(("spelling", "canonical"), VALID_DOMAINS)
def test_domain_spellings_normalise_to_one_form(spelling: str, canonical: str) -> None:
    assert normalize(DOMAIN, spelling) == Indicator(DOMAIN, canonical)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("localhost", "at least two labels"),
        ("evil..example", "label '' is not"),
        ("evil.example..", "label '' is not"),
        ("evil_site.example", "label 'evil_site' has an underscore"),
        ("login.evil_site.example", "label 'evil_site' has an underscore"),
        ("evil.ex_ample", "label 'ex_ample' has an underscore"),
        ("☃.example", "IDNA 2008"),  # a symbol: IDNA 2003 took it, IDNA 2008 does not
        ("a" * 64 + ".example", "1-63"),
        (".".join(["a" * 60] * 5), "at most 253"),
        ("1.2.3.4", "ip:"),
        ("https://evil.example/claim", "without scheme, port or path"),
        ("evil.example:443", "without scheme, port or path"),
        ("evil example.com", "label 'evil example'"),
        ("\u2060.example", "internationalised"),
    ],
)
def test_invalid_domains_are_refused_with_a_reason(value: str, why: str) -> None:
    assert why in reason(DOMAIN, value)


VALID_URLS = [
    ("https://evil.example/claim", "https://evil.example/claim"),
    ("https://Evil.Example/claim", "https://evil.example/claim"),
    ("HTTPS://EVIL.EXAMPLE/Claim", "https://evil.example/Claim"),
    ("https://evil.example:443/claim", "https://evil.example/claim"),
    ("http://evil.example:80/", "http://evil.example/"),
    ("https://evil.example:80/", "https://evil.example:80/"),
    ("http://evil.example:8080/x", "http://evil.example:8080/x"),
    ("https://evil.example", "https://evil.example/"),
    ("https://evil.example./claim", "https://evil.example/claim"),
    ("https://evil.example/claim#step-2", "https://evil.example/claim"),
    ("https://evil.example/claim?", "https://evil.example/claim"),
    ("https://evil.example/a%2fb%7Ec%41", "https://evil.example/a%2Fb~cA"),
    ("https://evil.example/a b", "https://evil.example/a%20b"),
    ("https://evil.example/ü", "https://evil.example/%C3%BC"),
    ("https://evil.example/%c3%bc", "https://evil.example/%C3%BC"),
    ("https://evil.example/?b=2&a=1", "https://evil.example/?b=2&a=1"),
    ("https://evil.example/?q=%7e+x", "https://evil.example/?q=~+x"),
    ("hxxps://evil[.]example/claim", "https://evil.example/claim"),
    ("HXXP://evil[.]example", "http://evil.example/"),
    ("https://bücher.example/", "https://xn--bcher-kva.example/"),
    ("http://1.2.3.4/x", "http://1.2.3.4/x"),
    ("http://[2001:DB8::0001]:8080/", "http://[2001:db8::1]:8080/"),
    ("http://[::ffff:1.2.3.4]/", "http://1.2.3.4/"),
    ("https://binance.com@Evil.Example/login", "https://binance.com@evil.example/login"),
]


@pytest.mark.parametrize(("spelling", "canonical"), VALID_URLS)
def test_url_spellings_normalise_to_one_form(spelling: str, canonical: str) -> None:
    assert normalize(URL, spelling) == Indicator(URL, canonical)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("ftp://evil.example/", "only http(s) URLs"),
        ("javascript:alert(1)", "starts with http:// or https://"),
        ("evil.example/claim", "starts with http:// or https://"),
        ("https:///claim", "no host"),
        ("https://evil.example:99999/", "not a valid URL"),
        ("https://[::1/", "not a valid URL"),
        ("https://localhost/", "at least two labels"),
        ("https://evil_site.example/", "label 'evil_site'"),
    ],
)
def test_invalid_urls_are_refused_with_a_reason(value: str, why: str) -> None:
    assert why in reason(URL, value)


VALID_IPS = [
    ("1.2.3.4", "1.2.3.4"),
    (" 1.2.3.4 ", "1.2.3.4"),
    ("1.2.3[.]4", "1.2.3.4"),
    ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("::ffff:1.2.3.4", "1.2.3.4"),
    ("::FFFF:102:304", "1.2.3.4"),
]


@pytest.mark.parametrize(("spelling", "canonical"), VALID_IPS)
def test_ip_spellings_normalise_to_one_form(spelling: str, canonical: str) -> None:
    assert normalize(IP, spelling) == Indicator(IP, canonical)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("1.2.3.4/32", "not a network (CIDR)"),
        ("10.0.0.0/8", "not a network (CIDR)"),
        ("1.2.3", "not an IPv4 or IPv6 address"),
        ("256.1.1.1", "not an IPv4 or IPv6 address"),
        ("01.2.3.4", "not an IPv4 or IPv6 address"),
        ("evil.example", "not an IPv4 or IPv6 address"),
    ],
)
def test_invalid_ips_are_refused_with_a_reason(value: str, why: str) -> None:
    assert why in reason(IP, value)


VALID_EMAILS = [
    ("bob@evil.example", "bob@evil.example"),
    ("Bob@Evil.Example", "bob@evil.example"),
    ("mailto:Bob@evil.example", "bob@evil.example"),
    ("MAILTO:bob@evil.example?subject=prize", "bob@evil.example"),
    ("bob@evil.example.", "bob@evil.example"),
    ("bob[at]evil[.]example", "bob@evil.example"),
    ("bob@bücher.example", "bob@xn--bcher-kva.example"),
    ("First.Last+tag@evil.example", "first.last+tag@evil.example"),
]


@pytest.mark.parametrize(("spelling", "canonical"), VALID_EMAILS)
def test_email_spellings_normalise_to_one_form(spelling: str, canonical: str) -> None:
    assert normalize(EMAIL, spelling) == Indicator(EMAIL, canonical)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("bob", "local@domain"),
        ("@evil.example", "before @"),
        ("bo b@evil.example", "before @"),
        ("bob@localhost", "at least two labels"),
        ("bob@evil_site.example", "label 'evil_site'"),
    ],
)
def test_invalid_emails_are_refused_with_a_reason(value: str, why: str) -> None:
    assert why in reason(EMAIL, value)


VALID_HANDLES = [
    ("@Scam_Bot", "scam_bot"),
    ("scam_bot", "scam_bot"),
    ("telegram:@Scam_Bot", "telegram:scam_bot"),
    ("Telegram:scam_bot", "telegram:scam_bot"),
    ("twitter: @x", "twitter:x"),
    ("@alice@mastodon.example", "alice@mastodon.example"),
]


@pytest.mark.parametrize(("spelling", "canonical"), VALID_HANDLES)
def test_handle_spellings_normalise_to_one_form(spelling: str, canonical: str) -> None:
    assert normalize(HANDLE, spelling) == Indicator(HANDLE, canonical)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("@", "a handle is a name"),
        ("scam bot", "a handle is a name"),
        ("telegram:", "a handle is a name"),
        ("9gag:x", "platform '9gag'"),
    ],
)
def test_invalid_handles_are_refused_with_a_reason(value: str, why: str) -> None:
    assert why in reason(HANDLE, value)


VALID_OTHERS = [
    ("  some  free\ttext \n", "some free text"),
    ("Case Is Kept", "Case Is Kept"),
]


@pytest.mark.parametrize(("spelling", "canonical"), VALID_OTHERS)
def test_other_collapses_whitespace(spelling: str, canonical: str) -> None:
    assert normalize(OTHER, spelling) == Indicator(OTHER, canonical)


@pytest.mark.parametrize("type_", list(TYPE_NAMES.values()))
def test_empty_and_over_long_values_are_refused_for_every_type(type_: int) -> None:
    assert reason(type_, "   ").endswith("is empty")
    assert "the limit is 2048" in reason(type_, "a" * 2049)


# --- every canonical value is a fixed point ---------------------------------------------

CANONICAL = [
    *[(ADDRESS, c or s) for s, c in VALID_ADDRESSES],
    *[(TX, c) for _, c in VALID_TXS],
    *[(DOMAIN, c) for _, c in VALID_DOMAINS],
    *[(URL, c) for _, c in VALID_URLS],
    *[(IP, c) for _, c in VALID_IPS],
    *[(EMAIL, c) for _, c in VALID_EMAILS],
    *[(HANDLE, c) for _, c in VALID_HANDLES],
    *[(OTHER, c) for _, c in VALID_OTHERS],
]


@pytest.mark.parametrize(("type_", "value"), CANONICAL)
def test_canonical_values_are_stable_and_round_trip_through_text(type_: int, value: str) -> None:
    ind = Indicator(type_, value)
    assert normalize(type_, value) == ind
    assert parse(str(ind)) == ind


# --- parse ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (EVM, f"address:{EVM_LOW}"),
        (f"eip155:1:{EVM}", f"address:eip155:1:{EVM_LOW}"),
        (f"eth:{EVM}", f"address:eip155:1:{EVM_LOW}"),
        (f"address:eip155:1:{EVM}", f"address:eip155:1:{EVM_LOW}"),
        (f"ADDRESS:eip155:1:{EVM}", f"address:eip155:1:{EVM_LOW}"),
        (P2WPKH.upper(), f"address:{P2WPKH}"),
        (P2PKH, f"address:{P2PKH}"),
        (P2SH, f"address:{P2SH}"),
        (f"tron:{TRON}", f"address:tron:mainnet:{TRON}"),
        (f"sol:{SOL_KEY}", f"address:{SOL}:{SOL_KEY}"),
        (f"cosmos:cosmoshub-4:{P2PKH}", f"other:cosmos:cosmoshub-4:{P2PKH}"),
        (f"address:cosmos:cosmoshub-4:{P2PKH}", f"address:cosmos:cosmoshub-4:{P2PKH}"),
        (EVM_TX, f"tx:{EVM_TX}"),
        (f"eip155:1:{EVM_TX}", f"tx:eip155:1:{EVM_TX}"),
        (f"bitcoin:{BTC_TXID}", f"tx:{BTC}:{BTC_TXID}"),
        (f"sol:{SOL_SIGNATURE}", f"tx:{SOL}:{SOL_SIGNATURE}"),
        (f"tx:{BTC_TXID}", f"tx:{BTC_TXID}"),
        (BTC_TXID, f"other:{BTC_TXID}"),  # could be any SHA-256; say tx: to mean a txid
        ("https://Evil.example/claim", "url:https://evil.example/claim"),
        ("hxxps://evil[.]example", "url:https://evil.example/"),
        ("1.2.3.4", "ip:1.2.3.4"),
        ("1.2.3[.]4", "ip:1.2.3.4"),
        ("2001:db8::1", "ip:2001:db8::1"),
        ("::1", "ip:::1"),
        ("[::1]", "ip:::1"),
        ("bob@evil.example", "email:bob@evil.example"),
        ("mailto:Bob@evil.example", "email:bob@evil.example"),
        ("@scam_bot", "handle:scam_bot"),
        ("telegram:@Scam_Bot", "handle:telegram:scam_bot"),
        ("evil.example", "domain:evil.example"),
        ("Login.Evil.Example.", "domain:login.evil.example"),
        ("evil[.]example", "domain:evil.example"),
        ("*.evil.example", "domain:evil.example"),
        ("bücher.example", "domain:xn--bcher-kva.example"),
        ("Domain:EVIL.example", "domain:evil.example"),
        ("ether_promo.kissr.com", "domain:ether_promo.kissr.com"),
        ("FAß.example.", "domain:xn--fa-hia.example"),
        ("https://ether_promo.kissr.com/x", "url:https://ether_promo.kissr.com/x"),
        ("evil_site.example", "other:evil_site.example"),  # not a host name
        ("other:https://evil.example", "other:https://evil.example"),
        ("scam_bot", "other:scam_bot"),
        (TRON, f"other:{TRON}"),  # tron and solana accounts need their chain
        ("cafe", "other:cafe"),
        ("1.2.3", "other:1.2.3"),
        ("v1.2", "other:v1.2"),
        ("pig  butchering   scheme", "other:pig butchering scheme"),
    ],
)
def test_parse_reads_typed_and_bare_values(text: str, expected: str) -> None:
    assert str(parse(text)) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "the indicator is empty"),
        ("   ", "the indicator is empty"),
        ("x" * 2049, "the limit is 2048"),
        ("address:", "address is empty"),
        ("ftp://evil.example/", "only http(s) URLs"),
        ("1.2.3.4/24", "not a network (CIDR)"),
        ("eth:0x12", "0x followed by 40 hex digits"),
        (EVM_BAD, "EIP-55"),
    ],
)
def test_parse_refuses_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(InvalidIndicator, match=None) as exc:
        parse(text)
    assert why in str(exc.value)


# --- keys: what a lookup finds ----------------------------------------------------------


def flagged_by(flagged: str, asked: str) -> bool:
    """Would a client asking about `asked` learn that an alert flagging `flagged` matches?"""
    return bool(set(lookup_keys(parse(asked, strict=False))) & set(index_keys(parse(flagged))))


@pytest.mark.parametrize(
    ("flagged", "asked", "match"),
    [
        # A bare account matches the account on every chain of its family.
        (f"eip155:1:{EVM}", EVM_UPPER, True),
        (f"eip155:137:{EVM_LOW}", EVM, True),
        (f"eip155:1:{EVM}", EVM_BAD, True),  # lookups ignore the checksum
        (f"bitcoin:{P2WPKH}", P2WPKH.upper(), True),
        (f"{BTC}:{P2PKH}", P2PKH, True),
        # A full CAIP-10 address matches only its own chain...
        (f"eip155:1:{EVM}", f"eth:{EVM_LOW}", True),
        (f"eip155:1:{EVM}", f"eip155:0x1:{EVM_UPPER}", True),
        (f"eip155:1:{EVM}", f"eip155:137:{EVM}", False),
        (f"eip155:1:{EVM}", f"{BTC}:{P2PKH}", False),
        # ...unless the account was flagged bare, on every chain of its family.
        (EVM, f"bsc:{EVM}", True),
        (EVM, EVM_LOW, True),
        (P2PKH, f"bitcoin:{P2PKH}", True),
        (f"tron:{TRON}", f"trx:{TRON}", True),
        (f"tron:{TRON}", TRON, False),  # a bare T… is not recognised as an account
        # Transactions follow the same rules.
        (f"eip155:1:{EVM_TX}", EVM_TX.upper().replace("0X", "0x"), True),
        (f"eip155:1:{EVM_TX}", f"optimism:{EVM_TX}", False),
        (EVM_TX, f"base:{EVM_TX}", True),
        (f"bitcoin:{BTC_TXID}", f"tx:{BTC_TXID.upper()}", True),
        (f"eip155:1:{EVM_TX}", f"address:eip155:1:{EVM}", False),
        # A flagged domain covers its subdomains, URLs on it and email addresses at it.
        ("evil.example", "EVIL.example.", True),
        ("evil.example", "login.evil.example", True),
        ("evil.example", "a.b.login.evil[.]example", True),
        ("evil.example", "https://Evil.example/claim", True),
        ("evil.example", "hxxps://login.evil[.]example:8443/x?y=1", True),
        ("evil.example", "bob@mail.evil.example", True),
        ("login.evil.example", "evil.example", False),
        ("login.evil.example", "other.evil.example", False),
        ("evil.example", "notevil.example", False),
        ("evil.example", "evil.example.org", False),
        ("bücher.example", "https://xn--bcher-kva.example/", True),
        ("ether_promo.kissr.com", "HTTPS://Ether_Promo.kissr.com./claim", True),
        ("ether_promo.kissr.com", "kissr.com", False),
        ("FAß.example.", "xn--fa-hia.example", True),
        ("faß.example", "https://login.faß.example/", True),
        ("faß.example", "fass.example", False),
        # A flagged URL matches its own spellings, not its whole site.
        ("https://evil.example/claim", "HTTPS://EVIL.EXAMPLE:443/claim#top", True),
        ("https://evil.example/claim?id=%7e1", "https://evil.example/claim?id=~1", True),
        ("https://evil.example/claim", "https://evil.example/other", False),
        ("https://evil.example/claim", "evil.example", False),
        ("https://evil.example/claim", "http://evil.example/claim", False),
        # IPs, also as URL hosts.
        ("1.2.3.4", "::ffff:1.2.3.4", True),
        ("1.2.3.4", "http://1.2.3.4:8080/x", True),
        ("2001:db8::1", "http://[2001:0db8::0001]/", True),
        ("1.2.3.4", "1.2.3.5", False),
        # Emails, handles, other.
        ("Bob@Evil.example", "mailto:bob@evil.example", True),
        ("bob@evil.example", "alice@evil.example", False),
        ("telegram:@scam_bot", "@Scam_Bot", True),
        ("handle:telegram:scam_bot", "handle:twitter:scam_bot", False),
        ("handle:scam_bot", "handle:telegram:scam_bot", True),
        ("pig  butchering", "pig butchering", True),
        ("other:Pig", "other:pig", False),
        ("other:evil.example", "evil.example", False),
    ],
)
def test_a_lookup_finds_what_was_flagged(flagged: str, asked: str, match: bool) -> None:
    assert flagged_by(flagged, asked) is match


def test_keys_follow_the_documented_scheme() -> None:
    full = parse(f"eip155:1:{EVM}")
    bare = parse(EVM)
    assert index_keys(full) == [f"a:eip155:1:{EVM_LOW}", f"af:evm:{EVM_LOW}"]
    assert lookup_keys(full) == [f"a:eip155:1:{EVM_LOW}", f"aa:evm:{EVM_LOW}"]
    assert index_keys(bare) == [f"af:evm:{EVM_LOW}", f"aa:evm:{EVM_LOW}"]
    assert lookup_keys(bare) == [f"af:evm:{EVM_LOW}"]
    assert lookup_keys(parse("https://a.login.evil.example/x")) == [
        "u:https://a.login.evil.example/x",
        "d:a.login.evil.example",
        "d:login.evil.example",
        "d:evil.example",
    ]
    assert lookup_keys(parse("evil.example")) == ["d:evil.example"]  # never a bare TLD
    assert index_keys(parse("telegram:@bob")) == ["h:telegram:bob", "hf:bob"]
    assert lookup_keys(parse("1.2.3.4")) == index_keys(parse("1.2.3.4")) == ["i:1.2.3.4"]


@given(
    account=st.binary(min_size=20, max_size=20),
    chain_id=st.integers(min_value=1, max_value=2**40),
    casing=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_any_casing_of_a_bare_evm_account_finds_it_on_any_chain(
    account: bytes, chain_id: int, casing: list[bool]
) -> None:
    checksummed = "0x" + chains.eip55(account.hex())
    pasted = "0x" + "".join(
        c.upper() if up else c for c, up in zip(account.hex(), casing, strict=True)
    )
    assert flagged_by(f"eip155:{chain_id}:{checksummed}", pasted)
    assert flagged_by(f"eip155:{hex(chain_id)}:{checksummed}", f"eip155:{chain_id}:{pasted}")


def test_a_thousand_mixed_lookups_normalise() -> None:
    seed = 20240601
    print(f"seed={seed}")
    rng = random.Random(seed)
    spellings = [
        EVM,
        EVM_BAD,
        f"eth:{EVM}",
        P2WPKH.upper(),
        P2PKH,
        EVM_TX,
        "https://Evil.Example/claim?x=1#y",
        "hxxps://evil[.]example",
        "Login.Evil.Example.",
        "::ffff:1.2.3.4",
        "mailto:Bob@Evil.Example",
        "@Scam_Bot",
        "free   text",
    ]
    asked = [rng.choice(spellings) for _ in range(1000)]
    found = [parse(text, strict=False) for text in asked]
    for ind in found:
        again = normalize(ind.type, ind.value, strict=False)
        assert again == ind
        assert lookup_keys(again)


def test_blockchain_encoders_round_trip_and_validate() -> None:
    rng = random.Random(5)
    print("seed 5")
    for _ in range(50):
        payload = bytes([0]) + rng.randbytes(20)
        raw = chains.base58_decode(chains.base58check_encode(payload))
        chains.check_base58check(raw)
        assert raw[:-4] == payload
        for version, size in ((0, 20), (0, 32), (1, 32)):
            program = rng.randbytes(size)
            address = chains.encode_segwit("bc", version, program)
            assert chains.decode_segwit(address) == ("bc", version, program)
            assert parse(address).type == ADDRESS


# --- fast paths: the same results as the general path, for any spelling ----------------
#
# Common spellings take fast paths (a regex for an already plain value, table-driven
# codecs). These tests generate many values of every kind in random spellings, valid and
# not, and check that switching the fast paths off changes no result and no error.

DETERMINISTIC = settings(derandomize=True, database=None, deadline=None, print_blob=True)
NEVER = re.compile(r"(?!)")


@contextlib.contextmanager
def general_paths_only() -> Iterator[None]:
    """Switch every fast path off: the general code then computes every result."""
    with pytest.MonkeyPatch.context() as patch:
        for name in (
            "_PLAIN_EVM_ACCOUNT",
            "_PLAIN_EVM_TX",
            "_PLAIN_HOST",
            "_PLAIN_EMAIL",
            "_CANONICAL_IPV4",
            "_PLAIN_URL",
        ):
            patch.setattr(canonical, name, NEVER)
        patch.setattr(chains, "_ALIASED_CHAINS", frozenset())
        patch.setattr(chains, "_CANONICAL_CAIP2", NEVER)
        patch.setattr(address_codecs, "_BASE58_MERGED_DIGITS", -1)  # digit by digit
        patch.setattr(address_codecs, "_TABLED_VALUES", -1)  # bech32 checksum step by step
        yield


def outcome(call: Callable[[], Indicator]) -> str:
    """What a caller sees: the indicator and its keys, or the refusal."""
    try:
        ind = call()
    except InvalidIndicator as exc:
        return f"refused: {exc}"
    return f"{ind!r} {index_keys(ind)} {lookup_keys(ind)}"


def outcomes(text: str) -> list[str]:
    calls: list[Callable[[], Indicator]] = [
        partial(parse, text, strict=False),
        partial(parse, text, strict=True),
    ]
    for type_ in TYPE_NAMES.values():
        calls += [partial(normalize, type_, text, strict=s) for s in (False, True)]
    return [outcome(call) for call in calls]


def assert_fast_paths_agree(texts: list[str]) -> None:
    fast = [outcomes(text) for text in texts]
    with general_paths_only():
        general = [outcomes(text) for text in texts]
    for text, a, b in zip(texts, fast, general, strict=True):
        assert a == b, text


LABEL_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
ODD_CHARS = "_*. ü\u212a\u017f\u0131\u0130ｅ．\t%@:[]/?#\x00"  # Kelvin K, long s, dotless i…


def random_case(rng: random.Random, text: str) -> str:
    style = rng.randrange(4)
    if style == 0:
        return text
    if style == 1:
        return text.upper()
    if style == 2:
        return text.lower()
    return "".join(c.upper() if rng.random() < 0.5 else c for c in text)


def mutate(rng: random.Random, text: str) -> str:
    """The text with one random edit, to reach the edges of every rule."""
    if not text:
        return rng.choice(ODD_CHARS)
    i = rng.randrange(len(text))
    edit = rng.randrange(5)
    if edit == 0:
        return text[:i] + text[i + 1 :]
    if edit == 1:
        return text[:i] + rng.choice(ODD_CHARS + LABEL_CHARS) + text[i:]
    if edit == 2:
        return text[:i] + text[i].swapcase() + text[i + 1 :]
    if edit == 3:
        return text[:i] + rng.choice(chains.BASE58_ALPHABET + "0OIl") + text[i + 1 :]
    return rng.choice(["", " ", "\t"]) + text + rng.choice(["", ".", " ", ":", "/", "1"])


def random_domain(rng: random.Random) -> str:
    labels = []
    for _ in range(rng.randrange(1, 5)):
        size = rng.choice([1, 3, 8, 8, 62, 63, 64])
        labels.append("".join(rng.choice(LABEL_CHARS) for _ in range(size)))
    labels.append(rng.choice(["com", "example", "xyz", "io", "123", "bücher", "a1", "ｃｏｍ"]))
    domain = random_case(rng, ".".join(labels))
    if rng.random() < 0.3:
        domain = domain.replace(".", "[.]", rng.randrange(1, 3))
    return rng.choice(["", "", "", "*.", "[.]"]) + domain + rng.choice(["", "", "", ".", ".."])


def random_ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        octets = [
            str(rng.choice([0, 1, 9, 10, 99, 100, 199, 200, 249, 250, 255, 256])) for _ in "1234"
        ]
        if rng.random() < 0.1:
            octets[rng.randrange(4)] = "0" + octets[0]
        if rng.random() < 0.1:
            octets = octets[:3] if rng.random() < 0.5 else [*octets, "1"]
        ip = ".".join(octets)
    else:
        ip = random_case(rng, ":".join(f"{rng.randrange(0x10000):x}" for _ in range(8)))
        ip = rng.choice([ip, ip.replace(":0:", "::", 1), "::ffff:1.2.3.4", "::1"])
    return rng.choice(["", "", "", "[", "ip:"]) + ip + rng.choice(["", "", "/32", "]", "%eth0"])


def random_url(rng: random.Random) -> str:
    scheme = rng.choice(["https", "http", "HTTPS", "Http", "hxxp", "hXxPs", "ftp", "htxp"])
    host = random_domain(rng) if rng.random() < 0.75 else random_ip(rng).removeprefix("ip:")
    if rng.random() < 0.1:
        host = rng.choice(["user@", "binance.com@", "u:p@"]) + host
    if rng.random() < 0.3:
        host += ":" + rng.choice(["80", "443", "8080", "0", "0443", "65535", "65536", "", "x"])
    segments = [
        rng.choice(["claim", "a b", "%7e", "%7E", "%41", "%2f", "%zz", "ü", "~x", "a\tb", ""])
        for _ in range(rng.randrange(3))
    ]
    path = "/" + "/".join(segments) if segments or rng.random() < 0.5 else ""
    query = rng.choice(["", "", "?", "?ref=1", "?a=%7e&b=ü", "?x=1?y=@"])
    fragment = rng.choice(["", "", "#", "#top", "#a\nb"])
    return f"{scheme}{rng.choice(['://', '://', ':/'])}{host}{path}{query}{fragment}"


def random_email(rng: random.Random) -> str:
    local = rng.choice(["bob", "Bob.Smith+tag", "ü", "a b", "x" * 64, "x" * 65, "a[x]", "a:b"])
    email = f"{local}@{random_domain(rng)}"
    if rng.random() < 0.3:
        email = rng.choice(["mailto:", "MAILTO:", "MailTo:", "ma\u0131lto:"]) + email
    if rng.random() < 0.2:
        email = email.replace("@", rng.choice(["[at]", "[@]"]))
    return email + rng.choice(["", "", "?subject=hi"])


def random_handle(rng: random.Random) -> str:
    name = rng.choice(["Scam_Bot", "bob", "a b", "", "ü", "alice@mastodon.example", "x" * 257])
    platform = rng.choice(["", "", "telegram:", "Telegram:", "twitter: ", "9gag:", "a" * 33 + ":"])
    return platform + rng.choice(["", "@"]) + name


def random_chain_value(rng: random.Random) -> str:
    """An address or tx on a random chain, bare or CAIP-10, with a random checksum case."""
    kind = rng.randrange(5)
    if kind == 0:
        digits = rng.randbytes(20).hex()
        digits = rng.choice(
            [digits, digits.upper(), chains.eip55(digits), random_case(rng, digits)]
        )
        value = rng.choice(["0x", "0x", "0X"]) + digits
        prefixes = ["", "eip155:1:", "EIP155:137:", "eip155:0x89:", "eip155:01:", "eth:", "sol:"]
    elif kind == 1:
        value = rng.choice(["0x", "0X", ""]) + random_case(rng, rng.randbytes(32).hex())
        prefixes = ["", "eip155:8453:", "Eip155:1:", "eip155:0:", "bitcoin:", "tron:"]
    elif kind == 2:
        version = rng.choice([0x00, 0x05, 0x6F, 0x41])
        value = chains.base58check_encode(bytes([version]) + rng.randbytes(20))
        prefixes = ["", "bitcoin:", f"{BTC}:", f"{BTC_TEST}:", "tron:", "trx:"]
    elif kind == 3:
        program = rng.randbytes(rng.choice([20, 32, 32, 40, 2]))
        value = chains.encode_segwit(
            rng.choice(["bc", "tb", "ltc"]), rng.choice([0, 1, 2]), program
        )
        value = random_case(rng, value)
        prefixes = [
            "",
            "bitcoin:",
            "BTC:",
            f"{BTC_TEST}:",
            "bip122:1234567890abcdef1234567890abcdef:",
        ]
    else:
        value = chains.base58check_encode(
            bytes(rng.randrange(3)) + rng.randbytes(rng.choice([31, 32, 64]))
        )
        prefixes = ["sol:", f"{SOL}:", "cosmos:cosmoshub-4:", "solana:"]
    return rng.choice(prefixes) + value


GENERATORS = (random_chain_value, random_domain, random_url, random_ip, random_email, random_handle)


def random_texts(seed: int, per_kind: int) -> list[str]:
    print(f"seed={seed}")
    rng = random.Random(seed)
    texts = []
    for generate in GENERATORS:
        for _ in range(per_kind):
            text = generate(rng)
            texts.append(mutate(rng, text) if rng.random() < 0.2 else text)
    return texts


# Spellings at the edges of the fast paths' regexes.
EDGES = [
    "mailto:@evil.example",
    "MAILTO:mailto:bob@evil.example",
    "mailto:bob@evil.example?x=@y",
    "bob@evil.example:80",
    "b[x]ob@evil.example",
    "https://evil.example?",
    "https://evil.example:",
    "https://evil.example:/x",
    "https://evil.example.:8080",
    "https://1.2.3.4./",
    "https://a.123/",
    "https://evil.example:00443/",
    "https://evil.example/\x00",
    "https://evil.example/x?y#z?w",
    "https://" + "a" * 63 + ".example/",
    "https://" + ".".join(["a" * 63] * 4) + "/",
    ".".join(["a" * 63] * 3 + ["a" * 61]),
    ".".join(["a" * 63] * 3 + ["a" * 62]),
    "0.0.0.0",
    "255.255.255.255",
    "00.0.0.0",
    "1.2.3.4.",
    "[1.2.3.4]",
    "eip155:" + "9" * 30 + ":0x" + "ab" * 20,
    "eip155:" + "9" * 31 + ":0x" + "ab" * 20,
    "eip155:0:0x" + "ab" * 20,
    "0x" + "12" * 20,
    "eip155:1:0X" + "AB" * 32,
    "bc1q\u017f\u017f\u017f\u017f\u017f\u017f\u017f",
    "@@bob",
]


def test_fast_paths_agree_with_the_general_path_on_random_spellings() -> None:
    texts = EDGES + random_texts(20240611, per_kind=400)
    canonical = []
    for text in texts:  # the canonical values themselves take the fast paths most
        for strict in (False, True):
            with contextlib.suppress(InvalidIndicator):
                ind = parse(text, strict=strict)
                canonical += [ind.value, str(ind)]
    assert_fast_paths_agree(texts + canonical)


@DETERMINISTIC
@given(st.text(alphabet=st.sampled_from(LABEL_CHARS + ODD_CHARS + "AZxX"), max_size=40))
def test_fast_paths_agree_with_the_general_path_on_junk(text: str) -> None:
    assert_fast_paths_agree([text, f"https://{text}", f"{text}@evil.example", f"eip155:1:{text}"])


def test_flagged_keys_are_the_index_keys_of_the_normalised_value() -> None:
    """flagged_keys (the ingest path) is index_keys(normalize(...)), errors included."""
    for text in EDGES + random_texts(11, per_kind=200):
        for type_ in TYPE_NAMES.values():
            try:
                expected: list[str] | str = index_keys(normalize(type_, text, strict=True))
            except InvalidIndicator as exc:
                expected = str(exc)
            try:
                got: list[str] | str = flagged_keys(type_, text)
            except InvalidIndicator as exc:
                got = str(exc)
            assert got == expected, (type_, text)


def test_normalising_twice_changes_nothing() -> None:
    for text in random_texts(7, per_kind=300):
        for type_ in TYPE_NAMES.values():
            for strict in (False, True):
                try:
                    once = normalize(type_, text, strict=strict)
                except InvalidIndicator:
                    continue
                if type_ == HANDLE and once.value.rpartition(":")[2].startswith("@"):
                    continue  # "@@bob" keeps one "@" and loses it the next time (a quirk)
                assert normalize(type_, once.value, strict=strict) == once, text


def respellings(kind: str, value: str) -> list[str]:
    """Spellings a person might paste for one canonical value of `kind`."""
    if kind in ("evm", "tx"):
        chain, _, digits = value.rpartition(":0x")
        out = [f"{chain}:0X{digits.upper()}", value.upper().replace("0X", "0x")]
        if kind == "evm":
            out.append(f"{chain}:0x{chains.eip55(digits)}")
        if chain == "eip155:1":
            out += [f"eth:0x{digits}", f"ETHEREUM:0x{digits}", f"eip155:0x1:0x{digits}"]
        return out
    if kind == "btc":
        account = value.rpartition(":")[2]
        return [f"bitcoin:{account}", f"BTC:{account}", f"{BTC.upper()}:{account}"] + (
            [f"bitcoin:{account.upper()}"] if account.startswith("bc1") else []
        )
    if kind == "domain":
        return [value.upper() + ".", value.replace(".", "[.]"), "*." + value.title()]
    if kind == "url":
        host, _, rest = value.partition("://")[2].partition("/")
        out = [f"HTTPS://{host.upper()}:443/{rest}", f"hxxps://{host.replace('.', '[.]')}/{rest}"]
        return [*out, f"https://{host}./{rest}#frag", f"https://{host}/{rest.replace('-', '%2d')}"]
    if kind == "ip":
        return [value.replace(".", "[.]"), f"::ffff:{value}", f"::FFFF:{value}", f" {value} "]
    if kind == "email":
        local, _, host = value.partition("@")
        return [f"mailto:{value.upper()}", f"{local}[at]{host.replace('.', '[.]')}", value + "."]
    name = value.partition(":")[2]
    return [f"Telegram:@{name.upper()}", f"TELEGRAM:@{name}"]


def canonical_value(rng: random.Random, kind: str) -> str:
    word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randrange(1, 12)))
    domain = f"{word}-{rng.randrange(10**6)}.{rng.choice(['com', 'io', 'xn--p1ai'])}"
    if kind == "evm":
        return f"eip155:{rng.choice([1, 1, 56, 8453])}:0x{rng.randbytes(20).hex()}"
    if kind == "tx":
        return f"eip155:{rng.choice([1, 10])}:0x{rng.randbytes(32).hex()}"
    if kind == "btc":
        if rng.random() < 0.5:
            return f"{BTC}:{chains.base58check_encode(bytes([0]) + rng.randbytes(20))}"
        return f"{BTC}:{chains.encode_segwit('bc', 1, rng.randbytes(32))}"
    if kind == "domain":
        return domain
    if kind == "url":
        return f"https://{rng.choice(['', 'login.'])}{domain}/{word}/a-b?ref={rng.randrange(99)}"
    if kind == "ip":
        return ".".join(str(rng.randrange(1, 256)) for _ in range(4))
    if kind == "email":
        return f"{word}.{rng.randrange(99)}@{domain}"
    return f"telegram:{word}_{rng.randrange(99)}"


def test_every_respelling_reaches_the_same_canonical_value() -> None:
    seed = 99
    print(f"seed={seed}")
    rng = random.Random(seed)
    types = {"evm": ADDRESS, "tx": TX, "btc": ADDRESS, "domain": DOMAIN, "url": URL}
    types |= {"ip": IP, "email": EMAIL, "handle": HANDLE}
    for _ in range(40):
        for kind, type_ in types.items():
            value = canonical_value(rng, kind)
            flagged = normalize(type_, value)
            assert flagged == Indicator(type_, value)
            for spelling in respellings(kind, value):
                assert normalize(type_, spelling, strict=False) == flagged, spelling
                if "[at]" not in spelling:  # parse infers an email address from its "@"
                    assert parse(spelling, strict=False) == flagged, spelling


def test_a_wrong_checksum_is_refused_for_publishing_and_found_for_lookups() -> None:
    seed = 3
    print(f"seed={seed}")
    rng = random.Random(seed)
    for _ in range(30):
        digits = rng.randbytes(20).hex()
        checksummed = chains.eip55(digits)
        letters = [i for i, c in enumerate(checksummed) if c.isalpha()]
        if letters:
            i = rng.choice(letters)
            wrong = checksummed[:i] + checksummed[i].swapcase() + checksummed[i + 1 :]
            for spelling in (f"0x{wrong}", f"eip155:1:0x{wrong}"):
                assert "EIP-55" in reason(ADDRESS, spelling)
                assert normalize(ADDRESS, spelling, strict=False).value.endswith(f"0x{digits}")

        base58 = chains.base58check_encode(bytes([0]) + rng.randbytes(20))
        other_digits = chains.BASE58_ALPHABET.replace(base58[-1], "")
        corrupt_base58 = base58[:-1] + rng.choice(other_digits)  # only the checksum changes
        segwit = chains.encode_segwit("bc", rng.choice([0, 1]), rng.randbytes(32))
        corrupt_segwit = segwit[:-1] + rng.choice(chains.BECH32_CHARSET.replace(segwit[-1], ""))
        for account in (corrupt_base58, corrupt_segwit):
            for spelling in (account, f"bitcoin:{account}"):
                assert "checksum does not match" in reason(ADDRESS, spelling)
                assert normalize(ADDRESS, spelling, strict=False).value.endswith(account)
                assert parse(spelling, strict=False).type == ADDRESS


@DETERMINISTIC
@given(
    hrp=st.one_of(st.sampled_from(["bc", "tb"]), st.text(min_size=1, max_size=90)),
    data=st.lists(st.integers(min_value=0, max_value=31), max_size=200),
)
def test_the_bech32_checksum_tables_agree_with_the_step_by_step_checksum(
    hrp: str, data: list[int]
) -> None:
    expected = address_codecs._polymod([*address_codecs._hrp_expand(hrp), *data])
    assert address_codecs._checksum(hrp, bytes(data)) == expected


def test_base58_decodes_what_it_encodes_at_every_length() -> None:
    seed = 58
    print(f"seed={seed}")
    rng = random.Random(seed)
    for size in range(80):  # up to 109 digits: both sides of the 64 the merges cover
        for raw in (
            rng.randbytes(size),
            bytes([255]) * size,
            bytes(rng.randrange(3)) + bytes(size),
        ):
            assert chains.base58_decode(b58encode(raw)) == raw


@DETERMINISTIC
@given(program=st.binary(min_size=2, max_size=40), version=st.integers(min_value=1, max_value=16))
def test_segwit_decodes_what_it_encodes(program: bytes, version: int) -> None:
    address = chains.encode_segwit("tb", version, program)
    assert chains.decode_segwit(address.upper()) == ("tb", version, program)
    with general_paths_only():
        assert chains.encode_segwit("tb", version, program) == address
