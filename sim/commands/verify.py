"""``collsim verify``: prove the algorithms and compare their costs with the textbook values."""

from __future__ import annotations

import math
import sys

from collectives import ALGORITHMS, get_schedule, verify
from collectives.algorithms import collectives_of, takes
from collectives.layout import Layout
from sim.commands._args import add_nranks_argument, collective_algorithms, parse_algorithms
from sim.results import Progress

NAME = "verify"
HELP = "prove every algorithm's schedules correct and print steps and bytes per rank next to the textbook values"

__all__ = ["NAME", "HELP", "MAX_PROVE_RANKS", "MAX_TABLE_RANKS", "add_arguments", "run", "textbook"]


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


#: Largest ``--max-ranks``: proving every world size 1..N costs about N^3 (N = 256 takes minutes).
MAX_PROVE_RANKS = 256
#: Largest world size in the table (``--nranks``): one proof of a p-rank allreduce costs about p^2.
MAX_TABLE_RANKS = 1024


def add_arguments(parser) -> None:
    parser.add_argument("--algorithms", default="all", help=f"comma-separated, or 'all' ({', '.join(ALGORITHMS)})")
    parser.add_argument("--max-ranks", type=int, default=64,
                        help=f"prove every world size 1..N, N <= {MAX_PROVE_RANKS} (default 64)")
    add_nranks_argument(parser, "world sizes to list (and prove) in the table, comma-separated, each <= "
                        f"{MAX_TABLE_RANKS} (default: 2,3,4,5,7,8,16,... up to --max-ranks)", default=None)
    parser.add_argument("--nodes", type=int, default=None,
                        help="also prove ring, tree and hierarchical on every layout of 1..NODES nodes x 1..R ranks")
    parser.add_argument("--ranks-per-node", type=int, default=None, help="R for --nodes (default 4)")


def _world_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--nranks must be comma-separated integers, got {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise ValueError(f"--nranks must be positive integers, got {text!r}")
    if sizes[-1] > MAX_TABLE_RANKS:
        raise ValueError(f"--nranks {sizes[-1]} is above {MAX_TABLE_RANKS}, the largest world size verify "
                         "tables (a proof costs about p^2)")
    return sizes


def run(args) -> int:
    algorithms = parse_algorithms(args.algorithms)
    if not 1 <= args.max_ranks <= MAX_PROVE_RANKS:
        raise ValueError(f"--max-ranks must be between 1 and {MAX_PROVE_RANKS}, got {args.max_ranks} (proving "
                         f"every world size 1..N costs about N^3; list larger sizes with --nranks, up to "
                         f"{MAX_TABLE_RANKS})")
    shown = [p for p in (2, 3, 4, 5, 7, 8, 16, 31, 32, 64, 128, 256, 1024) if p <= args.max_ranks]
    if args.nranks:
        shown = _world_sizes(args.nranks)
    if args.ranks_per_node is not None and args.nodes is None:
        raise ValueError("--ranks-per-node needs --nodes")
    nodes, per_node = args.nodes, args.ranks_per_node if args.ranks_per_node is not None else 4
    if nodes is not None and (nodes < 1 or per_node < 1):
        raise ValueError(f"--nodes and --ranks-per-node must be >= 1, got {nodes} and {per_node}")
    if nodes is not None and nodes * per_node > MAX_TABLE_RANKS:
        raise ValueError(f"--nodes x --ranks-per-node must be at most {MAX_TABLE_RANKS}, got {nodes * per_node}")
    proved = 0
    layouts = nodes * per_node if nodes is not None else 0
    work = sum(len(collectives_of(a)) * (args.max_ranks + (layouts * 2 if takes(a, "layout") else 0))
               for a in algorithms) + len(algorithms) * len(shown)
    rows = []
    with Progress(work, "verify") as bar:
        for algorithm in algorithms:
            collectives = collectives_of(algorithm)
            for collective in collectives:
                for p in range(1, args.max_ranks + 1):
                    verify(get_schedule(collective, algorithm, p))
                    proved += 1
                    bar.advance(f"{algorithm} {collective} p={p}")
            # a half that is not rank-blocked (the tree's) is proved as a phase of the allreduce only
            own = [c for c in collectives if algorithm in collective_algorithms(c)]
            phases = [c for c in collectives if c not in own]
            note = (f"; its {' and '.join(phases)} proved only as phases of the allreduce (not rank-blocked: "
                    "block r does not end on rank r, so no runtime runs them as collectives)") if phases else ""
            print(f"# {algorithm}: {', '.join(own)} proved for p = 1..{args.max_ranks}{note}", file=sys.stderr)
            if nodes is not None and takes(algorithm, "layout"):
                for n in range(1, nodes + 1):
                    for r in range(1, per_node + 1):
                        layout = Layout.regular(n, r, nics_per_node=r)
                        for collective in collectives:
                            for channels in sorted({1, r}):
                                verify(get_schedule(collective, algorithm, n * r, layout=layout, channels=channels))
                                proved += 1
                                bar.advance(f"{algorithm} {collective} {n}x{r}")
                print(f"# {algorithm}: proved on every layout of 1..{nodes} nodes x 1..{per_node} ranks "
                      f"(a NIC per rank, 1 and as many channels as NICs)", file=sys.stderr)

        for algorithm in algorithms:
            for p in shown:
                n = p * 1 << 16
                report = verify(get_schedule("allreduce", algorithm, p), count=n, itemsize=1)
                bar.advance(f"{algorithm} allreduce p={p} (table)")
                steps, sent = textbook(algorithm, p)
                rows.append(f"{algorithm:>18} {p:>6} {report.steps.max():>6} {steps:>9} "
                            f"{report.bytes_sent.max() / n:>16.3f} {sent:>9}  yes")
        if nodes is not None and "hierarchical" in algorithms:
            layout = Layout.regular(nodes, per_node)
            p = layout.nranks
            n = p * 1 << 16
            report = verify(get_schedule("allreduce", "hierarchical", p, layout=layout), count=n, itemsize=1)
            steps, sent = textbook("hierarchical", p, layout=layout)
            label = f"{nodes}x{per_node}"
            rows.append(f"{'hierarchical':>18} {label:>6} {report.steps.max():>6} {steps:>9} "
                        f"{report.bytes_sent.max() / n:>16.3f} {sent:>9}  yes")

    print(f"# allreduce of n bytes: steps and bytes sent per rank (max over ranks), {proved} schedules proved")
    print(f"{'algorithm':>18} {'ranks':>6} {'steps':>6} {'textbook':>9} {'sent/rank (x n)':>16} {'textbook':>9}  proved")
    print("\n".join(rows))
    return 0
