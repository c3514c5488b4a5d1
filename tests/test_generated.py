"""The generated protobuf code in node/_pb matches proto/ exactly."""

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "_pb"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(out)], check=True
    )
    committed = ROOT / "node" / "_pb"
    stale = []
    for fresh in sorted(out.rglob("*")):
        if fresh.is_file():
            rel = fresh.relative_to(out)
            mine = committed / rel
            if not mine.exists() or not filecmp.cmp(fresh, mine, shallow=False):
                stale.append(str(rel))
    extra = [
        str(p.relative_to(committed))
        for p in committed.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and not (out / p.relative_to(committed)).exists()
    ]
    assert not stale and not extra, (
        f"node/_pb is stale ({stale + extra}); run: python scripts/gen_proto.py"
    )
