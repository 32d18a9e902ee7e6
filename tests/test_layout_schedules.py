"""Topology-aware schedules: ring and tree with channels and layouts, hierarchical allreduce.

Every schedule is proved by the checker on nodes 1..16 x ranks-per-node 1..8 (regular), on uneven
and mixed node sizes and on shuffled placements; costs are held against the textbook values, and a
one-node layout gives back the flat algorithms step for step.
"""

from __future__ import annotations

import numpy as np
import pytest

from collectives import algorithm_params, get_schedule, verify
from collectives.algorithms import collectives_of
from collectives.algorithms._channels import channel_ring, local_order
from collectives.layout import Layout
from collectives.plan import compile_program, program_for

COLLECTIVES = ("allreduce", "reduce_scatter", "allgather")


def shuffled(layout: Layout, seed: int) -> Layout:
    """The same node sizes with ranks placed on nodes in a random order."""
    labels = np.asarray(layout.node_of)[np.random.default_rng(seed).permutation(layout.nranks)]
    return Layout.from_nodes(labels.tolist(), layout.nics_per_node)


def mixed(sizes, nics=1, seed=None) -> Layout:
    layout = Layout.from_nodes([n for n, size in enumerate(sizes) for _ in range(size)], nics)
    return layout if seed is None else shuffled(layout, seed)


def grid_cases():
    """Every shape nodes 1..16 x ranks-per-node 1..8, with channels 1..4, NICs and placements varied."""
    for nnodes in range(1, 17):
        for rpn in range(1, 9):
            channels = 1 + (nnodes + rpn) % 4
            nics = rpn if nnodes % 2 else max(1, rpn // 2)
            layout = Layout.regular(nnodes, rpn, nics)
            shuffle = (nnodes + rpn) % 3 == 0
            if shuffle:
                layout = shuffled(layout, nnodes * 8 + rpn)
            yield pytest.param(layout, channels, id=f"{nnodes}x{rpn}-k{channels}-nic{nics}{'-shuffled' if shuffle else ''}")


#: Uneven shapes: 3 nodes of 5, mixed sizes, placements shuffled.
UNEVEN = {
    "3x5": Layout.regular(3, 5),
    "3x5-nic2-shuffled": shuffled(Layout.regular(3, 5, 2), 1),
    "5-1-3": mixed([5, 1, 3]),
    "1-8-2-7-nic2": mixed([1, 8, 2, 7], nics=2),
    "4-4-3-nic4-shuffled": mixed([4, 4, 3], nics=4, seed=2),
    "2-6": mixed([2, 6], nics=2, seed=3),
    "7x1": Layout.regular(7, 1),
}


def same_steps(a, b) -> bool:
    if a.nsteps != b.nsteps or a.nchunks != b.nchunks or not np.array_equal(a.owner, b.owner):
        return False
    for x, y in zip(a.steps(), b.steps(), strict=True):
        for field in ("src", "dst", "chunk", "nchunks", "reduce"):
            if not np.array_equal(getattr(x, field), getattr(y, field)):
                return False
        if x.phase != y.phase:
            return False
    return True


# --- ring with channels ---------------------------------------------------------------------------


@pytest.mark.parametrize(("layout", "channels"), grid_cases())
def test_ring_verified_on_grid(layout, channels):
    p = layout.nranks
    schedule = get_schedule("allreduce", "ring", p, layout=layout, channels=channels)
    report = verify(schedule, count=p * channels * 2, itemsize=1)
    assert report.nsteps == 2 * (p - 1)
    assert (report.bytes_sent == 2 * (p - 1) * 2 * channels).all()


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("layout", UNEVEN.values(), ids=UNEVEN.keys())
@pytest.mark.parametrize("collective", COLLECTIVES)
def test_ring_verified_uneven(collective, layout, channels):
    p = layout.nranks
    schedule = get_schedule(collective, "ring", p, layout=layout, channels=channels)
    assert schedule.nchunks == channels * p
    report = verify(schedule, count=p * channels * 3, itemsize=1)
    steps = 2 * (p - 1) if collective == "allreduce" else p - 1
    assert report.nsteps == steps and (report.steps == steps).all()
    # every step has a transfer per channel and rank
    assert all(len(step) == channels * p for step in schedule.steps())


@pytest.mark.parametrize("collective", COLLECTIVES)
@pytest.mark.parametrize("nranks", [1, 2, 3, 5, 8, 13])
def test_ring_flat_layout_is_the_ring(collective, nranks):
    plain = get_schedule(collective, "ring", nranks)
    for layout in (Layout.flat(nranks), Layout((0,) * nranks, nics_per_node=4), Layout.regular(nranks, 1)):
        assert same_steps(get_schedule(collective, "ring", nranks, layout=layout, channels=1), plain)
        assert get_schedule(collective, "ring", nranks, layout=layout).params == {} or not layout.is_flat


@pytest.mark.parametrize("layout", [Layout.regular(4, 8, 8), Layout.regular(3, 8, 4), Layout.regular(2, 6, 2), *UNEVEN.values()])
def test_ring_channels_follow_nodes_and_nics(layout):
    """Each channel's ring walks a node's ranks in a row; channels leave every node by different NICs."""
    node_of = np.asarray(layout.node_of)
    nics = layout.nics_per_node
    exits = {}
    for c in range(nics):
        ring = channel_ring(layout, c)
        assert sorted(ring.tolist()) == list(range(layout.nranks))
        nodes_in_order = node_of[ring]
        assert (np.diff(nodes_in_order) >= 0).all()  # node after node, each node's ranks in a row
        for n, ranks in enumerate(layout.nodes):
            size = len(ranks)
            g = min(nics, size)
            walk = ring[nodes_in_order == n]
            entry, leave = ranks.index(int(walk[0])), ranks.index(int(walk[-1]))
            exits.setdefault(n, []).append(leave * g // size)
            if size >= 2 * g:  # NICs shared by two or more ranks: enter and leave on the channel's NIC
                assert entry * g // size == leave * g // size == c % g
    for n, used in exits.items():
        g = min(nics, len(layout.nodes[n]))
        assert len(set(used[:g])) == g, f"node {n}: channels leave through NICs {used}"


def test_local_order_is_a_permutation():
    for size in range(1, 17):
        for nics in range(1, 10):
            for c in range(12):
                assert sorted(local_order(size, nics, c).tolist()) == list(range(size))


def test_ring_channel_chunks_are_interleaved():
    """Chunk b * k + c is channel c's part of block b; block b ends on rank b (rank-blocked)."""
    layout = Layout.regular(2, 3, 3)
    schedule = get_schedule("reduce_scatter", "ring", 6, layout=layout, channels=3)
    assert schedule.owner.tolist() == np.repeat(np.arange(6), 3).tolist()
    for step in schedule.steps():
        assert ((step.chunk % 3) == np.repeat(np.arange(3), 6)).all()


def test_ring_rejects_bad_parameters():
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        get_schedule("allreduce", "ring", 4, channels=0)
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        get_schedule("allreduce", "ring", 4, channels="auto")
    with pytest.raises(ValueError, match="layout has 6 ranks"):
        get_schedule("allreduce", "ring", 4, layout=Layout.regular(2, 3))
    with pytest.raises(ValueError, match="layout must be"):
        get_schedule("allreduce", "ring", 4, layout=[0, 0, 1, 1])


# --- algorithm_params -----------------------------------------------------------------------------


def test_algorithm_params_flat_calls_unchanged():
    assert algorithm_params("ring", 8) == {}
    assert algorithm_params("ring", 8, 1 << 20, layout=Layout.flat(8)) == {}
    assert algorithm_params("tree", 8, 1 << 22) == {"segments": 4}
    assert algorithm_params("recursive_halving", 8, layout=Layout.regular(2, 4, 4), channels=4) == {}


def test_algorithm_params_resolves_channels_and_layout():
    layout = Layout.regular(2, 4, nics_per_node=2)
    assert algorithm_params("ring", 8, layout=layout) == {"channels": 2, "layout": layout}
    assert algorithm_params("ring", 8, layout=layout, channels="auto") == {"channels": 2, "layout": layout}
    assert algorithm_params("ring", 8, layout=layout, channels=1) == {"layout": layout}
    assert algorithm_params("tree", 8, 1 << 22, layout=layout, channels=4) == {"segments": 1, "channels": 4, "layout": layout}
    one_node = Layout((0,) * 4, nics_per_node=2)
    assert algorithm_params("ring", 4, layout=one_node) == {"channels": 2}
    with pytest.raises(ValueError, match="channels"):
        algorithm_params("ring", 8, channels=0)
    with pytest.raises(ValueError, match="layout has 8 ranks"):
        algorithm_params("ring", 4, layout=layout)


def test_layout_params_are_hashable_for_program_caches():
    layout = Layout.regular(2, 3, 2)
    params = tuple(sorted(algorithm_params("ring", 6, 1 << 20, layout=layout).items()))
    hash(params)
    program = program_for("allreduce", "ring", 6, 1, 600, params)
    assert program is program_for("allreduce", "ring", 6, 1, 600, tuple(sorted(algorithm_params("ring", 6, layout=Layout.regular(2, 3, 2)).items())))


# --- tree on a layout -----------------------------------------------------------------------------


@pytest.mark.parametrize(("layout", "channels"), grid_cases())
def test_tree_verified_on_grid(layout, channels):
    segments = 1 + layout.nranks % 3
    schedule = get_schedule("allreduce", "tree", layout.nranks, layout=layout, channels=channels, segments=segments)
    assert schedule.nchunks == 2 * channels * segments
    verify(schedule)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("layout", UNEVEN.values(), ids=UNEVEN.keys())
@pytest.mark.parametrize("collective", COLLECTIVES)
def test_tree_verified_uneven(collective, layout, channels):
    verify(get_schedule(collective, "tree", layout.nranks, layout=layout, channels=channels, segments=2))


@pytest.mark.parametrize("collective", COLLECTIVES)
@pytest.mark.parametrize("nranks", [1, 2, 3, 6, 9])
def test_tree_flat_layout_is_the_tree(collective, nranks):
    plain = get_schedule(collective, "tree", nranks, segments=3)
    for layout in (Layout.flat(nranks), Layout((0,) * nranks, nics_per_node=2), Layout.regular(nranks, 1)):
        assert same_steps(get_schedule(collective, "tree", nranks, layout=layout, segments=3), plain)


@pytest.mark.parametrize("layout", [Layout.regular(4, 4, 2), Layout.regular(5, 3), *UNEVEN.values()])
def test_tree_is_chains_joined_by_a_double_tree(layout):
    """Inside a node: a chain; one head per node talks to other nodes; trees A and B have different heads."""
    from collectives.algorithms.tree import tree_parents

    node_of = np.asarray(layout.node_of)
    trees = tree_parents(layout.nranks, layout, channels=2)
    assert len(trees) == 4
    for parent in trees:
        assert (parent < 0).sum() == 1
        child = np.flatnonzero(parent >= 0)
        cross = child[node_of[child] != node_of[parent[child]]]
        heads = set(cross.tolist()) | set(parent[cross].tolist()) | set(np.flatnonzero(parent < 0).tolist())
        assert len({int(node_of[h]) for h in heads}) == len(heads)  # one head per node
        inside = child[node_of[child] == node_of[parent[child]]]
        assert np.bincount(parent[inside], minlength=layout.nranks).max(initial=0) <= 1  # a chain
    for a, b in (trees[0:2], trees[2:4]):
        for n, ranks in enumerate(layout.nodes):
            if len(ranks) > 1:
                head_a = [r for r in ranks if a[r] < 0 or node_of[a[r]] != n]
                head_b = [r for r in ranks if b[r] < 0 or node_of[b[r]] != n]
                assert head_a != head_b


# --- hierarchical ---------------------------------------------------------------------------------

INNER = ("ring", "recursive_halving", "recursive_doubling")
OUTER = ("ring", "recursive_doubling", "recursive_halving", "tree")


@pytest.mark.parametrize(("layout", "channels"), grid_cases())
def test_hierarchical_verified_on_grid(layout, channels):
    case = layout.nranks + layout.nnodes
    inner, outer = INNER[case % 3], OUTER[case % 4]
    schedule = get_schedule("allreduce", "hierarchical", layout.nranks, layout=layout, channels=channels, inner=inner, outer=outer)
    verify(schedule, count=schedule.nchunks + layout.nranks)


@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize("outer", OUTER)
@pytest.mark.parametrize("inner", INNER)
@pytest.mark.parametrize("layout", UNEVEN.values(), ids=UNEVEN.keys())
def test_hierarchical_verified_uneven(layout, inner, outer, channels):
    segments = 2 if outer == "tree" else 1
    schedule = get_schedule("allreduce", "hierarchical", layout.nranks, layout=layout, channels=channels,
                            inner=inner, outer=outer, segments=segments)
    verify(schedule, count=5 * schedule.nchunks + 3)


def _phase_counts(schedule, n):
    """Steps taken and bytes sent per rank in each phase (intra reduce-scatter, outer, intra allgather)."""
    offsets = schedule.chunk_offsets(n)
    p = schedule.nranks
    phases = {name: (np.zeros(p, dtype=np.int64), np.zeros(p, dtype=np.int64)) for name in ("intra_rs", "outer", "intra_ag")}
    for step in schedule.steps():
        name = "outer" if step.key[1] == "outer" else ("intra_rs" if step.key[1] == "reduce_scatter" else "intra_ag")
        steps, sent = phases[name]
        active = np.zeros(p, dtype=bool)
        active[step.src] = active[step.dst] = True
        steps += active
        sent += np.bincount(step.src, offsets[step.chunk + step.nchunks] - offsets[step.chunk], minlength=p).astype(np.int64)
    return phases


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(("nnodes", "rpn"), [(2, 4), (4, 2), (3, 5), (4, 8), (8, 3), (16, 1), (1, 6)])
def test_hierarchical_textbook_counts(nnodes, rpn, channels):
    """Intra RS: L - 1 steps, (L - 1) / L n bytes; outer ring on n / L among N; intra AG as the RS."""
    layout = Layout.regular(nnodes, rpn, 2)
    N, L = nnodes, rpn
    n = N * L * channels * 64
    schedule = get_schedule("allreduce", "hierarchical", layout.nranks, layout=layout, channels=channels)
    phases = _phase_counts(schedule, n)
    for name in ("intra_rs", "intra_ag"):
        steps, sent = phases[name]
        assert (steps == L - 1).all() and (sent == (L - 1) * n // L).all()
    steps, sent = phases["outer"]
    assert (steps == 2 * (N - 1)).all() and (sent == 2 * (N - 1) * (n // L) // N).all()
    report = verify(schedule, count=n, itemsize=1)
    assert report.nsteps == 2 * (L - 1) + 2 * (N - 1)
    assert (report.bytes_sent == 2 * (L - 1) * n // L + 2 * (N - 1) * n // (L * N)).all()
    assert (report.bytes_received == report.bytes_sent).all()


@pytest.mark.parametrize("outer", ["recursive_halving", "recursive_doubling"])
@pytest.mark.parametrize(("nnodes", "rpn"), [(2, 4), (4, 3), (8, 2)])
def test_hierarchical_textbook_recursive_outer(nnodes, rpn, outer):
    layout = Layout.regular(nnodes, rpn)
    n = nnodes * rpn * 64
    schedule = get_schedule("allreduce", "hierarchical", layout.nranks, layout=layout, outer=outer)
    steps, sent = _phase_counts(schedule, n)["outer"]
    log_n = nnodes.bit_length() - 1
    if outer == "recursive_halving":
        assert (steps == 2 * log_n).all() and (sent == 2 * (nnodes - 1) * (n // rpn) // nnodes).all()
    else:
        assert (steps == log_n).all() and (sent == log_n * n // rpn).all()


@pytest.mark.parametrize("nranks", [1, 2, 3, 5, 8, 12])
def test_hierarchical_on_one_node_is_the_inner_allreduce(nranks):
    ring = get_schedule("allreduce", "ring", nranks)
    for layout in (None, Layout.flat(nranks), Layout((0,) * nranks, nics_per_node=4)):
        for outer in OUTER:
            assert same_steps(get_schedule("allreduce", "hierarchical", nranks, layout=layout, outer=outer), ring)
    if nranks & (nranks - 1) == 0:  # recursive halving inside: the far-first flat algorithm
        flat = get_schedule("allreduce", "recursive_halving", nranks, order="far_first")
        assert same_steps(get_schedule("allreduce", "hierarchical", nranks, inner="recursive_halving"), flat)


@pytest.mark.parametrize("nranks", [2, 3, 6, 8])
def test_hierarchical_one_rank_per_node_is_the_outer_allreduce(nranks):
    layout = Layout.regular(nranks, 1)
    for outer in OUTER:
        flat = get_schedule("allreduce", outer, nranks)
        assert same_steps(get_schedule("allreduce", "hierarchical", nranks, layout=layout, outer=outer), flat)


def test_hierarchical_parts_follow_local_ranks():
    """Regular nodes: part i is reduced across nodes among the ranks of local rank i (one rail each)."""
    layout = shuffled(Layout.regular(3, 4), 7)
    schedule = get_schedule("allreduce", "hierarchical", 12, layout=layout)
    for step in schedule.steps():
        if step.key[1] == "outer":
            local = [layout.local_rank(int(r)) for r in step.src]
            assert local == [layout.local_rank(int(r)) for r in step.dst]
            assert all(lr == int(c) // 3 for lr, c in zip(local, step.chunk, strict=True))  # 3 chunks per part
        else:
            assert all(layout.node(int(a)) == layout.node(int(b)) for a, b in zip(step.src, step.dst, strict=True))


def test_hierarchical_is_allreduce_only():
    assert collectives_of("hierarchical") == ("allreduce",)
    for collective in ("reduce_scatter", "allgather"):
        with pytest.raises(ValueError, match=f"hierarchical generates only allreduce, not {collective}"):
            get_schedule(collective, "hierarchical", 4, layout=Layout.regular(2, 2))


def test_hierarchical_rejects_bad_parameters():
    layout = Layout.regular(2, 2)
    with pytest.raises(ValueError, match="inner must be one of ring, recursive_halving, recursive_doubling"):
        get_schedule("allreduce", "hierarchical", 4, layout=layout, inner="tree")
    with pytest.raises(ValueError, match="outer must be one of"):
        get_schedule("allreduce", "hierarchical", 4, layout=layout, outer="bruck")
    with pytest.raises(ValueError, match="segments applies only to outer='tree'"):
        get_schedule("allreduce", "hierarchical", 4, layout=layout, segments=2)
    with pytest.raises(ValueError, match="channels"):
        get_schedule("allreduce", "hierarchical", 4, layout=layout, channels=0)


def test_hierarchical_describes_itself():
    text = get_schedule("allreduce", "hierarchical", 8, layout=Layout.regular(2, 4, 2), channels=2).describe()
    assert "inner=ring, outer=ring, channels=2, layout=2x4 ranks, 2 NIC(s) per node" in text


# --- pattern keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ring", "tree", "hierarchical"])
@pytest.mark.parametrize("layout", [Layout.regular(3, 4, 2), UNEVEN["1-8-2-7-nic2"], UNEVEN["4-4-3-nic4-shuffled"]],
                         ids=["3x4", "1-8-2-7", "4-4-3"])
def test_keys_identify_patterns(algorithm, layout):
    """Schedule.key(i) is step i's key without the step; equal keys mean equal patterns."""
    params = {"segments": 3} if algorithm == "tree" else {}
    schedule = get_schedule("allreduce", algorithm, layout.nranks, layout=layout, channels=2, **params)
    assert schedule.key_of is not None
    patterns = {}
    for i, step in enumerate(schedule.steps()):
        assert schedule.key(i) == step.key
        order = np.lexsort((step.nchunks, step.dst, step.src))
        pattern = tuple(np.stack([step.src, step.dst, step.nchunks, step.reduce])[:, order].ravel().tolist())
        assert patterns.setdefault(step.key, pattern) == pattern


# --- runtimes compile the new schedules -----------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ring", "tree", "hierarchical"])
@pytest.mark.parametrize("layout", [Layout.regular(2, 3, 2), UNEVEN["3x5-nic2-shuffled"], UNEVEN["5-1-3"]], ids=["2x3", "3x5s", "5-1-3"])
def test_programs_compile_and_match_pairwise(algorithm, layout):
    p = layout.nranks
    for collective in collectives_of(algorithm):
        params = tuple(sorted(algorithm_params(algorithm, p, 1 << 20, layout=layout, channels=2).items()))
        count = 7 * p
        programs = [program_for(collective, algorithm, p, r, count, params) for r in range(p)]
        sends = {(s.index, r, t.peer, t.lo, t.hi, t.reduce) for r, prog in enumerate(programs) for s in prog.steps for t in s.sends}
        recvs = {(s.index, t.peer, r, t.lo, t.hi, t.reduce) for r, prog in enumerate(programs) for s in prog.steps for t in s.recvs}
        assert sends == recvs and sends
        schedule = get_schedule(collective, algorithm, p, **dict(params))
        assert compile_program(schedule, 0, count) == programs[0]


# --- CLI ------------------------------------------------------------------------------------------


def _collsim(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, timeout=300)


def test_show_hierarchical_on_nodes():
    out = _collsim("show", "hierarchical", "--nodes", "2", "--ranks-per-node", "4")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "layout=2x4 ranks" in lines[0] and lines[2] == "nodes: n0=r0,1,2,3  n1=r4,5,6,7"
    steps = [line for line in lines if line.startswith("step ")]
    assert len(steps) == 3 + 2 + 3
    assert lines[-1].split() == [f"r{r}:{'*' * 8}" for r in range(8)]
    bad = _collsim("show", "recursive_doubling", "--nodes", "2")
    assert bad.returncode == 2 and "--nodes applies to ring, tree and hierarchical" in bad.stderr


def test_verify_proves_layouts():
    out = _collsim("verify", "--algorithms", "ring,hierarchical", "--max-ranks", "4", "--nodes", "3", "--ranks-per-node", "3")
    assert out.returncode == 0, out.stderr
    row = next(line.split() for line in out.stdout.splitlines() if line.split()[:2] == ["hierarchical", "3x3"])
    assert row[2] == row[3] == "8" and row[4] == row[5] == "1.778"
    assert "proved on every layout of 1..3 nodes x 1..3 ranks" in out.stderr
