"""The simulated deployment: hosts, their sessions, and what happens to them.

Sessions (node/sim/sessions.py) follow the real node's life cycle (node/app/peers.py,
node/rpc/peer_transport.py):
- A host dials the peers on its connect list. The handshake is three frames (Hello,
  Challenge, Auth) over the virtual network; the dialer's side opens when it sends
  Auth, the acceptor's when Auth arrives. A handshake not done in 10 s fails.
- A dial to a host that is down is refused after one round trip. After any session
  ends or fails, the dialer waits backoff × U(0.5, 1.5) and dials again; backoff
  doubles from 0.2 s to 10 s and resets after a session that lasted 10 s.
- When one side ends a session (a crash, a protocol error, too much junk) the other
  side notices one latency later. Across a partition nothing gets through: each
  side notices by keepalive, 5–15 s after the cut (ping every 10 s, 5 s timeout).
- A crash loses the process (its Gossip, catch-up sessions, registry, timers) and
  keeps the store. A restart builds a new process over that store, as a real restart
  does. Frames that had not left the uplink when the host crashed are never sent.
- A join adds a member to every roster at once (a roster reload everywhere), then
  starts its node with an empty store; it dials `degree` existing members.

The world also holds the invariants' ground truth (which alert ids members signed)
and raises `InvariantViolation`, with the seed, the moment one breaks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from node.core.alerts import AlertRecord
from node.core.catchup import CatchupConfig
from node.core.errors import AlertmeshError
from node.core.gossip import Gossip, GossipParams
from node.core.limits import DEFAULT_LIMITS, Limits
from node.core.roster import Member, Roster
from node.sim import adversary
from node.sim.honest import Flood, HonestNode
from node.sim.loop import EventLoop
from node.sim.metrics import Recorder
from node.sim.network import NetParams, Network
from node.sim.process import ACCEPTOR, DIALER, Host, Process
from node.sim.seeds import derive
from node.sim.sessions import T_CRASH, T_PUBLISH, T_START, Sessions
from node.sim.store import SimStore
from node.sim.verify import VerifyCache
from node.sim.workload import Author, identity

PUBLISHERS = ("honest", "equivocator")  # roles whose members publish alerts


class InvariantViolation(AssertionError):
    """A protocol invariant broke. The message names the seed that reproduces it."""


@dataclass(frozen=True)
class WorldParams:
    protocol: str = "gossip"  # or "flood": the baseline
    degree: int = 7
    net: NetParams = field(default_factory=NetParams)
    gossip: GossipParams = field(default_factory=GossipParams)
    catchup: CatchupConfig = field(default_factory=CatchupConfig)
    limits: Limits = DEFAULT_LIMITS
    sealed_share: float = 0.0  # share of alerts encrypted to a few members (publish --to)
    retract_share: float = 0.0  # share of alerts that retract their author's previous one


class World(Sessions):
    def __init__(
        self,
        seed: int,
        params: WorldParams,
        *,
        label: str = "",
        verifier: VerifyCache | None = None,
        loop: EventLoop | None = None,
    ) -> None:
        super().__init__(loop or EventLoop(), Network(params.net, seed), Recorder())
        self.seed = seed
        self.params = params
        self.label = label
        self.verifier = verifier or VerifyCache(params.limits)
        self.limits = params.limits
        self.gossip_params = params.gossip
        self.catchup_config = params.catchup
        self._roster = Roster()
        self._component: tuple[int, list[int]] | None = None

    # -- Env ---------------------------------------------------------------------------

    @property
    def roster(self) -> Roster:
        return self._roster

    def published(self, host: int, record: AlertRecord) -> None:
        self.record.published(record, host, self.hosts[host].role, self.now)

    def equivocated(self, host: int, first: AlertRecord, second: AlertRecord) -> None:
        self.record.equivocated(first, second)

    def stored(self, host: int, record: AlertRecord, *, second_copy: bool) -> None:
        if not self.hosts[host].honest:
            return
        origin = self.record.genuine.get(record.id)
        if origin is None:
            self.fail(f"honest host {host} stored an alert no member signed: {record.id.hex()}")
        if second_copy and (record.origin, record.seq) not in self.record.forks:
            self.fail(f"honest host {host} holds two bodies for an honest origin's seq")
        self.record.stored(host, record, second_copy=second_copy)

    def copy_received(self, host: int, record: AlertRecord, *, catchup: bool) -> None:
        if self.hosts[host].honest:
            self.record.copy(record.id, catchup=catchup)

    def invalid_received(self, host: int, peer: int, error: AlertmeshError) -> None:
        if self.hosts[host].honest:
            self.record.invalid(type(error).__name__)

    def fail(self, message: str) -> None:
        raise InvariantViolation(
            f"seed={self.seed} {self.label} t={self.now:.3f}s: {message}".replace("  ", " ")
        )

    # -- building ----------------------------------------------------------------------

    def add_host(self, role: str, *, reload_roster: bool = True) -> Host:
        index = len(self.hosts)
        ident = identity(self.seed, index)
        host = Host(
            index=index,
            identity=ident,
            role=role,
            store=SimStore(),
            author=Author(
                self.seed,
                index,
                ident,
                self.limits,
                sealed_share=self.params.sealed_share,
                retract_share=self.params.retract_share,
                members=lambda: [h.key for h in self.hosts],
            ),
            joined_at=self.now,
        )
        self.hosts.append(host)
        self.net.add_host(index)
        self.record.add_host(role)
        if reload_roster:
            self.reload_roster()
        return host

    def reload_roster(self) -> None:
        """Every host's roster lists every member (a roster reload everywhere)."""
        self._roster = Roster.of(
            [
                Member(f"member-{h.index:05d}", h.key, tree_priority=h.tree_priority)
                for h in self.hosts
            ]
        )

    def connect_randomly(self, hosts: list[Host]) -> None:
        """A random connected graph of mean degree ~`degree`: a ring plus random pairs."""
        rng = derive(self.seed, "graph")
        n = len(hosts)
        order = [h.index for h in hosts]
        rng.shuffle(order)
        edges: dict[tuple[int, int], None] = {}
        if n > 1:
            for i in range(n):
                a, b = order[i], order[(i + 1) % n]
                if a != b:
                    edges[(min(a, b), max(a, b))] = None
            stubs = [h for h in order for _ in range(max(self.params.degree - 2, 0))]
            rng.shuffle(stubs)
            for a, b in zip(stubs[::2], stubs[1::2], strict=False):
                if a != b:
                    edges[(min(a, b), max(a, b))] = None
        for a, b in edges:
            dialer, acceptor = (a, b) if rng.random() < 0.5 else (b, a)
            self.hosts[dialer].dials.append(acceptor)

    def neighbours(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {h.index: [] for h in self.hosts}
        for h in self.hosts:
            for t in h.dials:
                out[h.index].append(t)
                out[t].append(h.index)
        return out

    # -- host life cycle ---------------------------------------------------------------

    def start(self, host: Host) -> None:
        """Start (or restart) the host's node over its store, and dial its peers."""
        host.epoch += 1
        host.backoff.clear()
        host.waiting.clear()
        host.last_open = -1.0  # a new process: its first session is R4's
        host.process = self._make_process(host)
        self.loop.record(T_START, host.index, host.epoch)
        for target in host.dials:
            self._dial(host.index, target, host.epoch)
        self._touch(host)

    def crash(self, host: Host) -> None:
        if host.process is None:
            return
        host.process = None
        host.crashes.append(self.now)
        host.wake_at = None
        self.loop.record(T_CRASH, host.index)
        for session in list(host.sessions.values()):
            side = DIALER if session.hosts[DIALER] == host.index else ACCEPTOR
            self._end_side(session, side, notify=True)
        host.sessions.clear()

    def join(self) -> Host:
        """A new member: on every roster at once, then its node starts and dials."""
        host = self.add_host("honest")
        rng = derive(self.seed, "join", host.index)
        others = [h.index for h in self.hosts[:-1]]
        host.dials = sorted(rng.sample(others, min(self.params.degree, len(others))))
        self.start(host)
        return host

    def publish(self, host: Host) -> AlertRecord | None:
        if host.process is None:
            return None
        record = host.process.publish()
        if record is not None:
            self.loop.record(T_PUBLISH, host.index, record.seq)
        self._touch(host)
        return record

    def cut(self, groups: list[list[int]]) -> None:
        """Partition the network; sessions across the cut end by keepalive."""
        self.net.cut(groups)
        self.cut_sessions()

    def heal(self) -> None:
        self.net.heal()

    def _make_process(self, host: Host) -> Process:
        if host.role in PUBLISHERS:
            rng = derive(self.seed, "gossip", host.index, host.epoch)
            core = (Flood if self.params.protocol == "flood" else Gossip)(self.gossip_params, rng)
            cls = adversary.Equivocator if host.role == "equivocator" else HonestNode
            return cls(self, host, core)
        return adversary.ROLES[host.role](self, host)

    # -- running -----------------------------------------------------------------------

    def run_until(self, until: float, every: float = 5.0) -> None:
        """Advance the clock, checking the invariants that must hold at every moment."""
        while self.now < until:
            self.loop.run_until(min(until, self.now + every))
            self.check_bounds()

    def run_until_true(self, done: Callable[[], bool], limit: float, step: float = 1.0) -> bool:
        while not done():
            if self.now >= limit:
                return False
            self.run_until(min(limit, self.now + step), every=step)
        return True

    def check_bounds(self) -> None:
        """Memory bounds of the cores hold on every live honest node."""
        p = self.gossip_params
        for host in self.hosts:
            process = host.process
            if not isinstance(process, HonestNode):
                continue
            stats = process.gossip.stats()
            if stats.awaited_ids > p.max_missing or stats.remembered_ids > p.max_seen:
                self.fail(f"host {host.index} exceeds gossip bounds: {stats}")
            if stats.queued_announcements > p.max_queue_ids * max(stats.peers, 1):
                self.fail(f"host {host.index} queues too many announcements: {stats}")

    def honest_component(self) -> list[int]:
        """Honest hosts that can reach one another through honest hosts (the largest group)."""
        if self._component is not None and self._component[0] == len(self.hosts):
            return self._component[1]
        graph = self.neighbours()
        honest = {h.index for h in self.hosts if h.honest}
        best: list[int] = []
        seen: set[int] = set()
        for start in sorted(honest):
            if start in seen:
                continue
            group, todo = [start], [start]
            seen.add(start)
            while todo:
                for n in graph[todo.pop()]:
                    if n in honest and n not in seen:
                        seen.add(n)
                        group.append(n)
                        todo.append(n)
            if len(group) > len(best):
                best = sorted(group)
        self._component = (len(self.hosts), best)
        return best

    def honest_target(self) -> int:
        """How many alerts each honest member must hold: those of the honest component."""
        return sum(self.record.published_by[h] for h in self.honest_component())

    def converged(self) -> bool:
        """Every live honest member holds every alert of every honest member."""
        target = self.honest_target()
        held = self.record.honest_held
        return all(held[h] >= target for h in self.honest_component() if self.hosts[h].up)
