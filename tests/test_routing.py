"""Router: shortest paths, deterministic ECMP spread, caching, rank routing, errors."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from topologies import Router, TopologyError, from_spec


def assert_is_route(G, route, src, dst):
    """Consecutive arcs of G from src to dst, visiting no node twice."""
    assert route[0][0] == src and route[-1][1] == dst
    for (_, b), (c, _) in zip(route[:-1], route[1:], strict=True):
        assert b == c
    for arc in route:
        assert G.has_edge(*arc)
    nodes = [src] + [v for _, v in route]
    assert len(set(nodes)) == len(nodes)


SPECS = [
    "ring:n=7",
    "line:n=5",
    "switch:n=6",
    "fully_connected:n=5",
    "torus:dims=3x5",
    "mesh:dims=3x4",
    "hypercube:d=4",
    "fat_tree:k=4",
    "leaf_spine:leaves=3,spines=2,hosts_per_leaf=3",
    "dragonfly:groups=5,routers_per_group=2,hosts_per_router=1",
    "gpu_cluster:nodes=3,gpus_per_node=4",
    "gpu_cluster:nodes=2,gpus_per_node=3,fabric=single,intra=nvlink",
]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("weight", ["hops", "latency"])
def test_routes_are_shortest_paths(spec, weight):
    G = from_spec(spec)
    router = Router(G, weight=weight)
    eps = G.graph["endpoints"]
    if weight == "hops":
        dist = dict(nx.all_pairs_shortest_path_length(G))
    else:
        dist = dict(nx.all_pairs_dijkstra_path_length(G, weight="latency"))
    for s in eps:
        for t in eps:
            route = router.route(s, t)
            if s == t:
                assert route == []
                continue
            assert_is_route(G, route, s, t)
            cost = len(route) if weight == "hops" else sum(G.edges[a]["latency"] for a in route)
            assert cost == pytest.approx(dist[s][t], rel=1e-9)


def test_latency_weight_prefers_fast_links_and_then_fewer_hops():
    G = topologies.new_topology("tri", endpoints=["a", "b"])
    G.add_nodes_from("abc", kind="host")
    topologies.add_link(G, "a", "b", 1e9, 5e-6)  # direct but slow
    topologies.add_link(G, "a", "c", 1e9, 1e-6)
    topologies.add_link(G, "c", "b", 1e9, 1e-6)
    assert Router(G).route("a", "b") == [("a", "c"), ("c", "b")]
    assert Router(G, weight="hops").route("a", "b") == [("a", "b")]
    assert Router(G).latency("a", "b") == pytest.approx(2e-6)
    G.edges["a", "b"]["latency"] = G.edges["b", "a"]["latency"] = 2e-6  # tie in latency: fewer hops win
    assert Router(G).route("a", "b") == [("a", "b")]


def test_zero_latency_links_route():
    G = topologies.ring(6, latency=0.0)
    route = Router(G).route("h0", "h3")
    assert len(route) == 3


def test_ecmp_spreads_fat_tree_flows_over_all_cores():
    G = topologies.fat_tree(4)
    router = Router(G, policy="ecmp")
    eps = G.graph["endpoints"]
    cores = Counter()
    uplinks = Counter()
    for s in eps:
        for t in eps:
            if int(s[1:]) // 4 != int(t[1:]) // 4:  # hosts of different pods
                route = router.route(s, t)
                assert len(route) == 6
                cores[route[2][1]] += 1
                uplinks[route[1]] += 1
    assert set(cores) == {f"core{i}" for i in range(4)}
    # 192 inter-pod flows over 4 cores: each core carries a fair share (hashing is not perfect)
    assert min(cores.values()) >= 192 // 4 // 2
    assert len(uplinks) == 16  # every edge->agg uplink is used


def test_ecmp_spreads_leaf_spine_flows_over_spines():
    G = from_spec("leaf_spine:leaves=2,spines=4,hosts_per_leaf=8")
    router = Router(G, policy="ecmp")
    spines = Counter(router.route(f"h{i}", f"h{8 + j}")[1][1] for i in range(8) for j in range(8))
    assert set(spines) == {f"spine{s}" for s in range(4)} and min(spines.values()) >= 4


def test_one_flow_one_path_and_deterministic_across_routers():
    G = topologies.fat_tree(6)
    a, b = Router(G, policy="ecmp"), Router(topologies.fat_tree(6), policy="ecmp")
    eps = G.graph["endpoints"]
    pairs = [(eps[i], eps[(i * 7 + 11) % len(eps)]) for i in range(len(eps))]
    assert [a.route(s, t) for s, t in pairs] == [b.route(s, t) for s, t in pairs]
    assert a.route(*pairs[0]) == a.route(*pairs[0])


def test_routes_are_the_same_in_another_process():
    G = topologies.fat_tree(4)
    here = Router(G).route_ranks(0, 13)
    code = "import topologies; print(topologies.Router(topologies.fat_tree(4)).route_ranks(0, 13))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(here)


def test_route_returns_a_copy_of_the_cached_route():
    router = Router(topologies.ring(5))
    r = router.route("h0", "h2")
    r.clear()
    assert router.route("h0", "h2") == [("h0", "h1"), ("h1", "h2")]


def test_route_ranks_maps_through_endpoints():
    G = topologies.gpu_cluster(2, 4)
    router = Router(G)
    assert router.route_ranks(0, 5) == router.route("n0_gpu0", "n1_gpu1")
    assert router.route_ranks(1, 2) == [("n0_gpu1", "n0_nvswitch"), ("n0_nvswitch", "n0_gpu2")]
    assert router.route_ranks(3, 3) == []


def test_gpu_rail_route_crosses_one_rail():
    G = topologies.gpu_cluster(2, 8)
    route = Router(G).route_ranks(1, 8 + 5)  # GPU 1 of server 0 to GPU 5 of server 1
    rails = [v for _, v in route if v.startswith("rail")]
    assert len(rails) == 1 and rails[0] in ("rail1", "rail5")
    assert any(v.endswith("nvswitch") for _, v in route)


@pytest.mark.parametrize("i, j", [(-1, 0), (0, 16), (1.0, 2), (True, 1)])
def test_route_ranks_bad_rank(i, j):
    with pytest.raises(ValueError, match="out of range: topology 'fat_tree:k=4' has ranks 0..15"):
        Router(topologies.fat_tree(4)).route_ranks(i, j)


def test_unknown_node_and_weight():
    router = Router(topologies.ring(3))
    with pytest.raises(ValueError, match="dst 'x' is not a node of topology 'ring:n=3'"):
        router.route("h0", "x")
    with pytest.raises(ValueError, match="weight must be one of: latency, hops"):
        Router(topologies.ring(3), weight="bandwidth")


def test_unreachable_non_endpoint_raises_topology_error():
    G = topologies.ring(3)
    G.add_nodes_from(["s", "t"], kind="switch")
    topologies.add_link(G, "s", "t", 1e9, 0.0)
    with pytest.raises(TopologyError, match="no path from 'h0' to 's'"):
        Router(G).route("h0", "s")


def test_invalid_topology_rejected():
    G = topologies.ring(3)
    G.edges["h0", "h1"]["bandwidth"] = 0
    with pytest.raises(TopologyError):
        Router(G)


def test_fat_tree_k16_ring_neighbours_fast_enough():
    # A smaller cousin of the benchmark (benchmarks/topology_speed.py runs k=32): 1024 hosts.
    import time

    start = time.perf_counter()
    G = topologies.fat_tree(16)
    router = Router(G)
    n = len(G.graph["endpoints"])
    routes = [router.route_ranks(i, (i + 1) % n) for i in range(n)]
    elapsed = time.perf_counter() - start
    assert Counter(len(r) for r in routes) == {2: 1024 - 128, 4: 128 - 16, 6: 16}
    assert elapsed < 10  # generous: shared 2-core CI; the k=32 figure lives in the benchmark


# --- property: random connected graphs with random latencies and equal-cost ties -----------------


@st.composite
def random_topologies(draw):
    n = draw(st.integers(2, 14))
    seed = draw(st.integers(0, 2**16))
    p = draw(st.floats(0.1, 0.6))
    U = nx.gnp_random_graph(n, p, seed=seed)
    # connect the components in a chain, so every node reaches every other
    comps = [sorted(c) for c in nx.connected_components(U)]
    for a, b in zip(comps[:-1], comps[1:], strict=True):
        U.add_edge(a[0], b[0])
    # latencies from a small set so that equal-cost paths are common; some zero
    lats = draw(
        st.lists(
            st.sampled_from([0.0, 1e-6, 2e-6, 3e-6]),
            min_size=U.number_of_edges(),
            max_size=U.number_of_edges(),
        )
    )
    for (u, v), lat in zip(U.edges, lats, strict=True):
        U.edges[u, v]["latency"] = lat
    U.add_nodes_from(U, kind="host")
    return topologies.as_topology(U, name="random")


@settings(max_examples=60, deadline=None)
@given(
    G=random_topologies(), weight=st.sampled_from(["latency", "hops"]), budget=st.sampled_from([0, 8, 256])
)
def test_random_graph_routes_are_shortest(G, weight, budget):
    router = Router(G, weight=weight)
    router.LOCAL_BUDGET = budget  # 0: scipy only; small: both searches
    for s in G:
        if weight == "hops":
            dist = nx.single_source_shortest_path_length(G.reverse(copy=False), s)
        else:
            dist = nx.single_source_dijkstra_path_length(G.reverse(copy=False), s, weight="latency")
        for t in G:
            route = router.route(t, s)
            if s == t:
                assert route == []
                continue
            assert_is_route(G, route, t, s)
            cost = len(route) if weight == "hops" else sum(G.edges[a]["latency"] for a in route)
            assert cost == pytest.approx(dist[t], abs=1e-12)
            assert route == Router(G, weight=weight).route(t, s)  # deterministic


@pytest.mark.parametrize(
    "spec",
    [
        "torus:dims=5x6,routing=ecmp",
        "fat_tree:k=4",
        "fat_tree:k=4,routing=ecmp",
        "dragonfly:groups=5,routers_per_group=3,hosts_per_router=2",
        "gpu_cluster:nodes=3,gpus_per_node=4",
        "gpu_cluster:nodes=3,gpus_per_node=4,nics_per_node=2,routing=ecmp",
        "hypercube:d=5",
    ],
)
def test_route_does_not_depend_on_search_or_request_order(spec):
    # The small Python search, scipy's limited Dijkstra and the full one must pick the same path,
    # whatever was asked before (the caches hold different things in each case).
    G = from_spec(spec)
    eps = G.graph["endpoints"]
    pairs = [(s, t) for s in eps for t in eps]
    python_first = Router(G)
    python_first.LOCAL_BUDGET = 10**9
    scipy_only = Router(G)
    scipy_only.LOCAL_BUDGET = 0
    backwards = Router(G)
    expected = [python_first.route(s, t) for s, t in pairs]
    assert [scipy_only.route(s, t) for s, t in pairs] == expected
    assert [backwards.route(s, t) for s, t in reversed(pairs)][::-1] == expected


def test_pxn_cross_rail_leaves_through_the_destination_rail():
    """Between servers, a GPU reaches a GPU on another rail over NVLink first (NCCL's PXN), so the
    flows 0->9 and 1->10 of neighbouring channels use different rails."""
    from topologies import gpu_cluster

    r = Router(gpu_cluster(nodes=2, gpus_per_node=8))
    rails = []
    for i, j in [(0, 9), (1, 10), (7, 8)]:
        path = r.route_ranks(i, j)
        assert path[0][1] == "n0_nvswitch"
        rails.append({v for _, v in path if str(v).startswith("rail")})
    assert rails == [{"rail1"}, {"rail2"}, {"rail0"}]
