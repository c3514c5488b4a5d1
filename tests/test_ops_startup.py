"""A node that cannot start says what to change in one line, and exits non-zero.

Each story is tried as a new operator would: `alertmesh run` in a subprocess,
after one mistake in the home directory or the environment.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import NodeProcess, alertmesh

EXIT_ERROR = 2


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "acme"
    alertmesh("init", "--home", str(home), "--name", "acme")
    return home


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def run_fails(home: Path, *args: str) -> str:
    """Run the node; it must refuse to start with exactly one error line, no traceback."""
    done = alertmesh(
        "run", "--home", str(home), "--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0",
        *args, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == EXIT_ERROR, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert done.stderr.splitlines()[-1] == errors[0], done.stderr
    assert "listening on" not in done.stdout
    return errors[0]


def test_a_second_node_on_a_peer_port_in_use_says_which_setting_to_change(
    home: Path, tmp_path: Path
) -> None:
    alertmesh("init", "--home", str(tmp_path / "first"), "--name", "first")
    first = NodeProcess(tmp_path / "first").start()
    try:
        peer_port = next(
            line.removeprefix("peers on ") for line in iter(first.lines.get, None)
            if line.startswith("peers on ")
        )  # fmt: skip
        error = run_fails(home, "--peer-listen", peer_port)
    finally:
        first.stop()
    assert f"cannot listen for peers on {peer_port}" in error
    assert "in use" in error and "--peer-listen" in error


def test_a_client_port_in_use(home: Path, busy_port: int) -> None:
    error = run_fails(home, "--listen", f"127.0.0.1:{busy_port}")
    assert f"cannot listen for the client API on 127.0.0.1:{busy_port}" in error
    assert "in use" in error and "[api] listen" in error


def test_a_metrics_port_in_use(home: Path, busy_port: int) -> None:
    error = run_fails(home, "--metrics-listen", f"127.0.0.1:{busy_port}")
    assert "cannot listen for metrics" in error and "--metrics-listen" in error


def test_a_private_key_readable_by_others(home: Path) -> None:
    (home / "identity.key").chmod(0o644)
    error = run_fails(home)
    assert f"chmod 600 {home / 'identity.key'}" in error


def test_a_missing_private_key(home: Path) -> None:
    (home / "identity.key").rename(home / "elsewhere.key")
    error = run_fails(home)
    assert f"cannot read the node's private key {home / 'identity.key'}" in error


def test_a_tls_key_readable_by_others(home: Path) -> None:
    (home / "tls.key").chmod(0o644)
    error = run_fails(home)
    assert f"chmod 600 {home / 'tls.key'}" in error


def test_an_unreadable_tls_key(home: Path) -> None:
    (home / "tls.key").unlink()
    (home / "tls.key").mkdir()  # unreadable as a file, even for root
    error = run_fails(home)
    assert "cannot read the node's TLS key pair" in error and "tls.key" in error


def test_a_malformed_config(home: Path) -> None:
    config = home / "config.toml"
    config.write_text(config.read_text() + '\nname = "unterminated\n')
    error = run_fails(home)
    assert str(config) in error and "line" in error


def test_a_config_value_of_the_wrong_kind(home: Path) -> None:
    config = home / "config.toml"
    config.write_text(config.read_text().replace('format = "text"', 'format = "xml"'))
    error = run_fails(home)
    assert "log.format must be one of text, json" in error


def test_a_malformed_roster(home: Path) -> None:
    roster = home / "roster.toml"
    roster.write_text(roster.read_text() + "\n[[member]\nname = 3\n")
    error = run_fails(home)
    assert str(roster) in error


def test_a_store_file_that_is_not_a_database(home: Path) -> None:
    (home / "alerts.db").write_bytes(b"these are not the alerts you are looking for\n" * 100)
    error = run_fails(home)
    assert f"cannot open the store {home / 'alerts.db'}" in error
    assert "[store] path" in error
