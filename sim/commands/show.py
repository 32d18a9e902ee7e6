"""``collsim show``: draw a schedule step by step, as one would on a whiteboard."""

from __future__ import annotations

from collectives import ALGORITHMS, COLLECTIVES, get_schedule, verify
from collectives.algorithms import takes
from collectives.layout import Layout
from sim.commands._args import add_nranks_argument, check_output, collective_algorithms, not_a_collective

NAME = "show"
HELP = "print (or plot) which chunk moves where in each step of an algorithm's schedule"

__all__ = ["NAME", "HELP", "add_arguments", "run", "picture", "plot_schedule"]

MAX_RANKS = 32


def add_arguments(parser) -> None:
    parser.add_argument("algorithm", help=f"one of: {', '.join(ALGORITHMS)}")
    add_nranks_argument(parser, f"world size, 1..{MAX_RANKS} (default 4, or nodes x ranks per node)", type=int,
                        default=None)
    parser.add_argument("--nodes", type=int, default=None, help="ring, tree, hierarchical: lay the ranks out on this many nodes")
    parser.add_argument("--ranks-per-node", type=int, default=None, help="ranks on each node (with --nodes; default ranks / nodes)")
    parser.add_argument("--channels", type=int, default=1, help="ring, tree, hierarchical: channels (default 1)")
    parser.add_argument("--collective", default="allreduce", help=f"one of: {', '.join(COLLECTIVES)}")
    parser.add_argument("--segments", type=int, default=None, help="tree only: segments per tree")
    parser.add_argument("--plot", metavar="FILE", help="also draw the schedule (.png, .svg, .pdf, .jpg, ...)")


def _cell(n: int, p: int) -> str:
    return "*" if n == p else ("." if n == 0 else str(n) if n < 10 else "+")


def picture(schedule, layout: Layout | None = None) -> list[str]:
    """Text picture: each step's transfers, then what every rank holds of every chunk.

    With a ``layout`` the picture starts with the ranks of every node.

    In the holdings grid a digit is the number of ranks' contributions reduced into that chunk,
    ``*`` the finished chunk (all ``p``), ``.`` nothing yet.
    """
    p, c = schedule.nranks, schedule.nchunks
    lines = [
        f"{schedule.describe()}",
        f"arrows: src->dst chunks, '+' reduce into, '=' copy over; grid: contributions per chunk ('*' all {p})",
    ]
    if layout is not None and not layout.is_flat:
        lines.append("nodes: " + "  ".join(f"n{i}=r{','.join(map(str, ranks))}" for i, ranks in enumerate(layout.nodes)))

    def grid(held):
        return ["    " + "  ".join(f"r{r}:{''.join(_cell(int(n), p) for n in held[r])}" for r in range(p))]

    if schedule.collective == "allgather":
        start = [[p if schedule.owner[k] == r else 0 for k in range(c)] for r in range(p)]
    else:
        start = [[1] * c for _ in range(p)]
    lines += ["start"] + grid(start)

    def on_step(i, step, held):
        moves = []
        for s, d, first, n, red in zip(step.src, step.dst, step.chunk, step.nchunks, step.reduce, strict=True):
            chunks = f"c{first}" if n == 1 else f"c{first}-{first + n - 1}"
            moves.append(f"{s}->{d} {chunks}{'+' if red else '='}")
        lines.append(f"step {i} [{step.phase}]  " + "  ".join(moves))
        lines.extend(grid(held))

    verify(schedule, on_step=on_step)
    return lines


def plot_schedule(schedule, path: str) -> None:
    """Draw the schedule: ranks on the y axis, steps on the x axis, one arrow per transfer.

    Arrow colour is the first chunk carried; solid arrows reduce, dashed arrows copy.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = schedule.nranks
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * schedule.nsteps + 2), max(3, 0.45 * p + 1.5)))
    cmap = plt.get_cmap("tab20" if schedule.nchunks > 10 else "tab10")
    for i, step in enumerate(schedule.steps()):
        for s, d, first, n, red in zip(step.src, step.dst, step.chunk, step.nchunks, step.reduce, strict=True):
            colour = cmap(int(first) % cmap.N)
            ax.annotate(
                "", xy=(i + 1, d), xytext=(i, s),
                arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.4, "linestyle": "-" if red else "--"},
            )
            label = f"{first}" if n == 1 else f"{first}-{first + n - 1}"
            ax.text(i + 0.5, (s + d) / 2, label, fontsize=7, color=colour, ha="center", va="center",
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    ax.set_xlim(-0.2, schedule.nsteps + 0.2)
    ax.set_ylim(p - 0.5, -0.5)
    ax.set_yticks(range(p), [f"rank {r}" for r in range(p)])
    ax.set_xticks(range(schedule.nsteps + 1))
    ax.set_xlabel("step boundary (solid: reduce into, dashed: copy over; label: chunks)")
    ax.set_title(schedule.describe())
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _layout(args) -> Layout | None:
    """The regular layout ``--nodes`` x ``--ranks-per-node`` (None without ``--nodes``)."""
    if args.nodes is None:
        if args.ranks_per_node is not None:
            raise ValueError("--ranks-per-node needs --nodes")
        return None
    if args.nodes < 1:
        raise ValueError(f"--nodes must be >= 1, got {args.nodes}")
    per_node = args.ranks_per_node
    if per_node is None:
        ranks = 4 if args.nranks is None else args.nranks
        if ranks % args.nodes:
            raise ValueError(f"--nranks {ranks} is not a multiple of --nodes {args.nodes}; give --ranks-per-node")
        per_node = ranks // args.nodes
    if per_node < 1:
        raise ValueError(f"--ranks-per-node must be >= 1, got {per_node}")
    if args.nranks is not None and args.nranks != args.nodes * per_node:
        raise ValueError(f"--nranks {args.nranks} != --nodes {args.nodes} x --ranks-per-node {per_node}")
    if args.nodes * per_node > MAX_RANKS:
        raise ValueError(f"--nodes x --ranks-per-node must be at most {MAX_RANKS}, got {args.nodes * per_node}")
    return Layout.regular(args.nodes, per_node)


def run(args) -> int:
    if args.algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {args.algorithm!r}; choose from: {', '.join(ALGORITHMS)}")
    layout = _layout(args)
    if layout is not None:
        if not takes(args.algorithm, "layout"):
            raise ValueError(f"--nodes applies to ring, tree and hierarchical, not {args.algorithm}")
        args.nranks = layout.nranks
    elif args.nranks is None:
        args.nranks = 4
    if not 1 <= args.nranks <= MAX_RANKS:
        raise ValueError(f"--nranks must be between 1 and {MAX_RANKS}, got {args.nranks}")
    params = {}
    if layout is not None:
        params["layout"] = layout
    if args.channels != 1:
        if not takes(args.algorithm, "channels"):
            raise ValueError(f"--channels applies to ring, tree and hierarchical, not {args.algorithm}")
        params["channels"] = args.channels
    if args.segments is not None:
        if args.algorithm != "tree":
            raise ValueError("--segments applies only to the tree algorithm")
        params["segments"] = args.segments
    check_output(args.plot, "--plot", figure=True)
    schedule = get_schedule(args.collective, args.algorithm, args.nranks, **params)
    if args.collective in COLLECTIVES and args.algorithm not in collective_algorithms(args.collective):
        print(f"# note: {not_a_collective(args.algorithm, args.collective)}")
    print("\n".join(picture(schedule, layout)))
    if args.plot:
        plot_schedule(schedule, args.plot)
        print(f"# wrote {args.plot}")
    return 0
