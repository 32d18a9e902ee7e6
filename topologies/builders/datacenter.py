"""Switched data-centre fabrics: fat tree, leaf-spine with oversubscription, dragonfly.

Hosts are ``h0 .. h{N-1}`` (layer 0), numbered switch by switch, and are the endpoints in that order,
so consecutive ranks share a first-hop switch; each host is a machine of its own (``node=i``).

Routing defaults: ``dmodk`` (destination-mod-k, as InfiniBand's fat-tree routing) for the fat tree
and the leaf-spine, ``ecmp`` for the dragonfly.
"""

from __future__ import annotations

import networkx as nx

from topologies.builders._common import (
    GBPS_100,
    check_int,
    check_link,
    check_positive,
    check_routing,
    check_size,
    hosts,
    set_routing,
)
from topologies.model import Bandwidth, Latency, Routing, add_link, new_topology

__all__ = ["fat_tree", "leaf_spine", "dragonfly"]


def fat_tree(
    k: int = 4, *, bandwidth: Bandwidth = GBPS_100, latency: Latency = 1e-6, routing: Routing = "dmodk"
) -> nx.DiGraph:
    """Build a three-tier k-ary fat tree (Al-Fares et al., 2008) of ``k**3 / 4`` hosts.

    ``k`` pods each hold ``k/2`` edge and ``k/2`` aggregation switches; every edge switch serves
    ``k/2`` hosts and links to every aggregation switch of its pod; aggregation switch ``a`` of each
    pod links to core switches ``a*k/2 .. a*k/2 + k/2 - 1`` of the ``(k/2)**2`` cores. All links are
    equal, so the tree has full bisection bandwidth. Node ids: ``h{i}``, ``edge{i}``, ``agg{i}``,
    ``core{i}``; switches carry ``role`` and (edge, agg) ``pod``.

    Parameters
    ----------
    k : int
        Switch radix, an even integer >= 2.
    bandwidth : float
        Bytes/s per direction of every link (default 100 Gb/s).
    latency : float
        Seconds per link (default 1 us).
    routing : {"dmodk", "ecmp", "shortest"}
        Routing policy, kept in ``G.graph["routing"]``. Default ``"dmodk"``: each up-going hop picks
        its uplink by the destination's rank mod the number of uplinks (InfiniBand's fat-tree
        routing), so shifts and rank-ordered exchanges use disjoint uplinks. See
        :mod:`topologies.routing`.

    Returns
    -------
    networkx.DiGraph
        ``k**3/4`` hosts, ``5 k**2 / 4`` switches of degree ``k``, ``3 k**3 / 4`` links.

    Raises
    ------
    ValueError
        An argument out of range (the message names it and the allowed values).

    Examples
    --------
    >>> G = fat_tree(4)
    >>> len(G.graph["endpoints"]), G.number_of_nodes() - 16, G.number_of_edges() // 2
    (16, 20, 48)
    """
    check_int("k", k, minimum=2, even=True)
    check_size(f"k={k}", k**3 // 4 + 5 * k * k // 4, 3 * k**3 // 4)
    bw, lat = check_link(bandwidth, latency)
    check_routing(routing)
    half = k // 2
    G = new_topology(f"fat_tree:k={k}")
    h = hosts(G, k**3 // 4)
    core = [f"core{j}" for j in range(half * half)]
    G.add_nodes_from(core, kind="switch", layer=3, role="core")
    for pod in range(k):
        edges = [f"edge{pod * half + e}" for e in range(half)]
        aggs = [f"agg{pod * half + a}" for a in range(half)]
        G.add_nodes_from(edges, kind="switch", layer=1, role="edge", pod=pod)
        G.add_nodes_from(aggs, kind="switch", layer=2, role="aggregation", pod=pod)
        for e, edge in enumerate(edges):
            for x in range(half):
                add_link(G, h[(pod * half + e) * half + x], edge, bw, lat)
            for agg in aggs:
                add_link(G, edge, agg, bw, lat)
        for a, agg in enumerate(aggs):
            for c in range(half):
                add_link(G, agg, core[a * half + c], bw, lat)
    set_routing(G, routing, "dmodk")
    return G


def leaf_spine(
    leaves: int = 4,
    spines: int = 2,
    hosts_per_leaf: int = 8,
    oversubscription: float = 1.0,
    *,
    bandwidth: Bandwidth = GBPS_100,
    latency: Latency = 1e-6,
    routing: Routing = "dmodk",
) -> nx.DiGraph:
    """Build a two-tier leaf-spine (folded Clos) fabric with a given oversubscription.

    Every leaf serves ``hosts_per_leaf`` hosts at ``bandwidth`` and has one uplink to every spine.
    The uplink bandwidth is set so that
    ``hosts_per_leaf * bandwidth / (spines * uplink_bandwidth) == oversubscription``
    (1 = non-blocking, 3 = the common 3:1). Node ids: ``h{i}``, ``leaf{i}``, ``spine{i}``; uplink arcs
    carry ``role="uplink"``.

    Parameters
    ----------
    leaves, spines, hosts_per_leaf : int
        Counts, each >= 1.
    oversubscription : float
        Host bandwidth over uplink bandwidth per leaf, > 0.
    bandwidth : float
        Bytes/s per direction of every host link (default 100 Gb/s).
    latency : float
        Seconds per link (default 1 us).
    routing : {"dmodk", "ecmp", "shortest"}
        Routing policy, kept in ``G.graph["routing"]``. Default ``"dmodk"``: each up-going hop picks
        its uplink by the destination's rank mod the number of uplinks (InfiniBand's fat-tree
        routing), so shifts and rank-ordered exchanges use disjoint uplinks. See
        :mod:`topologies.routing`.

    Returns
    -------
    networkx.DiGraph
        ``leaves * hosts_per_leaf`` hosts, ``leaves + spines`` switches,
        ``leaves * (hosts_per_leaf + spines)`` links.

    Raises
    ------
    ValueError
        An argument out of range (the message names it and the allowed values).

    Examples
    --------
    >>> G = leaf_spine(leaves=4, spines=2, hosts_per_leaf=6, oversubscription=3)
    >>> G.edges["leaf0", "spine0"]["bandwidth"] / G.edges["h0", "leaf0"]["bandwidth"]
    1.0
    >>> len(G.graph["endpoints"]), G.number_of_edges() // 2
    (24, 32)
    """
    check_int("leaves", leaves)
    check_int("spines", spines)
    check_int("hosts_per_leaf", hosts_per_leaf)
    check_size(
        f"leaves={leaves},spines={spines},hosts_per_leaf={hosts_per_leaf}",
        leaves * (hosts_per_leaf + 1) + spines,
        leaves * (hosts_per_leaf + spines),
    )
    over = check_positive("oversubscription", oversubscription)
    bw, lat = check_link(bandwidth, latency)
    check_routing(routing)
    uplink = hosts_per_leaf * bw / (spines * over)
    G = new_topology(
        f"leaf_spine:leaves={leaves},spines={spines},hosts_per_leaf={hosts_per_leaf},oversubscription={over:g}"
    )
    h = hosts(G, leaves * hosts_per_leaf)
    G.add_nodes_from((f"spine{s}" for s in range(spines)), kind="switch", layer=2, role="spine")
    for leaf in range(leaves):
        G.add_node(f"leaf{leaf}", kind="switch", layer=1, role="leaf")
        for x in range(hosts_per_leaf):
            add_link(G, h[leaf * hosts_per_leaf + x], f"leaf{leaf}", bw, lat)
        for s in range(spines):
            add_link(G, f"leaf{leaf}", f"spine{s}", uplink, lat, role="uplink")
    set_routing(G, routing, "dmodk")
    return G


def dragonfly(
    groups: int = 5,
    routers_per_group: int = 4,
    hosts_per_router: int = 2,
    *,
    bandwidth: Bandwidth = GBPS_100,
    latency: Latency = 1e-6,
    global_bandwidth: Bandwidth | None = None,
    global_latency: Latency | None = None,
    routing: Routing = "ecmp",
) -> nx.DiGraph:
    """Build a dragonfly (Kim et al., 2008): all-to-all routers in a group, one global link per group pair.

    Inside a group every router links to every other (local links). Every pair of groups is joined
    by exactly one global link, placed by the *consecutive* arrangement: group ``i`` numbers its
    global ports ``p = 0 .. groups-2``, port ``p`` leads to group ``(i + p + 1) mod groups`` and sits
    on router ``p // ceil((groups-1) / routers_per_group)``. Routers are ``g{group}r{router}``
    (``role="router"``, attribute ``group``); global arcs carry ``role="global"``.

    Parameters
    ----------
    groups, routers_per_group, hosts_per_router : int
        Counts, each >= 1.
    bandwidth : float
        Bytes/s per direction of host and local links (default 100 Gb/s).
    latency : float
        Seconds per host and local link (default 1 us).
    global_bandwidth, global_latency : float, optional
        Same for global links (default: as local links).
    routing : {"ecmp", "dmodk", "shortest"}
        Routing policy, kept in ``G.graph["routing"]`` (default ``"ecmp"``; see
        :mod:`topologies.routing`).

    Returns
    -------
    networkx.DiGraph
        ``groups * routers_per_group * hosts_per_router`` hosts; links: one per host,
        ``routers_per_group * (routers_per_group - 1) / 2`` per group, ``groups * (groups - 1) / 2``
        global.

    Raises
    ------
    ValueError
        An argument out of range (the message names it and the allowed values).

    Examples
    --------
    >>> G = dragonfly(groups=5, routers_per_group=4, hosts_per_router=2)
    >>> len(G.graph["endpoints"]), sum(1 for *_, r in G.edges(data="role") if r == "global") // 2
    (40, 10)
    """
    check_int("groups", groups)
    check_int("routers_per_group", routers_per_group)
    check_int("hosts_per_router", hosts_per_router)
    check_size(
        f"groups={groups},routers_per_group={routers_per_group},hosts_per_router={hosts_per_router}",
        groups * routers_per_group * (hosts_per_router + 1),
        groups * routers_per_group * (hosts_per_router + routers_per_group) + groups * groups,
    )
    bw, lat = check_link(bandwidth, latency)
    check_routing(routing)
    gbw = bw if global_bandwidth is None else check_positive("global_bandwidth", global_bandwidth)
    glat = (
        lat if global_latency is None else check_positive("global_latency", global_latency, allow_zero=True)
    )
    a, p = routers_per_group, hosts_per_router
    G = new_topology(f"dragonfly:groups={groups},routers_per_group={a},hosts_per_router={p}")
    h = hosts(G, groups * a * p)
    router = [[f"g{g}r{r}" for r in range(a)] for g in range(groups)]
    for g in range(groups):
        G.add_nodes_from(router[g], kind="switch", layer=1, role="router", group=g)
        for r in range(a):
            for x in range(p):
                add_link(G, h[(g * a + r) * p + x], router[g][r], bw, lat)
            for r2 in range(r + 1, a):
                add_link(G, router[g][r], router[g][r2], bw, lat, role="local")
    ports_per_router = -(-(groups - 1) // a)  # ceil
    for i in range(groups):
        for j in range(i + 1, groups):
            ri = ((j - i - 1) % groups) // ports_per_router
            rj = ((i - j - 1) % groups) // ports_per_router
            add_link(G, router[i][ri], router[j][rj], gbw, glat, role="global")
    set_routing(G, routing, "ecmp")
    return G
