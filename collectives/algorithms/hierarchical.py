"""Hierarchical allreduce: reduce-scatter inside each node, allreduce across nodes, allgather inside.

On a :class:`collectives.layout.Layout` of ``N`` nodes with at most ``L`` ranks each, the buffer
is cut into ``L`` *parts*. Three phases, each a flat algorithm of the registry run on a subset of
ranks, all subsets of a phase in the same steps:

1. **Intra-node reduce-scatter** (``inner``): each node reduces part ``i`` onto the rank at
   position ``floor(i R / L)`` of the node's order (``R``: the node's ranks). On a node of ``L``
   ranks position ``j`` owns part ``j``; on a smaller node position ``j`` owns the parts
   ``[ceil(j L / R), ceil((j + 1) L / R))``, a contiguous range, so the node's reduce-scatter is the
   inner algorithm's on ``R`` blocks of unequal size.
2. **Inter-node allreduce** (``outer``) of every part among its ``N`` owners, one per node. On a
   regular layout these are the ranks of equal local rank, each group on its own rail (its own
   NIC); on uneven layouts a rank may own several parts and then runs one allreduce per part.
3. **Intra-node allgather** (``inner``): the mirror of phase 1.

Node order: position ``q`` of a node is its local rank in channel order
(:mod:`collectives.algorithms._channels`; the local rank order with one NIC). With ``channels=k``
the buffer is cut into ``k`` slices, one per channel, all in the same steps; channel ``c`` uses its
own node order, so on uneven nodes the extra parts land on different ranks per channel.

Chunks: ``k * L * K`` where ``K`` is the outer allreduce's chunk count on ``N`` ranks (1 on one
node). Chunk ``(c L + i) K + q`` is chunk ``q`` of the outer allreduce of part ``i`` of channel
``c``: channel-major, so a position's parts are one contiguous range of chunks per channel.

Textbook cost per rank on a regular ``N x L`` layout with the ring inside and ``n`` bytes: the
reduce-scatter ``L - 1`` steps and ``(L - 1) / L n`` bytes sent; the outer allreduce on ``n / L``
bytes among ``N`` ranks (ring: ``2 (N - 1)`` steps, ``2 (N - 1) / N n / L`` bytes); the allgather
as the reduce-scatter. On one node it is the inner algorithm's reduce-scatter followed by its
allgather: with ``inner="ring"`` exactly the ring allreduce.

Only allreduce: a hierarchical reduce_scatter or allgather with rank-blocked blocks would need each
rank to gather the blocks of its peers on every other node, which are not contiguous in the buffer.
Use ``ring`` with a layout and channels for those.

>>> from collectives.layout import Layout
>>> s = allreduce(8, layout=Layout.regular(2, 4))
>>> s.nsteps, s.nchunks  # 3 intra + 2 outer (ring on 2 nodes) + 3 intra; 4 parts x 2 chunks
(8, 8)
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from collectives.algorithms import recursive_doubling, recursive_halving, ring, tree
from collectives.algorithms._channels import check_channels, layout_params, node_groups, resolve_layout
from collectives.layout import Layout
from collectives.schedule import Schedule, Step, concat_steps

__all__ = ["COLLECTIVES", "INNER", "OUTER", "allreduce"]

#: The collectives this algorithm generates.
COLLECTIVES = ("allreduce",)
#: Intra-node algorithms (their reduce_scatter and allgather are rank-blocked).
INNER = {"ring": ring, "recursive_halving": recursive_halving, "recursive_doubling": recursive_doubling}
#: Inter-node allreduce algorithms.
OUTER = {"ring": ring, "recursive_doubling": recursive_doubling, "recursive_halving": recursive_halving, "tree": tree}


def _check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _part_starts(size: int, parts: int) -> np.ndarray:
    """First part of every position of a node of ``size`` ranks (length ``size + 1``)."""
    j = np.arange(size + 1, dtype=np.int64)
    return -(-j * parts // size)


class _Intra:
    """One phase inside the nodes: for every node size, the inner collective on that many blocks."""

    def __init__(self, layout: Layout, channels: int, parts: int, per_part: int, inner, collective: str):
        self.runs = []  # (schedule, ranks (rows: channel x node, columns: position), block -> first chunk)
        for group in node_groups(layout):
            schedule = getattr(inner, collective)(group.size)
            if schedule.nsteps == 0:
                continue
            ranks = np.concatenate([group.ordered(layout, c) for c in range(channels)])
            starts = _part_starts(group.size, parts) * per_part
            base = np.repeat(np.arange(channels, dtype=np.int64) * parts * per_part, len(group.nodes))
            self.runs.append((schedule, ranks, starts, base))
        self.nsteps = max((run[0].nsteps for run in self.runs), default=0)
        self.phase = "reduce_scatter" if collective == "reduce_scatter" else "allgather"

    def key(self, s: int) -> Hashable:
        key: list[Hashable] = ["hierarchical", self.phase]
        for schedule, ranks, starts, _ in self.runs:
            if s < schedule.nsteps:
                # unequal blocks give the same inner pattern different chunk counts: then the step counts
                inner = schedule.key(s)
                key.append((ranks.shape[1], inner if np.ptp(np.diff(starts)) == 0 else (inner, s)))
        return tuple(key)

    def step(self, s: int) -> Step:
        cols = [[], [], [], [], []]
        for schedule, ranks, starts, base in self.runs:
            if s >= schedule.nsteps:
                continue
            inner = schedule.step(s)
            first = starts[inner.chunk]
            count = starts[inner.chunk + inner.nchunks] - first
            cols[0].append(ranks[:, inner.src].ravel())
            cols[1].append(ranks[:, inner.dst].ravel())
            cols[2].append((base[:, None] + first[None, :]).ravel())
            shape = (ranks.shape[0], len(inner))
            cols[3].append(np.broadcast_to(count, shape).ravel())
            cols[4].append(np.broadcast_to(inner.reduce, shape).ravel())
        return Step.build(*(np.concatenate(c) for c in cols), key=self.key(s), phase=self.phase)


def _owners(layout: Layout, channels: int, parts: int) -> np.ndarray:
    """``owners[c * parts + i, n]``: the rank of node ``n`` that owns part ``i`` of channel ``c``."""
    owners = np.empty((channels * parts, layout.nnodes), dtype=np.int64)
    part = np.arange(parts, dtype=np.int64)
    for group in node_groups(layout):
        position = part * group.size // parts
        for c in range(channels):
            owners[c * parts:(c + 1) * parts, group.nodes] = group.ordered(layout, c)[:, position].T
    return owners


def allreduce(
    nranks: int,
    layout: Layout | None = None,
    channels: int = 1,
    inner: str = "ring",
    outer: str = "ring",
    segments: int = 1,
) -> Schedule:
    """Hierarchical allreduce on ``layout`` (see the module docstring).

    Parameters
    ----------
    nranks : int
    layout : Layout, optional
        Which ranks share a node (default: one node, which gives the inner algorithm's allreduce).
    channels : int
        Buffer slices run at once, each with its own node order.
    inner : {"ring", "recursive_halving", "recursive_doubling"}
        Reduce-scatter and allgather inside the nodes.
    outer : {"ring", "recursive_doubling", "recursive_halving", "tree"}
        Allreduce across nodes among the owners of a part.
    segments : int
        The outer tree's segments per tree (``outer="tree"`` only).
    """
    layout = resolve_layout(layout, nranks)
    channels = check_channels(channels)
    inner_mod = INNER[_check_choice("inner", inner, INNER)]
    _check_choice("outer", outer, OUTER)
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or segments < 1:
        raise ValueError(f"segments must be a positive integer, got {segments!r}")
    if segments != 1 and outer != "tree":
        raise ValueError(f"segments applies only to outer='tree', got segments={segments} with outer={outer!r}")

    parts = max(layout.ranks_per_node)
    nnodes = layout.nnodes
    across = None
    if nnodes > 1:
        across = OUTER[outer].allreduce(nnodes, **({"segments": int(segments)} if outer == "tree" else {}))
    per_part = across.nchunks if across is not None else 1
    nchunks = channels * parts * per_part

    scatter = _Intra(layout, channels, parts, per_part, inner_mod, "reduce_scatter")
    gather = _Intra(layout, channels, parts, per_part, inner_mod, "allgather")
    owners = _owners(layout, channels, parts)
    blocks, block_keys = [], []
    if across is not None:
        base = np.arange(channels * parts, dtype=np.int64) * per_part
        by_node = np.ascontiguousarray(owners.T)  # by_node[n, c * parts + i]
        lanes = by_node.shape[1]

        def outer_step(t: int) -> Step:
            # transfer j of the outer step, for every (channel, part) in a row: j * lanes + part
            step = across.step(t)
            return Step.build(
                by_node[step.src].ravel(),
                by_node[step.dst].ravel(),
                (step.chunk[:, None] + base[None, :]).ravel(),
                np.repeat(step.nchunks, lanes),
                np.repeat(step.reduce, lanes),
                key=("hierarchical", "outer", step.key),
                phase=step.phase,
            )

        blocks = [(across.nsteps, outer_step)]
        block_keys = [(across.nsteps, lambda t: ("hierarchical", "outer", across.key(t)))]
        owner = owners[:, across.owner].ravel()
    else:
        owner = np.repeat(owners[:, 0], per_part)
    nsteps, make_step = concat_steps(
        *[part for part in [(scatter.nsteps, scatter.step), *blocks, (gather.nsteps, gather.step)] if part[0]]
    )
    _, key_of = concat_steps(*[part for part in [(scatter.nsteps, scatter.key), *block_keys, (gather.nsteps, gather.key)] if part[0]])
    params = {"inner": inner, "outer": outer, **layout_params(layout, channels)}
    if outer == "tree":
        params["segments"] = int(segments)
    return Schedule("allreduce", "hierarchical", nranks, nchunks, owner, nsteps, make_step, params=params, key_of=key_of)
