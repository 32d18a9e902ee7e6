"""Deterministic shortest-path routing with ECMP.

Rules
-----
Path cost
    ``weight="latency"`` (default): the sum of arc latencies, counted in whole picoseconds, plus one
    picosecond per arc so that among equally fast paths the one with fewer hops wins.
    ``weight="hops"``: the number of arcs.
Equal-cost multipath (ECMP)
    A flow ``(src, dst)`` follows only shortest paths. At every node ``u`` on the way, the next hop is
    one of the neighbours ``v`` that lie on a shortest path to ``dst``; these candidates are sorted by
    ``str(v)`` and the flow takes candidate number ``crc32(str(u), seed=crc32(f"{src}->{dst}")) mod
    count``. Like a hardware switch hashing a flow's header, every node hashes the same flow key
    with its own id, so different flows spread over the equal-cost paths while one flow always
    takes one path (no packet reordering), identically in every process (``crc32``, unlike
    ``hash``, is not salted).
Caching
    Routes are cached per ``(src, dst)``. Distances to a destination come from Dijkstra in
    :mod:`scipy.sparse.csgraph` on the reversed graph, run with a growing distance limit (so nearby
    pairs explore only their neighbourhood) and kept in a bounded cache per destination; a
    destination with a single incoming arc (a host on its switch) shares the distances of that
    neighbour, so routing all hosts of a fat tree costs at most a few Dijkstra runs per edge switch.

>>> from topologies import fat_tree
>>> r = Router(fat_tree(4))
>>> r.route("h0", "h1")
[('h0', 'edge0'), ('edge0', 'h1')]
>>> len(r.route_ranks(0, 15))  # another pod: up to a core switch and down again
6
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Hashable

import networkx as nx
import numpy as np

from topologies.model import TopologyError, validate

__all__ = ["Router", "WEIGHTS"]

#: Path costs a :class:`Router` can minimise.
WEIGHTS: tuple[str, ...] = ("latency", "hops")

_PICOSECOND = 1e-12
_CACHE_BYTES = 128 * 2**20  # memory for cached distance arrays


class Router:
    """Route flows on a topology along shortest paths, spreading equal-cost paths deterministically.

    Parameters
    ----------
    G : networkx.DiGraph
        A topology (validated on construction).
    weight : {"latency", "hops"}
        What a shortest path minimises; see the module docstring.

    Raises
    ------
    TopologyError
        ``G`` is not a valid topology.
    ValueError
        Unknown ``weight``.

    Examples
    --------
    >>> from topologies import ring
    >>> Router(ring(6)).route("h0", "h2")
    [('h0', 'h1'), ('h1', 'h2')]
    """

    def __init__(self, G: nx.DiGraph, weight: str = "latency"):
        if weight not in WEIGHTS:
            raise ValueError(f"weight must be one of: {', '.join(WEIGHTS)}; got {weight!r}")
        validate(G)
        from scipy.sparse import csr_array

        self.G = G
        self.weight = weight
        self.endpoints: list = list(G.graph["endpoints"])
        self._nodes: list = list(G.nodes)
        self._index: dict = {n: i for i, n in enumerate(self._nodes)}
        n = len(self._nodes)
        src = np.fromiter((self._index[u] for u, _ in G.edges), dtype=np.int64, count=G.number_of_edges())
        dst = np.fromiter((self._index[v] for _, v in G.edges), dtype=np.int64, count=G.number_of_edges())
        if weight == "hops":
            cost = np.ones(len(src))
        else:
            lat = np.fromiter((d for *_, d in G.edges(data="latency")), dtype=float, count=len(src))
            cost = np.round(lat / _PICOSECOND) + 1.0  # whole numbers: path sums are exact in float64
        # Successors of each node, sorted by str(node) (the ECMP candidate order), as numpy arrays.
        name = np.array([str(x) for x in self._nodes])
        order = np.lexsort((name[dst], src))
        src, dst, cost = src[order], dst[order], cost[order]
        bounds = np.searchsorted(src, np.arange(n + 1))
        self._succ = [dst[bounds[i] : bounds[i + 1]] for i in range(n)]
        self._cost = [cost[bounds[i] : bounds[i + 1]] for i in range(n)]
        # Reversed graph: Dijkstra from t on it gives every node's distance *to* t.
        self._reverse = csr_array((cost, (dst, src)), shape=(n, n))
        # scipy's csgraph works on int32 indices: convert once, not on every Dijkstra call
        self._reverse.indices = self._reverse.indices.astype(np.int32)
        self._reverse.indptr = self._reverse.indptr.astype(np.int32)
        self._dist: OrderedDict[int, tuple[np.ndarray, float]] = OrderedDict()
        self._hop = float(np.median(cost)) if len(cost) else 1.0  # a typical arc's cost
        self._max_dist = max(16, _CACHE_BYTES // (8 * max(n, 1)))
        self._routes: dict[tuple, list[tuple]] = {}

    def route(self, src: Hashable, dst: Hashable) -> list[tuple]:
        """Return the arcs ``(u, v)`` a flow from node ``src`` to node ``dst`` crosses, in order.

        ``[]`` when ``src == dst``. Deterministic: the same graph gives the same route in every
        process. Raises ValueError for a node not in the graph, TopologyError when ``dst`` cannot be
        reached.
        """
        key = (src, dst)
        path = self._routes.get(key)
        if path is None:
            for x, what in ((src, "src"), (dst, "dst")):
                if x not in self._index:
                    raise ValueError(f"{what} {x!r} is not a node of topology {self.G.graph['name']!r}")
            seed = zlib.crc32(f"{src}->{dst}".encode())
            s, t = self._index[src], self._index[dst]
            preds = list(self.G.pred[dst]) if s != t else []
            if len(preds) == 1 and preds[0] != src:
                # dst hangs off one node a: every path ends with (a, dst), so route to a.
                a = self._index[preds[0]]
                path = self._walk(s, a, seed, src, dst) + [(preds[0], dst)]
            else:
                path = self._walk(s, t, seed, src, dst)
            self._routes[key] = path
        return list(path)

    def route_ranks(self, i: int, j: int) -> list[tuple]:
        """Return :meth:`route` between the endpoints of ranks ``i`` and ``j``."""
        n = len(self.endpoints)
        for r, what in ((i, "i"), (j, "j")):
            if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 0 <= r < n:
                raise ValueError(
                    f"rank {what}={r!r} out of range: topology {self.G.graph['name']!r} has ranks 0..{n - 1}"
                )
        return self.route(self.endpoints[i], self.endpoints[j])

    def latency(self, src: Hashable, dst: Hashable) -> float:
        """Return the summed latency (seconds) of the route from ``src`` to ``dst``."""
        return float(sum(self.G.edges[a]["latency"] for a in self.route(src, dst)))

    def _distances(self, s: int, t: int) -> np.ndarray:
        """Distances to ``t``, exact at least for every node no farther from ``t`` than ``s``.

        Dijkstra runs with a growing ``limit`` (2, 4, 8, 16, 32 typical hops, then none), so a route
        between neighbours explores only their neighbourhood; nodes beyond the limit read ``inf``,
        which no walk from ``s`` ever needs.
        """
        entry = self._dist.get(t)
        if entry is not None:
            self._dist.move_to_end(t)
            dist, limit = entry
            if np.isfinite(dist[s]) or limit == np.inf:
                return dist
            limit *= 2
        else:
            limit = 2 * self._hop
        from scipy.sparse.csgraph import dijkstra

        while True:
            if limit > 32 * self._hop:
                limit = np.inf
            dist = dijkstra(self._reverse, directed=True, indices=t, limit=limit)
            if np.isfinite(dist[s]) or limit == np.inf:
                break
            limit *= 2
        self._dist[t] = (dist, limit)
        if len(self._dist) > self._max_dist:
            self._dist.popitem(last=False)
        return dist

    def _walk(self, s: int, t: int, seed: int, src, dst) -> list[tuple]:
        if s == t:
            return []
        dist = self._distances(s, t)
        if not np.isfinite(dist[s]):
            raise TopologyError(f"topology {self.G.graph['name']!r}: no path from {src!r} to {dst!r}")
        nodes, path, u = self._nodes, [], s
        while u != t:
            succ = self._succ[u]
            candidates = succ[self._cost[u] + dist[succ] == dist[u]]
            if len(candidates) == 1:
                v = int(candidates[0])
            else:
                v = int(candidates[zlib.crc32(str(nodes[u]).encode(), seed) % len(candidates)])
            path.append((nodes[u], nodes[v]))
            u = v
        return path
