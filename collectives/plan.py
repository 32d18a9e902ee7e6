"""One rank's view of a schedule: the program a runtime executes.

A runtime does not walk the global columnar steps at run time. It compiles, once per (schedule,
rank, count), the list of steps the rank takes part in, each with its sends and receives as element
ranges of the buffer, and caches it. Transfers of zero elements (chunks are empty when the count is
smaller than the number of chunks) are dropped on both sides, consistently, because both sides
compute the same chunk offsets.

>>> from collectives.algorithms import get_schedule
>>> prog = compile_program(get_schedule("allreduce", "ring", 3), rank=0, count=6)
>>> prog.steps[0]
RankStep(index=0, sends=(Transfer(peer=1, lo=4, hi=6, reduce=True),), recvs=(Transfer(peer=2, lo=2, hi=4, reduce=True),))
>>> prog.scratch
2

What a runtime runs
-------------------
Both runtimes resolve a call the same way, with the helpers here. An *algorithm spec* names a
registered algorithm and optionally some of its parameters: ``"ring"``, ``"ring:channels=2"``,
``"hierarchical:outer=recursive_doubling,channels=2"`` (:func:`parse_algorithm`). Tuning tables
and the benchmark scripts use the same text. The *layout* (which ranks share a node,
:class:`collectives.layout.Layout`) is found by the runtime when the algorithm takes one
(:func:`takes_layout`), and :func:`run_params` turns (spec, layout, channels, size) into the
generator parameters that :func:`program_for` compiles.

Environment variables both runtimes read:

``COLLSIM_LAYOUT``
    Node label of every world rank, comma-separated (``0,0,1,1``: ranks 0 and 1 on one node, 2
    and 3 on another). Overrides discovery; simulates several nodes on one machine.
``COLLSIM_RANKS_PER_NODE``
    ``k``: world ranks ``0 .. k-1`` on node 0, ``k .. 2k-1`` on node 1, ... (torchrun's placement).
``COLLSIM_NICS_PER_NODE``
    NICs per node (default 1): ``channels="auto"`` runs that many channels.

>>> parse_algorithm("ring:channels=2")
('ring', {'channels': 2})
>>> labels_from_env(4, {"COLLSIM_RANKS_PER_NODE": "2"})
[0, 0, 1, 1]
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from collectives.algorithms import (
    ALGORITHMS,
    algorithm_params,
    check_algorithm,
    collectives_of,
    get_schedule,
)
from collectives.layout import Layout
from collectives.schedule import Schedule

__all__ = [
    "Transfer",
    "RankStep",
    "RankProgram",
    "compile_program",
    "program_for",
    "LAYOUT_ENV",
    "RANKS_PER_NODE_ENV",
    "NICS_ENV",
    "parse_algorithm",
    "format_algorithm",
    "split_algorithms",
    "takes_layout",
    "runnable_algorithms",
    "labels_from_env",
    "nics_from_env",
    "layout_of_ranks",
    "check_layout",
    "run_params",
    "rank_blocked",
    "blocked_params",
]

#: Node label per world rank, comma-separated: overrides layout discovery in both runtimes.
LAYOUT_ENV = "COLLSIM_LAYOUT"
#: Consecutive world ranks per node: overrides layout discovery in both runtimes.
RANKS_PER_NODE_ENV = "COLLSIM_RANKS_PER_NODE"
#: NICs per node (default 1), the number of channels ``channels="auto"`` runs.
NICS_ENV = "COLLSIM_NICS_PER_NODE"


@dataclass(frozen=True)
class Transfer:
    """Elements ``[lo, hi)`` of the buffer go to (send) or come from (receive) ``peer``."""

    peer: int
    lo: int
    hi: int
    reduce: bool

    @property
    def size(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class RankStep:
    """The transfers one rank makes in global step ``index``."""

    index: int
    sends: tuple[Transfer, ...]
    recvs: tuple[Transfer, ...]


@dataclass(frozen=True)
class RankProgram:
    """A rank's steps, and the scratch elements it needs to receive reductions.

    ``scratch`` is the largest number of elements the rank receives for reduction in one step:
    reduce-receives land in scratch and are reduced into the buffer after the step's waits, copy
    receives land in the buffer directly.
    """

    rank: int
    count: int
    steps: tuple[RankStep, ...]
    scratch: int


def compile_program(schedule: Schedule, rank: int, count: int) -> RankProgram:
    """Compile ``schedule`` into the program of ``rank`` for a buffer of ``count`` elements."""
    if not 0 <= rank < schedule.nranks:
        raise ValueError(f"rank {rank} out of range for a schedule on {schedule.nranks} ranks")
    offsets = schedule.chunk_offsets(count)
    steps = []
    scratch = 0
    for i, step in enumerate(schedule.steps()):
        mine_out = np.flatnonzero(step.src == rank)
        mine_in = np.flatnonzero(step.dst == rank)
        if not (mine_out.size or mine_in.size):
            continue
        sends = _transfers(step, offsets, mine_out, step.dst)
        recvs = _transfers(step, offsets, mine_in, step.src)
        if sends or recvs:
            steps.append(RankStep(i, sends, recvs))
            scratch = max(scratch, sum(t.size for t in recvs if t.reduce))
    return RankProgram(rank, count, tuple(steps), scratch)


def _transfers(step, offsets, index, peers) -> tuple[Transfer, ...]:
    lo = offsets[step.chunk[index]]
    hi = offsets[step.chunk[index] + step.nchunks[index]]
    return tuple(
        Transfer(int(q), int(a), int(b), bool(r))
        for q, a, b, r in zip(peers[index], lo, hi, step.reduce[index], strict=True)
        if b > a
    )


@lru_cache(maxsize=512)
def program_for(collective: str, algorithm: str, nranks: int, rank: int, count: int, params: tuple = ()) -> RankProgram:
    """Cached :func:`compile_program` of the registry's schedule; ``params`` as sorted (name, value) pairs."""
    schedule = get_schedule(collective, algorithm, nranks, **dict(params))
    return compile_program(schedule, rank, count)


# ---------------------------------------------------------------------------------------------
# what a runtime runs: algorithm specs, layouts, generator parameters


@cache
def _generator_parameters(algorithm: str) -> tuple[str, ...]:
    """Keyword parameters of the algorithm's allreduce generator (beyond ``nranks``); cached, as
    ``inspect.signature`` costs tens of microseconds and the runtimes ask on every call."""
    fn = ALGORITHMS[check_algorithm(algorithm)].allreduce
    return tuple(name for name in inspect.signature(fn).parameters if name != "nranks")


def takes_layout(algorithm: str) -> bool:
    """Whether ``algorithm``'s schedules follow a :class:`Layout` (the runtime must find one)."""
    return "layout" in _generator_parameters(algorithm)


@cache
def runnable_algorithms(collective: str) -> tuple[str, ...]:
    """Registered algorithms the runtimes run for ``collective``, in registry order.

    Every generator of ``collective`` for allreduce; for reduce_scatter and allgather only those
    whose flat schedule is rank-blocked (:func:`rank_blocked`: block ``r`` ends on / starts from rank
    ``r``, torch's and MPI's semantics). The tree's halves reduce onto and broadcast from its two
    roots, so it is allreduce-only.
    """
    return tuple(a for a in ALGORITHMS if collective in collectives_of(a)
                 and (collective == "allreduce" or rank_blocked(get_schedule(collective, a, 3))))


def parse_algorithm(text: str) -> tuple[str, dict[str, int | str]]:
    """Split an algorithm spec ``"name[:key=value,...]"`` into the name and its parameters.

    Values that are integers become ``int``; others stay text (``channels=auto``,
    ``outer=tree``). The name must be registered and every key a parameter of its generator
    (``layout`` comes from the runtime, never from a spec).

    >>> parse_algorithm("hierarchical:outer=tree,channels=auto")
    ('hierarchical', {'outer': 'tree', 'channels': 'auto'})
    >>> parse_algorithm("ring:lanes=2")
    Traceback (most recent call last):
    ...
    ValueError: algorithm 'ring:lanes=2': ring takes no parameter 'lanes'; it takes: channels
    """
    if not isinstance(text, str):
        raise ValueError(f"algorithm must be a string like 'ring' or 'ring:channels=2', got {text!r}")
    name, params = _parse_algorithm(text)
    return name, dict(params)


@lru_cache(maxsize=256)
def _parse_algorithm(text: str) -> tuple[str, tuple]:
    name, _, rest = text.strip().partition(":")
    name = check_algorithm(name.strip())
    params: dict[str, int | str] = {}
    allowed = [k for k in _generator_parameters(name) if k != "layout"]
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, value = (x.strip() for x in item.partition("="))
        if not eq or not key or not value:
            raise ValueError(f"algorithm {text!r}: parameters must look like key=value, got {item!r}")
        if key not in allowed:
            takes = ", ".join(allowed) or "no parameters"
            raise ValueError(f"algorithm {text!r}: {name} takes no parameter {key!r}; it takes: {takes}")
        if key in params:
            raise ValueError(f"algorithm {text!r}: parameter {key!r} given twice")
        params[key] = int(value) if value.lstrip("-").isdigit() else value
    return name, tuple(params.items())


def format_algorithm(name: str, params: Mapping[str, int | str] | None = None) -> str:
    """The spec text of ``name`` with ``params`` (inverse of :func:`parse_algorithm`).

    >>> format_algorithm("ring", {"channels": 2}), format_algorithm("tree")
    ('ring:channels=2', 'tree')
    """
    if not params:
        return name
    return f"{name}:" + ",".join(f"{k}={v}" for k, v in params.items())


def split_algorithms(text: str, also: Sequence[str] = ()) -> list[str]:
    """Split a comma-separated list of algorithm specs; a ``key=value`` item belongs to the spec before it.

    Every spec is checked (:func:`parse_algorithm`) except the names in ``also`` (a caller's own
    choices, such as ``"auto"``); duplicates are dropped, order kept.

    >>> split_algorithms("ring,ring:channels=2,hierarchical:outer=tree,channels=2")
    ['ring', 'ring:channels=2', 'hierarchical:outer=tree,channels=2']
    """
    specs: list[str] = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        if "=" in item and ":" not in item and specs:
            specs[-1] += f",{item}"
        else:
            specs.append(item)
    for spec in specs:
        if spec not in also:
            parse_algorithm(spec)
    return list(dict.fromkeys(specs))


def labels_from_env(world_size: int, environ: Mapping[str, str] | None = None) -> list[Hashable] | None:
    """Node label per world rank from ``COLLSIM_LAYOUT`` or ``COLLSIM_RANKS_PER_NODE``; None if unset.

    Raises
    ------
    ValueError
        Both are set, the label list does not have ``world_size`` entries, or the ranks per node
        is not a positive integer.
    """
    env = os.environ if environ is None else environ
    text, per_node = env.get(LAYOUT_ENV, "").strip(), env.get(RANKS_PER_NODE_ENV, "").strip()
    if text and per_node:
        raise ValueError(f"set one of {LAYOUT_ENV} and {RANKS_PER_NODE_ENV}, not both")
    if text:
        labels = [x.strip() for x in text.split(",")]
        if len(labels) != world_size or not all(labels):
            raise ValueError(f"{LAYOUT_ENV}={text!r} must name the node of each of the {world_size} world ranks, "
                             "comma-separated (e.g. 0,0,1,1)")
        return [int(x) if x.isdigit() else x for x in labels]
    if per_node:
        if not per_node.isdigit() or int(per_node) < 1:
            raise ValueError(f"{RANKS_PER_NODE_ENV} must be a positive integer, got {per_node!r}")
        return [r // int(per_node) for r in range(world_size)]
    return None


def nics_from_env(environ: Mapping[str, str] | None = None) -> int:
    """NICs per node from ``COLLSIM_NICS_PER_NODE`` (default 1)."""
    env = os.environ if environ is None else environ
    text = env.get(NICS_ENV, "").strip()
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{NICS_ENV} must be a positive integer, got {text!r}")
    return int(text)


def layout_of_ranks(labels: Sequence[Hashable], ranks: Sequence[int], nics_per_node: int = 1) -> Layout:
    """The layout of a group: world-rank node ``labels`` restricted to the group's world ``ranks``.

    Group rank ``i`` is world rank ``ranks[i]``; nodes are renumbered in group order.

    >>> layout_of_ranks([0, 0, 1, 1, 1], [1, 3, 4]).node_of
    (0, 1, 1)
    """
    return Layout.from_nodes([labels[r] for r in ranks], nics_per_node)


def check_layout(layout: object, nranks: int) -> Layout:
    """``layout`` if it is a :class:`Layout` of ``nranks`` ranks, else a ValueError naming the problem."""
    if not isinstance(layout, Layout):
        raise ValueError(f"layout must be a collectives.layout.Layout (or None to find it), got {type(layout).__name__}")
    if layout.nranks != nranks:
        raise ValueError(f"layout has {layout.nranks} ranks ({layout.describe()}), the group has {nranks}")
    return layout


def _check_channels(channels: object) -> int | str | None:
    if channels is None or channels == "auto":
        return channels
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive integer or 'auto', got {channels!r}")
    return channels


def run_params(algorithm: str, spec: Mapping[str, int | str], nranks: int, nbytes: int, *,
               layout: Layout | None = None, channels: int | str | None = None) -> tuple:
    """Generator parameters for one call, as the sorted ``(name, value)`` pairs :func:`program_for` takes.

    Parameters
    ----------
    algorithm : str
        Registered name.
    spec : mapping
        Parameters from the algorithm spec (:func:`parse_algorithm`).
    nranks, nbytes : int
        Group size and buffer bytes (the tree's segments depend on it).
    layout : Layout, optional
        The group's layout (ignored by algorithms that take none).
    channels : int, "auto" or None
        The caller's ``channels`` argument; None leaves it to the spec, then to ``"auto"``
        (``layout.nics_per_node``, 1 without a layout).
    """
    channels = _check_channels(channels)
    try:
        return _run_params(algorithm, tuple(spec.items()), nranks, nbytes, layout, channels)
    except TypeError:  # an unhashable value: check it the long way (it is refused below)
        return _run_params.__wrapped__(algorithm, tuple(spec.items()), nranks, nbytes, layout, channels)


@lru_cache(maxsize=1024)
def _run_params(algorithm: str, spec: tuple, nranks: int, nbytes: int, layout, channels) -> tuple:
    """:func:`run_params` on hashable arguments, cached (the runtimes ask on every call)."""
    spec = dict(spec)
    if "channels" in spec:
        from_spec = _check_channels(spec.pop("channels"))
        if channels is not None and channels != from_spec:
            raise ValueError(f"channels={channels!r} contradicts the algorithm spec's channels={from_spec!r}")
        channels = from_spec
    kwargs = {}
    accepted = _generator_parameters(algorithm)
    if "layout" in accepted and layout is not None:
        kwargs["layout"] = layout
    if channels is not None:
        if "channels" not in accepted:
            raise ValueError(f"{algorithm} takes no channels; algorithms with channels: "
                             f"{', '.join(a for a in ALGORITHMS if 'channels' in _generator_parameters(a))}")
        kwargs["channels"] = channels
    params = algorithm_params(algorithm, nranks, nbytes, **kwargs)
    params.update(spec)
    return tuple(sorted(params.items()))


@lru_cache(maxsize=256)
def blocked_params(collective: str, algorithm: str, nranks: int, params: tuple) -> bool:
    """:func:`rank_blocked` of the registry's schedule with ``params`` (as :func:`run_params` gives them); cached."""
    return rank_blocked(get_schedule(collective, algorithm, nranks, **dict(params)))


def rank_blocked(schedule: Schedule) -> bool:
    """Whether block ``r`` of a reduce_scatter/allgather schedule ends on (starts from) rank ``r``.

    Only such schedules have torch's and MPI's semantics for those collectives.
    """
    p = schedule.nranks
    if schedule.nblocks != p:
        return False
    return bool(np.array_equal(schedule.owner, np.repeat(np.arange(p), schedule.nchunks // p)))
