"""Machines in topologies: the ``node`` attribute, NICs per node, gpu_cluster's shapes, cluster."""

from __future__ import annotations

from collections import Counter

import networkx as nx
import pytest

import topologies
from topologies import BUILDERS, Router, TopologyError, endpoint_nodes, from_spec, nics_per_node, validate

# --- node attribute -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_builder_sets_node_on_every_endpoint(name):
    G = BUILDERS[name]()
    eps = G.graph["endpoints"]
    assert all(type(G.nodes[e]["node"]) is int for e in eps)
    nodes = endpoint_nodes(G)
    assert len(nodes) == len(eps)
    if name in ("gpu_cluster", "cluster"):
        per = len(eps) // len(set(nodes))
        assert nodes == [r // per for r in range(len(eps))]  # machine-major
    else:
        assert nodes == list(range(len(eps)))  # one host per machine
        assert nics_per_node(G) == 1


@pytest.mark.parametrize("nodes, gpn, nics", [(1, 8, 8), (3, 8, 4), (2, 6, 3), (5, 4, 1), (2, 1, 1)])
def test_gpu_cluster_nodes_and_nics(nodes, gpn, nics):
    G = topologies.gpu_cluster(nodes, gpn, nics_per_node=nics)
    assert endpoint_nodes(G) == [r // gpn for r in range(nodes * gpn)]
    assert nics_per_node(G) == nics == G.graph["nics_per_node"]


def test_endpoint_nodes_of_hand_built_graphs():
    G = topologies.new_topology("hand", endpoints=["a", "b", "c", "d"])
    G.add_nodes_from("abcd", kind="host")
    G.add_node("sw", kind="switch")
    for x in "abcd":
        topologies.add_link(G, x, "sw", 1e9, 1e-6)
    assert endpoint_nodes(G) == [0, 1, 2, 3] and nics_per_node(G) == 1  # each its own machine
    G.nodes["a"]["node"] = G.nodes["b"]["node"] = 5
    assert endpoint_nodes(G) == [5, 5, 6, 7]  # the others get fresh ids
    G.graph["nics_per_node"] = 2
    validate(G)
    assert nics_per_node(G) == 2


@pytest.mark.parametrize(
    "where, value, message",
    [
        ("node", -1, "endpoint 'a' has node=-1; the machine index must be an int >= 0"),
        ("node", "0", "endpoint 'a' has node='0'"),
        ("node", True, "endpoint 'a' has node=True"),
        ("nics_per_node", 0, "graph attribute nics_per_node=0; it must be an int >= 1"),
        ("routing", "ospf", "graph attribute routing='ospf'; allowed: ecmp, dmodk, shortest, dor"),
    ],
)
def test_validate_rejects_bad_machine_attributes(where, value, message):
    G = topologies.new_topology("pair", endpoints=["a", "b"])
    G.add_nodes_from("ab", kind="host")
    topologies.add_link(G, "a", "b", 1e9, 1e-6)
    if where == "node":
        G.nodes["a"]["node"] = value
    else:
        G.graph[where] = value
    with pytest.raises(TopologyError, match=message):
        validate(G)


# --- gpu_cluster shapes ---------------------------------------------------------------------------


def test_default_gpu_cluster_is_an_h100_node_with_eight_400g_nics():
    G = topologies.gpu_cluster()
    assert Counter(k for _, k in G.nodes(data="kind")) == {"gpu": 16, "nic": 16, "switch": 2 + 8}
    assert G.edges["n0_gpu0", "n0_nvswitch"]["bandwidth"] == 450e9
    assert G.edges["n0_gpu0", "n0_nic0"]["bandwidth"] == 64e9  # PCIe Gen5 x16
    assert G.edges["n0_nic0", "rail0"]["bandwidth"] == 400e9 / 8
    assert G.graph["routing"] == "dmodk" and nics_per_node(G) == 8
    assert not any(d.get("nvls") or d.get("sharp") for _, d in G.nodes(data=True))


@pytest.mark.parametrize("gpn, nics", [(8, 4), (8, 2), (8, 1), (6, 3), (4, 2)])
def test_nics_shared_behind_pcie_switches(gpn, nics):
    G = topologies.gpu_cluster(2, gpn, nics_per_node=nics, pcie_bandwidth=25e9)
    share = gpn // nics
    for s in range(2):
        for j in range(nics):
            sw = f"n{s}_pcie{j}"
            assert G.nodes[sw]["kind"] == "switch" and G.nodes[sw]["node"] == s
            gpus = {f"n{s}_gpu{g}" for g in range(j * share, (j + 1) * share)}
            assert set(G.succ[sw]) == gpus | {f"n{s}_nic{j}"}
            assert {G.edges[sw, x]["bandwidth"] for x in G.succ[sw]} == {25e9}
            assert G.nodes[f"n{s}_nic{j}"]["rail"] == j
    # each GPU leaves its server through its own NIC
    router = Router(G)
    for g in range(gpn):
        route = router.route(f"n0_gpu{g}", f"n1_gpu{g}")
        assert (f"n0_nic{g // share}", f"rail{g // share}") in route


@pytest.mark.parametrize("intra", ["nvswitch", "nvlink"])
@pytest.mark.parametrize("nics", [8, 4, 2])
def test_gpu_to_gpu_inside_a_server_never_takes_pcie(intra, nics):
    G = topologies.gpu_cluster(2, 8, intra=intra, nics_per_node=nics)
    for policy in ("ecmp", "dmodk", "shortest"):
        router = Router(G, policy=policy)
        for a in range(8):
            for b in range(8):
                if a != b:
                    route = router.route(f"n0_gpu{a}", f"n0_gpu{b}")
                    assert {G.edges[x]["role"] for x in route} == {"nvlink"}, (policy, a, b, route)


def test_intra_pcie_joins_gpus_through_the_root_complex():
    G = topologies.gpu_cluster(2, 8, intra="pcie", nics_per_node=4)
    assert "n0_nvswitch" not in G and G.nodes["n0_cpu"]["role"] == "pcie_root"
    route = Router(G).route("n0_gpu0", "n0_gpu7")
    assert [v for _, v in route] == ["n0_pcie0", "n0_cpu", "n0_pcie3", "n0_gpu7"]
    assert Router(G).route("n0_gpu0", "n0_gpu1") == [("n0_gpu0", "n0_pcie0"), ("n0_pcie0", "n0_gpu1")]


def test_capability_flags():
    G = topologies.gpu_cluster(2, 4, fabric="fat_tree", nvls=True, sharp=True, nodes_per_leaf=1)
    assert {n for n, d in G.nodes(data=True) if d.get("nvls")} == {"n0_nvswitch", "n1_nvswitch"}
    fabric = {n for n, d in G.nodes(data=True) if d.get("role") in ("leaf", "spine")}
    assert fabric and {n for n, d in G.nodes(data=True) if d.get("sharp")} == fabric
    assert G.graph["name"].endswith("nvls=true,sharp=true")


@pytest.mark.parametrize("nodes, per_leaf, spines, over", [(8, 2, 4, 1.0), (6, 4, 2, 2.0), (3, None, None, 1.0)])
def test_fat_tree_fabric(nodes, per_leaf, spines, over):
    nics = 4
    G = topologies.gpu_cluster(
        nodes, 8, fabric="fat_tree", nics_per_node=nics, nodes_per_leaf=per_leaf, spines=spines, oversubscription=over
    )
    validate(G)
    per = per_leaf or nodes  # default: 32 NICs a leaf = 8 servers, more than there are
    leaves = sorted((n for n, r in G.nodes(data="role") if r == "leaf"), key=lambda x: int(x[4:]))
    assert len(leaves) == -(-nodes // per)
    for s in range(nodes):
        assert {v for j in range(nics) for v in G.succ[f"n{s}_nic{j}"] if v.startswith("leaf")} == {f"leaf{s // per}"}
    spine_ids = [n for n, r in G.nodes(data="role") if r == "spine"]
    assert len(spine_ids) == (0 if len(leaves) == 1 else spines or nics)
    for leaf in leaves if spine_ids else ():
        down = sum(G.edges[x, leaf]["bandwidth"] for x in G.pred[leaf] if x.startswith("n"))
        up = sum(G.edges[leaf, x]["bandwidth"] for x in spine_ids)
        assert down / up == pytest.approx(over)


def test_rail_fabric_with_leaf_groups_and_spines():
    G = topologies.gpu_cluster(6, 4, nodes_per_leaf=2)
    rails = [n for n, r in G.nodes(data="role") if r == "rail"]
    assert sorted(rails) == sorted(f"rail{j}_{g}" for j in range(4) for g in range(3))
    assert set(G.succ["n3_nic2"]) >= {"rail2_1"}
    assert sum(1 for _, r in G.nodes(data="role") if r == "spine") == 2  # default: nodes_per_leaf
    validate(G)
    G = topologies.gpu_cluster(3, 4, spines=2)  # one leaf per rail, a tier above the rails
    assert set(G.succ["rail0"]) >= {"spine0", "spine1"}
    assert G.edges["rail0", "spine0"]["bandwidth"] == pytest.approx(3 * 50e9 / 2)


def test_gpu_cluster_spec_parameters():
    G = from_spec("gpu_cluster:nodes=2,nics_per_node=4,fabric=fat_tree,intra=nvswitch,nvls=true,sharp=true,routing=ecmp")
    assert G.graph["nics_per_node"] == 4 and G.graph["routing"] == "ecmp"
    assert G.nodes["n0_nvswitch"]["nvls"] is True
    assert G.graph["name"] == (
        "gpu_cluster:nodes=2,gpus_per_node=8,fabric=fat_tree,nics_per_node=4,nvls=true,sharp=true,routing=ecmp"
    )


# --- cluster (CPU machines for emulation) --------------------------------------------------------


@pytest.mark.parametrize("nodes, hpn, nics", [(2, 2, 2), (3, 4, 2), (2, 3, 1), (1, 2, 2), (4, 1, 1)])
def test_cluster_structure(nodes, hpn, nics):
    G = topologies.cluster(nodes, hpn, nics)
    validate(G)
    assert G.graph["endpoints"] == [f"n{s}_h{i}" for s in range(nodes) for i in range(hpn)]
    assert endpoint_nodes(G) == [r // hpn for r in range(nodes * hpn)] and nics_per_node(G) == nics
    assert sum(1 for _, k in G.nodes(data="kind") if k == "nic") == nodes * nics
    assert G.in_degree("fabric0") == nodes * nics
    # the machine's injection bandwidth: its NIC links to the fabric
    assert sum(G.edges[f"n0_nic{j}", "fabric0"]["bandwidth"] for j in range(nics)) == nics * 12.5e9


def test_cluster_local_rank_i_leaves_through_nic_i():
    G = topologies.cluster(2, 2, 2, bandwidth=1e9, intra_bandwidth=10e9)
    router = Router(G)
    for i in range(2):
        for j in range(2):
            route = router.route(f"n0_h{i}", f"n1_h{j}")
            assert [v for _, v in route] == [f"n0_nic{i}", "fabric0", f"n1_nic{j}", f"n1_h{j}"]
    # inside a machine: the machine switch, never a NIC
    assert router.route("n0_h0", "n0_h1") == [("n0_h0", "n0_sw"), ("n0_sw", "n0_h1")]
    # a 2-channel ring 0 1 2 3 / 0 3 2 1 crosses between machines on four different NIC links
    crossings = [(1, 2), (3, 0), (0, 3), (2, 1)]
    used = [a for i, j in crossings for a in router.route_ranks(i, j) if "fabric0" in a]
    assert len(used) == len(set(used)) == 8


def test_cluster_shared_nic_intra_traffic_takes_the_switch():
    G = topologies.cluster(1, 4, 2)
    route = Router(G).route("n0_h0", "n0_h1")  # hosts 0 and 1 share NIC 0, yet talk through n0_sw
    assert route == [("n0_h0", "n0_sw"), ("n0_sw", "n0_h1")]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"nics_per_node": 3}, "nics_per_node=3 must divide hosts_per_node=2"),
        ({"hosts_per_node": 0}, "hosts_per_node must be an integer >= 1"),
        ({"intra_bandwidth": 0}, "intra_bandwidth must be a finite number > 0"),
        ({"routing": "dor"}, "routing must be one of"),
    ],
)
def test_cluster_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        topologies.cluster(**kwargs)


def test_cluster_spec():
    G = from_spec("cluster:nodes=2,hosts_per_node=2,nics_per_node=2,bandwidth=100Mbps,intra_bandwidth=1Gbps")
    assert G.edges["n0_nic0", "fabric0"]["bandwidth"] == 12.5e6
    assert G.edges["n0_h0", "n0_sw"]["bandwidth"] == 125e6
    assert nx.is_strongly_connected(G)
