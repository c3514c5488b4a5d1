"""The virtual network: where hosts are, how long a frame takes, what gets lost.

- Latency. Each host sits in a region (members are organisations on every
  continent). A link's one-way latency is the typical latency between the two
  regions' hubs, times a lognormal factor for the last mile, clipped to 10–300 ms.
  Each frame adds jitter: exponential, 5% of the link latency on average.
- Bandwidth. Each host has one uplink (lognormal around 20 Mbit/s, 2 Mbit/s to
  1 Gbit/s). Frames leave it one after another, so a frame waits for everything the
  host queued before it and then takes size/bandwidth to serialise. Downlinks and
  CPU are not modelled.
- Order. A session is one gRPC stream over TCP: frames arrive in the order they were
  sent. With `reorder`, that guarantee is dropped and jitter alone orders them
  (except that nothing overtakes the session's handshake).
- Loss. With `loss` > 0 each frame is dropped with that probability. TCP would
  retransmit instead; this is a stress test of the protocol's repair paths.
- Partitions. Hosts in different groups cannot reach each other: frames between
  them are dropped, and sessions across the cut end when keepalive notices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from node.sim.seeds import derive

REGIONS: tuple[tuple[str, float], ...] = (
    ("north-america", 0.28),
    ("europe", 0.32),
    ("east-asia", 0.18),
    ("south-east-asia", 0.10),
    ("south-america", 0.06),
    ("oceania", 0.06),
)
REGION_NAMES = tuple(name for name, _ in REGIONS)

# Typical one-way latency between regional hubs, in ms (about half the usual RTT).
_ONE_WAY_MS = {
    ("north-america", "north-america"): 20,
    ("europe", "europe"): 12,
    ("east-asia", "east-asia"): 20,
    ("south-east-asia", "south-east-asia"): 25,
    ("south-america", "south-america"): 30,
    ("oceania", "oceania"): 15,
    ("north-america", "europe"): 45,
    ("north-america", "east-asia"): 80,
    ("north-america", "south-east-asia"): 105,
    ("north-america", "south-america"): 70,
    ("north-america", "oceania"): 85,
    ("europe", "east-asia"): 115,
    ("europe", "south-east-asia"): 85,
    ("europe", "south-america"): 105,
    ("europe", "oceania"): 140,
    ("east-asia", "south-east-asia"): 40,
    ("east-asia", "south-america"): 135,
    ("east-asia", "oceania"): 60,
    ("south-east-asia", "south-america"): 165,
    ("south-east-asia", "oceania"): 50,
    ("south-america", "oceania"): 150,
}


def hub_latency(a: str, b: str) -> float:
    """One-way latency between two regions' hubs, in seconds."""
    ms = _ONE_WAY_MS.get((a, b)) or _ONE_WAY_MS[(b, a)]
    return ms / 1000


@dataclass(frozen=True, slots=True)
class NetParams:
    latency_min: float = 0.010
    latency_max: float = 0.300
    last_mile: float = 0.35  # sigma of the lognormal factor on the hub latency
    jitter: float = 0.05  # mean extra delay per frame, as a fraction of the link latency
    uplink_mbps: float = 20.0  # median
    uplink_spread: float = 0.7  # sigma of the lognormal
    uplink_min_mbps: float = 2.0
    uplink_max_mbps: float = 1000.0
    loss: float = 0.0
    reorder: bool = False


class Network:
    def __init__(self, params: NetParams, seed: int) -> None:
        self.params = params
        self.seed = seed
        self.regions: list[str] = []
        self._uplink: list[float] = []  # bytes per second
        self._free_at: list[float] = []  # when each uplink has sent what is queued
        self._latency: dict[tuple[int, int], float] = {}
        self._frames = derive(seed, "frames")
        self._groups: dict[int, int] | None = None
        self.dropped_loss = 0
        self.dropped_cut = 0

    def add_host(self, index: int) -> None:
        """Place host `index` (hosts are added in index order)."""
        assert index == len(self.regions)
        rng = derive(self.seed, "host", index)
        self.regions.append(rng.choices(REGION_NAMES, weights=[w for _, w in REGIONS])[0])
        p = self.params
        mbps = rng.lognormvariate(math.log(p.uplink_mbps), p.uplink_spread)
        mbps = min(max(mbps, p.uplink_min_mbps), p.uplink_max_mbps)
        self._uplink.append(mbps * 1e6 / 8)
        self._free_at.append(0.0)

    def latency(self, a: int, b: int) -> float:
        """The link's one-way latency (seconds), the same in both directions."""
        key = (a, b) if a < b else (b, a)
        lat = self._latency.get(key)
        if lat is None:
            rng = derive(self.seed, "link", *key)
            p = self.params
            lat = hub_latency(self.regions[a], self.regions[b]) * rng.lognormvariate(
                0.0, p.last_mile
            )
            lat = self._latency[key] = min(max(lat, p.latency_min), p.latency_max)
        return lat

    def send(self, src: int, dst: int, size: int, now: float) -> tuple[float, float | None]:
        """Queue `size` bytes on src's uplink: (when it has left, when it arrives or None).

        The frame uses the uplink even when it is lost on the way.
        """
        start = max(now, self._free_at[src])
        left = start + size / self._uplink[src]
        self._free_at[src] = left
        if self.params.loss and self._frames.random() < self.params.loss:
            self.dropped_loss += 1
            return left, None
        lat = self.latency(src, dst)
        return left, left + lat * (1.0 + self._frames.expovariate(1.0 / self.params.jitter))

    def random(self) -> float:
        """A draw from the network's generator (keepalive timing, backoff jitter)."""
        return self._frames.random()

    # -- partitions ------------------------------------------------------------------

    def cut(self, groups: list[list[int]]) -> None:
        """Hosts in different groups can no longer reach each other; others are in group 0."""
        self._groups = {h: g + 1 for g, hosts in enumerate(groups) for h in hosts}

    def heal(self) -> None:
        self._groups = None

    def reachable(self, a: int, b: int) -> bool:
        groups = self._groups
        return groups is None or groups.get(a, 0) == groups.get(b, 0)
