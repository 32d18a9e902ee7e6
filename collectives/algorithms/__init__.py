"""The algorithm registry: one module per algorithm, each generating the collectives it can.

Every module has ``allreduce``; ``ring``, ``tree``, ``recursive_halving`` and
``recursive_doubling`` also ``reduce_scatter`` and ``allgather``. A module that generates fewer
lists them in ``COLLECTIVES`` (``hierarchical``: allreduce only); :func:`collectives_of` reads it.

>>> from collectives.algorithms import get_schedule
>>> get_schedule("allreduce", "ring", 4).nsteps
6
"""

from __future__ import annotations

import inspect
from types import ModuleType

from collectives.algorithms import hierarchical, recursive_doubling, recursive_halving, ring, tree
from collectives.algorithms._channels import check_channels
from collectives.layout import Layout
from collectives.schedule import COLLECTIVES, Schedule

__all__ = [
    "ALGORITHMS",
    "get_schedule",
    "algorithm_params",
    "collectives_of",
    "takes",
    "check_algorithm",
    "check_collective",
]

#: Algorithm name -> module with a generator per collective (:func:`collectives_of`).
ALGORITHMS: dict[str, ModuleType] = {
    "ring": ring,
    "tree": tree,
    "recursive_halving": recursive_halving,
    "recursive_doubling": recursive_doubling,
    "hierarchical": hierarchical,
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


def takes(algorithm: str, parameter: str) -> bool:
    """Whether ``algorithm``'s generators take ``parameter`` (``"layout"``, ``"channels"``, ...)."""
    fn = ALGORITHMS[check_algorithm(algorithm)].allreduce
    return parameter in inspect.signature(fn).parameters


def algorithm_params(
    algorithm: str, nranks: int, nbytes: int | None = None, *, layout: Layout | None = None, channels: int | str | None = None
) -> dict:
    """Generator parameters the runtimes and the simulator use for a buffer of ``nbytes``.

    * ``tree``: ``segments``, about 512 KiB per segment, tree and channel;
    * ``ring``, ``tree``, ``hierarchical``: ``channels`` when it is not 1 (``None`` or ``"auto"``
      resolve to ``layout.nics_per_node``, 1 without a layout) and ``layout`` when it is given and
      not flat. So calls without a layout return the same dict as before layouts existed.

    Algorithms that take no layout or channels ignore both.

    >>> from collectives.layout import Layout
    >>> algorithm_params("ring", 8)
    {}
    >>> algorithm_params("ring", 8, layout=Layout.regular(2, 4, nics_per_node=2))["channels"]
    2
    >>> algorithm_params("tree", 8, 1 << 22, channels=2)
    {'segments': 2, 'channels': 2}
    """
    check_algorithm(algorithm)
    if layout is not None:
        if not isinstance(layout, Layout):
            raise ValueError(f"layout must be a collectives.layout.Layout or None, got {type(layout).__name__}")
        if layout.nranks != nranks:
            raise ValueError(f"layout has {layout.nranks} ranks ({layout.describe()}) but nranks={nranks}")
    if channels is None or channels == "auto":
        channels = layout.nics_per_node if layout is not None else 1
    channels = check_channels(channels)
    params: dict = {}
    if algorithm == "tree":
        params["segments"] = 1 if nbytes is None else tree.default_segments(nbytes // channels)
    if takes(algorithm, "channels") and channels != 1:
        params["channels"] = channels
    if takes(algorithm, "layout") and layout is not None and not layout.is_flat:
        params["layout"] = layout
    return params


def collectives_of(algorithm: str) -> tuple[str, ...]:
    """The collectives ``algorithm`` generates (``hierarchical`` is allreduce-only).

    >>> collectives_of("hierarchical")
    ('allreduce',)
    """
    return getattr(ALGORITHMS[check_algorithm(algorithm)], "COLLECTIVES", COLLECTIVES)


def get_schedule(collective: str, algorithm: str, nranks: int, **params) -> Schedule:
    """Generate the schedule of ``collective`` by ``algorithm`` on ``nranks`` ranks.

    Parameters
    ----------
    collective, algorithm : str
    nranks : int
    **params
        The generator's parameters: ``segments`` (tree), ``layout`` and ``channels`` (ring, tree,
        hierarchical), ``inner``/``outer`` (hierarchical), ``order`` (recursive_halving).

    Raises
    ------
    ValueError
        Unknown collective or algorithm (the message lists the choices), a collective the algorithm
        does not generate, ``nranks < 1``, or a parameter the algorithm does not take.
    """
    check_collective(collective)
    module = ALGORITHMS[check_algorithm(algorithm)]
    if isinstance(nranks, bool) or not isinstance(nranks, int) or nranks < 1:
        raise ValueError(f"nranks must be a positive integer, got {nranks!r}")
    if collective not in collectives_of(algorithm):
        raise ValueError(
            f"{algorithm} generates only {', '.join(collectives_of(algorithm))}, not {collective}; "
            f"algorithms for {collective}: {', '.join(a for a in ALGORITHMS if collective in collectives_of(a))}"
        )
    try:
        return getattr(module, collective)(nranks, **params)
    except TypeError as err:
        raise ValueError(f"{algorithm} {collective} does not take parameters {sorted(params)}: {err}") from None
