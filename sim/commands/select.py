"""``collsim select``: the best algorithm per size, the crossover sizes, and the tuning table."""

from __future__ import annotations

import sys

from collectives import ALGORITHMS

NAME = "select"
HELP = "predict the fastest algorithm per size and the crossovers on a topology; write the tuning table for algorithm='auto'"

__all__ = ["NAME", "HELP", "add_arguments", "run"]


def add_arguments(parser) -> None:
    from sim.commands._args import add_model_arguments

    add_model_arguments(parser, sizes="1KiB:256MiB:x2")
    parser.add_argument("--algorithms", default="all",
                        help=f"comma-separated, or 'all' ({', '.join(ALGORITHMS)}; and, simulated only, nvls and collnet "
                             "where the topology declares NVLS / SHARP switches)")
    from sim.commands._args import add_nranks_argument

    add_nranks_argument(parser, "world sizes, comma-separated (default: one per endpoint of the topology)",
                        default=None)
    parser.add_argument("--model", default="flow", help="flow (default) or analytic")
    parser.add_argument("--refine", type=int, default=4, help="bisection steps per crossover (default 4)")
    parser.add_argument("-o", "--output", metavar="FILE", default=None,
                        help="write the tuning table here (--format: collsim JSON, or NCCL's tuner CSV)")
    parser.add_argument("--format", default="collsim", choices=("collsim", "nccl-tuner"),
                        help="what -o writes: collsim (the JSON tuning table algorithm='auto' reads; runnable algorithms "
                             "only) or nccl-tuner (the CSV of NCCL's example tuner plugin, NCCL_TUNER_CONFIG_FILE: "
                             "ring, tree, nvls, collnet_direct with protocols) (default collsim)")


def _world_sizes(text, net) -> list[int]:
    if text is None:
        return [len(net.endpoints)]
    try:
        sizes = sorted({int(x) for x in str(text).split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--nranks must be comma-separated integers, got {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise ValueError(f"--nranks must be positive integers, got {text!r}")
    if sizes[-1] > len(net.endpoints):
        raise ValueError(f"--nranks {sizes[-1]}: topology {net.name!r} has only {len(net.endpoints)} endpoints")
    return sizes


def _human(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n} B"


def run(args) -> int:
    from sim.commands._args import check_output, itemsize_of, load_network, parse_algorithms, parse_sizes_of
    from sim.results import Progress
    from sim.select import MODELS, select, sweep, tuning_table

    if args.model not in MODELS:
        raise ValueError(f"--model: unknown model {args.model!r}; choose from: {', '.join(MODELS)}")
    if args.refine < 0:
        raise ValueError(f"--refine must be >= 0, got {args.refine}")
    algorithms = parse_algorithms(args.algorithms, args.collective)
    itemsize = itemsize_of(args.dtype)
    sizes = parse_sizes_of(args.sizes, args.dtype)
    check_output(args.output, "-o/--output")
    from sim.commands._args import channels_of, protocol_of, runtime_of
    from sim.explain import explain
    from sim.innetwork import NOTE, resolve_algorithms
    from sim.select import label

    protocol, channels, runtime = protocol_of(args), channels_of(args), runtime_of(args)
    G, net = load_network(args)
    worlds = _world_sizes(args.nranks, net)
    if args.format == "nccl-tuner":
        from sim.params import device_of

        if device_of(G, net.params) != "gpu":
            raise ValueError(f"--format nccl-tuner: NCCL runs on GPUs; topology {net.name!r} has CPU endpoints")
    selections = []
    with Progress(len(worlds) * len(sizes) * len(algorithms), "select") as bar:
        for p in worlds:
            names = resolve_algorithms(algorithms, args.algorithms, net, p, args.collective)
            results = sweep(net, p, sizes, names, collective=args.collective, model=args.model,
                            itemsize=itemsize, progress=bar.advance, protocol=protocol, channels=channels,
                        runtime=runtime)
            selections.append(select(results, refine=args.refine, network=net, itemsize=itemsize,
                                     protocol=protocol, channels=channels, runtime=runtime))
    for sel in selections:
        print(f"# collsim select: {sel.collective} on {sel.topology} ({sel.nranks} ranks), {sel.model} model")
        print(f"#{'size(B)':>12} {'best':>19} {'time(us)':>12} {'runner-up':>19} {'slower by':>10}")
        by_size: dict[int, list] = {}
        for r in sel.results:
            by_size.setdefault(r.nbytes, []).append(r)
        for size, rs in sorted(by_size.items()):
            rs = sorted(rs, key=lambda r: r.time)
            second = rs[1] if len(rs) > 1 else None
            ratio = f"{second.time / rs[0].time:.2f}x" if second and rs[0].time > 0 else "-"
            print(f"{size:>13} {label(rs[0]):>19} {rs[0].time * 1e6:>12.2f} {label(second) if second else '-':>19} {ratio:>10}")
        if sel.crossovers:
            print("# crossovers:")
            for c in sel.crossovers:
                print(f"#   {c.before} -> {c.after} at {c.at} B (~{_human(c.at)}; swept {c.below} -> {c.above})")
        else:
            only = sel.best[0][1] if sel.best else "-"
            print(f"# no crossover: {only} is predicted fastest at every size")
        print("\n".join(explain(sel, net, itemsize=itemsize, channels=channels)))
        if any(getattr(r, "simulated_only", False) for r in sel.results):
            print(f"# {NOTE}")
    if args.output and args.format == "nccl-tuner":
        from sim.tuner import format_tuner, tuner_rows

        rows = []
        for sel in selections:
            rows += tuner_rows(net, sel.nranks, sizes, collective=args.collective, model=args.model, itemsize=itemsize,
                               refine=args.refine, channels=channels)
        with open(args.output, "w") as fh:
            fh.write(format_tuner(rows, source=f"{net.name} ({args.model} model)"))
        print(f"# wrote NCCL tuner config {args.output} ({len(rows)} rows; NCCL_TUNER_CONFIG_FILE={args.output} with NCCL's "
              "example tuner plugin)", file=sys.stderr)
    elif args.output:
        table = tuning_table(selections)
        table.save(args.output)
        print(f"# wrote tuning table {args.output} (COLLSIM_TUNING={args.output} makes algorithm='auto' use it)", file=sys.stderr)
    return 0
