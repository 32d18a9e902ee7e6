"""Topology builders: structural invariants, the model's validation, spec strings."""

from __future__ import annotations

import math
from collections import Counter

import networkx as nx
import pytest

import topologies
from topologies import BUILDERS, TopologyError, from_spec, validate
from topologies.spec import builder_params, parse_bandwidth, parse_latency


def degree_histogram(G, kind=None):
    return Counter(d for n, d in G.out_degree() if kind is None or G.nodes[n]["kind"] == kind)


def kinds(G):
    return Counter(k for _, k in G.nodes(data="kind"))


def assert_contract(G):
    """Every arc has a reverse, float bandwidth > 0 and latency >= 0; the model validates."""
    validate(G)
    for u, v, d in G.edges(data=True):
        assert G.has_edge(v, u)
        assert type(d["bandwidth"]) is float and d["bandwidth"] > 0
        assert type(d["latency"]) is float and d["latency"] >= 0
    assert all(k in topologies.KINDS for _, k in G.nodes(data="kind"))
    assert isinstance(G.graph["name"], str) and G.graph["endpoints"]


# --- every registered builder ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_default_builder_satisfies_contract(name):
    G = BUILDERS[name]()
    assert_contract(G)
    assert isinstance(G, nx.DiGraph) and not G.is_multigraph()
    assert G.graph["name"].startswith(name)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_bandwidth_and_latency_keywords_apply(name):
    G = BUILDERS[name](bandwidth=1e9, latency=3e-6)
    assert 1e9 in {d for *_, d in G.edges(data="bandwidth")}
    assert 3e-6 in {d for *_, d in G.edges(data="latency")}


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize(
    "bad", [{"bandwidth": 0}, {"bandwidth": -1.0}, {"latency": -1e-6}, {"bandwidth": math.nan}]
)
def test_bad_link_parameters_name_the_argument(name, bad):
    (key,) = bad
    with pytest.raises(ValueError, match=key):
        BUILDERS[name](**bad)


# --- simple -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 7, 12])
def test_ring(n):
    G = topologies.ring(n)
    assert_contract(G)
    links = n if n > 2 else n - 1
    assert G.number_of_nodes() == n and G.number_of_edges() == 2 * links
    if n > 2:
        assert degree_histogram(G) == {2: n}
        assert nx.is_isomorphic(G.to_undirected(), nx.cycle_graph(n))


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_line(n):
    G = topologies.line(n)
    assert_contract(G)
    assert nx.is_isomorphic(G.to_undirected(), nx.path_graph(n))


@pytest.mark.parametrize("n", [1, 3, 6])
def test_switch_is_a_star(n):
    G = topologies.switch(n)
    assert_contract(G)
    assert kinds(G) == {"host": n, "switch": 1}
    assert nx.is_isomorphic(G.to_undirected(), nx.star_graph(n))


@pytest.mark.parametrize("n", [1, 2, 5, 6])
def test_fully_connected(n):
    G = topologies.fully_connected(n)
    assert_contract(G)
    assert nx.is_isomorphic(G.to_undirected(), nx.complete_graph(n))


# --- lattice ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dims", [(5,), (3, 4), (2, 3), (2, 2, 2), (3, 3, 3), (1, 6)])
def test_torus_is_product_of_cycles(dims):
    G = topologies.torus(dims)
    assert_contract(G)
    expected = nx.empty_graph(1)
    for d in dims:
        factor = nx.cycle_graph(d) if d > 2 else nx.path_graph(d)
        expected = nx.cartesian_product(expected, factor)
    assert nx.is_isomorphic(G.to_undirected(), expected)
    assert len(G.graph["endpoints"]) == math.prod(dims)


@pytest.mark.parametrize("dims", [(5,), (3, 4), (2, 3, 5)])
def test_mesh_is_a_grid(dims):
    G = topologies.mesh(dims)
    assert_contract(G)
    assert nx.is_isomorphic(G.to_undirected(), nx.grid_graph(list(reversed(dims))))


def test_torus_host_numbering_is_row_major():
    G = topologies.torus((3, 4))
    assert (
        G.has_edge("h0", "h1")
        and G.has_edge("h0", "h4")
        and G.has_edge("h0", "h3")
        and G.has_edge("h0", "h8")
    )


@pytest.mark.parametrize("d", [0, 1, 3, 5])
def test_hypercube(d):
    G = topologies.hypercube(d)
    assert_contract(G)
    assert nx.is_isomorphic(G.to_undirected(), nx.hypercube_graph(d)) if d else G.number_of_nodes() == 1
    if d:
        assert degree_histogram(G) == {d: 2**d}


# --- datacenter ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 4, 6, 8])
def test_fat_tree_counts_and_degrees(k):
    G = topologies.fat_tree(k)
    assert_contract(G)
    assert kinds(G) == {"host": k**3 // 4, "switch": 5 * k * k // 4}
    assert G.number_of_edges() == 2 * 3 * k**3 // 4
    assert degree_histogram(G, "switch") == {k: 5 * k * k // 4}
    assert degree_histogram(G, "host") == {1: k**3 // 4}
    roles = Counter(r for _, r in G.nodes(data="role") if r)
    assert roles == {"edge": k * k // 2, "aggregation": k * k // 2, "core": k * k // 4}


def test_fat_tree_hosts_of_a_switch_are_consecutive_ranks():
    G = topologies.fat_tree(6)
    eps = G.graph["endpoints"]
    for i in range(0, len(eps), 3):
        assert len({next(iter(G.succ[e])) for e in eps[i : i + 3]}) == 1


@pytest.mark.parametrize("k", [3, 0, -2, 4.0, "4"])
def test_fat_tree_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be an even integer >= 2"):
        topologies.fat_tree(k)


@pytest.mark.parametrize(
    "leaves, spines, hosts_per_leaf, over", [(4, 2, 8, 1.0), (3, 5, 7, 3.0), (1, 1, 1, 1.0), (6, 3, 5, 2.5)]
)
def test_leaf_spine_oversubscription(leaves, spines, hosts_per_leaf, over):
    G = topologies.leaf_spine(leaves, spines, hosts_per_leaf, over, bandwidth=10e9)
    assert_contract(G)
    assert kinds(G) == {"host": leaves * hosts_per_leaf, "switch": leaves + spines}
    assert G.number_of_edges() == 2 * leaves * (hosts_per_leaf + spines)
    for leaf in range(leaves):
        down = sum(G.edges[h, f"leaf{leaf}"]["bandwidth"] for h in G.pred[f"leaf{leaf}"] if h.startswith("h"))
        up = sum(G.edges[f"leaf{leaf}", f"spine{s}"]["bandwidth"] for s in range(spines))
        assert down / up == pytest.approx(over)
    assert degree_histogram(G, "switch") == Counter({hosts_per_leaf + spines: leaves}) + Counter(
        {leaves: spines}
    )


@pytest.mark.parametrize("groups, a, p", [(5, 4, 2), (9, 4, 1), (3, 2, 3), (7, 3, 2), (1, 3, 2), (2, 1, 1)])
def test_dragonfly_one_global_link_per_group_pair(groups, a, p):
    G = topologies.dragonfly(groups, a, p)
    assert_contract(G)
    assert kinds(G) == {"host": groups * a * p, "switch": groups * a}
    roles = Counter(r for *_, r in G.edges(data="role"))
    assert roles["global"] == groups * (groups - 1)  # arcs: two per link
    assert roles["local"] == groups * a * (a - 1)
    pairs = Counter(
        tuple(sorted((G.nodes[u]["group"], G.nodes[v]["group"])))
        for u, v, r in G.edges(data="role")
        if r == "global"
    )
    assert set(pairs.values()) <= {2} and len(pairs) == groups * (groups - 1) // 2
    # global ports are spread: no router has more than ceil((groups - 1) / a)
    per_router = Counter(u for u, _, r in G.edges(data="role") if r == "global")
    assert max(per_router.values(), default=0) <= -(-(groups - 1) // a)


def test_dragonfly_global_link_attributes():
    G = topologies.dragonfly(4, 2, 1, global_bandwidth=5e9, global_latency=2e-6)
    glob = [d for *_, d in G.edges(data=True) if d.get("role") == "global"]
    assert {d["bandwidth"] for d in glob} == {5e9} and {d["latency"] for d in glob} == {2e-6}


# --- gpu ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nodes, gpn, fabric", [(1, 8, "rail"), (3, 8, "rail"), (5, 4, "single"), (2, 1, "rail"), (3, 6, "single")]
)
def test_gpu_cluster_structure(nodes, gpn, fabric):
    G = topologies.gpu_cluster(nodes, gpn, fabric)
    assert_contract(G)
    nvswitches = nodes if gpn > 1 else 0
    fabric_switches = gpn if fabric == "rail" else 1
    assert kinds(G) == {"gpu": nodes * gpn, "nic": nodes * gpn, "switch": nvswitches + fabric_switches}
    assert G.graph["endpoints"] == [f"n{s}_gpu{g}" for s in range(nodes) for g in range(gpn)]
    for e in G.graph["endpoints"]:
        assert G.nodes[e]["kind"] == "gpu"
        assert Counter(G.nodes[x]["kind"] for x in G.succ[e]) == (
            {"nic": 1, "switch": 1} if gpn > 1 else {"nic": 1}
        )
    for s in range(nodes):
        for g in range(gpn):
            nic = f"n{s}_nic{g}"
            assert set(G.succ[nic]) == {f"n{s}_gpu{g}", f"rail{g}" if fabric == "rail" else "fabric0"}
            assert G.edges[nic, f"n{s}_gpu{g}"]["bandwidth"] == 64e9
    if fabric == "rail":
        assert degree_histogram(G.subgraph([f"rail{g}" for g in range(gpn)])) == {0: gpn}
        assert all(G.out_degree(f"rail{g}") == nodes for g in range(gpn))


def test_gpu_cluster_default_bandwidths():
    G = topologies.gpu_cluster()
    assert G.edges["n0_gpu3", "n0_nvswitch"]["bandwidth"] == 450e9
    assert G.edges["n1_nic3", "rail3"]["bandwidth"] == 400e9 / 8


def test_gpu_cluster_nvlink_mesh_splits_per_gpu_bandwidth():
    G = topologies.gpu_cluster(2, 4, intra="nvlink")
    assert_contract(G)
    assert "n0_nvswitch" not in G
    out = sum(d for _, v, d in G.out_edges("n0_gpu0", data="bandwidth") if G.nodes[v]["kind"] == "gpu")
    assert out == pytest.approx(450e9) and G.out_degree("n0_gpu0") == 3 + 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fabric": "ring"}, "fabric must be one of: rail, fat_tree, single"),
        ({"intra": "pci"}, "intra must be one of: nvswitch, nvlink, pcie"),
        ({"nics_per_node": 3}, "nics_per_node=3 must divide gpus_per_node=8"),
        ({"nics_per_node": 0}, "nics_per_node must be an integer >= 1"),
        ({"nvls": True, "intra": "nvlink"}, "nvls=True needs intra='nvswitch'"),
        ({"sharp": "yes"}, "sharp must be True or False"),
        ({"spines": -1}, "spines must be an integer >= 0"),
        ({"oversubscription": 0}, "oversubscription must be a finite number > 0"),
        ({"routing": "dor"}, "routing must be one of: ecmp, dmodk, shortest"),
        ({"nodes": 0}, "nodes must be an integer >= 1"),
        ({"nvlink_bandwidth": 0}, "nvlink_bandwidth"),
    ],
)
def test_gpu_cluster_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        topologies.gpu_cluster(**kwargs)


# --- validation ---------------------------------------------------------------------------------


def _pair():
    G = topologies.new_topology("pair", endpoints=["a", "b"])
    G.add_nodes_from(["a", "b"], kind="host")
    topologies.add_link(G, "a", "b", 1e9, 1e-6)
    return G


def _break(what):
    G = _pair()
    if what == "bandwidth<=0":
        G.edges["a", "b"]["bandwidth"] = 0.0
    elif what == "missing bandwidth":
        del G.edges["a", "b"]["bandwidth"]
    elif what == "string bandwidth":
        G.edges["a", "b"]["bandwidth"] = "1e9"
    elif what == "infinite bandwidth":
        G.edges["a", "b"]["bandwidth"] = float("inf")
    elif what == "negative latency":
        G.edges["b", "a"]["latency"] = -1e-9
    elif what == "missing latency":
        del G.edges["b", "a"]["latency"]
    elif what == "no reverse arc":
        G.remove_edge("b", "a")
    elif what == "disconnected":
        G.add_node("c", kind="host")
        G.graph["endpoints"].append("c")
    elif what == "unknown endpoint":
        G.graph["endpoints"].append("zz")
    elif what == "duplicate endpoint":
        G.graph["endpoints"].append("a")
    elif what == "bad kind":
        G.nodes["a"]["kind"] = "router"
    elif what == "no kind":
        del G.nodes["a"]["kind"]
    elif what == "no endpoints":
        del G.graph["endpoints"]
    elif what == "no name":
        del G.graph["name"]
    elif what == "self loop":
        G.add_edge("a", "a", bandwidth=1.0, latency=0.0)
    return G


@pytest.mark.parametrize(
    "what, message",
    [
        ("bandwidth<=0", "bandwidth must be a finite number > 0"),
        ("missing bandwidth", "bandwidth must be a finite number > 0"),
        ("string bandwidth", "bandwidth must be a finite number > 0"),
        ("infinite bandwidth", "bandwidth must be a finite number > 0"),
        ("negative latency", "latency must be a finite number >= 0"),
        ("missing latency", "latency must be a finite number >= 0"),
        ("no reverse arc", "has no reverse arc"),
        ("disconnected", "endpoint 'c' cannot reach endpoint 'a'"),
        ("unknown endpoint", "endpoint 'zz' is not a node"),
        ("duplicate endpoint", "more than once"),
        ("bad kind", "kind 'router'; allowed: host, gpu, nic, switch"),
        ("no kind", "kind None"),
        ("no endpoints", "'endpoints'"),
        ("no name", "'name'"),
        ("self loop", "self-loop"),
    ],
)
def test_validate_names_the_fault(what, message):
    validate(_pair())
    with pytest.raises(TopologyError, match=message):
        validate(_break(what))


def test_validate_nranks():
    G = _pair()
    validate(G, nranks=1)
    validate(G, nranks=2)
    with pytest.raises(TopologyError, match="nranks=3 exceeds the 2 endpoints of topology 'pair'"):
        validate(G, nranks=3)
    with pytest.raises(TopologyError, match="positive integer"):
        validate(G, nranks=0)


def test_validate_rejects_undirected_and_multigraphs():
    with pytest.raises(TopologyError, match="networkx.DiGraph"):
        validate(nx.Graph())
    with pytest.raises(TopologyError, match="networkx.DiGraph"):
        validate(nx.MultiDiGraph())


def test_topology_error_is_a_value_error():
    assert issubclass(TopologyError, ValueError)


def test_as_topology_user_graph():
    U = nx.Graph()
    U.add_edge("x", "y", bandwidth=5e9)
    U.add_edge("y", "s")
    U.nodes["s"]["kind"] = "switch"
    G = topologies.as_topology(U, latency=2e-6, name="mine")
    assert G.graph["endpoints"] == ["x", "y"] and G.graph["name"] == "mine"
    assert G.edges["y", "x"]["bandwidth"] == 5e9 and G.edges["s", "y"]["latency"] == 2e-6
    U.add_node("lonely")
    with pytest.raises(TopologyError, match="'lonely' cannot reach"):
        topologies.as_topology(U)


# --- spec strings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("100Gbps", 12.5e9),
        ("100 Gb/s", 12.5e9),
        ("100Gbit/s", 12.5e9),
        ("400Gb/s", 50e9),
        ("25Mbps", 25e6 / 8),
        ("1kbps", 125.0),
        ("450GB/s", 450e9),
        ("450 GBps", 450e9),
        ("12.5e9bytes/s", 12.5e9),
        ("1e9 byte/s", 1e9),
        ("1GiB/s", 2.0**30),
        (".5GB/s", 0.5e9),
        ("0", 0.0),
    ],
)
def test_parse_bandwidth(text, expected):
    assert parse_bandwidth(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("text", ["1us", "10 Hz", "fast", "100Gbq", "1e9 m/s", "GB/s", ""])
def test_parse_bandwidth_rejects(text):
    with pytest.raises(ValueError, match="as a bandwidth; write a number with a unit, e.g. 100Gbps"):
        parse_bandwidth(text)


@pytest.mark.parametrize("text", ["100", "2e9", " 12.5 ", "-1"])
def test_parse_bandwidth_refuses_a_number_without_unit(text):
    # 100 what? bytes/s, bits/s and Gb/s are all in use: a spec must say (issue 15).
    with pytest.raises(ValueError, match=r"a number needs a unit \(bits or bytes per second\?\); units: bps, .*GB/s"):
        parse_bandwidth(text)
    assert parse_bandwidth(100) == 100.0  # Python numbers stay bytes/s


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1us", 1e-6),
        ("1 µs", 1e-6),
        ("500ns", 5e-7),
        ("0.2ms", 2e-4),
        ("3s", 3.0),
        ("1e-6s", 1e-6),
        ("2 us", 2e-6),
        ("0", 0.0),
    ],
)
def test_parse_latency(text, expected):
    assert parse_latency(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("text", ["1GB/s", "soon", "1 m", "us"])
def test_parse_latency_rejects(text):
    with pytest.raises(ValueError, match="as a time; write a number with a unit, e.g. 1us"):
        parse_latency(text)


@pytest.mark.parametrize("text", ["1", "1e-6", "0.5"])
def test_parse_latency_refuses_a_number_without_unit(text):
    with pytest.raises(ValueError, match=r"a number needs a unit; units: s, ms, us"):
        parse_latency(text)
    assert parse_latency(1e-6) == 1e-6


@pytest.mark.parametrize(
    "spec, nodes, edges",
    [
        ("ring:n=5", 5, 10),
        ("line:n=3", 3, 4),
        ("switch:n=7", 8, 14),
        ("fully_connected:n=4", 4, 12),
        ("torus:dims=4x4", 16, 64),
        ("torus:dims=3x3x3", 27, 162),
        ("mesh:dims=2x3", 6, 14),
        ("hypercube:d=4", 16, 64),
        ("fat_tree:k=4", 36, 96),
        ("fat_tree", 36, 96),
        ("leaf_spine:leaves=3,spines=2,hosts_per_leaf=5,oversubscription=2.5", 20, 42),
        ("dragonfly:groups=3,routers_per_group=2,hosts_per_router=1", 12, 24),
        ("gpu_cluster:nodes=4", 4 * 17 + 8, 2 * 4 * 24),
        ("gpu_cluster:nodes=3,gpus_per_node=4,fabric=single,intra=nvlink", 25, 2 * 3 * (8 + 6)),
        (" fat_tree : k = 4 , latency = 2us ", 36, 96),
    ],
)
def test_from_spec_shapes(spec, nodes, edges):
    G = from_spec(spec)
    assert (G.number_of_nodes(), G.number_of_edges()) == (nodes, edges)
    assert G.graph["spec"] == spec.strip()


def test_from_spec_units_reach_the_arcs():
    G = from_spec("fat_tree:k=4,bandwidth=100Gbps,latency=1us")
    assert {d for *_, d in G.edges(data="bandwidth")} == {12.5e9}
    assert {d for *_, d in G.edges(data="latency")} == {1e-6}
    G = from_spec("gpu_cluster:nodes=2,bandwidth=200Gb/s,nvlink_bandwidth=900GB/s,pcie_latency=250ns")
    assert G.edges["n0_nic0", "rail0"]["bandwidth"] == 25e9
    assert G.edges["n0_gpu0", "n0_nvswitch"]["bandwidth"] == 900e9
    assert G.edges["n0_gpu0", "n0_nic0"]["latency"] == 2.5e-7
    G = from_spec("dragonfly:groups=3,global_bandwidth=50Gbps")
    assert {d["bandwidth"] for *_, d in G.edges(data=True) if d.get("role") == "global"} == {6.25e9}


@pytest.mark.parametrize(
    "spec, message",
    [
        ("fat_tree:k=3", "fat_tree: k must be an even integer >= 2, got 3"),
        ("fat_tree:k=four", "fat_tree: k: cannot read 'four' as an integer"),
        ("fat_tree:q=4", "fat_tree: unknown parameter 'q'; parameters: k, bandwidth, latency"),
        ("fat_tree:k=4,k=6", "parameter 'k' given twice"),
        ("fat_tree:k", "fat_tree: cannot read 'k'; write key=value"),
        ("fat_tree:bandwidth=100", "fat_tree: bandwidth: cannot read '100' as a bandwidth: a number needs a unit"),
        ("fat_tree:latency=2", "fat_tree: latency: cannot read '2' as a time: a number needs a unit"),
        ("gpu_cluster:sharp=maybe", "gpu_cluster: sharp: cannot read 'maybe' as a flag; write true or false"),
        ("ring:routing=dor", "ring: routing: cannot use 'dor'; allowed values: ecmp, dmodk, shortest"),
        ("fat_tree:bandwidth=fast", "fat_tree: bandwidth: cannot read 'fast' as a bandwidth"),
        ("fat_tree:latency=1GB/s", "fat_tree: latency: cannot read '1GB/s' as a time"),
        ("torus:dims=4by4", "torus: dims: cannot read '4by4' as dimensions"),
        ("torus:dims=4x0", "dims must be a non-empty sequence of integers >= 1"),
        ("gpu_cluster:fabric=ib", "gpu_cluster: fabric: cannot use 'ib'; allowed values: rail, fat_tree, single"),
        ("leaf_spine:oversubscription=0", "oversubscription must be a finite number > 0"),
        ("bus:n=4", "unknown topology 'bus'; choose from: ring, line, switch"),
        ("", "non-empty string"),
        ("fat_tree:bandwidth=0Gbps", "bandwidth must be a finite number > 0"),
        ("nofile.json", "does not exist"),
    ],
)
def test_from_spec_errors_are_one_clear_line(spec, message):
    with pytest.raises(ValueError) as info:
        from_spec(spec)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_registry_drives_spec_parameters():
    for name, builder in BUILDERS.items():
        params = builder_params(name)
        assert {"bandwidth", "latency"} <= set(params), name
        assert builder.__doc__ and "Examples" in builder.__doc__, name
        for p in params.values():
            assert p.describe().startswith(p.name + "=")
    assert builder_params("gpu_cluster")["fabric"].choices == ("rail", "fat_tree", "single")
    assert builder_params("gpu_cluster")["sharp"].kind == "bool"
    assert builder_params("torus")["dims"].kind == "dims"
    assert topologies.spec_help().splitlines()[0] == "ring:n=8,bandwidth=100Gbps,latency=1us,routing=ecmp|dmodk|shortest"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_spec_help_line_round_trips(name):
    # Every default the help prints is itself a valid spec giving the default topology.
    line = next(s for s in topologies.spec_help().splitlines() if s.split(":")[0] == name)
    parts = [p for p in line.split(":", 1)[1].split(",") if "<" not in p]
    parts = [p.split("|")[0] if "|" in p else p for p in parts]
    G = from_spec(f"{name}:{','.join(parts)}")
    D = BUILDERS[name]()
    assert G.graph["name"] == D.graph["name"]
    assert sorted(G.edges(data="bandwidth")) == sorted(D.edges(data="bandwidth"))


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, topologies; print(sorted(m for m in ('scipy', 'pint', 'matplotlib', 'pyroute2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "spec",
    [
        "ring:n=2000000",
        "fully_connected:n=3000",
        "torus:dims=128x128x128",
        "hypercube:d=21",
        "fat_tree:k=200",
        "leaf_spine:leaves=10000,hosts_per_leaf=200",
        "dragonfly:groups=2000",
        "gpu_cluster:nodes=200000",
    ],
)
def test_too_big_is_refused_at_once(spec):
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match="the limit is 1048576 nodes and 2097152 links"):
        from_spec(spec)
    assert time.perf_counter() - start < 1.0
