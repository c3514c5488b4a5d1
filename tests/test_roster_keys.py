"""Roster keys over time: the two roster forms, and which alerts and sessions a
member's retired, compromised or new key may sign (times passed in, no clock)."""

from __future__ import annotations

import pytest

from node.core.errors import ConfigError, KeyNotValid, UnknownOrigin
from node.core.roster import Member, MemberKey, Roster, format_time, parse_time

OLD, NEW, OTHER = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
T_ROTATE = parse_time("2026-12-01T09:30:00Z", "t")
HOUR = 3_600_000


def rotated(**old: object) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in old.items())
    return f"""
[[member]]
name = "acme"
addresses = ["127.0.0.1:7401"]
[[member.keys]]
key = "{OLD.hex()}"
valid_until = "2026-12-01T09:30:00Z"
{extra}
[[member.keys]]
key = "{NEW.hex()}"
valid_from = "2026-12-01T09:30:00Z"

[[member]]
name = "beta"
key = "{OTHER.hex()}"
"""


def test_the_short_form_is_one_key_valid_forever() -> None:
    roster = Roster.from_toml(f'[[member]]\nname = "beta"\nkey = "{OTHER.hex()}"\n')
    beta = roster.require_author(OTHER, seq=7, created_at_ms=1)
    assert beta.key == OTHER and beta.keys == (MemberKey(OTHER),)
    assert roster.require_session_key(OTHER, now_ms=T_ROTATE).name == "beta"
    assert "[[member.keys]]" not in roster.to_toml()  # written back in the short form


def test_a_rotated_member_has_both_keys_under_one_name() -> None:
    roster = Roster.from_toml(rotated(last_seq=41))
    acme = roster.by_name("acme")
    assert acme is not None and acme.key == NEW  # the current key is the newest
    assert len(roster) == 2 and [m.name for m in roster] == ["acme", "beta"]
    assert roster.name_of(OLD) == roster.name_of(NEW) == "acme"
    assert Roster.from_toml(roster.to_toml()) == roster  # round trip


def test_the_old_key_signs_until_its_retirement_and_the_new_one_from_then() -> None:
    roster = Roster.from_toml(rotated(last_seq=41))
    roster.require_author(OLD, seq=41, created_at_ms=T_ROTATE - 1)
    roster.require_author(NEW, seq=1, created_at_ms=T_ROTATE)
    with pytest.raises(KeyNotValid, match=r"acme.s key 0101.*retired at 2026-12-01T09:30:00Z"):
        roster.require_author(OLD, seq=40, created_at_ms=T_ROTATE + HOUR)
    # A backdated alert above the old chain's end is refused all the same.
    with pytest.raises(KeyNotValid, match=r"after its alert #41 .* this alert is #42"):
        roster.require_author(OLD, seq=42, created_at_ms=T_ROTATE - HOUR)
    with pytest.raises(KeyNotValid, match="valid only from 2026-12-01T09:30:00Z"):
        roster.require_author(NEW, seq=1, created_at_ms=T_ROTATE - HOUR)
    with pytest.raises(UnknownOrigin, match="not a member"):
        roster.require_author(bytes(32), seq=1, created_at_ms=T_ROTATE)


def test_a_compromised_key_signs_nothing_after_its_compromise_time() -> None:
    roster = Roster.from_toml(rotated(compromised="true"))
    roster.require_author(OLD, seq=99, created_at_ms=T_ROTATE - 1)  # no last_seq given
    with pytest.raises(KeyNotValid, match="compromised since 2026-12-01T09:30:00Z"):
        roster.require_author(OLD, seq=3, created_at_ms=T_ROTATE + 1)
    assert "compromised since" in roster.refusal(OLD, 3, T_ROTATE + 1)
    assert roster.refusal(OLD, 3, T_ROTATE - 1) == ""
    strict = Roster.from_toml(rotated(compromised="true", last_seq=2))
    with pytest.raises(KeyNotValid, match="compromised after its alert #2"):
        strict.require_author(OLD, seq=3, created_at_ms=T_ROTATE - HOUR)


def test_only_a_key_valid_now_opens_a_peer_session() -> None:
    roster = Roster.from_toml(rotated(last_seq=41))
    assert roster.require_session_key(NEW, now_ms=T_ROTATE + HOUR).name == "acme"
    roster.require_session_key(OLD, now_ms=T_ROTATE - HOUR)
    with pytest.raises(KeyNotValid, match="acme's key, not valid now"):
        roster.require_session_key(OLD, now_ms=T_ROTATE + HOUR)
    compromised = Roster.from_toml(rotated(compromised="true"))
    with pytest.raises(KeyNotValid, match="compromised"):
        compromised.require_session_key(OLD, now_ms=T_ROTATE - HOUR)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ('valid_until = "yesterday"', "valid_until 'yesterday' is not a time"),
        ('valid_until = "2026-12-01T09:30:00"', "needs a time zone"),
        ("valid_until = 42", "must be a time"),
        ('valid_from = "2026-12-02T00:00:00Z"\nvalid_until = "2026-12-01T00:00:00Z"', "after"),
        ("compromised = true", "compromised key needs valid_until"),
        ("last_seq = 3", "last_seq .* goes with valid_until"),
        ('valid_until = "2026-12-01T00:00:00Z"\nlast_seq = -1', "last_seq is a seq"),
        ("revoked = true", "unknown field.* revoked"),
    ],
)
def test_bad_key_entries_are_config_errors_that_say_what_is_wrong(keys: str, message: str) -> None:
    text = f'[[member]]\nname = "acme"\n[[member.keys]]\nkey = "{OLD.hex()}"\n{keys}\n'
    with pytest.raises(ConfigError, match=message):
        Roster.from_toml(text, "roster.toml")


def test_a_key_is_listed_once_and_key_and_keys_do_not_mix() -> None:
    both = f'[[member]]\nname = "a"\nkey = "{OLD.hex()}"\n[[member.keys]]\nkey = "{NEW.hex()}"\n'
    with pytest.raises(ConfigError, match="either key or"):
        Roster.from_toml(both)
    with pytest.raises(ConfigError, match="twice"):
        Roster.of([Member("a", OLD), Member("b", NEW, keys=(MemberKey(OLD), MemberKey(NEW)))])


def test_times_are_written_as_they_are_read() -> None:
    for text in ("2026-12-01T09:30:00Z", "2026-12-01T09:30:00.250Z"):
        assert format_time(parse_time(text, "t")) == text
    assert parse_time("2026-12-01T10:30:00+01:00", "t") == T_ROTATE


def test_a_members_tree_priority_is_read_written_and_checked() -> None:
    # The federation names tree hubs in the roster (docs/gossip.md, T1); a member's own
    # card cannot set it, and it survives a key rotation's rewrite of the roster.
    text = f'[[member]]\nname = "beta"\nkey = "{OTHER.hex()}"\ntree_priority = 3\n'
    roster = Roster.from_toml(text)
    assert roster.tree_priority(OTHER) == 3
    assert roster.tree_priority(OLD) == 0  # not a member: no priority
    assert Roster.from_toml(roster.to_toml()).tree_priority(OTHER) == 3
    assert Roster.from_toml(rotated()).tree_priority(NEW) == 0  # the default
    for bad in ("-1", '"high"', "true"):
        with pytest.raises(ConfigError, match="tree_priority"):
            Roster.from_toml(text.replace("= 3", f"= {bad}"))


def test_unknown_member_fields_are_accepted_and_named() -> None:
    # A misspelt field (or one of a newer version) does not stop the node; the roster
    # names it, so the loader can warn (tests/test_roster_warning.py).
    text = f'[[member]]\nname = "beta"\nkey = "{OTHER.hex()}"\ntree_prority = 3\n'
    roster = Roster.from_toml(text)
    assert OTHER in roster and roster.tree_priority(OTHER) == 0
    assert roster.unknown_fields == ("member 1 (beta): tree_prority",)
    assert Roster.from_toml(rotated()).unknown_fields == ()
    assert Roster.from_toml(text) == Roster.from_toml(text.replace("tree_prority", "x"))
