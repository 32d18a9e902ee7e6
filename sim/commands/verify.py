"""``collsim verify``: prove the algorithms and compare their costs with the textbook values."""

from __future__ import annotations

import math
import sys

from collectives import ALGORITHMS, COLLECTIVES, get_schedule, verify
from sim.commands._args import parse_algorithms

NAME = "verify"
HELP = "prove every algorithm's schedules correct and print steps and bytes per rank next to the textbook values"

__all__ = ["NAME", "HELP", "add_arguments", "run", "textbook"]


def textbook(algorithm: str, nranks: int, segments: int = 1) -> tuple[str, str]:
    """Textbook allreduce cost per rank (steps, bytes sent as a multiple of n), as display strings."""
    p = nranks
    if p == 1:
        return "0", "0"
    pof2 = 1 << (p.bit_length() - 1)
    log_p = pof2.bit_length() - 1
    if algorithm == "ring":
        return f"{2 * (p - 1)}", f"{2 * (p - 1) / p:.3f}"
    if algorithm == "recursive_halving":
        if p == pof2:
            return f"{2 * log_p}", f"{2 * (p - 1) / p:.3f}"
        return f"{2 * log_p + 2}", f"{2 * (pof2 - 1) / pof2 + 1:.3f}"
    if algorithm == "recursive_doubling":
        return (f"{log_p}", f"{log_p:.3f}") if p == pof2 else (f"{log_p + 2}", f"{log_p + 1:.3f}")
    if algorithm == "tree":
        depth = math.ceil(math.log2(p))
        return f"<={2 * (segments + depth)}", "<=2.000"
    return "?", "?"


def add_arguments(parser) -> None:
    parser.add_argument("--algorithms", default="all", help=f"comma-separated, or 'all' ({', '.join(ALGORITHMS)})")
    parser.add_argument("--max-ranks", type=int, default=64, help="prove every world size 1..N (default 64)")
    parser.add_argument("--ranks", default=None, help="world sizes to list in the table (default: 2,3,4,5,7,8,16,... up to --max-ranks)")


def run(args) -> int:
    algorithms = parse_algorithms(args.algorithms)
    if args.max_ranks < 1:
        raise ValueError(f"--max-ranks must be >= 1, got {args.max_ranks}")
    shown = [p for p in (2, 3, 4, 5, 7, 8, 16, 31, 32, 64, 128, 256, 1024) if p <= args.max_ranks]
    if args.ranks:
        try:
            shown = sorted({int(x) for x in args.ranks.split(",")})
        except ValueError:
            raise ValueError(f"--ranks must be comma-separated integers, got {args.ranks!r}") from None
    proved = 0
    for algorithm in algorithms:
        for collective in COLLECTIVES:
            for p in range(1, args.max_ranks + 1):
                verify(get_schedule(collective, algorithm, p))
                proved += 1
        print(f"# {algorithm}: allreduce, reduce_scatter, allgather proved for p = 1..{args.max_ranks}", file=sys.stderr)

    header = f"{'algorithm':>18} {'ranks':>6} {'steps':>6} {'textbook':>9} {'sent/rank (x n)':>16} {'textbook':>9}  proved"
    print(f"# allreduce of n bytes: steps and bytes sent per rank (max over ranks), {proved} schedules proved")
    print(header)
    for algorithm in algorithms:
        for p in shown:
            n = p * 1 << 16
            report = verify(get_schedule("allreduce", algorithm, p), count=n, itemsize=1)
            steps, sent = textbook(algorithm, p)
            print(f"{algorithm:>18} {p:>6} {report.steps.max():>6} {steps:>9} {report.bytes_sent.max() / n:>16.3f} {sent:>9}  yes")
    return 0
