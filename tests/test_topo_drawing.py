"""Pictures: dragonflies by group, tori on their grid, tier summaries of large graphs, red only where a link binds."""

from __future__ import annotations

import math
import time

import pytest

import topologies
from topologies.drawing import MAX_DRAWN_NODES, bottleneck_arcs, layout, picture

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("groups, a, p", [(5, 4, 2), (9, 4, 2), (3, 2, 1), (2, 1, 3)])
def test_dragonfly_is_laid_out_by_group(groups, a, p):
    G = topologies.dragonfly(groups, a, p)
    pos = layout(G)
    angle = {n: math.atan2(y, x) for n, (x, y) in pos.items()}
    radius = {n: math.hypot(x, y) for n, (x, y) in pos.items()}
    routers = [n for n, k in G.nodes(data="kind") if k == "switch"]
    assert {round(radius[r], 9) for r in routers} == {1.0}  # routers on the circle
    assert all(radius[h] > 1.2 for h in G.graph["endpoints"])  # hosts outside, by their router
    assert len(set(pos.values())) == G.number_of_nodes()  # nobody on top of anybody

    def gap(u, v):
        d = abs(angle[u] - angle[v]) % (2 * math.pi)
        return min(d, 2 * math.pi - d)

    group = dict(G.nodes(data="group"))
    ring = sorted(routers, key=lambda r: angle[r])  # around the circle
    pairs = list(zip(ring, ring[1:] + ring[:1], strict=True))
    changes = sum(1 for u, v in pairs if group[u] != group[v])
    assert changes == (groups if groups > 1 else 0)  # each group's routers form one arc
    inside = [gap(u, v) for u, v in pairs if group[u] == group[v]]
    between = [gap(u, v) for u, v in pairs if group[u] != group[v]]
    if inside and between:
        assert max(inside) < min(between)  # and the arcs are apart
    for h in G.graph["endpoints"]:
        (router,) = G.succ[h]
        assert gap(h, router) < math.pi / groups  # a host sits beside its router


def test_torus_stays_on_its_grid():
    pos = layout(topologies.torus((4, 5)))
    assert pos["h0"] == (0, 0) and pos["h6"] == (1, 1) and pos["h19"] == (4, 3)


@pytest.mark.parametrize(
    "spec, how",
    [
        ("fat_tree:k=4", "nodes"),
        ("fat_tree:k=16", "summary"),
        ("torus:dims=32x32", "nodes"),
        ("torus:dims=16x16x16", "plane"),
        ("torus:dims=64x64", "summary"),
        ("torus:dims=64x64x2", "plane"),
        ("dragonfly:groups=9,routers_per_group=4,hosts_per_router=2", "nodes"),
        ("gpu_cluster:nodes=64", "summary"),
    ],
)
def test_picture_kind(spec, how):
    assert picture(topologies.from_spec(spec)) == how


@pytest.mark.parametrize("spec", ["fat_tree:k=32", "gpu_cluster:nodes=256,nics_per_node=4,fabric=fat_tree", "torus:dims=32x32x32"])
def test_large_graphs_draw_quickly(tmp_path, spec):
    G = topologies.from_spec(spec)
    assert G.number_of_nodes() > MAX_DRAWN_NODES
    start = time.perf_counter()
    topologies.draw(G, tmp_path / "big.png")
    assert time.perf_counter() - start < 10
    assert (tmp_path / "big.png").read_bytes()[:8] == PNG


def test_tier_summary_shows_utilisation_and_bottlenecks(tmp_path):
    G = topologies.fat_tree(16)
    route = topologies.Router(G).route_ranks(0, 1023)
    util = {arc: 0.3 for arc in G.edges}
    util.update({arc: 1.0 for arc in route})
    plain = topologies.draw(G, tmp_path / "a.png", utilization=util)
    red = topologies.draw(G, tmp_path / "b.png", utilization=util, highlight=route)
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    assert plain.endswith("a.png") and red.endswith("b.png")


def test_bottleneck_arcs():
    util = {("a", "b"): 1.0, ("b", "c"): 0.995, ("c", "d"): 0.98, ("d", "e"): 0.2}
    assert bottleneck_arcs(util) == [("a", "b"), ("b", "c")]  # within 1% of the busiest
    assert bottleneck_arcs(util, [("b", "c"), ("c", "d")]) == [("b", "c")]
    assert bottleneck_arcs({("a", "b"): 0.51, ("b", "c"): 0.512}) == []  # nothing saturated
    assert bottleneck_arcs({}) == []


def test_red_only_where_a_link_binds(tmp_path):
    G = topologies.switch(4)
    half = {arc: 0.5 for arc in G.edges}
    topologies.draw(G, tmp_path / "none.png", utilization=half)
    topologies.draw(G, tmp_path / "candidates.png", utilization=half, highlight=list(G.edges))
    full = {arc: 1.0 for arc in G.edges}
    topologies.draw(G, tmp_path / "full.png", utilization=full)
    topologies.draw(G, tmp_path / "full_red.png", utilization=full, highlight=list(G.edges))
    # half-busy candidates are not painted (only a legend note differs); saturated ones are
    assert (tmp_path / "full.png").read_bytes() != (tmp_path / "full_red.png").read_bytes()
