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
Caching and speed
    Routes are cached per ``(src, dst)``. A route needs every node's distance to ``dst`` only as far
    out as ``src``: a small pure-Python Dijkstra (at most :attr:`Router.LOCAL_BUDGET` arcs) finds
    them for near pairs, otherwise :func:`scipy.sparse.csgraph.dijkstra` on the reversed graph runs
    with a growing distance limit; the distances are kept in a bounded cache per destination. A
    destination with a single incoming arc (a host on its switch) shares the distances of that
    neighbour, so routing all hosts of a fat tree costs a few searches per edge switch, not per host.
    Which search ran never changes the route: both give exact distances for every node a walk from
    ``src`` can reach.

>>> from topologies import fat_tree
>>> r = Router(fat_tree(4))
>>> r.route("h0", "h1")
[('h0', 'edge0'), ('edge0', 'h1')]
>>> len(r.route_ranks(0, 15))  # another pod: up to a core switch and down again
6
"""

from __future__ import annotations

import heapq
import math
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

    #: Most arcs the pure-Python search relaxes before handing over to scipy.
    LOCAL_BUDGET = 256

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
        # The same, as Python lists, for the small searches: successors (ECMP order) and predecessors.
        self._succ_py = [
            list(zip(d.tolist(), c.tolist(), strict=True))
            for d, c in zip(self._succ, self._cost, strict=True)
        ]
        self._pred_py: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        for u, v, c in zip(src.tolist(), dst.tolist(), cost.tolist(), strict=True):
            self._pred_py[v].append((u, c))
        self._dist: OrderedDict[int, tuple[np.ndarray | dict, float]] = OrderedDict()
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

    def _local(self, s: int, t: int) -> dict[int, float] | None:
        """Dijkstra towards ``t`` in pure Python, stopping once ``s`` is settled.

        Returns the settled distances (exact, and every node closer to ``t`` than ``s`` is among them),
        or None when more than ``LOCAL_BUDGET`` arcs would have to be relaxed first.
        """
        settled: dict[int, float] = {}
        tentative = {t: 0.0}
        heap = [(0.0, t)]
        pred, budget = self._pred_py, self.LOCAL_BUDGET
        while heap:
            d, x = heapq.heappop(heap)
            if x in settled:
                continue
            settled[x] = d
            if x == s:
                return settled
            budget -= len(pred[x])
            if budget < 0:
                return None
            for u, c in pred[x]:
                nd = d + c
                if nd < tentative.get(u, math.inf):
                    tentative[u] = nd
                    heapq.heappush(heap, (nd, u))
        return None

    def _distances(self, s: int, t: int) -> np.ndarray | dict[int, float]:
        """Distances to ``t``, exact at least for every node no farther from ``t`` than ``s``.

        First a small pure-Python search (neighbours in a large torus need only a few dozen nodes);
        then :func:`scipy.sparse.csgraph.dijkstra` with a growing ``limit`` (2, 4, 8, 16, 32 typical
        hops, then none). Nodes beyond what was searched are missing or ``inf``; no walk from ``s``
        needs them.
        """
        entry = self._dist.get(t)
        if entry is not None:
            self._dist.move_to_end(t)
            dist, limit = entry
            if isinstance(dist, dict):
                if s in dist:
                    return dist
                limit = 2 * self._hop
            elif np.isfinite(dist[s]) or limit == np.inf:
                return dist
            else:
                limit *= 2
        else:
            dist = self._local(s, t)
            if dist is not None:
                self._remember(t, dist, 0.0)
                return dist
            limit = 2 * self._hop
        from scipy.sparse.csgraph import dijkstra

        while True:
            if limit > 32 * self._hop:
                limit = np.inf
            dist = dijkstra(self._reverse, directed=True, indices=t, limit=limit)
            if np.isfinite(dist[s]) or limit == np.inf:
                break
            limit *= 2
        self._remember(t, dist, limit)
        return dist

    def _remember(self, t: int, dist, limit: float) -> None:
        self._dist[t] = (dist, limit)
        if len(self._dist) > self._max_dist:
            self._dist.popitem(last=False)

    def _walk(self, s: int, t: int, seed: int, src, dst) -> list[tuple]:
        if s == t:
            return []
        dist = self._distances(s, t)
        nodes, path, u = self._nodes, [], s
        if isinstance(dist, dict):  # small search: plain Python
            while u != t:
                du = dist[u]
                candidates = [v for v, c in self._succ_py[u] if dist.get(v, math.inf) + c == du]
                if len(candidates) == 1:
                    v = candidates[0]
                else:
                    v = candidates[zlib.crc32(str(nodes[u]).encode(), seed) % len(candidates)]
                path.append((nodes[u], nodes[v]))
                u = v
            return path
        if not np.isfinite(dist[s]):
            raise TopologyError(f"topology {self.G.graph['name']!r}: no path from {src!r} to {dst!r}")
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
