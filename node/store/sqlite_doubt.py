"""A commit in doubt on the SQLite store: a transaction that failed without the mark
nothing_written (node/store/base.py) may have committed after all. The store reads back
on its write connection what landed after the last row it knows (Writer.committed_after,
node/store/sqlite_writer.py) and takes it in: the chains, positions and count learn those
rows, so the next own alert goes on top of them. While that read has not succeeded the
store is in doubt (`_in_doubt`): no commit on the loop's thread, and the writer reads
back before its next commit. node/store/sqlite.py calls these where a commit fails.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from node.core.chain import Chains
from node.store.base import Stored, read_back_by_writer
from node.store.sqlite_writer import Writer

# The store's logger: these lines read as the store's own.
log = logging.getLogger("node.store.sqlite")


class CommitDoubt:
    """The read-back after a commit in doubt, for SqliteStore, on its state: the write
    connection (`_writer_db`), the queue to its writer task, the chains, the position
    of the last row, the count and the tail of rows in memory."""

    _in_doubt: bool
    _closing: bool
    _queue: asyncio.Queue[Any]
    _writer_db: Writer | None
    _chains: Chains
    _last_local_seq: int
    _count: int
    _tail: collections.deque[Stored]

    async def settle_doubt(self) -> None:
        """A commit in doubt not yet read back is read back now, by the writer (its
        thread has the write connection; AlertStore.settle_doubt)."""
        if not self._in_doubt:
            return
        await read_back_by_writer(self._queue, self._closing, lambda: self._in_doubt)

    def _read_after_doubt(self) -> list[tuple[int, bytes, int]] | None:
        """After a commit in doubt (a failure not marked nothing_written): the rows it may
        have committed after all, read on the write connection while no other commit
        can run. SQLite rolls back a COMMIT that fails, so this is almost always empty;
        None if the read fails (logged): the store stays in doubt (_in_doubt)."""
        assert self._writer_db is not None
        try:
            return self._writer_db.committed_after(self._last_local_seq)
        except Exception:
            log.exception("cannot read the store after a failed commit; reading again first")
            return None

    def _take_in(self, rows: list[tuple[int, bytes, int]] | None) -> bool:
        """Rows a commit in doubt wrote after all: the chains, positions and count learn
        them (the next own alert goes on top of them, the next row is numbered after).
        None (the read failed): the store stays in doubt. Whether the doubt is over."""
        self._in_doubt = rows is None
        if not rows:
            return not self._in_doubt
        log.warning("a commit that failed had stored %d alerts after all", len(rows))
        for _, origin, seq in rows:
            self._chains.add(origin, seq)
        self._last_local_seq = rows[-1][0]
        self._count += len(rows)
        self._tail.clear()  # it would have a gap; `after` reads the rows instead
        return True
