"""Recursive halving (Rabenseifner): reduce-scatter by recursive halving, allgather by doubling.

On ``p = 2**k`` ranks, reduce-scatter step ``i`` pairs rank ``r`` with ``peer = r ^ mask`` for
``mask = p/2, p/4, ..., 1``: both hold the same range of chunks; the rank whose ``mask`` bit is clear
keeps the lower half and sends the upper half, its peer the opposite, and each reduces the half it
receives. Invariant: after the step with ``mask``, rank ``r`` holds a range of ``mask`` chunks
reduced over the ``p / mask`` ranks that share its high bits; at the end rank ``r`` owns chunk ``r``.
The allgather retraces the steps in reverse (``mask = 1, 2, ..., p/2``), each rank sending all it
has, so the held range doubles.

Other ``p`` use the standard pre/post step (:mod:`collectives.algorithms._folding`): the extra
ranks fold their whole buffer into a partner first and get the result back last.

Order
-----
The allreduce takes ``order``:

* ``"near_first"`` (default; MPICH's ``MPIR_Allreduce_intra_reduce_scatter_allgather``, SMPI's
  ``rab_rdb``): the halving pairs ``r`` with ``r ^ mask`` for ``mask = 1, 2, ..., p/2``, so the
  largest half is exchanged with the nearest rank, where it stays under one switch on a fat tree.
  The rank whose ``mask`` bit is clear keeps the lower half. Rank ``r`` ends with chunk
  ``bitreverse(r)`` (``owner``); the allgather mirrors the halving (``mask = p/2, ..., 1``).
* ``"far_first"`` (the order above): the largest half with the farthest rank, distance ``p/2``.

Both send the same sizes (``n/2, n/4, ...`` in the halving), so steps and bytes per rank are the
same. The reduce_scatter and allgather collectives are far-first only: block ``r`` must end on
(start from) rank ``r`` in the buffer's order, and halving a contiguous range of blocks with the
nearest rank first cannot keep each rank's own block (MPICH's reduce_scatter is far-first too).

Textbook cost per rank for ``p = 2**k``: ``2 log2 p`` steps, ``2 (p - 1) / p * n`` bytes sent.
"""

from __future__ import annotations

import numpy as np

from collectives.algorithms._folding import Folding
from collectives.schedule import Schedule, Step, concat_steps

__all__ = [
    "ORDERS",
    "allreduce",
    "reduce_scatter",
    "allgather",
    "halving_steps",
    "doubling_steps",
    "near_halving_steps",
    "near_doubling_steps",
    "fold_step",
    "unfold_step",
]

#: Orders of the halving: largest half with the nearest rank first (MPICH's), or the farthest.
ORDERS = ("near_first", "far_first")


def _check_order(order: str, collective: str) -> str:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
    if collective != "allreduce" and order != "far_first":
        raise ValueError(
            f"recursive_halving {collective} runs only order='far_first' (block r must end on rank r); "
            f"order={order!r} is for allreduce"
        )
    return order


def fold_step(fold: Folding, first, nchunks: int, reduce: bool, phase: str) -> tuple[int, callable]:
    """Pre step: even rank ``2i`` sends chunks ``[first, first + nchunks)`` to ``2i + 1``.

    ``first`` is one chunk for every pair, or an array with one entry per pair.
    """
    if fold.rem == 0:
        return 0, None
    evens = fold.folded

    def make_step(_: int) -> Step:
        return Step.build(evens, evens + 1, first, nchunks, reduce, key=("fold", phase), phase=phase)

    return 1, make_step


def unfold_step(fold: Folding, first_of, size_of, phase: str) -> tuple[int, callable]:
    """Post step: odd rank ``2i + 1`` copies chunks ``[first_of(i), first_of(i) + size_of(i))`` to ``2i``."""
    if fold.rem == 0:
        return 0, None
    evens = fold.folded

    def make_step(_: int) -> Step:
        return Step.build(evens + 1, evens, first_of(evens // 2), size_of(evens // 2), False, key=("unfold", phase), phase=phase)

    return 1, make_step


def halving_steps(fold: Folding, start) -> tuple[int, callable]:
    """Reduce-scatter by recursive halving over the virtual ranks.

    ``start(v)`` is the first chunk of virtual rank ``v``'s final range (``start(pof2)`` = end).
    """
    vranks = np.arange(fold.pof2, dtype=np.int64)
    real = fold.real(vranks)

    def make_step(i: int) -> Step:
        mask = fold.pof2 >> (i + 1)
        lo = vranks & ~(2 * mask - 1)
        keeps_lower = (vranks & mask) == 0
        # the half this rank gives away: the peer's half of the current range
        give_lo = np.where(keeps_lower, lo + mask, lo)
        first = start(give_lo)
        count = start(give_lo + mask) - first
        return Step.build(real, fold.real(vranks ^ mask), first, count, True, key=("halving", mask), phase="reduce_scatter")

    return fold.levels, make_step


def doubling_steps(fold: Folding, start, phase: str = "allgather") -> tuple[int, callable]:
    """Allgather by recursive doubling over the virtual ranks: the held range doubles each step."""
    vranks = np.arange(fold.pof2, dtype=np.int64)
    real = fold.real(vranks)

    def make_step(i: int) -> Step:
        mask = 1 << i
        lo = vranks & ~(mask - 1)
        first = start(lo)
        count = start(lo + mask) - first
        return Step.build(real, fold.real(vranks ^ mask), first, count, False, key=("doubling", mask), phase=phase)

    return fold.levels, make_step


def _bitreverse(v: np.ndarray, bits: int) -> np.ndarray:
    out = np.zeros_like(v)
    for j in range(bits):
        out |= ((v >> j) & 1) << (bits - 1 - j)
    return out


def near_halving_steps(fold: Folding) -> tuple[int, callable]:
    """Reduce-scatter by recursive halving, nearest partner first, over ``pof2`` chunks.

    Before the step with ``mask = 2**i`` virtual rank ``v`` holds the ``pof2 >> i`` chunks from
    ``lo = bitreverse(v)`` with its low ``k - i`` bits cleared (its bits below ``i`` chose the halves
    so far); it keeps the lower half when bit ``i`` is clear and sends the other half to ``v ^ mask``.
    """
    vranks = np.arange(fold.pof2, dtype=np.int64)
    real = fold.real(vranks)
    rev = _bitreverse(vranks, fold.levels)

    def make_step(i: int) -> Step:
        mask = 1 << i
        half = fold.pof2 >> (i + 1)
        lo = rev & ~(2 * half - 1)
        first = np.where((vranks & mask) == 0, lo + half, lo)
        return Step.build(real, fold.real(vranks ^ mask), first, half, True, key=("halving_near", mask), phase="reduce_scatter")

    return fold.levels, make_step


def near_doubling_steps(fold: Folding) -> tuple[int, callable]:
    """The mirror of :func:`near_halving_steps`: ``mask = pof2/2, ..., 1``, the held range doubling."""
    vranks = np.arange(fold.pof2, dtype=np.int64)
    real = fold.real(vranks)
    rev = _bitreverse(vranks, fold.levels)

    def make_step(i: int) -> Step:
        mask = fold.pof2 >> (i + 1)
        held = 1 << i  # chunks held before the step
        first = rev & ~(held - 1)
        return Step.build(real, fold.real(vranks ^ mask), first, held, False, key=("doubling_near", mask), phase="allgather")

    return fold.levels, make_step


def _allreduce_parts(fold: Folding, order: str):
    def start(v):
        return np.asarray(v, dtype=np.int64)

    n = fold.pof2
    if order == "near_first":
        halving, doubling = near_halving_steps(fold), near_doubling_steps(fold)
    else:
        halving, doubling = halving_steps(fold, start), doubling_steps(fold, start)
    return [
        fold_step(fold, 0, n, True, "reduce_scatter"),
        halving,
    ], [
        doubling,
        unfold_step(fold, lambda i: 0, lambda i: n, "allgather"),
    ]


def allreduce(nranks: int, order: str = "near_first") -> Schedule:
    """Rabenseifner allreduce: ``pof2`` chunks, one per virtual rank, halving in ``order``.

    >>> allreduce(8).owner.tolist()  # near_first: rank r ends with chunk bitreverse(r)
    [0, 4, 2, 6, 1, 5, 3, 7]
    >>> allreduce(8, order="far_first").owner.tolist()
    [0, 1, 2, 3, 4, 5, 6, 7]
    """
    _check_order(order, "allreduce")
    fold = Folding(nranks)
    rs, ag = _allreduce_parts(fold, order)
    nsteps, make_step = concat_steps(*[part for part in rs + ag if part[0]])
    vranks = np.arange(fold.pof2, dtype=np.int64)
    owner = fold.real(_bitreverse(vranks, fold.levels) if order == "near_first" else vranks)
    return Schedule("allreduce", "recursive_halving", nranks, fold.pof2, owner, nsteps, make_step, params={"order": order})


def reduce_scatter(nranks: int, order: str = "far_first") -> Schedule:
    """Reduce-scatter by recursive halving: rank ``r`` ends with block ``r`` reduced.

    Virtual rank ``v`` reduces the blocks of every real rank it stands for; a folded pair's odd
    rank then hands block ``2i`` to rank ``2i``. Far-first only (see the module docstring).
    """
    _check_order(order, "reduce_scatter")
    fold = Folding(nranks)
    parts = [
        fold_step(fold, 0, nranks, True, "reduce_scatter"),
        halving_steps(fold, fold.first_block),
        unfold_step(fold, lambda i: 2 * i, lambda i: 1, "reduce_scatter"),
    ]
    nsteps, make_step = concat_steps(*[part for part in parts if part[0]])
    owner = np.arange(nranks, dtype=np.int64)
    return Schedule("reduce_scatter", "recursive_halving", nranks, nranks, owner, nsteps, make_step, nblocks=nranks)


def allgather(nranks: int, order: str = "far_first", *, algorithm: str = "recursive_halving") -> Schedule:
    """Allgather by recursive doubling: folded ranks hand their block in first, get all back last.

    The mirror of the far-first halving (the only order with rank-blocked blocks).
    """
    _check_order(order, "allgather")
    fold = Folding(nranks)
    parts = [
        fold_step(fold, fold.folded, 1, False, "allgather"),  # even rank 2i hands its block 2i in
        doubling_steps(fold, fold.first_block),
        unfold_step(fold, lambda i: 0, lambda i: nranks, "allgather"),
    ]
    nsteps, make_step = concat_steps(*[part for part in parts if part[0]])
    owner = np.arange(nranks, dtype=np.int64)
    return Schedule("allgather", algorithm, nranks, nranks, owner, nsteps, make_step, nblocks=nranks)

