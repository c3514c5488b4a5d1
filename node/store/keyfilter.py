"""A Bloom filter over the indicator-key hashes a SQLite store holds.

Nearly every value a client checks is one nobody flagged. At a million alerts the
store's key index is several times the reader's page cache, so each such value cost a
page read (16 KiB copied from the OS) to learn that it is not there. The filter answers
"certainly not held" in memory for all but a few of them (0.2 % with the one table
built at open, about 5 % once a filter has grown to 4.6 million keys by tables added
while filling), and a check whose keys are all absent costs no query at all (no hop to
the reader's thread).

It may say "maybe" for a key that is not held (a false positive: the query then finds
nothing), never "no" for one that is: a key's bits are set before the transaction that
stores it commits, so a reader whose snapshot holds the key already sees its bits.

A blocked Bloom filter: each key sets three bits of one 64-bit word, all chosen by the
key's 64-bit hash (`key_hash`, the first 8 bytes of a SHA-256), so adding or testing a
key is one array access (about 0.26 µs in Python). Each table has a power of two words
and is sized for `capacity` keys at 12-24 bits each (0.2-1 % false positives). Keys
are never removed (an alert, once stored, stays), and a table cannot grow: once the
newest table holds its capacity, keys go to a new one of twice the size, and a key may
be held if any table says so. Opening the store builds one table for what it holds,
with room for as many keys again. Memory: 2-4 bytes per key (16 MiB at a million
alerts of ~4.6 keys each).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

BITS_PER_KEY = 12  # at least; up to twice that (a power of two words)
MIN_KEYS = 65_536  # the smallest table: 128 KiB


class _Table:
    __slots__ = ("capacity", "count", "mask", "words")

    def __init__(self, capacity: int) -> None:
        n = 1
        while n * 64 < capacity * BITS_PER_KEY:
            n <<= 1
        self.words = array("Q", [0]) * n
        self.mask = n - 1
        self.capacity = capacity
        self.count = 0


def bits_of(h: int) -> int:
    """The three bits a key of hash `h` sets in its word: bits (h >> 40) & 63,
    (h >> 46) & 63 and (h >> 52) & 63."""
    return _TWO_BITS[(h >> 40) & 4095] | _BIT[(h >> 52) & 63]


# bits_of from two tables: a shift of 1 by up to 63 builds a new two-digit int per key,
# a table lookup does not (`add` 0.36 -> 0.26 µs a fresh key, 0.44 µs an ingested alert:
# bench/ingest_steps.py).
_BIT = [1 << i for i in range(64)]
_TWO_BITS = [(1 << (i & 63)) | (1 << (i >> 6)) for i in range(4096)]  # bits 40-45, 46-51


class KeyFilter:
    """Which 64-bit key hashes may be held. One writer thread and any number of readers
    may use it at once: a reader sees each word before or after a write, and a key's
    bits matter only once its rows are committed, after `add` returned."""

    __slots__ = ("_tables",)

    def __init__(self, capacity: int = MIN_KEYS) -> None:
        self._tables = [_Table(max(capacity, MIN_KEYS))]

    @property
    def nbytes(self) -> int:
        return sum(t.words.itemsize * len(t.words) for t in self._tables)

    @property
    def tables(self) -> int:
        return len(self._tables)

    @property
    def count(self) -> int:
        """Keys added (a key added twice counts twice)."""
        return sum(t.count for t in self._tables)

    def add(self, hashes: Iterable[int]) -> None:
        table = self._tables[-1]
        words, mask = table.words, table.mask
        room = table.capacity - table.count
        two_bits, bit = _TWO_BITS, _BIT  # bits_of, inline
        for h in hashes:
            if not room:
                table.count = table.capacity
                table = _Table(2 * table.capacity)
                words, mask, room = table.words, table.mask, table.capacity
                self._tables = [*self._tables, table]  # readers see the old list or this
            words[h & mask] |= two_bits[(h >> 40) & 4095] | bit[(h >> 52) & 63]
            room -= 1
        table.count = table.capacity - room

    def probes(self) -> list[tuple[array[int], int]]:
        """(words, mask) of each table, oldest first, for a caller that tests many keys in
        one loop of its own: `h` may be held if, for some table, `words[h & mask]` has
        all of `bits_of(h)` set (as `may_hold`)."""
        return [(t.words, t.mask) for t in self._tables]

    def may_hold(self, h: int) -> bool:
        bits = bits_of(h)
        return any(t.words[h & t.mask] & bits == bits for t in self._tables)

    def maybe_held(self, hashes: Iterable[int]) -> list[int]:
        """The hashes among `hashes` that may be held."""
        out = []
        tables = self._tables
        if len(tables) == 1:
            words, mask = tables[0].words, tables[0].mask
            two_bits, bit = _TWO_BITS, _BIT  # bits_of, inline
            for h in hashes:
                bits = two_bits[(h >> 40) & 4095] | bit[(h >> 52) & 63]
                if words[h & mask] & bits == bits:
                    out.append(h)
            return out
        return [h for h in hashes if self.may_hold(h)]
