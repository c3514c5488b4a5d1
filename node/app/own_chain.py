"""The head of this node's own chain: the seq and id the next own alert chains on.

`AlertNode` signs its own alerts one after the other with no await between taking the
head and moving it (so concurrent publishes chain correctly), and stores them in a task
of its own (node/app/commits.py). When such a put fails (a full disk), the next alert
must not chain on the lost ones: the head goes back to before them if the store says the
put wrote nothing (base.nothing_written) and nothing was signed on top of them meanwhile.
Otherwise (a COMMIT in doubt may have landed; later alerts are in flight) the head is
read again from the store before the next signing, once the commits in flight have
ended. The store refuses an own alert that does not follow what it holds
(base.unchained), so a lost alert never leaves a hole below a later one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from node.app.commits import Commits
from node.core.alerts import AlertRecord
from node.store.base import AlertStore, OwnChainBroken, wrote_nothing


class OwnChain:
    def __init__(self, store: AlertStore, origin: bytes, commits: Commits) -> None:
        self._store = store
        self._origin = origin
        self._commits = commits
        self.seq = store.chains.get(origin).max_seq
        self.head = b""
        # A put of own alerts failed after later ones were signed on top of them: the
        # next signing takes the head from the store again (ready).
        self._lost = False
        self._reading = asyncio.Lock()

    async def load(self) -> None:
        """Take the head from the store (at start-up)."""
        self.seq, self.head = await self._stored()

    async def _stored(self) -> tuple[int, bytes]:
        """The seq and id of this node's last own alert in the store (0, b"" if none)."""
        seq = self._store.chains.get(self._origin).max_seq
        if not seq:
            return 0, b""
        head = await self._store.range(self._origin, seq, seq, limit=1)
        return seq, head[0].id if head else b""

    def signed(self, record: AlertRecord) -> None:
        """`record` is the next own alert: the one after chains on it."""
        self.seq, self.head = record.seq, record.id

    def unstored(
        self, lost: Sequence[AlertRecord], failures: Sequence[BaseException | None]
    ) -> None:
        """Own alerts were signed but their puts failed (a full disk): the next one must not
        chain on them. If every put wrote nothing and none was signed after them, the head
        goes back to before the first; else (a failure in doubt, a put cancelled that the
        store may commit anyway, a refusal: the head is not what the store holds) the
        next signing takes the head from the store, once the commits in flight have
        ended."""
        last = lost[-1]
        if (
            all(
                isinstance(failure, Exception)
                and wrote_nothing(failure)
                and not isinstance(failure, OwnChainBroken)
                for failure in failures
            )
            and self.head == last.id
            and last.seq - lost[0].seq == len(lost) - 1
        ):
            self.seq, self.head = lost[0].seq - 1, lost[0].prev
        else:
            self._lost = True

    @property
    def lost(self) -> bool:
        return self._lost

    async def ready(self) -> None:
        """Return once the head is one to sign on (at once, unless a put was lost)."""
        while self._lost:
            async with self._reading:
                if self._lost:
                    await self._commits.settled()  # those signed on the lost ones, too
                    # A commit in doubt the store could not read back yet: its chains may
                    # lag the database, and a head read from them would be refused.
                    await self._store.settle_doubt()
                    # Read first, then take it with no await between: a read that fails
                    # or is cancelled leaves the flag set for the next publish to retry,
                    # and no publish signs on a half-read head meanwhile.
                    seq, head = await self._stored()
                    self.seq, self.head, self._lost = seq, head, False
