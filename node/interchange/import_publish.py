"""`alertmesh import`, step 3: publish the planned alerts in PublishBatch calls of
BATCH_ALERTS, with a progress bar on a terminal and plain progress lines otherwise
(node/interchange/importer.py reads and plans them).

An item the node could not store (UNAVAILABLE: its store failed) is sent once more after
RETRY_PAUSE_S, which is safe: each alert's request id is its content's hash. If it fails
again the import stops (ImportFailed, exit 2), after its summary of what went in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import grpc

from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.rpc.client import AlertClient

BATCH_ALERTS = 200  # alerts per PublishBatch call (the node takes up to max_batch)
PROGRESS_EVERY_S = 1.0
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]  # a batch item's code: the store failed
# Before the one retry of what the store failed: a PostgreSQL reconnect, or the writer lock
# its dropped backend still holds, usually fails again within milliseconds.
RETRY_PAUSE_S = 1.0
Pause = Callable[[float], Awaitable[object]]  # asyncio.sleep; the tests pass their own


class ImportFailed(Exception):
    """The import cannot run at all (exit 2); the message says why."""


@dataclass(frozen=True, slots=True)
class Refusal:
    where: str
    value: str
    reason: str

    def __str__(self) -> str:
        shown = self.value if len(self.value) <= 100 else self.value[:100] + "…"
        parts = [self.where or "input", repr(shown) if self.value else "", self.reason]
        return ": ".join(p for p in parts if p)


@dataclass(slots=True)
class Plan:
    requests: list[api.PublishRequest] = field(default_factory=list)
    wheres: list[str] = field(default_factory=list)  # per request: where its values were
    refused: list[Refusal] = field(default_factory=list)
    values: int = 0  # values read

    @property
    def indicators(self) -> int:
        return sum(len(r.indicators) for r in self.requests)


@dataclass(slots=True)
class Published:
    new: int = 0
    duplicate: int = 0
    indicators: int = 0
    refused: list[Refusal] = field(default_factory=list)  # whole alerts the node refused
    refused_values: int = 0


class Progress:
    """A tqdm bar on a terminal; otherwise a plain line at most every PROGRESS_EVERY_S."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self._last = 0.0
        self._bar: Any = None
        if stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=" indicators", file=stream, desc="import")

    def add(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S or self.done >= self.total:
            self._last = now
            print(f"import: {self.done:,}/{self.total:,} indicators sent", file=self.stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


async def publish_once(
    client: AlertClient, batch: Sequence[api.PublishRequest], pause: Pause = asyncio.sleep
) -> list[api.PublishBatchResult]:
    """The node's answer to each alert of `batch`. An item the node could not store
    (UNAVAILABLE: its store failed) is sent once more, after RETRY_PAUSE_S, which is safe:
    its request id is its content's hash, so one that was stored after all answers as a
    duplicate. An item still UNAVAILABLE is left so: the store failed again (`publish`
    stops the import)."""
    results = list((await client.publish_batch(batch)).results)
    again = [i for i, result in enumerate(results) if result.code == UNAVAILABLE]
    if again:
        await pause(RETRY_PAUSE_S)
        retried = await client.publish_batch([batch[i] for i in again])
        for i, result in zip(again, retried.results, strict=True):
            # The first attempt found no alert for this request id (else it would have
            # answered duplicate): one now was stored by that attempt, in a commit in
            # doubt, so it is new in this run.
            result.duplicate = False
            results[i] = result
    return results


async def publish(
    client: AlertClient,
    work: Plan,
    progress: Progress,
    out: Published | None = None,
    pause: Pause = asyncio.sleep,
) -> Published:
    """Publish the planned alerts; `out` (if given) holds what went in so far, also when
    the node's store fails twice (ImportFailed, exit 2: the rest would fail too, and these
    are not values the node refused)."""
    out = Published() if out is None else out
    for start in range(0, len(work.requests), BATCH_ALERTS):
        batch = work.requests[start : start + BATCH_ALERTS]
        results = await publish_once(client, batch, pause)
        unstored = ""
        for i, (request, result) in enumerate(zip(batch, results, strict=True)):
            n = len(request.indicators)
            if result.code == UNAVAILABLE:
                unstored = unstored or result.error
            elif result.error:
                where = work.wheres[start + i]
                out.refused.append(Refusal(where, "", f"the node refused: {result.error}"))
                out.refused_values += n
            else:
                out.indicators += n
                if result.duplicate:
                    out.duplicate += 1
                else:
                    out.new += 1
        if unstored:
            raise ImportFailed(
                f"the node could not store the alerts ({unstored}); once it can, "
                "run the import again: it adds nothing twice"
            )
        progress.add(sum(len(r.indicators) for r in batch))
    return out
