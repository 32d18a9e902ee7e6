"""Benchmark collsim's allreduce algorithms over MPI against ``MPI_Allreduce``, nccl-tests style.

Run one process per rank with mpiexec::

    mpiexec -n 4 python examples/allreduce_mpi.py
    mpiexec -n 4 python examples/allreduce_mpi.py -b 8 -e 64M -f 2 -n 20 -w 5 \\
        --algorithms ring,tree,recursive_halving,recursive_doubling,auto,native --op sum --dtype float32 \\
        --json allreduce_mpi.jsonl

The same table as ``examples/allreduce.py`` (the torch.distributed one), with ``native`` meaning
``MPI_Allreduce``. For every size and algorithm the script first checks the result against native
on the same input (``#wrong``: elements that differ, summed over ranks; the inputs are small
integers, so the comparison is exact in every type), then times ``-n`` in-place iterations after
``-w`` warm-up ones; ``time(us)`` is the slowest rank's mean. ``busbw = algbw * 2 (n - 1) / n``,
decimal GB/s; then the best algorithm per size and ``# Avg bus bandwidth`` per algorithm.
``--json FILE`` writes the same records as JSON lines (``"source": "measured"``). Progress goes to
stderr; rank 0 prints.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
from mpi4py import MPI

from collectives import ALGORITHMS
from collectives import mpi as cmpi

__all__ = ["main", "parse_size"]

NATIVE = "native"
CHOICES = (*ALGORITHMS, cmpi.AUTO, NATIVE)
DTYPES = ("float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
          "uint64", "complex64", "complex128")
#: nccl-tests' short type names where it has one
TYPE_NAMES = {"float32": "float", "float64": "double", "float16": "half"}
OPS = tuple(name.lower() for name in cmpi.OPS)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class _Parser(argparse.ArgumentParser):
    """Reports usage errors from rank 0 only (every rank exits 2)."""

    def error(self, message: str):
        if MPI.COMM_WORLD.Get_rank() == 0:
            self.print_usage(sys.stderr)
            sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def parse_size(text: str) -> int:
    """Parse ``8``, ``64K``, ``64M``, ``1G`` (binary units, as nccl-tests) into bytes."""
    t = text.strip().upper().removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    try:
        value = int(t[: len(t) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 8, 64K, 64M or 1G, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return value


def _algorithms(text: str) -> list[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in names if a not in CHOICES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown algorithm(s) {', '.join(bad) or '(none)'}; choose from: {', '.join(CHOICES)}")
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="allreduce_mpi.py", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-b", "--minbytes", type=parse_size, default=parse_size("16"), help="smallest size (bytes; K/M/G)")
    parser.add_argument("-e", "--maxbytes", type=parse_size, default=parse_size("16M"), help="largest size")
    parser.add_argument("-f", "--stepfactor", type=int, default=4, help="multiply the size by this each step")
    parser.add_argument("-n", "--iters", type=int, default=10, help="timed iterations per size and algorithm")
    parser.add_argument("-w", "--warmup_iters", type=int, default=2, help="warm-up iterations")
    parser.add_argument("--algorithms", type=_algorithms,
                        default=_algorithms("ring,tree,recursive_halving,recursive_doubling,native"),
                        help=f"comma-separated, from: {', '.join(CHOICES)}")
    parser.add_argument("--op", choices=OPS, default="sum")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="check every result against MPI_Allreduce")
    parser.add_argument("--json", metavar="FILE", help="also write the records as JSON lines")
    return parser


def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.maxbytes < args.minbytes:
        parser.error(f"-e/--maxbytes ({args.maxbytes}) must be >= -b/--minbytes ({args.minbytes})")
    if args.stepfactor < 2:
        parser.error(f"-f/--stepfactor must be >= 2, got {args.stepfactor}")
    if args.iters < 1 or args.warmup_iters < 0:
        parser.error("-n/--iters must be >= 1 and -w/--warmup_iters >= 0")
    op = cmpi.OPS[args.op.upper()]
    if np.dtype(args.dtype).kind not in op.kinds:
        allowed = [d for d in DTYPES if np.dtype(d).kind in op.kinds]
        parser.error(f"--op {args.op} is not defined for --dtype {args.dtype} by MPI; use one of: {', '.join(allowed)}")


def _sizes(lo: int, hi: int, factor: int) -> list[int]:
    out = []
    size = lo
    while size <= hi:
        out.append(size)
        size *= factor
    return out


def _runner(comm: MPI.Intracomm, algorithm: str, op: MPI.Op):
    if algorithm == NATIVE:
        return lambda buf: comm.Allreduce(MPI.IN_PLACE, buf, op=op)
    return lambda buf: cmpi.all_reduce(buf, comm, op=op, algorithm=algorithm, check=False)


def _check_input(count: int, dtype: np.dtype, rank: int) -> np.ndarray:
    """Small integers: every op is exact in every type, so results compare exactly."""
    values = (np.arange(count) * 7 + rank * 3) % 5
    return (values if dtype.kind == "u" else values - 2).astype(dtype)


def run(args: argparse.Namespace) -> list[dict]:
    comm = MPI.COMM_WORLD
    rank, nranks = comm.Get_rank(), comm.Get_size()
    dtype = np.dtype(args.dtype)
    op = cmpi.OPS[args.op.upper()].mpi
    sizes = [s for s in _sizes(args.minbytes, args.maxbytes, args.stepfactor) if s >= dtype.itemsize]
    say = print if rank == 0 else (lambda *a, **k: None)
    library = " ".join(MPI.Get_library_version().split()[:3])
    say(f"# collsim allreduce benchmark: nranks {nranks} backend mpi ({library}) "
        f"minBytes {args.minbytes} maxBytes {args.maxbytes} step: {args.stepfactor}(factor) "
        f"warmup iters: {args.warmup_iters} iters: {args.iters} validation: {int(args.check)}")
    say("#")
    header = (f"{'size(B)':>12} {'count':>12} {'type':>8} {'redop':>6} {'algorithm':>18} {'time(us)':>10} "
              f"{'algbw(GB/s)':>11} {'busbw(GB/s)':>11} {'#wrong':>6}")
    say("#" + header[1:])
    records = []
    started = time.monotonic()
    for i, size in enumerate(sizes):
        count = size // dtype.itemsize
        nbytes = count * dtype.itemsize
        ref = None
        if args.check:
            ref = _check_input(count, dtype, rank)
            comm.Allreduce(MPI.IN_PLACE, ref, op=op)
        for algorithm in args.algorithms:
            fn = _runner(comm, algorithm, op)
            wrong = None
            if args.check:
                x = _check_input(count, dtype, rank)
                if algorithm == NATIVE:
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
            time_us = elapsed / args.iters * 1e6
            algbw = nbytes / time_us / 1e3  # bytes/us = MB/s -> GB/s
            busbw = algbw * (2 * (nranks - 1) / nranks)
            rec = {
                "source": "measured", "collective": "allreduce", "algorithm": algorithm, "nranks": nranks,
                "size": nbytes, "count": count, "dtype": args.dtype, "op": args.op, "time_us": time_us,
                "algbw": algbw, "busbw": busbw, "wrong": wrong, "backend": "mpi",
            }
            records.append(rec)
            shown = str(wrong) if args.check else "N/A"
            say(f"{nbytes:>12} {count:>12} {TYPE_NAMES.get(args.dtype, args.dtype):>8} {args.op:>6} {algorithm:>18} "
                f"{time_us:>10.1f} {algbw:>11.3f} {busbw:>11.3f} {shown:>6}", flush=True)
        if rank == 0:
            print(f"[{i + 1}/{len(sizes)}] {nbytes} B done, {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    _summary(records, args, say)
    if args.json and rank == 0:
        with open(args.json, "w") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
        say(f"# wrote {len(records)} records to {args.json}")
    return records


def _summary(records: list[dict], args: argparse.Namespace, say) -> None:
    ours = [a for a in args.algorithms if a != NATIVE]
    say("#")
    if ours:
        say("# Best algorithm per size" + (" (time relative to native)" if NATIVE in args.algorithms else ""))
        by_size: dict[int, list[dict]] = {}
        for rec in records:
            by_size.setdefault(rec["size"], []).append(rec)
        for size, recs in by_size.items():
            best = min((r for r in recs if r["algorithm"] != NATIVE), key=lambda r: r["time_us"])
            native = next((r for r in recs if r["algorithm"] == NATIVE), None)
            vs = f"  x{best['time_us'] / native['time_us']:.2f} of native" if native else ""
            say(f"#  {size:>12}  {best['algorithm']:<18} {best['time_us']:>10.1f} us{vs}")
        say("#")
    wrong = sum(r["wrong"] or 0 for r in records)
    say(f"# Out of bounds values : {wrong} {'OK' if wrong == 0 else 'FAILED'}" if args.check else "# Out of bounds values : N/A")
    for algorithm in args.algorithms:
        values = [r["busbw"] for r in records if r["algorithm"] == algorithm]
        avg = sum(values) / len(values) if values else math.nan
        say(f"# Avg bus bandwidth    : {avg:<10.5g} {algorithm}")
    say("#")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate(parser, args)
    records = run(args)
    failed = args.check and any(r["wrong"] for r in records)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
