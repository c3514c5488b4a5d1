"""What a run measures, and the summary it reports.

Definitions (docs/simulation.md repeats them next to the results):
- Receivers of an alert: the honest members of the honest component (the honest
  hosts that can reach one another through honest hosts), other than its origin.
  Only alerts from members of the component count: a member cut off by silent peers
  can neither send nor receive (`cut_off` says how many there were).
- Stable receivers: those that never crashed and were there from the start. Coverage
  time and hops are measured over them, for *steady* alerts: honest alerts
  published after the warm-up and not near a partition (from 5 s before the cut
  until 30 s after it heals).
- Delivery: held (alert, receiver) pairs over expected pairs at the end of the run,
  over every honest alert and every live receiver.
- Coverage time: from publication until the last stable receiver stores it.
- Hops: how many sessions the first copy a receiver stored crossed (1 = from the
  origin itself); hops to full coverage is the largest over the stable receivers.
- Copies: full copies of an alert received by honest members in gossip frames
  (pushes and answers to GRAFT/IWANT, duplicates included), per alert per receiver;
  catch-up copies are counted apart.
- Bytes: everything honest members sent (frames, gRPC/HTTP2 framing, handshakes,
  catch-up, proofs), per honest alert per honest member.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from node.core.alerts import AlertRecord
from node.core.index_keys import LINK_KEY_PREFIX
from node.sim.wire import TRAFFIC_CLASSES

if TYPE_CHECKING:
    from node.sim.world import World

DISSEMINATION = ("alerts", "ihave", "graft/iwant/prune", "tree")


@dataclass(frozen=True, slots=True)
class Published:
    id: bytes
    origin: int
    seq: int
    at: float
    honest: bool
    retraction: bool = False  # retracts its author's previous alert (docs/lifecycle.md)


class Recorder:
    """Counters kept while a run goes on (honest members only)."""

    def __init__(self) -> None:
        self.alerts: list[Published] = []
        self.genuine: dict[bytes, int] = {}  # id of every alert a member signed -> origin
        self.forks: dict[tuple[bytes, int], tuple[bytes, bytes]] = {}  # equivocations made
        self.fork_reached: dict[tuple[bytes, int], dict[bytes, None]] = {}
        self.roles: list[str] = []
        self.published_by: list[int] = []  # per host: honest alerts it published
        self.honest_held: list[int] = []  # per host: honest alerts its store holds
        self.copies_gossip: dict[bytes, int] = {}
        self.copies_catchup: dict[bytes, int] = {}
        self.bytes: dict[str, int] = dict.fromkeys(TRAFFIC_CLASSES, 0)
        self.frames: dict[str, int] = dict.fromkeys(TRAFFIC_CLASSES, 0)
        self.invalid_by_error: dict[str, int] = {}

    def add_host(self, role: str) -> None:
        self.roles.append(role)
        self.honest_held.append(0)
        self.published_by.append(0)

    def published(self, record: AlertRecord, host: int, role: str, now: float) -> None:
        honest = role == "honest"
        self.genuine[record.id] = host
        retraction = any(k.startswith(LINK_KEY_PREFIX) for k in record.index_keys)
        self.alerts.append(Published(record.id, host, record.seq, now, honest, retraction))
        self.published_by[host] += honest

    def equivocated(self, first: AlertRecord, second: AlertRecord) -> None:
        slot = (first.origin, first.seq)
        self.forks[slot] = (first.id, second.id)
        self.fork_reached[slot] = {}

    def stored(self, host: int, record: AlertRecord, *, second_copy: bool) -> None:
        reached = self.fork_reached.get((record.origin, record.seq))
        if reached is not None:
            reached[record.id] = None
        if not second_copy and self.roles[self.genuine[record.id]] == "honest":
            self.honest_held[host] += 1

    def copy(self, alert_id: bytes, *, catchup: bool) -> None:
        counts = self.copies_catchup if catchup else self.copies_gossip
        counts[alert_id] = counts.get(alert_id, 0) + 1

    def sent(self, traffic: str, size: int) -> None:
        self.bytes[traffic] += size
        self.frames[traffic] += 1

    def invalid(self, error: str) -> None:
        self.invalid_by_error[error] = self.invalid_by_error.get(error, 0) + 1


@dataclass
class Summary:
    scenario: str
    protocol: str
    seed: int
    nodes: int  # members at the start
    receivers: int  # honest component at the end
    cut_off: int  # honest members with no honest path to the others
    alerts: int  # honest alerts published
    delivery: float
    coverage_p50: float
    coverage_p99: float
    latency_mean: float
    latency_p50: float
    latency_p99: float
    hops_p50: float  # hops to full coverage
    hops_p99: float
    hops_max: int
    hops_mean: float  # mean hops of a (alert, receiver) pair
    copies: float  # gossip copies per alert per receiver, steady alerts
    copies_all: float  # same, every honest alert
    copies_catchup: float  # catch-up copies per alert per receiver, every honest alert
    bytes_per_alert: float  # per honest alert per honest member, everything sent
    dissemination_bytes: float  # alerts + ihave + graft/iwant/prune only
    bytes_by_class: dict[str, float]
    catchup_after_heal: float | None  # seconds from heal until every pair is held
    restart_catchup: float | None  # slowest restarted member to hold what it missed
    join_catchup: float | None  # slowest joined member to hold everything before it
    equivocations: int  # equivocations both of whose bodies reached honest members
    equivocations_detected: int  # of those, how many every live receiver holds a proof of
    invalid_dropped: int
    events: int
    sim_seconds: float
    digest: str
    # From a retraction's publication until no stable honest node flags the value any more
    # (each holds the retraction: the verdict drops the alert from then on); NaN: none.
    retractions: int = 0
    # None when no retraction was published (nan would make equal summaries unequal)
    retraction_clear_p50: float | None = None
    retraction_clear_p99: float | None = None
    coverage_curve: list[tuple[float, float]] = field(default_factory=list)
    copies_by_alert: list[float] = field(default_factory=list)
    heal_curve: list[tuple[float, float]] = field(default_factory=list)  # (s after heal, missing)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile of a non-empty list; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def summarize(
    world: World,
    *,
    scenario: str,
    warmup_until: float,
    disturbed: list[tuple[float, float]],
    heals: list[float],
    restarts: list[tuple[int, float]],
    joins: list[tuple[int, float]],
) -> Summary:
    rec = world.record
    component = world.honest_component()
    in_component = set(component)
    live = [h for h in component if world.hosts[h].up]
    stable = [h for h in component if not world.hosts[h].crashes and world.hosts[h].joined_at == 0]
    # An honest member with no honest path to the others can neither send nor receive.
    honest_alerts = [a for a in rec.alerts if a.honest and a.origin in in_component]
    steady = [
        a
        for a in honest_alerts
        if a.at >= warmup_until and not any(lo <= a.at <= hi for lo, hi in disturbed)
    ]
    stores = [world.hosts[h].store for h in range(len(world.hosts))]

    held = sum(1 for a in honest_alerts for h in live if h != a.origin and stores[h].holds(a.id))
    expected = sum(len(live) - (a.origin in live) for a in honest_alerts)

    coverage: list[float] = []
    cleared: list[float] = []  # the same for the steady retractions
    hops_full: list[float] = []
    latencies: list[float] = []
    hops: list[int] = []
    for a in steady:
        worst, deepest = 0.0, 0
        for h in stable:
            if h == a.origin:
                continue
            arrival = stores[h].arrivals.get(a.id)
            if arrival is None:
                worst = float("inf")
                continue
            lat = arrival.at - a.at
            latencies.append(lat)
            hops.append(arrival.hops)
            worst, deepest = max(worst, lat), max(deepest, arrival.hops)
        coverage.append(worst)
        if a.retraction:
            cleared.append(worst)
        hops_full.append(deepest)

    receivers = len(component)

    def per_receiver(alerts: list[Published], counts: dict[bytes, int]) -> float:
        pairs = sum(receivers - (a.origin in component) for a in alerts)
        return sum(counts.get(a.id, 0) for a in alerts) / pairs if pairs else float("nan")

    honest_members = sum(1 for h in world.hosts if h.honest)
    norm = max(len(honest_alerts) * honest_members, 1)
    by_class = {k: v / norm for k, v in rec.bytes.items()}

    def last_arrival_after(t0: float, hosts: list[int], before: float) -> float:
        lag = 0.0
        for a in honest_alerts:
            if a.at >= before:
                continue
            for h in hosts:
                arrival = stores[h].arrivals.get(a.id)
                lag = max(lag, (arrival.at if arrival else float("inf")) - t0)
        return lag

    heal_lag = max((last_arrival_after(t, live, t) for t in heals), default=None)
    heal_curve: list[tuple[float, float]] = []
    if heals:
        # Share of the (alert published before the heal, receiver) pairs still missing.
        heal = heals[0]
        before = [a for a in honest_alerts if a.at < heal]
        pairs = sum(len(live) - (a.origin in live) for a in before)
        lags = sorted(
            arrival.at - heal
            for a in before
            for h in live
            if h != a.origin
            and (arrival := stores[h].arrivals.get(a.id)) is not None
            and arrival.at > heal
        )
        heal_curve = [(0.0, len(lags) / max(pairs, 1))]
        heal_curve += [(lag, (len(lags) - i - 1) / max(pairs, 1)) for i, lag in enumerate(lags)]
        heal_curve = heal_curve[:: max(1, len(heal_curve) // 400)] + heal_curve[-1:]
    restart_lag = max((last_arrival_after(t, [h], t) for h, t in restarts), default=None)
    join_lag = max((last_arrival_after(t, [h], t) for h, t in joins), default=None)

    reached = [slot for slot, ids in rec.fork_reached.items() if len(ids) == 2]
    detected = 0
    for slot in reached:
        if all(
            any((e.first.origin, e.first.seq) == slot for e in stores[h].equivocations)
            for h in live
        ):
            detected += 1

    curve_points = sorted(latencies)
    step = max(1, len(curve_points) // 400)
    curve = [
        (curve_points[i], (i + 1) / len(curve_points)) for i in range(0, len(curve_points), step)
    ]
    per_alert = [
        rec.copies_gossip.get(a.id, 0) / max(receivers - (a.origin in component), 1)
        for a in honest_alerts
    ]
    return Summary(
        scenario=scenario,
        protocol=world.params.protocol,
        seed=world.seed,
        nodes=sum(1 for h in world.hosts if h.joined_at == 0),
        receivers=receivers,
        cut_off=sum(1 for h in world.hosts if h.honest) - receivers,
        alerts=len(honest_alerts),
        delivery=held / expected if expected else float("nan"),
        coverage_p50=quantile(coverage, 0.5),
        coverage_p99=quantile(coverage, 0.99),
        latency_mean=statistics.fmean(latencies) if latencies else float("nan"),
        latency_p50=quantile(latencies, 0.5),
        latency_p99=quantile(latencies, 0.99),
        hops_p50=quantile(hops_full, 0.5),
        hops_p99=quantile(hops_full, 0.99),
        hops_max=int(max(hops_full, default=0)),
        hops_mean=statistics.fmean(hops) if hops else float("nan"),
        copies=per_receiver(steady, rec.copies_gossip),
        copies_all=per_receiver(honest_alerts, rec.copies_gossip),
        copies_catchup=per_receiver(honest_alerts, rec.copies_catchup),
        bytes_per_alert=sum(by_class.values()),
        dissemination_bytes=sum(by_class[k] for k in DISSEMINATION),
        bytes_by_class=by_class,
        catchup_after_heal=heal_lag,
        restart_catchup=restart_lag,
        join_catchup=join_lag,
        equivocations=len(reached),
        equivocations_detected=detected,
        invalid_dropped=sum(rec.invalid_by_error.values()),
        events=world.loop.events,
        sim_seconds=world.now,
        digest=world.loop.digest(),
        retractions=sum(1 for a in honest_alerts if a.retraction),
        retraction_clear_p50=quantile(cleared, 0.5) if cleared else None,
        retraction_clear_p99=quantile(cleared, 0.99) if cleared else None,
        coverage_curve=curve,
        copies_by_alert=per_alert,
        heal_curve=heal_curve,
    )
