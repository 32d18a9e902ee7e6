"""``collsim validate``: predicted against measured allreduce time on an emulated topology.

Builds the emulation, calibrates the model on it (point-to-point probes only), predicts every
algorithm at every size with the flow model, measures the same with one rank process per host
namespace (``collectives.distributed.all_reduce`` over Gloo), and prints per (algorithm, size)
the predicted and measured time and the error, and per size the predicted and the measured best
algorithm. Algorithms are specs with optional parameters (``ring:channels=2``); both sides run them
on the topology's layout (which endpoints share a machine). With ``--baseline`` it also prints each
algorithm's speedup over the baseline, predicted and measured.

Exits with status 1 when the median ``|error|`` is above ``--max-error``, when a speedup over
``--baseline`` is off by more than ``--max-speedup-error``, or (with ``--winners-from``) when the
predicted best is not the measured best at some size from there on.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["NAME", "HELP", "add_arguments", "run"]

NAME = "validate"
HELP = "compare predicted and measured allreduce times on an emulated topology (needs root)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", required=True, metavar="SPEC",
                        help="topology spec to emulate, e.g. switch:n=4,bandwidth=100Mbps")
    parser.add_argument("--sizes", default="64KiB:16MiB:x4", help="START:END[:xF] or a list (default 64KiB:16MiB:x4)")
    parser.add_argument("--algorithms", default="all",
                        help="comma-separated algorithm specs (ring,ring:channels=2,hierarchical) or 'all' (default)")
    parser.add_argument("--max-error", type=float, default=0.1,
                        help="fail (exit 1) when the median |relative error| is above this (default 0.1)")
    parser.add_argument("--reps", type=int, default=6,
                        help="interleaved repetitions per point, at least (median and its 95%% interval; default 6)")
    parser.add_argument("--max-reps", type=int, default=20,
                        help="repeat up to this many times while a point's 95%% interval is wider than --ci; "
                             "points still wider are reported as noisy (default 20)")
    parser.add_argument("--ci", type=float, default=0.03, metavar="REL",
                        help="relative half-width of the 95%% interval to reach (default 0.03: ±3%%)")
    parser.add_argument("--baseline", metavar="ALGORITHM",
                        help="also compare every algorithm's speedup over this one (one of --algorithms)")
    parser.add_argument("--max-speedup-error", type=float, default=0.15,
                        help="with --baseline: fail when a predicted speedup is off by more than this (default 0.15)")
    parser.add_argument("--winners-from", metavar="SIZE",
                        help="fail unless the predicted best is the measured best at every size from SIZE (e.g. 1MiB)")
    parser.add_argument("--json", metavar="FILE", help="write predicted and measured records as JSON lines")
    parser.add_argument("--plot", metavar="FILE", help="write the overlay plot (predicted dashed, measured solid)")
    parser.add_argument("--params-out", metavar="FILE", help="also save the calibrated parameters")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before giving up (default 900)")


def run(args: argparse.Namespace) -> int:
    import topologies
    from collectives.algorithms import ALGORITHMS
    from collectives.plan import split_algorithms
    from sim.cli import UsageError
    from sim.commands._args import check_output, parse_sizes_of
    from sim.results import parse_sizes
    from sim.validate import format_report, validate
    from topologies.emulate import EmulationUnavailable

    sizes = parse_sizes_of(args.sizes, "float32")  # the runs allreduce float32
    try:
        algorithms = list(ALGORITHMS) if args.algorithms.strip() == "all" else split_algorithms(args.algorithms)
    except ValueError as err:
        raise ValueError(f"--algorithms: {err}") from None
    if not algorithms:
        raise ValueError("--algorithms: give at least one algorithm")
    if args.baseline is not None and args.baseline not in algorithms:
        raise ValueError(f"--baseline {args.baseline!r} must be one of --algorithms: {', '.join(algorithms)}")
    winners_from = None
    if args.winners_from is not None:
        try:
            (winners_from,) = parse_sizes(args.winners_from)
        except ValueError as err:
            raise ValueError(f"--winners-from: {err}") from None
    if not args.max_error > 0:
        raise ValueError(f"--max-error must be a positive fraction, e.g. 0.1; got {args.max_error}")
    if not args.max_speedup_error > 0:
        raise ValueError(f"--max-speedup-error must be a positive fraction, e.g. 0.15; got {args.max_speedup_error}")
    if args.reps < 1:
        raise ValueError(f"--reps must be at least 1, got {args.reps}")
    if args.max_reps < args.reps:
        raise ValueError(f"--max-reps must be at least --reps ({args.reps}), got {args.max_reps}")
    if not 0 < args.ci < 1:
        raise ValueError(f"--ci must be a fraction between 0 and 1 (0.03 for ±3%), got {args.ci}")
    check_output(args.json, "--json")
    check_output(args.plot, "--plot", figure=True)
    check_output(args.params_out, "--params-out")
    try:
        G = topologies.from_spec(args.topology)
    except (ValueError, OSError) as err:
        raise ValueError(f"--topology: {str(err).splitlines()[0] if str(err) else err}") from None

    try:
        v = validate(G, sizes, algorithms, spec=args.topology, reps=args.reps, max_reps=args.max_reps, rel=args.ci,
                     timeout=args.timeout, log=sys.stderr)
    except EmulationUnavailable as err:
        raise UsageError(f"collsim: error: {err}") from None
    print(format_report(v, baseline=args.baseline))
    if args.json:
        from sim.results import write_jsonl

        write_jsonl(v.records, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        from sim.plots import plot_curves

        plot_curves(v.records, args.plot, title=f"{v.topology}: predicted (dashed) vs measured (solid)")
        print(f"wrote {args.plot}")
    if args.params_out:
        with open(args.params_out, "w") as f:
            json.dump(v.params, f, indent=2)
    failures = []
    median = v.median_abs_error()
    if median > args.max_error:
        failures.append(f"median |error| {median * 100:.1f}% > --max-error {args.max_error * 100:.1f}%")
    if args.baseline is not None:
        off = [sp for sp in v.speedups(args.baseline) if abs(sp.error) > args.max_speedup_error]
        failures += [f"{sp.algorithm} at {sp.size} B: {sp.measured:.2f}x faster than {args.baseline} measured, "
                     f"{sp.predicted:.2f}x predicted (> --max-speedup-error {args.max_speedup_error * 100:.0f}%)"
                     for sp in off]
    if winners_from is not None:
        failures += [f"at {r['size']} B the predicted best {r['predicted_best']} is not the measured best "
                     f"{r['measured_best']}" for r in v.per_size() if r["size"] >= winners_from
                     and r["predicted_best"] != r["measured_best"]]
    for failure in failures:
        print(f"collsim: validation failed: {failure}", file=sys.stderr)
    return 1 if failures else 0
