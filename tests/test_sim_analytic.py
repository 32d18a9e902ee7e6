"""The closed-form model against the flow model on a uniform fully connected network, and the textbook forms."""

from __future__ import annotations

import math

import pytest

import topologies
from collectives import ALGORITHMS, COLLECTIVES, get_schedule
from collectives.algorithms import collectives_of
from sim.analytic import cost, predict
from sim.flow import Network, simulate
from sim.params import ModelParams

PARAMS = ModelParams(alpha=4e-6, gamma=2e-10, bandwidth_efficiency=0.8)
BANDWIDTH, LATENCY = 3e9, 1.3e-6


def uniform(p: int) -> Network:
    return Network(topologies.fully_connected(p, bandwidth=BANDWIDTH, latency=LATENCY), PARAMS)


def _segments(algorithm):
    return [1, 2, 5] if algorithm == "tree" else [None]


CASES = [
    (p, algorithm, collective, segments)
    for p in (1, 2, 3, 4, 5, 6, 7, 8, 13)
    for algorithm in ALGORITHMS
    for collective in COLLECTIVES
    if collective in collectives_of(algorithm)
    for segments in _segments(algorithm)
]


@pytest.mark.parametrize("p, algorithm, collective, segments", CASES)
@pytest.mark.parametrize("chunk_elements", [3, 4096])
def test_flow_equals_analytic_on_uniform_fully_connected(p, algorithm, collective, segments, chunk_elements):
    net = uniform(p)
    schedule = get_schedule(collective, algorithm, p, **({"segments": segments} if segments else {}))
    nbytes = schedule.nchunks * chunk_elements * 4  # equal chunks
    flow = simulate(schedule, net, nbytes)
    analytic = predict(schedule, net, nbytes)
    assert flow.nbytes == analytic.nbytes == nbytes
    assert flow.time == pytest.approx(analytic.time, rel=1e-9, abs=0)
    if p > 1:
        assert flow.time > 0


def _c(b, reduce=False, alpha=4e-6, L=LATENCY, bw=BANDWIDTH * 0.8, gamma=2e-10):
    return alpha + L + b / bw + (gamma * b if reduce else 0.0)


@pytest.mark.parametrize("p", [2, 3, 5, 8, 16])
def test_ring_is_the_textbook_formula(p):
    n, a, b, g = 1 << 20, 4e-6 + LATENCY, 1 / (BANDWIDTH * 0.8), 2e-10
    expected = 2 * (p - 1) * a + 2 * (p - 1) / p * n * b + (p - 1) / p * n * g
    got = cost("allreduce", "ring", p, n, bandwidth=BANDWIDTH * 0.8, latency=LATENCY, alpha=4e-6, gamma=2e-10)
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("p", [2, 4, 8, 64])
def test_power_of_two_recursive_forms(p):
    n, a, b, g = 1 << 20, 4e-6 + LATENCY, 1 / (BANDWIDTH * 0.8), 2e-10
    lg = math.log2(p)
    kw = dict(bandwidth=BANDWIDTH * 0.8, latency=LATENCY, alpha=4e-6, gamma=2e-10)
    rabenseifner = 2 * lg * a + 2 * (p - 1) / p * n * b + (p - 1) / p * n * g
    assert cost("allreduce", "recursive_halving", p, n, **kw) == pytest.approx(rabenseifner, rel=1e-12)
    assert cost("allreduce", "recursive_doubling", p, n, **kw) == pytest.approx(lg * (a + n * b + n * g), rel=1e-12)
    assert cost("allgather", "recursive_doubling", p, n, **kw) == pytest.approx(lg * a + (p - 1) / p * n * b, rel=1e-12)


@pytest.mark.parametrize("p", [3, 5, 6, 7, 12])
def test_non_power_of_two_rabenseifner_adds_fold_and_unfold(p):
    n = 1 << 20
    P = 1 << (p.bit_length() - 1)
    k = P.bit_length() - 1
    expected = _c(n, True) + sum(_c(m * n / P, True) + _c(m * n / P) for m in (1 << i for i in range(k))) + _c(n)
    got = cost("allreduce", "recursive_halving", p, n, bandwidth=BANDWIDTH * 0.8, latency=LATENCY, alpha=4e-6, gamma=2e-10)
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("p, segments", [(2, 1), (8, 4), (13, 3), (64, 16)])
def test_tree_is_a_pipeline_of_segments(p, segments):
    n = 1 << 22
    s = n / (2 * segments)
    up = get_schedule("reduce_scatter", "tree", p, segments=segments).nsteps
    down = get_schedule("allgather", "tree", p, segments=segments).nsteps
    assert up == segments + (up - segments) and down >= segments
    got = cost("allreduce", "tree", p, n, bandwidth=BANDWIDTH * 0.8, latency=LATENCY, alpha=4e-6, gamma=2e-10, segments=segments)
    assert got == pytest.approx(up * _c(s, True) + down * _c(s), rel=1e-12)


def test_trivial_and_bad_inputs():
    assert cost("allreduce", "ring", 1, 1 << 20, bandwidth=1e9, latency=1e-6) == 0.0
    assert cost("allreduce", "ring", 8, 0, bandwidth=1e9, latency=1e-6) == 0.0
    with pytest.raises(ValueError, match="unknown algorithm 'nope'"):
        cost("allreduce", "nope", 4, 1, bandwidth=1e9, latency=0)
    with pytest.raises(ValueError, match="unknown collective"):
        cost("broadcast", "ring", 4, 1, bandwidth=1e9, latency=0)
    with pytest.raises(ValueError, match="bandwidth"):
        cost("allreduce", "ring", 4, 1, bandwidth=0, latency=0)


def test_route_link_sees_only_the_links_the_schedule_crosses():
    """On one GPU node the ring crosses NVLink (450 GB/s), not the NICs (50 GB/s) uniform_link would take."""
    from sim.analytic import route_link, uniform_link

    net = Network(topologies.gpu_cluster(nodes=1, gpus_per_node=4), ModelParams(alpha=0, gamma=0))
    bandwidth, latency = route_link(net, get_schedule("allreduce", "ring", 4))
    assert bandwidth == 450e9 and latency == pytest.approx(1e-6)  # two NVLink hops of 0.5 us
    assert uniform_link(net, 4)[0] == 50e9


@pytest.mark.parametrize("algorithm", ["ring", "tree", "hierarchical"])
def test_layout_schedules_are_walked_and_agree_with_flow_where_links_are_not_shared(algorithm):
    """Ring/tree with channels and hierarchical have no closed form: the analytic model walks their steps."""
    from collectives import algorithm_params
    from collectives.layout import Layout

    p = 8
    layout = Layout.regular(2, 4, nics_per_node=2)
    schedule = get_schedule("allreduce", algorithm, p, **algorithm_params(algorithm, p, 1 << 22, layout=layout))
    assert {"channels", "layout"} & set(schedule.params)
    net = uniform(p)
    nbytes = schedule.nchunks * 1024 * 4
    assert predict(schedule, net, nbytes).time == pytest.approx(simulate(schedule, net, nbytes).time, rel=1e-9)
