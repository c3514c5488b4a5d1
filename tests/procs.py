"""Real node processes for integration tests (loopback only, free ports)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

STARTUP_TIMEOUT_S = 60.0
LISTEN_ANY_PORT = ("--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0")


def alertmesh(
    *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def new_node(home: Path, name: str, members: dict[str, bytes]) -> NodeProcess:
    """`alertmesh init` a home, add `members` (name -> key) to its roster, start it."""
    from node.core.roster import Member, Roster

    alertmesh("init", "--home", str(home), "--name", name)
    roster = Roster.from_toml((home / "roster.toml").read_text())
    extra = [Member(n, key) for n, key in members.items()]
    (home / "roster.toml").write_text(Roster.of([*roster, *extra]).to_toml())
    return NodeProcess(home).start()


class NodeProcess:
    """`alertmesh run --home HOME --listen 127.0.0.1:0` in its own process."""

    def __init__(
        self, home: Path, *, ports_from_config: bool = False, command: str = "run"
    ) -> None:
        self.home = home
        self.command = command  # or "serve-api": a read-only API process of the home
        # Port 0 (the default) suits a node nobody dials by its roster address.
        self.listen: tuple[str, ...] = () if ports_from_config else LISTEN_ANY_PORT
        if command == "serve-api" and not ports_from_config:
            self.listen = LISTEN_ANY_PORT[:2]
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        self.lines: queue.Queue[str] = queue.Queue()
        self.log = home / ("node.log" if command == "run" else f"{command}-{id(self)}.log")

    def start(self) -> NodeProcess:
        self.address = ""
        log = open(self.log, "a")  # noqa: SIM115 - closed when the process ends
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", self.command, "--home", str(self.home),
             *self.listen],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                self.lines.put(line.rstrip("\n"))
            log.close()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"node exited early:\n{self.log.read_text()}") from None
                continue
            if line.startswith("listening on "):
                self.address = line.removeprefix("listening on ")
                return self
        raise RuntimeError(f"node did not start in time:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def cpu_ticks(pid: int) -> int:
    """User + system CPU clock ticks of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])
