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

from collectives.algorithms import algorithm_params, check_algorithm, check_collective, get_schedule
from collectives.tuning import TuningTable
from sim.flow import Network, SimResult, simulate

__all__ = ["MODELS", "Crossover", "Selection", "run_model", "sweep", "select", "tuning_table"]

#: Model name -> ``fn(schedule, network, nbytes, itemsize=...) -> SimResult``.
MODELS: dict[str, Callable] = {}


def _analytic(schedule, network, nbytes, itemsize=4):
    from sim.analytic import predict

    return predict(schedule, network, nbytes, itemsize=itemsize)


MODELS["flow"] = simulate
MODELS["analytic"] = _analytic


def run_model(model: str, collective: str, algorithm: str, network: Network, nranks: int, nbytes: int,
              itemsize: int = 4) -> SimResult:
    """Simulate one (collective, algorithm, size) with ``model`` ("flow" or "analytic")."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from: {', '.join(MODELS)}")
    schedule = get_schedule(collective, algorithm, nranks, **algorithm_params(algorithm, nranks, nbytes))
    return MODELS[model](schedule, network, nbytes, itemsize=itemsize)


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
) -> list[SimResult]:
    """Simulate every algorithm at every size; results ordered by size, then algorithm.

    ``progress(note)`` is called after each simulation.
    """
    check_collective(collective)
    for a in algorithms:
        check_algorithm(a)
    network.check_ranks(nranks)
    out = []
    for nbytes in sizes:
        for algorithm in algorithms:
            out.append(run_model(model, collective, algorithm, network, nranks, nbytes, itemsize))
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
           itemsize: int = 4) -> Selection:
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
                t0 = run_model(first.model, first.collective, a0, network, first.nranks, mid, itemsize).time
                t1 = run_model(first.model, first.collective, a1, network, first.nranks, mid, itemsize).time
                if t1 < t0:
                    hi = mid
                else:
                    lo = mid
        sel.crossovers.append(Crossover(a0, a1, s0, s1, hi))
    return sel


def tuning_table(selections: Sequence[Selection], source: str = "") -> TuningTable:
    """A :class:`collectives.tuning.TuningTable` with one row list per world size."""
    if not selections:
        raise ValueError("no selections to write")
    collectives_ = {s.collective for s in selections}
    if len(collectives_) != 1:
        raise ValueError(f"a tuning table holds one collective, got {sorted(collectives_)}")
    tables = {s.nranks: s.rows() for s in selections}
    if not source:
        s = selections[0]
        source = f"{s.topology} ({s.model} model)"
    return TuningTable(tables, collective=selections[0].collective, source=source)
