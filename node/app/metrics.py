"""The node's Prometheus metrics (docs/operations.md, "Monitoring", lists each one).

Everything the node counts already (AlertNode.counters, PeerManager.counters, the
gossip core's stats, the store's chains) is read at scrape time by NodeCollector, so
nothing is counted twice. Only what had no counter before is recorded here: the
publish and CheckIndicators latency histograms and the alerts accepted by origin and
category. Every metric lives in the node's own CollectorRegistry, not the process-wide
default one, so two nodes in one process (tests) never mix.

Label cardinality stays bounded by the roster: `peer` and `origin` are member names
(an origin that left the roster shows as the first 16 hex digits of its key), and
`category` has the protocol's eleven values.

The collector reads asyncio-owned state, so scrapes are served on the node's event
loop (node/app/metrics_http.py), never from another thread.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from node.app.peers import PeerCounters, PeerManager
from node.app.service import AlertNode
from node.core.alerts import CATEGORY_NAMES, AlertRecord, name_of
from node.store.base import PutOutcome

# Publish includes an fsync (group commit); a check is usually well under a millisecond.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
)  # fmt: skip
GOSSIP_FRAMES = ("ihave", "iwant", "graft", "prune")


def category_label(value: int) -> str:
    return name_of(CATEGORY_NAMES, value) or str(value)


class NodeMetrics:
    """The registry of one node, with what it records itself."""

    def __init__(self, node: AlertNode, peers: PeerManager, store_files: Sequence[Path]) -> None:
        self.node = node
        self.registry = CollectorRegistry()
        self.publish_seconds = Histogram(
            "alertmesh_publish_seconds",
            "Time to sign and durably store an alert published by a client (Publish).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.check_seconds = Histogram(
            "alertmesh_check_seconds",
            "Time to answer one CheckIndicators call.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.accepted = Counter(
            "alertmesh_alerts_accepted",
            "New alerts stored since the node started, by origin member and category.",
            ["origin", "category"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        self.registry.register(NodeCollector(node, peers, store_files))
        node.observe_latency = self.observe
        node.hooks.append(self.on_accepted)

    def observe(self, what: str, seconds: float) -> None:
        (self.publish_seconds if what == "publish" else self.check_seconds).observe(seconds)

    def on_accepted(self, records: Sequence[AlertRecord], source: bytes | None) -> None:
        for r in records:
            self.accepted.labels(
                origin_label(self.node, r.origin), category_label(r.category)
            ).inc()


def origin_label(node: AlertNode, key: bytes) -> str:
    return node.roster.name_of(key) or key.hex()[:16]


class NodeCollector(Collector):
    """Reads the node's own counters when Prometheus scrapes."""

    def __init__(self, node: AlertNode, peers: PeerManager, store_files: Sequence[Path]) -> None:
        self.node = node
        self.peers = peers
        self.store_files = tuple(store_files)

    def collect(self) -> Iterator[Metric]:
        yield from self._node()
        yield from self._store()
        yield from self._peers()
        yield from self._gossip()

    def _node(self) -> Iterator[Metric]:
        values = self.node.counters.values
        info = GaugeMetricFamily("alertmesh_node_info", "This node's member name.", labels=["name"])
        info.add_metric([origin_label(self.node, self.node.identity.public_key)], 1)
        yield info
        yield CounterMetricFamily(
            "alertmesh_published",
            "Alerts published by this node's clients.",
            value=values.get("published", 0),
        )
        outcomes = CounterMetricFamily(
            "alertmesh_ingest",
            "Alerts received from peers or clients (ingest), by outcome.",
            labels=["outcome"],
        )
        for outcome in PutOutcome:
            outcomes.add_metric([outcome.value], values.get(f"ingest_{outcome.value}", 0))
        rejected = {
            k.removeprefix("rejected_"): v for k, v in values.items() if k.startswith("rejected_")
        }
        outcomes.add_metric(["rejected"], sum(rejected.values()))
        yield outcomes
        reasons = CounterMetricFamily(
            "alertmesh_ingest_rejected",
            "Alerts refused on ingest, by the error that refused them.",
            labels=["reason"],
        )
        for reason, n in sorted(rejected.items()):
            reasons.add_metric([reason], n)
        yield reasons
        yield CounterMetricFamily(
            "alertmesh_peer_tls_pin_mismatch",
            "Peer sessions refused because the TLS certificate did not match the roster pin.",
            value=values.get("peer_tls_pin_mismatch", 0),
        )
        yield CounterMetricFamily(
            "alertmesh_peer_handshakes_refused",
            "Peer sessions refused in the handshake for another reason.",
            value=values.get("peer_handshakes_refused", 0),
        )

    def _store(self) -> Iterator[Metric]:
        stored = GaugeMetricFamily(
            "alertmesh_alerts_stored",
            "Alerts held in the store, by origin member.",
            labels=["origin"],
        )
        total = 0
        for origin, state in self.node.store.chains.items():
            stored.add_metric([origin_label(self.node, origin)], state.count)
            total += state.count
        yield stored
        yield GaugeMetricFamily(
            "alertmesh_store_alerts", "Alerts held in the store, in all.", value=total
        )
        size = 0
        for path in self.store_files:
            with contextlib.suppress(OSError):
                size += os.stat(path).st_size
        yield GaugeMetricFamily(
            "alertmesh_store_size_bytes",
            "Bytes of the store on disk: the database file and its write-ahead log.",
            value=size,
        )

    def _peers(self) -> Iterator[Metric]:
        peers = self.peers
        names = {}
        for key in set(peers.counters) | set(peers.links):
            names[key] = origin_label(self.node, key)
        for name in peers.connect:
            member = self.node.roster.by_name(name)
            if member is not None and member.key != self.node.identity.public_key:
                names[member.key] = name
        up = GaugeMetricFamily(
            "alertmesh_peer_up",
            "1 while a session with the member's node is open.",
            labels=["peer"],
        )
        outbox = GaugeMetricFamily(
            "alertmesh_peer_outbox_frames",
            "Frames queued to the peer and not yet written (backlog).",
            labels=["peer"],
        )
        for key, name in sorted(names.items(), key=lambda kv: kv[1]):
            link = peers.links.get(key)
            up.add_metric([name], 1 if link is not None else 0)
            outbox.add_metric([name], link.outbox.qsize() if link is not None else 0)
        yield up
        yield outbox

        def per_peer(metric: str, doc: str, value: str) -> CounterMetricFamily:
            family = CounterMetricFamily(metric, doc, labels=["peer"])
            for key, c in peers.counters.items():
                family.add_metric([names[key]], _field(c, value))
            return family

        yield per_peer("alertmesh_peer_sessions_opened", "Peer sessions opened.", "sessions")
        yield per_peer("alertmesh_peer_sessions_closed", "Peer sessions closed.", "sessions_closed")
        yield per_peer(
            "alertmesh_peer_reconnects",
            "Peer sessions opened after the first one since the node started.",
            "reconnects",
        )
        yield per_peer(
            "alertmesh_peer_dial_failures",
            "Attempts to dial the member's node that failed.",
            "dial_failures",
        )
        yield per_peer(
            "alertmesh_peer_invalid_alerts",
            "Invalid alerts received from the peer (each counts against it).",
            "invalid_received",
        )
        yield per_peer(
            "alertmesh_gossip_alerts_received",
            "Full alert copies received by gossip push or IWANT (new and duplicate).",
            "full_received",
        )
        yield per_peer(
            "alertmesh_gossip_duplicates_received",
            "Full alert copies received by gossip that were held already.",
            "duplicates_received",
        )
        yield per_peer(
            "alertmesh_gossip_alerts_sent", "Full alert copies sent by gossip.", "full_sent"
        )
        yield per_peer(
            "alertmesh_gossip_ihave_ids_sent",
            "Alert ids announced to the peer (IHAVE).",
            "ihave_sent",
        )
        yield per_peer(
            "alertmesh_catchup_alerts_received",
            "New alerts received through catch-up.",
            "caught_up",
        )
        yield per_peer("alertmesh_catchup_alerts_served", "Alerts sent through catch-up.", "served")
        yield per_peer(
            "alertmesh_catchup_bytes_received",
            "Bytes of signed alerts (body and signature) received through catch-up.",
            "catchup_bytes_received",
        )
        yield per_peer(
            "alertmesh_catchup_bytes_sent",
            "Bytes of signed alerts (body and signature) sent through catch-up.",
            "catchup_bytes_sent",
        )
        yield per_peer(
            "alertmesh_catchup_ranges_requested",
            "Catch-up ranges (origin, from seq, to seq) asked of the peer.",
            "ranges_requested",
        )
        yield per_peer(
            "alertmesh_catchup_ranges_served",
            "Catch-up ranges the peer asked of this node.",
            "ranges_served",
        )
        for direction in ("sent", "received"):
            family = CounterMetricFamily(
                f"alertmesh_gossip_frames_{direction}",
                f"Gossip control frames {direction} (IHAVE, IWANT, GRAFT, PRUNE), by kind.",
                labels=["peer", "kind"],
            )
            for key, c in peers.counters.items():
                frames = c.frames_sent if direction == "sent" else c.frames_received
                for kind in GOSSIP_FRAMES:
                    family.add_metric([names[key], kind], frames.get(kind, 0))
            yield family

    def _gossip(self) -> Iterator[Metric]:
        g = self.peers.gossip.stats()
        yield GaugeMetricFamily(
            "alertmesh_gossip_eager_peers",
            "Peers that get new alerts in full (the others get IHAVE announcements).",
            value=g.eager_peers,
        )
        yield GaugeMetricFamily(
            "alertmesh_gossip_awaited_ids",
            "Announced alert ids this node still waits for.",
            value=g.awaited_ids,
        )
        yield CounterMetricFamily(
            "alertmesh_gossip_awaited_abandoned",
            "Announced ids given up on: every announcer was asked and none delivered.",
            value=g.awaited_abandoned,
        )


def _field(c: PeerCounters, name: str) -> int:
    if name == "reconnects":
        return max(0, c.sessions - 1)
    value: int = getattr(c, name)
    return value
