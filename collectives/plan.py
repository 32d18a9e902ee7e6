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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from collectives.algorithms import get_schedule
from collectives.schedule import Schedule

__all__ = ["Transfer", "RankStep", "RankProgram", "compile_program", "program_for"]


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
