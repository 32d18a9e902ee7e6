"""``collsim calibrate``: fit alpha, bandwidth efficiency and gamma from point-to-point probes.

Two ways to run it:

* ``collsim calibrate --topology SPEC --out calib.json`` as root on one machine: the topology is
  emulated (network namespaces, ``tc tbf`` links) and one probe process runs per host namespace.
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


def run(args: argparse.Namespace) -> int:
    import topologies
    from sim.calibrate import PROBE_SIZES, calibrate_emulation, calibrate_torchrun, format_params
    from sim.cli import UsageError
    from sim.params import save_params
    from sim.results import parse_sizes

    if args.reps < 1:
        raise ValueError(f"--reps must be at least 1, got {args.reps}")
    sizes = parse_sizes(args.sizes) if args.sizes else list(PROBE_SIZES)
    if len({s for s in sizes if s > 64}) < 1:
        raise ValueError("--sizes: give at least one size above 64 bytes (the bandwidth probes)")
    if 8 not in sizes:
        sizes = [*sizes, 8]
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise ValueError(f"--out: folder {out_dir!r} does not exist")
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
