"""A relay forwards a gossiped alert once it has verified it, before its own commit, so
its commit is not in series with its peers' copies (issue 15 target 3). The alert is
forwarded once however many sessions bring it, and if the relay's commit then fails,
the alert is out with its peers and its author, and catch-up brings it back.

Three nodes in one process on in-memory stores, driven by the real peer layer over
in-memory streams: the origin O, the relay R, the leaf L, linked O - R - L only, so
whatever L gets came through R. R's store can hold its commits back, or fail one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import peer_service_pb2 as pb
from node.app.peers import PeerManager
from node.app.service import AlertNode
from node.app.verify import Verifier
from node.core.alerts import AlertRecord, alert_id
from node.core.limits import DEFAULT_LIMITS
from node.core.roster import Member, Roster
from node.crypto import Identity
from node.store.base import PutOutcome
from node.store.memory import MemoryStore
from tests.factory import ADDRESS, Author


class CommitFailed(Exception):
    pass


class HeldStore(MemoryStore):
    """A store whose commits wait for `open` (a slow disk), or fail while `failing`."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.open.set()
        self.failing = False
        self.waiting = 0  # puts held back now

    async def put(
        self, records: Sequence[AlertRecord], *, now_ms: int, request_id: str = ""
    ) -> list[PutOutcome]:
        self.waiting += 1
        try:
            await self.open.wait()
        finally:
            self.waiting -= 1
        if self.failing:
            raise CommitFailed("the disk is full")
        return await super().put(records, now_ms=now_ms, request_id=request_id)


class End:
    """One end of an in-memory peer stream."""

    def __init__(
        self, inbox: asyncio.Queue[pb.PeerFrame | None], out: asyncio.Queue[pb.PeerFrame | None]
    ) -> None:
        self.inbox, self.out = inbox, out

    async def read(self) -> pb.PeerFrame | None:
        return await self.inbox.get()

    async def write(self, frame: pb.PeerFrame) -> None:
        await self.out.put(frame)


@dataclass
class Net:
    nodes: dict[str, AlertNode]
    peers: dict[str, PeerManager]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ends: dict[tuple[str, str], End] = field(default_factory=dict)

    def link(self, a: str, b: str) -> None:
        """Open a session between a (dialer) and b (acceptor)."""
        ab: asyncio.Queue[pb.PeerFrame | None] = asyncio.Queue()
        ba: asyncio.Queue[pb.PeerFrame | None] = asyncio.Queue()
        self.ends[(a, b)], self.ends[(b, a)] = End(ba, ab), End(ab, ba)
        for me, other, role in ((a, b, "dialer"), (b, a, "acceptor")):
            key = self.nodes[other].identity.public_key
            coro = self.peers[me].session(key, self.ends[(me, other)], role)
            self.tasks.append(asyncio.create_task(coro))

    def cut(self, a: str, b: str) -> None:
        """Both ends read the end of the stream."""
        for me, other in ((a, b), (b, a)):
            self.ends[(me, other)].inbox.put_nowait(None)


@contextlib.asynccontextmanager
async def three_nodes(relay_store: MemoryStore) -> AsyncIterator[Net]:
    ids = {name: Identity.generate() for name in ("O", "R", "L")}
    roster = Roster.of([Member(name, i.public_key) for name, i in ids.items()])
    async with Verifier(DEFAULT_LIMITS, processes=1) as verifier:
        nodes = {
            name: AlertNode(
                identity=i,
                roster=roster,
                store=relay_store if name == "R" else MemoryStore(),
                verifier=verifier,
                limits=DEFAULT_LIMITS,
            )
            for name, i in ids.items()
        }
        net = Net(nodes, {name: PeerManager(n, connect=()) for name, n in nodes.items()})
        net.link("O", "R")
        net.link("R", "L")
        try:
            await until(
                lambda: all(len(p.links) == (2 if n == "R" else 1) for n, p in net.peers.items())
            )
            yield net
        finally:
            for task in net.tasks:
                task.cancel()
            await asyncio.gather(*net.tasks, return_exceptions=True)


async def until(done: Callable[[], bool], what: str = "", seconds: float = 10.0) -> None:
    """Poll `done` until it holds (a bound, not a target)."""
    for _ in range(int(seconds / 0.005)):
        if done():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out: {what}")


async def until_async(done: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if await done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def draft(n: int) -> alert_pb2.Alert:
    alert = alert_pb2.Alert(category=alert_pb2.CATEGORY_PHISHING, title=f"drainer {n}")
    alert.indicators.add(type=ADDRESS, value=f"eip155:1:0x{n:040x}")
    return alert


async def holds(node: AlertNode, alert_id: bytes) -> bool:
    return await node.store.get(alert_id) is not None


async def test_the_relay_forwards_a_verified_alert_while_its_commit_is_held() -> None:
    store = HeldStore()
    async with three_nodes(store) as net:
        o, r, leaf = net.nodes["O"], net.nodes["R"], net.nodes["L"]
        store.open.clear()  # R's disk stalls
        stored, _ = await o.publish(draft(1))
        alert = stored.record.id

        # The leaf gets the alert while R's commit of it is still waiting.
        await until_async(lambda: holds(leaf, alert))
        assert store.waiting == 1
        assert not await holds(r, alert)

        store.open.set()
        await until_async(lambda: holds(r, alert))
        for _ in range(20):  # nothing more arrives at the leaf
            await asyncio.sleep(0.01)
        from_r = net.peers["L"].counters[r.identity.public_key]
        assert (from_r.full_received, from_r.duplicates_received) == (1, 0)
        # R counted the copy from O once, before the commit, and not again after it.
        from_o = net.peers["R"].counters[o.identity.public_key]
        assert (from_o.full_received, from_o.duplicates_received) == (1, 0)


async def test_a_copy_arriving_twice_while_the_first_commits_is_forwarded_once() -> None:
    store = HeldStore()
    async with three_nodes(store) as net:
        o, r, leaf = net.nodes["O"], net.nodes["R"], net.nodes["L"]
        author = Author()  # another member's alert, brought by O and by L at once
        r.roster = o.roster = leaf.roster = Roster.of([*o.roster, Member("A", author.key)])
        signed = author.next(indicators=[(ADDRESS, "eip155:1:0x" + "ab" * 20)])
        frame = pb.PeerFrame(alerts=pb.Alerts(alerts=[signed]))
        store.open.clear()
        # O and L each push the same copy to R; R verifies both while neither commits.
        await net.ends[("O", "R")].out.put(frame)
        await net.ends[("L", "R")].out.put(frame)
        await until(lambda: store.waiting == 2)
        store.open.set()
        await until_async(lambda: holds(r, alert_id(signed.body)))
        for _ in range(20):
            await asyncio.sleep(0.01)
        # Forwarded once: to O or L, whichever did not bring it first; never both ways.
        sent = [net.peers["R"].counters[net.nodes[n].identity.public_key].full_sent for n in "OL"]
        assert sum(sent) == 1
        got = [net.peers["R"].counters[n.identity.public_key] for n in (o, leaf)]
        assert sum(c.full_received for c in got) == 2  # both copies counted as received


async def test_a_relay_whose_commit_failed_gets_the_alert_back_by_catch_up() -> None:
    store = HeldStore()
    async with three_nodes(store) as net:
        o, r, leaf = net.nodes["O"], net.nodes["R"], net.nodes["L"]
        store.failing = True  # R's next commit fails
        stored, _ = await o.publish(draft(2))
        alert = stored.record.id
        await until_async(lambda: holds(leaf, alert))  # forwarded before the commit
        # The failed commit ends R's session with O (the ingest raised); R lacks it.
        await until(lambda: o.identity.public_key not in net.peers["R"].links)
        assert not await holds(r, alert)
        assert not net.peers["R"].cached(alert), "a failed commit left it in the cache"

        store.failing = False
        net.cut("O", "R")
        await until(lambda: r.identity.public_key not in net.peers["O"].links)
        net.link("O", "R")  # the session opens again: catch-up compares the chains
        await until_async(lambda: holds(r, alert))
        assert r.store.chains.holds(o.identity.public_key, 1)


def two_copies_of_one_slot(net: Net) -> tuple[alert_pb2.SignedAlert, alert_pb2.SignedAlert, Author]:
    """A new member's two signed alerts for the same (origin, seq), every node told of it."""
    o, r, leaf = net.nodes["O"], net.nodes["R"], net.nodes["L"]
    author = Author()
    r.roster = o.roster = leaf.roster = Roster.of([*o.roster, Member("A", author.key)])
    first = author.next(indicators=[(ADDRESS, "eip155:1:0x" + "cd" * 20)])
    author.seq, author.head = 0, b""  # the same seq again, another body
    second = author.next(indicators=[(ADDRESS, "eip155:1:0x" + "ef" * 20)])
    return first, second, author


async def test_an_equivocating_copy_verified_while_the_first_commits_is_not_gossiped() -> None:
    store = HeldStore()
    async with three_nodes(store) as net:
        first, second, _ = two_copies_of_one_slot(net)
        store.open.clear()
        await net.ends[("O", "R")].out.put(pb.PeerFrame(alerts=pb.Alerts(alerts=[first])))
        await net.ends[("L", "R")].out.put(pb.PeerFrame(alerts=pb.Alerts(alerts=[second])))
        await until(lambda: store.waiting == 2)
        store.open.set()
        await until(lambda: len(store._equivocations) == 1)
        for _ in range(20):
            await asyncio.sleep(0.01)
        # Only the copy whose slot was free went on before the commit; the other is an
        # equivocation, spread as a proof, not gossiped as an alert.
        sent = [net.peers["R"].counters[net.nodes[n].identity.public_key].full_sent for n in "OL"]
        assert sum(sent) == 1


class QueuedStore(HeldStore):
    """Like SqliteStore: a put, once queued, commits even if its caller is cancelled."""

    async def put(
        self, records: Sequence[AlertRecord], *, now_ms: int, request_id: str = ""
    ) -> list[PutOutcome]:
        task = asyncio.ensure_future(HeldStore.put(self, records, now_ms=now_ms))
        return await asyncio.shield(task)


async def test_equivocating_copy_not_forwarded_after_first_ingest_is_cancelled() -> None:
    """A session that ends while its ingest waits for the commit cancels the ingest, but
    the store still commits what was queued: until it has, an equivocating copy from
    another session must not be gossiped as a first copy."""
    store = QueuedStore()
    async with three_nodes(store) as net:
        o, r = net.nodes["O"], net.nodes["R"]
        first, second, author = two_copies_of_one_slot(net)
        store.open.clear()
        await net.ends[("O", "R")].out.put(pb.PeerFrame(alerts=pb.Alerts(alerts=[first])))
        await until(lambda: store.waiting == 1)
        # O's session with R ends while R's commit of `first` is queued.
        # The stream breaks (a reset connection: the reader raises, not a clean end).
        net.ends[("R", "O")].inbox.put_nowait("broken")  # type: ignore[arg-type]
        await until(lambda: o.identity.public_key not in net.peers["R"].links)
        assert store.waiting == 1  # `first` will still be committed
        early: list[bytes] = []
        pm = net.peers["R"]
        real = pm.forward_verified
        pm.forward_verified = lambda s, recs: (early.extend(x.id for x in recs), real(s, recs))  # type: ignore[method-assign]
        await net.ends[("L", "R")].out.put(pb.PeerFrame(alerts=pb.Alerts(alerts=[second])))
        await until(lambda: store.waiting == 2)
        store.open.set()
        await until(lambda: len(store._equivocations) == 1)
        for _ in range(20):
            await asyncio.sleep(0.01)
        # `second` is the equivocation (`first` committed first): it must not have been
        # handed to gossip as a new alert before its commit.
        assert r.store.chains.holds(author.key, 1)
        assert early == [], "the equivocating copy was forwarded before its commit"


async def test_a_commit_that_fails_after_its_session_ended_leaves_nothing_in_the_cache() -> None:
    """R forwards O's alert before its commit; the session with O breaks while the commit
    is held (the ingest's wait is cancelled, the put goes on); then the commit fails. R
    must not keep serving the alert from its cache as if it held it."""
    store = HeldStore()
    async with three_nodes(store) as net:
        o, r = net.nodes["O"], net.nodes["R"]
        signed, _, _ = two_copies_of_one_slot(net)
        aid = alert_id(signed.body)
        store.open.clear()
        await net.ends[("O", "R")].out.put(pb.PeerFrame(alerts=pb.Alerts(alerts=[signed])))
        await until(lambda: store.waiting == 1)
        assert net.peers["R"].cached(aid)  # forwarded before the commit
        net.ends[("R", "O")].inbox.put_nowait("broken")  # type: ignore[arg-type]
        await until(lambda: o.identity.public_key not in net.peers["R"].links)
        store.failing = True
        store.open.set()
        await until(lambda: store.waiting == 0)
        await until(lambda: not net.peers["R"].cached(aid), "the failed alert leaves the cache")
        assert not await holds(r, aid)
