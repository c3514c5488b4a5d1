"""Turning signed bytes from elsewhere into verified records, off the event loop.

Cheap checks run first (size, decoding, roster, protocol rules) so that junk
costs no signature verification. libsodium releases the GIL while verifying,
so a small thread pool verifies on every core.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from node.core import alerts
from node.core.alerts import AlertRecord
from node.core.errors import AlertmeshError
from node.core.limits import Limits
from node.core.roster import Roster
from node.crypto import verify_alert

Checked = AlertRecord | AlertmeshError


def check_signed(
    body: bytes, signature: bytes, *, roster: Roster, now_ms: int, limits: Limits
) -> AlertRecord:
    """Verify one signed alert completely; raise the first rule it breaks."""
    alert = alerts.decode_body(body, limits)
    roster.require(alert.origin)
    keys = alerts.validate(alert, now_ms=now_ms, limits=limits)
    verify_alert(alert.origin, body, signature)
    return alerts.make_record(body, signature, alert, keys)


def check_batch(
    items: Sequence[tuple[bytes, bytes]], roster: Roster, now_ms: int, limits: Limits
) -> list[Checked]:
    out: list[Checked] = []
    for body, signature in items:
        try:
            out.append(check_signed(body, signature, roster=roster, now_ms=now_ms, limits=limits))
        except AlertmeshError as exc:
            out.append(exc)
    return out


class Verifier:
    """A thread pool that checks batches of signed alerts in parallel slices."""

    def __init__(self, limits: Limits, threads: int | None = None) -> None:
        self.limits = limits
        self._threads = threads or min(4, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="verify")

    async def check(
        self, items: Sequence[tuple[bytes, bytes]], roster: Roster, now_ms: int
    ) -> list[Checked]:
        if not items:
            return []
        loop = asyncio.get_running_loop()
        if len(items) < 16:
            return await loop.run_in_executor(
                self._pool, check_batch, items, roster, now_ms, self.limits
            )
        step = -(-len(items) // self._threads)
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(
                    self._pool, check_batch, items[i : i + step], roster, now_ms, self.limits
                )
                for i in range(0, len(items), step)
            )
        )
        return [checked for part in parts for checked in part]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
