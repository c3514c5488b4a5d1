"""Admitting signed alerts from elsewhere (gossip, catch-up, the Ingest RPC): verify,
skip the ones held already, commit, count each outcome, and tell who waits.

`AlertNode.ingest` is this; the node's own alerts are signed and stored by `publish`
(node/app/publishing.py). Once verified, the commit and all that follows it (counters, the
lifecycle's refusals, the new-alert and equivocation hooks) run as one task the node
owns (node/app/commits.py): a caller that stops waiting stops none of it.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import NamedTuple

from node.app import latency_trace
from node.app.commits import Commits
from node.app.lifecycle import Lifecycle
from node.app.node_stats import Counters
from node.app.sharing import Sharing
from node.app.verify import Admitted, Verifier, require_author
from node.core import alerts
from node.core.alerts import AlertRecord
from node.core.errors import AlertmeshError, LimitExceeded
from node.core.index_keys import links_to_alerts
from node.core.limits import Limits
from node.core.roster import Roster
from node.crypto.sealing import Undecryptable
from node.store.base import AlertStore, Held, PutOutcome

log = logging.getLogger("node.app.service")  # the logger's name from before this module

# Called before the commit with the alerts a relay may forward now; returns what to do
# if that commit then fails (whether or not the ingest's caller still waits for it).
Verified = Callable[[list[AlertRecord]], Callable[[], None]]


class IngestResult(NamedTuple):  # one per ingested alert: a named tuple is the cheapest
    id: bytes
    outcome: PutOutcome | None  # None: rejected
    error: AlertmeshError | None = None
    origin: bytes = b""  # of a verified (or already held) alert
    seq: int = 0
    record: AlertRecord | None = None  # the verified alert, unless it was held already


_COUNTER_OF = {outcome: f"ingest_{outcome.value}" for outcome in PutOutcome}
ACCEPTED, DUPLICATE, EQUIVOCATION = (
    PutOutcome.ACCEPTED,
    PutOutcome.DUPLICATE,
    PutOutcome.EQUIVOCATION,
)


class Ingester:
    def __init__(
        self,
        *,
        store: AlertStore,
        verifier: Verifier,
        limits: Limits,
        clock: Callable[[], int],
        sharing: Sharing,
        lifecycle: Lifecycle,
        counters: Counters,
        roster: Callable[[], Roster],
        accepted: Callable[[Sequence[AlertRecord], bytes | None], None],
        equivocation_hooks: list[Callable[[AlertRecord], Awaitable[None]]],
        commits: Commits,
    ) -> None:
        self.store = store
        self.verifier = verifier
        self.limits = limits
        self.clock = clock
        self.sharing = sharing
        self.lifecycle = lifecycle
        self.counters = counters
        self._roster = roster
        self._accepted = accepted
        self.equivocation_hooks = equivocation_hooks
        # (origin, seq) of the alerts each ingest in flight is committing now.
        self._storing: list[set[tuple[bytes, int]]] = []
        # Each commit in flight with what follows it, as tasks of the node's.
        self._commits = commits

    async def ingest(
        self,
        items: Sequence[tuple[bytes, bytes]],
        source: bytes | None = None,
        verified: Verified | None = None,
    ) -> list[IngestResult]:
        """Verify and store signed alerts from elsewhere; one result per item.
        `verified`: called before the commit with the alerts that verified and take a
        slot no alert holds or is being stored in (a relay forwards them then); what it
        returns is called if the commit fails."""
        if len(items) > self.limits.max_batch:
            raise LimitExceeded(
                f"{len(items)} alerts in one request; send at most {self.limits.max_batch}"
            )
        now = self.clock()
        sha256 = hashlib.sha256  # alerts.alert_id, without a call per alert
        ids = [sha256(body).digest() for body, _ in items]
        checked: list[AlertRecord | AlertmeshError | None] = [None] * len(items)
        decoded: list[tuple[int, Admitted, bytes]] = []
        # An alert held already, byte for byte with its signature, was verified when it
        # was stored (Ed25519 signatures are not malleable in libsodium), so it is a
        # duplicate without a second verification (gossip delivers many of these), even
        # if its author has left the roster since. Only an alert whose (origin, seq) slot
        # is taken can be held.
        slots: list[tuple[bytes, int]] = []
        decode_head, limits = alerts.decode_head, self.limits
        for i, (body, signature) in enumerate(items):
            try:
                head = decode_head(body, limits)  # the rest is decoded off the loop
            except AlertmeshError as exc:
                checked[i] = exc
                continue
            origin = head.origin
            decoded.append((i, Admitted(ids[i], body, signature, head), origin))
            slots.append((origin, head.seq))
        holding = self.store.chains.holding(slots)
        taken = [a.id for (_, a, _), h in zip(decoded, holding, strict=True) if h]
        held = await self.store.held(taken) if taken else {}
        fresh = []
        roster = self._roster()
        unbounded = roster.unbounded_keys  # require_author passes these: nothing to check
        for i, a, origin in decoded:
            if held and a.id in held and held[a.id].signature == a.signature:
                continue
            if origin not in unbounded:
                try:
                    require_author(a, limits, roster)
                except AlertmeshError as exc:
                    checked[i] = exc
                    continue
            fresh.append((i, a))
        verdicts = await self.verifier.check([a for _, a in fresh], now)
        if latency_trace.ON:
            for _, a in fresh:
                latency_trace.mark("verified", a.id)
        opened = self._opened
        for (i, _), verdict in zip(fresh, verdicts, strict=True):
            # A record with a title is in clear (AlertRecord.sealed): no call for it.
            if isinstance(verdict, AlertRecord) and not verdict.title:
                verdict = opened(verdict)
            checked[i] = verdict
        valid = [c for c in checked if isinstance(c, AlertRecord)]
        if not valid:  # nothing to commit: nothing accepted, nothing to wait for
            return await self._settle(ids, checked, held, [], source)
        commit = self._committing(valid, now, verified, ids, checked, held, source)
        # The commit and what follows it are one task of the node's: a caller that stops
        # waiting (its session ended) does not stop the counters, the new-alert hooks or
        # an equivocation's proof of what the store commits anyway.
        return await self._commits.run(commit, "an ingest")

    def _committing(
        self,
        valid: list[AlertRecord],
        now: int,
        verified: Verified | None,
        ids: list[bytes],
        checked: list[AlertRecord | AlertmeshError | None],
        held: dict[bytes, Held],
        source: bytes | None,
    ) -> Coroutine[None, None, list[IngestResult]]:
        """Take the slots of `valid` and hand `verified` the alerts whose (origin, seq) slot
        is neither held nor being stored by another ingest: only those will be ACCEPTED
        (a second copy arriving on another session meanwhile, or an equivocating one,
        waits for its commit's outcome as before). Starts the put and returns what
        follows it, to be run as a task; nothing here awaits, so no other ingest comes
        between."""
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
        # Before the put is scheduled: a hook that raises leaves nothing stored.
        unstored = verified(early) if early and verified is not None else None
        self._storing.append(slots)

        def stored(done: asyncio.Future[list[PutOutcome]]) -> None:
            # The slots are free once the put is over, not when the ingest's caller leaves
            # or shutdown cancels the follow-up: until the store has committed, a second
            # copy must wait for it.
            for i, s in enumerate(self._storing):
                if s is slots:
                    del self._storing[i]
                    break
            failed = done.cancelled() or done.exception() is not None
            if failed and unstored is not None:
                unstored()
                log.warning(
                    "a commit of %d alerts forwarded before it failed; catch-up brings them back",
                    len(early),
                )

        # The put is a task of its own: the store commits what it queued even if the
        # follow-up is cancelled (drain at shutdown), so only the put's own failure
        # takes the alerts forwarded early out of the peer cache.
        put = asyncio.ensure_future(self.store.put(valid, now_ms=now))
        put.add_done_callback(stored)

        async def commit() -> list[IngestResult]:
            outcomes = await asyncio.shield(put)
            if latency_trace.ON:
                for r in valid:
                    latency_trace.mark("committed", r.id)
            return await self._settle(ids, checked, held, outcomes, source)

        return commit()

    async def _settle(
        self,
        ids: list[bytes],
        checked: list[AlertRecord | AlertmeshError | None],
        held: dict[bytes, Held],
        outcomes_of_valid: list[PutOutcome],
        source: bytes | None,
    ) -> list[IngestResult]:
        """What follows the commit: one result per item, the counters, the lifecycle's
        refusals, the new-alert hooks and the equivocations' proofs."""
        outcomes = iter(outcomes_of_valid)
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
        # The alerts are committed: a check or hook below that fails is logged and skips
        # nothing after it, and the caller's results are the commit's.
        for record in accepted:
            if not links_to_alerts(record.index_keys):
                continue
            try:
                refused = await self.lifecycle.refuses(record)
            except Exception:
                log.exception("the lifecycle check of alert %s failed", record.id.hex()[:16])
                continue
            if refused:
                self.counters.add("lifecycle_changes_refused")
                log.warning(
                    "alert %s changes another member's alert; kept, and it changes nothing",
                    record.id.hex()[:16],
                )
        if accepted:
            self._accepted(accepted, source)
        for record in equivocations:
            for hook in self.equivocation_hooks:
                try:
                    await hook(record)
                except Exception:
                    log.exception("an equivocation hook failed on %s", record.id.hex()[:16])
        return results

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
