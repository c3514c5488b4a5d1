"""node/core is the protocol without I/O: importing it must not pull in any I/O module."""

import json
import subprocess
import sys
from pathlib import Path

import node.core

FORBIDDEN = {"asyncio", "socket", "grpc", "sqlite3", "aiosqlite", "time", "selectors", "ssl"}


def test_core_imports_no_io_modules() -> None:
    core = Path(node.core.__file__).parent
    modules = sorted(f"node.core.{p.stem}" for p in core.glob("*.py") if p.stem != "__init__")
    probe = (
        "import sys, json\n"
        f"before = set(sys.modules)\n"
        f"for m in {modules!r}: __import__(m)\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = {m.split(".")[0] for m in json.loads(out.stdout)}
    assert len(modules) >= 5
    assert not loaded & FORBIDDEN, f"node.core pulls in {sorted(loaded & FORBIDDEN)}"
