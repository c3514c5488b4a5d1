"""The backup and restore procedure of docs/operations.md, run as written.

A backup taken while the node runs and publishes restores to a store that opens
cleanly and holds every alert acknowledged before the backup.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import NodeProcess, alertmesh

# The two backup commands of docs/operations.md ("Backups and restore").
PYTHON_BACKUP = (
    "import sqlite3, sys; src = sqlite3.connect(sys.argv[1]); "
    "dst = sqlite3.connect(sys.argv[2]); src.backup(dst); dst.close()"
)


def backup(tool: str, db: Path, out: Path) -> None:
    if tool == "sqlite3":
        subprocess.run(["sqlite3", str(db), f".backup '{out}'"], check=True)
    else:
        subprocess.run([sys.executable, "-c", PYTHON_BACKUP, str(db), str(out)], check=True)


def publish(node: NodeProcess, n: int) -> str:
    done = alertmesh(
        "publish", "--node", node.address, "--category", "phishing", "--title", f"alert {n}",
        "--indicator", f"domain:backup-{n}.example",
    )  # fmt: skip
    return done.stdout.splitlines()[-1]


def stats(node: NodeProcess) -> dict[str, object]:
    result: dict[str, object] = json.loads(
        alertmesh("stats", "--json", "--node", node.address).stdout
    )
    return result


@pytest.mark.parametrize("tool", ["sqlite3", "python"])
def test_a_backup_of_a_running_node_restores_every_alert_it_held(tool: str, tmp_path: Path) -> None:
    if tool == "sqlite3" and shutil.which("sqlite3") is None:
        pytest.skip("no sqlite3 command on this machine")
    home = tmp_path / "acme"
    alertmesh("init", "--home", str(home), "--name", "acme")
    node = NodeProcess(home).start()
    try:
        before = [publish(node, i) for i in range(3)]
        backup(tool, home / "alerts.db", tmp_path / "alerts-backup.db")
        held = stats(node)
        later = publish(node, 3)
    finally:
        assert node.stop() == 0

    # Restore: the node is stopped; move the old files aside, copy the backup in.
    aside = home / "before-restore"
    aside.mkdir()
    for name in ("alerts.db", "alerts.db-wal", "alerts.db-shm"):
        if (home / name).exists():
            (home / name).rename(aside / name)
    shutil.copyfile(tmp_path / "alerts-backup.db", home / "alerts.db")
    (home / "alerts.db").chmod(0o600)

    node = NodeProcess(home).start()
    try:
        restored = stats(node)
        assert restored["alerts"] == held["alerts"] == 3
        assert restored["digest"] == held["digest"]
        for alert_id in before:
            assert alertmesh("get", alert_id, "--node", node.address).returncode == 0
        # Published after the backup: gone from this store (its peers send it back by
        # catch-up, which is why a restored node should catch up before it publishes).
        assert alertmesh("get", later, "--node", node.address, check=False).returncode == 1
    finally:
        assert node.stop() == 0
