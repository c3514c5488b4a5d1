"""Held alerts that the roster now refuses, for operators to see.

When a roster reload marks a key compromised (or ends a key's validity earlier), the
alerts of that key which the node accepted before stay in the store: they are part of
the chain that catch-up compares, and deleting them would not undo what they said.
They are never reported by Check, and Stats lists them so an operator can review what
they flagged. A compromised key's whole chain is examined; a retired key's only above
its last_seq (below it, ingest already judged each alert's time against the key).
"""

from __future__ import annotations

from dataclasses import dataclass

from node.core.roster import Roster
from node.store.base import AlertStore

LISTED_MAX = 1000
PAGE = 1000


@dataclass(frozen=True, slots=True)
class RefusedAlert:
    id: bytes
    origin: bytes
    name: str
    seq: int
    created_at_ms: int
    reason: str


async def refused_held(
    store: AlertStore, roster: Roster, listed_max: int = LISTED_MAX
) -> tuple[list[RefusedAlert], int]:
    """Up to `listed_max` held alerts outside their key's validity, and how many in all."""
    listed: list[RefusedAlert] = []
    total = 0
    for member in roster:
        for k in member.keys:
            held_to = store.chains.get(k.key).max_seq
            if k.compromised:
                seq = 1
            elif k.last_seq is not None:
                seq = k.last_seq + 1
            else:
                continue
            while seq <= held_to:
                page = await store.range(k.key, seq, held_to, limit=PAGE)
                if not page:
                    break
                for r in page:
                    reason = roster.refusal(r.origin, r.seq, r.created_at_ms)
                    if reason:
                        total += 1
                        if len(listed) < listed_max:
                            listed.append(
                                RefusedAlert(
                                    r.id, r.origin, member.name, r.seq, r.created_at_ms, reason
                                )
                            )
                seq = page[-1].seq + 1
    return listed, total
