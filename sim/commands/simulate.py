"""``collsim simulate``: predict time, algbw and busbw of algorithms on a topology, size by size."""

from __future__ import annotations

import sys

from collectives import ALGORITHMS, COLLECTIVES

NAME = "simulate"
HELP = "predict each algorithm's time, algbw and busbw on a topology for a sweep of sizes (nccl-tests table)"

__all__ = ["NAME", "HELP", "add_arguments", "run", "add_model_arguments", "load_network", "parse_algorithms", "itemsize_of"]


def add_model_arguments(parser, *, sizes: str | None = "1KiB:256MiB:x4") -> None:
    """Options shared by simulate, select and draw."""
    parser.add_argument("--topology", required=True, metavar="SPEC",
                        help="topology spec (e.g. fat_tree:k=4,bandwidth=100Gbps,latency=1us) or a .json/.graphml file")
    parser.add_argument("--collective", default="allreduce", help=f"one of: {', '.join(COLLECTIVES)} (default allreduce)")
    parser.add_argument("--params", metavar="FILE", default=None,
                        help="model parameters (collsim-params/1 JSON: alpha, gamma, bandwidth_efficiency, link_classes)")
    parser.add_argument("--dtype", default="float32", help="element type (default float32)")
    if sizes is not None:
        parser.add_argument("--sizes", default=sizes, help=f"START:END[:xF] or a list, units B/KiB/MiB/GiB (default {sizes})")


def parse_algorithms(text: str) -> list[str]:
    """Comma-separated algorithm names, or 'all'."""
    if text.strip() == "all":
        return list(ALGORITHMS)
    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise ValueError("--algorithms: give at least one algorithm")
    for name in names:
        if name not in ALGORITHMS:
            raise ValueError(f"--algorithms: unknown algorithm {name!r}; choose from: all, {', '.join(ALGORITHMS)}")
    return list(dict.fromkeys(names))


def itemsize_of(dtype: str) -> int:
    from sim.results import DTYPES

    if dtype not in DTYPES:
        raise ValueError(f"--dtype: unknown type {dtype!r}; choose from: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_network(args):
    """(graph, compiled network) from ``--topology`` and ``--params``."""
    import topologies
    from sim.flow import Network
    from sim.params import DEFAULT_PARAMS, load_params

    if args.collective not in COLLECTIVES:
        raise ValueError(f"--collective: unknown collective {args.collective!r}; choose from: {', '.join(COLLECTIVES)}")
    params = load_params(args.params) if args.params else DEFAULT_PARAMS
    try:
        G = topologies.from_spec(args.topology)
    except (ValueError, OSError) as err:
        raise ValueError(f"--topology: {str(err).splitlines()[0] if str(err) else err}") from None
    return G, Network(G, params)


def nranks_of(args, network) -> int:
    n = len(network.endpoints) if args.nranks is None else args.nranks
    if n < 1:
        raise ValueError(f"--nranks must be >= 1, got {n}")
    if n > len(network.endpoints):
        raise ValueError(f"--nranks {n}: topology {network.name!r} has only {len(network.endpoints)} endpoints")
    return n


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--algorithms", default="all", help=f"comma-separated, or 'all' ({', '.join(ALGORITHMS)})")
    parser.add_argument("--nranks", type=int, default=None, help="ranks (default: one per endpoint of the topology)")
    parser.add_argument("--model", default="flow", help="flow (default) or analytic")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the records as JSON lines")
    parser.add_argument("--plot", metavar="FILE", default=None, help="also plot busbw and time against size (.png/.svg/.pdf)")


def run(args) -> int:
    import os

    from sim.results import Progress, Record, format_table, format_winners, parse_sizes, write_jsonl
    from sim.select import MODELS, sweep

    if args.model not in MODELS:
        raise ValueError(f"--model: unknown model {args.model!r}; choose from: {', '.join(MODELS)}")
    algorithms = parse_algorithms(args.algorithms)
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as err:
        raise ValueError(f"--sizes: {err}") from None
    itemsize = itemsize_of(args.dtype)
    for opt in ("json", "plot"):
        out = getattr(args, opt)
        if out and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
            raise ValueError(f"--{opt}: folder of {out!r} does not exist")
    if args.plot and os.path.splitext(args.plot)[1].lower() not in (".png", ".svg", ".pdf"):
        raise ValueError(f"--plot: use a .png, .svg or .pdf file name, got {args.plot!r}")
    G, net = load_network(args)
    p = nranks_of(args, net)
    with Progress(len(sizes) * len(algorithms), "simulate") as bar:
        results = sweep(net, p, sizes, algorithms, collective=args.collective, model=args.model,
                        itemsize=itemsize, progress=bar.advance)
    records = [Record.from_result(r, dtype=args.dtype) for r in results]
    prm = net.params
    title = (
        f"collsim simulate: {args.collective} on {net.name} ({p} ranks), {args.model} model\n"
        f"alpha={prm.alpha:g} s, gamma={prm.gamma:g} s/B, bandwidth_efficiency={prm.bandwidth_efficiency:g}"
    )
    print(format_table(records, title=title))
    print(format_winners(records))
    if args.json:
        n = write_jsonl(records, args.json)
        print(f"# wrote {n} records to {args.json}", file=sys.stderr)
    if args.plot:
        from sim.plots import plot_curves

        plot_curves(records, args.plot, title=f"{args.collective} on {net.name}, {p} ranks ({args.model} model)")
        print(f"# wrote {args.plot}", file=sys.stderr)
    return 0
