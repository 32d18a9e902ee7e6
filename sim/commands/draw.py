"""``collsim draw``: a topology coloured by the link utilisation of one simulated collective."""

from __future__ import annotations

import sys

from collectives import ALGORITHMS

NAME = "draw"
HELP = "draw a topology with links coloured by the utilisation a simulated collective causes; bottlenecks in red"

__all__ = ["NAME", "HELP", "add_arguments", "run"]


def add_arguments(parser) -> None:
    from sim.commands._args import add_model_arguments

    add_model_arguments(parser, sizes=None)
    parser.add_argument("--algorithm", required=True, help=f"one of: {', '.join(ALGORITHMS)}")
    parser.add_argument("--size", required=True, help="message size, e.g. 64MiB")
    from sim.commands._args import add_nranks_argument

    add_nranks_argument(parser, "ranks (default: one per endpoint)", type=int, default=None)
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="image to write (.png, .svg, .pdf, .jpg, ...)")


def run(args) -> int:
    from sim.commands._args import (
        check_output,
        itemsize_of,
        load_network,
        nranks_of,
        parse_algorithms,
        parse_option,
    )
    from sim.plots import draw_utilization
    from sim.results import check_sizes, parse_size
    from sim.select import run_model

    if "," in args.algorithm or args.algorithm.strip() == "all":
        raise ValueError(f"--algorithm: give one algorithm, got {args.algorithm!r}")
    (algorithm,) = parse_algorithms(args.algorithm, args.collective, "--algorithm")
    itemsize = itemsize_of(args.dtype)
    size = parse_option(lambda t: check_sizes([parse_size(t)], itemsize, args.dtype)[0], args.size, "--size")
    check_output(args.output, "-o/--output", figure=True)
    G, net = load_network(args)
    p = nranks_of(args, net)
    from sim.commands._args import channels_of, protocol_of, runtime_of
    from sim.select import label

    result = run_model("flow", args.collective, algorithm, net, p, size, itemsize, protocol=protocol_of(args),
                       channels=channels_of(args), runtime=runtime_of(args))
    draw_utilization(G, result, args.output)
    print(f"# {result.collective} {label(result)} {result.nbytes} B on {net.name} ({p} ranks): {result.time * 1e6:.2f} us, "
          f"busbw {result.busbw:.3f} GB/s")
    shown = result.bottlenecks[:8]
    more = f" (+{len(result.bottlenecks) - len(shown)} more)" if len(result.bottlenecks) > len(shown) else ""
    util = max(result.utilization, default=0.0)
    print(f"# bottleneck links ({100 * util:.1f}% busy): {', '.join(f'{u}->{v}' for u, v in shown)}{more}")
    print(f"# wrote {args.output}", file=sys.stderr)
    return 0
