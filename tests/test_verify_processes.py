"""An operator chooses how many verifier processes a node runs (`[verify] processes`):
"auto" by default, or a number; anything else stops the start with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from node import cluster
from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.app import verify
from node.app.config import CONFIG_FILE, Config
from node.core.errors import ConfigError
from node.core.limits import DEFAULT_LIMITS
from node.core.roster import Member, Roster
from node.rpc.client import AlertClient
from tests.factory import DOMAIN, Author
from tests.procs import NodeProcess, alertmesh, children

EXIT_ERROR = 2
BATCH = 999  # eight tasks of verify.SLICE alerts with the forged one


def home_with(tmp_path: Path, processes: str, members: dict[str, bytes] | None = None) -> Path:
    """A node home whose config.toml says `processes = <processes>` (TOML text)."""
    home = tmp_path / "acme"
    alertmesh("init", "--home", str(home), "--name", "acme")
    config = home / CONFIG_FILE
    text = config.read_text()
    assert 'processes = "auto"' in text  # init writes the setting, commented
    config.write_text(text.replace('processes = "auto"', f"processes = {processes}"))
    if members:
        roster = Roster.from_toml((home / "roster.toml").read_text())
        extra = [Member(n, key) for n, key in members.items()]
        (home / "roster.toml").write_text(Roster.of([*roster, *extra]).to_toml())
    return home


def forged(author: Author) -> alert_pb2.SignedAlert:
    """The author's next alert with a signature over another body."""
    signed = author.sign(author.alert(title="what was signed"), advance=False)
    body = author.alert(title="what was sent").SerializeToString(deterministic=True)
    return alert_pb2.SignedAlert(body=body, signature=signed.signature)


@pytest.mark.parametrize("processes", [1, 2])
async def test_a_node_checks_a_large_batch_through_the_verifier_processes_it_is_set_to(
    tmp_path: Path, processes: int
) -> None:
    author, liar = Author(), Author()
    home = home_with(tmp_path, str(processes), {"m": author.key, "liar": liar.key})
    assert Config.load(home).verify_processes == processes
    node = NodeProcess(home).start()
    try:
        assert node.proc is not None
        batch = [author.next(indicators=[(DOMAIN, f"one{i}.example")]) for i in range(BATCH)]
        batch.insert(BATCH // 2, forged(liar))
        async with AlertClient(node.address) as client:
            response = await client.ingest(batch)
            results = list(response.results)
            assert len(results) == BATCH + 1
            bad = results.pop(BATCH // 2)
            assert bad.outcome == api.INGEST_OUTCOME_REJECTED
            assert "does not verify" in bad.error
            assert {r.outcome for r in results} == {api.INGEST_OUTCOME_ACCEPTED}
            assert (await client.stats()).alerts == BATCH
        assert len(children(node.proc.pid)) == processes  # whatever "auto" would be
        assert "verifier process" not in node.log.read_text()  # none died or failed
    finally:
        node.kill()


@pytest.mark.parametrize("value", ["0", "9", "-1", '"two"', '""', "true", "1.5", "[2]"])
def test_a_bad_number_of_verifier_processes_is_refused_when_the_config_is_read(
    tmp_path: Path, value: str
) -> None:
    home = home_with(tmp_path, value)
    with pytest.raises(ConfigError) as refused:
        Config.load(home)
    assert str(refused.value) == (
        f'{home / CONFIG_FILE}: verify.processes must be "auto" or a whole number from 1 to '
        f"{verify.MAX_PROCESSES}"
    )


def test_a_node_with_a_bad_number_of_verifier_processes_does_not_start(tmp_path: Path) -> None:
    home = home_with(tmp_path, "0")
    done = alertmesh(
        "run", "--home", str(home), "--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0",
        check=False,
    )  # fmt: skip
    assert done.returncode == EXIT_ERROR, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        f'error: {home / CONFIG_FILE}: verify.processes must be "auto" or a whole number '
        f"from 1 to {verify.MAX_PROCESSES}"
    )


def test_auto_and_a_home_from_before_the_setting_mean_the_default(tmp_path: Path) -> None:
    home = home_with(tmp_path, '"auto"')
    assert Config.load(home).verify_processes is None
    config = home / CONFIG_FILE
    config.write_text(config.read_text().replace("processes = ", "# processes = "))
    assert Config.load(home).verify_processes is None


@pytest.mark.parametrize(
    ("cpus", "nodes", "processes"),
    [(1, 1, 1), (2, 1, 2), (8, 1, 8), (16, 1, 8), (2, 5, 1), (16, 5, 3), (16, 2, 8), (12, 3, 4)],
)
def test_auto_is_one_process_per_cpu_shared_among_the_nodes_of_a_host(
    monkeypatch: pytest.MonkeyPatch, cpus: int, nodes: int, processes: int
) -> None:
    monkeypatch.setattr(verify.os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert verify.auto_processes(nodes) == processes
    if nodes == 1:
        assert verify.Verifier(DEFAULT_LIMITS)._processes == processes
        assert verify.Verifier(DEFAULT_LIMITS, processes=3)._processes == 3


def test_a_local_cluster_shares_the_hosts_cpus_among_its_nodes(tmp_path: Path) -> None:
    """`alertmesh cluster up` runs every node on this host: each gets its share."""
    nodes = cluster.create(tmp_path / "lab", 3)
    each = max(1, verify.usable_cpus() // 3)
    assert [Config.load(n.home).verify_processes for n in nodes] == [each] * 3
    added = cluster.add_node(tmp_path / "lab")
    assert Config.load(added.home).verify_processes == max(1, verify.usable_cpus() // 4)
