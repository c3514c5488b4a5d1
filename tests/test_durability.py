"""Stopping a node (cleanly or not) loses no acknowledged alert; a restart keeps everything."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.rpc.client import AlertClient
from tests.procs import NodeProcess, alertmesh


async def publish_until_stopped(node: NodeProcess, sig: int) -> tuple[list[bytes], int]:
    """Publish from 8 concurrent clients, stop the node with `sig` mid-stream."""
    acked: list[bytes] = []
    enough = asyncio.Event()
    async with AlertClient(node.address) as client:

        async def publisher(k: int) -> None:
            for i in range(500):
                request = api.PublishRequest(
                    category=alert_pb2.CATEGORY_SCAM,
                    title=f"client {k} alert {i}",
                    indicators=[alert_pb2.Indicator(type=3, value=f"c{k}-{i}.example")],
                )
                try:
                    acked.append((await client.publish(request, timeout=10)).id)
                    if len(acked) >= 200:
                        enough.set()
                except grpc.aio.AioRpcError:
                    return  # the node went away: this one was not acknowledged

        tasks = [asyncio.create_task(publisher(k)) for k in range(8)]
        async with asyncio.timeout(60):
            await enough.wait()
        status = await asyncio.to_thread(node.stop, sig)
        await asyncio.gather(*tasks)
    return acked, status


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_no_acknowledged_alert_is_lost(tmp_path: Path, sig: int) -> None:
    alertmesh("init", "--home", str(tmp_path), "--name", "durable")
    node = NodeProcess(tmp_path).start()
    try:
        acked, status = await publish_until_stopped(node, sig)
        assert len(acked) >= 200
        if sig == signal.SIGTERM:
            assert status == 0, "a clean shutdown exits 0"
            assert "stopped" in (tmp_path / "node.log").read_text()
        node.start()
        async with AlertClient(node.address) as client:
            for alert_id in acked:
                await client.get(alert_id)  # raises NOT_FOUND if lost
            stats = await client.stats()
            [own] = stats.origins
            assert own.contiguous_seq == own.max_seq == stats.alerts >= len(acked)
            more = await client.publish(
                api.PublishRequest(category=alert_pb2.CATEGORY_SCAM, title="after restart")
            )
            assert more.alert.alert.seq == own.max_seq + 1
    finally:
        node.kill()
