"""Address encodings used by node/core/blockchains.py, pure Python.

Keccak-256 (the original Keccak padding, so hashlib.sha3_256 cannot be used) and EIP-55
mixed-case checksums; base58 and base58check (double SHA-256); bech32/bech32m segwit
addresses (BIP-173/BIP-350). Invalid input raises ValueError with a reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import reduce
from operator import getitem, xor

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
_TABLED_HRPS = ("bc", "tb")  # bitcoin mainnet and testnet: their prefix state precomputed
_BITCOIN_HRP_SHIFTED = {hrp: _shifted(_polymod(_hrp_expand(hrp))) for hrp in _TABLED_HRPS}


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
