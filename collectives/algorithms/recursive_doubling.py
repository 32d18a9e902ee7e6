"""Recursive doubling: whole-vector exchange in ``log2 p`` steps, the small-message baseline.

On ``p = 2**k`` ranks, step ``i`` pairs rank ``r`` with ``r ^ 2**i``; both send their whole buffer
and reduce what they receive. Invariant: after step ``i`` every rank holds the reduction over the
``2**(i+1)`` ranks that share its high bits, so after ``log2 p`` steps everyone has the result and
the allgather phase is empty. Other ``p`` use the standard pre/post step
(:mod:`collectives.algorithms._folding`).

Its reduce-scatter is the same exchange (each rank keeps its own block of the result); its
allgather is recursive doubling of blocks, shared with :mod:`recursive_halving`.

Textbook cost per rank for ``p = 2**k``: ``log2 p`` steps, ``n log2 p`` bytes sent.
"""

from __future__ import annotations

import numpy as np

from collectives.algorithms import recursive_halving
from collectives.algorithms._folding import Folding
from collectives.algorithms.recursive_halving import fold_step, unfold_step
from collectives.schedule import Schedule, Step, concat_steps

__all__ = ["allreduce", "reduce_scatter", "allgather"]


def _exchange_steps(fold: Folding, nchunks: int) -> tuple[int, callable]:
    vranks = np.arange(fold.pof2, dtype=np.int64)
    real = fold.real(vranks)

    def make_step(i: int) -> Step:
        mask = 1 << i
        return Step.build(real, fold.real(vranks ^ mask), 0, nchunks, True, key=("exchange", mask), phase="reduce_scatter")

    return fold.levels, make_step


def allreduce(nranks: int) -> Schedule:
    """Recursive-doubling allreduce: the buffer is one chunk, exchanged whole."""
    fold = Folding(nranks)
    parts = [
        fold_step(fold, 0, 1, True, "reduce_scatter"),
        _exchange_steps(fold, 1),
        unfold_step(fold, lambda i: 0, lambda i: 1, "allgather"),
    ]
    nsteps, make_step = concat_steps(*[part for part in parts if part[0]])
    owner = np.zeros(1, dtype=np.int64) + int(fold.real(0))
    return Schedule("allreduce", "recursive_doubling", nranks, 1, owner, nsteps, make_step)


def reduce_scatter(nranks: int) -> Schedule:
    """Reduce-scatter by whole-vector exchange; a folded rank gets its own block back last."""
    fold = Folding(nranks)
    parts = [
        fold_step(fold, 0, nranks, True, "reduce_scatter"),
        _exchange_steps(fold, nranks),
        unfold_step(fold, lambda i: 2 * i, lambda i: 1, "reduce_scatter"),
    ]
    nsteps, make_step = concat_steps(*[part for part in parts if part[0]])
    owner = np.arange(nranks, dtype=np.int64)
    return Schedule("reduce_scatter", "recursive_doubling", nranks, nranks, owner, nsteps, make_step, nblocks=nranks)


def allgather(nranks: int) -> Schedule:
    """Allgather by recursive doubling of blocks."""
    return recursive_halving.allgather(nranks, algorithm="recursive_doubling")
