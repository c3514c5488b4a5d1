"""Where an alert's milliseconds go: stage marks for the latency benchmark.

Off unless the environment variable ALERTMESH_LATENCY_TRACE names a directory (bench/
cluster_bench.py --trace sets it for the nodes it starts). Then each call site marks
(time.monotonic(), stage, the alert id's first 8 bytes) in memory, and the process
writes its marks to DIR/<pid>.tsv when it exits. CLOCK_MONOTONIC is one clock for all
processes on a Linux machine, so the marks of five nodes and the bench line up.

Off, a call site costs one module attribute read (`if latency_trace.ON:`).
"""

from __future__ import annotations

import atexit
import os
import time
from pathlib import Path

DIRECTORY = os.environ.get("ALERTMESH_LATENCY_TRACE", "")
ON = bool(DIRECTORY)
MAX_MARKS = 200_000  # a bound on the memory a forgotten trace can take

_marks: list[tuple[float, str, bytes]] = []


def mark(stage: str, alert_id: bytes, at: float | None = None) -> None:
    """Mark that `alert_id` reached `stage` now (or at `at`, a time.monotonic())."""
    if len(_marks) < MAX_MARKS:
        _marks.append((time.monotonic() if at is None else at, stage, alert_id[:8]))


def _write() -> None:
    lines = [f"{t:.6f}\t{stage}\t{i.hex()}\n" for t, stage, i in _marks]
    path = Path(DIRECTORY) / f"{os.getpid()}.tsv"
    path.with_suffix(".part").write_text("".join(lines))
    path.with_suffix(".part").replace(path)  # whole, as the bench looks for it


if ON:
    atexit.register(_write)
