"""An operator who misspells a roster field (`tree_prority = 10`) is told at each load
of the roster, once, by name; the field is still accepted (a newer version's field
must not stop an older node)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from node.app.config import init_home


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
