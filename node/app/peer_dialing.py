"""Dialing the configured peers: one dial loop per member named in peers.connect (and on
the roster, with an address), started and cancelled as the roster changes. A loop waits
while the member is blocked or already has a session (it dialed us), and after a failed
or ended session waits as node/core/redial.py's Backoff says (R1-R4), woken early when a
session with some peer opens. node/app/peers.py's PeerManager owns one `Dialing` and
runs the sessions these dials open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from typing import TYPE_CHECKING

import grpc

from node.core.errors import AlertmeshError
from node.core.peer_engine import PeerCounters
from node.core.redial import Backoff
from node.core.roster import Member
from node.rpc.peer_transport import HandshakeFailed, PinMismatch, dial

if TYPE_CHECKING:
    from node.app.peers import PeerManager

log = logging.getLogger("node.app.peers")  # the same logger as the manager's lines


class Dialing:
    """The dial loops of one PeerManager, and what wakes them."""

    def __init__(self, manager: PeerManager) -> None:
        self.manager = manager
        self._unblocked = asyncio.Event()
        self._session_opened = asyncio.Event()  # replaced at each open: R2 wakes dial loops
        self._last_open = -math.inf
        self._dialers: dict[bytes, asyncio.Task[None]] = {}

    def unblocked(self) -> None:
        """A member was let back in: loops waiting on a block dial again."""
        self._unblocked.set()
        self._unblocked = asyncio.Event()

    def session_opened(self, now: float) -> None:
        """A session with some peer opened: loops in their backoff wake (R2, R3)."""
        self._session_opened.set()
        self._session_opened = asyncio.Event()
        self._last_open = now

    def reconcile(self, tg: asyncio.TaskGroup) -> None:
        """One dial loop per member peers.connect names (the roster may have changed)."""
        m = self.manager
        wanted: dict[bytes, Member] = {}
        for name in m.connect:
            member = m.node.roster.by_name(name)
            if member is None:
                log.warning("peers.connect names %r, which is not on the roster", name)
            elif member.key != m.key and member.addresses:
                wanted[member.key] = member
        for key, task in list(self._dialers.items()):
            if key not in wanted:
                task.cancel()
                del self._dialers[key]
        for key, member in wanted.items():
            if key not in self._dialers or self._dialers[key].done():
                self._dialers[key] = tg.create_task(
                    self._dial_loop(member), name=f"dial {member.name}"
                )

    async def _dial_loop(self, member: Member) -> None:
        m = self.manager
        backoff = Backoff()  # node/core/redial.py: R1, R2, R3
        rng = random.Random()
        while True:
            # The roster may have been reloaded since (a new address or TLS pin).
            member = m.node.roster.get(member.key) or member
            if member.key in m.blocked:
                await self._unblocked.wait()
                backoff = Backoff()
                continue
            existing = m.links.get(member.key)
            if existing is not None:  # the peer dialed us: use that session
                await existing.closed.wait()
                continue
            started = m.now()
            failed = True
            extra = {"event": "session_failed", "peer": member.name}
            try:
                await dial(member, m.node.identity, m.security, m.session)
                failed = False
            except PinMismatch as exc:
                m.handshake_refused(exc)
            except grpc.aio.AioRpcError as exc:
                log.info(
                    "session with %s failed: %s %s",
                    member.name,
                    exc.code().name,
                    exc.details(),
                    extra=extra,
                )
            except (HandshakeFailed, AlertmeshError, TimeoutError) as exc:
                log.warning("session with %s failed: %s", member.name, exc, extra=extra)
            except Exception:
                log.error(
                    "session with %s failed unexpectedly", member.name, exc_info=True, extra=extra
                )
            if failed:
                m.counters.setdefault(member.key, PeerCounters()).dial_failures += 1
            up = self._last_open > started
            wait = backoff.wait_after(m.now() - started, rng.random(), up)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    while True:  # R2, R3: a session with some peer opened
                        first = self._last_open == -math.inf  # R4: none had opened yet
                        await self._session_opened.wait()  # a new Event at each open
                        if (due := backoff.wake(rng.random(), first)) is not None:
                            break
                    await asyncio.sleep(due)
