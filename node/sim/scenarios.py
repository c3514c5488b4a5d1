"""Named scenarios, and running one: a timeline of alerts and disturbances, then checks.

Timeline of every scenario:
- t = 0–2 s: the members' nodes start (in random order) and dial their peers.
- t = 10 s: alerts start, `rate` per second for the whole network (Poisson), each from
  a member chosen at random among the live publishing members.
- During the alerts, as the scenario says: a partition (the Americas cut off from
  the rest of the world) for `partition` seconds, starting half-way through them;
  crashes of a share of honest members (each down 5–30 s, then restarted); new
  members joining; frame loss and reordering.
- After the last alert and the last disturbance: at least `settle` seconds, then
  until every live honest member holds every honest alert, or `max_settle` seconds
  (an invariant violation).

The gossip run and the flooding run of a scenario share the seed, so they see the
same members, graph, latencies, misbehaving members and alert schedule.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from node.core.gossip import GossipParams
from node.sim import hubs
from node.sim.loop import EventLoop
from node.sim.metrics import Summary, summarize
from node.sim.network import NetParams
from node.sim.process import Host
from node.sim.seeds import derive
from node.sim.verify import VerifyCache
from node.sim.world import PUBLISHERS, World, WorldParams

START = 10.0  # first alert
CUT_GRACE, HEAL_GRACE = 5.0, 30.0  # alerts this close to a partition are not "steady"


@dataclass(frozen=True)
class Scenario:
    name: str
    nodes: int = 30
    alerts: int = 200
    rate: float = 5.0  # alerts per second, whole network
    degree: int = 7
    silent: float = 0.0  # share of members that are silent
    hostile: float = 0.0  # share of members that misbehave, in turns of `hostile_mix`
    hostile_mix: tuple[str, ...] = ("forger", "flooder", "equivocator")
    partition: float = 0.0  # seconds the Americas are cut off (0: no partition)
    crashes: float = 0.0  # share of honest members that crash once
    down: tuple[float, float] = (5.0, 30.0)  # seconds a crashed member stays down
    joins: float = 0.0  # members joining during the run, as a share of `nodes`
    loss: float = 0.0  # probability that a frame is lost
    reorder: bool = False  # frames of a session may overtake each other
    encrypted: float = 0.1  # share of alerts encrypted to 4 members and their author
    retracted: float = 0.0  # share of alerts that retract their author's previous alert
    warmup: float = 0.2  # share of the alerts before copies are counted as "steady"
    hubs: int = 8  # members the roster names as tree hubs, ranked (node/sim/hubs.py)
    settle: float = 40.0
    max_settle: float = 400.0
    gossip: GossipParams = field(default_factory=GossipParams)
    note: str = ""

    def sized(self, nodes: int, alerts: int | None = None) -> Scenario:
        return dataclasses.replace(
            self, nodes=nodes, alerts=self.alerts if alerts is None else alerts
        )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("normal", note="every member honest and up"),
        Scenario("partition-heal", partition=60.0, note="the Americas cut off for 60 s"),
        Scenario("silent-10", silent=0.1, note="10% of members silent"),
        Scenario("silent-30", silent=0.3, note="30% of members silent"),
        Scenario(
            "hostile-10",
            hostile=0.1,
            note="10% hostile: forgers, flooders, equivocators in equal parts",
        ),
        Scenario(
            "hostile-30",
            hostile=0.3,
            note="30% hostile: forgers, flooders, equivocators in equal parts",
        ),
        Scenario(
            "churn",
            crashes=0.1,
            joins=0.05,
            loss=0.01,
            reorder=True,
            note="10% crash and restart, 5% join, 1% frame loss, reordering",
        ),
        Scenario("forgers", hostile=0.2, hostile_mix=("forger",), note="20% forgers"),
        Scenario(
            "equivocation", hostile=0.1, hostile_mix=("equivocator",), note="10% equivocators"
        ),
        Scenario(
            "liar-partition",
            hostile=0.1,
            hostile_mix=("liar",),
            partition=60.0,
            max_settle=2400.0,
            note="10% advertise false heads; then a partition",
        ),
    )
}


def run(
    scenario: Scenario,
    seed: int,
    protocol: str = "gossip",
    *,
    verifier: VerifyCache | None = None,
    trace: IO[str] | None = None,
    inspect: Callable[[World], None] | None = None,
) -> Summary:
    """Run one scenario with one protocol; raises InvariantViolation (naming the seed).

    `inspect`, if given, is called with the world at the end, after the final checks.
    """
    params = WorldParams(
        protocol=protocol,
        degree=scenario.degree,
        net=NetParams(loss=scenario.loss, reorder=scenario.reorder),
        gossip=scenario.gossip,
        sealed_share=scenario.encrypted,
        retract_share=scenario.retracted,
    )
    label = f"scenario={scenario.name} nodes={scenario.nodes} protocol={protocol}"
    world = World(seed, params, label=label, verifier=verifier, loop=EventLoop(trace))
    hosts = _populate(world, scenario)
    rng = derive(seed, "timeline")
    for host in hosts:
        world.loop.at(2.0 * rng.random(), world.start, host)

    times: list[float] = []
    t = START
    schedule = derive(seed, "schedule")
    for _ in range(scenario.alerts):
        times.append(t)
        t += schedule.expovariate(scenario.rate)
    picker = derive(seed, "publisher")
    for at in times:
        world.loop.at(at, _publish_one, world, picker)
    last = times[-1] if times else START
    span = last - START

    disturbed: list[tuple[float, float]] = []
    heals: list[float] = []
    restarts: list[tuple[int, float]] = []
    joins: list[tuple[int, float]] = []
    end = last
    if scenario.partition > 0:
        cut_at = START + span / 2
        heal_at = cut_at + scenario.partition
        world.loop.at(cut_at, world.cut, [_americas(world, hosts, rng)])
        world.loop.at(heal_at, world.heal)
        disturbed.append((cut_at - CUT_GRACE, heal_at + HEAL_GRACE))
        heals.append(heal_at)
        end = max(end, heal_at)
    honest = [h for h in hosts if h.honest]
    for host in rng.sample(honest, round(scenario.crashes * len(honest))):
        crash_at = START + span * rng.random()
        back_at = crash_at + rng.uniform(*scenario.down)
        world.loop.at(crash_at, world.crash, host)
        world.loop.at(back_at, world.start, host)
        restarts.append((host.index, back_at))
        end = max(end, back_at)
    join_count = round(scenario.joins * scenario.nodes)
    for join_at in sorted(START + span * rng.random() for _ in range(join_count)):
        world.loop.at(join_at, _join, world, joins)
        end = max(end, join_at)

    world.run_until(end + scenario.settle)
    if not world.run_until_true(world.converged, end + scenario.max_settle):
        missing = _missing_pairs(world)
        world.fail(
            f"not converged {scenario.max_settle:.0f} s after the last disturbance: "
            f"{missing} (alert, member) pairs missing"
        )
    check_final(world)
    if inspect is not None:
        inspect(world)
    return summarize(
        world,
        scenario=scenario.name,
        warmup_until=times[int(scenario.warmup * len(times))] if times else START,
        disturbed=disturbed,
        heals=heals,
        restarts=restarts,
        joins=joins,
    )


def _populate(world: World, scenario: Scenario) -> list[Host]:
    rng = derive(world.seed, "roles")
    n = scenario.nodes
    roles = ["honest"] * n
    chosen = rng.sample(range(n), min(n, round(scenario.silent * n) + round(scenario.hostile * n)))
    silent = round(scenario.silent * n)
    for i, index in enumerate(chosen):
        mix = scenario.hostile_mix
        roles[index] = "silent" if i < silent else mix[(i - silent) % len(mix)]
    hosts = [world.add_host(role, reload_roster=False) for role in roles]
    world.connect_randomly(hosts)
    hop_s = world.gossip_params.tree_hop_ms / 1000
    chosen_hubs = hubs.choose(world.neighbours(), world.net.latency, hop_s, scenario.hubs)
    for rank, index in enumerate(chosen_hubs):
        world.hosts[index].tree_priority = len(chosen_hubs) - rank
    world.reload_roster()
    return hosts


def _publish_one(world: World, picker: random.Random) -> None:
    live = [h for h in world.hosts if h.role in PUBLISHERS and h.up]
    if live:
        world.publish(picker.choice(live))


def _join(world: World, joins: list[tuple[int, float]]) -> None:
    host = world.join()
    joins.append((host.index, world.now))


def _americas(world: World, hosts: list[Host], rng: random.Random) -> list[int]:
    """The members in the Americas; a random third if that leaves either side tiny."""
    side = [h.index for h in hosts if world.net.regions[h.index].endswith("america")]
    if 2 <= len(side) <= len(hosts) - 2:
        return side
    return sorted(rng.sample([h.index for h in hosts], max(1, len(hosts) // 3)))


def _missing_pairs(world: World) -> int:
    target = world.honest_target()
    return sum(
        target - world.record.honest_held[h] for h in world.honest_component() if world.hosts[h].up
    )


def check_final(world: World) -> None:
    """Invariants at the end of a run, with the network healed and quiet."""
    component = world.honest_component()
    live = [h for h in component if world.hosts[h].up]
    rec = world.record
    members = set(component)
    honest_ids = [a.id for a in rec.alerts if a.honest and a.origin in members]
    for h in live:
        store = world.hosts[h].store
        lacking = [i for i in honest_ids if not store.holds(i)]
        if lacking:
            world.fail(f"host {h} lacks {len(lacking)} honest alerts, e.g. {lacking[0].hex()}")
        per_origin: dict[bytes, int] = {}
        for record in store.records():
            per_origin[record.origin] = per_origin.get(record.origin, 0) + 1
        if per_origin != {origin: state.count for origin, state in store.chains.items()}:
            world.fail(f"host {h}: chain state disagrees with the alerts it holds")
    for slot, ids in rec.fork_reached.items():
        if len(ids) < 2:
            continue  # one body never reached an honest member: nothing to detect
        for h in live:
            proofs = {(e.first.origin, e.first.seq) for e in world.hosts[h].store.equivocations}
            if slot not in proofs:
                world.fail(f"host {h} holds no proof of an equivocation whose bodies both spread")
