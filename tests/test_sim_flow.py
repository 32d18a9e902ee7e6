"""The flow model: max-min sharing, byte accounting, scale shortcuts and physical invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import sim.flow
import topologies
from collectives import ALGORITHMS, algorithm_params, get_schedule, verify
from collectives.algorithms import collectives_of
from sim.analytic import predict
from sim.flow import Network, _Clock, element_count, simulate
from sim.params import ModelParams

NOALPHA = ModelParams(alpha=0.0, gamma=0.0)
PARAMS = ModelParams(alpha=1e-6, gamma=1e-10)
BW = (1e9, 2e9, 5e9, 1e10)
LAT = (5e-7, 1e-6, 2e-6)
#: every (algorithm, collective) the registry generates
PAIRS = [(algorithm, collective) for algorithm in ALGORITHMS for collective in collectives_of(algorithm)]


def star(bandwidths, latencies=None, name="star"):
    """Hosts h0..h{n-1} on one switch, host i's link with its own bandwidth and latency."""
    n = len(bandwidths)
    G = topologies.new_topology(name, endpoints=[f"h{i}" for i in range(n)])
    G.add_nodes_from(G.graph["endpoints"], kind="host")
    G.add_node("s", kind="switch")
    for i, bw in enumerate(bandwidths):
        topologies.add_link(G, f"h{i}", "s", bw, (latencies or [1e-6] * n)[i])
    return G


def _schedule(collective, algorithm, p, nbytes=None, segments=None):
    params = {"segments": segments} if algorithm == "tree" and segments else algorithm_params(algorithm, p, nbytes)
    return get_schedule(collective, algorithm, p, **params)


# ---------------------------------------------------------------- max-min sharing, event by event


def test_two_flows_on_one_arc_share_it_equally():
    net = Network(star([1e9, 1e9, 1e9]), NOALPHA)
    pat = net.compile(np.array([0, 1]), np.array([2, 2]))  # both cross s -> h2
    end = pat.run(np.zeros(2), np.array([1e6, 1e6]))
    assert end == pytest.approx([2e-3, 2e-3], rel=1e-12)


def test_a_finished_flow_hands_its_share_on():
    net = Network(star([1e9, 1e9, 1e9]), NOALPHA)
    pat = net.compile(np.array([0, 1]), np.array([2, 2]))
    end = pat.run(np.zeros(2), np.array([1e6, 3e6]))
    # both at 0.5 GB/s until the small one ends at 2 ms; the big one has 2 MB left at 1 GB/s
    assert end == pytest.approx([2e-3, 4e-3], rel=1e-12)


def test_a_late_flow_takes_its_share_from_its_start():
    net = Network(star([1e9, 1e9, 1e9]), NOALPHA)
    pat = net.compile(np.array([0, 1]), np.array([2, 2]))
    end = pat.run(np.array([0.0, 1e-3]), np.array([2e6, 1e6]))
    # flow 0 alone for 1 ms (1 MB), then both at 0.5 GB/s: both have 1 MB left -> 2 ms more
    assert end == pytest.approx([3e-3, 3e-3], rel=1e-12)


def test_max_min_gives_a_bottlenecked_flows_spare_share_to_the_other():
    # h1's uplink is 0.25 GB/s; both flows share s -> h2 (1 GB/s): max-min gives 0.25 and 0.75
    net = Network(star([1e9, 0.25e9, 1e9]), NOALPHA)
    pat = net.compile(np.array([0, 1]), np.array([2, 2]))
    end = pat.run(np.zeros(2), np.array([0.75e6, 0.25e6]))
    assert end == pytest.approx([1e-3, 1e-3], rel=1e-12)


def test_max_min_can_slow_a_critical_flow_when_another_link_gets_faster():
    """Why "more bandwidth on one link is never slower" does not hold for max-min sharing.

    h1 and h3 both send to h2 over the switch's link to h2. Speeding up h1's own link gives h1's
    flow more of that shared link, so h3's flow, which arrives last because h3's link has the
    larger latency, gets slower, and so does the whole tree (a Braess-like effect of max-min
    fairness, not an error of the simulator). The property tests below therefore change one link
    only where flows of a step have links of their own, and otherwise scale every link.
    """
    lat = [5e-7, 5e-7, 5e-7, 1e-6, 5e-7, 5e-7]
    schedule = get_schedule("allreduce", "tree", 6, segments=1)
    before = simulate(schedule, Network(star([1e9, 1e9, 5e9, 5e9, 1e9, 1e9], lat), PARAMS), 4).time
    after = simulate(schedule, Network(star([1e9, 1.5e9, 5e9, 5e9, 1e9, 1e9], lat), PARAMS), 4).time
    assert after > before


# ---------------------------------------------------------------- accounting


@pytest.mark.parametrize(("algorithm", "collective"), PAIRS)
@pytest.mark.parametrize("p", [3, 6, 8])
def test_bytes_on_each_host_link_are_what_the_checker_counts(algorithm, collective, p):
    schedule = _schedule(collective, algorithm, p, segments=3)
    count = schedule.nchunks * 5 + (p if schedule.nblocks == 1 else 0) + 1
    count -= count % schedule.nblocks
    report = verify(schedule, count=count, itemsize=4)
    net = Network(star([1e9] * p), PARAMS)
    result = simulate(schedule, net, count * 4)
    arc_bytes = dict(zip(result.arcs, result.arc_bytes, strict=True))
    for r in range(p):
        assert arc_bytes[(f"h{r}", "s")] == report.bytes_sent[r]
        assert arc_bytes[("s", f"h{r}")] == report.bytes_received[r]
    assert (result.utilization <= 1 + 1e-9).all()
    assert result.bottlenecks and all(a in arc_bytes for a in result.bottlenecks)


@pytest.mark.parametrize("algorithm", ["ring", "recursive_halving", "recursive_doubling"])
@pytest.mark.parametrize("p", [4, 5, 16])
def test_on_a_switch_one_flow_per_host_link_is_the_analytic_model(algorithm, p):
    net = Network(topologies.switch(p, bandwidth=2e9, latency=1e-6), PARAMS)
    schedule = get_schedule("allreduce", algorithm, p)
    nbytes = schedule.nchunks * 4 * 1000
    assert simulate(schedule, net, nbytes).time == pytest.approx(predict(schedule, net, nbytes).time, rel=1e-9)


def test_lockstep_shortcut_matches_step_by_step_simulation():
    # equal chunks: ring steps are costed once and repeated; one element more: every step simulated
    net = Network(topologies.fat_tree(4), PARAMS)
    schedule = get_schedule("allreduce", "ring", 16)
    fast = simulate(schedule, net, 16 * 4 * 1000)
    slow = simulate(schedule, net, 16 * 4 * 1000 + 4)
    assert fast.time < slow.time < fast.time * (1 + 1e-3)


def test_zero_bytes_one_rank_and_too_many_ranks():
    net = Network(topologies.switch(4), PARAMS)
    assert simulate(get_schedule("allreduce", "ring", 4), net, 0).time == 0.0
    one = simulate(get_schedule("allreduce", "ring", 1), net, 1 << 20)
    assert one.time == 0.0 and one.algbw == 0.0 and one.busbw == 0.0
    with pytest.raises(ValueError, match="has 4 endpoints; cannot place 5 ranks"):
        simulate(get_schedule("allreduce", "ring", 5), net, 1024)
    with pytest.raises(ValueError, match="size must be a non-negative"):
        simulate(get_schedule("allreduce", "ring", 4), net, -1)


def test_reduce_scatter_size_is_rounded_to_whole_blocks():
    net = Network(topologies.switch(4), PARAMS)
    r = simulate(get_schedule("reduce_scatter", "ring", 3), net, 4 * 100)  # 100 elements -> 99
    assert (r.count, r.nbytes) == (99, 396)


def test_link_classes_override_bandwidth_by_role():
    G = topologies.from_spec("gpu_cluster:nodes=2")
    roles = {d.get("role") for *_, d in G.edges(data=True)}
    assert "nvlink" in roles
    slow = ModelParams(alpha=0, gamma=0, link_classes={"nvlink": {"bandwidth_efficiency": 0.1}})
    base, slowed = Network(G, ModelParams(alpha=0, gamma=0)), Network(G, slow)
    nv = [i for i, (*_, d) in enumerate(G.edges(data=True)) if d.get("role") == "nvlink"]
    other = [i for i, (*_, d) in enumerate(G.edges(data=True)) if d.get("role") != "nvlink"]
    assert slowed.capacity[nv] == pytest.approx(0.1 * base.capacity[nv])
    assert slowed.capacity[other] == pytest.approx(base.capacity[other])


# ---------------------------------------------------------------- properties on random small topologies


@st.composite
def switched(draw):
    """A random tree of 1-3 switches with 2-6 hosts hanging off them, random links."""
    p, ns = draw(st.integers(2, 6)), draw(st.integers(1, 3))
    G = topologies.new_topology("random", endpoints=[f"h{i}" for i in range(p)])
    G.add_nodes_from(G.graph["endpoints"], kind="host")
    G.add_nodes_from([f"s{j}" for j in range(ns)], kind="switch")
    for j in range(1, ns):
        topologies.add_link(G, f"s{j}", f"s{draw(st.integers(0, j - 1))}", draw(st.sampled_from(BW)), draw(st.sampled_from(LAT)))
    for i in range(p):
        topologies.add_link(G, f"h{i}", f"s{draw(st.integers(0, ns - 1))}", draw(st.sampled_from(BW)), draw(st.sampled_from(LAT)))
    return G


@st.composite
def fully_connected(draw):
    """A fully connected network whose arcs each get a random bandwidth, and one latency for all, so that
    every pair's route is its own link (with unequal latencies a two-hop route can be shorter, and
    then flows share its first link)."""
    G = topologies.fully_connected(draw(st.integers(2, 7)))
    latency = draw(st.sampled_from(LAT))
    for u, v in G.edges:
        G.edges[u, v]["bandwidth"] = draw(st.sampled_from(BW))
        G.edges[u, v]["latency"] = latency
    return G


cases = dict(
    pair=st.sampled_from(PAIRS),
    nbytes=st.integers(0, 1 << 22),
    segments=st.integers(1, 4),
)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(G=switched(), factor=st.sampled_from([1.5, 2.0, 10.0]), **cases)
def test_a_faster_network_is_never_slower(G, factor, pair, nbytes, segments):
    algorithm, collective = pair
    schedule = _schedule(collective, algorithm, len(G.graph["endpoints"]), segments=segments)
    before = simulate(schedule, Network(G, PARAMS), nbytes).time
    H = G.copy()
    for u, v in H.edges:
        H.edges[u, v]["bandwidth"] *= factor
    assert simulate(schedule, Network(H, PARAMS), nbytes).time <= before * (1 + 1e-9)


def _time_and_clock(schedule, net, nbytes):
    """The simulated time, and whether flows of different steps met (the event clock across steps ran)."""
    ran = []
    run = sim.flow._Clock.run

    def counted(self):
        ran.append(1)
        return run(self)

    sim.flow._Clock.run = counted
    try:
        return simulate(schedule, net, nbytes).time, bool(ran)
    finally:
        sim.flow._Clock.run = run


@PROPERTY
@given(G=fully_connected(), arc=st.integers(0, 10_000), factor=st.sampled_from([1.5, 2.0, 10.0]), **cases)
def test_more_bandwidth_on_any_link_is_never_slower(G, arc, factor, pair, nbytes, segments):
    """On a fully connected network with one latency a step's flows have links of their own. Where ranks
    drift so that flows of different steps meet on a link, they share it, and max-min sharing is not
    monotone (``test_max_min_can_slow_a_critical_flow_when_another_link_gets_faster``): those runs are
    left out here."""
    algorithm, collective = pair
    schedule = _schedule(collective, algorithm, len(G.graph["endpoints"]), segments=segments)
    before, met = _time_and_clock(schedule, Network(G, PARAMS), nbytes)
    H = G.copy()
    u, v = list(H.edges)[arc % H.number_of_edges()]
    H.edges[u, v]["bandwidth"] *= factor
    after, met_after = _time_and_clock(schedule, Network(H, PARAMS), nbytes)
    assume(not (met or met_after))
    assert after <= before * (1 + 1e-9)


@PROPERTY
@given(G=switched(), sizes=st.lists(st.integers(0, 1 << 22), min_size=2, max_size=4), **cases)
def test_time_never_decreases_with_size(G, sizes, pair, nbytes, segments):
    algorithm, collective = pair
    p = len(G.graph["endpoints"])
    net = Network(G, PARAMS)
    times = [simulate(_schedule(collective, algorithm, p, segments=segments), net, n).time for n in sorted(sizes + [nbytes])]
    assert all(a <= b * (1 + 1e-9) for a, b in zip(times, times[1:], strict=False))


def _host_bound(G, schedule, result):
    """Lower bound on the time from the bytes each rank must push through its own host link.

    The bytes come from the checker (the schedule), not from the model: rank r's sends all leave
    through its uplink and its receives all arrive through its downlink.
    """
    report = verify(schedule, count=result.count, itemsize=result.itemsize)
    switch_of = [next(iter(G.succ[h])) for h in G.graph["endpoints"]]
    up = np.array([G.edges[h, s]["bandwidth"] for h, s in zip(G.graph["endpoints"], switch_of, strict=True)])
    down = np.array([G.edges[s, h]["bandwidth"] for h, s in zip(G.graph["endpoints"], switch_of, strict=True)])
    return max((report.bytes_sent / up).max(), (report.bytes_received / down).max()), up, down


@PROPERTY
@given(G=switched(), **cases)
def test_never_faster_than_the_host_links_allow(G, pair, nbytes, segments):
    algorithm, collective = pair
    # With unequal host links an algorithm may give a slow host less to move (a tree leaf sends
    # n/2 per tree), so busbw can exceed the slowest link's bandwidth; the bound is per rank.
    p = len(G.graph["endpoints"])
    schedule = _schedule(collective, algorithm, p, segments=segments)
    result = simulate(schedule, Network(G, PARAMS), nbytes)
    bound, up, down = _host_bound(G, schedule, result)
    assert result.time >= bound * (1 - 1e-9)
    # flows of all steps share every arc, so no arc carries more than its capacity allows
    assert (result.utilization <= 1 + 1e-9).all()


def _one_clock(schedule, net, nbytes):
    """Time, per-rank finish and arc bytes with every step on the event clock (no step loop)."""
    count = element_count(schedule, nbytes, 4)
    clock = _Clock(schedule, net, schedule.chunk_offsets(count) * 4, {}, 0, np.zeros(schedule.nranks),
                   net.params.eager_threshold, resync=False)
    clock.run()
    return clock.ready, clock.arc_bytes()


@PROPERTY
@given(G=switched(), eager=st.sampled_from([0, 1 << 12, 1 << 22]), **cases)
def test_the_step_loop_is_the_event_clock_where_it_runs(G, eager, pair, nbytes, segments):
    """The step loop (with its lock-step shortcuts) hands over to the event clock whenever flows of
    different steps would meet, so with or without it the answer is the same."""
    algorithm, collective = pair
    schedule = _schedule(collective, algorithm, len(G.graph["endpoints"]), segments=segments)
    net = Network(G, PARAMS.replace(eager_threshold=eager))
    result = simulate(schedule, net, nbytes)
    finish, arc_bytes = _one_clock(schedule, net, nbytes)
    assert result.finish == pytest.approx(finish, rel=1e-9, abs=1e-15)
    assert result.arc_bytes == pytest.approx(arc_bytes, rel=1e-12)


@pytest.mark.parametrize("segments", [1, 4])
@pytest.mark.parametrize(("algorithm", "collective"), PAIRS)
@pytest.mark.parametrize("p", [2, 3, 4, 5, 8])
def test_busbw_never_exceeds_equal_host_links(p, algorithm, collective, segments):
    """The nccl-tests reading: with equal host links, busbw never exceeds the link bandwidth."""
    G = star([2e9] * p)
    schedule = _schedule(collective, algorithm, p, segments=segments)
    result = simulate(schedule, Network(G, PARAMS), 3 << 20)
    assert result.busbw * 1e9 <= 2e9 * (1 + 1e-9)
    assert result.time >= _host_bound(G, schedule, result)[0] * (1 - 1e-9)
