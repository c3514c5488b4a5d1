"""`scripts/simulate`: run one scenario, or the whole benchmark matrix.

    scripts/simulate --scenario normal --nodes 1000 --alerts 200 --seed 7
    scripts/simulate run --scenario partition-heal --nodes 100 --protocol gossip
    scripts/simulate scenarios
    scripts/simulate report            # the matrix: docs/simulation.md and docs/sim/*.png
    scripts/simulate bounds --nodes 1000   # hops and coverage the graph allows

A run simulates the scenario with the gossip protocol and with the flooding baseline
(same seed, so the same members, graph and alerts) and prints both and their ratio.
Every failure prints its seed and the command that reproduces it; the exit status is
1 when an invariant broke and 2 for any other error.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from node.core.limits import DEFAULT_LIMITS
from node.sim.metrics import Summary
from node.sim.scenarios import SCENARIOS, Scenario, run
from node.sim.verify import VerifyCache
from node.sim.world import InvariantViolation

COMMANDS = ("run", "report", "scenarios", "bounds")

# (label, attribute, format); ratios are gossip / flooding.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("delivery to live honest members", "delivery", "{:.2%}"),
    ("coverage time p50 (s)", "coverage_p50", "{:.2f}"),
    ("coverage time p99 (s)", "coverage_p99", "{:.2f}"),
    ("retractions (honest)", "retractions", "{:,}"),
    ("retraction until unflagged p50 (s)", "retraction_clear_p50", "{:.2f}"),
    ("retraction until unflagged p99 (s)", "retraction_clear_p99", "{:.2f}"),
    ("latency per member p50 (s)", "latency_p50", "{:.3f}"),
    ("latency per member p99 (s)", "latency_p99", "{:.3f}"),
    ("hops to full coverage p50", "hops_p50", "{:.0f}"),
    ("hops to full coverage p99", "hops_p99", "{:.0f}"),
    ("copies / alert / member (steady)", "copies", "{:.3f}"),
    ("copies / alert / member (all)", "copies_all", "{:.3f}"),
    ("catch-up copies / alert / member", "copies_catchup", "{:.3f}"),
    ("bytes sent / alert / member", "bytes_per_alert", "{:,.0f}"),
    ("  of which dissemination", "dissemination_bytes", "{:,.0f}"),
    ("catch-up after heal (s)", "catchup_after_heal", "{:.1f}"),
    ("slowest restart caught up (s)", "restart_catchup", "{:.1f}"),
    ("slowest join caught up (s)", "join_catchup", "{:.1f}"),
    ("equivocations detected", "equivocations_detected", "{}"),
    ("invalid alerts dropped", "invalid_dropped", "{:,}"),
)


def fmt(value: object, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return spec.format(value)


def ratio(a: object, b: object) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return ""
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return ""
    return f"{a / b:.2f}×"


def repro(scenario: Scenario, seed: int, protocol: str | None = None) -> str:
    cmd = (
        f"scripts/simulate --scenario {scenario.name} --nodes {scenario.nodes} "
        f"--alerts {scenario.alerts} --rate {scenario.rate:g} --seed {seed}"
        f" --encrypted {scenario.encrypted:g}"
        + (f" --hubs {scenario.hubs}" if scenario.hubs != 8 else "")
        + (f" --retracted {scenario.retracted:g}" if scenario.retracted else "")
    )
    return cmd + (f" --protocol {protocol}" if protocol else "")


def print_table(summaries: list[Summary]) -> None:
    names = [s.protocol for s in summaries]
    header = f"{'':34}" + "".join(f"{n:>14}" for n in names)
    if len(summaries) == 2:
        header += f"{'ratio':>10}"
    print(header)
    for label, attr, spec in ROWS:
        values = [getattr(s, attr) for s in summaries]
        line = f"{label:34}" + "".join(f"{fmt(v, spec):>14}" for v in values)
        if len(values) == 2:
            line += f"{ratio(values[0], values[1]):>10}"
        print(line)


def cmd_run(args: argparse.Namespace) -> int:
    base = SCENARIOS[args.scenario]
    scenario = base.sized(args.nodes, args.alerts)
    if args.rate is not None:
        scenario = Scenario(**{**scenario.__dict__, "rate": args.rate})
    if args.encrypted is not None:
        scenario = Scenario(**{**scenario.__dict__, "encrypted": args.encrypted})
    if args.retracted is not None:
        scenario = Scenario(**{**scenario.__dict__, "retracted": args.retracted})
    if args.hubs is not None:
        scenario = Scenario(**{**scenario.__dict__, "hubs": args.hubs})
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    protocols = ["gossip", "flood"] if args.protocol == "both" else [args.protocol]
    print(f"seed={seed} scenario={scenario.name} ({scenario.note}) nodes={scenario.nodes} "
          f"alerts={scenario.alerts} rate={scenario.rate:g}/s "
          f"encrypted={scenario.encrypted:g}")  # fmt: skip
    verifier = VerifyCache(DEFAULT_LIMITS)
    summaries: list[Summary] = []
    for protocol in protocols:
        started = time.perf_counter()
        trace = open(args.trace, "w") if args.trace else None  # noqa: SIM115
        try:
            summary = run(scenario, seed, protocol, verifier=verifier, trace=trace)
        except InvariantViolation as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            print(f"reproduce: {repro(scenario, seed, protocol)}", file=sys.stderr)
            return 1
        except Exception:
            traceback.print_exc()
            print(f"ERROR with seed={seed}; reproduce: {repro(scenario, seed, protocol)}",
                  file=sys.stderr)  # fmt: skip
            return 2
        finally:
            if trace is not None:
                trace.close()
        elapsed = time.perf_counter() - started
        print(f"{protocol}: {summary.events:,} events, {summary.sim_seconds:.0f} simulated s "
              f"in {elapsed:.1f} s; trace digest {summary.digest}")  # fmt: skip
        summaries.append(summary)
    print()
    print_table(summaries)
    if args.json:
        Path(args.json).write_text(json.dumps([s.as_dict() for s in summaries], indent=1))
    return 0


def cmd_scenarios(_: argparse.Namespace) -> int:
    for s in SCENARIOS.values():
        print(f"{s.name:16} {s.note}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from node.sim import report

    return report.main(args)


def cmd_bounds(args: argparse.Namespace) -> int:
    from node.sim import bounds

    return bounds.main(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simulate", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="one scenario, gossip and the flooding baseline")
    r.add_argument("--scenario", default="normal", choices=sorted(SCENARIOS))
    r.add_argument("--nodes", type=int, default=100)
    r.add_argument("--alerts", type=int, default=200)
    r.add_argument("--rate", type=float, help="alerts per second, whole network (default 5)")
    r.add_argument("--seed", type=int, help="default: a random seed (printed)")
    r.add_argument(
        "--encrypted", type=float, help="share of alerts encrypted to 4 members (default 0.1)"
    )
    r.add_argument(
        "--retracted", type=float, help="share of alerts retracting the author's last (default 0)"
    )
    r.add_argument(
        "--hubs", type=int, help="members named tree hubs in the roster (default 8; 0: none)"
    )
    r.add_argument("--protocol", choices=("both", "gossip", "flood"), default="both")
    r.add_argument("--trace", help="write every event to this file (large)")
    r.add_argument("--json", help="write the summaries to this file")
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("scenarios", help="list the scenarios")
    s.set_defaults(func=cmd_scenarios)
    m = sub.add_parser("report", help="run the matrix; write docs/simulation.md and plots")
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--jobs", type=int, default=2)
    m.add_argument("--quick", action="store_true", help="N = 10 and 100 only")
    m.add_argument("--docs", default="docs", help="where simulation.md and sim/ are")
    m.add_argument("--json", help="also write every summary to this file")
    m.set_defaults(func=cmd_report)
    b = sub.add_parser("bounds", help="what the graph allows: flooding, fewest hops, rooted trees")
    b.add_argument("--nodes", type=int, default=1000)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--scenario", default="normal", help="whose silent/hostile members to leave out")
    b.add_argument("--hubs", type=int, help="tree hubs in the roster (default 8; 0: none)")
    b.set_defaults(func=cmd_bounds)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in (*COMMANDS, "-h", "--help"):
        args_list.insert(0, "run")
    args = parser().parse_args(args_list)
    if getattr(args, "nodes", 2) < 2:
        print("error: --nodes must be at least 2", file=sys.stderr)
        return 2
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
