"""Topology files (JSON, GraphML), the summary numbers, and drawing."""

from __future__ import annotations

import json

import networkx as nx
import pytest

import topologies
from topologies import BUILDERS, TopologyError, load, save
from topologies.summary import bisection_bandwidth, diameter, summary

PNG = b"\x89PNG\r\n\x1a\n"


def same_topology(A, B):
    assert A.graph["name"] == B.graph["name"]
    assert A.graph["endpoints"] == B.graph["endpoints"]
    assert list(A.nodes(data=True)) == list(B.nodes(data=True))
    assert sorted(A.edges(data=True)) == sorted(B.edges(data=True))


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("ext", [".json", ".graphml"])
def test_round_trip_every_builder(tmp_path, name, ext):
    G = BUILDERS[name](latency=1.25e-6)
    path = tmp_path / f"topo{ext}"
    save(G, path)
    H = load(path)
    same_topology(G, H)
    for _, _, d in H.edges(data=True):
        assert type(d["bandwidth"]) is float and type(d["latency"]) is float


def test_round_trip_keeps_odd_values(tmp_path):
    G = topologies.leaf_spine(3, 7, 5, 3.0, bandwidth=1e9 / 3, latency=1e-7 / 3)
    G.graph["spec"] = "leaf_spine:..."
    for ext in (".json", ".graphml"):
        save(G, tmp_path / f"t{ext}")
        H = load(tmp_path / f"t{ext}")
        same_topology(G, H)
        assert H.graph["spec"] == "leaf_spine:..."


def test_json_is_node_link(tmp_path):
    save(topologies.ring(3), tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["directed"] is True and data["graph"]["endpoints"] == ["h0", "h1", "h2"]
    assert {"source", "target", "bandwidth", "latency"} <= set(data["edges"][0])


def test_json_tuple_node_ids_survive(tmp_path):
    G = topologies.as_topology(nx.grid_2d_graph(2, 3), name="grid")
    save(G, tmp_path / "g.json")
    H = load(tmp_path / "g.json")
    assert H.graph["endpoints"] == G.graph["endpoints"] and (0, 1) in H


def test_graphml_from_another_tool_undirected(tmp_path):
    # An undirected GraphML file, as Gephi or yEd would write it, with our attributes.
    U = nx.cycle_graph(4)
    nx.set_node_attributes(U, "host", "kind")
    nx.set_edge_attributes(U, 1e9, "bandwidth")
    nx.set_edge_attributes(U, 1e-6, "latency")
    U.graph["name"] = "square"
    U.graph["endpoints"] = json.dumps(["0", "1", "2", "3"])
    nx.write_graphml(U, tmp_path / "u.graphml")
    G = load(tmp_path / "u.graphml")
    assert G.number_of_edges() == 8 and G.graph["endpoints"] == ["0", "1", "2", "3"]
    assert topologies.Router(G).route_ranks(0, 2)[-1][1] == "2"


def test_from_spec_loads_files(tmp_path):
    save(topologies.torus((3, 3)), tmp_path / "t.graphml")
    assert topologies.from_spec(str(tmp_path / "t.graphml")).graph["name"] == "torus:dims=3x3"


def test_load_rejects_invalid_and_bad_paths(tmp_path):
    G = topologies.ring(3)
    G.edges["h0", "h1"]["bandwidth"] = -1.0
    save(G, tmp_path / "bad.json")
    with pytest.raises(TopologyError, match="bad.json: topology 'ring:n=3': arc"):
        load(tmp_path / "bad.json")
    assert load(tmp_path / "bad.json", check=False).number_of_nodes() == 3
    with pytest.raises(ValueError, match="use one of: .json, .graphml"):
        save(G, tmp_path / "x.yaml")
    with pytest.raises(ValueError, match="does not exist"):
        load(tmp_path / "missing.graphml")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read topology file"):
        load(tmp_path / "junk.json")


# --- summary ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, links_cut",
    [
        ("ring:n=8", 2),
        ("ring:n=7", 2),
        ("line:n=6", 1),
        ("switch:n=6", 3),  # the 3 hosts of one half can send at most 3 links' worth
        ("fully_connected:n=6", 9),
        ("torus:dims=4x4", 8),
        ("mesh:dims=4x4", 4),
        ("hypercube:d=4", 8),
        ("fat_tree:k=4", 8),
        ("fat_tree:k=6", 27),
        ("dragonfly:groups=4,routers_per_group=2,hosts_per_router=4", 4),  # 4 global links cross
    ],
)
def test_bisection_bandwidth_counts_cut_links(spec, links_cut):
    G = topologies.from_spec(spec)
    bw = next(iter(G.edges.values()))["bandwidth"]
    assert bisection_bandwidth(G) == pytest.approx(links_cut * bw, rel=1e-6)


@pytest.mark.parametrize("over", [1.0, 2.0, 3.0])
def test_bisection_of_oversubscribed_leaf_spine(over):
    G = topologies.leaf_spine(4, 2, 6, over, bandwidth=10e9)
    # half the hosts (two leaves, 12 hosts) send through two leaves' uplinks: 12 * 10 GB/s / over
    assert bisection_bandwidth(G) == pytest.approx(12 * 10e9 / over, rel=1e-6)


def test_bisection_of_gpu_cluster_is_the_nics():
    G = topologies.gpu_cluster(4, 8)
    assert bisection_bandwidth(G) == pytest.approx(16 * 50e9, rel=1e-6)


def test_bisection_single_endpoint_is_none():
    assert bisection_bandwidth(topologies.ring(1)) is None


@pytest.mark.parametrize(
    "spec, hops",
    [
        ("ring:n=1", 0),
        ("ring:n=2", 1),
        ("ring:n=7", 3),
        ("line:n=5", 4),
        ("switch:n=2", 2),
        ("switch:n=5", 2),
        ("torus:dims=4x5", 4),
        ("mesh:dims=3x4", 5),
        ("hypercube:d=5", 5),
        ("fat_tree:k=2", 6),
        ("fat_tree:k=4", 6),
        ("leaf_spine:leaves=1,spines=2,hosts_per_leaf=3", 2),
        ("leaf_spine:leaves=3,spines=2,hosts_per_leaf=1", 4),
        ("dragonfly:groups=5,routers_per_group=4,hosts_per_router=1", 5),
        ("gpu_cluster:nodes=1,gpus_per_node=8", 2),
        ("gpu_cluster:nodes=3,gpus_per_node=8", 6),
    ],
)
def test_diameter_matches_networkx(spec, hops):
    G = topologies.from_spec(spec)
    assert diameter(G) == (hops, True)
    eps = G.graph["endpoints"]
    sub = dict(nx.all_pairs_shortest_path_length(G))
    assert max(sub[a][b] for a in eps for b in eps) == hops


def test_summary_numbers():
    s = summary(topologies.gpu_cluster(2, 8))
    assert (s["endpoints"], s["gpus"], s["hosts"], s["nics"], s["switches"]) == (16, 16, 0, 16, 10)
    assert s["links"] == 48 and s["arcs"] == 96
    assert (s["min_bandwidth"], s["max_bandwidth"]) == (50e9, 450e9)
    text = topologies.format_summary(s)
    assert "bisection       400 GB/s (3200 Gb/s) one way, ranks 0..7 -> 8..15" in text
    assert "diameter        6 hops between endpoints" in text


# --- drawing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["fat_tree:k=4", "torus:dims=3x4", "gpu_cluster:nodes=2,gpus_per_node=4", "ring:n=1"]
)
def test_draw_writes_png(tmp_path, spec):
    out = topologies.draw(topologies.from_spec(spec), tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    assert out == str(tmp_path / "t.png") and data[:8] == PNG and len(data) > 5_000


def test_draw_with_utilization_and_bottleneck_changes_the_picture(tmp_path):
    G = topologies.fat_tree(4)
    router = topologies.Router(G)
    route = router.route_ranks(0, 15)
    util = {arc: 0.25 for arc in G.edges}
    util.update({arc: 1.0 for arc in route})
    plain = topologies.draw(G, tmp_path / "plain.png")
    busy = topologies.draw(G, tmp_path / "busy.png", utilization=util, highlight=route[:1], title="allreduce")
    assert (tmp_path / "busy.png").read_bytes() != (tmp_path / "plain.png").read_bytes()
    assert busy.endswith("busy.png") and plain.endswith("plain.png")
    topologies.draw(G, tmp_path / "t.svg", utilization={("h0", "edge0"): 3.0})
    assert (tmp_path / "t.svg").read_text().lstrip().startswith("<?xml")


def test_draw_rejects_bad_input(tmp_path):
    G = topologies.ring(4)
    with pytest.raises(ValueError, match=r"utilization: \('h0', 'h2'\) is not an arc"):
        topologies.draw(G, tmp_path / "x.png", utilization={("h0", "h2"): 0.5})
    with pytest.raises(ValueError, match="highlight: 'h0' is not an arc"):
        topologies.draw(G, tmp_path / "x.png", highlight=["h0"])
    with pytest.raises(ValueError, match="fractions must be >= 0"):
        topologies.draw(G, tmp_path / "x.png", utilization={("h0", "h1"): -0.1})
    with pytest.raises(ValueError, match="does not exist"):
        topologies.draw(G, tmp_path / "no" / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_layout_rows_for_fabrics_grid_for_lattices():
    from topologies.drawing import layout

    pos = layout(topologies.torus((3, 4)))
    assert pos["h5"] == (1, 1) and pos["h11"] == (3, 2)
    pos = layout(topologies.fat_tree(4))
    assert {pos[f"h{i}"][1] for i in range(16)} == {0.0} and {pos[f"core{i}"][1] for i in range(4)} == {3.0}
    assert pos["h0"][0] < pos["h1"][0] < pos["h15"][0]


@pytest.mark.parametrize("ext", [".json", ".graphml"])
def test_failed_save_leaves_nothing(tmp_path, ext):
    G = topologies.ring(3)
    G.nodes["h0"]["rack"] = {"row": 1} if ext == ".graphml" else object()
    with pytest.raises(ValueError, match="cannot save topology 'ring:n=3'"):
        save(G, tmp_path / f"r{ext}")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="does not exist"):
        save(G, tmp_path / "missing" / f"r{ext}")


@pytest.mark.parametrize(
    "spec",
    [
        "gpu_cluster:nodes=3,gpus_per_node=4,nics_per_node=2,fabric=fat_tree,nvls=true,sharp=true,routing=ecmp",
        "cluster:nodes=2,hosts_per_node=3,nics_per_node=3",
        "torus:dims=3x4x2",
        "hypercube:d=3,routing=dor",
    ],
)
@pytest.mark.parametrize("ext", [".json", ".graphml"])
def test_round_trip_keeps_machines_routing_and_flags(tmp_path, spec, ext):
    G = topologies.from_spec(spec)
    save(G, tmp_path / f"t{ext}")
    H = load(tmp_path / f"t{ext}")
    assert topologies.endpoint_nodes(H) == topologies.endpoint_nodes(G)
    assert all(type(H.nodes[e]["node"]) is int for e in H.graph["endpoints"])
    assert topologies.nics_per_node(H) == topologies.nics_per_node(G)
    for key in ("routing", "nics_per_node", "dims", "wrap"):
        assert H.graph.get(key) == G.graph.get(key), key
    for flag in ("nvls", "sharp"):
        assert {n for n, d in H.nodes(data=True) if d.get(flag)} == {n for n, d in G.nodes(data=True) if d.get(flag)}
    a, b = topologies.Router(G), topologies.Router(H)
    assert a.policy == b.policy == G.graph["routing"]
    n = len(G.graph["endpoints"])
    assert [a.route_ranks(0, j) for j in range(n)] == [b.route_ranks(0, j) for j in range(n)]
