"""Members that misbehave. Each is a roster member whose node runs something else.

- silent: opens and accepts sessions, then never forwards or answers anything
  (`Process` itself). It does not publish.
- forger: silent, and every second sends each peer alerts that must be rejected:
  bad signatures on honest members' origins, bodies signed by a key that is not a
  member, bodies signed with the wrong member key, tampered bytes, and properly
  signed bodies that break the protocol rules. It announces (IHAVE) their ids too,
  and never answers a request for them.
- flooder: silent, and twice a second sends each peer a frame of 20 junk alerts
  (random bytes) and an IHAVE of 64 random ids, which a receiver awaits and asks
  for in vain. (64, not the 512 a frame may carry, keeps N = 1,000 runs short; the
  cost to a receiver grows linearly with it.) A node disconnects a peer after 1,000
  invalid alerts in one session (peers.py); a dialer then reconnects after its backoff.
- equivocator: an honest node that, for its first alert and every second one after,
  signs two different bodies with the same seq and sends one to half of its peers
  and the other to the rest.
- liar: silent, and when a session opens it advertises a version vector claiming a
  head of 1,000,000 for every member, then never serves a range.
"""

from __future__ import annotations

import random

from node.core.alerts import AlertRecord, alert_id
from node.crypto import sign_alert
from node.sim import workload
from node.sim.honest import HonestNode
from node.sim.process import Env, Host, Link, Process
from node.sim.seeds import derive
from node.sim.store import Arrival
from node.sim.wire import Alerts, Ids, Kind, Signed, Vector


class _Talker(Process):
    """A silent member that sends something to every peer every `period` seconds."""

    period = 1.0

    def __init__(self, env: Env, host: Host) -> None:
        super().__init__(env, host)
        self.rng = derive(env.seed, host.role, host.index, host.epoch)
        self.links: dict[int, Link] = {}  # by session id
        self._next = env.now + self.period * self.rng.random()

    def session_up(self, link: Link) -> None:
        self.links[link.session.id] = link

    def session_down(self, link: Link) -> None:
        self.links.pop(link.session.id, None)

    def next_deadline(self) -> float | None:
        return self._next

    def wake(self) -> None:
        if self.env.now < self._next:
            return
        for link in list(self.links.values()):
            self.talk(link)
        self._next = self.env.now + self.period * (0.5 + self.rng.random())

    def talk(self, link: Link) -> None:
        raise NotImplementedError


class Forger(_Talker):
    per_frame = 4

    def __init__(self, env: Env, host: Host) -> None:
        super().__init__(env, host)
        self.pool = forged_alerts(env, host, self.rng)

    def talk(self, link: Link) -> None:
        batch = tuple(self.rng.choice(self.pool) for _ in range(self.per_frame))
        link.send(Alerts(batch, False, (1,) * len(batch)))
        link.send(Ids(Kind.IHAVE, tuple(alert_id(body) for body, _ in batch)))


def forged_alerts(env: Env, host: Host, rng: random.Random) -> list[Signed]:
    """Twenty alerts that no honest node may store, five kinds of four."""
    members = sorted(m.key for m in env.roster if m.key != host.key)
    now = env.now
    created = workload.wall_ms(now)
    forged: list[Signed] = []
    for i in range(4):
        victim = rng.choice(members) if members else host.key
        seq = rng.randrange(1, 50)
        prev = rng.randbytes(32) if seq > 1 else b""
        # 1. An honest member's origin with a made-up signature.
        body = workload.draft(rng, victim, seq, prev, created)
        forged.append((body, rng.randbytes(64)))
        # 2. Properly signed by a key that is on no roster.
        stranger = workload.outsider(env.seed, host.index * 4 + i)
        body = workload.draft(rng, stranger.public_key, 1, b"", created)
        forged.append((body, sign_alert(stranger, body)))
        # 3. An honest member's origin, signed with the forger's own key.
        body = workload.draft(rng, victim, seq, prev, created)
        forged.append((body, sign_alert(host.identity, body)))
        # 4. The forger's own alert, tampered with after signing.
        body = workload.draft(rng, host.key, seq, prev, created)
        signature = sign_alert(host.identity, body)
        flip = len(body) // 2
        forged.append((body[:flip] + bytes([body[flip] ^ 0x20]) + body[flip + 1 :], signature))
        # 5. Properly signed, but breaking a rule: dated an hour ahead of every clock.
        body = workload.draft(rng, host.key, seq, prev, created + 3_600_000)
        forged.append((body, sign_alert(host.identity, body)))
    return forged


class Flooder(_Talker):
    period = 0.5
    junk_per_frame = 20
    ihave_ids = 64

    def __init__(self, env: Env, host: Host) -> None:
        super().__init__(env, host)
        self.junk = [
            (self.rng.randbytes(self.rng.randrange(100, 1000)), self.rng.randbytes(64))
            for _ in range(64)
        ]

    def talk(self, link: Link) -> None:
        batch = tuple(self.rng.choice(self.junk) for _ in range(self.junk_per_frame))
        link.send(Alerts(batch, False, (1,) * len(batch)))
        link.send(Ids(Kind.IHAVE, tuple(self.rng.randbytes(32) for _ in range(self.ihave_ids))))


class Liar(Process):
    claimed_head = 1_000_000

    def session_up(self, link: Link) -> None:
        heads = tuple(sorted((m.key, self.claimed_head) for m in self.env.roster))
        link.send(Vector(heads, reply=False))


class Equivocator(HonestNode):
    every = 2

    def publish(self) -> AlertRecord | None:
        author = self.host.author
        links = list(self.links.values())
        if author.seq % self.every != 0 or len(links) < 2:
            return super().publish()
        now = self.env.now
        first, second = author.fork(now)
        self.env.published(self.host.index, first)
        self.env.published(self.host.index, second)
        self.env.equivocated(self.host.index, first, second)
        self.store.put([first], [Arrival(now, 0, False)], workload.wall_ms(now))
        self.gossip.on_caught_up([first.id], now)
        half = len(links) // 2
        for i, link in enumerate(links):
            record = first if i < half else second
            link.send(Alerts(((record.body, record.signature),), False, (1,)))
        return first


ROLES: dict[str, type[Process]] = {
    "silent": Process,
    "forger": Forger,
    "flooder": Flooder,
    "liar": Liar,
}
