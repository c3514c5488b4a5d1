"""The benchmark matrix: every scenario at N = 10, 100, 1,000 (and 2,000), both protocols.

`scripts/simulate report` runs it on `--jobs` processes, replaces the generated part
of docs/simulation.md (between the RESULTS markers) with the tables, and redraws
docs/sim/*.png. The seed is fixed (1) so the command regenerates the same numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.sim.cli import fmt, ratio
from node.sim.scenarios import SCENARIOS, run
from node.sim.world import InvariantViolation

# Alerts per run: fewer at N >= 1,000 so the matrix fits in ~15 minutes on 2 cores.
SIZES = {10: 300, 100: 300, 1000: 200}
LARGE = {2000: 150}  # "normal" only
EXTRA = {"liar-partition": (10, 100)}  # a known weakness: how long it delays catch-up
MATRIX = (
    "normal",
    "partition-heal",
    "silent-10",
    "silent-30",
    "hostile-10",
    "hostile-30",
    "churn",
)
PROTOCOLS = ("gossip", "flood")
BEGIN, END = "<!-- RESULTS:BEGIN (scripts/simulate report) -->", "<!-- RESULTS:END -->"


@dataclass(frozen=True)
class Job:
    scenario: str
    nodes: int
    alerts: int
    protocol: str
    seed: int

    @property
    def cost(self) -> float:
        return self.nodes * self.alerts * (1.6 if self.protocol == "flood" else 1.0)


def jobs(seed: int, quick: bool) -> list[Job]:
    out = []
    for nodes, alerts in SIZES.items():
        if quick and nodes > 100:
            continue
        out += [Job(s, nodes, alerts, p, seed) for s in MATRIX for p in PROTOCOLS]
    for scenario, sizes in EXTRA.items():
        out += [Job(scenario, n, SIZES[n], p, seed) for n in sizes for p in PROTOCOLS]
    if not quick:
        out += [Job("normal", n, a, p, seed) for n, a in LARGE.items() for p in PROTOCOLS]
    return sorted(out, key=lambda j: -j.cost)


def work(job: Job) -> dict[str, Any]:
    started = time.perf_counter()
    scenario = SCENARIOS[job.scenario].sized(job.nodes, job.alerts)
    result: dict[str, Any] = {"job": job.__dict__}
    try:
        result["summary"] = run(scenario, job.seed, job.protocol).as_dict()
    except InvariantViolation as exc:
        result["error"] = str(exc)
    except Exception:
        result["error"] = f"seed={job.seed}: " + traceback.format_exc()
    result["elapsed"] = time.perf_counter() - started
    return result


def main(args: argparse.Namespace) -> int:
    todo = jobs(args.seed, args.quick)
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        for result in pool.imap_unordered(work, todo):
            job = result["job"]
            status = "FAILED" if "error" in result else "ok"
            print(f"{job['scenario']:15} N={job['nodes']:<5} {job['protocol']:6} "
                  f"{result['elapsed']:6.1f} s  {status}", flush=True)  # fmt: skip
            if "error" in result:
                print(result["error"], file=sys.stderr)
            results.append(result)
    total = time.perf_counter() - started
    print(f"matrix done in {total / 60:.1f} min on {args.jobs} processes")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    docs = Path(args.docs)
    write_markdown(docs / "simulation.md", results, args, total)
    try:
        from node.sim import plots
    except ImportError as exc:  # matplotlib is the optional `plot` extra
        print(f"no plots: {exc} (pip install 'alertmesh[plot]')", file=sys.stderr)
    else:
        plots.draw(results, docs / "sim")
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"FAILED {r['job']}: {r['error'].splitlines()[0]}", file=sys.stderr)
    return 1 if failed else 0


# -- markdown --------------------------------------------------------------------------


def index(results: list[dict[str, Any]]) -> dict[tuple[str, int, str], dict[str, Any]]:
    out = {}
    for r in results:
        j = r["job"]
        out[(j["scenario"], j["nodes"], j["protocol"])] = r.get("summary") or {"error": r["error"]}
    return out


def pair(g: dict[str, Any], f: dict[str, Any], key: str, spec: str) -> str:
    return f"{fmt(g.get(key), spec)} / {fmt(f.get(key), spec)}"


def results_markdown(results: list[dict[str, Any]], args: argparse.Namespace, total: float) -> str:
    by = index(results)
    sizes = sorted({n for (_, n, _) in by})
    lines = [
        BEGIN,
        "",
        f"Seed {args.seed}; {len(results)} runs in {total / 60:.1f} min on {args.jobs} "
        f"processes. Regenerate: `scripts/simulate report` (about the same time on 2 cores).",
        "Each cell is *gossip / flooding*; ratios are gossip ÷ flooding.",
        "",
        "| scenario | N | alerts | delivery | coverage p50 s | coverage p99 s | hops p50 | "
        "hops p99 | copies/alert/member | ratio | bytes/alert/member | ratio | "
        "catch-up after heal s |",
        "|---|--:|--:|---|---|---|---|---|---|--:|---|--:|---|",
    ]
    for scenario in (*MATRIX, *(s for s in SCENARIOS if s not in MATRIX)):
        for n in sizes:
            g, f = by.get((scenario, n, "gossip")), by.get((scenario, n, "flood"))
            if g is None or f is None:
                continue
            if "error" in g or "error" in f:
                err = (g.get("error") or f.get("error") or "").splitlines()[0]
                lines.append(f"| {scenario} | {n:,} | | **FAILED**: {err} |||||||||")
                continue
            lines.append(
                f"| {scenario} | {n:,} | {g['alerts']} "
                f"| {pair(g, f, 'delivery', '{:.1%}')} "
                f"| {pair(g, f, 'coverage_p50', '{:.2f}')} "
                f"| {pair(g, f, 'coverage_p99', '{:.2f}')} "
                f"| {pair(g, f, 'hops_p50', '{:.0f}')} "
                f"| {pair(g, f, 'hops_p99', '{:.0f}')} "
                f"| {pair(g, f, 'copies', '{:.3f}')} | {ratio(g['copies'], f['copies'])} "
                f"| {pair(g, f, 'bytes_per_alert', '{:,.0f}')} "
                f"| {ratio(g['bytes_per_alert'], f['bytes_per_alert'])} "
                f"| {pair(g, f, 'catchup_after_heal', '{:.1f}')} |"
            )
    lines += ["", "**Targets** (gossip):", "",
              "| N | p99 hops | log2(N)+2 | copies (steady) | delivery after heal | "
              "delivery, 30% silent | delivery, 30% hostile |",
              "|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for n in sizes:
        g = by.get(("normal", n, "gossip"), {})
        heal = by.get(("partition-heal", n, "gossip"), {})
        silent = by.get(("silent-30", n, "gossip"), {})
        hostile = by.get(("hostile-30", n, "gossip"), {})
        bound = math.log2(n) + 2
        lines.append(
            f"| {n:,} | {fmt(g.get('hops_p99'), '{:.0f}')} | {bound:.1f} "
            f"| {fmt(g.get('copies'), '{:.3f}')} | {fmt(heal.get('delivery'), '{:.1%}')} "
            f"| {fmt(silent.get('delivery'), '{:.1%}')} "
            f"| {fmt(hostile.get('delivery'), '{:.1%}')} |"
        )
    big = max(sizes)
    lines += ["", f"**Where the bytes go** (normal, N = {big:,}; bytes per alert per member):",
              "", "| traffic | gossip | flooding |", "|---|--:|--:|"]  # fmt: skip
    g, f = by.get(("normal", big, "gossip"), {}), by.get(("normal", big, "flood"), {})
    for cls in g.get("bytes_by_class", {}):
        lines.append(
            f"| {cls} | {g['bytes_by_class'][cls]:,.0f} | {f['bytes_by_class'][cls]:,.0f} |"
        )
    lines += ["", "**Churn and misbehaviour** (gossip / flooding):", "",
              "| scenario | N | slowest restart caught up s | slowest join caught up s | "
              "invalid alerts dropped | equivocations detected / made |",
              "|---|--:|---|---|---|---|"]  # fmt: skip
    for scenario in ("churn", "hostile-10", "hostile-30"):
        for n in sizes:
            g, f = by.get((scenario, n, "gossip"), {}), by.get((scenario, n, "flood"), {})
            if "alerts" not in g or "alerts" not in f:
                continue
            lines.append(
                f"| {scenario} | {n:,} | {pair(g, f, 'restart_catchup', '{:.1f}')} "
                f"| {pair(g, f, 'join_catchup', '{:.1f}')} "
                f"| {pair(g, f, 'invalid_dropped', '{:,}')} "
                f"| {g['equivocations_detected']}/{g['equivocations']} / "
                f"{f['equivocations_detected']}/{f['equivocations']} |"
            )
    lines += ["", "**Run times** (wall seconds per run, gossip / flooding):", "",
              "| scenario | " + " | ".join(f"N = {n:,}" for n in sizes) + " |",
              "|---|" + "--:|" * len(sizes)]  # fmt: skip
    elapsed = {
        (r["job"]["scenario"], r["job"]["nodes"], r["job"]["protocol"]): r["elapsed"]
        for r in results
    }
    for scenario in MATRIX:
        cells = []
        for n in sizes:
            g_t, f_t = elapsed.get((scenario, n, "gossip")), elapsed.get((scenario, n, "flood"))
            cells.append(f"{g_t:.0f} / {f_t:.0f}" if g_t is not None and f_t is not None else "")
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    lines += ["", END]
    return "\n".join(lines)


def write_markdown(
    path: Path, results: list[dict[str, Any]], args: argparse.Namespace, total: float
) -> None:
    block = results_markdown(results, args, total)
    text = path.read_text() if path.exists() else f"# Simulation\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    path.write_text(pattern.sub(lambda _: block, text, count=1))
    print(f"wrote {path}")
