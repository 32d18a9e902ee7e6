"""Duplex efficiency: an arc shares its link with the opposite direction only where a parameter says so."""

from __future__ import annotations

import pytest

import topologies
from collectives.algorithms import get_schedule
from sim.flow import Network, simulate
from sim.params import ModelParams

BW = 1e9
SIZE = 8 << 20


def _time(G, algorithm, nranks, **params):
    net = Network(G, ModelParams(alpha=0.0, gamma=0.0, bandwidth_efficiency=1.0, **params))
    return simulate(get_schedule("allreduce", algorithm, nranks), net, SIZE).time


@pytest.mark.parametrize("duplex", [0.5, 0.8])
def test_an_exchange_pays_the_duplex_share_and_a_one_way_ring_does_not(duplex):
    # recursive doubling on 2 ranks: one step, both directions of the one link at once
    line = topologies.line(2, bandwidth=BW, latency=0.0)
    full = _time(line, "recursive_doubling", 2)
    assert full == pytest.approx(SIZE / BW)
    assert _time(line, "recursive_doubling", 2, duplex_efficiency=duplex) == pytest.approx(SIZE / (BW * duplex))
    # the ring on a ring of 5 point-to-point links sends one way round: no arc has its opposite busy
    ring = topologies.ring(5, bandwidth=BW, latency=0.0)
    assert _time(ring, "ring", 5, duplex_efficiency=duplex) == pytest.approx(_time(ring, "ring", 5))


def test_per_link_class_and_exact_factor_on_a_switch():
    """On a switch every ring step loads each host link both ways (send to the next, receive from the previous)."""
    G = topologies.switch(4, bandwidth=BW, latency=0.0)
    base = _time(G, "ring", 4)
    assert _time(G, "ring", 4, duplex_efficiency=0.5) == pytest.approx(2 * base)
    # a class override replaces the global factor for its arcs: the network links of 2 machines
    C = topologies.cluster(2, 2, 2, bandwidth=BW, intra_bandwidth=8 * BW)
    base = _time(C, "recursive_doubling", 4)
    assert _time(C, "recursive_doubling", 4, duplex_efficiency=0.5,
                 link_classes={"network": {"duplex_efficiency": 1.0}, "intra": {"duplex_efficiency": 1.0}}) == pytest.approx(base)
    assert _time(C, "recursive_doubling", 4, link_classes={"network": {"duplex_efficiency": 0.5}}) > 1.5 * base


def test_two_nics_per_node_flat_ring_against_two_channels():
    """2 machines x 2 ranks, a NIC per rank: the flat ring crosses each NIC one way, the two-channel ring both ways."""
    G = topologies.cluster(2, 2, 2, bandwidth=2.5e6, intra_bandwidth=20e6)
    from collectives.algorithms.ring import allreduce as ring_allreduce
    from sim.layout import layout_of

    layout = layout_of(G)
    flat, two = ring_allreduce(4, layout, channels=1), ring_allreduce(4, layout, channels=2)

    def t(schedule, duplex):
        net = Network(G, ModelParams(alpha=0.0, gamma=0.0, bandwidth_efficiency=1.0, duplex_efficiency=duplex))
        return simulate(schedule, net, 1 << 20).time

    assert t(flat, 0.8) == pytest.approx(t(flat, 1.0))
    assert t(two, 0.8) == pytest.approx(t(two, 1.0) / 0.8, rel=0.02)


def test_the_parameter_is_checked_and_kept():
    with pytest.raises(ValueError, match="duplex_efficiency must be in"):
        ModelParams(duplex_efficiency=1.5)
    with pytest.raises(ValueError, match="duplex_efficiency"):
        ModelParams(link_classes={"network": {"duplex_efficiency": 0}})
    p = ModelParams(alpha=1e-6, duplex_efficiency=0.9, link_classes={"network": {"duplex_efficiency": 0.7}})
    assert ModelParams.from_json(p.to_json()) == p
    assert p.duplex_factor("network") == 0.7 and p.duplex_factor("intra") == 0.9 and p.has_duplex
    assert not ModelParams().has_duplex and "duplex_efficiency" not in ModelParams().to_json()


@pytest.mark.parametrize("algorithm", ["ring", "recursive_doubling", "recursive_halving"])
def test_analytic_and_flow_agree_with_a_duplex_share(algorithm):
    """On a switch the analytic walk and the flow model see the same duplex share (no contention beyond it)."""
    from sim.analytic import predict

    G = topologies.switch(4, bandwidth=BW, latency=1e-6)
    net = Network(G, ModelParams(alpha=1e-5, gamma=0.0, bandwidth_efficiency=0.9, duplex_efficiency=0.7))
    schedule = get_schedule("allreduce", algorithm, 4)
    flow = simulate(schedule, net, SIZE).time
    assert predict(schedule, net, SIZE).time == pytest.approx(flow, rel=1e-9)
    plain = Network(G, ModelParams(alpha=1e-5, gamma=0.0, bandwidth_efficiency=0.9))
    assert predict(schedule, plain, SIZE).time < 0.8 * flow
