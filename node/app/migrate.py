"""`alertmesh store migrate --from alerts.db --to postgresql://...`: copy a SQLite
store into an empty PostgreSQL database, with the node stopped.

Alerts go over in their store order, so every alert keeps its position (the cursor
clients resume `watch` from) and the time it was received; equivocation proofs and
remembered publish request ids go with them. The copy is verified, not trusted: both
stores' summary digests (the 32 bytes `alertmesh stats` prints, over every origin's
chain head) and counts must be equal.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from node.core.catchup import summary_digest
from node.core.errors import ConfigError
from node.store.base import AlertStore, Query
from node.store.postgres import PostgresStore
from node.store.postgres_url import redacted
from node.store.sqlite import SqliteStore

PAGE = 5000


@dataclass(frozen=True)
class StoreSummary:
    alerts: int
    equivocations: int
    digest: bytes

    def line(self, name: str) -> str:
        return (
            f"{name}: {self.alerts} alerts, {self.equivocations} equivocations,"
            f" digest {self.digest.hex()}"
        )


@dataclass(frozen=True)
class Migration:
    source: StoreSummary
    target: StoreSummary

    @property
    def verified(self) -> bool:
        return self.source == self.target


async def summarise(store: AlertStore) -> StoreSummary:
    return StoreSummary(
        alerts=await store.count(),
        equivocations=len(await store.equivocations()),
        digest=summary_digest(store.chains.vector()),
    )


def _request_ids(path: Path) -> dict[bytes, str]:
    """alert id -> the publish request id that created it."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return {
            bytes(a): r for r, a in db.execute("SELECT request_id, alert_id FROM publish_requests")
        }


async def migrate(source: Path, url: str, *, progress: bool = False) -> Migration:
    """Copy the SQLite store at `source` (an existing file) into the database at `url`."""
    async with SqliteStore(source) as old, PostgresStore(url) as new:
        if await new.count():
            raise ConfigError(
                f"{redacted(url)} already holds {await new.count()} alerts; migrate into an"
                " empty database"
            )
        requests = _request_ids(source)
        cursor = 0
        everything = Query(now_ms=0, include_expired=True)
        while page := await old.after(everything, cursor=cursor, limit=PAGE):
            puts = []
            # One put per run of alerts received in the same millisecond (their time is
            # kept), and alone an alert a publish request created; the store commits
            # them together, in order.
            for (received, request_id), run in itertools.groupby(
                page, key=lambda s: (s.received_at_ms, requests.get(s.record.id, ""))
            ):
                stored = list(run)
                puts.append(
                    new.put([s.record for s in stored], now_ms=received, request_id=request_id)
                )
            await asyncio.gather(*puts)
            cursor = page[-1].local_seq
            if progress:
                print(f"copied {cursor} alerts", flush=True)
        for proof in await old.equivocations():
            await new.put([proof.second], now_ms=proof.detected_at_ms)
        await new.analyze()  # fresh statistics, or the planner guesses until autovacuum
        return Migration(await summarise(old), await summarise(new))
