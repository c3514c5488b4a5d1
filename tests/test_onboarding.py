"""Two organisations join their running nodes the way docs/operations.md tells them:
exchange member cards, add them to their rosters, reload, and share alerts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from node.cluster import free_port
from tests.procs import NodeProcess, alertmesh

pytestmark = pytest.mark.cluster

JOIN_TIMEOUT_S = 60.0  # a bound, not a target


def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {what}")


def flagged(home: Path, value: str) -> bool:
    return alertmesh("check", value, "--home", str(home), check=False).returncode == 0


def connected_peers(home: Path) -> list[str]:
    stats = json.loads(alertmesh("stats", "--json", "--home", str(home)).stdout)
    return [p["name"] for p in stats["peers"] if p["connected"]]


@pytest.fixture
def homes(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Two organisations' nodes, each initialised by its operator and running alone."""
    taken: set[int] = set()
    nodes = []
    for name in ("acme", "beta"):
        home = tmp_path / name
        alertmesh(
            "init", "--home", str(home), "--name", name,
            "--listen", f"127.0.0.1:{free_port(taken=taken)}",
            "--peer-listen", f"127.0.0.1:{free_port(taken=taken)}",
        )  # fmt: skip
        nodes.append(NodeProcess(home, ports_from_config=True).start())
    try:
        yield nodes[0].home, nodes[1].home
    finally:
        for node in nodes:
            node.kill()


def test_two_running_nodes_join_by_exchanging_cards(homes: tuple[Path, Path]) -> None:
    acme, beta = homes
    alertmesh("publish", "--home", str(acme), "--category", "phishing",
              "--title", "before the join", "--indicator", "domain:before.example")  # fmt: skip

    # Each operator makes its card and sends it to the other.
    acme_card, beta_card = acme.parent / "acme.card", beta.parent / "beta.card"
    made = alertmesh("member-card", "--home", str(acme), "--out", str(acme_card))
    assert "TLS pin     sha256:" in made.stderr
    beta_pin = alertmesh("member-card", "--home", str(beta), "--out", str(beta_card)).stderr

    # Acme adds Beta's card and dials it; Beta adds Acme's and waits to be dialed.
    added = alertmesh("roster", "add", str(beta_card), "--home", str(acme), "--connect")
    assert beta_pin.split("TLS pin", 1)[1].split()[0] in added.stdout  # what they compare
    assert "roster-reload" in added.stdout
    alertmesh("roster", "add", str(acme_card), "--home", str(beta))
    again = alertmesh("roster", "add", str(acme_card), "--home", str(beta), check=False)
    assert again.returncode == 2 and "--replace" in again.stderr
    for home in (beta, acme):
        assert "2 members" in alertmesh("roster-reload", "--home", str(home)).stdout

    until(lambda: connected_peers(acme) == ["beta"], "acme's node connected to beta's")
    alertmesh("publish", "--home", str(beta), "--category", "scam",
              "--title", "after the join", "--indicator", "domain:after.example")  # fmt: skip
    until(lambda: flagged(acme, "after.example"), "beta's alert on acme's node")
    until(lambda: flagged(beta, "before.example"), "acme's earlier alert on beta's node")
    shown = alertmesh("check", "https://login.after.example/x", "--home", str(acme)).stdout
    assert "FLAGGED scam/medium by beta" in shown
