"""Operating a member node: metrics an operations team scrapes, logs it can ship.

A three-node cluster of real processes, each serving /metrics on a loopback port
it picked itself and logging JSON lines at debug level.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node import cluster
from node.app.config import CONFIG_FILE
from tests.clusters import eventually, running_cluster
from tests.procs import NodeProcess, alertmesh

pytestmark = pytest.mark.cluster

DASHBOARD = Path(__file__).parent.parent / "docs" / "grafana-dashboard.json"
RULES = DASHBOARD.with_name("prometheus-rules.yml")
SUFFIX = r"_(total|bucket|count|sum)$"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def configure(home: Path, *, auth: str = "none") -> None:
    config = home / CONFIG_FILE
    text = config.read_text()
    for old, new in (('listen = ""', 'listen = "127.0.0.1:0"'),  # [metrics]
                     ('format = "text"', 'format = "json"'),
                     ('level = "info"', 'level = "debug"'),
                     ('auth = "none"', f'auth = "{auth}"')):  # fmt: skip
        assert old in text
        text = text.replace(old, new)
    config.write_text(text)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[cluster.ClusterNode]]:
    directory = tmp_path_factory.mktemp("ops")
    for node in cluster.create(directory, 3):
        configure(node.home)
    with running_cluster(directory, 3) as running:
        yield running


def metrics_address(node: cluster.ClusterNode) -> str:
    out = (node.home / "node.out").read_text()
    return next(
        line.removeprefix("metrics on ") for line in out.splitlines()
        if line.startswith("metrics on ")
    )  # fmt: skip


def scrape(address: str) -> tuple[Samples, set[str]]:
    """Every sample by (name, labels), and every metric family name, parsed as Prometheus does."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: Samples = {}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for s in family.samples:
            names.add(s.name)
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, names


def value(samples: Samples, name: str, /, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, /, **labels: str) -> float:
    """Sum over every label set that includes `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def publish(api: str, title: str, domain: str, *token: str) -> str:
    done = alertmesh(
        "publish", "--node", api, *token, "--category", "scam", "--title", title,
        "--indicator", f"domain:{domain}",
    )  # fmt: skip
    return done.stdout.splitlines()[-1]


async def held_by_all(nodes: list[cluster.ClusterNode], alert_id: str) -> None:
    async def everywhere() -> bool:
        for node in nodes:
            got = await asyncio.to_thread(
                alertmesh, "get", alert_id, "--node", node.api, check=False
            )
            if got.returncode != 0:
                return False
        return True

    await eventually(everywhere, f"alert {alert_id[:12]} on every node")


async def test_an_operator_sees_a_publish_move_the_metrics_of_every_node(
    nodes: list[cluster.ClusterNode],
) -> None:
    author, reader = nodes[0], nodes[1]
    before = {n.name: scrape(metrics_address(n))[0] for n in nodes}
    alert_id = publish(author.api, "metrics", "metrics.example")
    await held_by_all(nodes, alert_id)
    assert alertmesh("check", "--node", reader.api, "metrics.example").returncode == 0
    after = {n.name: scrape(metrics_address(n))[0] for n in nodes}

    a0, a1 = before[author.name], after[author.name]
    assert value(a1, "alertmesh_node_info", name=author.name) == 1
    assert value(a1, "alertmesh_published_total") == value(a0, "alertmesh_published_total") + 1
    assert value(a1, "alertmesh_publish_seconds_count") > value(
        a0, "alertmesh_publish_seconds_count"
    )
    assert value(
        a1, "alertmesh_alerts_accepted_total", origin=author.name, category="scam"
    ) > value(a0, "alertmesh_alerts_accepted_total", origin=author.name, category="scam")
    assert total(a1, "alertmesh_gossip_alerts_sent_total") > total(
        a0, "alertmesh_gossip_alerts_sent_total"
    )
    for other in nodes[1:]:
        assert value(a1, "alertmesh_peer_up", peer=other.name) == 1
        assert value(a1, "alertmesh_peer_sessions_opened_total", peer=other.name) >= 1
        assert ("alertmesh_peer_outbox_frames", frozenset({("peer", other.name)})) in a1

    for node in nodes[1:]:
        b0, b1 = before[node.name], after[node.name]
        accepted = ("alertmesh_ingest_total", {"outcome": "accepted"})
        assert value(b1, accepted[0], **accepted[1]) > value(b0, accepted[0], **accepted[1])
        assert (
            value(b1, "alertmesh_alerts_stored", origin=author.name)
            == value(b0, "alertmesh_alerts_stored", origin=author.name) + 1
        )
        assert total(b1, "alertmesh_gossip_alerts_received_total") > total(
            b0, "alertmesh_gossip_alerts_received_total"
        )
        assert value(b1, "alertmesh_store_size_bytes") > 0
        assert value(b1, "alertmesh_peer_tls_pin_mismatch_total") == 0
    r0, r1 = before[reader.name], after[reader.name]
    assert (
        value(r1, "alertmesh_check_seconds_count") == value(r0, "alertmesh_check_seconds_count") + 1
    )


async def test_a_node_that_was_down_catches_up_and_its_metrics_say_how_much(
    nodes: list[cluster.ClusterNode],
) -> None:
    late = nodes[2]
    assert cluster.stop(late)
    alert_id = publish(nodes[0].api, "while down", "while-down.example")
    await held_by_all(nodes[:2], alert_id)
    proc = cluster.start(late)
    cluster.wait_serving(late, proc, cluster.START_TIMEOUT_S)
    await held_by_all(nodes, alert_id)
    samples, _ = scrape(metrics_address(late))
    assert total(samples, "alertmesh_catchup_alerts_received_total") >= 1
    assert total(samples, "alertmesh_catchup_bytes_received_total") > 0
    assert total(samples, "alertmesh_catchup_ranges_requested_total") >= 1
    await eventually(
        lambda: asyncio.to_thread(
            lambda: (
                total(scrape(metrics_address(nodes[0]))[0], "alertmesh_peer_reconnects_total") >= 1
            )
        ),
        "the author counting a reconnect of the late node",
    )


def test_every_metric_of_the_example_dashboard_and_alert_rules_is_served(
    nodes: list[cluster.ClusterNode],
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [line for line in RULES.read_text().splitlines() if "expr:" in line]
    named = {m for e in exprs for m in re.findall(r"\b((?:alertmesh|process)_[a-z_]+)\b", e)}
    assert len(named) > 20
    _, served = scrape(metrics_address(nodes[0]))
    # A family with no sample yet (no rejections so far) is served by its name alone.
    missing = {m for m in named if m not in served and re.sub(SUFFIX, "", m) not in served}
    assert not missing, f"on the dashboard but not served: {sorted(missing)}"


def secrets_of(home: Path) -> list[str]:
    """What must never be logged: the signing seed and the TLS private key."""
    seed = (home / "identity.key").read_text().strip()
    pem = (home / "tls.key").read_text().splitlines()
    body = [line for line in pem if line and not line.startswith("-----")]
    return [seed, seed.upper(), *body]


async def test_logs_are_json_lines_and_never_hold_a_key_or_a_token(
    nodes: list[cluster.ClusterNode], tmp_path: Path
) -> None:
    # A node whose client API wants tokens: one right, one wrong call.
    gate_home = tmp_path / "gate"
    alertmesh("init", "--home", str(gate_home), "--name", "gate")
    configure(gate_home, auth="token")
    tokens = [
        alertmesh("token", "create", "--home", str(home), "--scope", "publish").stdout.strip()
        for home in (gate_home, nodes[0].home)
    ]
    gate = NodeProcess(gate_home).start()
    try:
        publish(gate.address, "with a token", "token.example", "--token", tokens[0])
        wrong = tokens[0][:-4] + ("AAAA" if not tokens[0].endswith("AAAA") else "BBBB")
        refused = alertmesh(
            "check", "--node", gate.address, "--token", wrong, "token.example", check=False
        )
        assert refused.returncode == 2 and "UNAUTHENTICATED" in refused.stderr
    finally:
        assert gate.stop() == 0
    # And a cluster node, called with a token it does not check.
    alert_id = publish(nodes[0].api, "token unchecked", "unchecked.example", "--token", tokens[1])
    await held_by_all(nodes, alert_id)

    homes = [n.home for n in nodes] + [gate_home]
    forbidden = [s for home in homes for s in secrets_of(home)]
    # A token is amt_<8 hex id>_<43-character secret>; the secret may hold "_" itself.
    forbidden += tokens + [t.split("_", 2)[2] for t in tokens]
    logs = [p for home in homes for p in home.rglob("*") if p.suffix in {".log", ".out"}]
    assert {p.name for p in logs} == {"node.log", "node.out"}
    assert len(logs) == 2 * len(nodes) + 1  # the gate's stdout went to the test
    for log in logs:
        text = log.read_text()
        for secret in forbidden:
            assert secret not in text, f"a secret is in {log}"

    events = set()
    for home in homes:
        for line in (home / "node.log").read_text().splitlines():
            entry = json.loads(line)  # every line is one JSON object
            assert {"time", "level", "logger", "message"} <= entry.keys()
            events.add(entry.get("event"))
    assert {"serving", "session_open", "published", "stopped"} <= events
