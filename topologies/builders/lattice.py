"""Lattices of hosts (direct networks, the hosts forward): torus, mesh, hypercube.

Hosts are numbered in row-major order of their coordinates: in ``dims = (a, b)`` host ``h{i}`` sits at
``(i // b, i % b)``; the endpoints are ``h0 .. h{N-1}`` in that order. Up to three dimensions, hosts
carry their grid coordinates as attributes ``x`` (last dimension), ``y`` and ``z``. Each host is a
machine of its own (``node=i``). The graph keeps its grid as ``dims`` (``"4x4"``) and ``wrap``, so
that dimension-order routing (``routing="dor"``, the default of torus and mesh) can follow it; the
hypercube is the grid ``2x2x...x2`` and defaults to ``ecmp``.
"""

from __future__ import annotations

import math

import networkx as nx

from topologies.builders._common import (
    GBPS_100,
    check_dims,
    check_int,
    check_link,
    check_routing,
    check_size,
    hosts,
    set_routing,
)
from topologies.model import Bandwidth, Latency, LatticeRouting, add_link, new_topology

__all__ = ["torus", "mesh", "hypercube"]


def _lattice(
    kind: str, dims: tuple[int, ...], wrap: bool, bw: float, lat: float, routing: str
) -> nx.DiGraph:
    total = math.prod(dims)
    check_size(f"dims={'x'.join(map(str, dims))}", total, total * len(dims))
    check_routing(routing, lattice=True)
    G = new_topology(f"{kind}:dims={'x'.join(map(str, dims))}")
    G.graph["dims"] = "x".join(map(str, dims))
    G.graph["wrap"] = wrap
    h = hosts(G, total)
    strides = [math.prod(dims[k + 1 :]) for k in range(len(dims))]
    if len(dims) <= 3:  # grid coordinates x, y, z (for drawing), last dimension first
        for i in range(total):
            coords = [(i // strides[k]) % dims[k] for k in reversed(range(len(dims)))]
            G.nodes[h[i]].update(zip("xyz", coords, strict=False))
    for i in range(total):
        for k, size in enumerate(dims):
            c = (i // strides[k]) % size
            if c + 1 < size:  # the neighbour one step up along dimension k
                add_link(G, h[i], h[i + strides[k]], bw, lat)
            elif wrap and size > 2:  # wrap-around link; for size 2 it would duplicate the one above
                add_link(G, h[i], h[i - c * strides[k]], bw, lat)
    set_routing(G, routing, "dor")
    return G


def torus(
    dims: tuple[int, ...] = (4, 4),
    *,
    bandwidth: Bandwidth = GBPS_100,
    latency: Latency = 1e-6,
    routing: LatticeRouting = "dor",
) -> nx.DiGraph:
    """Build a torus: a mesh with wrap-around links in every dimension.

    Parameters
    ----------
    dims : tuple of int
        Size of each dimension (each >= 1), e.g. ``(4, 4)`` or ``(8, 8, 8)``. In the spec string:
        ``dims=4x4``. A dimension of size 2 has one link per line (no duplicate wrap link), of size 1
        none.
    bandwidth : float
        Bytes/s per direction of every link (default 100 Gb/s).
    latency : float
        Seconds per link (default 1 us).
    routing : {"dor", "ecmp", "dmodk", "shortest"}
        Routing policy, kept in ``G.graph["routing"]`` (default ``"dor"``: dimension-order, one
        dimension at a time, ``x`` (the last entry of ``dims``) first, the shorter way around each
        ring; see :mod:`topologies.routing`).

    Returns
    -------
    networkx.DiGraph
        ``prod(dims)`` hosts; with every dimension > 2, each host has degree ``2 * len(dims)``.

    Raises
    ------
    ValueError
        An argument out of range (the message names it and the allowed values).

    Examples
    --------
    >>> G = torus((3, 4))
    >>> G.number_of_nodes(), G.number_of_edges() // 2, {d for _, d in G.out_degree()}
    (12, 24, {4})
    """
    dims = check_dims("dims", dims)
    return _lattice("torus", dims, True, *check_link(bandwidth, latency), routing)


def mesh(
    dims: tuple[int, ...] = (4, 4),
    *,
    bandwidth: Bandwidth = GBPS_100,
    latency: Latency = 1e-6,
    routing: LatticeRouting = "dor",
) -> nx.DiGraph:
    """Build a mesh (grid) of hosts without wrap-around links.

    Parameters
    ----------
    dims : tuple of int
        Size of each dimension (each >= 1), e.g. ``(4, 4)``; spec string ``dims=4x4``.
    bandwidth : float
        Bytes/s per direction of every link (default 100 Gb/s).
    latency : float
        Seconds per link (default 1 us).
    routing : {"dor", "ecmp", "dmodk", "shortest"}
        Routing policy, kept in ``G.graph["routing"]`` (default ``"dor"``: dimension-order, one
        dimension at a time, ``x`` (the last entry of ``dims``) first; see
        :mod:`topologies.routing`).

    Returns
    -------
    networkx.DiGraph
        ``prod(dims)`` hosts; ``sum_k (d_k - 1) * prod(dims) / d_k`` links.

    Raises
    ------
    ValueError
        An argument out of range (the message names it and the allowed values).

    Examples
    --------
    >>> G = mesh((3, 4))
    >>> G.number_of_edges() // 2, sorted({d for _, d in G.out_degree()})
    (17, [2, 3, 4])
    """
    dims = check_dims("dims", dims)
    return _lattice("mesh", dims, False, *check_link(bandwidth, latency), routing)


def hypercube(
    d: int = 3, *, bandwidth: Bandwidth = GBPS_100, latency: Latency = 1e-6, routing: LatticeRouting = "ecmp"
) -> nx.DiGraph:
    """Build a ``d``-dimensional hypercube: ``2**d`` hosts, host i linked to host ``i ^ (1 << b)``.

    Parameters
    ----------
    d : int
        Dimension (>= 0); ``d = 0`` is a lone host.
    bandwidth : float
        Bytes/s per direction of every link (default 100 Gb/s).
    latency : float
        Seconds per link (default 1 us).
    routing : {"ecmp", "dor", "dmodk", "shortest"}
        Routing policy, kept in ``G.graph["routing"]`` (default ``"ecmp"``; ``"dor"`` is e-cube
        routing: the differing address bits corrected from the lowest up; see
        :mod:`topologies.routing`).

    Returns
    -------
    networkx.DiGraph
        ``2**d`` hosts of degree ``d``, ``d * 2**(d-1)`` links.

    Raises
    ------
    ValueError
        An argument out of range (the message names it and the allowed values).

    Examples
    --------
    >>> G = hypercube(4)
    >>> G.number_of_nodes(), G.number_of_edges() // 2, {k for _, k in G.out_degree()}
    (16, 32, {4})
    """
    check_int("d", d, minimum=0)
    check_size(f"d={d}", 2**d, d * 2 ** max(d - 1, 0))
    bw, lat = check_link(bandwidth, latency)
    check_routing(routing, lattice=True)
    G = new_topology(f"hypercube:d={d}")
    G.graph["dims"] = "x".join(["2"] * d) or "1"
    G.graph["wrap"] = False
    h = hosts(G, 2**d)
    for i in range(2**d):
        for b in range(d):
            j = i ^ (1 << b)
            if i < j:
                add_link(G, h[i], h[j], bw, lat)
    set_routing(G, routing, "ecmp")
    return G
