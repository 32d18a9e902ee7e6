"""Schedules: every algorithm proved for every collective, textbook step and byte counts, chunking."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectives import ALGORITHMS, COLLECTIVES, algorithm_params, chunk_offsets, get_schedule, verify
from collectives.algorithms import collectives_of
from collectives.plan import compile_program

POWERS_OF_TWO = [1, 2, 4, 8, 16, 32, 64]


@pytest.mark.parametrize("nranks", range(1, 65))
@pytest.mark.parametrize("collective", COLLECTIVES)
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_verified(algorithm, collective, nranks):
    if collective not in collectives_of(algorithm):
        with pytest.raises(ValueError, match=f"{algorithm} generates only allreduce, not {collective}"):
            get_schedule(collective, algorithm, nranks)
        return
    schedule = get_schedule(collective, algorithm, nranks)
    report = verify(schedule)
    assert report.nsteps == schedule.nsteps


@pytest.mark.parametrize("segments", [1, 2, 3, 8])
@pytest.mark.parametrize("nranks", [1, 2, 3, 5, 6, 7, 12, 33])
def test_tree_segments_verified(nranks, segments):
    for collective in COLLECTIVES:
        verify(get_schedule(collective, "tree", nranks, segments=segments))


@settings(max_examples=60, deadline=None)
@given(
    algorithm=st.sampled_from(list(ALGORITHMS)),
    collective=st.sampled_from(COLLECTIVES),
    nranks=st.integers(1, 256),
    segments=st.integers(1, 6),
    count=st.integers(0, 5000),
)
def test_verified_sweep(algorithm, collective, nranks, segments, count):
    if collective not in collectives_of(algorithm):
        return
    params = {"segments": segments} if algorithm == "tree" else {}
    schedule = get_schedule(collective, algorithm, nranks, **params)
    count -= count % schedule.nblocks
    report = verify(schedule, count=count, itemsize=2)
    assert report.bytes_sent.sum() == report.bytes_received.sum()


# --- textbook counts ------------------------------------------------------------------------------


def _report(algorithm, nranks, collective="allreduce", **params):
    n = 1 << 20 if nranks in POWERS_OF_TWO else nranks * 4096  # n bytes, divisible into p chunks
    return n, verify(get_schedule(collective, algorithm, nranks, **params), count=n, itemsize=1)


@pytest.mark.parametrize("nranks", [1, 2, 3, 4, 5, 7, 8, 16, 31, 64])
def test_ring_textbook(nranks):
    n, report = _report("ring", nranks)
    assert report.nsteps == 2 * (nranks - 1)
    assert (report.steps == 2 * (nranks - 1)).all()
    expected = 2 * (nranks - 1) * n // nranks
    assert (report.bytes_sent == expected).all()
    assert (report.bytes_received == expected).all()


@pytest.mark.parametrize("order", ["near_first", "far_first"])
@pytest.mark.parametrize("nranks", POWERS_OF_TWO)
def test_recursive_halving_textbook(nranks, order):
    n, report = _report("recursive_halving", nranks, order=order)
    log_p = int(math.log2(nranks))
    assert report.nsteps == 2 * log_p
    assert (report.steps == 2 * log_p).all()
    assert (report.bytes_sent == 2 * (nranks - 1) * n // nranks).all()
    assert (report.bytes_received == 2 * (nranks - 1) * n // nranks).all()


@pytest.mark.parametrize("order", ["near_first", "far_first"])
@pytest.mark.parametrize("nranks", [1, 2, 3, 5, 6, 7, 8, 12, 13, 16, 31, 33, 64])
def test_recursive_halving_orders_verified(nranks, order):
    verify(get_schedule("allreduce", "recursive_halving", nranks, order=order), count=7 * nranks + 1)


@pytest.mark.parametrize("nranks", [8, 16, 13])
def test_recursive_halving_orders(nranks):
    """near_first exchanges the largest half with the nearest rank (MPICH); far_first with the farthest."""
    pof2 = 1 << (nranks.bit_length() - 1)
    for order, distances in (("near_first", [1 << i for i in range(pof2.bit_length() - 1)]),
                             ("far_first", [pof2 >> (i + 1) for i in range(pof2.bit_length() - 1)])):
        schedule = get_schedule("allreduce", "recursive_halving", nranks, order=order)
        halving = [step for step in schedule.steps() if step.phase == "reduce_scatter" and step.key[0] != "fold"]
        sizes = [int(step.nchunks.max()) for step in halving]
        assert sizes == [pof2 >> (i + 1) for i in range(len(halving))]  # largest half first
        if nranks == pof2:  # virtual ranks are real ranks: the partner's distance is the mask
            assert [int(np.abs(step.src - step.dst).max()) for step in halving] == distances
        gathering = [step for step in schedule.steps() if step.phase == "allgather" and step.key[0] != "unfold"]
        assert [int(step.nchunks.max()) for step in gathering] == sizes[::-1]  # the allgather mirrors it
    assert get_schedule("allreduce", "recursive_halving", nranks).params == {"order": "near_first"}


def test_recursive_halving_order_checked():
    with pytest.raises(ValueError, match="order must be one of near_first, far_first"):
        get_schedule("allreduce", "recursive_halving", 4, order="middle")
    with pytest.raises(ValueError, match="reduce_scatter runs only order='far_first'"):
        get_schedule("reduce_scatter", "recursive_halving", 4, order="near_first")
    with pytest.raises(ValueError, match="allgather runs only order='far_first'"):
        get_schedule("allgather", "recursive_halving", 4, order="near_first")
    verify(get_schedule("reduce_scatter", "recursive_halving", 6, order="far_first"))


@pytest.mark.parametrize("nranks", POWERS_OF_TWO)
def test_recursive_doubling_textbook(nranks):
    n, report = _report("recursive_doubling", nranks)
    log_p = int(math.log2(nranks))
    assert report.nsteps == log_p
    assert (report.bytes_sent == n * log_p).all()
    assert (report.bytes_received == n * log_p).all()


@pytest.mark.parametrize("nranks", [3, 5, 6, 7, 12, 13])
def test_non_power_of_two_pre_post_step(nranks):
    """Rabenseifner and recursive doubling add exactly one fold and one unfold step."""
    log_p = int(math.log2(nranks))
    assert get_schedule("allreduce", "recursive_halving", nranks).nsteps == 2 * log_p + 2
    assert get_schedule("allreduce", "recursive_doubling", nranks).nsteps == log_p + 2
    n, report = _report("recursive_halving", nranks)
    folded = 2 * (nranks - (1 << log_p))
    # folded even ranks only send their buffer in and receive the result back
    assert (report.steps[:folded:2] == 2).all()
    assert (report.bytes_sent[:folded:2] == n).all()


@pytest.mark.parametrize("segments", [1, 4])
@pytest.mark.parametrize("nranks", [2, 3, 4, 7, 8, 16, 64])
def test_tree_counts(nranks, segments):
    """Each rank sends each tree's half up once; interior ranks send it to each child."""
    n = 2 * segments * 1024
    report = verify(get_schedule("allreduce", "tree", nranks, segments=segments), count=n, itemsize=1)
    depth = math.ceil(math.log2(nranks))
    assert report.nsteps <= 2 * (segments + depth)
    assert report.bytes_sent.max() <= 2 * n
    # everyone reduces and broadcasts the whole buffer: every rank receives n (roots: n/2 less per tree rooted)
    assert report.bytes_received.min() >= n // 2
    assert report.bytes_sent.sum() == report.bytes_received.sum()


@pytest.mark.parametrize("nranks", [2, 3, 6, 8, 9, 64, 65])
def test_double_tree_is_complementary(nranks):
    """A rank has at most two children over both trees, so the broadcast sends at most n per rank.

    For even p no rank is interior in both trees; for odd p only rank 0 is (root of tree A with a
    single child).
    """
    from collectives.algorithms.tree import double_tree

    trees = double_tree(nranks)
    children = sum(np.bincount(parent[parent >= 0], minlength=nranks) for parent in trees)
    assert children.max() <= 2
    interior = [np.isin(np.arange(nranks), parent[parent >= 0]) for parent in trees]
    both = np.flatnonzero(interior[0] & interior[1]).tolist()
    assert both == ([] if nranks % 2 == 0 else [0])


# --- chunking -------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 2, 6, 7, 97, 1031, 65539])
@pytest.mark.parametrize("nchunks", [1, 3, 7, 8, 64])
def test_chunk_offsets(count, nchunks):
    offsets = chunk_offsets(count, nchunks)
    sizes = np.diff(offsets)
    assert offsets[0] == 0 and offsets[-1] == count and len(sizes) == nchunks
    assert sizes.min() >= 0 and sizes.max() - sizes.min() <= 1


@pytest.mark.parametrize("bad", [(-1, 4), (4, 0)])
def test_chunk_offsets_rejects(bad):
    with pytest.raises(ValueError, match="count|nchunks"):
        chunk_offsets(*bad)


def test_blocked_chunking_respects_blocks():
    schedule = get_schedule("reduce_scatter", "ring", 4)
    assert schedule.chunk_offsets(20).tolist() == [0, 5, 10, 15, 20]
    with pytest.raises(ValueError, match="multiple of nranks"):
        schedule.chunk_offsets(10)


# --- registry, laziness, pattern keys, per-rank programs -----------------------------------------


def test_unknown_algorithm_lists_choices():
    with pytest.raises(ValueError, match="ring, tree, recursive_halving, recursive_doubling"):
        get_schedule("allreduce", "bruck", 4)
    with pytest.raises(ValueError, match="allreduce, reduce_scatter, allgather"):
        get_schedule("broadcast", "ring", 4)
    with pytest.raises(ValueError, match="nranks"):
        get_schedule("allreduce", "ring", 0)
    with pytest.raises(ValueError, match="segments"):
        get_schedule("allreduce", "tree", 4, segments=0)
    with pytest.raises(ValueError, match="does not take"):
        get_schedule("allreduce", "ring", 4, segments=2)


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_lazy_at_scale(algorithm):
    """Building a 16384-rank schedule generates no steps; one step is a few arrays."""
    start = time.perf_counter()
    schedule = get_schedule("allreduce", algorithm, 16384, **algorithm_params(algorithm, 16384, 1 << 30))
    assert time.perf_counter() - start < 0.5
    step = schedule.step(schedule.nsteps // 2)
    assert all(isinstance(a, np.ndarray) for a in (step.src, step.dst, step.chunk, step.nchunks, step.reduce))


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("nranks", [5, 8])
def test_pattern_keys_identify_patterns(algorithm, nranks):
    patterns = {}
    for step in get_schedule("allreduce", algorithm, nranks, **algorithm_params(algorithm, nranks, 1 << 22)).steps():
        order = np.lexsort((step.dst, step.src))
        pattern = tuple(np.stack([step.src, step.dst, step.nchunks, step.reduce])[:, order].ravel().tolist())
        assert patterns.setdefault(step.key, pattern) == pattern


def test_ring_steps_share_one_key_per_phase():
    keys = {step.key for step in get_schedule("allreduce", "ring", 16).steps()}
    assert len(keys) == 2


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("nranks", [3, 4, 7])
@pytest.mark.parametrize("count", [0, 2, 1031])
def test_programs_match_pairwise(algorithm, nranks, count):
    """What rank a sends to b in step s is exactly what b expects from a, element for element."""
    schedule = get_schedule("allreduce", algorithm, nranks)
    programs = [compile_program(schedule, r, count) for r in range(nranks)]
    sends = {(s.index, r, t.peer, t.lo, t.hi, t.reduce) for r, prog in enumerate(programs) for s in prog.steps for t in s.sends}
    recvs = {(s.index, t.peer, r, t.lo, t.hi, t.reduce) for r, prog in enumerate(programs) for s in prog.steps for t in s.recvs}
    assert sends == recvs
    assert all(t.size > 0 for prog in programs for s in prog.steps for t in s.sends)
