"""What a node does with alerts: publish, ingest, and answer queries.

This is the one place that combines the store, the verifier, the roster and the
node's own signing key. The gRPC adapters in node/rpc call it; the peer layer
feeds gossiped alerts through `ingest` like any other source.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from node._pb.alertmesh.v1 import alert_pb2
from node.app import latency_trace
from node.app.checking import Checker, CheckResult
from node.app.lifecycle import Event, Lifecycle
from node.app.node_stats import NodeStats, node_stats
from node.app.sharing import TLP_RED, Sharing, recipient_keys
from node.app.valuelists import Allowlist, Warninglist
from node.app.verify import Admitted, Verifier, require_author
from node.app.watching import Watching
from node.core import alerts, indicators
from node.core.alerts import AlertRecord
from node.core.errors import AlertmeshError, InvalidAlert, InvalidIndicator, LimitExceeded, NotFound
from node.core.limits import Limits
from node.core.roster import Roster
from node.core.verdict import UPDATE
from node.crypto import Identity, sign_alert
from node.crypto.sealing import Undecryptable
from node.store.base import AlertStore, Equivocation, PutOutcome, Query, Stored

log = logging.getLogger(__name__)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class IngestResult(NamedTuple):  # one per ingested alert: a named tuple is the cheapest
    id: bytes
    outcome: PutOutcome | None  # None: rejected
    error: AlertmeshError | None = None
    origin: bytes = b""  # of a verified (or already held) alert
    seq: int = 0
    record: AlertRecord | None = None  # the verified alert, unless it was held already


@dataclass(frozen=True, slots=True)
class BatchItemResult:
    """One item of publish_batch: the alert's id (the first one's for a retried request),
    or the error that refused the item."""

    id: bytes = b""
    duplicate: bool = False
    error: AlertmeshError | None = None


_COUNTER_OF = {outcome: f"ingest_{outcome.value}" for outcome in PutOutcome}
ACCEPTED, DUPLICATE, EQUIVOCATION = (
    PutOutcome.ACCEPTED,
    PutOutcome.DUPLICATE,
    PutOutcome.EQUIVOCATION,
)

# Called with the newly accepted records and the peer they came from (None: local/client).
NewAlertsHook = Callable[[Sequence[AlertRecord], bytes | None], None]


@dataclass
class Counters:
    values: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + n


class AlertNode:
    def __init__(
        self,
        *,
        identity: Identity,
        roster: Roster,
        store: AlertStore,
        verifier: Verifier,
        limits: Limits,
        clock: Callable[[], int] = wall_ms,
        readers: Sequence[Identity] = (),
    ) -> None:
        self.identity = identity
        self.sharing = Sharing(identity, readers, limits)
        self.roster = roster
        self.store = store
        self.verifier = verifier
        self.limits = limits
        self.clock = clock
        self.counters = Counters()
        self.hooks: list[NewAlertsHook] = []
        # Called with the second copy whenever a new equivocation is recorded.
        self.equivocation_hooks: list[Callable[[AlertRecord], Awaitable[None]]] = []
        self.peer_stats: Callable[[], list[dict[str, object]]] = list
        self.extra_counters: Callable[[], dict[str, int]] = dict
        # Called with ("publish" | "check", seconds) after each call (node/app/metrics.py).
        self.observe_latency: Callable[[str, float], None] = lambda what, seconds: None
        self.reload_roster: Callable[[], None] = lambda: None
        self.set_peer_blocked: Callable[[bytes, bool], list[bytes]] = lambda key, b: []
        self._requests: dict[str, asyncio.Future[bytes]] = {}
        # (origin, seq) of the alerts each ingest in flight is committing now.
        self._storing: list[set[tuple[bytes, int]]] = []
        state = store.chains.get(identity.public_key)
        self._own_seq = state.max_seq
        self._own_head = b""
        self.lifecycle = Lifecycle(
            store, self.sharing.content, lambda: self.roster, identity.public_key
        )
        self.allowlist = Allowlist()  # HOME/allowlist.txt, loaded by the runtime
        self.warninglist = Warninglist.default()
        # The read side (node/app/checking.py, node/app/watching.py).
        self.checker = Checker(
            store=store,
            lifecycle=self.lifecycle,
            sharing=self.sharing,
            limits=limits,
            clock=clock,
            allowlist=lambda: self.allowlist,
        )
        self.watching = Watching(
            store=store, lifecycle=self.lifecycle, checker=self.checker, clock=clock
        )

    async def start(self) -> None:
        """Load this node's own chain head from the store."""
        if self._own_seq:
            head = await self.store.range(
                self.identity.public_key, self._own_seq, self._own_seq, limit=1
            )
            self._own_head = head[0].id if head else b""

    # -- writing -----------------------------------------------------------

    async def publish(
        self,
        draft: alert_pb2.Alert,
        request_id: str = "",
        recipients: Sequence[str] = (),
        *,
        force: bool = False,
    ) -> tuple[Stored, bool]:
        """Sign and store a new alert, encrypted to `recipients` (roster names) if any;
        returns (stored, was_a_retried_request). `force`: even a warninglisted value."""
        started = time.perf_counter()
        try:
            if not force:
                self._refuse_warninglisted(draft)
            draft, recipients = await self.lifecycle.prepare(draft, recipients)
            return await self._publish(draft, request_id, recipients)
        finally:
            self.observe_latency("publish", time.perf_counter() - started)

    async def _publish(
        self, draft: alert_pb2.Alert, request_id: str, recipients: Sequence[str]
    ) -> tuple[Stored, bool]:
        if draft.tlp == TLP_RED and not recipients:
            raise InvalidAlert(
                "TLP:RED alerts go only to named members: name each recipient (publish "
                "--to NAME, a roster name), and the alert is encrypted to them"
            )
        own = self.identity.public_key
        to = recipient_keys(recipients, self.roster, own, self.clock()) if recipients else []
        if not request_id:
            return await self._publish_new(draft, "", to), False
        pending = self._requests.get(request_id)
        if pending is not None:
            return await self.get(await asyncio.shield(pending)), True
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = future
        try:
            existing = await self.store.request(request_id)
            if existing:
                future.set_result(existing)
                return await self.get(existing), True
            stored = await self._publish_new(draft, request_id, to)
            future.set_result(stored.record.id)
            return stored, False
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # a retry may never look at it
            raise
        finally:
            del self._requests[request_id]

    def _refuse_warninglisted(self, draft: alert_pb2.Alert) -> None:
        """A new alert or update must not flag a widely used domain by mistake
        (sightings, disputes and retractions may name one)."""
        if all(link.kind == UPDATE for link in draft.links):
            self.warninglist.refuse(draft)

    async def publish_batch(
        self, items: Sequence[tuple[alert_pb2.Alert, str]], forced: Sequence[bool] = ()
    ) -> list[BatchItemResult]:
        """Sign and store many new alerts, (draft, client request id) each, in one store
        commit. Each item succeeds or fails on its own; a request id seen before (also
        earlier in the same batch) answers with the first alert's id. `forced[i]`: item i
        may flag a warninglisted value. Links are not checked here: publish them alone."""
        if len(items) > self.limits.max_batch:
            raise LimitExceeded(
                f"{len(items)} alerts in one request; send at most {self.limits.max_batch}"
            )
        loop = asyncio.get_running_loop()
        results: list[BatchItemResult | None] = [None] * len(items)
        waiting: list[tuple[int, asyncio.Future[bytes]]] = []  # retries of pending requests
        mine: dict[str, asyncio.Future[bytes]] = {}
        try:
            fresh: list[int] = []
            for i, (_, request_id) in enumerate(items):
                if not request_id:
                    fresh.append(i)
                elif (pending := self._requests.get(request_id)) is not None:
                    waiting.append((i, pending))
                else:
                    mine[request_id] = self._requests[request_id] = loop.create_future()
                    if existing := await self.store.request(request_id):
                        mine[request_id].set_result(existing)
                        results[i] = BatchItemResult(existing, duplicate=True)
                    else:
                        fresh.append(i)
            now = self.clock()
            records: list[tuple[int, AlertRecord]] = []
            for i in fresh:
                try:
                    if not (i < len(forced) and forced[i]):
                        self._refuse_warninglisted(items[i][0])
                    if items[i][0].links:
                        raise InvalidAlert(
                            "publish updates, retractions, sightings and disputes one by one"
                        )
                    records.append((i, self._sign_new(items[i][0], now)))
                except AlertmeshError as exc:
                    results[i] = BatchItemResult(error=exc)
            # One put per alert, for its request id; all are queued before the writer runs,
            # so they share one group commit.
            await asyncio.gather(
                *(self.store.put([r], now_ms=now, request_id=items[i][1]) for i, r in records)
            )
            for i, record in records:
                results[i] = BatchItemResult(record.id)
            self.counters.add("published", len(records))
            if records:
                self._accepted([r for _, r in records], None)
            for i in fresh:  # answer retries of these requests, here or in other calls
                done, future = results[i], mine.get(items[i][1])
                if future is not None and done is not None:
                    if done.error is not None:  # refused: a later retry may publish it anew
                        future.set_exception(done.error)
                        future.exception()
                    else:
                        future.set_result(done.id)
            for i, pending in waiting:
                try:
                    results[i] = BatchItemResult(await asyncio.shield(pending), duplicate=True)
                except AlertmeshError as exc:
                    results[i] = BatchItemResult(error=exc)
        finally:
            for request_id, future in mine.items():
                if not future.done():
                    future.cancel()
                del self._requests[request_id]
        return [r if r is not None else BatchItemResult() for r in results]

    def _sign_new(
        self, draft: alert_pb2.Alert, now: int, recipients: Sequence[bytes] = ()
    ) -> AlertRecord:
        """Normalise, chain, validate and sign a draft as this node's next alert,
        encrypted to `recipients` (member keys, this node's last) if any."""
        alert = alert_pb2.Alert()
        alert.CopyFrom(draft)
        for i, ind in enumerate(alert.indicators):
            try:
                ind.value = indicators.normalize(ind.type, ind.value, strict=True).value
            except InvalidIndicator as exc:
                raise InvalidIndicator(f"indicator {i}: {exc}") from exc
        alert.origin = self.identity.public_key
        alert.created_at_ms = now
        alert.seq = self._own_seq + 1
        alert.prev = self._own_head
        alert.recipients.extend(recipients)  # what this node, a recipient, indexes
        keys = alerts.validate(alert, now_ms=now, limits=self.limits, encrypted=bool(recipients))
        signed = self.sharing.envelope(alert, list(recipients)) if recipients else alert
        body = signed.SerializeToString(deterministic=True)
        if len(body) > self.limits.max_body_bytes:
            raise LimitExceeded(
                f"the alert is {len(body)} bytes; the limit is {self.limits.max_body_bytes}"
            )
        record = alerts.make_record(body, sign_alert(self.identity, body), alert, keys)
        self._own_seq, self._own_head = record.seq, record.id
        return record

    async def _publish_new(
        self, draft: alert_pb2.Alert, request_id: str, recipients: list[bytes]
    ) -> Stored:
        now = self.clock()
        # The seq is taken before the first await so concurrent publishes chain correctly.
        record = self._sign_new(draft, now, recipients)
        if latency_trace.ON:
            latency_trace.mark("signed", record.id)
        await self.store.put([record], now_ms=now, request_id=request_id)
        if latency_trace.ON:
            latency_trace.mark("committed", record.id)
        self.counters.add("published")
        if recipients:
            self.counters.add("encrypted_readable")
        log.debug("published", extra={"event": "published", "alert_id": record.id})
        self._accepted([record], None)
        return await self.get(record.id)  # the SQLite store answers from memory

    async def ingest(
        self,
        items: Sequence[tuple[bytes, bytes]],
        source: bytes | None = None,
        verified: Callable[[list[AlertRecord]], None] | None = None,
    ) -> list[IngestResult]:
        """Verify and store signed alerts from elsewhere; one result per item.
        `verified`: called before the commit with the alerts that verified and take a
        slot no alert holds or is being stored in (a relay forwards them then)."""
        if len(items) > self.limits.max_batch:
            raise LimitExceeded(
                f"{len(items)} alerts in one request; send at most {self.limits.max_batch}"
            )
        now = self.clock()
        sha256 = hashlib.sha256  # alerts.alert_id, without a call per alert
        ids = [sha256(body).digest() for body, _ in items]
        checked: list[AlertRecord | AlertmeshError | None] = [None] * len(items)
        decoded: list[tuple[int, Admitted]] = []
        # An alert held already, byte for byte with its signature, was verified when it
        # was stored (Ed25519 signatures are not malleable in libsodium), so it is a
        # duplicate without a second verification (gossip delivers many of these), even
        # if its author has left the roster since. Only an alert whose (origin, seq) slot
        # is taken can be held.
        holds, taken = self.store.chains.holds, []
        decode_head, limits = alerts.decode_head, self.limits
        for i, (body, signature) in enumerate(items):
            try:
                head = decode_head(body, limits)  # the rest is decoded off the loop
            except AlertmeshError as exc:
                checked[i] = exc
                continue
            decoded.append((i, Admitted(ids[i], body, signature, head)))
            if holds(head.origin, head.seq):
                taken.append(ids[i])
        held = await self.store.held(taken) if taken else {}
        fresh = []
        for i, a in decoded:
            if held and a.id in held and held[a.id].signature == a.signature:
                continue
            try:
                require_author(a, limits, self.roster)
            except AlertmeshError as exc:
                checked[i] = exc
                continue
            fresh.append((i, a))
        verdicts = await self.verifier.check([a for _, a in fresh], now)
        if latency_trace.ON:
            for _, a in fresh:
                latency_trace.mark("verified", a.id)
        for (i, _), verdict in zip(fresh, verdicts, strict=True):
            checked[i] = self._opened(verdict) if isinstance(verdict, AlertRecord) else verdict
        valid = [c for c in checked if isinstance(c, AlertRecord)]
        outcomes = iter(await self._store_verified(valid, now, verified) if valid else [])
        if latency_trace.ON:
            for r in valid:
                latency_trace.mark("committed", r.id)
        results: list[IngestResult] = []
        accepted: list[AlertRecord] = []
        equivocations: list[AlertRecord] = []
        tally: collections.Counter[str] = collections.Counter()
        # Outcomes are compared by identity and counted per kind once: hashing an Enum
        # member runs Python code, about 0.4 µs a time.
        duplicates = 0
        for alert_id, c in zip(ids, checked, strict=True):
            if c is None:  # held already
                known = held[alert_id]
                results.append(IngestResult(alert_id, DUPLICATE, None, known.origin, known.seq))
                duplicates += 1
            elif isinstance(c, AlertRecord):
                outcome = next(outcomes)
                results.append(IngestResult(c.id, outcome, None, c.origin, c.seq, c))
                if outcome is ACCEPTED:
                    accepted.append(c)
                elif outcome is DUPLICATE:
                    duplicates += 1
                else:
                    tally[_COUNTER_OF[outcome]] += 1
                    if outcome is EQUIVOCATION:
                        equivocations.append(c)
            else:
                results.append(IngestResult(alert_id, None, c))
                tally[f"rejected_{type(c).__name__}"] += 1
        if accepted:
            tally[_COUNTER_OF[ACCEPTED]] += len(accepted)
        if duplicates:
            tally[_COUNTER_OF[DUPLICATE]] += duplicates
        for name, n in tally.items():
            self.counters.add(name, n)
        for record in accepted:
            if alerts.links_to_alerts(record.index_keys) and await self.lifecycle.refuses(record):
                self.counters.add("lifecycle_changes_refused")
                log.warning(
                    "alert %s changes another member's alert; kept, and it changes nothing",
                    record.id.hex()[:16],
                )
        if accepted:
            self._accepted(accepted, source)
        for record in equivocations:
            for hook in self.equivocation_hooks:
                await hook(record)
        return results

    async def _store_verified(
        self,
        valid: list[AlertRecord],
        now: int,
        verified: Callable[[list[AlertRecord]], None] | None,
    ) -> list[PutOutcome]:
        """Commit `valid`; before that, hand `verified` the alerts whose (origin, seq) slot
        is neither held nor being stored by another ingest: only those will be ACCEPTED
        (a second copy arriving on another session meanwhile, or an equivocating one,
        waits for its commit's outcome as before)."""
        # One set per ingest in flight, built in C: a bulk ingest pays about 0.1 µs an alert.
        slots = {(r.origin, r.seq) for r in valid}
        early: list[AlertRecord] = []
        if verified is not None:
            holds, others, taken = self.store.chains.holds, self._storing, set()
            for r in valid:
                slot = (r.origin, r.seq)
                if slot in taken or holds(*slot) or any(slot in s for s in others):
                    continue
                taken.add(slot)
                early.append(r)
        self._storing.append(slots)

        def stored(done: asyncio.Future[list[PutOutcome]]) -> None:
            # The slots are free once the put is over, not when its caller leaves: a
            # session that ends meanwhile cancels its ingest, but the store's writer still
            # commits what was queued, and until then a second copy must wait for it.
            for i, s in enumerate(self._storing):
                if s is slots:
                    del self._storing[i]
                    break
            if not done.cancelled():
                done.exception()  # retrieved here when no caller is left to see it

        put = asyncio.ensure_future(self.store.put(valid, now_ms=now))
        put.add_done_callback(stored)
        if early and verified is not None:
            verified(early)
        return await asyncio.shield(put)

    def _opened(self, record: AlertRecord) -> AlertRecord:
        """An encrypted alert, decrypted and indexed if this node is a recipient. One that
        is addressed to it but does not open is kept (it is signed and chained like any
        other) and counted; it flags nothing."""
        if not record.sealed:
            return record
        try:
            opened = self.sharing.opened(record)
        except Undecryptable:
            self.counters.add("encrypted_undecryptable")
            return record
        self.counters.add("encrypted_readable" if not opened.sealed else "encrypted_for_others")
        return opened

    def _accepted(self, records: Sequence[AlertRecord], source: bytes | None) -> None:
        self.watching.wake()
        for hook in self.hooks:
            hook(records, source)

    def wake_watchers(self) -> None:
        """Another process stored new alerts (serve-api follows the writing node's
        PostgreSQL store): every watch stream looks again."""
        self.watching.wake()

    # -- reading -----------------------------------------------------------

    async def get(self, alert_id: bytes) -> Stored:
        stored = await self.store.get(alert_id)
        if stored is None:
            raise NotFound(f"this node holds no alert {alert_id.hex()}")
        return stored

    def lookup_keys(self, value: str) -> frozenset[str]:
        return frozenset(indicators.lookup_keys(indicators.parse(value, strict=False)))

    async def search(self, query: Query, *, limit: int, before: int | None) -> list[Stored]:
        return await self.store.search(query, limit=limit, before=before)

    async def check(self, values: Sequence[str], *, include_expired: bool) -> list[CheckResult]:
        started = time.perf_counter()
        try:
            return await self.checker.check(values, include_expired=include_expired)
        finally:
            self.observe_latency("check", time.perf_counter() - started)

    def watch_events(self, query: Query, cursor: int | None) -> AsyncIterator[Event]:
        return self.watching.events(query, cursor)  # node/app/watching.py

    def watch(self, query: Query, cursor: int | None) -> AsyncIterator[Stored]:
        return self.watching.alerts(query, cursor)

    async def equivocations(self) -> list[Equivocation]:
        return await self.store.equivocations()

    async def stats(self) -> NodeStats:
        return await node_stats(self)  # node/app/node_stats.py
