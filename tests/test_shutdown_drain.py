"""A node stopping while an ingest's commit waits for the disk finishes that commit and
what follows it before it stops.

One node run in this process (`run_node`, its real SQLite store and gRPC servers). A
second connection holds the database's write lock, as a backup or a slow disk would:
the client's Ingest waits for its commit past the stop's grace and is cancelled, then
the lock goes. What follows the commit here reads the store (the lifecycle looks up the
alert an update changes). Before session 21 all of it was skipped. With SQLite the
store's own close (writer first, then the reader) would also let this follow-up finish,
so the test shows the whole path on a real node, not that `drain` comes before the
close (tests/test_ingest_follow_up.py tests the drain itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path

import grpc
import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.app import runtime
from node.app.config import ROSTER_HEADER, init_home
from node.core.roster import Member, Roster
from node.rpc.client import AlertClient
from tests.factory import DOMAIN, Author


async def test_a_stopping_node_finishes_a_held_commit_and_its_follow_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "SHUTDOWN_GRACE_S", 0.3)  # the test's time, not the store's
    rogue = Author()  # a member whose key the test drives by hand
    config = init_home(
        tmp_path / "beta", name="beta", api_listen="127.0.0.1:0", peer_listen="127.0.0.1:0"
    )
    roster = Roster.of([*config.roster(), Member("rogue", rogue.key)])
    config.roster_path.write_text(ROSTER_HEADER + roster.to_toml())
    ready: asyncio.Future[runtime.Endpoints] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO):
        node = asyncio.create_task(
            runtime.run_node(config, metrics_listen="", on_ready=ready.set_result, stop=stop)
        )
        address = (await asyncio.wait_for(ready, 60)).api
        async with AlertClient(address) as client:
            mine = await client.publish(
                api.PublishRequest(
                    category=alert_pb2.CATEGORY_PHISHING,
                    severity=alert_pb2.SEVERITY_HIGH,
                    title="beta's own alert",
                    indicators=[alert_pb2.Indicator(type=DOMAIN, value="beta-own.example")],
                )
            )
            link = alert_pb2.AlertLink(kind=alert_pb2.LINK_KIND_UPDATE, alert_id=mine.id)
            update = rogue.next(title="an update of another member's alert", links=[link])

            lock = sqlite3.connect(config.home / "alerts.db", isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")  # the node's writer waits for it (5 s at most)
            try:
                ingest = asyncio.create_task(client.ingest([update]))
                await asyncio.sleep(1.0)  # verified (milliseconds), its commit queued
                stop.set()
                with pytest.raises(grpc.aio.AioRpcError):  # the stop's grace ran out
                    await asyncio.wait_for(ingest, 4)
            finally:
                lock.execute("ROLLBACK")
                lock.close()
        await asyncio.wait_for(node, 30)
        messages = [r.getMessage() for r in caplog.records]

    # What follows the commit ran, before the node had stopped.
    refused = [i for i, m in enumerate(messages) if "changes another member's alert" in m]
    assert refused and refused[0] < messages.index("stopped")
    assert not [m for m in messages if "caller had left failed" in m]
    with contextlib.closing(sqlite3.connect(config.home / "alerts.db")) as db:
        [(count,)] = db.execute("SELECT COUNT(*) FROM alerts").fetchall()
    assert count == 2
