"""When to dial a peer again: the dial loop's policy, without I/O.

node/app/peer_dialing.py's dial loops and the simulator's sessions (node/sim/sessions.py) both
follow it; the caller brings the clock and the random draws.

R1. After a session ends or a dial fails, wait `backoff × U(0.5, 1.5)`. The backoff
    starts at BACKOFF_MIN_S and doubles up to BACKOFF_MAX_S; an attempt that lasted
    longer than STABLE_SESSION_S (a session that worked) starts it over.
R2. When a session with any peer opens, every dial waiting out its backoff is due
    again (after `BACKOFF_MIN_S × U(0.5, 1.5)`), and its backoff starts over: the
    network evidently works again. A dial attempt that fails after some session
    opened (it started before, and waited out its handshake) waits as little.
    Without R2, after a partition heals the dials that failed during the cut wait up
    to BACKOFF_MAX_S × 1.5 more, and a member whose every peer was across the cut
    stays cut off that long. With it, the first sessions across the healed cut set
    off the others, node by node.
R3. R2 wakes a dial (`wake`, or the short wait after an attempt that ran while a session
    opened) only if its backoff has grown to R2_WAKE_S or more (a dial waiting less is
    due within R2_WAKE_S x 1.5 anyway) and the wait before its last attempt ran out in
    full, not cut short by R2 itself; and a wake does not start the backoff over. A
    woken dial that succeeds needs no backoff; one that fails shows that this member,
    not the network, is down, and it goes on backing off. Without R3 a member whose
    session flaps makes every node redial all its unreachable members each time it
    reconnects, up to 1 / BACKOFF_MIN_S = 5 times a second (147 dials a minute where
    11 would do); with it, 12-16 (tests/test_redial.py, dials failing at once or after
    up to a second).
R4. Start-up: when this process's first session opens, R2 applies as first written,
    without R3's terms: every dial waiting out its backoff is due again and its backoff
    starts over. At start-up most dials fail because the peers are not up yet, and
    the first session is the first sign that they are coming up; R3 alone left the
    dials that had backed off to 0.4-0.8 s to run out, so the mesh formed later (the
    simulator's silent-30 at 1,000 members, seed 1: the last session opened at 5.7 s
    with R4, 6.5 s without, 3.3 s with R2 alone; docs/simulation.md). It happens once
    per process start, so a flapping member cannot repeat it (tests/test_redial.py).
"""

from __future__ import annotations

from dataclasses import dataclass

BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 10.0
STABLE_SESSION_S = 10.0  # a session that lasted this long resets the backoff
R2_WAKE_S = 1.6  # R3: the least backoff that a session opening elsewhere cuts short


@dataclass(slots=True)
class Backoff:
    """One dial target's backoff (R1, R2)."""

    delay: float = BACKOFF_MIN_S
    waiting: float = 0.0  # the backoff of the wait last returned by wait_after
    woken: bool = False  # R2 cut the current wait short
    wakeable: bool = True  # R3: the wait before the last attempt ran out in full

    def wait_after(self, lasted: float, draw: float, network_up: bool = False) -> float:
        """R1: the attempt (or session) ended after `lasted` seconds; `draw` is U(0, 1).
        `network_up`: a session with some peer opened while it ran (R2). Returns how
        long to wait before dialing again."""
        if lasted > STABLE_SESSION_S:
            self.delay = BACKOFF_MIN_S
        # R2 for an attempt that ran while a session opened: as a wake (R3's terms),
        # a short wait this once, the backoff kept.
        woke = network_up and self._wakeable()
        self.waiting = self.delay
        self.wakeable, self.woken = not self.woken, woke
        wait = (BACKOFF_MIN_S if woke else self.delay) * (0.5 + draw)
        self.delay = min(self.delay * 2, BACKOFF_MAX_S)
        return wait

    def _wakeable(self) -> bool:
        return self.waiting >= R2_WAKE_S and self.wakeable and not self.woken

    def wake(self, draw: float, first: bool = False) -> float | None:
        """R2 with R3: a session with some peer opened while this dial waits out the
        backoff wait_after gave; `first`: it was this process's first session (R4).
        Returns the new wait, from now, or None: keep waiting."""
        if first:
            self.delay = BACKOFF_MIN_S
        elif not self._wakeable():
            return None
        self.woken = True
        return BACKOFF_MIN_S * (0.5 + draw)
