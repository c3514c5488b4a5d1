"""The peer layer's timer task wakes for a deadline, not for every frame (issue 15
target 3: at a low rate each wake-up is CPU the alert's path shares two cores with),
and still wakes for every deadline that comes nearer.

Three nodes in one process driven by the real peer layer over in-memory streams (the
harness of tests/test_relay_forward.py), each with its timer task running."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from node.store.memory import MemoryStore
from tests.test_relay_forward import Net, draft, holds, three_nodes, until, until_async

ALERTS = 30


@contextlib.asynccontextmanager
async def timers_running(net: Net) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(p.run()) for p in net.peers.values()]  # no peers to dial
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_alerts_that_move_no_deadline_do_not_wake_the_timer_task() -> None:
    """O - R - L: the leaf's one peer is its parent, so no alert gives it anything to
    announce or ask for later, and its timer task has no deadline nearer than the next
    catch-up round."""
    async with three_nodes(MemoryStore()) as net, timers_running(net):
        o, leaf = net.nodes["O"], net.nodes["L"]
        peers = net.peers["L"]
        await asyncio.sleep(0.05)
        before = peers.timer_wakes
        for n in range(ALERTS):
            alert = (await o.publish(draft(n)))[0].record.id
            await until_async(lambda alert=alert: holds(leaf, alert))  # type: ignore[misc]
        # Each alert was a frame the leaf handled and actions it ran; each of those used
        # to wake the timer task (ALERTS wake-ups or more).
        assert peers.timer_wakes - before < ALERTS // 3


async def test_a_deadline_that_comes_nearer_still_wakes_the_timer_task() -> None:
    """O - R - L and L - O: a triangle, so one of its three links is lazy (which one
    depends on the keys, i.e. which node is the tree's root), and the alerts published
    at O are announced over it by IHAVE when an announcement timer fires."""
    async with three_nodes(MemoryStore()) as net, timers_running(net):
        net.link("L", "O")
        o = net.nodes["O"]
        await until(lambda: len(net.peers["O"].links) == 2)
        for n in range(5):
            await o.publish(draft(n))
            await asyncio.sleep(0.02)

        def ihaves() -> int:
            return sum(c.ihave_sent for p in net.peers.values() for c in p.counters.values())

        await until(lambda: ihaves() > 0, "an IHAVE")
