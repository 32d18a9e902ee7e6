"""Arguments the ``collsim`` commands share: the model options, algorithm lists, sizes, outputs.

A private module (its name starts with ``_``), so :mod:`sim.cli` does not take it for a command.
Every check raises ValueError naming the option and what is allowed; the CLI prints it as one line.
"""

from __future__ import annotations

import contextlib
import os

from collectives import ALGORITHMS, COLLECTIVES, get_schedule

__all__ = [
    "add_model_arguments",
    "add_nranks_argument",
    "channels_of",
    "check_output",
    "collective_algorithms",
    "itemsize_of",
    "load_network",
    "not_a_collective",
    "nranks_of",
    "parse_algorithms",
    "parse_option",
    "parse_sizes_of",
    "protocol_of",
    "runtime_of",
]


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
    parser.add_argument("--runtime", default="torch",
                        help="the runtime whose execution is costed: torch (on CPU topologies it posts small buffers' "
                             "receives a step ahead and runs large ones in lanes, collectives.execution) or mpi "
                             "(plain steps); on GPU topologies both run plain steps (default torch)")
    if sizes is not None:
        parser.add_argument("--sizes", default=sizes, help=f"START:END[:xF] or a list, units B/KiB/MiB/GiB (default {sizes})")


def add_nranks_argument(parser, help: str, **kwargs) -> None:
    """``--nranks`` (alias ``--ranks``): every command names the world size the same way."""
    parser.add_argument("--nranks", "--ranks", dest="nranks", metavar="N", help=f"{help}; --ranks is an alias",
                        **kwargs)


def collective_algorithms(collective: str) -> tuple[str, ...]:
    """The algorithms that run ``collective`` as torch and MPI define it: the ones the runtimes run.

    The runtimes' own rule (:func:`collectives.plan.runnable_algorithms`), so the simulating
    commands and the runtimes cannot disagree: every allreduce; for reduce_scatter and allgather
    only rank-blocked schedules (block ``r`` ends on, or starts from, rank ``r``). The tree's halves
    reduce onto and broadcast from its two roots, phases of its allreduce.
    """
    from collectives.plan import runnable_algorithms

    return runnable_algorithms(collective)


def not_a_collective(algorithm: str, collective: str) -> str:
    """Why ``algorithm`` has no ``collective`` of its own (for a one-line error)."""
    try:
        owners = len(set(get_schedule(collective, algorithm, 8).owner.tolist()))
    except ValueError:
        return f"{algorithm} has no {collective}"
    where = (f"leaves the reduced blocks on {owners} of the p ranks instead of block r on rank r"
             if collective == "reduce_scatter" else
             f"starts from blocks on {owners} of the p ranks instead of block r on rank r")
    return (f"{algorithm}'s {collective} is a phase of its allreduce, not {'an' if collective[0] in 'aeiou' else 'a'} {collective} of its own "
            f"(it {where}), so no runtime runs it")


def parse_algorithms(text: str, collective: str = "allreduce", option: str = "--algorithms") -> list[str]:
    """Comma-separated algorithm names, or 'all' (every algorithm that runs ``collective``)."""
    allowed = collective_algorithms(collective) if collective in COLLECTIVES else tuple(ALGORITHMS)
    if text.strip() == "all":
        return list(allowed)
    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise ValueError(f"{option}: give at least one algorithm")
    from sim.innetwork import SIMULATED_ONLY

    for name in names:
        if name in SIMULATED_ONLY:  # costed on topologies that declare the switch capability
            continue
        if name not in ALGORITHMS:
            sim_only = ", ".join(f"{a} (simulated only)" for a in SIMULATED_ONLY)
            raise ValueError(f"{option}: unknown algorithm {name!r}; choose from: all, {', '.join(ALGORITHMS)}, {sim_only}")
        if name not in allowed:
            raise ValueError(f"{option}: {not_a_collective(name, collective)}; "
                             f"for {collective} choose from: all, {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def parse_option(parse, text: str, option: str):
    """``parse(text)``, with a ValueError's message prefixed by the option it came from."""
    try:
        return parse(text)
    except ValueError as err:
        raise ValueError(f"{option}: {err}") from None


def parse_sizes_of(text: str, dtype: str, option: str = "--sizes") -> list[int]:
    """Sizes from ``text`` (:func:`sim.results.parse_sizes`), each at least one ``dtype`` element."""
    from sim.results import parse_sizes

    itemsize = itemsize_of(dtype)
    return parse_option(lambda t: parse_sizes(t, itemsize, dtype), text, option)


def itemsize_of(dtype: str) -> int:
    from sim.results import DTYPES

    if dtype not in DTYPES:
        raise ValueError(f"--dtype: unknown type {dtype!r}; choose from: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def check_output(path: str | None, option: str, *, figure: bool = False) -> None:
    """Refuse an output file that cannot be written, before any work is done.

    The file is opened for appending (nothing in an existing file changes) and removed again if
    it did not exist, so a folder that is missing, read-only or a special file system (``/sys``),
    and a path that is a folder, all fail here in one line naming ``option``. With ``figure`` the
    file type must be one :func:`sim.plots.figure_formats` lists (the same list for every picture).
    """
    if not path:
        return
    if os.path.isdir(path):
        raise ValueError(f"{option}: {path!r} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{option}: folder {folder!r} of {path!r} does not exist")
    if figure:
        from sim.plots import check_figure_path

        parse_option(check_figure_path, path, option)
    existed = os.path.exists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as err:
        raise ValueError(f"{option}: cannot write {path!r}: {err.strerror or err}") from None
    if not existed:  # every rank of a job may probe the same path at once: the first removal wins
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


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


def runtime_of(args) -> str:
    """``--runtime`` checked (torch, mpi)."""
    from collectives.execution import RUNTIMES

    text = getattr(args, "runtime", "torch")
    if text not in RUNTIMES:
        raise ValueError(f"--runtime must be one of: {', '.join(RUNTIMES)}; got {text!r}")
    return text


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
    n = len(network.endpoints) if args.nranks is None else int(args.nranks)
    if n < 1:
        raise ValueError(f"--nranks must be >= 1, got {n}")
    if n > len(network.endpoints):
        raise ValueError(f"--nranks {n}: topology {network.name!r} has only {len(network.endpoints)} endpoints")
    return n
