"""``collsim calibrate``: fit alpha, bandwidth efficiency and gamma from point-to-point probes.

Two ways to run it:

* ``collsim calibrate --topology SPEC --out calib.json`` as root on one machine: the topology is
  emulated (network namespaces, ``tc tbf`` links) and one probe process runs per host namespace.
* From real collective runs: ``collsim calibrate --from all_reduce_perf.txt --topology SPEC --fit
  1MiB,16GiB --out calib.json`` reads nccl-tests output (or collsim JSON lines of measured records),
  fits the model's latency and bandwidth terms at the one or two ``--fit`` sizes and prints every
  size of the file predicted against measured (the fitted ones marked).
* Under torchrun on a real cluster (every rank runs the command; ``RANK``, ``WORLD_SIZE`` and
  ``MASTER_ADDR`` come from torchrun): ``torchrun --nnodes=2 --nproc-per-node=1 ... -m sim
  calibrate --topology SPEC --out calib.json``; rank ``i`` is ``endpoints[i]`` of the topology and
  rank 0 writes the file.

The file is a ``collsim-params/1`` parameter file (``collsim simulate --params calib.json``).
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["NAME", "HELP", "add_arguments", "run"]

NAME = "calibrate"
HELP = "fit the cost model (alpha, bandwidth efficiency, gamma) from point-to-point probes and reduction timing"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", required=True, metavar="SPEC",
                        help="topology spec (nominal bandwidths; emulated unless run under torchrun)")
    parser.add_argument("--out", required=True, metavar="FILE", help="parameter file to write (JSON)")
    parser.add_argument("--sizes", default=None, help="probe sizes, START:END[:xF] or a list (default 16KiB:4MiB:x4 plus 8 B)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per probe (median; default 5)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before giving up (default 300)")
    parser.add_argument("--from", dest="from_file", metavar="FILE", default=None,
                        help="fit to measured collectives instead of probing: nccl-tests output (all_reduce_perf, its "
                             "exact layout) or collsim JSON lines of measured records")
    parser.add_argument("--fit", metavar="SIZES", default=None,
                        help="with --from: the one or two sizes to fit on, e.g. 1MiB,16GiB (default: the smallest and "
                             "largest in the file)")
    parser.add_argument("--algorithms", default=None,
                        help="with --from: what the measured library may have run (default: ring,tree and, simulated "
                             "only, nvls/collnet where the topology declares them); the fastest is fitted at each size")
    parser.add_argument("--nranks", type=int, default=None,
                        help="with --from: world size (default: the file's '# Rank' lines, else every endpoint)")
    parser.add_argument("--in-place", action="store_true", help="with --from: use nccl-tests' in-place columns")


def run(args: argparse.Namespace) -> int:
    import topologies
    from sim.calibrate import PROBE_SIZES, calibrate_emulation, calibrate_torchrun, format_params
    from sim.cli import UsageError
    from sim.commands._args import check_output
    from sim.params import save_params
    from sim.results import parse_sizes

    if args.from_file:
        return _run_from(args)
    if args.reps < 1:
        raise ValueError(f"--reps must be at least 1, got {args.reps}")
    sizes = parse_sizes(args.sizes) if args.sizes else list(PROBE_SIZES)
    if len({s for s in sizes if s > 64}) < 1:
        raise ValueError("--sizes: give at least one size above 64 bytes (the bandwidth probes)")
    if 8 not in sizes:
        sizes = [*sizes, 8]
    check_output(args.out, "--out")
    try:
        G = topologies.from_spec(args.topology)
    except (ValueError, OSError) as err:
        raise ValueError(f"--topology: {str(err).splitlines()[0] if str(err) else err}") from None

    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # one rank of a torchrun job
        params = calibrate_torchrun(G, args.out, sizes=sizes, reps=args.reps, timeout=args.timeout)
        if params is not None:
            print(format_params(params))
            print(f"wrote {args.out}")
        return 0

    from topologies.emulate import Emulation, EmulationUnavailable

    try:
        with Emulation(G, spec=args.topology) as emu:
            print(f"calibrate: emulation {emu.prefix} up", file=sys.stderr)
            params = calibrate_emulation(emu, sizes=sizes, reps=args.reps, timeout=args.timeout, log=sys.stderr)
    except EmulationUnavailable as err:
        raise UsageError(f"collsim: error: {err}") from None
    save_params(params, args.out)
    print(format_params(params))
    print(f"wrote {args.out}")
    return 0


def _run_from(args: argparse.Namespace) -> int:
    """``--from FILE``: fit the latency and bandwidth terms to measured collective times."""
    import topologies
    from sim.calibrate import fit_measured, read_measured, read_nccl_tests
    from sim.commands._args import check_output, parse_option
    from sim.params import save_params
    from sim.results import parse_sizes

    check_output(args.out, "--out")
    try:
        G = topologies.from_spec(args.topology)
    except (ValueError, OSError) as err:
        raise ValueError(f"--topology: {str(err).splitlines()[0] if str(err) else err}") from None
    if args.in_place:
        measured = parse_option(lambda f: read_nccl_tests(f, in_place=True), args.from_file, "--from")
    else:
        measured = parse_option(read_measured, args.from_file, "--from")
    fit = parse_option(parse_sizes, args.fit, "--fit") if args.fit else sorted({min(measured.times), max(measured.times)})
    algorithms = None
    if args.algorithms:
        from sim.select import check_algorithm

        algorithms = [parse_option(check_algorithm, a.strip(), "--algorithms") for a in args.algorithms.split(",") if a.strip()]
    if args.nranks is not None and args.nranks < 2:
        raise ValueError(f"--nranks must be >= 2, got {args.nranks}")
    params = parse_option(lambda f: fit_measured(G, measured, f, algorithms=algorithms, nranks=args.nranks), fit, "--fit")
    save_params(params, args.out)
    cal = params.extra["calibration"]
    print(f"# collsim calibrate --from {args.from_file}: {cal['collective']} on {cal['nranks']} ranks of {G.graph.get('name')}")
    print(f"# fitted at {', '.join(str(s) for s in cal['fitted_sizes'])} B: latency x{cal['latency_factor']:.4g}, "
          f"bandwidth x{cal['bandwidth_factor']:.4g} (link roles: {', '.join(cal['bandwidth_roles']) or 'all'})")
    print(f"#{'size(B)':>12} {'measured(us)':>13} {'predicted(us)':>14} {'error':>8}  model pick")
    for p in cal["points"]:
        mark = "  (fitted)" if p["fitted"] else ""
        pick = p["algorithm"] + (f"/{p['protocol']}" if p["protocol"] else "")
        print(f"{p['size']:>13} {p['measured_us']:>13.2f} {p['predicted_us']:>14.2f} {100 * p['error']:>+7.1f}%  {pick}{mark}")
    med = cal["median_abs_error_unfitted"]
    if med is not None:
        print(f"# median |error| over the sizes not fitted: {100 * med:.1f}%")
    print(f"wrote {args.out} (collsim simulate --params {args.out})")
    return 0
