"""`alertmesh stats | roster-reload | peer-block | peer-unblock`: what a running node
holds and whom it talks to, and the operator's levers on it."""

from __future__ import annotations

import argparse
import json

from node.cli_args import ClientCommand
from node.lifecycle_cli import iso_time
from node.rpc.client import AlertClient


async def cmd_stats(client: AlertClient, args: argparse.Namespace) -> int:
    st = await client.stats()
    if args.json:
        print(
            json.dumps(
                {
                    "node": st.node_name,
                    "key": st.node_key.hex(),
                    "alerts": st.alerts,
                    "digest": st.digest,
                    "equivocations": st.equivocations,
                    "origins": [
                        {
                            "origin": o.origin.hex(),
                            "name": o.name,
                            "alerts": o.alerts,
                            "contiguous_seq": o.contiguous_seq,
                            "max_seq": o.max_seq,
                            "equivocated": o.equivocated,
                        }
                        for o in st.origins
                    ],
                    "peers": [
                        {
                            "name": p.name,
                            "connected": p.connected,
                            "blocked": p.blocked,
                            "eager": p.eager,
                            "full_received": p.full_received,
                            "duplicates_received": p.duplicates_received,
                            "invalid_received": p.invalid_received,
                            "full_sent": p.full_sent,
                            "ihave_sent": p.ihave_sent,
                        }
                        for p in st.peers
                    ],
                    "counters": dict(st.counters),
                    "compromised": [
                        {
                            "id": c.id.hex(),
                            "origin": c.origin.hex(),
                            "name": c.name,
                            "seq": c.seq,
                            "created_at": iso_time(c.created_at_ms),
                            "reason": c.reason,
                        }
                        for c in st.compromised
                    ],
                    "compromised_total": st.compromised_total,
                }
            )
        )
        return 0
    print(f"node          {st.node_name} ({st.node_key.hex()[:16]}…)")
    print(f"alerts        {st.alerts}")
    print(f"digest        {st.digest}")
    print(f"equivocations {st.equivocations}")
    for o in st.origins:
        flag = "  EQUIVOCATED" if o.equivocated else ""
        print(f"origin        {o.name or o.origin.hex()[:16]}: {o.alerts} alerts, "
              f"contiguous to #{o.contiguous_seq}{flag}")  # fmt: skip
    if st.compromised_total:
        print(f"compromised   {st.compromised_total} held alerts the roster now refuses "
              "(not reported by check):")  # fmt: skip
    for c in st.compromised:
        print(f"  {c.id.hex()} {c.name} #{c.seq}: {c.reason}")
    for p in st.peers:
        state = ("eager" if p.eager else "lazy") if p.connected else "down"
        state += " (blocked)" if p.blocked else ""
        print(f"peer          {p.name} {p.address} {state}: {p.full_received} received "
              f"({p.duplicates_received} duplicate, {p.invalid_received} invalid)")  # fmt: skip
    for name, value in sorted(st.counters.items()):
        print(f"counter       {name} = {value}")
    return 0


async def cmd_roster_reload(client: AlertClient, args: argparse.Namespace) -> int:
    response = await client.reload_roster()
    print(f"roster reloaded: {response.members} members")
    return 0


async def cmd_peer_block(client: AlertClient, args: argparse.Namespace) -> int:
    response = await client.set_peer_blocked(args.name, args.command == "peer-block")
    print(f"blocked: {', '.join(response.blocked) or 'none'}")
    return 0


def add_operate_commands(client_command: ClientCommand) -> None:
    p = client_command("stats", "counts, digest, peers", cmd_stats)
    p.add_argument("--json", action="store_true")

    client_command("roster-reload", "re-read the roster file (like SIGHUP)", cmd_roster_reload)
    p = client_command("peer-block", "cut a member's node off until unblocked", cmd_peer_block)
    p.add_argument("name", help="the member's roster name")
    p = client_command("peer-unblock", "let a blocked member's node back", cmd_peer_block)
    p.add_argument("name", help="the member's roster name")
