#!/usr/bin/env python3
"""The README's first command: a local cluster, one alert, seen on every node."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from node import cluster
from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.rpc.client import AlertClient

SAMPLE = api.PublishRequest(
    category=alert_pb2.CATEGORY_PHISHING,
    severity=alert_pb2.SEVERITY_HIGH,
    confidence=90,
    title="Fake token airdrop drains approvals",
    description="Site asks users to 'claim' an airdrop and requests unlimited approval.",
    indicators=[
        alert_pb2.Indicator(type=alert_pb2.INDICATOR_TYPE_DOMAIN, value="claim-airdrop.example"),
        alert_pb2.Indicator(
            type=alert_pb2.INDICATOR_TYPE_ADDRESS,
            value="eip155:1:0x00000000000000000000000000000000DeaDBeef",
        ),
    ],
    tlp=alert_pb2.TLP_GREEN,
)


async def show(nodes: list[cluster.ClusterNode], timeout: float) -> bool:
    clients = [AlertClient(n.api) for n in nodes]
    try:
        published = await clients[0].publish(SAMPLE)
        start = time.monotonic()
        print(f"\npublished on {nodes[0].name}: alert {published.id.hex()}")
        print(f"  {SAMPLE.title!r}, flags claim-airdrop.example and 0x…DeaDBeef\n")
        pending = dict(zip((n.name for n in nodes), clients, strict=True))
        while pending and time.monotonic() - start < timeout:
            for name, client in list(pending.items()):
                reply = await client.check(["https://Claim-Airdrop.example/claim"])
                if reply.any_flagged:
                    match = reply.results[0].matches[0]
                    ms = (time.monotonic() - start) * 1000
                    print(
                        f"  {name}: flagged by {match.origin_name} after {ms:6.0f} ms "
                        f"(check 'https://Claim-Airdrop.example/claim')"
                    )
                    del pending[name]
            await asyncio.sleep(0.02)
        for name in pending:
            print(f"  {name}: NOT received within {timeout:.0f} s")
        return not pending
    finally:
        for client in clients:
            await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--dir", help="cluster directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()
    directory = Path(args.dir or tempfile.mkdtemp(prefix="alertmesh-demo-"))
    print(f"starting {args.nodes} nodes in {directory} …")
    nodes = cluster.up(directory, args.nodes)
    try:
        print("peer sessions: TLS 1.3, each node pinned to the others' certificates (roster.toml)")
        for n in nodes:
            print(f"  {n.name} {n.api}")
        ok = asyncio.run(show(nodes, timeout=30))
        print("\nquery any node, for example:")
        print(f"  alertmesh check --node {nodes[-1].api} 0x{'0' * 32}deadbeef")
        print(f"  alertmesh search --node {nodes[2].api}")
        print(f"  alertmesh stats --node {nodes[1].api}")
        if args.keep:
            print("\nthe cluster keeps running; stop it with:")
            print(f"  alertmesh cluster down --dir {directory}")
            print("(alertmesh is in .venv/bin; run `source .venv/bin/activate` first)")
        return 0 if ok else 1
    finally:
        if not args.keep:
            killed = cluster.down(directory)
            print(f"\nstopped all {len(nodes)} nodes (their data stays in {directory})")
            if killed:
                print(f"(had to kill {', '.join(n.name for n in killed)})")


if __name__ == "__main__":
    sys.exit(main())
