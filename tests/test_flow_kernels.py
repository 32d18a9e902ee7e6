"""The flow model's inner kernels against plain versions of themselves, and what its caches share.

The event clock's max-min rates (``_maxmin``) fold the arcs that one flow alone crosses into a
bound per flow (on large calls: ``FOLD_ENTRIES``), and its re-rating search (``_rerate``) follows only arcs that flows share after its
first round. Both are shortcuts that must change nothing: the plain versions below are the
textbook progressive filling and the search over every arc, and the results must be equal to the
last bit.
"""

from __future__ import annotations

import numpy as np
import pytest

import topologies
from sim.flow import RERATE_HOPS, Network, _maxmin, _rerate

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


def plain_rerate(arc, flow, cap, rate, changed):
    """The search over every arc: flows on marked arcs, then all their arcs, RERATE_HOPS rounds."""
    marked = np.zeros(cap.size, dtype=bool)
    marked[np.concatenate(changed)] = True
    mine = np.zeros(rate.shape[0], dtype=bool)
    for _ in range(RERATE_HOPS):
        grow = marked[arc] & ~mine[flow]
        if not grow.any():
            break
        mine[flow[grow]] = True
        more = mine[flow] & ~marked[arc]
        if not more.any():
            break
        marked[arc[more]] = True
    else:
        mine[:] = True
    out = rate.copy()
    on = mine[flow]
    if on.any():
        plain_maxmin(arc[on], flow[on], cap, out)
    return out


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


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(("nflows", "narcs", "private"), [(1, 1, 0.0), (5, 3, 1.0), (40, 25, 0.6), (300, 60, 0.9),
                                                         (7, 200, 0.3)])
def test_maxmin_equals_plain_progressive_filling(seed, nflows, narcs, private, fold, monkeypatch):
    import sim.flow

    monkeypatch.setattr(sim.flow, "FOLD_ENTRIES", 0 if fold else 10**9)
    arc, flow, cap = random_flows(seed, nflows, narcs, private)
    want = np.full(nflows, np.nan)
    plain_maxmin(arc, flow, cap, want)
    got = np.full(nflows, np.nan)
    _maxmin(arc, flow, cap, got)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(("nflows", "narcs"), [(30, 40), (200, 50), (12, 400)])
def test_rerate_equals_the_search_over_every_arc(seed, nflows, narcs, monkeypatch):
    import sim.flow

    monkeypatch.setattr(sim.flow, "FOLD_ENTRIES", 0)
    arc, flow, cap = random_flows(seed, nflows, narcs, 0.7)
    rng = np.random.default_rng(1000 + seed)
    rate = np.full(nflows, np.nan)
    plain_maxmin(arc, flow, cap, rate)
    rate *= rng.uniform(0.5, 1.5, size=nflows)  # stale rates: the ones left alone must stay as they are
    changed = [rng.choice(cap.size, size=int(rng.integers(1, 4)), replace=False)]
    want = plain_rerate(arc, flow, cap, rate, changed)
    assert np.array_equal(_rerate(arc, flow, cap, rate, changed), want)
    load = np.bincount(arc, minlength=cap.size)
    assert np.array_equal(_rerate(arc, flow, cap, rate, changed, load), want)


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
