"""What the peer layer reports: dissemination totals and one row per peer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from node.core.peer_engine import PeerCounters

if TYPE_CHECKING:
    from node.app.peers import PeerManager


def gossip_counters(m: PeerManager) -> dict[str, int]:
    """Dissemination totals over the current sessions (for `alertmesh stats`)."""
    now = m.now()
    totals: dict[str, int] = {}
    for key in m.links:
        st = m.gossip.peer_stats(key, now)
        if st is None:
            continue
        for name in ("prunes_sent", "prunes_received", "grafts_sent", "grafts_received",
                     "ihave_ids_received", "ihave_ids_dropped"):  # fmt: skip
            totals[f"gossip_{name}"] = totals.get(f"gossip_{name}", 0) + getattr(st, name)
    g = m.gossip.stats()
    totals["gossip_tree_refused"] = g.tree_refused
    totals["gossip_eager_peers"] = g.eager_peers
    totals["gossip_awaited_ids"] = g.awaited_ids
    totals["gossip_awaited_abandoned"] = g.awaited_abandoned
    totals["catchup_alerts_received"] = sum(c.caught_up for c in m.counters.values())
    totals["catchup_alerts_served"] = sum(c.served for c in m.counters.values())
    out, into = m.outbox_stats, m.inbox_stats
    totals["peer_frames_queued"] = out.frames_queued
    totals["peer_frames_written"] = out.frames_taken
    totals["peer_alert_frames_written"] = out.alert_frames_taken
    totals["peer_alerts_written"] = out.alerts_taken
    totals["peer_frames_read"] = into.frames_read
    totals["peer_alert_frames_read"] = into.alert_frames_read
    totals["peer_alert_ingests"] = into.ingests
    return totals


def peer_rows(m: PeerManager) -> list[dict[str, object]]:
    """One row per member this node has or wants a session with (for `alertmesh stats`)."""
    now = m.now()
    out: list[dict[str, object]] = []
    for member in m.node.roster:
        if member.key == m.key:
            continue
        st = m.gossip.peer_stats(member.key, now)
        counters = m.counters.get(member.key, PeerCounters())
        if st is None and member.key not in m.counters and member.name not in m.connect:
            continue
        out.append(
            {
                "name": member.name,
                "key": member.key,
                "address": member.addresses[0] if member.addresses else "",
                "connected": member.key in m.links,
                "eager": bool(st and st.eager),
                "blocked": member.key in m.blocked,
                "full_received": counters.full_received,
                "duplicates_received": counters.duplicates_received,
                "invalid_received": counters.invalid_received,
                "full_sent": counters.full_sent,
                "ihave_sent": counters.ihave_sent,
            }
        )
    return out
