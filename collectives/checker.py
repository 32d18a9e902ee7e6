"""The checker: prove a schedule correct by executing it on symbols.

Every (rank, chunk) holds a *set of contributions*: the ranks whose data has been reduced into it,
kept as a bitset (``ceil(p / 64)`` words). Initially rank ``r`` holds ``{r}`` in every chunk
(allreduce, reduce-scatter) or the finished value, the full set, in the chunks it owns (allgather).
A step reads every sender's state before the step, then applies its receives: a reduce takes the
union and must not see any contribution twice; a copy overwrites. The postcondition:

* allreduce: every rank holds every chunk reduced over all ``p`` ranks, each exactly once;
* reduce_scatter: ``owner[c]`` holds chunk ``c`` reduced over all ``p`` ranks, each exactly once;
* allgather: every rank holds every chunk's finished value.

The checker also rejects steps that could not run as written: ranks or chunks out of range, a rank
sending to itself, sending a chunk it does not hold yet, and races a runtime could not resolve (a
chunk overwritten by a copy that is also sent or written by another transfer in the same step).

Any violation raises :class:`ScheduleError` naming the step, the rank and the chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collectives.schedule import Schedule, Step

__all__ = ["ScheduleError", "VerifyReport", "verify"]


class ScheduleError(ValueError):
    """A schedule that breaks the collective's postcondition or cannot run as written.

    Attributes
    ----------
    step, rank, chunk : int or None
        Where the fault is; ``step`` is None when it is found only at the end.
    """

    def __init__(self, message: str, *, step: int | None = None, rank: int | None = None, chunk: int | None = None):
        super().__init__(message)
        self.step, self.rank, self.chunk = step, rank, chunk


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` measured while proving a schedule.

    Attributes
    ----------
    schedule : Schedule
    count, itemsize : int
        Buffer size the bytes were counted for (elements, bytes per element).
    nsteps : int
        Steps in the schedule.
    steps : ndarray, shape (p,)
        Steps each rank takes part in (sends or receives).
    bytes_sent, bytes_received : ndarray, shape (p,)
        Bytes each rank sends and receives in all.
    """

    schedule: Schedule
    count: int
    itemsize: int
    nsteps: int
    steps: np.ndarray
    bytes_sent: np.ndarray
    bytes_received: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.count * self.itemsize


def _members(bits: np.ndarray, nranks: int) -> list[int]:
    as_bytes = bits.astype("<u8").view(np.uint8)
    return np.flatnonzero(np.unpackbits(as_bytes, bitorder="little")[:nranks]).tolist()


def _fmt(ranks: list[int]) -> str:
    return "{" + ", ".join(map(str, ranks[:16])) + (", ..." if len(ranks) > 16 else "") + "}"


def _check_shape(step: Step, i: int, p: int, nchunks: int) -> None:
    fields = (step.src, step.dst, step.chunk, step.nchunks, step.reduce)
    if len({f.shape for f in fields}) != 1 or step.src.ndim != 1:
        raise ScheduleError(f"step {i}: columns have different lengths", step=i)
    for name, arr, hi in (("src", step.src, p), ("dst", step.dst, p)):
        bad = np.flatnonzero((arr < 0) | (arr >= hi))
        if bad.size:
            raise ScheduleError(f"step {i}: {name} rank {int(arr[bad[0]])} out of range [0, {p})", step=i)
    self_send = np.flatnonzero(step.src == step.dst)
    if self_send.size:
        r = int(step.src[self_send[0]])
        raise ScheduleError(f"step {i}: rank {r} sends to itself", step=i, rank=r)
    bad = np.flatnonzero((step.chunk < 0) | (step.nchunks < 0) | (step.chunk + step.nchunks > nchunks))
    if bad.size:
        t = bad[0]
        raise ScheduleError(
            f"step {i}: rank {int(step.src[t])} sends chunks [{int(step.chunk[t])}, "
            f"{int(step.chunk[t] + step.nchunks[t])}) outside [0, {nchunks})",
            step=i, rank=int(step.src[t]), chunk=int(step.chunk[t]),
        )


def _expand(step: Step) -> tuple[np.ndarray, np.ndarray]:
    """(transfer index, chunk) for every chunk every transfer carries."""
    lengths = step.nchunks
    if (lengths == 1).all():
        return np.arange(len(step)), step.chunk
    total = int(lengths.sum())
    which = np.repeat(np.arange(len(step)), lengths)
    starts = np.cumsum(lengths) - lengths
    chunks = np.repeat(step.chunk, lengths) + (np.arange(total) - np.repeat(starts, lengths))
    return which, chunks


def verify(schedule: Schedule, count: int | None = None, itemsize: int = 4, on_step=None) -> VerifyReport:
    """Execute ``schedule`` symbolically and check its collective's postcondition.

    Parameters
    ----------
    schedule : Schedule
    count : int, optional
        Elements in the buffer, for the byte counts (default: 1024 per chunk).
    itemsize : int
        Bytes per element.
    on_step : callable, optional
        ``on_step(i, step, held)`` after every step, with ``held[rank, chunk]`` the number of
        contributions each rank holds in each chunk (for pictures of the schedule; slow at scale).

    Returns
    -------
    VerifyReport
        Steps and bytes sent/received per rank.

    Raises
    ------
    ScheduleError
        Naming the step, rank and chunk at fault.

    Examples
    --------
    >>> from collectives.algorithms import get_schedule
    >>> report = verify(get_schedule("allreduce", "ring", 4), count=4096, itemsize=1)
    >>> report.bytes_sent.tolist()
    [6144, 6144, 6144, 6144]
    """
    p, nchunks = schedule.nranks, schedule.nchunks
    if count is None:
        count = 1024 * nchunks
    offsets = schedule.chunk_offsets(count)
    words = (p + 63) // 64
    rank_bits = np.zeros((p, words), dtype=np.uint64)
    ranks = np.arange(p)
    rank_bits[ranks, ranks // 64] = np.left_shift(np.uint64(1), (ranks % 64).astype(np.uint64))
    full = np.bitwise_or.reduce(rank_bits, axis=0)
    full_pop = p

    # state[rank * nchunks + chunk] -> bitset of contributions
    if schedule.collective == "allgather":
        state = np.zeros((p * nchunks, words), dtype=np.uint64)
        state[schedule.owner * nchunks + np.arange(nchunks)] = full
    else:
        state = np.zeros((p * nchunks, words), dtype=np.uint64)
        state.reshape(p, nchunks, words)[ranks, :, ranks // 64] = rank_bits[ranks, ranks // 64][:, None]
    last_write = np.full(p * nchunks, -1, dtype=np.int64)
    sent_in = np.full(p * nchunks, -1, dtype=np.int64)  # step in which (rank, chunk) was last sent

    steps = np.zeros(p, dtype=np.int64)
    sent = np.zeros(p, dtype=np.int64)
    received = np.zeros(p, dtype=np.int64)

    for i, step in enumerate(schedule.steps()):
        _check_shape(step, i, p, nchunks)
        if len(step) == 0:
            continue
        which, chunks = _expand(step)
        src, dst, red = step.src[which], step.dst[which], step.reduce[which]
        send_keys = src * nchunks + chunks
        write_keys = dst * nchunks + chunks
        values = state[send_keys]  # gathered: the pre-step state

        empty = np.flatnonzero(~values.any(axis=1)) if words > 1 else np.flatnonzero(values[:, 0] == 0)
        if empty.size:
            k = empty[0]
            raise ScheduleError(
                f"step {i}: rank {int(src[k])} sends chunk {int(chunks[k])} to rank {int(dst[k])} before holding it",
                step=i, rank=int(src[k]), chunk=int(chunks[k]),
            )
        sent_in[send_keys] = i
        unique_writes = _check_races(i, nchunks, sent_in, write_keys, red)

        # copies overwrite (races excluded above, so each copy target is written once)
        if red.all():
            rk, rv = write_keys, values
        elif not red.any():
            state[write_keys] = values
            rk = rv = write_keys[:0]
        else:
            state[write_keys[~red]] = values[~red]
            rk, rv = write_keys[red], values[red]
        # reduces: the union must not count any contribution twice
        if rk.size and unique_writes:
            before = state[rk]
            twice = np.flatnonzero(before & rv)  # flat: the row is index // words
            if twice.size:
                row = twice[0] // words
                _raise_duplicate(i, p, nchunks, int(rk[row]), before[row], rk, rv, src[red])
            before |= rv
            state[rk] = before
        elif rk.size:
            targets, inverse = np.unique(rk, return_inverse=True)
            before = state[targets]
            expected = np.bitwise_count(before).sum(axis=1).astype(np.int64)
            expected += np.bincount(inverse, weights=np.bitwise_count(rv).sum(axis=1), minlength=targets.size).astype(np.int64)
            np.bitwise_or.at(state, rk, rv)
            got = np.bitwise_count(state[targets]).sum(axis=1).astype(np.int64)
            bad = np.flatnonzero(got != expected)
            if bad.size:
                _raise_duplicate(i, p, nchunks, int(targets[bad[0]]), before[bad[0]], rk, rv, src[red])
        last_write[write_keys] = i
        if on_step is not None:
            on_step(i, step, np.bitwise_count(state).sum(axis=1).reshape(p, nchunks))

        nbytes = (offsets[step.chunk + step.nchunks] - offsets[step.chunk]) * itemsize
        sent += np.bincount(step.src, weights=nbytes, minlength=p).astype(np.int64)
        received += np.bincount(step.dst, weights=nbytes, minlength=p).astype(np.int64)
        active = np.zeros(p, dtype=bool)
        active[step.src] = True
        active[step.dst] = True
        steps += active

    _check_postcondition(schedule, state, full, full_pop, last_write)
    return VerifyReport(schedule, count, itemsize, schedule.nsteps, steps, sent, received)


def _check_races(i: int, nchunks: int, sent_in, write_keys, reduce) -> bool:
    """Reject copies into chunks the same step also sends or writes; return whether writes are unique."""
    ordered = np.sort(write_keys)
    repeats = ordered[1:] == ordered[:-1]
    copy_keys = write_keys[~reduce]
    if not copy_keys.size:
        return not repeats.any()
    clash = sent_in[copy_keys] == i
    if repeats.any():
        clash |= np.isin(copy_keys, ordered[1:][repeats])
    if clash.any():
        key = int(copy_keys[np.flatnonzero(clash)[0]])
        rank, chunk = divmod(key, nchunks)
        raise ScheduleError(
            f"step {i}: rank {rank} chunk {chunk} is overwritten by a copy while the same step also "
            "sends or writes it (race)",
            step=i, rank=rank, chunk=chunk,
        )
    return not repeats.any()


def _raise_duplicate(i, p, nchunks, key, before, rk, rv, senders) -> None:
    rank, chunk = divmod(key, nchunks)
    incoming = np.flatnonzero(rk == key)
    seen = np.zeros_like(before)
    twice = np.zeros_like(before)
    for k in incoming:
        twice |= seen & rv[k]
        seen |= rv[k]
    dup = _members(twice | (before & seen), p)
    from_ranks = sorted({int(senders[k]) for k in incoming})
    raise ScheduleError(
        f"step {i}: rank {rank} chunk {chunk} reduces the contribution of rank(s) {_fmt(dup)} twice "
        f"(received from rank(s) {from_ranks}, held {_fmt(_members(before, p))} before)",
        step=i, rank=rank, chunk=chunk,
    )


def _check_postcondition(schedule: Schedule, state, full, full_pop, last_write) -> None:
    p, nchunks = schedule.nranks, schedule.nchunks
    if schedule.collective == "reduce_scatter":
        keys = schedule.owner * nchunks + np.arange(nchunks)
    else:
        keys = np.arange(p * nchunks)
    held = state[keys] if schedule.collective == "reduce_scatter" else state
    wrong = np.flatnonzero(held != full)  # flat indices; the row is index // words
    if not wrong.size:
        return
    bad = wrong[:1] // full.size
    key = int(keys[bad[0]])
    rank, chunk = divmod(key, nchunks)
    have = _members(held[bad[0]], p)
    missing = sorted(set(range(p)) - set(have))
    last = int(last_write[key])
    where = f"last written in step {last}" if last >= 0 else "never written"
    what = "the finished value" if schedule.collective == "allgather" else f"contributions {_fmt(have)}"
    raise ScheduleError(
        f"{schedule.collective} postcondition fails: rank {rank} chunk {chunk} ends with {what}, "
        f"missing ranks {_fmt(missing)} ({where})",
        step=last if last >= 0 else None, rank=rank, chunk=chunk,
    )
