"""Frames between peers batch adaptively: a burst of alerts crosses each link in a few
frames and is ingested in a few calls; a single alert still leaves at once, alone."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from node import cluster
from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node._pb.alertmesh.v1 import peer_service_pb2 as pb
from node.app.peer_frames import Inbox, Outbox, frame_bytes
from node.app.peers import _pushes_joined
from node.core import peer_engine as pe
from node.core.gossip import Gossip, GossipParams
from node.rpc.client import AlertClient
from node.store import MemoryStore
from tests.clusters import cluster_running, counts, eventually, stats
from tests.factory import DOMAIN


@dataclass(frozen=True)
class Signed:
    """A stand-in for a signed alert as a frame carries it (pe.Carried)."""

    id: bytes
    body: bytes
    signature: bytes = b"s" * 64
    origin: bytes = b"o" * 32


def alerts(n: int, size: int = 600, start: int = 0) -> list[Signed]:
    return [Signed(i.to_bytes(32, "big"), bytes([i % 256]) * size) for i in range(start, start + n)]


def gossip(records: list[Signed]) -> pe.AlertsFrame:
    return pe.AlertsFrame(tuple(records))


async def drain(outbox: Outbox) -> list[pe.Frame]:
    out = []
    while outbox.qsize():
        out.append(await outbox.get())
    return out


# -- the outbox -----------------------------------------------------------------------


async def test_gossip_alerts_queued_behind_each_other_leave_as_one_frame() -> None:
    outbox = Outbox()
    sent = alerts(100)
    for a in sent:
        assert outbox.put(gossip([a]))
    frames = await drain(outbox)
    assert len(frames) == 1
    assert isinstance(frames[0], pe.AlertsFrame)
    assert [r.id for r in frames[0].records] == [a.id for a in sent]
    assert outbox.stats.alerts_taken == 100 and outbox.stats.alert_frames_taken == 1


async def test_a_coalesced_frame_never_exceeds_the_alert_or_byte_cap() -> None:
    outbox = Outbox(alerts_per_frame=50, coalesce_bytes=20_000)
    sent = alerts(1000, size=700)
    for a in sent:
        assert outbox.put(gossip([a]))
    frames = await drain(outbox)
    assert [r.id for f in frames for r in f.records] == [a.id for a in sent]  # type: ignore[union-attr]
    for f in frames:
        assert len(f.records) <= 50  # type: ignore[union-attr]
        assert frame_bytes(f) <= 20_000
    assert len(frames) < len(sent) / 20


async def test_other_frames_keep_their_place_and_catchup_frames_are_not_joined() -> None:
    outbox = Outbox()
    a, b, c, d = alerts(4)
    outbox.put(gossip([a]))
    outbox.put(pe.PruneFrame())
    outbox.put(gossip([b]))
    outbox.put(pe.AlertsFrame((c,), catchup=True))
    outbox.put(pe.AlertsFrame((d,), catchup=True))
    outbox.put(pe.IdsFrame("ihave", (b"x" * 32,)))
    outbox.put(pe.IdsFrame("ihave", (b"y" * 32,)))
    outbox.put(pe.IdsFrame("graft", (b"z" * 32,)))
    frames = await drain(outbox)
    assert frames == [
        gossip([a]),
        pe.PruneFrame(),
        gossip([b]),
        pe.AlertsFrame((c,), catchup=True),
        pe.AlertsFrame((d,), catchup=True),
        pe.IdsFrame("ihave", (b"x" * 32, b"y" * 32)),
        pe.IdsFrame("graft", (b"z" * 32,)),
    ]


async def test_a_frame_taken_by_the_writer_is_not_joined_any_more() -> None:
    outbox = Outbox()
    a, b = alerts(2)
    outbox.put(gossip([a]))
    first = await outbox.get()  # the writer took it: a single alert at a low rate
    outbox.put(gossip([b]))
    assert first == gossip([a])
    assert await outbox.get() == gossip([b])


async def test_the_outbox_is_bounded_in_bytes_and_frames() -> None:
    outbox = Outbox(max_bytes=10_000, max_frames=3)
    accepted = sum(outbox.put(gossip([a])) for a in alerts(100, size=600))
    assert accepted < 20  # about 10,000 bytes of alerts, not 100
    assert outbox.queued_bytes <= 10_000
    small = Outbox(max_frames=3)
    assert all(small.put(pe.PruneFrame()) for _ in range(3))
    assert not small.put(pe.PruneFrame())
    await small.get()
    assert small.put(pe.PruneFrame())


# -- the inbox ------------------------------------------------------------------------


def alerts_frame(ids: list[int], catchup: bool = False) -> pb.PeerFrame:
    signed = [alert_pb2.SignedAlert(body=bytes([i]) * 8, signature=b"s") for i in ids]
    return pb.PeerFrame(alerts=pb.Alerts(alerts=signed, catchup=catchup))


async def test_one_ingest_takes_the_alerts_frames_queued_behind_the_first_in_order() -> None:
    inbox = Inbox()
    for frame in (
        alerts_frame([1, 2]),
        alerts_frame([3]),
        alerts_frame([4], catchup=True),
        pb.PeerFrame(prune=pb.Prune()),
        alerts_frame([5]),
        alerts_frame([6, 7, 8]),
        alerts_frame([9]),
        None,
    ):
        await inbox.put(frame)
    seen: list[object] = []
    while (frame := await inbox.get()) is not None:
        if frame.WhichOneof("frame") == "alerts":
            batch = inbox.more_alerts(frame.alerts, max_alerts=4)
            seen.append([a.body[0] for f in batch for a in f.alerts])
        else:
            seen.append(frame.WhichOneof("frame"))
    assert seen == [[1, 2, 3], [4], "prune", [5, 6, 7, 8], [9]]
    assert inbox.stats.ingests == 4 and inbox.stats.alert_frames_read == 6


async def test_a_full_inbox_makes_the_reader_wait() -> None:
    inbox = Inbox(max_frames=2)
    await inbox.put(alerts_frame([1]))
    await inbox.put(alerts_frame([2]))
    third = asyncio.create_task(inbox.put(alerts_frame([3])))
    await asyncio.sleep(0.05)
    assert not third.done() and inbox.qsize() == 2
    await inbox.get()
    await asyncio.wait_for(third, 10)
    assert inbox.qsize() == 2


# -- on real nodes --------------------------------------------------------------------


def draft(i: int) -> api.PublishRequest:
    return api.PublishRequest(
        category=alert_pb2.CATEGORY_SCAM,
        severity=alert_pb2.SEVERITY_MEDIUM,
        title=f"batched {i}",
        indicators=[alert_pb2.Indicator(type=DOMAIN, value=f"batch-{i}.example")],
    )


@pytest.mark.cluster
async def test_a_published_batch_crosses_each_link_in_far_fewer_frames_than_alerts(
    tmp_path: Path,
) -> None:
    n, size = 1000, 200
    async with cluster_running(tmp_path, 3) as nodes:
        async with AlertClient(nodes[0].api) as client:
            await client.publish(draft(-1))  # sessions are open, the tree is settled
            await eventually(lambda: _all_hold(nodes, 1), "the first alert everywhere")
            before = await stats(nodes)
            for start in range(0, n, size):
                response = await client.publish_batch(
                    [draft(i) for i in range(start, start + size)]
                )
                assert not [r.error for r in response.results if r.error]
        await eventually(lambda: _all_hold(nodes, n + 1), "every alert in every store")
        after = await stats(nodes)

    def total(name: str, snaps: list[api.Stats]) -> int:
        return sum(s.counters.get(name, 0) for s in snaps)

    def delta(name: str) -> int:
        return total(name, after) - total(name, before)

    # Two receivers got every alert by gossip (at least once each).
    assert delta("peer_alerts_written") >= 2 * n
    # One frame per alert and link without coalescing; here a few frames per batch.
    assert delta("peer_alert_frames_written") * 10 <= delta("peer_alerts_written")
    # And the receivers verified and stored them in far fewer calls than alerts.
    assert delta("peer_alert_ingests") * 10 <= delta("peer_alerts_written")


async def _all_hold(nodes: list[cluster.ClusterNode], n: int) -> bool:
    return min(await counts(nodes)) >= n


async def test_after_a_prune_the_queued_pushes_leave_the_outbox_other_frames_stay() -> None:
    outbox = Outbox()
    a, b, c = alerts(3)
    outbox.put(gossip([a, b]))
    outbox.put(pe.IdsFrame("graft", (b"z" * 32,)))
    outbox.put(pe.AlertsFrame((c,), catchup=True))
    assert outbox.take_pushes() == [a.id, b.id]
    assert await drain(outbox) == [
        pe.IdsFrame("graft", (b"z" * 32,)),
        pe.AlertsFrame((c,), catchup=True),
    ]
    assert outbox.queued_bytes == 0


def engine_with_one_peer() -> tuple[pe.PeerEngine[str], pe.PeerSession[str], Signed, Signed]:
    """An engine with one session (its link not yet eager) and two alerts: the first
    published already (announced to the lazy peer), the second not yet."""
    engine: pe.PeerEngine[str] = pe.PeerEngine(
        b"\x09" * 32, MemoryStore().chains, Gossip(GossipParams(), random.Random(1))
    )
    s, _ = engine.session_opened("link", b"\x03" * 32, "dialer", 0.0)
    assert s is not None
    one, two = alerts(2)
    engine.published([one.id], 0.0)
    return engine, s, one, two


async def test_after_a_prune_the_alerts_a_peer_asked_for_still_leave_in_full() -> None:
    # M3: the peer GRAFTs (asking for alert 1), then we publish alert 2 (pushed over the
    # link the GRAFT made eager), then it PRUNEs before either left: the push becomes an
    # announcement, but the answer to its request still carries the alert.
    engine, s, one, two = engine_with_one_peer()
    outbox = Outbox()

    def run(actions: list[pe.Action[str]]) -> None:  # the driver's part, store included
        for action in actions:
            if isinstance(action, pe.Push):
                found = [r for r in (one, two) if r.id in action.ids]
                run(engine.push(action.peer, found, action.answer))
            elif isinstance(action, pe.Send):
                for frame in action.frames:
                    assert outbox.put(frame)

    run(engine.on_graft(s, [one.id], 0.1))
    run(engine.published([two.id], 0.2))
    run(engine.on_prune(s, 0.3))
    assert outbox.take_pushes() == [two.id]
    sent = await drain(outbox)
    assert [r.id for f in sent if isinstance(f, pe.AlertsFrame) for r in f.records] == [one.id]


async def test_an_answer_and_a_push_in_one_batch_of_actions_stay_apart() -> None:
    # The node joins a peer's Pushes into one (one frame per batch); the answer to the
    # peer's GRAFT is a Push too, flagged, and is never joined to the published alert's
    # push: after the PRUNE only the push becomes an announcement.
    engine, s, one, two = engine_with_one_peer()
    outbox = Outbox()
    actions = engine.on_graft(s, [one.id], 0.1) + engine.published([two.id], 0.1)
    pushes = [a for a in _pushes_joined(actions) if isinstance(a, pe.Push)]
    assert [(p.ids, p.answer) for p in pushes] == [((one.id,), True), ((two.id,), False)]
    for push in pushes:
        found = [r for r in (one, two) if r.id in push.ids]
        for send in engine.push(push.peer, found, push.answer):
            assert isinstance(send, pe.Send)
            assert all(outbox.put(frame) for frame in send.frames)
    for send in engine.on_prune(s, 0.2):
        assert isinstance(send, pe.Send)
    assert outbox.take_pushes() == [two.id]
    sent = await drain(outbox)
    assert [r.id for f in sent if isinstance(f, pe.AlertsFrame) for r in f.records] == [one.id]


async def test_an_answer_queued_behind_a_push_is_not_joined_to_it() -> None:
    # The other order (found in review): a push waits in the outbox when an answer is
    # queued; joined to the push, the PRUNE would take the answer with it.
    one, two = alerts(2)
    outbox = Outbox()
    assert outbox.put(pe.AlertsFrame((one,)))
    assert outbox.put(pe.AlertsFrame((two,), answer=True))
    assert outbox.take_pushes() == [one.id]
    sent = await drain(outbox)
    assert [r.id for f in sent if isinstance(f, pe.AlertsFrame) for r in f.records] == [two.id]


async def test_the_inbox_is_bounded_by_bytes_as_well_as_frames() -> None:
    # A peer's frames may each be up to 32 MiB: the read-ahead holds at most max_bytes
    # of them (and always one, whatever its size), so one session cannot pin a GiB.
    inbox = Inbox(max_frames=32, max_bytes=1000)
    await inbox.put(alerts_frame([1]), 5000)  # one frame is always taken
    second = asyncio.create_task(inbox.put(alerts_frame([2]), 10))
    await asyncio.sleep(0)
    assert not second.done() and inbox.qsize() == 1
    assert await inbox.get() is not None
    await asyncio.wait_for(second, 1)
    await inbox.put(alerts_frame([3]), 900)
    third = asyncio.create_task(inbox.put(alerts_frame([4]), 200))  # 10 + 900 + 200 > 1000
    await asyncio.sleep(0)
    assert not third.done()
    inbox.drain()
    await asyncio.wait_for(third, 1)
    assert inbox.qsize() == 1
