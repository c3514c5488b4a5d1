#!/usr/bin/env python3
"""Generate node/_pb from proto/ (the only generated code in the tree).

Usage: python scripts/gen_proto.py [--out DIR]

protoc writes imports as `alertmesh.v1.x_pb2`; they are rewritten to
`node._pb.alertmesh.v1.x_pb2` so the generated code lives inside the package.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
PKG = "node._pb"


def generate(out: Path) -> None:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    # The mypy plugins are console scripts installed beside this interpreter.
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    sources = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO}",
            f"--python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *sources,
        ]
        if protoc.main(args) != 0:
            sys.exit("protoc failed")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tmp, out)
    pattern = re.compile(r"\b(from|import) alertmesh\.v1\b")
    for path in sorted(out.rglob("*.py*")):
        text = pattern.sub(lambda m: f"{m.group(1)} {PKG}.alertmesh.v1", path.read_text())
        path.write_text(text)
    for d in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "node" / "_pb")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
