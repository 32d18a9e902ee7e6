"""Double binary tree (as in NCCL): two complementary trees, each carrying half of the data.

Tree A is a binary tree over the ranks built from their bits: a rank whose lowest set bit is ``b``
has parent ``(r ^ b) | 2b`` (or ``r ^ b`` when that is out of range), so odd ranks are leaves and
rank 0 is the root. Tree B is tree A mirrored (``r -> p - 1 - r``) for even ``p`` and shifted by one
for odd ``p``, so a rank that is interior in one tree is a leaf in the other and both trees' link
loads add up to at most one send and one receive per rank and direction.

The buffer is cut into ``2 * segments`` chunks: tree A carries chunks ``[0, segments)``, tree B the
rest. Reduce (the reduce-scatter phase, onto the two roots): a rank at height ``h`` (leaves 0) sends
segment ``j`` to its parent in step ``j + h``; by then all its children, whose heights are below
``h``, have delivered segment ``j``, which it has reduced into its own. Broadcast (the allgather
phase): a rank at depth ``d`` receives segment ``j`` from its parent in step ``j + d - 1`` and
forwards it in the next. Both trees run in the same steps; segments pipeline down and up the trees.

Layouts and channels (NCCL's tree)
----------------------------------
With a multi-node :class:`collectives.layout.Layout` the trees follow the machine: inside each node
a chain through the node's ranks, and a double binary tree across the nodes joining the chains'
heads (:func:`tree_parents`). Tree A's chain runs in the channel's node order
(:mod:`collectives.algorithms._channels`), tree B's in the reverse order, so the two trees' heads,
the ranks that talk to the network, are different ranks (different NICs when the node has several),
and inside the node the two trees use the links in opposite directions. With ``channels=k`` there
are ``2k`` trees, two per channel, each carrying ``segments`` chunks (``2 k segments`` chunks in
all); channel ``c``'s chains follow its own node order, so channels leave the nodes through
different NICs. A flat layout keeps the double binary tree over the ranks (repeated per channel).
The pipeline below is the same for any set of trees.

Cost per rank: about ``2 (segments + log2 p)`` steps (the chains add up to ``2 (R - 1)`` on nodes of
``R`` ranks); each rank sends ``n / 2`` per tree it is
interior in (at most ``n`` in all), so every rank moves about ``n`` bytes each way.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from collectives.algorithms._channels import check_channels, layout_params, node_groups, resolve_layout
from collectives.layout import Layout
from collectives.schedule import Schedule, Step, concat_steps

__all__ = ["allreduce", "reduce_scatter", "allgather", "btree_parents", "double_tree", "tree_parents", "default_segments"]

#: Target bytes per segment and tree used by :func:`default_segments`.
SEGMENT_BYTES = 1 << 19


def default_segments(nbytes: int, max_segments: int = 64) -> int:
    """Segments per tree for a buffer of ``nbytes``: ~512 KiB each, between 1 and ``max_segments``."""
    return int(min(max(nbytes // (2 * SEGMENT_BYTES), 1), max_segments))


def btree_parents(nranks: int) -> np.ndarray:
    """Parent of every rank in the bit-built binary tree rooted at 0 (root's parent is -1).

    >>> btree_parents(6).tolist()
    [-1, 2, 4, 2, 0, 4]
    """
    ranks = np.arange(nranks, dtype=np.int64)
    low = ranks & -ranks
    parent = (ranks ^ low) | (low << 1)
    parent = np.where(parent >= nranks, ranks ^ low, parent)
    parent[0] = -1
    return parent


@lru_cache(maxsize=64)
def double_tree(nranks: int) -> tuple[np.ndarray, np.ndarray]:
    """Parents of the two complementary trees, shape (2, nranks)."""
    a = btree_parents(nranks)
    ranks = np.arange(nranks, dtype=np.int64)
    if nranks % 2 == 0:
        # mirror: rank r plays position p-1-r
        pos_parent = a[nranks - 1 - ranks]
        b = np.where(pos_parent < 0, -1, nranks - 1 - pos_parent)
    else:
        # shift: rank r plays position r-1
        pos_parent = a[(ranks - 1) % nranks]
        b = np.where(pos_parent < 0, -1, (pos_parent + 1) % nranks)
    return a, b


def _heights_depths(parent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Height (leaves 0) and depth (root 0) of every rank of the tree ``parent`` (root: -1)."""
    n = parent.shape[0]
    # depth by pointer jumping: anc[r] is r's ancestor 2**i levels up (the root points to itself)
    ranks = np.arange(n, dtype=np.int64)
    anc = np.where(parent < 0, ranks, parent)
    depth = (parent >= 0).astype(np.int64)
    while True:
        up = anc[anc]
        if np.array_equal(up, anc):
            break
        depth += depth[anc]
        anc = up
    # height level by level from the deepest: a parent is one above its highest child
    height = np.zeros(n, dtype=np.int64)
    child = np.flatnonzero(parent >= 0)
    for d in range(int(depth.max(initial=0)), 0, -1):
        level = child[depth[child] == d]
        np.maximum.at(height, parent[level], height[level] + 1)
    return height, depth


def _tree_steps(trees: list[np.ndarray], segments: int):
    """Pipelined reduce and broadcast steps of ``trees``; tree ``t`` carries chunks ``[t S, (t + 1) S)``."""
    nranks = trees[0].shape[0]
    rows = []
    for t, parent in enumerate(trees):
        height, depth = _heights_depths(parent)
        child = np.flatnonzero(parent >= 0)
        rows.append((child, parent[child], height[child], depth[child], t * segments))
    max_h = max((int(h.max()) for _, _, h, _, _ in rows if h.size), default=-1)
    max_d = max((int(d.max()) for _, _, _, d, _ in rows if d.size), default=0)
    n_reduce = segments + max_h if nranks > 1 else 0
    n_bcast = segments + max_d - 1 if nranks > 1 else 0

    # the pattern of a step is the set of heights (depths) whose ranks send in it
    def reduce_key(t: int):
        return ("tree", "reduce", max(0, t - segments + 1), min(t, max_h))

    def bcast_key(t: int):
        return ("tree", "bcast", max(0, t - segments + 2), min(t + 1, max_d))

    def reduce_step(t: int) -> Step:
        src, dst, seg = [], [], []
        for child, par, h, _, base in rows:
            j = t - h
            on = (j >= 0) & (j < segments)
            src.append(child[on])
            dst.append(par[on])
            seg.append(base + j[on])
        key = reduce_key(t)
        return Step.build(np.concatenate(src), np.concatenate(dst), np.concatenate(seg), 1, True, key, "reduce_scatter")

    def bcast_step(t: int) -> Step:
        src, dst, seg = [], [], []
        for child, par, _, d, base in rows:
            j = t - d + 1
            on = (j >= 0) & (j < segments)
            src.append(par[on])
            dst.append(child[on])
            seg.append(base + j[on])
        key = bcast_key(t)
        return Step.build(np.concatenate(src), np.concatenate(dst), np.concatenate(seg), 1, False, key, "allgather")

    roots = [int(np.flatnonzero(parent < 0)[0]) for parent in trees]
    owner = np.repeat(np.asarray(roots, dtype=np.int64), segments)
    keys = (n_reduce, reduce_key), (n_bcast, bcast_key)
    return (n_reduce, reduce_step), (n_bcast, bcast_step), owner, keys


def _check_segments(segments: int) -> int:
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or segments < 1:
        raise ValueError(f"segments must be a positive integer, got {segments!r}")
    return int(segments)


def tree_parents(nranks: int, layout: Layout | None = None, channels: int = 1) -> list[np.ndarray]:
    """Parent arrays of the trees, two per channel (A, B); a tree's root has parent -1.

    A flat layout gives the double binary tree over the ranks, repeated for every channel. Otherwise
    NCCL's tree: in each node a chain in the node order of the channel (tree A) or its reverse (tree
    B), and the chains' heads joined by the double binary tree over the nodes.

    >>> from collectives.layout import Layout
    >>> [t.tolist() for t in tree_parents(4, Layout.regular(2, 2))]
    [[-1, 0, 0, 2], [1, 3, 3, -1]]
    """
    layout = resolve_layout(layout, nranks)
    channels = check_channels(channels)
    if layout.is_flat:
        return list(double_tree(nranks)) * channels
    node_trees = double_tree(layout.nnodes)
    trees = []
    for c in range(channels):
        for node_parent, backwards in zip(node_trees, (False, True), strict=True):
            parent = np.full(nranks, -1, dtype=np.int64)
            head = np.empty(layout.nnodes, dtype=np.int64)
            for group in node_groups(layout):
                chain = group.ordered(layout, c)
                if backwards:
                    chain = chain[:, ::-1]
                head[group.nodes] = chain[:, 0]
                parent[chain[:, 1:]] = chain[:, :-1]  # toward the head
            has = node_parent >= 0
            parent[head[has]] = head[node_parent[has]]
            trees.append(parent)
    return trees


def _schedule(collective: str, nranks: int, segments, layout, channels) -> Schedule:
    segments = _check_segments(segments)
    layout = resolve_layout(layout, nranks)
    channels = check_channels(channels)
    trees = tree_parents(nranks, layout, channels)
    reduce, bcast, owner, (reduce_keys, bcast_keys) = _tree_steps(trees, segments)
    if collective == "allreduce":
        (nsteps, make_step), (_, key_of) = concat_steps(reduce, bcast), concat_steps(reduce_keys, bcast_keys)
    else:
        (nsteps, make_step), (_, key_of) = (reduce, reduce_keys) if collective == "reduce_scatter" else (bcast, bcast_keys)
    params = {"segments": segments, **layout_params(layout, channels)}
    return Schedule(collective, "tree", nranks, len(trees) * segments, owner, nsteps, make_step, params=params, key_of=key_of)


def allreduce(nranks: int, segments: int = 1, layout: Layout | None = None, channels: int = 1) -> Schedule:
    """Double-binary-tree allreduce: reduce to the roots, broadcast back, ``segments`` per tree."""
    return _schedule("allreduce", nranks, segments, layout, channels)


def reduce_scatter(nranks: int, segments: int = 1, layout: Layout | None = None, channels: int = 1) -> Schedule:
    """The reduce half: each tree reduces its share of the buffer onto its root (see ``owner``)."""
    return _schedule("reduce_scatter", nranks, segments, layout, channels)


def allgather(nranks: int, segments: int = 1, layout: Layout | None = None, channels: int = 1) -> Schedule:
    """The broadcast half: each tree's root sends its share of the buffer down its tree."""
    return _schedule("allgather", nranks, segments, layout, channels)
