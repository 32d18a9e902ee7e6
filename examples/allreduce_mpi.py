"""Benchmark collsim's allreduce algorithms over MPI against ``MPI_Allreduce``, nccl-tests style.

Run one process per rank with mpiexec::

    mpiexec -n 4 python examples/allreduce_mpi.py
    mpiexec -n 4 python examples/allreduce_mpi.py -b 8 -e 64M -f 2 -n 20 -w 5 \\
        --algorithms ring,tree,recursive_halving,recursive_doubling,auto,native --op sum --dtype float32 \\
        --json allreduce_mpi.jsonl

The algorithms that follow the hardware (``hierarchical``, ``ring`` and ``tree`` with channels:
``ring:channels=2``) run on the layout ``Split_type(COMM_TYPE_SHARED)`` finds, the ranks that share
a node; ``COLLSIM_RANKS_PER_NODE=2`` (or ``COLLSIM_LAYOUT=0,0,1,1``) simulates nodes on one machine,
``COLLSIM_NICS_PER_NODE`` sets the channels ``auto`` runs::

    COLLSIM_RANKS_PER_NODE=2 mpiexec -n 4 python examples/allreduce_mpi.py \\
        --algorithms ring,ring:channels=2,hierarchical,tree,native

The same table as ``examples/allreduce.py`` (the torch.distributed one), with ``native`` meaning
``MPI_Allreduce``. For every size and algorithm the script first checks the result against native
on the same input (``#wrong``: elements that differ, summed over ranks; the inputs are small
integers, so the comparison is exact in every type), then times ``-n`` in-place iterations after
``-w`` warm-up ones; ``time(us)`` is the slowest rank's mean. ``busbw = algbw * 2 (n - 1) / n``,
decimal GB/s; then the best algorithm per size and ``# Avg bus bandwidth`` per algorithm.
``--json FILE`` writes the same records as JSON lines (``"source": "measured"``). Progress goes to
stderr; rank 0 prints. The flags, sweep, table and summary are :mod:`sim.bench`'s; this script is
the MPI transport.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from mpi4py import MPI

from collectives import mpi as cmpi
from sim import bench
from sim.results import Record

__all__ = ["main"]

DTYPES = ("float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
          "uint64", "complex64", "complex128")
OPS = tuple(name.lower() for name in cmpi.OPS)


class _Parser(argparse.ArgumentParser):
    """Reports usage errors from rank 0 only (every rank exits 2)."""

    def error(self, message: str):
        if MPI.COMM_WORLD.Get_rank() == 0:
            self.print_usage(sys.stderr)
            sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="allreduce_mpi.py", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bench.add_arguments(parser, ops=OPS, dtypes=DTYPES, check_help="check every result against MPI_Allreduce")
    return parser


def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    bench.validate_arguments(parser, args, itemsize=np.dtype(args.dtype).itemsize)
    op = cmpi.OPS[args.op.upper()]
    if np.dtype(args.dtype).kind not in op.kinds:
        allowed = [d for d in DTYPES if np.dtype(d).kind in op.kinds]
        parser.error(f"--op {args.op} is not defined for --dtype {args.dtype} by MPI; use one of: {', '.join(allowed)}")


def _runner(comm: MPI.Intracomm, algorithm: str, op: MPI.Op):
    if algorithm == bench.NATIVE:
        return lambda buf: comm.Allreduce(MPI.IN_PLACE, buf, op=op)
    return lambda buf: cmpi.all_reduce(buf, comm, op=op, algorithm=algorithm, check=False)


def _check_input(count: int, dtype: np.dtype, rank: int) -> np.ndarray:
    """Small integers: every op is exact in every type, so results compare exactly."""
    values = (np.arange(count) * 7 + rank * 3) % 5
    return (values if dtype.kind == "u" else values - 2).astype(dtype)


def run(args: argparse.Namespace) -> list[Record]:
    """Benchmark on MPI.COMM_WORLD: the transport's part of :func:`sim.bench.run_sweep`."""
    comm = MPI.COMM_WORLD
    rank, nranks = comm.Get_rank(), comm.Get_size()
    dtype = np.dtype(args.dtype)
    op = cmpi.OPS[args.op.upper()].mpi

    def reference(count: int) -> np.ndarray:
        ref = _check_input(count, dtype, rank)
        comm.Allreduce(MPI.IN_PLACE, ref, op=op)
        return ref

    def measure(algorithm: str, count: int, ref: np.ndarray | None) -> tuple[float, int | None]:
        fn = _runner(comm, algorithm, op)
        wrong = None
        if ref is not None:
            x = _check_input(count, dtype, rank)
            if algorithm == bench.NATIVE:
                fn(x)
            else:  # the first call also checks that all ranks agree on dtype, size, op, algorithm
                cmpi.all_reduce(x, comm, op=op, algorithm=algorithm, check=True)
            wrong = comm.allreduce(int(np.count_nonzero(x != ref)))
        buf = np.ones(count, dtype=dtype)
        for _ in range(args.warmup_iters):
            fn(buf)
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(args.iters):
            fn(buf)
        elapsed = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        return elapsed / args.iters * 1e6, wrong

    library = " ".join(MPI.Get_library_version().split()[:3])
    return bench.run_sweep(args, measure, reference, rank=rank, nranks=nranks, itemsize=dtype.itemsize, backend="mpi",
                           transport=f"backend mpi ({library}) layout {cmpi.find_layout(comm).describe()}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate(parser, args)
    records = run(args)
    failed = any(r.wrong for r in records)  # None when nothing was checked
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
