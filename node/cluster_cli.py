"""`alertmesh cluster up | down | status`: local multi-node clusters (node/cluster.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_cluster_up(args: argparse.Namespace) -> int:
    from node import cluster

    nodes = cluster.up(
        Path(args.dir), args.nodes, seed=args.seed, plaintext=args.insecure_plaintext
    )
    for node in nodes:
        print(f"{node.name} {node.api}", flush=True)
    return 0


def cmd_cluster_down(args: argparse.Namespace) -> int:
    from node import cluster

    directory = Path(args.dir)
    killed = cluster.down(directory)
    print(f"stopped {len(cluster.load(directory))} nodes")
    return 1 if killed else 0


def cmd_cluster_status(args: argparse.Namespace) -> int:
    from node import cluster

    for node in cluster.load(Path(args.dir)):
        pid = node.pid()
        print(f"{node.name} {node.api} {'running pid ' + str(pid) if pid else 'stopped'}")
    return 0


def add_cluster_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = sub.add_parser("cluster", help="local multi-node clusters").add_subparsers(
        dest="cluster_command", required=True, metavar="COMMAND"
    )
    p = cluster.add_parser("up", help="create (if needed) and start N local nodes")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--dir", required=True)
    p.add_argument("--seed", type=int, default=1, help="seed of the random peer graph")
    p.add_argument(
        "--insecure-plaintext",
        action="store_true",
        help="a new cluster's peer sessions without TLS (lab comparisons only)",
    )
    p.set_defaults(func=cmd_cluster_up)
    p = cluster.add_parser("down", help="stop every node of the cluster")
    p.add_argument("--dir", required=True)
    p.set_defaults(func=cmd_cluster_down)
    p = cluster.add_parser("status", help="which nodes run")
    p.add_argument("--dir", required=True)
    p.set_defaults(func=cmd_cluster_status)
