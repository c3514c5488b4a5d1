"""A session's reader counts the alerts it reads ahead as arriving, and a session that
ends leaves nothing counted: an id left "arriving" would make every later IHAVE for it
look answered, and the alert would never be repaired from another peer."""

from __future__ import annotations

import asyncio

from node._pb.alertmesh.v1 import peer_service_pb2 as pb
from node.app.peer_frames import Inbox
from node.app.peer_session import Link, SessionRunner
from node.app.peers import PeerManager
from node.core.alerts import alert_id
from node.core.roster import Member, Roster
from node.crypto import Identity
from tests.factory import Author, memory_node


class StreamOf:
    """A peer's stream, as the session reads it: frames fed in by the test."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[pb.PeerFrame | None] = asyncio.Queue()
        self.written: list[pb.PeerFrame] = []

    async def read(self) -> pb.PeerFrame | None:
        return await self.frames.get()

    async def write(self, frame: pb.PeerFrame) -> None:
        self.written.append(frame)


async def test_alerts_read_ahead_are_no_longer_arriving_once_the_session_ends() -> None:
    me, peer = Identity.generate(), Author()
    roster = Roster.of([Member("me", me.public_key), Member("peer", peer.key)])
    async with memory_node(me, roster) as node:
        peers = PeerManager(node, connect=())
        stream = StreamOf()
        # An inbox of one frame, and no handler taking from it: the second frame read
        # waits for room, as it does behind a slow ingest.
        link = Link(peer.key, "peer", "acceptor", stream, inbox=Inbox(max_frames=1))
        runner = SessionRunner(peers, link)
        frames = [pb.Alerts(alerts=[peer.next(), peer.next()]) for _ in range(2)]
        for alerts in frames:
            await stream.frames.put(pb.PeerFrame(alerts=alerts))
        reader = asyncio.create_task(runner.receive())
        ids = [alert_id(a.body) for alerts in frames for a in alerts.alerts]
        for _ in range(200):
            if stream.frames.empty() and link.inbox.qsize() == 1:
                break
            await asyncio.sleep(0.005)
        assert link.inbox.qsize() == 1  # the first frame queued, the second waiting
        assert all(i in peers.arrivals for i in ids)  # both count as arriving

        # The session ends while the reader waits for room in the full inbox.
        link.closed.set()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        runner.forget_unhandled()

        assert len(peers.arrivals) == 0, "an alert never handled still counts as arriving"
