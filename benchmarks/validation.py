"""Predicted against measured allreduce on emulated topologies (issue 7's accuracy targets, issue 12's proof).

    sudo python benchmarks/validation.py [--sizes 64KiB:16MiB:x4] [--reps 6] [--max-reps 20] [--only switch4 ...] [--out benchmarks/results]
    python benchmarks/validation.py --refit [--only ...] [--out benchmarks/results]   # judge saved runs again

For every topology: bring it up as an emulation (network namespaces, veth links shaped with
``tc tbf``, routes from ``topologies.Router``), calibrate the model on it with point-to-point
probes only, predict every algorithm at every size with the flow model, and measure the same with
one rank process per host namespace running ``collectives.distributed.all_reduce`` over Gloo
(interleaved rounds; per point the median and its 95% confidence interval; rounds repeat, at
least ``--reps`` and at most ``--max-reps`` times, until every interval is within ±3% of its
median, and a point still wider at the bound is reported as noisy, apart but not dropped; see
:mod:`sim.validate`).

Topologies (links at 100 Mbit/s, low enough that moving bytes, not this shared 2-core machine's
CPU, dominates the time):

* ``switch4``: 4 hosts on one switch;
* ``racks2x3``: two racks of 3 hosts, each rack switch joined to a spine by one uplink of the
  bandwidth of one host link (3:1 oversubscribed);
* ``ring5``: 5 hosts on a ring of point-to-point links (hosts forward for each other);
* ``switch4_400``: the 4-host switch again at a second link rate, 400 Mbit/s (issue 14: the model
  must hold at every rate from 100 Mbit/s to 1 Gbit/s, not only the one it was first checked at).

Targets (on the flat topologies, every flat algorithm): median ``|error|`` <= 8 % over the points of
sizes >= 64 KiB (issue 14; issue 7 asked for 10 %); at >= 90 % of the (topology, size) points, the
predicted best algorithm measures within 5 % of the measured best.

* ``cluster2x2`` (issue 12): 2 machines of 2 hosts (ranks), hosts of a machine joined by fast links
  (160 Mbit/s through the machine's switch), machines joined by slow links (20 Mbit/s) through 2
  NICs per machine, one per host (:func:`topologies.cluster`). The rates are low enough that this
  2-core machine moves the bytes without the CPU becoming the bottleneck, and the inside links 8x
  faster than the outside ones, so that reducing inside a machine first pays. Algorithms: the flat
  ring (``ring:channels=1``: one ring through both machines, leaving each through one NIC), the
  2-channel ring (``ring:channels=2``: the second ring runs the other way through each machine and
  leaves it through the other NIC) and ``hierarchical`` (reduce-scatter inside machines, allreduce
  across them per local rank, each on its own NIC, allgather inside), sizes 1 to 4 MiB. Targets:
  at every size the speedups of the 2-channel ring and of hierarchical over the flat ring measured
  within 15 % of the predicted speedups, and the predicted best the measured best.

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

__all__ = ["TOPOLOGIES", "FLAT", "HIERARCHY", "TARGET_MEDIAN_ERROR", "TARGET_BEST_FRACTION", "TARGET_SPEEDUP_ERROR",
           "main"]

TOPOLOGIES = {
    "switch4": "switch:n=4,bandwidth=100Mbps",
    "racks2x3": "leaf_spine:leaves=2,spines=1,hosts_per_leaf=3,oversubscription=3,bandwidth=100Mbps",
    "ring5": "ring:n=5,bandwidth=100Mbps",
    "switch4_400": "switch:n=4,bandwidth=400Mbps",
    "cluster2x2": "cluster:nodes=2,hosts_per_node=2,nics_per_node=2,bandwidth=20Mbps,intra_bandwidth=160Mbps",
}
#: Issue 7's topologies and the flat algorithms they validate.
FLAT = ("switch4", "racks2x3", "ring5", "switch4_400")
FLAT_ALGORITHMS = ("ring", "tree", "recursive_halving", "recursive_doubling")
#: Issue 12's proof: algorithms, sizes and the baseline the speedups are measured against.
HIERARCHY = {"cluster2x2": {"algorithms": ("ring:channels=1", "ring:channels=2", "hierarchical"),
                            "sizes": "1MiB:4MiB:x2", "baseline": "ring:channels=1"}}
TARGET_MEDIAN_ERROR = 0.08
TARGET_BEST_FRACTION = 0.90
TARGET_FROM_BYTES = 64 << 10
TARGET_SPEEDUP_ERROR = 0.15


def main(argv: list[str] | None = None) -> int:
    from sim.plots import plot_curves
    from sim.results import parse_sizes
    from sim.validate import format_report, refit, validate
    from topologies import from_spec
    from topologies.emulate import emulation_unavailable_reason

    p = argparse.ArgumentParser(prog="validation.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="64KiB:16MiB:x4", help="sizes of the flat topologies (cluster2x2: 1MiB:4MiB:x2)")
    p.add_argument("--reps", type=int, default=6, help="rounds at least (default 6)")
    p.add_argument("--max-reps", type=int, default=20,
                   help="rounds at most, while a point's 95%% interval is wider than ±3%% (default 20)")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds one topology's calibration or measurement may take (default 3600)")
    p.add_argument("--refit", action="store_true",
                   help="measure nothing: judge the runs saved in --out (validation_<topology>.json) again with this "
                        "code's fit and model (sim.validate.refit)")
    p.add_argument("--only", nargs="+", choices=list(TOPOLOGIES), default=list(TOPOLOGIES))
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args(argv)
    reason = None if args.refit else emulation_unavailable_reason()
    if reason is not None:
        print(f"validation.py: error: {reason}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    reports, summaries, all_errors, all_best, verdicts, ok = [], {}, [], [], [], True
    for name in args.only:
        spec = TOPOLOGIES[name]
        case = HIERARCHY.get(name, {})
        algorithms = list(case.get("algorithms", FLAT_ALGORITHMS))
        sizes = parse_sizes(case.get("sizes", args.sizes))
        baseline = case.get("baseline")
        print(f"[{name}] {spec}", file=sys.stderr)
        t0 = time.monotonic()
        if args.refit:
            v = refit(json.loads((out / f"validation_{name}.json").read_text()))
        else:
            v = validate(from_spec(spec), sizes, algorithms, spec=spec, reps=args.reps, max_reps=args.max_reps,
                         timeout=args.timeout, log=sys.stderr)
        summary = {**v.summary(), "spec": spec, "seconds": round(time.monotonic() - t0, 1)}
        if args.refit:
            saved = json.loads((out / f"validation_{name}.json").read_text())
            summary.update(seconds=saved["summary"].get("seconds"), refit=True)
        report = format_report(v, baseline=baseline)
        print(report)
        reports.append(f"## {name}: `{spec}`\n\n```\n{report}\n```\n")
        if name in FLAT:
            all_errors += [abs(e) for e in v.errors(TARGET_FROM_BYTES)]
            all_best += [r["regret"] <= 0.05 for r in v.per_size() if r["size"] >= TARGET_FROM_BYTES]
        if baseline is not None:
            speedups = v.speedups(baseline)
            worst = max(speedups, key=lambda sp: abs(sp.error))
            met = abs(worst.error) <= TARGET_SPEEDUP_ERROR and v.winners_agree()
            ok &= met
            summary["speedups"] = [{"size": sp.size, "algorithm": sp.algorithm, "predicted": sp.predicted,
                                    "measured": sp.measured, "error": sp.error} for sp in speedups]
            summary["winners_agree"] = v.winners_agree()
            verdicts.append(
                f"{name}: speedups over {baseline} measured within {abs(worst.error) * 100:.1f}% of predicted "
                f"(worst: {worst.algorithm} at {worst.size} B, {worst.measured:.2f}x measured, {worst.predicted:.2f}x "
                f"predicted; target <= {TARGET_SPEEDUP_ERROR * 100:.0f}%); predicted best the measured best at "
                f"{'every size' if v.winners_agree() else 'NOT every size'}: {'MET' if met else 'NOT MET'}")
        summaries[name] = summary
        (out / f"validation_{name}.json").write_text(json.dumps({
            "spec": spec, "summary": summary, "params": v.params,
            "per_size": v.per_size(), "records": [r.to_json() for r in v.records],
        }, indent=1))
        plot_curves(v.records, out / f"validation_{name}.png",
                    title=f"{v.topology}: predicted (dashed) vs measured (solid), emulated")
    noisy = [f"{name}: {n['algorithm']} at {n['size']} B (±{n['rel_halfwidth'] * 100:.1f}%)"
             for name, summary in summaries.items() for n in summary["noisy"]]
    bound = "at the run's round bound" if args.refit else f"after {args.max_reps} rounds"
    verdicts.append(f"noisy points (95% interval wider than ±3% {bound}; counted above, not "
                    f"dropped): {len(noisy)}" + (f": {'; '.join(noisy)}" if noisy else ""))
    result = {"topologies": summaries, "reps": args.reps, "max_reps": args.max_reps, "sizes": args.sizes,
              "noisy": noisy}
    if all_errors:
        median = statistics.median(all_errors)
        best = sum(all_best) / len(all_best)
        met = median <= TARGET_MEDIAN_ERROR and best >= TARGET_BEST_FRACTION
        ok &= met
        verdicts.insert(0, (
            f"median |error| {median * 100:.1f}% over {len(all_errors)} points of sizes >= 64 KiB (target <= "
            f"{TARGET_MEDIAN_ERROR * 100:.0f}%); predicted best within 5% of measured best at {best * 100:.0f}% of "
            f"{len(all_best)} (topology, size) points (target >= {TARGET_BEST_FRACTION * 100:.0f}%): "
            f"{'MET' if met else 'NOT MET'}"
        ))
        result.update(median_abs_error=median, best_within_5pct=best)
    result["targets_met"] = ok
    for verdict in verdicts:
        print(verdict)
    (out / "validation_summary.json").write_text(json.dumps(result, indent=1))
    command = " ".join(["python benchmarks/validation.py", *(sys.argv[1:] if argv is None else argv)])
    (out / "validation_report.md").write_text(
        "# Predicted vs measured allreduce on emulated topologies\n\n"
        f"Command: `{command}`\n\n"
        + "\n".join(reports) + "".join(f"\n**{v}**\n" for v in verdicts)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
