"""Turning signed bytes from elsewhere into verified records.

The node admits each alert first, on the event loop: its size, its head (origin,
seq, created_at_ms, read without decoding the rest: alerts.decode_head), that its
origin is on the roster (about a microsecond each), so that junk costs no signature
verification. The rest (decoding the whole body, protocol rules, indicator
normalisation, the Ed25519 signature) runs off the event loop: a handful of alerts
(gossip) on a thread, a large batch split over worker processes
(node/app/verify_worker.py), which send back the record's fields, so that the event
loop decodes no body in full.

Processes rather than threads for large batches: libsodium drops the GIL while it
verifies, but a thread that wants the GIL back while the event loop is busy waits
for the interpreter's switch interval (5 ms). Verifier threads in a loaded node ran
about one verification per switch, and ingest used 1.1-1.3 of 2 cores
(docs/benchmarks.md). Worker processes have their own interpreters, and the event
loop reads their pipes itself, so no thread in the node waits for the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pickle
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self

from node._pb.alertmesh.v1 import alert_pb2
from node.app.verify_worker import (
    HEADER,
    Result,
    check_admitted_bytes,
    check_rules_and_signature,
    task,
)
from node.core import alerts
from node.core.alerts import AlertHead, AlertRecord
from node.core.errors import AlertmeshError
from node.core.limits import Limits
from node.core.roster import Roster

log = logging.getLogger(__name__)

Checked = AlertRecord | AlertmeshError

INLINE_MAX = 4  # alerts checked on the event loop: a thread hop costs more than they do
PROCESS_MIN = 64  # alerts in a batch worth the round trip to a worker process
SLICE = 128  # alerts per task sent to a worker process
MAX_PROCESSES = 8
PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size
RESPAWN_AFTER_S = 5.0  # after a worker died or failed to start: threads check meanwhile
# Workers import `node` from where this node runs it, installed or not.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class Admitted(NamedTuple):
    """A received alert whose head decoded (alerts.decode_head); the node checks its
    origin (require_author) before verifying it."""

    id: bytes
    body: bytes
    signature: bytes
    head: AlertHead


def admit(body: bytes, limits: Limits, roster: Roster) -> alert_pb2.Alert:
    """The cheap checks, in the order a junk alert fails them: size, decoding, origin."""
    alert = alerts.decode_body(body, limits)
    roster.require_author(alert.origin, alert.seq, alert.created_at_ms)
    return alert


def require_author(item: Admitted, limits: Limits, roster: Roster) -> None:
    """admit()'s verdict on an alert admitted by its head: the roster's error, except
    that a body that does not decode as a whole fails on that, as it would in admit()."""
    head = item.head
    try:
        roster.require_author(head.origin, head.seq, head.created_at_ms)
    except AlertmeshError:
        alerts.decode_body(item.body, limits)
        raise


def check_signed(
    body: bytes, signature: bytes, *, roster: Roster, now_ms: int, limits: Limits
) -> AlertRecord:
    """Verify one signed alert completely; raise the first rule it breaks."""
    alert = admit(body, limits, roster)
    fields = check_rules_and_signature(alert, body, signature, now_ms, limits)
    return AlertRecord(alerts.alert_id(body), body, signature, *fields)


def check_batch(
    items: Sequence[tuple[bytes, bytes]], roster: Roster, now_ms: int, limits: Limits
) -> list[Checked]:
    """check_signed over a batch, an error in place of each alert that fails."""
    out: list[Checked] = []
    for body, signature in items:
        try:
            out.append(check_signed(body, signature, roster=roster, now_ms=now_ms, limits=limits))
        except AlertmeshError as exc:
            out.append(exc)
    return out


def _records(items: Sequence[Admitted], results: Sequence[Result]) -> list[Checked]:
    """Each item's AlertRecord from the fields its check returned, or the error."""
    return [
        r if isinstance(r, AlertmeshError) else AlertRecord(item.id, item.body, item.signature, *r)
        for item, r in zip(items, results, strict=True)
    ]


def _check_admitted(items: Sequence[Admitted], now_ms: int, limits: Limits) -> list[Checked]:
    results = check_admitted_bytes([(i.body, i.signature) for i in items], now_ms, limits)
    return _records(items, results)


def _widen(*streams: asyncio.StreamWriter | asyncio.StreamReader | None) -> None:
    """Pipes of PIPE_BYTES (Linux), so a worker finds its next tasks waiting in the
    pipe rather than in the event loop's buffer while the loop is busy."""
    for stream in streams:
        # StreamReader keeps its transport private; a missing one just skips the pipe.
        transport = getattr(stream, "transport", None) or getattr(stream, "_transport", None)
        pipe = transport.get_extra_info("pipe") if transport is not None else None
        if pipe is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            with contextlib.suppress(OSError, ValueError):  # ValueError: closed already
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def affinity_cpus() -> int:
    """CPUs this process may run on (affinity, not the host's count)."""
    affinity = getattr(os, "sched_getaffinity", None)  # not on macOS
    return max(1, len(affinity(0)) if affinity is not None else os.cpu_count() or 1)


def usable_cpus() -> int:
    """affinity_cpus(), at most MAX_PROCESSES."""
    return min(MAX_PROCESSES, affinity_cpus())


def auto_processes(nodes: int = 1) -> int:
    """`[verify] processes = "auto"`: one verifier process per CPU this process may use,
    the CPUs shared among `nodes` nodes on the host (a local cluster), at least one and at
    most MAX_PROCESSES each. On two cores a second process ingests 10-25 % faster and
    costs each alert about 0.05 of a verify more CPU (-0.04 to +0.12 in pairs of runs;
    docs/operations.md)."""
    return max(1, min(MAX_PROCESSES, affinity_cpus() // max(1, nodes)))


def parse_processes(value: object) -> int | None:
    """The `[verify] processes` setting: "auto" (None) or a number of verifier processes
    from 1 to MAX_PROCESSES; ValueError saying so for anything else."""
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PROCESSES:
        raise ValueError(f'must be "auto" or a whole number from 1 to {MAX_PROCESSES}')
    return value


class WorkerDied(Exception):
    """A verifier process exited (killed, out of memory) with tasks outstanding."""


@dataclass(eq=False)
class _Worker:
    process: asyncio.subprocess.Process
    pending: dict[int, asyncio.Future[list[Result]]] = field(default_factory=dict)


class Verifier:
    """Checks admitted alerts on a thread (small batches) or worker processes (large).

    An async context manager: worker processes start on the first large batch and
    stop when it exits. A worker that dies is replaced on the next large batch; the
    batch it was checking is checked again on a thread.
    """

    def __init__(
        self, limits: Limits, processes: int | None = None, worker: str = "node.app.verify_worker"
    ) -> None:
        self.limits = limits
        self._worker_module = worker
        self._processes = processes or auto_processes()
        self._thread = ThreadPoolExecutor(2, thread_name_prefix="verify")
        self._workers: list[_Worker] = []
        self._starting = asyncio.Lock()
        self._retry_at = 0.0
        self._tasks = 0
        self._stack = contextlib.AsyncExitStack()
        self._tg: asyncio.TaskGroup | None = None

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self._thread.shutdown, wait=True, cancel_futures=True)
            self._tg = await stack.enter_async_context(asyncio.TaskGroup())
            stack.push_async_callback(self._stop_workers)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def check(self, items: Sequence[Admitted], now_ms: int) -> list[Checked]:
        """A verified record, or the rule it breaks, for each admitted alert."""
        if not items:
            return []
        if len(items) <= INLINE_MAX:  # a gossiped alert at low rates: no hop, no wait
            return _check_admitted(items, now_ms, self.limits)
        workers = list(await self._ready_workers()) if len(items) >= PROCESS_MIN else []
        if not workers:
            return await self._on_thread(items, now_ms)
        try:
            parts = await asyncio.gather(
                *(
                    self._submit(workers, items[i : i + SLICE], now_ms)
                    for i in range(0, len(items), SLICE)
                )
            )
        except WorkerDied:
            # Replacements start with a later batch, not at once: a worker that cannot
            # even start must not cost a spawn per batch.
            self._retry_at = asyncio.get_running_loop().time() + RESPAWN_AFTER_S
            log.error("a verifier process died; checking its batch on a thread")
            return await self._on_thread(items, now_ms)
        return _records(items, [r for part in parts for r in part])

    async def _on_thread(self, items: Sequence[Admitted], now_ms: int) -> list[Checked]:
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, _check_admitted, items, now_ms, self.limits
        )

    async def _submit(
        self, workers: list[_Worker], items: Sequence[Admitted], now_ms: int
    ) -> list[Result]:
        live = [w for w in workers if w in self._workers and w.process.returncode is None]
        if not live:
            raise WorkerDied
        worker = min(live, key=lambda w: len(w.pending))
        self._tasks += 1
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        worker.pending[self._tasks] = future
        stdin = worker.process.stdin
        assert stdin is not None
        try:
            stdin.write(
                task(self._tasks, [(i.body, i.signature) for i in items], now_ms, self.limits)
            )
            await stdin.drain()
        except ConnectionError as exc:
            raise WorkerDied from exc
        return await future

    async def _ready_workers(self) -> list[_Worker]:
        # A worker that died before its reader task ran is still listed: drop it.
        self._workers[:] = [w for w in self._workers if w.process.returncode is None]
        if len(self._workers) >= self._processes:
            return self._workers
        loop = asyncio.get_running_loop()
        async with self._starting:
            if len(self._workers) < self._processes and loop.time() >= self._retry_at:
                try:
                    while len(self._workers) < self._processes:
                        self._workers.append(await self._spawn())
                except Exception as exc:  # no python, no fork, too many processes, ...
                    log.error("cannot start verifier processes (%s); checking on threads", exc)
                    self._retry_at = loop.time() + RESPAWN_AFTER_S
        return self._workers

    async def _spawn(self) -> _Worker:
        assert self._tg is not None, "use the Verifier as an async context manager"
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_ROOT, path]))}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self._worker_module,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        _widen(process.stdin, process.stdout)
        worker = _Worker(process)
        self._tg.create_task(self._read(worker), name=f"verifier-{process.pid}")
        return worker

    async def _read(self, worker: _Worker) -> None:
        """Hand each result to its caller until the worker's stdout closes."""
        stdout = worker.process.stdout
        assert stdout is not None
        try:
            while True:
                (size,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
                number, results = pickle.loads(await stdout.readexactly(size))
                future = worker.pending.pop(number, None)
                if future is not None and not future.done():
                    future.set_result(results)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # it exited
        except Exception:  # garbled output: this worker cannot be trusted any more
            log.exception(
                "verifier process %d sent garbled output; stopping it", worker.process.pid
            )
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
        finally:
            if worker in self._workers:
                self._workers.remove(worker)
            for future in worker.pending.values():
                if not future.done():
                    future.set_exception(WorkerDied())
            worker.pending.clear()
        status = await worker.process.wait()
        if status != 0:
            log.error("verifier process %d exited with status %d", worker.process.pid, status)

    async def _stop_workers(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in workers:
            try:
                await asyncio.wait_for(worker.process.wait(), 5.0)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
