"""Publishing this node's own alerts: sign each as the next link of the node's chain,
commit it, and answer the client, a retried request with its first answer.

`AlertNode.publish` and `AlertNode.publish_batch` are this; alerts from elsewhere are
verified and stored by node/app/ingesting.py. The commit and all that follows it (the
request ids' answers, the counters, the new-alert hooks) run as one task the node owns
(node/app/commits.py), so a client that stops waiting stops none of it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence

from node._pb.alertmesh.v1 import alert_pb2
from node.app import latency_trace
from node.app.commits import Commits
from node.app.lifecycle import Lifecycle
from node.app.node_stats import Counters
from node.app.own_chain import OwnChain
from node.app.publish_requests import BatchItemResult, PublishRequests, unstored_error
from node.app.sharing import TLP_RED, Sharing, recipient_keys
from node.app.valuelists import Warninglist
from node.core import alerts, indicators
from node.core.alerts import AlertRecord
from node.core.errors import AlertmeshError, InvalidAlert, InvalidIndicator, LimitExceeded
from node.core.limits import Limits
from node.core.roster import Roster
from node.core.verdict import UPDATE
from node.crypto import Identity, sign_alert
from node.store.base import AlertStore, PutOutcome, Stored

log = logging.getLogger("node.app.service")  # the logger's name from before this module


def _read_failure(put: asyncio.Task[list[PutOutcome]]) -> None:
    """A put's failure is taken (the commit task answers for it; asyncio must not report
    it unread if that task never ran)."""
    if not put.cancelled():
        put.exception()


class Publisher:
    def __init__(
        self,
        *,
        identity: Identity,
        sharing: Sharing,
        roster: Callable[[], Roster],
        store: AlertStore,
        limits: Limits,
        clock: Callable[[], int],
        lifecycle: Lifecycle,
        warninglist: Callable[[], Warninglist],
        counters: Counters,
        commits: Commits,
        accepted: Callable[[Sequence[AlertRecord], bytes | None], None],
        get: Callable[[bytes], Awaitable[Stored]],
    ) -> None:
        self.identity = identity
        self.sharing = sharing
        self._roster = roster
        self.store = store
        self.limits = limits
        self.clock = clock
        self.lifecycle = lifecycle
        self._warninglist = warninglist
        self.counters = counters
        self.commits = commits
        self._accepted_hook = accepted
        self._get = get
        self.requests = PublishRequests()  # client request ids in flight
        self.own = OwnChain(store, identity.public_key, commits)

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
        if not force:
            self._refuse_warninglisted(draft)
        draft, recipients = await self.lifecycle.prepare(draft, recipients)
        return await self._publish(draft, request_id, recipients)

    async def _publish(
        self, draft: alert_pb2.Alert, request_id: str, recipients: Sequence[str]
    ) -> tuple[Stored, bool]:
        if draft.tlp == TLP_RED and not recipients:
            raise InvalidAlert(
                "TLP:RED alerts go only to named members: name each recipient (publish "
                "--to NAME, a roster name), and the alert is encrypted to them"
            )
        own = self.identity.public_key
        to = recipient_keys(recipients, self._roster(), own, self.clock()) if recipients else []
        if not request_id:
            return await self._publish_new(draft, "", to), False
        if (first := await self.requests.first_answer(request_id)) is not None:
            return await self._get(first), True
        with self.requests.claim(request_id) as claim:  # node/app/publish_requests.py
            existing = await self.store.request(request_id)
            if existing:
                claim.answer.set_result(existing)
                return await self._get(existing), True
            await self.own.ready()
            now = self.clock()
            record = self._sign_new(draft, now, to)
            claim.handed = True  # from here the commit task answers the retries
            await self._commit_signed(record, now, request_id, bool(to), claim.answer)
            return await self._get(record.id), False

    def _refuse_warninglisted(self, draft: alert_pb2.Alert) -> None:
        """A new alert or update must not flag a widely used domain by mistake
        (sightings, disputes and retractions may name one)."""
        if all(link.kind == UPDATE for link in draft.links):
            self._warninglist().refuse(draft)

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
        results: list[BatchItemResult | None] = [None] * len(items)
        waiting: list[tuple[int, asyncio.Future[bytes]]] = []  # retries of pending requests
        mine: dict[str, asyncio.Future[bytes]] = {}
        try:
            fresh: list[int] = []
            for i, (_, request_id) in enumerate(items):
                if not request_id:
                    fresh.append(i)
                elif (pending := self.requests.pending.get(request_id)) is not None:
                    waiting.append((i, pending))
                else:
                    mine[request_id] = self.requests.open(request_id)
                    if existing := await self.store.request(request_id):
                        mine[request_id].set_result(existing)
                        results[i] = BatchItemResult(existing, duplicate=True)
                    else:
                        fresh.append(i)
            await self.own.ready()
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
            for i in fresh:  # refused: a later retry may publish it anew
                done, future = results[i], mine.get(items[i][1])
                if future is not None and done is not None and done.error is not None:
                    future.set_exception(done.error)
                    future.exception()
            if records:  # committed and followed up as one task of the node's, as publish
                own = [(r, items[i][1]) for i, r in records]
                # The task answers retries of these requests, here or in other calls, and
                # removes them from the pending ones, even if this caller leaves meanwhile.
                answers = {rid: mine.pop(rid) for _, rid in own if rid in mine}
                failures = await self.commits.run(
                    self._commit_batch(own, self._put_signed(own, now), answers),
                    "a publish",
                    functools.partial(self.requests.settle, answers),
                )
                for (i, record), failure in zip(records, failures, strict=True):
                    results[i] = BatchItemResult(
                        record.id if failure is None else b"",
                        error=None if failure is None else unstored_error(failure, items[i][1]),
                    )
            for i, pending in waiting:
                results[i] = await self.requests.retried(pending)
        finally:
            self.requests.release(mine)  # those no commit task holds
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
        alert.seq = self.own.seq + 1
        alert.prev = self.own.head
        alert.recipients.extend(recipients)  # what this node, a recipient, indexes
        keys = alerts.validate(alert, now_ms=now, limits=self.limits, encrypted=bool(recipients))
        signed = self.sharing.envelope(alert, list(recipients)) if recipients else alert
        body = signed.SerializeToString(deterministic=True)
        if len(body) > self.limits.max_body_bytes:
            raise LimitExceeded(
                f"the alert is {len(body)} bytes; the limit is {self.limits.max_body_bytes}"
            )
        record = alerts.make_record(body, sign_alert(self.identity, body), alert, keys)
        self.own.signed(record)
        return record

    async def _publish_new(
        self, draft: alert_pb2.Alert, request_id: str, recipients: list[bytes]
    ) -> Stored:
        await self.own.ready()
        now = self.clock()
        # The seq is taken before the first await so concurrent publishes chain correctly.
        record = self._sign_new(draft, now, recipients)
        await self._commit_signed(record, now, request_id, bool(recipients), None)
        return await self._get(record.id)  # the SQLite store answers from memory

    async def _commit_signed(
        self,
        record: AlertRecord,
        now: int,
        request_id: str,
        encrypted: bool,
        answer: asyncio.Future[bytes] | None,
    ) -> None:
        if latency_trace.ON:
            latency_trace.mark("signed", record.id)
        # A client that cancels its Publish while the store commits stops waiting, not
        # the gossip of its alert, the watchers or the counters (node/app/commits.py),
        # nor the answer to a retry of its request (`answer`, settled by the task).
        answers = {request_id: answer} if answer is not None else {}
        await self.commits.run(
            self._commit_own(record, now, request_id, encrypted, answer),
            "a publish",
            functools.partial(self.requests.settle, answers),
        )

    async def _commit_own(
        self,
        record: AlertRecord,
        now: int,
        request_id: str,
        encrypted: bool,
        answer: asyncio.Future[bytes] | None,
    ) -> None:
        try:
            # No await before this put: it is the first step of the task Commits.run
            # starts in the step that signed `record`, so own puts reach the store in
            # seq order (as _put_signed's; docs/architecture.md, AlertStore.put).
            await self.store.put([record], now_ms=now, request_id=request_id, own=True)
        except BaseException as exc:
            self.own.unstored([record], [exc])
            if isinstance(exc, Exception) and not isinstance(exc, AlertmeshError):
                # As a batch item's: UNAVAILABLE, and what to do (the log keeps the cause).
                log.error("an alert could not be stored", exc_info=exc)
                raise unstored_error(exc, request_id) from exc
            raise
        self.requests.answer(answer, record.id)  # committed: a retry gets this id
        if latency_trace.ON:
            latency_trace.mark("committed", record.id)
        self.counters.add("published")
        if encrypted:
            self.counters.add("encrypted_readable")
        log.debug("published", extra={"event": "published", "alert_id": record.id})
        self._accepted_hook([record], None)

    def _put_signed(
        self, own: list[tuple[AlertRecord, str]], now: int
    ) -> list[asyncio.Task[list[PutOutcome]]]:
        """One put per alert, for its request id, started in the step that signed them:
        asyncio runs new tasks in the order they were made, so these reach the store
        before the put of any alert signed after them (a concurrent Publish), and the
        store sees own alerts in seq order. All are queued before the writer runs
        (gathered: none commits alone on the loop), so they share one group commit.
        Keep it synchronous, with no await between signing and these ensure_future
        calls (as in _commit_own): the store's order check relies on it."""
        puts = [
            asyncio.ensure_future(
                self.store.put([r], now_ms=now, request_id=request_id, gathered=True, own=True)
            )
            for r, request_id in own
        ]
        for put in puts:  # read even if the commit task is cancelled before it awaits them
            put.add_done_callback(_read_failure)
        return puts

    async def _commit_batch(
        self,
        own: list[tuple[AlertRecord, str]],
        puts: list[asyncio.Task[list[PutOutcome]]],
        answers: dict[str, asyncio.Future[bytes]],
    ) -> list[BaseException | None]:
        """Each alert's failure, None for those committed: each put answers for its own
        alert (a put refused, or a transaction of the store's that failed, takes only
        its own puts with it), so the batch answers each item truly."""
        done = await asyncio.gather(*puts, return_exceptions=True)
        failures = [x if isinstance(x, BaseException) else None for x in done]
        committed: list[AlertRecord] = []
        lost = [(r, x) for (r, _), x in zip(own, failures, strict=True) if x is not None]
        if lost:
            self.own.unstored([r for r, _ in lost], [x for _, x in lost])
            if not all(isinstance(x, AlertmeshError) for _, x in lost):
                log.error(
                    "%d of a batch's %d alerts could not be stored",
                    len(lost),
                    len(own),
                    exc_info=next(x for _, x in lost if not isinstance(x, AlertmeshError)),
                )
        for (r, request_id), failure in zip(own, failures, strict=True):
            if failure is None:
                committed.append(r)
            self.requests.answer(answers.get(request_id), r.id if failure is None else failure)
        self.counters.add("published", len(committed))
        self._accepted_hook(committed, None)
        return failures
