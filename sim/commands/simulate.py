"""``collsim simulate``: predict time, algbw and busbw of algorithms on a topology, size by size."""

from __future__ import annotations

import sys

from collectives import ALGORITHMS
from sim.commands._args import (
    add_model_arguments,
    add_nranks_argument,
    check_output,
    itemsize_of,
    load_network,
    nranks_of,
    parse_algorithms,
    parse_sizes_of,
)

NAME = "simulate"
HELP = "predict each algorithm's time, algbw and busbw on a topology for a sweep of sizes (nccl-tests table)"

__all__ = ["NAME", "HELP", "add_arguments", "run"]


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--algorithms", default="all",
                        help=f"comma-separated, or 'all' ({', '.join(ALGORITHMS)}; and, simulated only, nvls and collnet "
                             "where the topology declares NVLS / SHARP switches)")
    add_nranks_argument(parser, "ranks (default: one per endpoint of the topology)", type=int, default=None)
    parser.add_argument("--model", default="flow", help="flow (default) or analytic")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the records as JSON lines")
    parser.add_argument("--plot", metavar="FILE", default=None, help="also plot busbw and time against size (.png, .svg, .pdf, .jpg, ...)")


def run(args) -> int:
    from sim.results import Progress, Record, format_table, format_winners, write_jsonl
    from sim.select import MODELS, sweep

    if args.model not in MODELS:
        raise ValueError(f"--model: unknown model {args.model!r}; choose from: {', '.join(MODELS)}")
    algorithms = parse_algorithms(args.algorithms, args.collective)
    itemsize = itemsize_of(args.dtype)
    sizes = parse_sizes_of(args.sizes, args.dtype)
    check_output(args.json, "--json")
    check_output(args.plot, "--plot", figure=True)
    from sim.commands._args import channels_of, protocol_of, runtime_of
    from sim.innetwork import resolve_algorithms

    protocol, channels, runtime = protocol_of(args), channels_of(args), runtime_of(args)
    G, net = load_network(args)
    p = nranks_of(args, net)
    algorithms = resolve_algorithms(algorithms, args.algorithms, net, p, args.collective)
    with Progress(len(sizes) * len(algorithms), "simulate") as bar:
        results = sweep(net, p, sizes, algorithms, collective=args.collective, model=args.model,
                        itemsize=itemsize, progress=bar.advance, protocol=protocol, channels=channels,
                        runtime=runtime)
    records = [Record.from_result(r, dtype=args.dtype) for r in results]
    from sim.params import describe_params

    title = f"collsim simulate: {args.collective} on {net.name} ({p} ranks), {args.model} model\n" + describe_params(
        net.params, G, protocol=protocol, channels=channels, runtime=runtime)
    print(format_table(records, title=title))
    print(format_winners(records))
    if any(r.extra.get("simulated_only") for r in records):
        from sim.innetwork import NOTE

        print(f"# {NOTE}")
    if args.json:
        n = write_jsonl(records, args.json)
        print(f"# wrote {n} records to {args.json}", file=sys.stderr)
    if args.plot:
        from sim.plots import plot_curves

        plot_curves(records, args.plot, title=f"{args.collective} on {net.name}, {p} ranks ({args.model} model)")
        print(f"# wrote {args.plot}", file=sys.stderr)
    return 0
