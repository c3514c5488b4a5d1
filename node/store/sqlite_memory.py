"""What the SQLite store keeps in memory of the rows it commits, and the reads it
answers from there before asking the reader connection (node/store/sqlite_reads.py):
`get` of an alert a single-record put just stored, `after` for a watch close behind,
the count and the last cursor. `_committed` takes in each commit's outcome; the store
(node/store/sqlite.py) calls it on whichever thread's commit returns.
"""

from __future__ import annotations

import collections
import itertools

from node.core.chain import Chains
from node.store.base import PutOutcome, Query, Stored
from node.store.sqlite_reads import SqliteReads
from node.store.sqlite_writer import Committed, Write

# Alerts just committed by single-record puts (publishes), kept to answer `get` without
# a read: a Publish answers with the alert it stored (one aiosqlite round trip less).
RECENT_ALERTS = 1024
# The last rows committed (every accepted alert, in local_seq order): `after` answers a
# watch that is this close behind from memory, without a query on the reader thread.
TAIL_ROWS = 1024


class CommittedMemory(SqliteReads):
    """SqliteStore's memory of what it committed: the recent single-record alerts, the
    tail of rows, the chains, the position of the last row and the count."""

    _recent: collections.OrderedDict[bytes, Stored]
    _tail: collections.deque[Stored]  # local_seq tail[0].local_seq .. _last_local_seq
    _chains: Chains
    _last_local_seq: int
    _count: int
    commits: int

    def _committed(self, batch: list[Write], done: Committed) -> list[list[PutOutcome]]:
        """Take in a commit's outcome: the recent rows, the tail, the chains, the counts."""
        local_seq = self._last_local_seq  # the writer numbers accepted rows in batch order
        recent, tail, accepted_ = self._recent, self._tail, PutOutcome.ACCEPTED
        for write, outcomes in zip(batch, done.outcomes, strict=True):
            if len(write.records) == 1:
                if outcomes[0] is accepted_:
                    local_seq += 1
                    stored = Stored(write.records[0], local_seq, write.now_ms)
                    recent[stored.record.id] = stored
                    tail.append(stored)
                continue
            for record, outcome in zip(write.records, outcomes, strict=True):
                if outcome is accepted_:
                    local_seq += 1
                    tail.append(Stored(record, local_seq, write.now_ms))
        while len(recent) > RECENT_ALERTS:
            recent.popitem(last=False)
        if local_seq != done.last_local_seq:  # never expected: the tail would have a gap
            tail.clear()
        self.commits += 1
        self._last_local_seq = done.last_local_seq
        self._count += len(done.accepted)
        self._chains.add_all(done.accepted)
        return done.outcomes

    async def get(self, alert_id: bytes) -> Stored | None:
        if (stored := self._recent.get(alert_id)) is not None:
            return stored
        return await super().get(alert_id)

    async def after(self, query: Query, *, cursor: int, limit: int) -> list[Stored]:
        if cursor >= self._last_local_seq:
            return []
        tail = self._tail
        if tail and tail[0].local_seq <= cursor + 1:  # every row after cursor is in memory
            out: list[Stored] = []
            for stored in itertools.islice(tail, cursor + 1 - tail[0].local_seq, None):
                if query.matches(stored.record):
                    out.append(stored)
                    if len(out) == limit:
                        break
            return out
        return await super().after(query, cursor=cursor, limit=limit)

    async def count(self) -> int:
        return self._count

    async def last_cursor(self) -> int:
        return self._last_local_seq
