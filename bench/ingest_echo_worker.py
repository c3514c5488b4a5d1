"""A verifier worker that checks nothing, for bench/ingest_floor.py: the process pool's
own cost. It runs node.app.verify_worker's serve loop (the same frames, pipes and
pickling) but answers each alert with its record's fields after decoding the body only:
no rules, no indicators, no signature. Never used by a node.

    python -m bench.ingest_echo_worker   (started by Verifier(worker=...))
"""

from __future__ import annotations

from collections.abc import Sequence

from node.app import verify_worker
from node.core import alerts
from node.core.limits import Limits


def decode_only(
    items: Sequence[tuple[bytes, bytes]], now_ms: int, limits: Limits
) -> list[verify_worker.Result]:
    out: list[verify_worker.Result] = []
    for body, _ in items:
        alert = alerts.decode_body(body, limits)
        # Keys of the same count and about the same size as the real ones (the values).
        out.append(alerts.record_fields(alert, tuple([i.value for i in alert.indicators])))
    return out


if __name__ == "__main__":
    verify_worker.check_admitted_bytes = decode_only  # type: ignore[assignment]
    verify_worker.main()
