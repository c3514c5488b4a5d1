"""What a node does with alerts: publish, ingest, and answer queries.

This is the one place that combines the store, the verifier, the roster and the
node's own signing key: publishing is node/app/publishing.py, ingesting
node/app/ingesting.py, the read side node/app/checking.py and node/app/watching.py. The
gRPC adapters in node/rpc call it; the peer layer feeds gossiped alerts through
`ingest` like any other source.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from node._pb.alertmesh.v1 import alert_pb2
from node.app.checking import Checker, CheckResult
from node.app.commits import Commits
from node.app.ingesting import Ingester, IngestResult, Verified
from node.app.lifecycle import Event, Lifecycle
from node.app.node_stats import Counters, NodeStats, node_stats
from node.app.publish_requests import BatchItemResult as BatchItemResult
from node.app.publishing import Publisher
from node.app.sharing import Sharing
from node.app.valuelists import Allowlist, Warninglist
from node.app.verify import Verifier
from node.app.watching import Watching
from node.core import indicators
from node.core.alerts import AlertRecord
from node.core.errors import NotFound
from node.core.limits import Limits
from node.core.roster import Roster
from node.crypto import Identity
from node.store.base import AlertStore, Equivocation, Query, Stored

log = logging.getLogger(__name__)

# How long a stopping node waits for the commits in flight and what follows them: a
# group commit takes milliseconds, and a store that hangs must not hold the stop past
# `cluster down`'s patience (node/app/runtime.py, SHUTDOWN_GRACE_S).
DRAIN_TIMEOUT_S = 5.0


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


# Called with the newly accepted records and the peer they came from (None: local/client).
NewAlertsHook = Callable[[Sequence[AlertRecord], bytes | None], None]


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
        # Each commit with what follows it is a task of the node's (node/app/commits.py).
        self.commits = Commits(log)
        self.publisher = Publisher(
            identity=identity,
            sharing=self.sharing,
            roster=lambda: self.roster,
            store=store,
            limits=limits,
            clock=clock,
            lifecycle=self.lifecycle,
            warninglist=lambda: self.warninglist,
            counters=self.counters,
            commits=self.commits,
            accepted=self._accepted,
            get=self.get,
        )
        self.own = self.publisher.own  # the chain head (node/app/own_chain.py)
        self.requests = self.publisher.requests  # client request ids in flight
        self.ingester = Ingester(
            store=store,
            verifier=verifier,
            limits=limits,
            clock=clock,
            sharing=self.sharing,
            lifecycle=self.lifecycle,
            counters=self.counters,
            roster=lambda: self.roster,
            accepted=self._accepted,
            equivocation_hooks=self.equivocation_hooks,
            commits=self.commits,
        )

    async def start(self) -> None:
        """Load this node's own chain head from the store."""
        await self.own.load()

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
        returns (stored, was_a_retried_request). `force`: even a warninglisted value
        (node/app/publishing.py)."""
        started = time.perf_counter()
        try:
            return await self.publisher.publish(draft, request_id, recipients, force=force)
        finally:
            self.observe_latency("publish", time.perf_counter() - started)

    async def publish_batch(
        self, items: Sequence[tuple[alert_pb2.Alert, str]], forced: Sequence[bool] = ()
    ) -> list[BatchItemResult]:
        """Sign and store many new alerts, (draft, client request id) each, in one store
        commit; each item succeeds or fails on its own (node/app/publishing.py)."""
        return await self.publisher.publish_batch(items, forced)

    async def ingest(
        self,
        items: Sequence[tuple[bytes, bytes]],
        source: bytes | None = None,
        verified: Verified | None = None,
    ) -> list[IngestResult]:
        """Verify and store signed alerts from elsewhere (node/app/ingesting.py)."""
        return await self.ingester.ingest(items, source, verified)

    async def drain(self, timeout: float = DRAIN_TIMEOUT_S) -> None:
        """Let the commits of publishes and ingests in flight finish with what follows them
        (watchers, gossip, proofs), also those whose callers left; at shutdown, before the
        store closes. Any still running after `timeout` seconds are cancelled."""
        await self.commits.drain(timeout)

    def _accepted(self, records: Sequence[AlertRecord], source: bytes | None) -> None:
        # The alerts are committed: a hook that fails is logged and changes nothing of
        # that (the caller's answer is the commit's), nor skips the hooks after it.
        self.watching.wake()
        for hook in self.hooks:
            try:
                hook(records, source)
            except Exception:
                log.exception("a new-alert hook failed on %d committed alerts", len(records))

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
