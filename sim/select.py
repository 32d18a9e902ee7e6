"""Algorithm selection: which algorithm the model predicts fastest at each size, and where that changes.

:func:`sweep` simulates every (algorithm, size) pair on one topology; :func:`select` turns the
results into the winner per size and the crossover sizes (refined by bisection between the two
measured sizes around each change); :func:`tuning_table` writes them as the
:class:`collectives.tuning.TuningTable` that ``algorithm="auto"`` reads. Rows of the table are
``[max_bytes, algorithm]``: an algorithm is used up to the last size below the crossover where it
was predicted best.

>>> import topologies
>>> from sim.flow import Network
>>> net = Network(topologies.switch(8))
>>> sel = select(sweep(net, 8, [1024, 1 << 24], ["ring", "recursive_doubling"]))
>>> [(s, a) for s, a, _ in sel.best]
[(1024, 'recursive_doubling'), (16777216, 'ring')]
>>> len(sel.crossovers)
1
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from collectives.algorithms import ALGORITHMS, algorithm_params, check_collective, get_schedule
from collectives.tuning import TuningTable
from sim.flow import Network, SimResult, simulate
from sim.innetwork import SIMULATED_ONLY

__all__ = [
    "MODELS",
    "Crossover",
    "Selection",
    "check_algorithm",
    "is_simulated_only",
    "label",
    "layout_for",
    "run_model",
    "sweep",
    "select",
    "tuning_table",
]

#: Model name -> ``fn(schedule, network, nbytes, itemsize=..., execution=...) -> SimResult``.
MODELS: dict[str, Callable] = {}


def _analytic(schedule, network, nbytes, itemsize=4, execution=None):
    from sim.analytic import predict

    return predict(schedule, network, nbytes, itemsize=itemsize, execution=execution)


MODELS["flow"] = simulate
MODELS["analytic"] = _analytic


def check_algorithm(algorithm: str) -> str:
    """Return ``algorithm`` if the simulator knows it (a runtime algorithm or a simulated-only one)."""
    if algorithm not in ALGORITHMS and algorithm not in SIMULATED_ONLY:
        names = [*ALGORITHMS, *(f"{a} (simulated only)" for a in SIMULATED_ONLY)]
        raise ValueError(f"unknown algorithm {algorithm!r}; choose from: {', '.join(names)}")
    return algorithm


def is_simulated_only(result) -> bool:
    """True for a result of an algorithm no runtime executes (``nvls``, ``collnet``)."""
    return bool(getattr(result, "simulated_only", False))


def label(result) -> str:
    """``algorithm[/protocol][(simulated-only)]``: how tables name a result (as :func:`sim.results.algorithm_cell`).

    >>> from sim.flow import SimResult
    >>> label(SimResult("allreduce", "ring", 8, 1024, 256, 4, 1e-5))
    'ring'
    """
    text = result.algorithm
    protocol = getattr(result, "protocol", None)
    if protocol:
        text += f"/{protocol}"
    if is_simulated_only(result):
        text += "(simulated-only)"
    return text


def layout_for(network: Network, nranks: int):
    """The :class:`collectives.layout.Layout` of the first ``nranks`` ranks of ``network``'s topology,
    or None when it tells a schedule nothing (every rank on a node of its own, one NIC each)."""
    from collectives.layout import Layout
    from sim.layout import layout_of

    full = layout_of(network.G)
    layout = Layout.from_nodes(full.node_of[:nranks], nics_per_node=full.nics_per_node)
    if layout.nnodes == nranks and layout.nics_per_node == 1:
        return None
    return layout


def _schedule(collective, algorithm, nranks, nbytes, layout, channels):
    params = algorithm_params(algorithm, nranks, nbytes, layout=layout, channels=channels)
    return get_schedule(collective, algorithm, nranks, **params)


def run_model(model: str, collective: str, algorithm: str, network: Network, nranks: int, nbytes: int,
              itemsize: int = 4, *, protocol: str = "auto", channels: int | str | None = "auto",
              layout="topology", runtime: str = "torch") -> SimResult:
    """Simulate one (collective, algorithm, size) with ``model`` ("flow" or "analytic").

    Parameters
    ----------
    model, collective, algorithm : str
        ``algorithm`` may be a simulated-only one (:data:`sim.innetwork.SIMULATED_ONLY`).
    network : Network
    nranks, nbytes, itemsize : int
    protocol : {"auto", "ll", "ll128", "simple"}
        GPU topologies: NCCL's protocol (``auto``: the cheapest, see :mod:`sim.protocols`). CPU
        topologies have one protocol: only ``auto`` (or ``simple``) is accepted.
    channels : int or "auto"
        Channels of ``ring``, ``tree`` and ``hierarchical`` (``auto``: the topology's NICs per node).
    layout : Layout, None or "topology"
        Which ranks share a node (default: from the topology, :func:`layout_for`; None: flat).
    runtime : {"torch", "mpi"}
        The runtime whose execution is costed (:func:`collectives.execution.execution_for`): on CPU
        topologies the torch runtime posts small buffers' receives a step ahead and runs large
        ones in lanes; MPI, and torch on GPUs (NCCL), run the steps as written.

    Returns
    -------
    SimResult
        With ``protocol`` (GPU topologies) and ``simulated_only`` set as attributes.
    """
    from sim.params import device_of
    from sim.protocols import check_protocol, pipeline_factor, variants

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from: {', '.join(MODELS)}")
    check_protocol(protocol)
    check_algorithm(algorithm)
    gpu = device_of(network.G, network.params) == "gpu"
    from collectives.execution import RUNTIMES, execution_for

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of: {', '.join(RUNTIMES)}; got {runtime!r}")
    if not gpu and protocol not in ("auto", "simple"):
        raise ValueError(f"protocol {protocol!r} applies to GPU topologies; {network.name!r} has CPU endpoints (one protocol)")
    if algorithm in SIMULATED_ONLY:
        from sim.innetwork import cost

        if protocol not in ("auto", "simple"):
            raise ValueError(f"{algorithm} runs NCCL's simple protocol only, got protocol {protocol!r}")
        return cost(network, algorithm, collective, nranks, nbytes, itemsize=itemsize, model=model)
    if isinstance(layout, str):
        if layout != "topology":
            raise ValueError(f"layout must be a Layout, None or 'topology', got {layout!r}")
        layout = layout_for(network, nranks)
    schedule = _schedule(collective, algorithm, nranks, nbytes, layout, channels)
    if not gpu:
        execution = execution_for(schedule, nbytes, itemsize, runtime=runtime, device="cpu")
        result = MODELS[model](schedule, network, nbytes, itemsize=itemsize, execution=None if execution.plain else execution)
        result.simulated_only = False
        result.execution = execution
        return result
    from sim.results import busbw_factor

    best = None
    # Simple first: at large sizes it wins, and a capped protocol whose cap alone is slower is skipped
    for variant in sorted(variants(network, nranks, algorithm, collective, protocol, pipeline_factor(schedule)),
                          key=lambda v: v.protocol != "simple"):
        floor = variant.base_latency + nbytes * busbw_factor(collective, nranks) / variant.bus_cap
        if best is not None and floor >= best.time:
            continue
        result = MODELS[model](schedule, variant.network, nbytes, itemsize=itemsize)
        latency = 0.0
        if math.isfinite(variant.bus_cap):  # the cap bounds the bandwidth term: find the latency term
            latency = MODELS[model](schedule, variant.network, schedule.nchunks * itemsize, itemsize=itemsize).time
        result = variant.finish(result, network, latency)
        result.simulated_only = False
        if best is None or result.time < best.time:
            best = result
    return best


def sweep(
    network: Network,
    nranks: int,
    sizes: Sequence[int],
    algorithms: Sequence[str],
    *,
    collective: str = "allreduce",
    model: str = "flow",
    itemsize: int = 4,
    progress: Callable[[str], None] | None = None,
    protocol: str = "auto",
    channels: int | str | None = "auto",
    runtime: str = "torch",
) -> list[SimResult]:
    """Simulate every algorithm at every size; results ordered by size, then algorithm.

    ``progress(note)`` is called after each simulation. ``protocol``, ``channels`` and ``runtime``
    as in :func:`run_model`.
    """
    from sim.protocols import check_protocol

    check_collective(collective)
    check_protocol(protocol)
    for a in algorithms:
        check_algorithm(a)
    network.check_ranks(nranks)
    out = []
    for nbytes in sizes:
        for algorithm in algorithms:
            out.append(run_model(model, collective, algorithm, network, nranks, nbytes, itemsize,
                                 protocol=protocol, channels=channels, runtime=runtime))
            if progress is not None:
                progress(f"{algorithm} {nbytes} B")
    return out


@dataclass(frozen=True)
class Crossover:
    """Between ``below`` and ``above`` bytes the winner changes from ``before`` to ``after``.

    ``at`` is the first size (after bisection) at which ``after`` is predicted faster.
    """

    before: str
    after: str
    below: int
    above: int
    at: int


@dataclass
class Selection:
    """Winner per size and the crossovers, for one topology, world size and collective."""

    collective: str
    nranks: int
    topology: str
    model: str
    best: list[tuple[int, str, float]] = field(default_factory=list)  # (size, algorithm, seconds)
    crossovers: list[Crossover] = field(default_factory=list)
    results: list[SimResult] = field(default_factory=list)

    def rows(self) -> list[tuple[int | None, str]]:
        """Tuning-table rows ``[(max_bytes, algorithm), ..., (None, last)]``."""
        rows: list[tuple[int | None, str]] = []
        for c in self.crossovers:
            rows.append((c.at - 1, c.before))
        last = self.best[-1][1] if self.best else "ring"
        rows.append((None, last))
        # merge neighbours that name the same algorithm
        merged: list[tuple[int | None, str]] = []
        for limit, name in rows:
            if merged and merged[-1][1] == name:
                merged[-1] = (limit, name)
            else:
                merged.append((limit, name))
        return merged


def select(results: Sequence[SimResult], *, refine: int = 0, network: Network | None = None,
           itemsize: int = 4, protocol: str = "auto", channels: int | str | None = "auto",
           runtime: str = "torch") -> Selection:
    """The fastest algorithm per size and the crossover sizes.

    Parameters
    ----------
    results : sequence of SimResult
        From :func:`sweep` (one topology, world size and collective).
    refine : int
        Bisection steps (in log size) between the two sizes around each crossover; needs
        ``network``. 0 reports the first swept size at which the new winner leads.
    network : Network, optional
        The topology the results came from (for ``refine``).
    protocol, channels, runtime
        What the results were simulated with (for ``refine``; see :func:`run_model`).
    """
    if not results:
        raise ValueError("no results to select from")
    first = results[0]
    sel = Selection(first.collective, first.nranks, first.topology, first.model, results=list(results))
    by_size: dict[int, SimResult] = {}
    for r in results:
        if (r.collective, r.nranks, r.topology) != (first.collective, first.nranks, first.topology):
            raise ValueError("results mix collectives, world sizes or topologies; select one at a time")
        if r.nbytes not in by_size or r.time < by_size[r.nbytes].time:
            by_size[r.nbytes] = r
    sel.best = [(s, r.algorithm, r.time) for s, r in sorted(by_size.items())]
    for (s0, a0, _), (s1, a1, _) in zip(sel.best, sel.best[1:], strict=False):
        if a0 == a1:
            continue
        lo, hi = s0, s1
        if refine and network is not None:
            for _ in range(refine):
                mid = int(round(math.sqrt(lo * hi)))
                mid -= mid % (itemsize * max(1, first.nranks))
                if not lo < mid < hi:
                    break
                kw = dict(protocol=protocol, channels=channels, runtime=runtime)
                t0 = run_model(first.model, first.collective, a0, network, first.nranks, mid, itemsize, **kw).time
                t1 = run_model(first.model, first.collective, a1, network, first.nranks, mid, itemsize, **kw).time
                if t1 < t0:
                    hi = mid
                else:
                    lo = mid
        sel.crossovers.append(Crossover(a0, a1, s0, s1, hi))
    return sel


def tuning_table(selections: Sequence[Selection], source: str = "") -> TuningTable:
    """A :class:`collectives.tuning.TuningTable` with one row list per world size.

    Simulated-only algorithms (``nvls``, ``collnet``) never enter it: the runtime cannot run them,
    so a selection that contains them is chosen again among the runnable results.
    """
    if not selections:
        raise ValueError("no selections to write")
    runnable = []
    for sel in selections:
        if any(is_simulated_only(r) for r in sel.results):
            kept = [r for r in sel.results if not is_simulated_only(r)]
            if not kept:
                raise ValueError(f"no runnable algorithm in the selection for {sel.nranks} ranks (only simulated-only ones)")
            sel = select(kept)
        runnable.append(sel)
    selections = runnable
    collectives_ = {s.collective for s in selections}
    if len(collectives_) != 1:
        raise ValueError(f"a tuning table holds one collective, got {sorted(collectives_)}")
    tables = {s.nranks: s.rows() for s in selections}
    if not source:
        s = selections[0]
        source = f"{s.topology} ({s.model} model)"
    return TuningTable(tables, collective=selections[0].collective, source=source)
