"""Predicted against measured allreduce on three emulated topologies (issue 7's accuracy targets).

    sudo python benchmarks/validation.py [--sizes 64KiB:4MiB:x4] [--reps 5] [--only switch4 ...] [--out benchmarks/results]

For every topology: bring it up as an emulation (network namespaces, veth links shaped with
``tc tbf``, routes from ``topologies.Router``), calibrate the model on it with point-to-point
probes only, predict every algorithm at every size with the flow model, and measure the same with
one rank process per host namespace running ``collectives.distributed.all_reduce`` over Gloo
(interleaved repetitions, median; see :mod:`sim.validate`).

Topologies (links at 100 Mbit/s, low enough that moving bytes, not this shared 2-core machine's
CPU, dominates the time):

* ``switch4``: 4 hosts on one switch;
* ``racks2x3``: two racks of 3 hosts, each rack switch joined to a spine by one uplink of the
  bandwidth of one host link (3:1 oversubscribed);
* ``ring5``: 5 hosts on a ring of point-to-point links (hosts forward for each other).

Targets: median ``|error|`` <= 10 % over the points of sizes >= 64 KiB; at >= 90 % of the
(topology, size) points, the predicted best algorithm measures within 5 % of the measured best.

Writes into ``--out``: ``validation_<topology>.json`` (records of both sources, calibrated
parameters, summary), ``validation_<topology>.png`` (overlay: predicted dashed, measured solid),
``validation_report.md`` (the tables) and ``validation_summary.json`` (the summary).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

__all__ = ["TOPOLOGIES", "TARGET_MEDIAN_ERROR", "TARGET_BEST_FRACTION", "main"]

TOPOLOGIES = {
    "switch4": "switch:n=4,bandwidth=100Mbps",
    "racks2x3": "leaf_spine:leaves=2,spines=1,hosts_per_leaf=3,oversubscription=3,bandwidth=100Mbps",
    "ring5": "ring:n=5,bandwidth=100Mbps",
}
TARGET_MEDIAN_ERROR = 0.10
TARGET_BEST_FRACTION = 0.90
TARGET_FROM_BYTES = 64 << 10


def main(argv: list[str] | None = None) -> int:
    from collectives.algorithms import ALGORITHMS
    from sim.plots import plot_curves
    from sim.results import parse_sizes
    from sim.validate import format_report, validate
    from topologies import from_spec
    from topologies.emulate import emulation_unavailable_reason

    p = argparse.ArgumentParser(prog="validation.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="64KiB:4MiB:x4")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--only", nargs="+", choices=list(TOPOLOGIES), default=list(TOPOLOGIES))
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args(argv)
    reason = emulation_unavailable_reason()
    if reason is not None:
        print(f"validation.py: error: {reason}", file=sys.stderr)
        return 2
    sizes = parse_sizes(args.sizes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    algorithms = list(ALGORITHMS)

    reports, summaries, all_errors, all_best = [], {}, [], []
    for name in args.only:
        spec = TOPOLOGIES[name]
        print(f"[{name}] {spec}", file=sys.stderr)
        t0 = time.monotonic()
        v = validate(from_spec(spec), sizes, algorithms, spec=spec, reps=args.reps, log=sys.stderr)
        summary = {**v.summary(), "spec": spec, "seconds": round(time.monotonic() - t0, 1)}
        summaries[name] = summary
        report = format_report(v)
        print(report)
        reports.append(f"## {name}: `{spec}`\n\n```\n{report}\n```\n")
        all_errors += [abs(e) for e in v.errors(TARGET_FROM_BYTES)]
        all_best += [r["regret"] <= 0.05 for r in v.per_size() if r["size"] >= TARGET_FROM_BYTES]
        (out / f"validation_{name}.json").write_text(json.dumps({
            "spec": spec, "summary": summary, "params": v.params,
            "per_size": v.per_size(), "records": [r.to_json() for r in v.records],
        }, indent=1))
        plot_curves(v.records, out / f"validation_{name}.png",
                    title=f"{v.topology}: predicted (dashed) vs measured (solid), emulated")
    median = statistics.median(all_errors)
    best = sum(all_best) / len(all_best)
    ok = median <= TARGET_MEDIAN_ERROR and best >= TARGET_BEST_FRACTION
    verdict = (
        f"median |error| {median * 100:.1f}% over {len(all_errors)} points of sizes >= 64 KiB (target <= "
        f"{TARGET_MEDIAN_ERROR * 100:.0f}%); predicted best within 5% of measured best at {best * 100:.0f}% of "
        f"{len(all_best)} (topology, size) points (target >= {TARGET_BEST_FRACTION * 100:.0f}%): "
        f"{'MET' if ok else 'NOT MET'}"
    )
    print(verdict)
    (out / "validation_summary.json").write_text(json.dumps({
        "topologies": summaries, "median_abs_error": median, "best_within_5pct": best, "targets_met": ok,
        "sizes": sizes, "reps": args.reps,
    }, indent=1))
    (out / "validation_report.md").write_text(
        "# Predicted vs measured allreduce on emulated topologies\n\n"
        f"Command: `python benchmarks/validation.py --sizes {args.sizes} --reps {args.reps}`\n\n"
        + "\n".join(reports) + f"\n**{verdict}**\n"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
