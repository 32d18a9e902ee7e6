"""Arguments the ``collsim`` commands share: the model options, algorithm lists, sizes, outputs.

A private module (its name starts with ``_``), so :mod:`sim.cli` does not take it for a command.
Every check raises ValueError naming the option and what is allowed; the CLI prints it as one line.
"""

from __future__ import annotations

import os

from collectives import ALGORITHMS, COLLECTIVES

__all__ = [
    "FIGURE_SUFFIXES",
    "add_model_arguments",
    "check_output",
    "itemsize_of",
    "load_network",
    "nranks_of",
    "parse_algorithms",
    "parse_option",
]

#: File types the plotting commands write.
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def add_model_arguments(parser, *, sizes: str | None = "1KiB:256MiB:x4") -> None:
    """Options shared by simulate, select and draw."""
    parser.add_argument("--topology", required=True, metavar="SPEC",
                        help="topology spec (e.g. fat_tree:k=4,bandwidth=100Gbps,latency=1us) or a .json/.graphml file")
    parser.add_argument("--collective", default="allreduce", help=f"one of: {', '.join(COLLECTIVES)} (default allreduce)")
    parser.add_argument("--params", metavar="FILE", default=None,
                        help="model parameters (collsim-params/1 JSON: alpha, gamma, bandwidth_efficiency, link_classes)")
    parser.add_argument("--dtype", default="float32", help="element type (default float32)")
    parser.add_argument("--protocol", default="auto",
                        help="GPU topologies: NCCL protocol auto (the cheapest per size, as NCCL picks), ll, ll128 or "
                             "simple; CPU topologies have one protocol (default auto)")
    parser.add_argument("--channels", default="auto",
                        help="channels of ring, tree and hierarchical: a number, or auto (the topology's NICs per node; "
                             "1 without NICs) (default auto)")
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


def parse_option(parse, text: str, option: str):
    """``parse(text)``, with a ValueError's message prefixed by the option it came from."""
    try:
        return parse(text)
    except ValueError as err:
        raise ValueError(f"{option}: {err}") from None


def itemsize_of(dtype: str) -> int:
    from sim.results import DTYPES

    if dtype not in DTYPES:
        raise ValueError(f"--dtype: unknown type {dtype!r}; choose from: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def check_output(path: str | None, option: str, *, figure: bool = False) -> None:
    """Refuse an output file whose folder does not exist (or, for a figure, an unknown file type)."""
    if not path:
        return
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise ValueError(f"{option}: folder of {path!r} does not exist")
    if figure and os.path.splitext(path)[1].lower() not in FIGURE_SUFFIXES:
        raise ValueError(f"{option}: use a .png, .svg or .pdf file name, got {path!r}")


def load_network(args):
    """(graph, compiled network) from ``--topology`` and ``--params``."""
    import topologies
    from sim.flow import Network
    from sim.params import defaults_for, load_params

    if args.collective not in COLLECTIVES:
        raise ValueError(f"--collective: unknown collective {args.collective!r}; choose from: {', '.join(COLLECTIVES)}")
    params = load_params(args.params) if args.params else None
    try:
        G = topologies.from_spec(args.topology)
    except (ValueError, OSError) as err:
        raise ValueError(f"--topology: {str(err).splitlines()[0] if str(err) else err}") from None
    # without --params the endpoints decide: GPU defaults for GPUs, CPU defaults for hosts (sim.params)
    return G, Network(G, params if params is not None else defaults_for(G))


def protocol_of(args) -> str:
    """``--protocol`` checked (auto, ll, ll128, simple)."""
    from sim.protocols import check_protocol

    return parse_option(check_protocol, getattr(args, "protocol", "auto"), "--protocol")


def channels_of(args) -> int | str:
    """``--channels``: ``"auto"`` or an integer >= 1."""
    text = str(getattr(args, "channels", "auto")).strip()
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"--channels must be auto or an integer >= 1, got {text!r}")
    return value


def nranks_of(args, network) -> int:
    n = len(network.endpoints) if args.nranks is None else args.nranks
    if n < 1:
        raise ValueError(f"--nranks must be >= 1, got {n}")
    if n > len(network.endpoints):
        raise ValueError(f"--nranks {n}: topology {network.name!r} has only {len(network.endpoints)} endpoints")
    return n
