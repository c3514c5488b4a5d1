"""docs/sim/*.png from the report's results (needs matplotlib: the `plot` extra)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

Results = dict[tuple[str, int, str], dict[str, Any]]
STYLE = {"gossip": "-", "flood": "--"}
LABEL = {"gossip": "gossip", "flood": "flooding"}
METADATA = {"Software": None}  # no version stamp: the same results draw the same bytes


def draw(results: list[dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    by: Results = {}
    for r in results:
        if "summary" in r:
            j = r["job"]
            by[(j["scenario"], j["nodes"], j["protocol"])] = r["summary"]
    sizes = sorted({n for (s, n, _) in by if s == "normal"})
    coverage(by, sizes, out / "coverage.png")
    versus_n(by, sizes, out / "copies.png", "copies", "full copies received per alert per member")
    versus_n(by, sizes, out / "bytes.png", "bytes_per_alert", "bytes sent per alert per member")
    hops(by, sizes, out / "hops.png")
    heal(by, out / "heal.png")
    warmup(by, sizes, out / "warmup.png")
    print(f"wrote {out}/*.png")


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=METADATA)
    plt.close(fig)


def coverage(by: Results, sizes: list[int], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, n in enumerate(sizes):
        for protocol in ("gossip", "flood"):
            s = by.get(("normal", n, protocol))
            if not s or not s["coverage_curve"]:
                continue
            xs, ys = zip(*s["coverage_curve"], strict=True)
            ax.plot(xs, ys, STYLE[protocol], color=f"C{i}", label=f"N={n:,} {LABEL[protocol]}")
    ax.set_xscale("log")
    ax.set_xlabel("seconds since the alert was published")
    ax.set_ylabel("share of (alert, member) pairs delivered")
    ax.set_title("Delivery over time (normal scenario)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def versus_n(by: Results, sizes: list[int], path: Path, key: str, ylabel: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for protocol in ("gossip", "flood"):
        runs = [(n, by.get(("normal", n, protocol))) for n in sizes]
        pts = [(n, run[key]) for n, run in runs if run is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, STYLE[protocol] + "o", label=LABEL[protocol])
    if key == "copies":
        ax.axhline(1.5, color="grey", linestyle=":", label="target at N=1,000: 1.5")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("members (N)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel.capitalize()} vs N (normal)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def hops(by: Results, sizes: list[int], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for protocol in ("gossip", "flood"):
        for q, marker in (("hops_p50", "o"), ("hops_p99", "s")):
            pts = [
                (n, by[("normal", n, protocol)][q]) for n in sizes if ("normal", n, protocol) in by
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                label = f"{LABEL[protocol]} {q.split('_')[1]}"
                ax.plot(xs, ys, STYLE[protocol] + marker, label=label)
    ax.plot(sizes, [math.log2(n) + 2 for n in sizes], ":", color="grey", label="target log2(N)+2")
    ax.set_xscale("log")
    ax.set_xlabel("members (N)")
    ax.set_ylabel("hops to full coverage")
    ax.set_title("Hops from the origin to the last member (normal)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def heal(by: Results, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for n in sorted({n for (s, n, _) in by if s == "partition-heal"}):
        for protocol in ("gossip", "flood"):
            s = by.get(("partition-heal", n, protocol))
            if not s or not s["heal_curve"]:
                continue
            xs, ys = zip(*s["heal_curve"], strict=True)
            color = f"C{[10, 100, 1000, 2000].index(n) if n in (10, 100, 1000, 2000) else 5}"
            ax.step(xs, ys, STYLE[protocol], where="post", color=color,
                    label=f"N={n:,} {LABEL[protocol]}")  # fmt: skip
    ax.set_xlabel("seconds after the partition healed")
    ax.set_ylabel("share of (alert, member) pairs missing")
    ax.set_title("Catch-up after a 60 s partition", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def warmup(by: Results, sizes: list[int], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, n in enumerate(sizes):
        s = by.get(("normal", n, "gossip"))
        if not s:
            continue
        values = s["copies_by_alert"]
        window = max(1, len(values) // 20)
        smooth = []
        for k in range(len(values)):
            recent = values[max(0, k - window + 1) : k + 1]
            smooth.append(sum(recent) / len(recent))
        ax.plot(range(1, len(values) + 1), smooth, color=f"C{i}", label=f"N={n:,}")
    ax.set_xlabel("alert number")
    ax.set_ylabel("copies per member (running mean)")
    ax.set_title("Gossip settles on one copy per member (normal)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
