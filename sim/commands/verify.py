"""``collsim verify``: prove the algorithms and compare their costs with the textbook values."""

from __future__ import annotations

import math
import sys

from collectives import ALGORITHMS, get_schedule, verify
from collectives.algorithms import collectives_of, takes
from collectives.layout import Layout
from sim.commands._args import parse_algorithms

NAME = "verify"
HELP = "prove every algorithm's schedules correct and print steps and bytes per rank next to the textbook values"

__all__ = ["NAME", "HELP", "add_arguments", "run", "textbook"]


def textbook(algorithm: str, nranks: int, segments: int = 1, layout: Layout | None = None) -> tuple[str, str]:
    """Textbook allreduce cost per rank (steps, bytes sent as a multiple of n), as display strings.

    ``layout`` (regular) matters for the hierarchical allreduce: ``N`` nodes of ``L`` ranks take
    ``2 (L - 1) + 2 (N - 1)`` steps and send ``2 (L - 1) / L + 2 (N - 1) / (N L)`` times n.
    """
    p = nranks
    if p == 1:
        return "0", "0"
    if algorithm == "hierarchical":
        N, L = (layout.nnodes, layout.ranks_per_node[0]) if layout is not None and layout.is_regular else (1, p)
        return f"{2 * (L - 1) + 2 * (N - 1)}", f"{2 * (L - 1) / L + 2 * (N - 1) / (N * L):.3f}"
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
    parser.add_argument("--nodes", type=int, default=None,
                        help="also prove ring, tree and hierarchical on every layout of 1..NODES nodes x 1..R ranks")
    parser.add_argument("--ranks-per-node", type=int, default=None, help="R for --nodes (default 4)")


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
    if args.ranks_per_node is not None and args.nodes is None:
        raise ValueError("--ranks-per-node needs --nodes")
    nodes, per_node = args.nodes, args.ranks_per_node if args.ranks_per_node is not None else 4
    if nodes is not None and (nodes < 1 or per_node < 1):
        raise ValueError(f"--nodes and --ranks-per-node must be >= 1, got {nodes} and {per_node}")
    proved = 0
    for algorithm in algorithms:
        collectives = collectives_of(algorithm)
        for collective in collectives:
            for p in range(1, args.max_ranks + 1):
                verify(get_schedule(collective, algorithm, p))
                proved += 1
        print(f"# {algorithm}: {', '.join(collectives)} proved for p = 1..{args.max_ranks}", file=sys.stderr)
        if nodes is not None and takes(algorithm, "layout"):
            for n in range(1, nodes + 1):
                for r in range(1, per_node + 1):
                    layout = Layout.regular(n, r, nics_per_node=r)
                    for collective in collectives:
                        for channels in sorted({1, r}):
                            verify(get_schedule(collective, algorithm, n * r, layout=layout, channels=channels))
                            proved += 1
            print(f"# {algorithm}: proved on every layout of 1..{nodes} nodes x 1..{per_node} ranks "
                  f"(a NIC per rank, 1 and as many channels as NICs)", file=sys.stderr)

    header = f"{'algorithm':>18} {'ranks':>6} {'steps':>6} {'textbook':>9} {'sent/rank (x n)':>16} {'textbook':>9}  proved"
    print(f"# allreduce of n bytes: steps and bytes sent per rank (max over ranks), {proved} schedules proved")
    print(header)
    for algorithm in algorithms:
        for p in shown:
            n = p * 1 << 16
            report = verify(get_schedule("allreduce", algorithm, p), count=n, itemsize=1)
            steps, sent = textbook(algorithm, p)
            print(f"{algorithm:>18} {p:>6} {report.steps.max():>6} {steps:>9} {report.bytes_sent.max() / n:>16.3f} {sent:>9}  yes")
    if nodes is not None and "hierarchical" in algorithms:
        layout = Layout.regular(nodes, per_node)
        p = layout.nranks
        n = p * 1 << 16
        report = verify(get_schedule("allreduce", "hierarchical", p, layout=layout), count=n, itemsize=1)
        steps, sent = textbook("hierarchical", p, layout=layout)
        label = f"{nodes}x{per_node}"
        print(f"{'hierarchical':>18} {label:>6} {report.steps.max():>6} {steps:>9} {report.bytes_sent.max() / n:>16.3f} {sent:>9}  yes")
    return 0
