"""The algorithm registry: one module per algorithm, each generating all three collectives.

>>> from collectives.algorithms import get_schedule
>>> get_schedule("allreduce", "ring", 4).nsteps
6
"""

from __future__ import annotations

from types import ModuleType

from collectives.algorithms import recursive_doubling, recursive_halving, ring, tree
from collectives.schedule import COLLECTIVES, Schedule

__all__ = ["ALGORITHMS", "get_schedule", "algorithm_params", "check_algorithm", "check_collective"]

#: Algorithm name -> module with ``allreduce``, ``reduce_scatter`` and ``allgather`` generators.
ALGORITHMS: dict[str, ModuleType] = {
    "ring": ring,
    "tree": tree,
    "recursive_halving": recursive_halving,
    "recursive_doubling": recursive_doubling,
}


def check_algorithm(algorithm: str) -> str:
    """Return ``algorithm`` if registered, else raise ValueError listing the choices."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose from: {', '.join(ALGORITHMS)}")
    return algorithm


def check_collective(collective: str) -> str:
    if collective not in COLLECTIVES:
        raise ValueError(f"unknown collective {collective!r}; choose from: {', '.join(COLLECTIVES)}")
    return collective


def algorithm_params(algorithm: str, nranks: int, nbytes: int | None = None) -> dict:
    """Generator parameters the runtimes and the simulator use for a buffer of ``nbytes``.

    Only the tree has one: ``segments``, about 512 KiB per segment and tree.
    """
    check_algorithm(algorithm)
    if algorithm == "tree":
        return {"segments": 1 if nbytes is None else tree.default_segments(nbytes)}
    return {}


def get_schedule(collective: str, algorithm: str, nranks: int, **params) -> Schedule:
    """Generate the schedule of ``collective`` by ``algorithm`` on ``nranks`` ranks.

    Raises
    ------
    ValueError
        Unknown collective or algorithm (the message lists the choices), ``nranks < 1``, or a
        parameter the algorithm does not take.
    """
    check_collective(collective)
    module = ALGORITHMS[check_algorithm(algorithm)]
    if not isinstance(nranks, int) or nranks < 1:
        raise ValueError(f"nranks must be a positive integer, got {nranks!r}")
    try:
        return getattr(module, collective)(nranks, **params)
    except TypeError as err:
        raise ValueError(f"{algorithm} {collective} does not take parameters {sorted(params)}: {err}") from None
