"""Where a paced alert's milliseconds go, from the nodes' stage marks.

Used by `bench/cluster_bench.py --trace`: the nodes mark stages (node/app/latency_trace.py)
and write them to DIR/<pid>.tsv when they stop; the bench knows when it started each
Publish call and when each node's Subscribe stream delivered the alert. For every alert
this follows the path to the node that got it last (the last node read it from a relay,
or from the origin directly) and takes the time between consecutive stages on it; the
table gives each step's p50 and p99 over the phase's alerts, the sum of the p50s, and
each step's mean over the slowest 5% of the alerts end to end (what their tail is made of).
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from pathlib import Path

Marks = dict[bytes, dict[str, float]]  # id prefix -> stage -> first time


def load(directory: Path, names: dict[int, str]) -> dict[str, Marks]:
    """Each node's marks, by node name (pid -> name: `names`)."""
    out: dict[str, Marks] = {}
    for path in directory.glob("*.tsv"):
        name = names.get(int(path.stem))
        if name is None:
            continue
        marks: Marks = defaultdict(dict)
        for line in path.read_text().splitlines():
            t, stage, i = line.split("\t")
            marks[bytes.fromhex(i)].setdefault(stage, float(t))
        out[name] = marks
    return out


def _stage(mark: str) -> str:
    """A stage without its peer: "read<node1" -> "read"."""
    return mark.split("<")[0].split(">")[0]


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def path_of(
    alert: bytes, origin: str, last: str, nodes: dict[str, Marks], t0: float, received: float
) -> list[tuple[str, float]] | None:
    """The stages of one alert on the way to the last node, as (step, time)."""
    key = alert[:8]
    on_last = nodes.get(last, {}).get(key, {})
    hops = [n[len("read<") :] for n in on_last if n.startswith("read<")]
    if not hops:
        return None
    relay = min(hops, key=lambda n: on_last[f"read<{n}"])  # the first copy to arrive
    chain = [origin] if relay == origin else [origin, relay]
    steps: list[tuple[str, float]] = [("publish call", t0)]
    for i, node in enumerate(chain):
        marks = nodes.get(node, {}).get(key, {})
        nxt = chain[i + 1] if i + 1 < len(chain) else last
        prev = chain[i - 1] if i else None
        if prev is None:
            wanted = ["publish_in", "signed", "committed"]
        else:
            wanted = [f"read<{prev}", "ingest_start", "verified", "committed"]
        wanted += [f"queued>{nxt}", f"written>{nxt}"]
        role = "origin" if prev is None else "relay"
        steps += [(f"{role} {_stage(s)}", marks[s]) for s in wanted if s in marks]
    for s in (f"read<{chain[-1]}", "ingest_start", "verified", "committed", "subscribe_sent"):
        if s in on_last:
            steps.append((f"last {_stage(s)}", on_last[s]))
    steps.append(("bench received", received))
    return steps


def breakdown(
    label: str,
    nodes: dict[str, Marks],
    names: list[str],
    started: dict[bytes, float],
    arrivals: dict[bytes, dict[int, float]],
) -> str:
    """A markdown table of the steps to the last node, over one phase's alerts."""
    deltas: dict[str, list[float]] = defaultdict(list)
    order: list[str] = []
    paths = 0
    per_alert: list[tuple[float, list[tuple[str, float]]]] = []  # (end to end, steps)
    for alert, t0 in started.items():
        seen = arrivals.get(alert, {})
        if len(seen) < len(names):
            continue
        last_index = max(seen, key=lambda i: seen[i])
        steps = path_of(alert, names[0], names[last_index], nodes, t0, seen[last_index])
        if steps is None:
            continue
        paths += 1
        these = []
        for (_, a), (step, b) in itertools.pairwise(steps):
            if step not in deltas:
                order.append(step)
            deltas[step].append(b - a)
            these.append((step, b - a))
        per_alert.append((steps[-1][1] - steps[0][1], these))
    if not paths:
        return f"{label}: no traced paths\n"
    rows = [
        f"Stages to the last node, {label} ({paths} alerts; ms from the previous step):",
        "",
        "| step | p50 | p99 | slowest 5%, mean |",
        "|---|---|---|---|",
    ]
    per_alert.sort(key=lambda x: x[0])
    slowest = per_alert[len(per_alert) - max(1, len(per_alert) // 20) :]
    tail: dict[str, list[float]] = defaultdict(list)
    for _, these in slowest:
        for step, d in these:
            tail[step].append(d)
    total = tail_total = 0.0
    for step in order:
        values = deltas[step]
        p50 = statistics.median(values)
        total += p50
        # Over all the slowest alerts, a missing step counting 0: the means then add
        # up to the slowest 5%'s mean end to end (rare steps weigh what they cost).
        mean = sum(tail[step]) / len(slowest)
        tail_total += mean
        rows.append(
            f"| {step} | {p50 * 1000:.2f} | {_pct(values, 99) * 1000:.2f} | {mean * 1000:.2f} |"
        )
    rows.append(
        f"| sum of p50s (of the slowest 5%'s means) | {total * 1000:.2f} | | "
        f"{tail_total * 1000:.2f} |"
    )
    end_to_end = statistics.fmean(e for e, _ in slowest)
    rows.append(f"| end to end (the slowest 5%'s mean) | | | {end_to_end * 1000:.2f} |")
    return "\n".join(rows) + "\n"
