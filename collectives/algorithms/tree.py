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

Cost per rank: about ``2 (segments + log2 p)`` steps; each rank sends ``n / 2`` per tree it is
interior in (at most ``n`` in all), so every rank moves about ``n`` bytes each way.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from collectives.schedule import Schedule, Step, concat_steps

__all__ = ["allreduce", "reduce_scatter", "allgather", "btree_parents", "double_tree", "default_segments"]

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
    n = parent.shape[0]
    depth = np.zeros(n, dtype=np.int64)
    order = []  # ranks in breadth-first order
    children = [[] for _ in range(n)]
    root = -1
    for r, q in enumerate(parent.tolist()):
        if q < 0:
            root = r
        else:
            children[q].append(r)
    frontier = [root]
    while frontier:
        order.extend(frontier)
        nxt = []
        for q in frontier:
            for c in children[q]:
                depth[c] = depth[q] + 1
                nxt.append(c)
        frontier = nxt
    height = np.zeros(n, dtype=np.int64)
    for r in reversed(order):
        if parent[r] >= 0:
            height[parent[r]] = max(height[parent[r]], height[r] + 1)
    return height, depth


def _tree_steps(nranks: int, segments: int):
    trees = double_tree(nranks)
    rows = []
    for t, parent in enumerate(trees):
        height, depth = _heights_depths(parent)
        child = np.flatnonzero(parent >= 0)
        rows.append((child, parent[child], height[child], depth[child], t * segments))
    max_h = max((int(h.max()) for _, _, h, _, _ in rows if h.size), default=-1)
    max_d = max((int(d.max()) for _, _, _, d, _ in rows if d.size), default=0)
    n_reduce = segments + max_h if nranks > 1 else 0
    n_bcast = segments + max_d - 1 if nranks > 1 else 0

    def reduce_step(t: int) -> Step:
        src, dst, seg = [], [], []
        for child, par, h, _, base in rows:
            j = t - h
            on = (j >= 0) & (j < segments)
            src.append(child[on])
            dst.append(par[on])
            seg.append(base + j[on])
        key = ("tree", "reduce", max(0, t - segments + 1), min(t, max_h))
        return Step.build(np.concatenate(src), np.concatenate(dst), np.concatenate(seg), 1, True, key, "reduce_scatter")

    def bcast_step(t: int) -> Step:
        src, dst, seg = [], [], []
        for child, par, _, d, base in rows:
            j = t - d + 1
            on = (j >= 0) & (j < segments)
            src.append(par[on])
            dst.append(child[on])
            seg.append(base + j[on])
        key = ("tree", "bcast", max(0, t - segments + 2), min(t + 1, max_d))
        return Step.build(np.concatenate(src), np.concatenate(dst), np.concatenate(seg), 1, False, key, "allgather")

    roots = [int(np.flatnonzero(parent < 0)[0]) for parent in trees]
    owner = np.repeat(np.asarray(roots, dtype=np.int64), segments)
    return (n_reduce, reduce_step), (n_bcast, bcast_step), owner


def _check_segments(segments: int) -> int:
    if not isinstance(segments, (int, np.integer)) or segments < 1:
        raise ValueError(f"segments must be a positive integer, got {segments!r}")
    return int(segments)


def allreduce(nranks: int, segments: int = 1) -> Schedule:
    """Double-binary-tree allreduce: reduce to two roots, broadcast back, ``segments`` per tree."""
    segments = _check_segments(segments)
    reduce, bcast, owner = _tree_steps(nranks, segments)
    nsteps, make_step = concat_steps(reduce, bcast)
    return Schedule("allreduce", "tree", nranks, 2 * segments, owner, nsteps, make_step, params={"segments": segments})


def reduce_scatter(nranks: int, segments: int = 1) -> Schedule:
    """The reduce half: each tree reduces its half of the buffer onto its root (see ``owner``)."""
    segments = _check_segments(segments)
    reduce, _, owner = _tree_steps(nranks, segments)
    return Schedule("reduce_scatter", "tree", nranks, 2 * segments, owner, reduce[0], reduce[1], params={"segments": segments})


def allgather(nranks: int, segments: int = 1) -> Schedule:
    """The broadcast half: each tree's root sends its half of the buffer down its tree."""
    segments = _check_segments(segments)
    _, bcast, owner = _tree_steps(nranks, segments)
    return Schedule("allgather", "tree", nranks, 2 * segments, owner, bcast[0], bcast[1], params={"segments": segments})
