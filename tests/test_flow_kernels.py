"""The flow model's inner kernels against plain versions of themselves, and what its caches share.

The compiled max-min filling (:mod:`sim.eventclock`) keeps the arcs' shares on a heap, and the
event clock fills the rates of the flows connected to a change only, found by following the arcs
that flows share (``_spread``). Both are shortcuts that must change nothing: the plain versions
below are the textbook progressive filling and connected components over every arc, and the
results must be equal to the last bit.
"""

from __future__ import annotations

import numpy as np
import pytest

import topologies
from sim.flow import Network

REL = 1e-12


def plain_maxmin(arc, flow, cap, rate):
    """Progressive filling over every arc (no folding, no renumbering)."""
    capr = cap
    frozen = np.zeros(rate.shape[0], dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        while True:
            share = capr / np.bincount(arc, minlength=cap.size)
            level = np.fmin.reduce(share)
            hit = flow[(share <= level * (1 + REL))[arc]]
            rate[hit] = level
            frozen[hit] = True
            out = frozen[flow]
            if out.all():
                return
            arc_out = arc[out]
            capr = np.maximum(capr - np.bincount(arc_out, weights=np.full(arc_out.size, level), minlength=cap.size), 0.0)
            arc, flow = arc[~out], flow[~out]


def random_flows(seed: int, nflows: int, narcs: int, private: float):
    """Flows of 1..4 arcs: some arcs their own (host links), the rest drawn from a shared pool."""
    rng = np.random.default_rng(seed)
    arcs, flows = [], []
    own = narcs
    for f in range(nflows):
        path = set(rng.choice(narcs, size=min(int(rng.integers(1, 4)), narcs), replace=False).tolist())
        if rng.random() < private:
            path.add(own)
            own += 1
        arcs += sorted(path)
        flows += [f] * len(path)
    # capacities from a few levels, so that shares tie (the tolerance of the rounds matters)
    cap = rng.choice([1e9, 2e9, 2.5e9, 1e10], size=own)
    return np.array(arcs, dtype=np.int64), np.array(flows, dtype=np.int64), cap


def _clock_tables(arc, flow, nflows):
    """The event clock's layout of flows ``0..nflows-1``: transfer ids and routes padded with -1."""
    lens = np.bincount(flow, minlength=nflows)
    tarcs = np.full((nflows, max(int(lens.max(initial=0)), 1)), -1, dtype=np.int64)
    col = np.arange(arc.size) - np.repeat(np.cumsum(lens) - lens, lens)
    tarcs[flow, col] = arc
    return np.arange(nflows, dtype=np.int64), tarcs, lens.astype(np.int64)


def _compiled_maxmin(sel, arc, flow, cap, rate):
    from sim import eventclock

    nflows = rate.shape[0]
    a_id, tarcs, tlens = _clock_tables(arc, flow, nflows)
    na = cap.size
    eventclock._maxmin(np.asarray(sel, dtype=np.int64), len(sel), a_id, 0, tarcs, tlens, cap, rate,
                       np.zeros(na, dtype=np.int64), np.empty(na), np.zeros(na), np.empty(na, dtype=np.int64),
                       np.empty(na, dtype=np.int64), np.empty(na, dtype=np.int64), np.empty(4, dtype=np.int64),
                       np.zeros(nflows, dtype=bool), np.empty(2 * na, dtype=np.int64), np.zeros(na, dtype=np.int64))


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(("nflows", "narcs", "private"), [(1, 1, 0.0), (5, 3, 1.0), (40, 25, 0.6), (300, 60, 0.9),
                                                         (7, 200, 0.3)])
def test_compiled_maxmin_equals_plain_progressive_filling(seed, nflows, narcs, private):
    arc, flow, cap = random_flows(seed, nflows, narcs, private)
    want = np.full(nflows, np.nan)
    plain_maxmin(arc, flow, cap, want)
    got = np.full(nflows, np.nan)
    _compiled_maxmin(np.arange(nflows), arc, flow, cap, got)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(("nflows", "narcs"), [(30, 40), (200, 50), (12, 400)])
def test_the_clock_refills_the_flows_connected_to_a_change_as_a_full_refill_would(seed, nflows, narcs):
    """``_spread`` from the flows on some arcs reaches exactly their connected components (flows joined
    by arcs they share), and filling those alone gives every flow the rate a full filling gives."""
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    from sim import eventclock

    arc, flow, cap = random_flows(seed, nflows, narcs, 0.7)
    rng = np.random.default_rng(1000 + seed)
    seeds = rng.choice(np.unique(arc), size=min(3, np.unique(arc).size), replace=False)
    a_id, tarcs, tlens = _clock_tables(arc, flow, nflows)
    na, width = cap.size, tarcs.shape[1]
    head, nxt, prv = np.full(na, -1, dtype=np.int64), np.empty(nflows * width, dtype=np.int64), np.empty(nflows * width,
                                                                                                       dtype=np.int64)
    for i in range(nflows):
        eventclock._link(i, a_id, 0, tarcs, tlens, width, head, nxt, prv)
    load = np.bincount(arc, minlength=na)
    sel, mine = np.empty(nflows, dtype=np.int64), np.zeros(nflows, dtype=bool)
    start = np.unique(flow[np.isin(arc, seeds)])
    sel[:start.size], mine[start] = start, True
    n_sel = eventclock._spread(sel, start.size, mine, np.zeros(na, dtype=bool), a_id, 0, tarcs, tlens, load, width,
                               head, nxt)
    # the components by scipy: flows joined when they share an arc
    by_arc = np.argsort(arc, kind="stable")
    same = arc[by_arc][1:] == arc[by_arc][:-1]
    pairs = (flow[by_arc][:-1][same], flow[by_arc][1:][same])
    _, label = connected_components(coo_array((np.ones(same.sum()), pairs), shape=(nflows, nflows)), directed=False)
    assert set(sel[:n_sel].tolist()) == set(np.flatnonzero(np.isin(label, label[start])).tolist())
    full = np.full(nflows, np.nan)
    plain_maxmin(arc, flow, cap, full)
    part = full * rng.uniform(0.5, 1.5, size=nflows)  # stale rates elsewhere: they must be left alone
    _compiled_maxmin(sel[:n_sel], arc, flow, cap, part)
    on = mine
    assert np.array_equal(part[on], full[on])


def test_incidence_is_shared_by_protocol_views_and_repeated_runs(monkeypatch):
    import sim.flow
    from sim.params import defaults_for
    from sim.select import run_model

    G = topologies.gpu_cluster(nodes=2, gpus_per_node=4)
    net = Network(G, defaults_for(G))
    built = []
    init = sim.flow._Incidence.__init__

    def counting(self, *args):
        built.append(1)
        init(self, *args)

    monkeypatch.setattr(sim.flow._Incidence, "__init__", counting)
    first = run_model("flow", "allreduce", "hierarchical", net, 8, 1 << 20, protocol="auto")
    once = len(built)
    assert once > 0
    again = run_model("flow", "allreduce", "hierarchical", net, 8, 1 << 20, protocol="auto")
    assert len(built) == once  # every protocol view and the second run reuse the first incidences
    assert again.time == first.time


def plain_group_events(starts, size, arc, flow, cap, budget, window_after):
    """The textbook event loop: at every event every rate is filled again (flows sorted by start)."""
    n = starts.size
    rem, end = size.astype(float).copy(), np.full(n, np.nan)
    act, nxt, t = [], 0, starts[0]
    window = 0.0 if budget > 0 else window_after
    while True:
        while nxt < n and starts[nxt] <= t + window:
            act.append(nxt)
            nxt += 1
        if not act:
            if nxt >= n:
                return end, budget
            t = starts[nxt]
            continue
        on = np.isin(flow, act)
        rate = np.full(n, np.nan)
        plain_maxmin(arc[on], flow[on], cap, rate)
        t_end = {f: t + rem[f] / rate[f] for f in act}
        t_next = min(min(t_end.values()), starts[nxt] if nxt < n else np.inf)
        for f in list(act):
            if t_end[f] <= t_next * (1 + REL) + window:
                end[f] = t_end[f]
                act.remove(f)
            else:
                rem[f] = max(rem[f] - rate[f] * (t_next - t), 0.0)
        t = t_next
        budget -= 1
        if budget == 0:
            window = window_after


@pytest.mark.parametrize("budget", [1000, 5, 0])
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("nflows", "narcs"), [(1, 1), (40, 25), (120, 30)])
def test_compiled_group_events_equal_the_plain_event_loop(seed, nflows, narcs, budget):
    """The step loop's compiled event loop of a large group (``group_events``): the same end times, to
    the last bit, with every event exact and with events merged once the budget is spent."""
    from sim import eventclock

    arc, flow, cap = random_flows(seed, nflows, narcs, 0.6)
    rng = np.random.default_rng(500 + seed)
    starts = np.sort(rng.choice([0.0, 1e-6, 2e-6, 5e-6], size=nflows))
    size = rng.choice([1e3, 4e3, 1e4], size=nflows)
    by_flow = np.argsort(flow, kind="stable")
    eptr = np.zeros(nflows + 1, dtype=np.int64)
    np.cumsum(np.bincount(flow, minlength=nflows), out=eptr[1:])
    window = 0.1 * float(np.min(size / cap.max()))
    want, left = plain_group_events(starts, size, arc, flow, cap, budget, window)
    got, got_left = eventclock.group_events(starts, size, eptr, arc[by_flow], cap, budget, window)
    assert np.array_equal(got, want)
    assert got_left == left


@pytest.mark.parametrize("seed", range(6))
def test_compiled_maxmin_past_the_scanned_rounds(seed):
    """Capacities all different give a level per round: the filling goes on on its heap past the first
    scanned rounds, and still equals the plain one to the last bit."""
    arc, flow, _ = random_flows(seed, 200, 40, 0.8)
    cap = np.random.default_rng(seed).uniform(1e9, 1e10, size=int(arc.max()) + 1)
    want = np.full(200, np.nan)
    plain_maxmin(arc, flow, cap, want)
    assert np.unique(want).size > 20  # many more levels than the scanned rounds
    got = np.full(200, np.nan)
    _compiled_maxmin(np.arange(200), arc, flow, cap, got)
    assert np.array_equal(got, want)


def test_the_first_compile_is_announced_once(monkeypatch, capsys):
    """Compiling the event loops takes about 20 s on the first use on a machine: it is said on stderr,
    and said nothing about when numba's cache has them."""
    from sim import eventclock

    monkeypatch.setattr(eventclock.os.path, "exists", lambda path: False)
    eventclock.note_first_compile.__wrapped__()
    assert "compiling the flow simulator's event loops" in capsys.readouterr().err
    monkeypatch.setattr(eventclock.os.path, "exists", lambda path: True)
    eventclock.note_first_compile.__wrapped__()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("seed", range(6))
def test_compiled_grouped_events_run_each_group_on_its_own_clock(seed):
    """``grouped_events`` (the step loop's many small groups): every group as the plain event loop runs it
    alone, exact, or merging events within its window from the start."""
    from sim import eventclock

    rng = np.random.default_rng(900 + seed)
    pieces, starts, sizes, windows = [], [], [], []
    offset = 0
    for g in range(5):
        nflows = int(rng.integers(1, 30))
        arc, flow, cap = random_flows(seed * 10 + g, nflows, 12, 0.5)
        arc = arc + offset  # groups on arcs of their own
        offset += cap.size
        pieces.append((arc, flow, cap))
        starts.append(np.sort(rng.choice([0.0, 1e-6, 4e-6], size=nflows)))
        sizes.append(rng.choice([1e3, 5e3, 2e4], size=nflows))
        windows.append(0.0 if g % 2 == 0 else 0.1 * float(np.min(sizes[-1] / cap.max())))
    cap = np.concatenate([c for _, _, c in pieces])
    fptr = np.concatenate([[0], np.cumsum([s.size for s in starts])]).astype(np.int64)
    eptr, earc = [0], []
    for arc, flow, _ in pieces:
        for f in range(int(flow.max()) + 1):
            earc.extend(arc[flow == f].tolist())
            eptr.append(len(earc))
    got = eventclock.grouped_events(fptr, np.concatenate(starts), np.concatenate(sizes), np.array(eptr, dtype=np.int64),
                                    np.array(earc, dtype=np.int64), cap, np.array(windows))
    for g, (arc, flow, _) in enumerate(pieces):
        want, _ = plain_group_events(starts[g], sizes[g], arc, flow, cap, 0 if windows[g] else 10**9, windows[g])
        assert np.array_equal(got[fptr[g]:fptr[g + 1]], want)


def plain_overlap_groups(f, arc, start, latest, m0, span, nflows):
    """The step loop's grouping as it was written with numpy and scipy's connected components."""
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    first = np.ones(f.size, dtype=bool)
    first[1:] = arc[1:] != arc[:-1]
    seg = arc  # the arc's number in the pattern (its position among the arcs when every arc is listed)
    shifted = latest[f] - m0 + seg * span
    runmax = np.maximum.accumulate(shifted)
    leader_pos = np.maximum.accumulate(np.where(shifted >= runmax, np.arange(f.size), 0))
    overlap = ~first
    overlap[1:] &= (start[f[1:]] - m0 + seg[1:] * span) < runmax[:-1] * (1 + 1e-12)
    ks = np.flatnonzero(overlap)
    graph = coo_array((np.ones(ks.size), (f[ks], f[leader_pos[ks - 1]])), shape=(nflows, nflows))
    return connected_components(graph, directed=False)[1]


@pytest.mark.parametrize("seed", range(10))
def test_compiled_overlap_groups_label_as_connected_components_do(seed):
    from sim import eventclock

    rng = np.random.default_rng(seed)
    arc, flow, cap = random_flows(seed, int(rng.integers(2, 80)), 20, 0.5)
    nflows = int(flow.max()) + 1
    start = rng.choice([0.0, 1e-6, 2e-6, 8e-6], size=nflows)
    latest = start + rng.choice([5e-7, 3e-6, 1e-5], size=nflows)
    order = np.lexsort((start[flow], arc))
    m0 = min(float(start.min()), 0.0)
    span = float(latest.max() - m0) + 1.0
    f, a = flow[order].astype(np.int64), arc[order].astype(np.int64)
    got = eventclock.overlap_groups(f, a, start, latest, m0, span, nflows)
    assert np.array_equal(got, plain_overlap_groups(f, a, start, latest, m0, span, nflows))


@pytest.mark.parametrize("seed", range(6))
def test_overlap_groups_leave_out_arcs_that_one_flow_crosses(seed):
    """The step loop lists only the entries of arcs that several flows cross: the labels are those of
    every entry listed (an arc of one flow joins nothing)."""
    from sim import eventclock

    rng = np.random.default_rng(300 + seed)
    arc, flow, _ = random_flows(seed, int(rng.integers(5, 60)), 30, 0.7)
    _, arc = np.unique(arc, return_inverse=True)  # the pattern's arcs: every number 0..m-1 is crossed
    nflows = int(flow.max()) + 1
    start = rng.choice([0.0, 1e-6, 2e-6, 8e-6], size=nflows)
    latest = start + rng.choice([5e-7, 3e-6, 1e-5], size=nflows)
    order = np.lexsort((start[flow], arc))
    f, a = flow[order].astype(np.int64), arc[order].astype(np.int64)
    m0 = min(float(start.min()), 0.0)
    span = float(latest.max() - m0) + 1.0
    full = eventclock.overlap_groups(f, a, start, latest, m0, span, nflows)
    shared = np.bincount(a)[a] > 1
    assert not shared.all()  # some arcs carry one flow: the case under test
    part = eventclock.overlap_groups(f[shared], a[shared], start, latest, m0, span, nflows)
    assert np.array_equal(part, full)


def _uneven_step(spec: str, seed: int):
    """A pattern of random pairs on ``spec`` and starts and sizes drawn apart."""
    topo = topologies.from_spec(spec)
    net = Network(topo)
    rng = np.random.default_rng(seed)
    p = len(topologies.endpoints(topo))
    src = np.arange(p)
    dst = rng.permutation(p)
    keep = src != dst
    pat = net.compile(src[keep], dst[keep])
    n = int(keep.sum())
    return pat, rng.choice([0.0, 2e-6, 5e-6, 3e-5], size=n), rng.choice([4e3, 6e4, 1e6], size=n)


def listed_groups(pat, start, size):
    """The step's groups from every (arc, flow) entry, sorted with numpy (the grouping as first written)."""
    from sim import eventclock

    load = np.bincount(pat.indices, minlength=pat.cap.size)
    latest = start + size / np.minimum.reduceat((pat.cap / np.maximum(load, 1))[pat.indices], pat.indptr[:-1])
    order = np.lexsort((start[pat.rows], pat.indices))
    m0 = min(float(start.min()), 0.0)
    span = float(latest.max() - m0) + 1.0
    return eventclock.overlap_groups(pat.rows[order], pat.indices[order], start, latest, m0, span, start.size)


SPECS = ["dragonfly:groups=4,routers_per_group=4,hosts_per_router=2", "fat_tree:k=4", "torus:dims=4x4",
         "leaf_spine:leaves=4,spines=2,hosts_per_leaf=4,oversubscription=3"]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("seed", range(3))
def test_a_flow_alone_in_its_group_ends_as_its_own_event_loop_would(spec, seed):
    """A flow alone in its group gets its bottleneck's rate without an event loop: to the bit what the group
    event loop gives it."""
    import sim.flow

    pat, start, size = _uneven_step(spec, seed)
    comp = listed_groups(pat, start, size)
    alone = np.bincount(comp)[comp] == 1
    assert alone.any()
    every = sim.flow._grouped_events(pat, comp, start, size, np.arange(start.size))
    assert np.array_equal(np.where(alone, start + size / pat.static_rate, 0.0)[alone], every[alone])


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("seed", range(3))
def test_compiled_step_groups_equal_the_python_step(spec, seed):
    """``step_groups`` (grouping, lone flows and the groups' loops in one compiled call) against the same
    step put together in Python from every entry's grouping and ``_grouped_events``, to the bit."""
    import sim.flow

    pat, start, size = _uneven_step(spec, seed)
    comp = listed_groups(pat, start, size)
    counts = np.bincount(comp)
    assert counts.max() > 1  # some flows share a group
    alone = counts[comp] == 1
    want = np.where(alone, start + size / pat.static_rate, 0.0)
    rest = np.flatnonzero(~alone)
    want[rest] = sim.flow._grouped_events(pat, comp, start, size, rest)
    got, labels = pat._step_groups(start, size)
    assert np.array_equal(labels, comp)  # only the arcs several flows cross, sorted per arc: the same groups
    assert np.array_equal(got, want)
    assert np.array_equal(pat.run(start, size), want)


def test_compiled_step_groups_leave_a_large_group_to_the_budgeted_loop():
    """An incast larger than ``LARGE_GROUP`` is not run by ``step_groups`` (its event budget lives in Python)."""
    import sim.flow

    n = sim.flow.LARGE_GROUP + 8
    net = Network(topologies.from_spec(f"switch:n={n + 1}"))
    pat = net.compile(np.arange(1, n + 1), np.zeros(n, dtype=np.int64))  # every rank sends to rank 0
    start = np.linspace(0.0, 1e-6, n)
    size = np.full(n, 1e6)
    got, labels = pat._step_groups(start, size)
    assert got.size == 0 and np.array_equal(labels, np.zeros(n, dtype=np.int64))  # one group of them all
    end = pat.run(start, size)
    assert np.isfinite(end).all() and (end > start).all()
