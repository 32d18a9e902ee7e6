"""Ring: reduce-scatter around a ring, then allgather around it.

Rank ``r`` sends only to ``(r + 1) % p`` and receives only from ``(r - 1) % p``. The buffer is cut
into ``p`` chunks. In reduce-scatter step ``s`` (``0 <= s < p - 1``) rank ``r`` sends chunk
``(r - s - 1) % p``, the one it reduced in the step before, and reduces what it receives into its
own copy. Invariant: after step ``s`` the chunk rank ``r`` just received, ``(r - s - 2) % p``,
holds ``s + 2`` contributions; after ``p - 1`` steps rank ``r`` owns chunk ``r`` reduced from all
``p``. The allgather forwards each owned chunk ``p - 1`` times around the ring, overwriting.

Textbook cost per rank: ``2 (p - 1)`` steps, ``2 (p - 1) / p * n`` bytes sent and received.
"""

from __future__ import annotations

import numpy as np

from collectives.schedule import Schedule, Step, concat_steps

__all__ = ["allreduce", "reduce_scatter", "allgather"]


def _ring_steps(p: int, shift: int, reduce: bool, phase: str):
    """Steps in which rank ``r`` sends chunk ``(r - s - shift) % p`` to ``r + 1``."""
    ranks = np.arange(p, dtype=np.int64)
    to_next = np.roll(ranks, -1)
    ones = np.ones(p, dtype=np.int64)
    flags = np.full(p, reduce)
    key = ("ring", "reduce" if reduce else "copy")

    def make_step(s: int) -> Step:
        # np.roll(ranks, k)[r] == (r - k) % p, without the cost of a modulo
        return Step(ranks, to_next, np.roll(ranks, s + shift), ones, flags, key, phase)

    return max(p - 1, 0), make_step


def _reduce_scatter_steps(p: int):
    return _ring_steps(p, 1, True, "reduce_scatter")


def _allgather_steps(p: int):
    return _ring_steps(p, 0, False, "allgather")


def allreduce(nranks: int) -> Schedule:
    """Ring allreduce on ``nranks`` ranks: ``2 (p - 1)`` steps of one chunk each."""
    nsteps, make_step = concat_steps(_reduce_scatter_steps(nranks), _allgather_steps(nranks))
    owner = np.arange(nranks, dtype=np.int64)
    return Schedule("allreduce", "ring", nranks, nranks, owner, nsteps, make_step)


def reduce_scatter(nranks: int) -> Schedule:
    """Ring reduce-scatter: rank ``r`` ends with block ``r`` reduced."""
    nsteps, make_step = _reduce_scatter_steps(nranks)
    owner = np.arange(nranks, dtype=np.int64)
    return Schedule("reduce_scatter", "ring", nranks, nranks, owner, nsteps, make_step, nblocks=nranks)


def allgather(nranks: int) -> Schedule:
    """Ring allgather: block ``r`` starts on rank ``r`` and reaches every rank."""
    nsteps, make_step = _allgather_steps(nranks)
    owner = np.arange(nranks, dtype=np.int64)
    return Schedule("allgather", "ring", nranks, nranks, owner, nsteps, make_step, nblocks=nranks)
