"""Small direct and single-switch topologies: ring, line, switch (star), fully connected.

Every link is full duplex (two arcs) with ``bandwidth`` bytes/s and ``latency`` seconds per
direction; the endpoints are the hosts ``h0 .. h{n-1}`` in order, each a machine of its own
(``node=i``). Routing defaults to ``ecmp``.
"""

from __future__ import annotations

import networkx as nx

from topologies.builders._common import (
    GBPS_100,
    check_int,
    check_link,
    check_routing,
    check_size,
    hosts,
    set_routing,
)
from topologies.model import Bandwidth, Latency, Routing, add_link, new_topology

__all__ = ["ring", "line", "switch", "fully_connected"]


def ring(
    n: int = 8, *, bandwidth: Bandwidth = GBPS_100, latency: Latency = 1e-6, routing: Routing = "ecmp"
) -> nx.DiGraph:
    """Build ``n`` hosts in a cycle, host i linked to host (i+1) mod n.

    Parameters
    ----------
    n : int
        Number of hosts (>= 1). ``n = 2`` is a single link, ``n = 1`` a lone host.
    bandwidth : float
        Bytes/s per direction of every link (default 100 Gb/s).
    latency : float
        Seconds per link (default 1 us).
    routing : {"ecmp", "dmodk", "shortest"}
        Routing policy, kept in ``G.graph["routing"]`` (default ``"ecmp"``; see
        :mod:`topologies.routing`).

    Returns
    -------
    networkx.DiGraph
        ``n`` hosts and ``n`` links (``n - 1`` for ``n <= 2``), every host of degree 2.

    Raises
    ------
    ValueError
        An argument out of range (the message names it and the allowed values).

    Examples
    --------
    >>> G = ring(5)
    >>> G.graph["name"], G.number_of_nodes(), G.number_of_edges()
    ('ring:n=5', 5, 10)
    >>> G.graph["endpoints"][:3]
    ['h0', 'h1', 'h2']
    """
    check_int("n", n)
    check_size(f"n={n}", n, n)
    bw, lat = check_link(bandwidth, latency)
    check_routing(routing)
    G = new_topology(f"ring:n={n}")
    h = hosts(G, n)
    for i in range(n if n > 2 else n - 1):
        add_link(G, h[i], h[(i + 1) % n], bw, lat)
    set_routing(G, routing, "ecmp")
    return G


def line(
    n: int = 8, *, bandwidth: Bandwidth = GBPS_100, latency: Latency = 1e-6, routing: Routing = "ecmp"
) -> nx.DiGraph:
    """Build ``n`` hosts in a chain, host i linked to host i+1.

    Parameters
    ----------
    n : int
        Number of hosts (>= 1).
    bandwidth : float
        Bytes/s per direction of every link (default 100 Gb/s).
    latency : float
        Seconds per link (default 1 us).
    routing : {"ecmp", "dmodk", "shortest"}
        Routing policy, kept in ``G.graph["routing"]`` (default ``"ecmp"``; see
        :mod:`topologies.routing`).

    Returns
    -------
    networkx.DiGraph
        ``n`` hosts and ``n - 1`` links; the two ends have degree 1.

    Raises
    ------
    ValueError
        An argument out of range (the message names it and the allowed values).

    Examples
    --------
    >>> G = line(4)
    >>> G.number_of_edges() // 2, G.out_degree("h0"), G.out_degree("h1")
    (3, 1, 2)
    """
    check_int("n", n)
    check_size(f"n={n}", n, n)
    bw, lat = check_link(bandwidth, latency)
    check_routing(routing)
    G = new_topology(f"line:n={n}")
    h = hosts(G, n)
    for i in range(n - 1):
        add_link(G, h[i], h[i + 1], bw, lat)
    set_routing(G, routing, "ecmp")
    return G


def switch(
    n: int = 8, *, bandwidth: Bandwidth = GBPS_100, latency: Latency = 1e-6, routing: Routing = "ecmp"
) -> nx.DiGraph:
    """Build a star: ``n`` hosts on one non-blocking switch ``sw0``.

    Any two hosts are two arcs apart; the switch itself never limits bandwidth (only the host
    links do).

    Parameters
    ----------
    n : int
        Number of hosts (>= 1).
    bandwidth : float
        Bytes/s per direction of every host link (default 100 Gb/s).
    latency : float
        Seconds per link (default 1 us), so host to host is ``2 * latency``.
    routing : {"ecmp", "dmodk", "shortest"}
        Routing policy, kept in ``G.graph["routing"]`` (default ``"ecmp"``; see
        :mod:`topologies.routing`).

    Returns
    -------
    networkx.DiGraph
        ``n`` hosts, one switch of degree ``n``, ``n`` links.

    Raises
    ------
    ValueError
        An argument out of range (the message names it and the allowed values).

    Examples
    --------
    >>> G = switch(6)
    >>> G.nodes["sw0"]["kind"], G.out_degree("sw0"), G.number_of_edges() // 2
    ('switch', 6, 6)
    """
    check_int("n", n)
    check_size(f"n={n}", n + 1, n)
    bw, lat = check_link(bandwidth, latency)
    check_routing(routing)
    G = new_topology(f"switch:n={n}")
    h = hosts(G, n)
    G.add_node("sw0", kind="switch", layer=1, role="switch")
    for x in h:
        add_link(G, x, "sw0", bw, lat)
    set_routing(G, routing, "ecmp")
    return G


def fully_connected(
    n: int = 8, *, bandwidth: Bandwidth = GBPS_100, latency: Latency = 1e-6, routing: Routing = "ecmp"
) -> nx.DiGraph:
    """Build ``n`` hosts with a dedicated link between every pair (a complete graph).

    This is the network the closed-form alpha-beta models assume.

    Parameters
    ----------
    n : int
        Number of hosts (>= 1).
    bandwidth : float
        Bytes/s per direction of every link (default 100 Gb/s).
    latency : float
        Seconds per link (default 1 us).
    routing : {"ecmp", "dmodk", "shortest"}
        Routing policy, kept in ``G.graph["routing"]`` (default ``"ecmp"``; see
        :mod:`topologies.routing`).

    Returns
    -------
    networkx.DiGraph
        ``n`` hosts of degree ``n - 1``, ``n (n - 1) / 2`` links.

    Raises
    ------
    ValueError
        An argument out of range (the message names it and the allowed values).

    Examples
    --------
    >>> G = fully_connected(5)
    >>> G.number_of_edges() // 2, {d for _, d in G.out_degree()}
    (10, {4})
    """
    check_int("n", n)
    check_size(f"n={n}", n, n * (n - 1) // 2)
    bw, lat = check_link(bandwidth, latency)
    check_routing(routing)
    G = new_topology(f"fully_connected:n={n}")
    h = hosts(G, n)
    for i in range(n):
        for j in range(i + 1, n):
            add_link(G, h[i], h[j], bw, lat)
    set_routing(G, routing, "ecmp")
    return G
