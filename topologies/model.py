"""The topology model: what a graph must look like to be a collsim topology.

A topology is a :class:`networkx.DiGraph`.

Arcs and orientation
    Every physical full-duplex link is **two arcs**, ``(u, v)`` and ``(v, u)``. The arc ``(u, v)``
    carries data *from* ``u`` *to* ``v``; its attributes describe that direction only, so the two
    directions of a link can differ. Routes are lists of such arcs, in travel order.

Arc attributes (both required, Python ``float``)
    ``bandwidth``
        Capacity of the arc in **bytes per second** (decimal: 100 Gb/s = 12.5e9 bytes/s).
    ``latency``
        Propagation plus switching delay of the arc in **seconds** (1 us = 1e-6).

Node attributes
    ``kind``
        One of :data:`KINDS`: ``"host"``, ``"gpu"``, ``"nic"`` or ``"switch"``. Hosts and GPUs run
        ranks; NICs and switches only forward. (In direct networks such as a torus the hosts forward
        too.) Builders also set ``layer`` (int, 0 = endpoints, growing towards the core; used for
        drawing) and ``role`` (free text such as ``"edge"``, ``"spine"``, ``"nvswitch"``).
    ``node``
        On endpoints (and on the NICs and switches inside a machine): which machine (server) the
        node is in, an int >= 0. Ranks whose endpoints share a ``node`` share a machine (NVLink or
        shared memory between them). The single-host builders give endpoint ``i`` the node ``i``;
        ``gpu_cluster`` and ``cluster`` give the server index. Optional in hand-built graphs: an
        endpoint without it is a machine of its own (see :func:`endpoint_nodes`).
    ``nvls``, ``sharp``
        Optional switch capabilities for in-network reduction: ``nvls=True`` on an NVSwitch,
        ``sharp=True`` on a fabric switch (the simulator costs such algorithms; nothing runs them).

Graph attributes
    ``name``
        Short description, e.g. ``"fat_tree:k=4"``.
    ``endpoints``
        Ordered list of node ids: **rank i runs on** ``endpoints[i]``.
    ``routing`` (optional)
        The routing policy a :class:`~topologies.Router` uses by default: one of :data:`ROUTINGS`
        (``"ecmp"`` when absent); see :mod:`topologies.routing`.
    ``nics_per_node`` (optional)
        NICs per machine (default 1), see :func:`nics_per_node`.
    ``dims``, ``wrap`` (lattices)
        Grid size as ``"4x4"`` (row-major: the last dimension varies fastest along the endpoint
        list) and whether the grid wraps around (torus) or not (mesh); dimension-order routing
        needs them.

Node ids of the builders are short ASCII strings (``"h0"``, ``"core3"``, ``"n1_gpu7"``) so that they
survive GraphML and can name Linux network namespaces.

>>> G = new_topology("pair", endpoints=["a", "b"])
>>> G.add_nodes_from(["a", "b"], kind="host")
>>> add_link(G, "a", "b", bandwidth=12.5e9, latency=1e-6)
>>> sorted(G.edges)
[('a', 'b'), ('b', 'a')]
>>> validate(G, nranks=2)
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Annotated, Literal

import networkx as nx

__all__ = [
    "KINDS",
    "ROUTINGS",
    "Bandwidth",
    "LatticeRouting",
    "Latency",
    "Routing",
    "TopologyError",
    "add_link",
    "as_topology",
    "endpoint_nodes",
    "endpoints",
    "links",
    "new_topology",
    "nics_per_node",
    "validate",
]

#: Node kinds a topology may contain.
KINDS: tuple[str, ...] = ("host", "gpu", "nic", "switch")

#: A bandwidth in bytes/s (the spec parser accepts units such as ``100Gbps`` for these).
Bandwidth = Annotated[float, "bandwidth"]
#: A latency in seconds (the spec parser accepts units such as ``1us`` for these).
Latency = Annotated[float, "latency"]
#: A routing policy for any graph (see :mod:`topologies.routing`).
Routing = Literal["ecmp", "dmodk", "shortest"]
#: A routing policy for a lattice (torus, mesh, hypercube): dimension-order routing too.
LatticeRouting = Literal["dor", "ecmp", "dmodk", "shortest"]
#: Routing policies a topology may name in its ``routing`` graph attribute.
ROUTINGS: tuple[str, ...] = ("ecmp", "dmodk", "shortest", "dor")


class TopologyError(ValueError):
    """A graph that breaks the topology model (the message names the node, arc or attribute)."""


def new_topology(name: str, endpoints: Sequence[Hashable] = ()) -> nx.DiGraph:
    """Return an empty topology graph with its ``name`` and ``endpoints`` set."""
    return nx.DiGraph(name=name, endpoints=list(endpoints))


def add_link(G: nx.DiGraph, u: Hashable, v: Hashable, bandwidth: float, latency: float, **attrs) -> None:
    """Add the full-duplex link ``u <-> v`` as the two arcs ``(u, v)`` and ``(v, u)``.

    Both arcs get the same ``bandwidth`` (bytes/s), ``latency`` (s) and extra ``attrs``.
    """
    data = {"bandwidth": float(bandwidth), "latency": float(latency), **attrs}
    G.add_edge(u, v, **data)
    G.add_edge(v, u, **data)


def endpoints(G: nx.DiGraph) -> list:
    """Return the ordered endpoints of ``G`` (rank i runs on ``endpoints(G)[i]``)."""
    return list(G.graph.get("endpoints", []))


def endpoint_nodes(G: nx.DiGraph) -> list[int]:
    """Return the machine (``node`` attribute) of every endpoint, in endpoint (rank) order.

    An endpoint without a ``node`` attribute is a machine of its own: it gets the next id above
    every id in use, in endpoint order.

    Examples
    --------
    >>> from topologies import gpu_cluster, ring
    >>> endpoint_nodes(gpu_cluster(nodes=2, gpus_per_node=3))
    [0, 0, 0, 1, 1, 1]
    >>> endpoint_nodes(ring(3))
    [0, 1, 2]
    """
    eps = G.graph.get("endpoints", [])
    ids = [G.nodes[e].get("node") for e in eps]
    fresh = 1 + max((i for i in ids if i is not None), default=-1)
    out = []
    for i in ids:
        if i is None:
            i, fresh = fresh, fresh + 1
        out.append(int(i))
    return out


def nics_per_node(G: nx.DiGraph) -> int:
    """Return the number of NICs per machine: the graph attribute ``nics_per_node``, default 1.

    Examples
    --------
    >>> from topologies import gpu_cluster
    >>> nics_per_node(gpu_cluster(nodes=2, gpus_per_node=8, nics_per_node=4))
    4
    """
    return int(G.graph.get("nics_per_node", 1))


def links(G: nx.DiGraph) -> Iterator[tuple]:
    """Yield each full-duplex link once, as the arc ``(u, v)`` seen first in ``G``'s arc order."""
    seen: set = set()
    for u, v in G.edges:
        if (v, u) not in seen:
            seen.add((u, v))
            yield (u, v)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate(G: nx.DiGraph, nranks: int | None = None) -> None:
    """Check that ``G`` is a usable topology; raise :class:`TopologyError` naming the first fault.

    Parameters
    ----------
    G : networkx.DiGraph
        The topology.
    nranks : int, optional
        Number of ranks to place; must not exceed the number of endpoints.

    Raises
    ------
    TopologyError
        Not a DiGraph; missing ``name`` or ``endpoints``; duplicate or unknown endpoints; a node
        without a valid ``kind``; an endpoint whose ``node`` is not an int >= 0; a ``routing`` or
        ``nics_per_node`` graph attribute out of range; a self-loop; an arc without its reverse arc; an arc whose
        ``bandwidth`` is missing, not a number, ``<= 0`` or infinite, or whose ``latency`` is missing, not a
        number, negative or infinite; endpoints that cannot all reach each other; ``nranks`` larger
        than the number of endpoints.

    Examples
    --------
    >>> from topologies import ring
    >>> validate(ring(4), nranks=4)
    >>> validate(ring(4), nranks=5)
    Traceback (most recent call last):
    ...
    topologies.model.TopologyError: nranks=5 exceeds the 4 endpoints of topology 'ring:n=4'
    """
    if not isinstance(G, nx.DiGraph) or G.is_multigraph():
        raise TopologyError(f"a topology must be a networkx.DiGraph, got {type(G).__name__}")
    name = G.graph.get("name")
    if not isinstance(name, str) or not name:
        raise TopologyError("graph attribute 'name' (a non-empty str) is missing")
    eps = G.graph.get("endpoints")
    if not isinstance(eps, (list, tuple)) or not eps:
        raise TopologyError(
            f"topology {name!r}: graph attribute 'endpoints' (a non-empty list of nodes) is missing"
        )
    if len(set(eps)) != len(eps):
        raise TopologyError(f"topology {name!r}: 'endpoints' lists a node more than once")
    for e in eps:
        if e not in G:
            raise TopologyError(f"topology {name!r}: endpoint {e!r} is not a node of the graph")
    for n, kind in G.nodes(data="kind"):
        if kind not in KINDS:
            raise TopologyError(
                f"topology {name!r}: node {n!r} has kind {kind!r}; allowed: {', '.join(KINDS)}"
            )
    for e in eps:
        machine = G.nodes[e].get("node")
        if machine is not None and (not isinstance(machine, int) or isinstance(machine, bool) or machine < 0):
            raise TopologyError(
                f"topology {name!r}: endpoint {e!r} has node={machine!r}; the machine index must be an int >= 0"
            )
    routing = G.graph.get("routing")
    if routing is not None and routing not in ROUTINGS:
        raise TopologyError(
            f"topology {name!r}: graph attribute routing={routing!r}; allowed: {', '.join(ROUTINGS)}"
        )
    nics = G.graph.get("nics_per_node")
    if nics is not None and (not isinstance(nics, int) or isinstance(nics, bool) or nics < 1):
        raise TopologyError(
            f"topology {name!r}: graph attribute nics_per_node={nics!r}; it must be an int >= 1"
        )
    for u, v, d in G.edges(data=True):
        if u == v:
            raise TopologyError(f"topology {name!r}: self-loop arc {(u, v)!r}")
        if not G.has_edge(v, u):
            raise TopologyError(
                f"topology {name!r}: arc {(u, v)!r} has no reverse arc {(v, u)!r}; a full-duplex link is two arcs"
            )
        bw = d.get("bandwidth")
        if not _is_number(bw) or not 0 < bw < math.inf:
            raise TopologyError(
                f"topology {name!r}: arc {(u, v)!r} bandwidth must be a finite number > 0 (bytes/s), got {bw!r}"
            )
        lat = d.get("latency")
        if not _is_number(lat) or not 0 <= lat < math.inf:
            raise TopologyError(
                f"topology {name!r}: arc {(u, v)!r} latency must be a finite number >= 0 (seconds), got {lat!r}"
            )
    if len(eps) > 1:
        # All endpoints must reach each other: they must lie in one strongly connected component.
        component = nx.node_connected_component(G.to_undirected(as_view=True), eps[0])
        stray = next((e for e in eps if e not in component), None)
        if stray is not None:
            raise TopologyError(f"topology {name!r}: endpoint {stray!r} cannot reach endpoint {eps[0]!r}")
    if nranks is not None:
        if not isinstance(nranks, int) or isinstance(nranks, bool) or nranks < 1:
            raise TopologyError(f"nranks must be a positive integer, got {nranks!r}")
        if nranks > len(eps):
            raise TopologyError(f"nranks={nranks} exceeds the {len(eps)} endpoints of topology {name!r}")


def as_topology(
    graph: nx.Graph,
    *,
    bandwidth: Bandwidth = 12.5e9,
    latency: Latency = 1e-6,
    endpoints: Iterable[Hashable] | None = None,
    name: str | None = None,
) -> nx.DiGraph:
    """Turn any networkx graph into a topology, filling in what the model needs.

    Undirected edges become two arcs. Missing ``bandwidth``/``latency`` get the defaults, missing
    ``kind`` becomes ``"host"``. Endpoints default to the graph's ``endpoints`` attribute, else every
    node whose kind is host or gpu, in node order. The result is validated.

    Examples
    --------
    >>> import networkx as nx
    >>> G = as_topology(nx.petersen_graph(), name="petersen")
    >>> G.number_of_edges(), len(G.graph["endpoints"])
    (30, 10)
    """
    if graph.is_multigraph():
        raise TopologyError("multigraphs are not topologies: merge parallel links into one arc per direction")
    G = nx.DiGraph(graph)  # undirected edges become two arcs, attributes copied
    G.graph["name"] = name or graph.graph.get("name") or "graph"
    for _n, data in G.nodes(data=True):
        data.setdefault("kind", "host")
    for _u, _v, data in G.edges(data=True):
        data.setdefault("bandwidth", float(bandwidth))
        data.setdefault("latency", float(latency))
    if endpoints is None:
        endpoints = graph.graph.get("endpoints") or [
            n for n, k in G.nodes(data="kind") if k in ("host", "gpu")
        ]
    G.graph["endpoints"] = list(endpoints)
    validate(G)
    return G
