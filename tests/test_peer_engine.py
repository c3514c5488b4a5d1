"""One engine, two drivers: the simulator and the asyncio runtime run the same peer logic.

node/core/peer_engine.py decides what a node does with its peer sessions. The
simulator's honest member (node/sim/honest.py) and the real node's PeerManager
(node/app/peers.py) both drive that one class; neither keeps a copy of its decisions,
so a fix to the peer logic is made once and the simulator tests the real thing.
"""

from __future__ import annotations

import ast
import inspect
import random
from pathlib import Path

from node.app.peers import PeerManager
from node.core import peer_engine
from node.core.catchup import CatchupConfig, Range
from node.core.chain import Chains
from node.core.gossip import Gossip
from node.core.gossip_types import GossipParams
from node.core.peer_engine import MAX_INVALID_PER_SESSION, PeerEngine
from node.core.peer_types import Action, Close, PeerSession, RangesFrame, Send, Shortfall
from node.core.roster import Member, Roster
from node.crypto import Identity
from node.sim.honest import HonestNode
from node.sim.process import Process
from node.sim.world import World, WorldParams
from tests.factory import memory_node

ROOT = Path(__file__).resolve().parent.parent
# Each driver's class, and the interface it implements for its own loop (the simulator
# asks every Process for its next deadline, which the honest one asks the engine).
DRIVERS = {
    "node/sim/honest.py": ("HonestNode", set(vars(Process))),
    "node/app/peers.py": ("PeerManager", set()),
    "node/app/peer_session.py": ("SessionRunner", set()),  # the node's per-session tasks
}
# What the engine decides; a driver that handled these itself would be a second copy.
CORE_ACTIONS = {
    "SendAlerts", "SendIHave", "SendIWant", "SendGraft", "SendPrune",  # gossip's
    "SendDigest", "SendVector", "SendRangeRequests", "ServeRanges", "RangeAbandoned",  # catchup's
    "CatchupSession", "FetchRegistry", "parse_vector", "Range",
}  # fmt: skip


def test_a_simulated_member_runs_the_engine_and_its_alert_reaches_the_peer() -> None:
    world = World(1, WorldParams())
    a, b = world.add_host("honest"), world.add_host("honest")
    a.dials.append(b.index)
    world.start(a)
    world.start(b)
    world.run_until(5.0)
    for host, other in ((a, b), (b, a)):
        assert isinstance(host.process, HonestNode)
        assert type(host.process.engine) is PeerEngine
        assert set(host.process.engine.sessions) == {other.key}
    record = world.publish(a)
    assert record is not None
    world.run_until(10.0)
    assert b.store.get(record.id) is not None


async def test_the_real_node_runs_the_same_engine_class() -> None:
    me = Identity.generate()
    roster = Roster.of([Member("me", me.public_key)])
    async with memory_node(me, roster) as node:
        peers = PeerManager(node, connect=())
        assert type(peers.engine) is PeerEngine
        assert peers.gossip is peers.engine.gossip
        assert peers.counters is peers.engine.counters  # the metrics read these


def test_neither_driver_defines_or_mirrors_the_engine_decisions() -> None:
    decisions = {
        name
        for name, _ in inspect.getmembers(PeerEngine, inspect.isfunction)
        if not name.startswith("__")
    }
    assert {"session_opened", "alerts_received", "on_ihave", "handle_timer", "serve"} <= decisions
    for path, (class_name, interface) in DRIVERS.items():
        tree = ast.parse((ROOT / path).read_text())
        [driver] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
        defined = {
            n.name for n in driver.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        mirrored = (defined - interface) & decisions
        assert not mirrored, f"{path} defines {sorted(mirrored)}"
        # Nor does it consume the gossip or catch-up cores' actions itself.
        used = {n.attr for n in ast.walk(driver) if isinstance(n, ast.Attribute)}
        used |= {n.id for n in ast.walk(driver) if isinstance(n, ast.Name)}
        assert not used & CORE_ACTIONS, f"{path} uses {sorted(used & CORE_ACTIONS)}"


def test_the_engine_is_sans_io() -> None:
    source = inspect.getsource(peer_engine)
    for module in ("asyncio", "grpc", "time", "socket", "sqlite3", "aiosqlite", "node.app"):
        assert f"import {module}" not in source
        assert f"from {module} " not in source


# --- ranges released unserved are asked of the other peers at once (catch-up rule 5) --

P, Q = bytes([0x50]) * 32, bytes([0x51]) * 32
ORIGIN = bytes([0x0F]) * 32


def two_sessions(
    chains: Chains | None = None,
) -> tuple[PeerEngine[str], PeerSession[str], PeerSession[str]]:
    """An engine (over `chains`) whose sessions with P and Q both offer ORIGIN 1..10;
    P's vector came first, so P holds both ranges in flight (K = 2) and Q is asked for
    nothing."""
    config = CatchupConfig(max_per_range=5, max_outstanding=2, request_timeout=10.0)
    gossip = Gossip(GossipParams(), random.Random(1))
    engine: PeerEngine[str] = PeerEngine(bytes(32), chains or Chains(), gossip, config=config)
    p, _ = engine.session_opened("p", P, "acceptor", 0.0)
    q, _ = engine.session_opened("q", Q, "acceptor", 0.0)
    assert p is not None and q is not None
    assert requested(engine.on_vector(p, [(ORIGIN, 10)], True, 0.0), p) == [
        Range(ORIGIN, 1, 5),
        Range(ORIGIN, 6, 10),
    ]
    assert requested(engine.on_vector(q, [(ORIGIN, 10)], True, 0.5), q) == []
    return engine, p, q


def requested(actions: list[Action[str]], session: PeerSession[str]) -> list[Range]:
    return [
        r
        for a in actions
        if isinstance(a, Send) and a.session is session
        for f in a.frames
        if isinstance(f, RangesFrame)
        for r in f.ranges
    ]


def test_ranges_of_a_session_that_ends_are_asked_of_another_peer_at_once() -> None:
    # P goes down mid-fetch: Q is asked for its ranges now, not at Q's next round (up
    # to catch-up's interval, 30 s, later; a restarted member waited that long).
    engine, p, q = two_sessions()
    actions = engine.session_closed(p, 1.0)
    assert requested(actions, q) == [Range(ORIGIN, 1, 5), Range(ORIGIN, 6, 10)]
    assert requested(actions, p) == []


def test_ranges_a_peer_left_unserved_are_asked_of_another_peer_when_abandoned() -> None:
    # P stays up but serves nothing: at request_timeout its ranges are abandoned, and
    # in the same timer Q is asked for them.
    engine, p, q = two_sessions()
    assert engine.next_deadline() == 10.0
    actions = engine.handle_timer(10.0)
    assert [a.missing for a in actions if isinstance(a, Shortfall)] == [5, 5]
    assert requested(actions, q) == [Range(ORIGIN, 1, 5), Range(ORIGIN, 6, 10)]
    assert requested(actions, p) == []  # its head is capped at what it served: nothing


def test_ranges_of_a_replaced_session_are_asked_of_another_peer_at_once() -> None:
    # P dials us while its old session still stands (both sides dialed): the old one
    # is told to close, and the new one has sent no vector yet, so Q is asked, as the
    # old one is replaced (not when the driver reports it closed, later).
    engine, p, q = two_sessions()
    p2, actions = engine.session_opened("p2", P, "dialer", 1.0)
    assert p2 is not None and any(isinstance(a, Close) and a.session is p for a in actions)
    assert requested(actions, q) == [Range(ORIGIN, 1, 5), Range(ORIGIN, 6, 10)]
    assert requested(actions, p2) == []
    assert engine.next_deadline() == 11.0  # Q's requests' timeout; the old session's is gone
    engine.session_closed(p, 1.5)
    assert_claimed_by_q_alone(engine)


def test_a_session_told_to_close_releases_its_ranges_and_plans_nothing_more() -> None:
    # P sent too many invalid alerts: the engine tells the driver to close it. Its
    # claimed ranges go to Q in the same call, and the frames P's session may still
    # handle before the driver reports it closed claim nothing again.
    engine, p, q = two_sessions()
    actions = engine.alerts_received(p, [], MAX_INVALID_PER_SESSION, False, 1.0, 0)
    assert any(isinstance(a, Close) and a.session is p for a in actions)
    assert requested(actions, q) == [Range(ORIGIN, 1, 5), Range(ORIGIN, 6, 10)]
    assert engine.on_vector(p, [(ORIGIN, 20)], False, 1.2) == []  # no answer, no request
    assert sorted(engine.fetches.claimed(ORIGIN)) == [(1, 5), (6, 10)]  # Q's, not P's
    engine.session_closed(p, 1.5)
    assert_claimed_by_q_alone(engine)


def assert_claimed_by_q_alone(engine: PeerEngine[str]) -> None:
    """Q's requests still hold ORIGIN 1..10 once P's session is reported closed (a second
    release of P's old ranges would have freed Q's equal claims): a new session whose
    peer offers the same is asked for nothing."""
    assert sorted(engine.fetches.claimed(ORIGIN)) == [(1, 5), (6, 10)]
    r, _ = engine.session_opened("r", bytes([0x52]) * 32, "acceptor", 2.0)
    assert r is not None
    assert requested(engine.on_vector(r, [(ORIGIN, 10)], True, 2.0), r) == []


def test_ranges_whose_alerts_came_another_way_free_nothing() -> None:
    # The tree brought P's alerts while P sat on the requests: at the timeout nothing
    # is missing, so there is nothing to ask anyone for.
    chains = Chains()
    engine, _, q = two_sessions(chains)
    for seq in range(1, 11):
        chains.add(ORIGIN, seq)
    actions = engine.handle_timer(10.0)
    assert not [a for a in actions if isinstance(a, Shortfall)]
    assert requested(actions, q) == []
    assert engine.fetches.take_freed() == set()
