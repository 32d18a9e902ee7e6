"""The checker rejects broken schedules and names the step, rank and chunk at fault."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from collectives import ScheduleError, Step, get_schedule, verify
from collectives.layout import Layout


def mutate(schedule, index, edit):
    """A copy of ``schedule`` whose step ``index`` is replaced by ``edit(step)``."""

    def make_step(i):
        step = schedule.make_step(i)
        return edit(step) if i == index else step

    return dataclasses.replace(schedule, make_step=make_step)


def drop(step, k=0):
    keep = np.arange(len(step)) != k
    return Step.build(step.src[keep], step.dst[keep], step.chunk[keep], step.nchunks[keep], step.reduce[keep], step.key, step.phase)


def duplicate(step, k=0):
    take = np.concatenate([np.arange(len(step)), [k]])
    return Step.build(step.src[take], step.dst[take], step.chunk[take], step.nchunks[take], step.reduce[take], step.key, step.phase)


def shift_chunk(step, k=0, by=1, nchunks=None):
    chunk = step.chunk.copy()
    chunk[k] = (chunk[k] + by) % nchunks
    return dataclasses.replace(step, chunk=chunk)


@pytest.mark.parametrize("algorithm", ["ring", "tree", "recursive_halving", "recursive_doubling"])
@pytest.mark.parametrize("nranks", [2, 5, 8])
def test_dropped_transfer_rejected(algorithm, nranks):
    schedule = get_schedule("allreduce", algorithm, nranks)
    for index in range(schedule.nsteps):
        with pytest.raises(ScheduleError) as err:
            verify(mutate(schedule, index, drop))
        assert err.value.rank is not None and err.value.chunk is not None


LAYOUT_SCHEDULES = {
    "ring-2ch-2x3": ("ring", {"layout": Layout.regular(2, 3, 2), "channels": 2}),
    "tree-2ch-3+2": ("tree", {"layout": Layout.from_nodes([0, 1, 0, 1, 0]), "channels": 2, "segments": 2}),
    "hierarchical-2x3": ("hierarchical", {"layout": Layout.regular(2, 3)}),
    "hierarchical-rh-rd-3+1+2": ("hierarchical", {"layout": Layout.from_nodes([0, 0, 0, 1, 2, 2]), "channels": 2,
                                                  "inner": "recursive_halving", "outer": "recursive_doubling"}),
    "hierarchical-tree-4x2": ("hierarchical", {"layout": Layout.regular(4, 2), "outer": "tree"}),
    "recursive_halving-near_first-6": ("recursive_halving", {"order": "near_first"}),
}


@pytest.mark.parametrize("name", LAYOUT_SCHEDULES)
def test_dropped_transfer_rejected_in_layout_schedules(name):
    algorithm, params = LAYOUT_SCHEDULES[name]
    nranks = params["layout"].nranks if "layout" in params else 6
    schedule = get_schedule("allreduce", algorithm, nranks, **params)
    verify(schedule)
    for index in range(schedule.nsteps):
        for k in {0, len(schedule.step(index)) - 1}:
            with pytest.raises(ScheduleError) as err:
                verify(mutate(schedule, index, lambda s, k=k: drop(s, k)))
            assert err.value.rank is not None and err.value.chunk is not None


def test_dropped_ring_transfer_names_rank_and_chunk():
    schedule = get_schedule("allreduce", "ring", 4)
    # step 0, transfer 0: rank 0 -> 1 with chunk 3; rank 0's share of chunk 3 is lost for good
    with pytest.raises(ScheduleError, match=r"rank 0 chunk 3 ends with contributions \{1, 2, 3\}, missing ranks \{0\}") as err:
        verify(mutate(schedule, 0, drop))
    assert (err.value.rank, err.value.chunk) == (0, 3) and err.value.step is not None


@pytest.mark.parametrize("algorithm", ["ring", "tree", "recursive_halving", "recursive_doubling"])
@pytest.mark.parametrize("nranks", [3, 4, 8])
def test_duplicated_reduce_rejected(algorithm, nranks):
    schedule = get_schedule("allreduce", algorithm, nranks)
    index = next(i for i, s in enumerate(schedule.steps()) if s.reduce.any())
    step = schedule.step(index)
    k = int(np.flatnonzero(step.reduce)[0])
    with pytest.raises(ScheduleError, match=rf"step {index}: rank {int(step.dst[k])} chunk \d+ reduces .* twice") as err:
        verify(mutate(schedule, index, lambda s: duplicate(s, k)))
    assert err.value.step == index and err.value.rank == int(step.dst[k])


@pytest.mark.parametrize("nranks", [3, 4, 7])
def test_wrong_chunk_rejected(nranks):
    schedule = get_schedule("allreduce", "ring", nranks)
    for index in range(schedule.nsteps):
        with pytest.raises(ScheduleError):
            verify(mutate(schedule, index, lambda s: shift_chunk(s, nchunks=nranks)))


def test_wrong_chunk_in_reduce_scatter_rejected():
    schedule = get_schedule("reduce_scatter", "recursive_halving", 8)
    with pytest.raises(ScheduleError, match="reduce_scatter postcondition fails|twice"):
        verify(mutate(schedule, 0, lambda s: shift_chunk(s, by=4, nchunks=8)))


def test_self_send_and_ranges_rejected():
    schedule = get_schedule("allreduce", "ring", 4)
    with pytest.raises(ScheduleError, match="step 2: rank 0 sends to itself"):
        verify(mutate(schedule, 2, lambda s: dataclasses.replace(s, dst=s.src.copy())))
    with pytest.raises(ScheduleError, match="dst rank 9 out of range"):
        verify(mutate(schedule, 1, lambda s: dataclasses.replace(s, dst=np.full(len(s), 9))))
    with pytest.raises(ScheduleError, match=r"outside \[0, 4\)"):
        verify(mutate(schedule, 1, lambda s: dataclasses.replace(s, nchunks=np.full(len(s), 5))))


def test_copy_race_rejected():
    """A copy into a chunk the receiver is sending in the same step cannot run as written."""
    schedule = get_schedule("allgather", "ring", 4)

    def race(step):
        # rank 1 receives chunk 1 (which it sends this step) by copy
        chunk = step.chunk.copy()
        chunk[0] = 1
        return dataclasses.replace(step, chunk=chunk)

    with pytest.raises(ScheduleError, match="race|before holding"):
        verify(mutate(schedule, 0, race))


def test_send_before_holding_rejected():
    schedule = get_schedule("allgather", "recursive_halving", 4)
    with pytest.raises(ScheduleError, match="step 1: rank \\d sends chunk \\d to rank \\d before holding it"):
        verify(mutate(schedule, 0, lambda s: drop(s, 0)))


def test_report_counts_bytes_per_rank():
    report = verify(get_schedule("allreduce", "recursive_doubling", 4), count=1000, itemsize=8)
    assert report.nbytes == 8000
    assert report.bytes_sent.tolist() == [16000] * 4
