"""Router.route_arcs (many routes at once, numpy) gives exactly the routes of Router.route."""

import itertools

import numpy as np
import pytest

import topologies
from topologies.routing import Router

GRAPHS = [
    (lambda: topologies.gpu_cluster(nodes=5, gpus_per_node=8), 4),
    (lambda: topologies.gpu_cluster(nodes=5, gpus_per_node=8), 6),
    (lambda: topologies.gpu_cluster(nodes=3, gpus_per_node=4, nics_per_node=2, fabric="fat_tree"), 2),
    (lambda: topologies.gpu_cluster(nodes=6, gpus_per_node=4, nodes_per_leaf=2), 3),
    (lambda: topologies.gpu_cluster(nodes=3, gpus_per_node=4, intra="pcie"), 2),
    (lambda: topologies.gpu_cluster(nodes=3, gpus_per_node=6, intra="nvlink", nics_per_node=3), 3),
    (lambda: topologies.fat_tree(4), 2),
    (lambda: topologies.leaf_spine(leaves=4, spines=2, hosts_per_leaf=3), 2),
    (lambda: topologies.ring(7), 1),
]


@pytest.mark.parametrize("policy", [None, "ecmp", "shortest", "dmodk"])
@pytest.mark.parametrize("case", range(len(GRAPHS)))
def test_route_arcs_equals_route(case, policy):
    build, degree = GRAPHS[case]
    G = build()

    class Hubs(Router):  # small graphs: lower the hub degree so that the batch walk runs
        HUB_DEGREE = degree

    fast, plain = Hubs(G, policy=policy), Router(G, policy=policy)
    p = len(fast.endpoints)
    pairs = np.array(list(itertools.product(range(p), range(p))))
    indptr, arcs = fast.route_arcs(pairs[:, 0], pairs[:, 1])
    edges = list(G.edges)
    for k, (i, j) in enumerate(pairs.tolist()):
        assert [edges[a] for a in arcs[indptr[k]:indptr[k + 1]]] == plain.route_ranks(i, j), (i, j)


def test_route_arcs_runs_batched_on_a_rail_cluster():
    G = topologies.gpu_cluster(nodes=10, gpus_per_node=8)

    class Hubs(Router):  # the rail switches (10 ports) are hubs, the NVSwitches (8) are not
        HUB_DEGREE = 8

    r = Hubs(G)
    src = np.arange(80)
    dst = (src + 9) % 80
    S, T = r._endpoint_index()[src], r._endpoint_index()[dst]
    r._batch_tables()
    done, _, _ = r._batch_walk(S, T, dst)
    assert done.all()  # no pair left to the one-by-one walk


def test_route_arcs_checks_input():
    r = Router(topologies.ring(4))
    with pytest.raises(ValueError, match="same length"):
        r.route_arcs([0, 1], [1])
    with pytest.raises(ValueError, match="out of range"):
        r.route_arcs([0], [4])
    indptr, arcs = r.route_arcs([], [])
    assert indptr.tolist() == [0] and arcs.size == 0


CORE_GRAPHS = [
    lambda: topologies.fat_tree(4),
    lambda: topologies.leaf_spine(leaves=4, spines=3, hosts_per_leaf=3),
    lambda: topologies.leaf_spine(leaves=4, spines=2, hosts_per_leaf=4, oversubscription=2),  # two bandwidths
    lambda: topologies.from_spec("dragonfly:groups=4,routers_per_group=3,hosts_per_router=2,global_bandwidth=50Gbps"),
    lambda: topologies.switch(5),
]


@pytest.mark.parametrize("policy", [None, "ecmp", "shortest", "dmodk"])
@pytest.mark.parametrize("case", range(len(CORE_GRAPHS)))
def test_route_arcs_between_switches_equals_route(case, policy):
    """Where every endpoint hangs off one switch and no node is a hub, the batch walks between
    switches on their all-pairs distances (``_core_walk``): every route as ``route`` gives it."""
    G = CORE_GRAPHS[case]()
    fast, plain = Router(G, policy=policy), Router(G, policy=policy)
    p = len(fast.endpoints)
    pairs = np.array(list(itertools.product(range(p), range(p))))
    indptr, arcs = fast.route_arcs(pairs[:, 0], pairs[:, 1])
    assert "core" in fast._batch
    S, T = fast._endpoint_index()[pairs[:, 0]], fast._endpoint_index()[pairs[:, 1]]
    assert fast._core_walk(S, T, pairs[:, 1])[0].all()  # no pair left to the one-by-one walk
    edges = list(G.edges)
    for k, (i, j) in enumerate(pairs.tolist()):
        assert [edges[a] for a in arcs[indptr[k]:indptr[k + 1]]] == plain.route_ranks(i, j), (i, j)


def test_route_arcs_between_switches_needs_single_homed_endpoints():
    assert Router(topologies.ring(6))._batch_tables() is None  # endpoints with two neighbours each
    assert Router(topologies.gpu_cluster(nodes=2, gpus_per_node=4))._batch_tables() is None  # GPUs: NVLink and NIC
