"""Measured allreduce benchmarks, nccl-tests style: the shared command line, sweep, table and summary.

``examples/allreduce.py`` (torch.distributed) and ``examples/allreduce_mpi.py`` (MPI) are the same
benchmark over two transports. Everything but the transport lives here: the flags ``-b -e -f -n -w
--algorithms --op --dtype --check --json`` (:func:`add_arguments`, :func:`validate_arguments`), the
size sweep, the table and its summary, and the JSON lines (:func:`run_sweep`). A script keeps how its
ranks start, how an algorithm runs, the inputs it checks with and how it counts ``#wrong``; it hands
:func:`run_sweep` two functions::

    reference(count) -> ref             # native allreduce of the check input (only with --check)
    measure(algorithm, count, ref) -> (time_us, wrong)

``time_us`` is the slowest rank's mean over ``-n`` iterations; ``wrong`` is the number of elements
that differ from ``ref``, summed over ranks (``None`` when ``ref`` is ``None``: nothing checked).

The rows are :class:`sim.results.Record` objects (``source`` ``"measured"``, plus ``backend``), so
``--json`` files compare and plot with simulated ones. The table is nccl-tests' own: one space between
columns, ``time(us)`` to 0.1 us, nccl-tests' type names (``float``, ``double``, ``half``). After the
table come the best algorithm per size (time relative to native), the ``# Out of bounds values`` line
and ``# Avg bus bandwidth`` per algorithm.

This module imports neither torch nor mpi4py.

>>> recs = [Record("measured", "allreduce", a, 2, 1024, 256, "float32", "sum", t, wrong=0)
...         for a, t in (("ring", 30.0), ("tree", 20.0), ("native", 10.0))]
>>> print(format_summary(recs, ["ring", "tree", "native"], check=True))
#
# Best algorithm per size (time relative to native)
#          1024  tree                     20.0 us  x2.00 of native
#
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 0.034133   ring
# Avg bus bandwidth    : 0.0512     tree
# Avg bus bandwidth    : 0.1024     native
#
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence

from collectives.algorithms import ALGORITHMS
from sim.results import Record, best_per_size, format_header, format_row, write_jsonl

__all__ = [
    "AUTO",
    "NATIVE",
    "CHOICES",
    "DEFAULT_ALGORITHMS",
    "TYPE_NAMES",
    "WIDTHS",
    "ArgumentParser",
    "launcher_rank",
    "size_arg",
    "algorithms_arg",
    "add_arguments",
    "validate_arguments",
    "sweep_sizes",
    "format_summary",
    "run_sweep",
]

#: Algorithm names beyond the registry's: the runtime's size-based choice, and the transport's own allreduce.
AUTO, NATIVE = "auto", "native"
#: What ``--algorithms`` accepts.
CHOICES = (*ALGORITHMS, AUTO, NATIVE)
DEFAULT_ALGORITHMS = "ring,tree,recursive_halving,recursive_doubling,native"
#: nccl-tests' short type names; other dtypes print as they are.
TYPE_NAMES = {"float32": "float", "float64": "double", "float16": "half"}
#: Column widths of the table (nccl-tests'), one space between columns.
WIDTHS = (12, 12, 8, 6, 18, 10, 11, 11, 6)

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def launcher_rank() -> int:
    """This process's rank as the launcher set it (torchrun ``RANK``, MPICH ``PMI_RANK``, Open MPI
    ``OMPI_COMM_WORLD_RANK``, PMIx ``PMIX_RANK``); 0 when run alone. Needs no process group."""
    import os

    for name in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


class ArgumentParser(argparse.ArgumentParser):
    """A parser for a script that every rank of a job runs: a usage error is one line, from rank 0.

    Every rank exits with status 2 and no traceback; only rank 0 (:func:`launcher_rank`) prints
    ``PROG: error: MESSAGE``, so the message appears once, as the script's last output, however
    many ranks the launcher started. Under torchrun the ranks leave together (:func:`_leave_together`):
    torchrun stops the other ranks as soon as one exits, so a rank that left early could get rank 0
    killed before it printed, and a rank that left late would be reported as killed by SIGTERM.
    """

    def error(self, message: str):
        rank = launcher_rank()
        if rank == 0:
            sys.stderr.write(f"{self.prog}: error: {message}\n")
        _leave_together(rank, 2)
        self.exit(2)


def _leave_together(rank: int, status: int) -> None:
    """Under torchrun, exit every rank with ``status`` within a few milliseconds, rank 0 last.

    Through the store torchrun's agent hosts (``TORCHELASTIC_USE_AGENT_STORE``): rank 0 says it
    has printed, every other rank answers and exits, and rank 0 exits once all have answered.
    ``os._exit`` skips the interpreter's teardown (nothing has run yet), so no rank is still
    shutting down when torchrun looks (every 0.1 s). Elsewhere, or if the store does not answer,
    this returns and the caller exits as usual.
    """
    import os

    env = os.environ
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "MASTER_ADDR" not in env:
        return
    try:
        from datetime import timedelta

        import torch.distributed as dist

        nranks = int(env["WORLD_SIZE"])
        store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False,
                              timeout=timedelta(seconds=60))
        key = f"collsim/usage_error/{env.get('TORCHELASTIC_RUN_ID', '')}/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        sys.stdout.flush()
        sys.stderr.flush()
        if rank == 0:
            store.set(key, "printed")
            deadline = time.monotonic() + 30
            while store.add(f"{key}/left", 0) < nranks - 1 and time.monotonic() < deadline:
                time.sleep(0.005)
        else:
            store.wait([key])
            store.add(f"{key}/left", 1)
    except Exception:  # no store after all: leave as usual
        return
    os._exit(status)


def size_arg(text: str) -> int:
    """Parse ``8``, ``64K``, ``64M``, ``1G`` (binary units, as nccl-tests' ``-b``/``-e``) into bytes.

    An ``argparse`` type: bad input raises :class:`argparse.ArgumentTypeError`.

    >>> size_arg("16"), size_arg("64K"), size_arg("1MB")
    (16, 65536, 1048576)
    """
    t = text.strip().upper().removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    try:
        value = int(t[: len(t) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 8, 64K, 64M or 1G, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return value


def algorithms_arg(text: str) -> list[str]:
    """Parse a comma-separated list of :data:`CHOICES` (duplicates dropped, order kept).

    An algorithm may carry parameters (``ring:channels=2``, :func:`collectives.plan.parse_algorithm`).

    >>> algorithms_arg("tree, native,tree,ring:channels=2")
    ['tree', 'native', 'ring:channels=2']
    """
    from collectives.plan import split_algorithms

    names = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in names if a.partition(":")[0] not in CHOICES and not ("=" in a and ":" not in a)]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown algorithm(s) {', '.join(bad) or '(none)'}; choose from: {', '.join(CHOICES)}")
    try:
        return split_algorithms(text, also=(AUTO, NATIVE))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_arguments(parser: argparse.ArgumentParser, *, ops: Sequence[str], dtypes: Sequence[str],
                  check_help: str) -> None:
    """Add the flags every benchmark takes, with nccl-tests' names and collsim's defaults.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The script's parser; add its transport's own flags before or after.
    ops, dtypes : sequence of str
        What ``--op`` and ``--dtype`` accept on this transport (defaults ``sum`` and ``float32``).
    check_help : str
        The help of ``--check`` (what the results are checked against).
    """
    parser.add_argument("-b", "--minbytes", type=size_arg, default=size_arg("16"), help="smallest size (bytes; K/M/G)")
    parser.add_argument("-e", "--maxbytes", type=size_arg, default=size_arg("16M"), help="largest size")
    parser.add_argument("-f", "--stepfactor", type=int, default=4, help="multiply the size by this each step")
    parser.add_argument("-n", "--iters", type=int, default=10, help="timed iterations per size and algorithm")
    parser.add_argument("-w", "--warmup_iters", type=int, default=2, help="warm-up iterations")
    parser.add_argument("--algorithms", type=algorithms_arg, default=algorithms_arg(DEFAULT_ALGORITHMS),
                        help=f"comma-separated, from: {', '.join(CHOICES)}")
    parser.add_argument("--op", choices=list(ops), default="sum")
    parser.add_argument("--dtype", choices=list(dtypes), default="float32")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True, help=check_help)
    parser.add_argument("--json", metavar="FILE", help="also write the records as JSON lines")


def validate_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, itemsize: int = 1) -> None:
    """Report (``parser.error``) what makes no sweep or cannot be written, before any work.

    A size range, step or iteration count that makes no sweep; a ``-b`` smaller than one element
    of ``itemsize`` bytes (:func:`sim.results.check_sizes`, the rule every size in collsim follows);
    a ``--json`` file that cannot be written (:func:`sim.commands._args.check_output`).
    """
    from sim.commands._args import check_output
    from sim.results import check_sizes

    try:
        check_sizes([args.minbytes], itemsize, args.dtype)
    except ValueError as err:
        parser.error(f"-b/--minbytes: {err}")
    try:
        check_output(args.json, "--json")
    except ValueError as err:
        parser.error(str(err))
    if args.maxbytes < args.minbytes:
        parser.error(f"-e/--maxbytes ({args.maxbytes}) must be >= -b/--minbytes ({args.minbytes})")
    if args.stepfactor < 2:
        parser.error(f"-f/--stepfactor must be >= 2, got {args.stepfactor}")
    if args.iters < 1 or args.warmup_iters < 0:
        parser.error("-n/--iters must be >= 1 and -w/--warmup_iters >= 0")


def sweep_sizes(lo: int, hi: int, factor: int, itemsize: int = 1) -> list[int]:
    """``lo``, ``lo * factor``, ... up to ``hi``, leaving out sizes smaller than one element.

    >>> sweep_sizes(1, 64, 4), sweep_sizes(1, 64, 4, itemsize=8)
    ([1, 4, 16, 64], [16, 64])
    """
    out = []
    size = lo
    while size <= hi:
        if size >= itemsize:
            out.append(size)
        size *= factor
    return out


def format_summary(records: Iterable[Record], algorithms: Sequence[str], *, check: bool) -> str:
    """The ``#`` lines after the table: best per size, out-of-bounds count, average bus bandwidth.

    The best algorithm per size is among the non-native ones, its time relative to native's when
    native ran (the section is left out when only native ran). ``# Avg bus bandwidth`` is the mean
    busbw over the sizes, one line per algorithm in ``algorithms``' order.
    """
    records = list(records)
    lines = ["#"]
    if any(a != NATIVE for a in algorithms):
        lines.append("# Best algorithm per size" + (" (time relative to native)" if NATIVE in algorithms else ""))
        native = {r.size: r for r in records if r.algorithm == NATIVE}
        for size, best in best_per_size(r for r in records if r.algorithm != NATIVE).items():
            vs = f"  x{best.time_us / native[size].time_us:.2f} of native" if size in native else ""
            lines.append(f"#  {size:>12}  {best.algorithm:<18} {best.time_us:>10.1f} us{vs}")
        lines.append("#")
    if check:
        wrong = sum(r.wrong or 0 for r in records)
        lines.append(f"# Out of bounds values : {wrong} {'OK' if wrong == 0 else 'FAILED'}")
    else:
        lines.append("# Out of bounds values : N/A")
    for algorithm in algorithms:
        values = [r.busbw for r in records if r.algorithm == algorithm]
        avg = sum(values) / len(values) if values else math.nan
        lines.append(f"# Avg bus bandwidth    : {avg:<10.5g} {algorithm}")
    lines.append("#")
    return "\n".join(lines)


def _quiet(*args, **kwargs) -> None:
    pass


def run_sweep(
    args: argparse.Namespace,
    measure: Callable[[str, int, object], tuple[float, int | None]],
    reference: Callable[[int], object],
    *,
    rank: int,
    nranks: int,
    itemsize: int,
    backend: str,
    transport: str,
) -> list[Record]:
    """Run every size and algorithm of ``args`` on every rank; rank 0 prints and writes ``--json``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser that :func:`add_arguments` built.
    measure, reference : callable
        The transport's part (module docstring); every rank calls them in the same order.
    rank, nranks : int
        This process and the world.
    itemsize : int
        Bytes per element of ``args.dtype``.
    backend : str
        The records' ``backend`` field (``"gloo"``, ``"nccl"``, ``"mpi"``).
    transport : str
        Describes the transport in the first line, after ``nranks N``.

    Returns
    -------
    list of Record
        One per size and algorithm, on every rank.
    """
    say = print if rank == 0 else _quiet
    say(f"# collsim allreduce benchmark: nranks {nranks} {transport} "
        f"minBytes {args.minbytes} maxBytes {args.maxbytes} step: {args.stepfactor}(factor) "
        f"warmup iters: {args.warmup_iters} iters: {args.iters} validation: {int(args.check)}")
    say("#")
    say(format_header(WIDTHS, " "))
    sizes = sweep_sizes(args.minbytes, args.maxbytes, args.stepfactor, itemsize)
    records = []
    started = time.monotonic()
    for i, size in enumerate(sizes):
        count = size // itemsize
        ref = reference(count) if args.check else None
        for algorithm in args.algorithms:
            time_us, wrong = measure(algorithm, count, ref)
            rec = Record("measured", "allreduce", algorithm, nranks, count * itemsize, count, args.dtype, args.op,
                         time_us, wrong=wrong, extra={"backend": backend})
            records.append(rec)
            say(format_row(rec, WIDTHS, " ", time_format=".1f", type_names=TYPE_NAMES), flush=True)
        if rank == 0:
            print(f"[{i + 1}/{len(sizes)}] {count * itemsize} B done, {time.monotonic() - started:.1f} s",
                  file=sys.stderr, flush=True)
    say(format_summary(records, args.algorithms, check=args.check))
    if args.json and rank == 0:
        n = write_jsonl(records, args.json)
        say(f"# wrote {n} records to {args.json}")
    return records
