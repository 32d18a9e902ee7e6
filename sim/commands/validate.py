"""``collsim validate``: predicted against measured allreduce time on an emulated topology.

Builds the emulation, calibrates the model on it (point-to-point probes only), predicts every
algorithm at every size with the flow model, measures the same with one rank process per host
namespace (``collectives.distributed.all_reduce`` over Gloo), and prints per (algorithm, size)
the predicted and measured time and the error, and per size the predicted and the measured best
algorithm. Exits with status 1 when the median ``|error|`` is above ``--max-error``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["NAME", "HELP", "add_arguments", "run"]

NAME = "validate"
HELP = "compare predicted and measured allreduce times on an emulated topology (needs root)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", required=True, metavar="SPEC",
                        help="topology spec to emulate, e.g. switch:n=4,bandwidth=100Mbps")
    parser.add_argument("--sizes", default="64KiB:16MiB:x4", help="START:END[:xF] or a list (default 64KiB:16MiB:x4)")
    parser.add_argument("--algorithms", default="all", help="comma-separated algorithms or 'all' (default)")
    parser.add_argument("--max-error", type=float, default=0.1,
                        help="fail (exit 1) when the median |relative error| is above this (default 0.1)")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions per point (median; default 5)")
    parser.add_argument("--json", metavar="FILE", help="write predicted and measured records as JSON lines")
    parser.add_argument("--plot", metavar="FILE", help="write the overlay plot (predicted dashed, measured solid)")
    parser.add_argument("--params-out", metavar="FILE", help="also save the calibrated parameters")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before giving up (default 900)")


def _check_out(path: str | None, option: str) -> None:
    if path is not None:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ValueError(f"{option}: folder {folder!r} does not exist")


def run(args: argparse.Namespace) -> int:
    import topologies
    from sim.cli import UsageError
    from sim.commands._args import parse_algorithms
    from sim.results import parse_sizes
    from sim.validate import format_report, validate
    from topologies.emulate import EmulationUnavailable

    sizes = parse_sizes(args.sizes)
    if min(sizes) < 4:
        raise ValueError("--sizes: every size must be at least 4 bytes (one float32)")
    algorithms = parse_algorithms(args.algorithms)
    if not args.max_error > 0:
        raise ValueError(f"--max-error must be a positive fraction, e.g. 0.1; got {args.max_error}")
    if args.reps < 1:
        raise ValueError(f"--reps must be at least 1, got {args.reps}")
    for path, option in ((args.json, "--json"), (args.plot, "--plot"), (args.params_out, "--params-out")):
        _check_out(path, option)
    if args.plot and not args.plot.lower().endswith((".png", ".svg", ".pdf")):
        raise ValueError(f"--plot: use a .png, .svg or .pdf file name, got {args.plot!r}")
    try:
        G = topologies.from_spec(args.topology)
    except (ValueError, OSError) as err:
        raise ValueError(f"--topology: {str(err).splitlines()[0] if str(err) else err}") from None

    try:
        v = validate(G, sizes, algorithms, spec=args.topology, reps=args.reps, timeout=args.timeout, log=sys.stderr)
    except EmulationUnavailable as err:
        raise UsageError(f"collsim: error: {err}") from None
    print(format_report(v))
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
    median = v.median_abs_error()
    if median > args.max_error:
        print(f"collsim: validation failed: median |error| {median * 100:.1f}% > --max-error {args.max_error * 100:.1f}%",
              file=sys.stderr)
        return 1
    return 0
