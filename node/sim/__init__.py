"""A seeded discrete-event simulator that runs the real protocol cores at scale.

Every simulated member runs the same `node.core` objects as a real node (`Gossip`, one
`CatchupSession` per peer session, a shared `FetchRegistry`, `Chains`), wired the way
node/app/peers.py wires them, over a virtual clock and a virtual network instead of
asyncio and gRPC. docs/simulation.md describes the model, the invariants and the results.

Modules, inside out:
- `seeds`: one seed, a tree of independent generators derived from it.
- `wire`: PeerFrames as the simulator moves them, with their exact encoded sizes.
- `store`, `verify`: a synchronous MemoryStore and the real alert checks, memoised.
- `workload`: member identities and real signed alerts.
- `loop`, `network`: the event loop (virtual clock, trace digest) and the links
  (latency, bandwidth, loss, reordering, partitions).
- `process`, `honest`, `adversary`: what runs on a member's host.
- `world`: hosts, sessions (dial, handshake, keepalive), crashes, joins, invariants.
- `metrics`, `scenarios`, `hubs`: what is measured, the named scenarios, and the tree
  hubs their rosters name.
- `report`, `cli`: the benchmark matrix, docs/simulation.md and its plots.
"""
