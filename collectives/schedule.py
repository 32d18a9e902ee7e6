"""Schedules: collective algorithms as data.

A *schedule* says, step by step, which rank sends which chunks of the buffer to which rank, and
whether the receiver *reduces* them into its own copy of those chunks or *copies* them over. The
same schedule object is executed by the runtimes (``collectives.distributed``, ``collectives.mpi``),
proved correct by :func:`collectives.verify`, and costed by ``sim``.

Model
-----
* Ranks are ``0 .. nranks-1``: positions inside the communicator or process group the schedule
  runs on (group-local ranks, never global ones).
* The buffer of ``count`` elements is cut into ``nchunks`` chunks (:meth:`Schedule.chunk_offsets`).
  For ``allreduce`` the whole buffer is split into near-equal chunks; for ``reduce_scatter`` and
  ``allgather`` the buffer is ``nranks`` equal blocks (block ``r`` belongs to rank ``r``) and every
  block is split into ``nchunks // nranks`` near-equal chunks.
* A :class:`Step` is columnar: one numpy array per field, one entry per *transfer*. Transfer ``i``
  sends chunks ``chunk[i] .. chunk[i] + nchunks[i] - 1`` (a contiguous range) from rank ``src[i]`` to
  rank ``dst[i]``; ``reduce[i]`` says whether ``dst`` reduces them into its chunks (True) or
  overwrites its chunks with them (False).
* Within a step every send reads the sender's state *before* the step; receives are applied
  after all of the step's sends. A rank that takes part in step ``s`` starts it once it has finished
  step ``s-1``; ranks not named in a step skip it.
* ``owner[c]`` is the rank that holds chunk ``c`` fully reduced at the end of the reduce-scatter
  phase (and the rank an allgather starts from).
* Steps are generated on demand (:meth:`Schedule.steps`, :meth:`Schedule.step`), so a schedule for
  16384 ranks costs nothing until it is iterated, and steps are never held as Python objects per
  transfer. Steps whose communication pattern (who sends how many chunks to whom, reduce or copy)
  is the same carry the same :attr:`Step.key`, so a simulator can cost the pattern once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field

import numpy as np

__all__ = ["COLLECTIVES", "Step", "Schedule", "chunk_offsets", "concat_steps"]

#: The collectives a schedule can implement.
COLLECTIVES = ("allreduce", "reduce_scatter", "allgather")

_INDEX = np.int64


@dataclass(frozen=True, eq=False)
class Step:
    """One step of a schedule: parallel arrays, one entry per transfer.

    Attributes
    ----------
    src, dst : ndarray of int64
        Sending and receiving rank of each transfer.
    chunk, nchunks : ndarray of int64
        First chunk and number of contiguous chunks each transfer carries.
    reduce : ndarray of bool
        True: the receiver reduces into its chunks; False: it overwrites them.
    key : hashable
        Pattern key: equal for steps with the same (src, dst, nchunks, reduce) pattern.
    phase : str
        ``"reduce_scatter"`` or ``"allgather"``.
    """

    src: np.ndarray
    dst: np.ndarray
    chunk: np.ndarray
    nchunks: np.ndarray
    reduce: np.ndarray
    key: Hashable
    phase: str

    @classmethod
    def build(cls, src, dst, chunk, nchunks, reduce, key: Hashable, phase: str) -> Step:
        """Make a step, broadcasting scalars to the length of ``src``."""
        src = np.asarray(src, dtype=_INDEX)
        n = src.shape[0]

        def column(values, dtype):
            arr = np.asarray(values, dtype=dtype)
            return np.broadcast_to(arr, (n,)) if arr.ndim == 0 else arr

        return cls(
            src=src,
            dst=column(dst, _INDEX),
            chunk=column(chunk, _INDEX),
            nchunks=column(nchunks, _INDEX),
            reduce=column(reduce, bool),
            key=key,
            phase=phase,
        )

    def __len__(self) -> int:
        return int(self.src.shape[0])

    def sends_of(self, rank: int) -> np.ndarray:
        """Indices of the transfers ``rank`` sends in this step."""
        return np.flatnonzero(self.src == rank)

    def recvs_of(self, rank: int) -> np.ndarray:
        """Indices of the transfers ``rank`` receives in this step."""
        return np.flatnonzero(self.dst == rank)


def chunk_offsets(count: int, nchunks: int) -> np.ndarray:
    """Split ``count`` elements into ``nchunks`` near-equal contiguous chunks.

    Chunk sizes differ by at most one element; the first ``count % nchunks`` chunks are the larger
    ones. Chunks may be empty when ``count < nchunks``.

    Returns
    -------
    ndarray of int64, shape (nchunks + 1,)
        ``offsets[c]`` is the first element of chunk ``c``; ``offsets[-1] == count``.

    Examples
    --------
    >>> chunk_offsets(10, 4).tolist()
    [0, 3, 6, 8, 10]
    >>> chunk_offsets(2, 4).tolist()
    [0, 1, 2, 2, 2]
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if nchunks < 1:
        raise ValueError(f"nchunks must be >= 1, got {nchunks}")
    base, extra = divmod(count, nchunks)
    sizes = np.full(nchunks, base, dtype=_INDEX)
    sizes[:extra] += 1
    offsets = np.zeros(nchunks + 1, dtype=_INDEX)
    np.cumsum(sizes, out=offsets[1:])
    return offsets


@dataclass(frozen=True, eq=False)
class Schedule:
    """A collective algorithm on ``nranks`` ranks, as a lazily generated list of steps.

    Parameters
    ----------
    collective : {"allreduce", "reduce_scatter", "allgather"}
    algorithm : str
        Registry name of the algorithm that generated it.
    nranks : int
    nchunks : int
        Number of chunks the buffer is cut into.
    owner : ndarray of int64, shape (nchunks,)
        Rank holding chunk ``c`` fully reduced after the reduce-scatter phase.
    nsteps : int
    make_step : callable
        ``make_step(i) -> Step`` for ``0 <= i < nsteps``.
    nblocks : int
        1 for allreduce (the whole buffer is chunked), ``nranks`` for reduce_scatter/allgather.
    params : dict
        Generator parameters (e.g. ``segments`` for the tree), for display and caching.
    key_of : callable, optional
        ``key_of(i) -> Step.key`` without generating the step (:meth:`key`); generators of long
        schedules give it so a simulator can skip the steps whose pattern it has costed already.
    """

    collective: str
    algorithm: str
    nranks: int
    nchunks: int
    owner: np.ndarray
    nsteps: int
    make_step: Callable[[int], Step] = field(repr=False)
    nblocks: int = 1
    params: dict = field(default_factory=dict)
    key_of: Callable[[int], Hashable] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.collective not in COLLECTIVES:
            raise ValueError(f"collective must be one of {', '.join(COLLECTIVES)}; got {self.collective!r}")
        if self.nchunks % self.nblocks:
            raise ValueError(f"nchunks={self.nchunks} is not a multiple of nblocks={self.nblocks}")

    def __len__(self) -> int:
        return self.nsteps

    def step(self, i: int) -> Step:
        """Generate step ``i``."""
        if not 0 <= i < self.nsteps:
            raise IndexError(f"step {i} out of range for a schedule of {self.nsteps} steps")
        return self.make_step(i)

    def key(self, i: int) -> Hashable:
        """Pattern key of step ``i`` (:attr:`Step.key`), generating the step only when no ``key_of`` is known."""
        if not 0 <= i < self.nsteps:
            raise IndexError(f"step {i} out of range for a schedule of {self.nsteps} steps")
        return self.key_of(i) if self.key_of is not None else self.make_step(i).key

    def steps(self) -> Iterator[Step]:
        """Generate the steps in order."""
        for i in range(self.nsteps):
            yield self.make_step(i)

    def chunk_offsets(self, count: int) -> np.ndarray:
        """Element offsets of the chunks of a buffer of ``count`` elements (length ``nchunks + 1``).

        For reduce_scatter and allgather ``count`` is the full buffer (``nranks`` blocks) and
        must be a multiple of ``nranks``.
        """
        if self.nblocks == 1:
            return chunk_offsets(count, self.nchunks)
        if count % self.nblocks:
            raise ValueError(
                f"count={count} must be a multiple of nranks={self.nblocks} for {self.collective}"
            )
        per_block = self.nchunks // self.nblocks
        inner = chunk_offsets(count // self.nblocks, per_block)
        blocks = np.arange(self.nblocks, dtype=_INDEX)[:, None] * (count // self.nblocks)
        return np.concatenate([(blocks + inner[None, :-1]).ravel(), [count]]).astype(_INDEX)

    def describe(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in self.params.items())
        return f"{self.algorithm} {self.collective} on {self.nranks} ranks ({self.nsteps} steps, {self.nchunks} chunks{extra})"


def concat_steps(*parts: tuple[int, Callable[[int], Step]]) -> tuple[int, Callable[[int], Step]]:
    """Chain step generators ``(nsteps, make_step)`` into one ``(nsteps, make_step)``.

    Works the same for any per-step function, e.g. ``(nsteps, key_of)`` pairs.
    """
    starts = np.cumsum([0] + [n for n, _ in parts])
    makers = [m for _, m in parts]

    def make_step(i: int) -> Step:
        part = int(np.searchsorted(starts, i, side="right")) - 1
        return makers[part](i - int(starts[part]))

    return int(starts[-1]), make_step
