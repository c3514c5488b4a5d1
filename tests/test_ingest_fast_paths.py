"""The ingest path's shortcuts answer as the general code they skip, for every input.

Each test compares a shortcut with the code it stands in for on many seeded random
inputs (the seed is printed), including inputs at the edges of the shortcut's test,
and checks that the shortcut is taken at all (else it would compare the general code
with itself).
"""

from __future__ import annotations

import collections
import random

import pytest

from node.core import indicators
from node.core.chain import Chains
from node.core.errors import AlertmeshError, InvalidIndicator
from node.core.indicators import ADDRESS, TX, TYPE_NAMES, flagged_keys, index_keys, normalize
from node.core.roster import Member, MemberKey, Roster
from tests.test_indicators import EDGES, general_paths_only, mutate, random_case, random_texts

HEX = "0123456789abcdef"


def _evm_text(rng: random.Random) -> str:
    """An EVM account or tx hash, canonical more often than not, else one edit away."""
    digits = "".join(rng.choice(HEX) for _ in range(rng.choice([40, 40, 64, 64, 39, 41, 63, 65])))
    if rng.random() < 0.1:
        digits = "".join(rng.choice("0123456789") for _ in digits)  # no letter: no case
    chain = rng.choice(
        ["", "", "eip155:1:", "eip155:137:", "eip155:" + "9" * 30 + ":", "eip155:" + "9" * 31 + ":",
         "eip155:0:", "eip155:01:", "eip155:0x89:", "EIP155:1:", "eth:", "bip122:1:", "eip155::"]
    )  # fmt: skip
    text = f"{chain}{rng.choice(['0x', '0x', '0x', '0X', ''])}{digits}"
    edit = rng.randrange(8)
    if edit == 0:
        i = rng.randrange(len(text))
        text = text[:i] + rng.choice("AFgx: \n.") + text[i + 1 :]
    elif edit == 1:
        text = rng.choice([" ", "\t", "\n"]) + text if rng.random() < 0.5 else text + "\n"
    elif edit == 2:
        text = text.upper() if rng.random() < 0.5 else text[:-1] + text[-1].upper()
    return text


def _general_keys(type_: int, text: str) -> list[str] | str:
    try:
        return index_keys(normalize(type_, text, strict=True))
    except InvalidIndicator as exc:
        return str(exc)


def _fast_keys(type_: int, text: str) -> list[str] | str:
    try:
        return flagged_keys(type_, text)
    except InvalidIndicator as exc:
        return str(exc)


def test_canonical_evm_values_get_the_keys_and_errors_of_the_general_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed = 20261206
    print(f"seed={seed}")
    rng = random.Random(seed)
    texts = [_evm_text(rng) for _ in range(6000)]
    fast_hits = 0
    for text in texts:
        for type_ in TYPE_NAMES.values():
            expected = _general_keys(type_, text)
            got = _fast_keys(type_, text)
            assert got == expected, (type_, text)
            pattern = indicators._CANONICAL.get(type_)
            fast_hits += bool(pattern is not None and pattern.fullmatch(text))
    assert fast_hits > 400  # the shortcut was taken, often
    # And with the shortcut off, flagged_keys answers the same (the general path).
    monkeypatch.setattr(indicators, "_CANONICAL", {})
    for text in texts[:1500]:
        for type_ in (ADDRESS, TX):
            assert _fast_keys(type_, text) == _general_keys(type_, text), (type_, text)


def test_a_canonical_value_is_the_normalised_value_and_its_keys() -> None:
    for text in ["eip155:1:0x" + "ab" * 20, "0x" + "12" * 20, "eip155:8453:0x" + "0f" * 32]:
        type_ = ADDRESS if len(text.rpartition(":")[2]) == 42 else TX
        assert indicators._CANONICAL[type_].fullmatch(text)
        assert normalize(type_, text).value == text
        assert flagged_keys(type_, text) == index_keys(normalize(type_, text))


def _canonical_spellings(texts: list[str]) -> list[str]:
    """Each text's normalised value under every type it is valid as, and variants of
    that value one edit or one change of case away."""
    rng = random.Random(len(texts))
    out = []
    for text in texts:
        for type_ in TYPE_NAMES.values():
            try:
                value = normalize(type_, text, strict=False).value
            except InvalidIndicator:
                continue
            out += [value, mutate(rng, value), random_case(rng, value)]
    return out


def _hosts_and_urls(rng: random.Random, n: int) -> list[str]:
    """Host names, emails and URLs near the canonical shapes: every printable ASCII
    character (and a few others) in paths and queries, labels of 1-63 characters."""
    printable = "".join(map(chr, range(0x20, 0x7F))) + "\t\né"
    label_chars = "abcdefghijklmnopqrstuvwxyz0123456789-_"

    def label() -> str:
        size = rng.choice([1, 2, 5, 12, 62, 63, 64])
        return "".join(rng.choice(label_chars) for _ in range(size))

    def part() -> str:
        return "".join(rng.choice(printable) for _ in range(rng.randrange(0, 12)))

    out = []
    for _ in range(n):
        host = ".".join(label() for _ in range(rng.choice([1, 2, 2, 3, 4, 5])))
        if rng.random() < 0.3:
            host = host.replace("_", "")
        if rng.random() < 0.2:
            host = host.rstrip("0123456789-_.") + rng.choice(["", ".123", ".com", "."])
        path = "/" + part() if rng.random() < 0.9 else ""
        query = "?" + part() if rng.random() < 0.5 else ""
        scheme = rng.choice(["https", "http", "https", "HTTP", "ftp"])
        out += [host, f"{part()[:3]}bob{part()[:2]}@{host}", f"{scheme}://{host}{path}{query}"]
    return out


def test_canonical_values_of_every_type_get_the_keys_and_errors_of_the_general_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = EDGES + random_texts(20261207, per_kind=300)
    texts += _canonical_spellings(texts)
    texts += _hosts_and_urls(random.Random(20261208), 3000)
    texts += [
        "a.example",
        "a.b_c.example",
        "a_b.example",
        "x.123",
        "x.12a",
        "x.-1",
        ".".join(["a" * 63] * 3 + ["a" * 61]),
        ".".join(["a" * 63] * 3 + ["a" * 62]),
        "bob@" + ".".join(["a" * 63] * 3 + ["a" * 62]),
        "https://" + ".".join(["a" * 63] * 3 + ["a" * 62]) + "/",
        "https://a.example/" + "x" * 2100,
        "https://a.example/" + "x" * 2000,
        "https://a.example/?",
        "https://a.example/a?b?c",
        "https://a.example/a%41",
        "https://a.example/a b",
        "https://a.example/@x",
        "https://a.example:443/",
        "https://a.example",
        "http://1.2.3.4/",
        "b%ob+x@a.example",
        "Bob@a.example",
        "1.2.3.4",
        "01.2.3.4",
    ]
    print(f"{len(texts)} texts")
    fast = {(type_, t): _fast_keys(type_, t) for t in texts for type_ in TYPE_NAMES.values()}
    hits = collections.Counter(
        type_ for type_, t in fast if (p := indicators._CANONICAL.get(type_)) and p.fullmatch(t)
    )
    print(f"shortcut taken: {dict(hits)}")
    assert set(hits) == set(indicators._CANONICAL) and min(hits.values()) >= 20
    monkeypatch.setattr(indicators, "_CANONICAL", {})  # flagged_keys' shortcut off
    with general_paths_only():  # and normalize's own fast paths
        for (type_, text), got in fast.items():
            assert got == _fast_keys(type_, text) == _general_keys(type_, text), (type_, text)


def _seq_sets(rng: random.Random) -> dict[bytes, set[int]]:
    origins = [bytes([i]) * 32 for i in range(6)]
    held: dict[bytes, set[int]] = {}
    for origin in origins[:5]:  # the sixth is never held
        top = rng.randrange(1, 400)
        density = rng.choice([1.0, 0.95, 0.5, 0.1])
        held[origin] = {s for s in range(1, top) if rng.random() < density}
    return held


def test_holding_answers_as_holds_for_every_slot() -> None:
    seed = 1206
    print(f"seed={seed}")
    rng = random.Random(seed)
    for _ in range(40):
        held = _seq_sets(rng)
        chains = Chains()
        adds = [(o, s) for o, seqs in held.items() for s in seqs]
        rng.shuffle(adds)
        for origin, seq in adds:
            chains.add(origin, seq)
        origins = [*held, bytes([9]) * 32]
        slots = [(rng.choice(origins), rng.randrange(0, 450)) for _ in range(500)]
        got = chains.holding(slots)
        assert got == [chains.holds(o, s) for o, s in slots]
        # (seq 0 is no alert's; holds answers True for it below a held seq, as it did)
        assert [h for h, (_, s) in zip(got, slots, strict=True) if s] == [
            s in held.get(o, set()) for o, s in slots if s
        ]
    assert Chains().holding([]) == []


def _chain_states(chains: Chains) -> list[tuple[bytes, int, int, list[tuple[int, int]]]]:
    return [(o, c.contiguous, c.held_above, c.above.runs()) for o, c in chains.items()]


def test_add_all_leaves_the_chains_add_leaves_slot_by_slot() -> None:
    # add_all takes a shortcut for a seq that extends a contiguous prefix with no runs
    # above it; it must leave what add() of each slot in turn leaves, also for slots
    # added twice, out of order, in gaps, and joining runs.
    seed = random.randrange(1 << 32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    for _ in range(40):
        adds = [(o, s) for o, seqs in _seq_sets(rng).items() for s in seqs]
        rng.shuffle(adds)
        if rng.random() < 0.5:
            adds.sort(key=lambda slot: slot[1])  # in order, as a commit usually is
        adds += rng.sample(adds, len(adds) // 10)  # some again
        one, each = Chains(), Chains()
        for i in range(0, len(adds), 37):
            one.add_all(adds[i : i + 37])
            for origin, seq in adds[i : i + 37]:
                each.add(origin, seq)
            assert _chain_states(one) == _chain_states(each)
    assert _chain_states(one) and any(s[3] for s in _chain_states(one))  # runs were made


def _refusal(roster: Roster, origin: bytes, seq: int, created_at_ms: int) -> str:
    try:
        roster.require_author(origin, seq, created_at_ms)
    except AlertmeshError as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def test_unbounded_keys_are_exactly_the_keys_require_author_never_refuses() -> None:
    seed = 61206
    print(f"seed={seed}")
    rng = random.Random(seed)
    for _ in range(30):
        members = []
        for m in range(rng.randrange(1, 5)):
            keys = []
            for k in range(rng.randrange(1, 4)):
                bounds = rng.randrange(5)
                valid_until = rng.choice([0, 1_000, 5_000]) if bounds in (1, 2, 3) else 0
                keys.append(
                    MemberKey(
                        key=bytes([m, k]) * 16,
                        valid_from_ms=rng.choice([0, 0, 2_000]) if bounds != 4 else 3_000,
                        valid_until_ms=valid_until,
                        compromised=bounds == 3 and bool(valid_until),
                        last_seq=rng.choice([None, 3]) if valid_until else None,
                    )
                )
            members.append(Member(f"m{m}", keys[-1].key, keys=tuple(keys)))
        roster = Roster.of(members)
        for key in [*roster.members, b"\xee" * 32]:
            verdicts = {
                _refusal(roster, key, seq, created)
                for seq in (1, 3, 4, 10**6)
                for created in (1, 999, 1_000, 2_500, 4_000, 6_000, 10**13)
            }
            if key in roster.unbounded_keys:
                assert verdicts == {""}, key
            else:  # bounded, or no member at all: some alert of it is refused
                assert verdicts != {""}, key
    assert Roster().unbounded_keys == frozenset()
