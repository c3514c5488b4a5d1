"""When to dial a peer again: the dial loop's policy, without I/O.

node/app/peers.py's dial loops and the simulator's sessions (node/sim/sessions.py) both
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
"""

from __future__ import annotations

from dataclasses import dataclass

BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 10.0
STABLE_SESSION_S = 10.0  # a session that lasted this long resets the backoff


@dataclass(slots=True)
class Backoff:
    """One dial target's backoff (R1, R2)."""

    delay: float = BACKOFF_MIN_S

    def wait_after(self, lasted: float, draw: float, network_up: bool = False) -> float:
        """R1: the attempt (or session) ended after `lasted` seconds; `draw` is U(0, 1).
        `network_up`: a session with some peer opened while it ran (R2). Returns how
        long to wait before dialing again."""
        if lasted > STABLE_SESSION_S or network_up:
            self.delay = BACKOFF_MIN_S
        wait = self.delay * (0.5 + draw)
        self.delay = min(self.delay * 2, BACKOFF_MAX_S)
        return wait

    def network_up(self, draw: float) -> float:
        """R2: a session with some peer opened. Returns the new wait, from now."""
        self.delay = BACKOFF_MIN_S
        return BACKOFF_MIN_S * (0.5 + draw)
