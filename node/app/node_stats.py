"""What GetStats reports about a node: its alerts per origin, equivocations, alerts by
compromised keys it holds, and the counters of every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from node.app.refused import RefusedAlert, refused_held
from node.core.catchup import summary_digest
from node.store.base import AlertStore

if TYPE_CHECKING:
    from node.app.service import AlertNode


@dataclass
class Counters:
    """What each layer counted, by name; GetStats reports them."""

    values: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + n


@dataclass(frozen=True, slots=True)
class OriginStats:
    origin: bytes
    name: str
    alerts: int
    contiguous_seq: int
    max_seq: int
    equivocated: bool


@dataclass(frozen=True, slots=True)
class NodeStats:
    alerts: int
    digest: bytes
    equivocations: int
    origins: list[OriginStats]
    counters: dict[str, int]
    peers: list[dict[str, object]]  # fields of alertmesh.v1.PeerStats
    compromised: list[RefusedAlert] = field(default_factory=list)  # node/app/refused.py
    compromised_total: int = 0


async def node_stats(node: AlertNode) -> NodeStats:
    proofs = await node.store.equivocations()
    cheaters = {p.first.origin for p in proofs}
    chains = node.store.chains
    origins = [
        OriginStats(
            origin=o,
            name=node.roster.name_of(o),
            alerts=state.count,
            contiguous_seq=state.contiguous,
            max_seq=state.max_seq,
            equivocated=o in cheaters,
        )
        for o, state in chains.items()
    ]
    compromised, compromised_total = await refused_held(node.store, node.roster)
    return NodeStats(
        alerts=await node.store.count(),
        digest=summary_digest(chains.vector()),
        equivocations=len(proofs),
        origins=origins,
        counters={
            **node.counters.values,
            **node.extra_counters(),
            **_store_counters(node.store),
        },
        peers=node.peer_stats(),
        compromised=compromised,
        compromised_total=compromised_total,
    )


def _store_counters(store: AlertStore) -> dict[str, int]:
    """The SQLite store's group commits (publishes that arrive together share one), and
    how many of them were sparse single puts committed on the event loop's thread."""
    commits = getattr(store, "commits", None)
    if commits is None:
        return {}
    return {
        "store_commits": int(commits),
        "store_inline_commits": int(getattr(store, "inline_commits", 0)),
    }
