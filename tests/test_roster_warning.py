"""An operator who misspells a roster field (`tree_prority = 10`) is told at each load
of the roster, once, by name; the field is still accepted (a newer version's field
must not stop an older node). A command that rewrites the roster file (`roster add`,
`rotate-key`) writes only the fields it knows, and names the ones it dropped."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from node.app.config import init_home
from node.app.onboarding import add_card, own_card
from node.app.rotation import rotate_key
from tests.factory import now_ms


def test_a_misspelt_roster_field_is_warned_about_once_per_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = init_home(tmp_path / "alpha", name="alpha")
    with caplog.at_level(logging.WARNING):
        config.roster()
    assert not caplog.records  # a roster as `init` wrote it: nothing to say

    text = config.roster_path.read_text()
    config.roster_path.write_text(text + "tree_prority = 10\n")  # the last member's
    for _ in range(2):  # start-up, then a reload
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            roster = config.roster()
        assert len(roster) == 1
        [warning] = caplog.records
        assert warning.levelno == logging.WARNING
        assert "member 1 (alpha): tree_prority" in warning.getMessage()
        assert str(config.roster_path) in warning.getMessage()


def test_roster_add_rewrites_the_file_without_unknown_fields_and_names_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = init_home(tmp_path / "beta", name="beta")
    config.roster_path.write_text(config.roster_path.read_text() + "tree_prority = 10\n")
    acme = init_home(tmp_path / "acme", name="acme")
    card, _ = own_card(acme, ["peer.acme.example:7401"], now_ms())
    with caplog.at_level(logging.WARNING):
        add_card(config, card, replace=False, dry_run=False)
    assert "tree_prority" not in config.roster_path.read_text()
    [dropped] = [r.getMessage() for r in caplog.records if "rewritten" in r.getMessage()]
    assert "member 1 (beta): tree_prority" in dropped


async def test_a_key_rotation_names_the_unknown_fields_it_drops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = init_home(tmp_path / "beta", name="beta")
    config.roster_path.write_text(config.roster_path.read_text() + "tree_prority = 10\n")
    with caplog.at_level(logging.WARNING):
        await rotate_key(config, now_ms())
    assert "tree_prority" not in config.roster_path.read_text()
    [dropped] = [r.getMessage() for r in caplog.records if "rewritten" in r.getMessage()]
    assert "member 1 (beta): tree_prority" in dropped
    assert "roster.toml.pre-rotate-" in dropped  # where the field still is
