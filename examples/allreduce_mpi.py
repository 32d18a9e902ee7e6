"""Benchmark collsim's allreduce algorithms over MPI against MPI_Allreduce, nccl-tests style.

    mpiexec -n 4 python examples/allreduce_mpi.py
    mpiexec -n 4 python examples/allreduce_mpi.py -b 4K -e 64M -f 2 --algorithms native,ring --json out.jsonl

For every message size each algorithm runs once on fresh data and its result is compared with
``MPI_Allreduce`` (``native``) on the same data, element by element (``#wrong``, summed over
ranks; inputs are small integers, so the comparison is exact in every type), then it is timed:
``-w`` warm-up and ``-n`` timed iterations, ``time(us)`` the mean per iteration on the slowest rank,
as nccl-tests reports it. ``algbw = size / time`` and ``busbw = algbw * 2 (n - 1) / n`` in decimal
GB/s. After each size a comment names the fastest algorithm; the footer gives the average bus
bandwidth per algorithm. Rank 0 prints; ``--json`` writes the same rows as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import numpy as np
from mpi4py import MPI

from collectives import ALGORITHMS
from collectives import mpi as cmpi

__all__ = ["main", "parse_size"]

NATIVE = "native"
DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
          "uint64", "complex64", "complex128"]
OPS = [name.lower() for name in cmpi.OPS]
HEADER = (f"#{'size(B)':>12} {'count':>12} {'type':>10} {'redop':>6} {'algorithm':>19} {'time(us)':>10} "
          f"{'algbw(GB/s)':>12} {'busbw(GB/s)':>12} {'#wrong':>7}")


class _Parser(argparse.ArgumentParser):
    """Reports usage errors from rank 0 only (every rank exits 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        if MPI.COMM_WORLD.Get_rank() == 0:
            self.print_usage(sys.stderr)
            sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def parse_size(text: str) -> int:
    """``"4K"`` -> 4096, ``"64M"`` -> 67108864, ``"1G"``, or plain bytes."""
    match = re.fullmatch(r"(\d+)\s*([KMG]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use bytes or K/M/G, e.g. 4K)")
    return int(match.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[match.group(2).upper()]


def _algorithms(text: str) -> list[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    choices = [NATIVE, *ALGORITHMS, cmpi.AUTO]
    bad = [a for a in names if a not in choices]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown algorithm(s) {', '.join(bad) or '(none)'}; choose from: {', '.join(choices)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="allreduce_mpi.py", description=__doc__.splitlines()[0])
    p.add_argument("-b", "--minbytes", type=parse_size, default=parse_size("1K"), help="smallest size (default 1K)")
    p.add_argument("-e", "--maxbytes", type=parse_size, default=parse_size("4M"), help="largest size (default 4M)")
    p.add_argument("-f", "--stepfactor", type=int, default=4, help="size multiplication factor (default 4)")
    p.add_argument("-n", "--iters", type=int, default=20, help="timed iterations per size and algorithm (default 20)")
    p.add_argument("-w", "--warmup_iters", type=int, default=3, help="warm-up iterations (default 3)")
    p.add_argument("--algorithms", type=_algorithms, default=[NATIVE, *ALGORITHMS],
                   help=f"comma-separated, from {NATIVE}, {', '.join(ALGORITHMS)}, auto (default: all but auto)")
    p.add_argument("--op", choices=OPS, default="sum", help="reduction (default sum)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="element type (default float32)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON lines (source: measured)")
    return p


def input_data(dtype: np.dtype, count: int, rank: int) -> np.ndarray:
    """Small integers, so every op is exact in every type and results compare exactly."""
    values = (np.arange(count) * 7 + rank * 3) % 5
    return (values if dtype.kind == "u" else values - 2).astype(dtype)


def timed(comm: MPI.Intracomm, run, buf: np.ndarray, warmup: int, iters: int) -> float:
    """Mean seconds per call on the slowest rank."""
    for _ in range(warmup):
        run(buf)
    comm.Barrier()
    start = MPI.Wtime()
    for _ in range(iters):
        run(buf)
    elapsed = (MPI.Wtime() - start) / max(iters, 1)
    return comm.allreduce(elapsed, op=MPI.MAX)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, nranks = comm.Get_rank(), comm.Get_size()
    dtype = np.dtype(args.dtype)
    op = cmpi.OPS[args.op.upper()]
    problems = []
    if dtype.kind not in op.kinds:
        problems.append(f"--op {args.op} is not defined for --dtype {args.dtype} by MPI")
    if args.minbytes < 1 or args.maxbytes < args.minbytes:
        problems.append("sizes must satisfy 1 <= -b <= -e")
    if args.stepfactor < 2 or args.iters < 1 or args.warmup_iters < 0:
        problems.append("-f must be >= 2, -n >= 1, -w >= 0")
    if problems:
        build_parser().error("; ".join(problems))

    def run_with(algorithm: str):
        if algorithm == NATIVE:
            return lambda buf: comm.Allreduce(MPI.IN_PLACE, buf, op=op.mpi)
        return lambda buf: cmpi.all_reduce(buf, comm, op=op.mpi, algorithm=algorithm, check=False)

    out = sys.stdout if rank == 0 else None
    jsonl = open(args.json, "w") if (args.json and rank == 0) else None  # noqa: SIM115 - closed below
    if out:
        print(f"# collsim allreduce over MPI: {nranks} ranks, {' '.join(MPI.Get_library_version().split()[:3])}",
              file=out)
        print(f"# native = MPI_Allreduce; busbw = algbw * 2(n-1)/n; time = mean of {args.iters} iterations "
              f"after {args.warmup_iters} warm-up, slowest rank", file=out)
        print("#", file=out)
        print(HEADER, file=out, flush=True)
    busbw_sum = dict.fromkeys(args.algorithms, 0.0)
    nsizes = 0
    factor = 2 * (nranks - 1) / nranks
    size = args.minbytes
    wrong_total = 0
    while size <= args.maxbytes:
        count = max(size // dtype.itemsize, 1)
        nbytes = count * dtype.itemsize
        want = input_data(dtype, count, rank)
        comm.Allreduce(MPI.IN_PLACE, want, op=op.mpi)
        times = {}
        for algorithm in args.algorithms:
            run = run_with(algorithm)
            buf = input_data(dtype, count, rank)
            if algorithm == NATIVE:
                run(buf)
            else:
                cmpi.all_reduce(buf, comm, op=op.mpi, algorithm=algorithm, check=True)
            wrong = comm.allreduce(int(np.count_nonzero(buf != want)))
            seconds = timed(comm, run, buf, args.warmup_iters, args.iters)
            times[algorithm] = seconds
            algbw = nbytes / seconds / 1e9
            busbw = algbw * factor
            busbw_sum[algorithm] += busbw
            wrong_total += wrong
            if out:
                print(f" {nbytes:>12} {count:>12} {dtype.name:>10} {args.op:>6} {algorithm:>19} {seconds * 1e6:>10.1f} "
                      f"{algbw:>12.3f} {busbw:>12.3f} {wrong:>7}", file=out, flush=True)
            if jsonl:
                record = {"source": "measured", "collective": "allreduce", "algorithm": algorithm, "nranks": nranks,
                          "size": nbytes, "count": count, "dtype": dtype.name, "op": args.op,
                          "time_us": seconds * 1e6, "algbw": algbw, "busbw": busbw, "wrong": wrong}
                jsonl.write(json.dumps(record) + "\n")
        if out:
            best = min(times, key=times.get)
            print(f"#{'':>12} best at {nbytes} B: {best}", file=out, flush=True)
        nsizes += 1
        size *= args.stepfactor
    if out:
        print("#", file=out)
        print(f"# Out of bounds values : {wrong_total} {'OK' if wrong_total == 0 else 'FAILED'}", file=out)
        for algorithm, total in busbw_sum.items():
            print(f"# Avg bus bandwidth    : {total / max(nsizes, 1):.3f} GB/s  ({algorithm})", file=out)
        print("#", file=out, flush=True)
    if jsonl:
        jsonl.close()
    return 1 if wrong_total else 0


if __name__ == "__main__":
    sys.exit(main())
