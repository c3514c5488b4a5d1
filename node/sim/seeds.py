"""One seed per run, and a tree of independent generators derived from it.

Each component draws from its own `random.Random`, keyed by the run's seed and a path
of labels (`derive(seed, "gossip", 17, 0)`), so adding draws in one component never
shifts another's, and the gossip and flooding runs of a scenario share the topology
and the workload exactly. Labels are hashed with SHA-256, not `hash()`, which Python
salts per process for str and bytes.
"""

from __future__ import annotations

import hashlib
import random


def _digest(seed: int, path: tuple[object, ...]) -> bytes:
    text = "/".join(str(part) for part in (seed, *path))
    return hashlib.sha256(text.encode()).digest()


def derive(seed: int, *path: object) -> random.Random:
    """An independent generator for the component named by `path`."""
    return random.Random(int.from_bytes(_digest(seed, path)[:16], "big"))


def derive_bytes(seed: int, *path: object) -> bytes:
    """32 bytes for the component named by `path` (an Ed25519 seed, for example)."""
    return _digest(seed, ("bytes", *path))
