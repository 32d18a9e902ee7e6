"""Deterministic routing: shortest paths, the widest of them, then a routing policy.

Rules
-----
Path cost
    ``weight="latency"`` (default): the sum of arc latencies, counted in whole picoseconds, plus one
    picosecond per arc so that among equally fast paths the one with fewer hops wins.
    ``weight="hops"``: the number of arcs.
Widest among the shortest
    A flow ``(src, dst)`` follows only shortest paths, and among them only those whose narrowest arc
    is widest (largest bottleneck bandwidth). So a transfer between two GPUs that NVLink joins never
    detours over an equally short PCIe path. Where such paths still tie, the ones whose next arc is
    widest win: a GPU sending to another server's GPU on a different rail first crosses NVLink to
    its own server's GPU on the destination's rail and leaves through that GPU's NIC, as NCCL's PXN
    does, so rings whose channels cross at different GPUs spread over all rails. At every node ``u`` on the way, the *candidates* are
    the neighbours ``v`` on such a path to ``dst``; the policy picks one.
Policies (``Router(G, policy=...)``; default: the graph's ``routing`` attribute, else ``ecmp``)
    ``ecmp``
        Equal-cost multipath, as an Ethernet switch hashes a flow's header: the candidates are
        sorted by ``str(v)`` and the flow takes number ``crc32(str(u), seed=crc32(f"{src}->{dst}"))
        mod count``. Different flows spread over the paths; one flow keeps one path; the same in
        every process (``crc32``, unlike ``hash``, is not salted).
    ``dmodk``
        Destination mod k, InfiniBand's fat-tree routing (OpenSM ``ftree``, SimGrid ``FAT_TREE``):
        the candidates are taken in graph (node insertion) order and the flow takes number
        ``(d // m) mod count``, where ``d`` is the destination's rank (its index in the endpoints;
        the node index for a non-endpoint) and ``m`` the product of the candidate counts at the
        earlier choices on this route. In a fat tree only up-going hops have a choice, so the
        uplink at level ``l`` is digit ``l`` of ``d`` in the mixed radix of the uplink counts: flows
        to different destinations under one switch leave on different uplinks, and shifts and
        rank-ordered exchanges (ring, recursive doubling and halving) use disjoint uplinks.
    ``shortest``
        One deterministic shortest path: always the first candidate in graph order.
    ``dor``
        Dimension-order routing on a torus, mesh or hypercube (graph attributes ``dims`` and
        ``wrap``, set by the lattice builders; endpoints in row-major order): correct the
        coordinates one dimension at a time, ``x`` first (the last entry of ``dims``, the one along
        which consecutive ranks are neighbours), then ``y``, then ``z``; around a ring take the
        shorter way. At exactly half way the tie is broken as SimGrid's ``TORUS`` zone does (towards
        higher coordinates, except from the middle coordinate to 0). So a torus ``dims=(8, 4)``
        routes as SimGrid's torus ``4,8``. Routes between non-endpoints use ``shortest``.
Defaults of the builders
    ``dmodk``: ``fat_tree``, ``leaf_spine`` and ``gpu_cluster`` (InfiniBand-like fabrics); ``dor``:
    ``torus`` and ``mesh``; ``ecmp``: everything else (ring, line, switch, fully_connected,
    hypercube, dragonfly, the CPU ``cluster``, hand-built graphs).
Caching and speed
    Routes are cached per ``(src, dst)``. A route needs every node's distance to ``dst`` only as far
    out as ``src``: a small pure-Python Dijkstra (at most :attr:`Router.LOCAL_BUDGET` arcs) finds
    them for near pairs, otherwise :func:`scipy.sparse.csgraph.dijkstra` on the reversed graph runs
    with a growing distance limit; the distances are kept in a bounded cache per destination. A
    destination with a single incoming arc (a host on its switch) shares the distances of that
    neighbour, so routing all hosts of a fat tree costs a few searches per edge switch, not per host.
    Graphs with a few *hubs* (nodes of more than :attr:`Router.HUB_DEGREE` neighbours, such as the
    rail switches of a large GPU cluster) keep every node's distance to and from each hub; a
    destination's distances are then a search that stops at hubs plus one minimum over the hubs.
    Which search ran never changes the route: all give exact distances for every node a walk from
    ``src`` can reach.
Batches
    :meth:`Router.route_arcs` walks many pairs at once with numpy, one hop of every route per
    iteration, on graphs with hubs whose *hub-free components* (what is left without the hubs: a
    server of a GPU cluster) are small. A distance is then ``min(inside the component, min over
    hubs h of to_hub[h, x] + from_hub[h, t])``, the components' distances found for all of them
    at once (Floyd-Warshall). The widest-path tie-break needs no search either: the widest
    bottleneck from ``v`` over shortest paths to ``t`` is the largest arc bandwidth ``w`` such that
    the arcs of at least ``w`` still reach ``t`` as fast, so the same tables are kept per distinct
    bandwidth. Pairs the batch cannot take (a hub whose next hops lead to other hubs) are routed one
    by one; the routes are the same either way. Graphs without hubs whose endpoints each hang off
    one switch (fat trees, leaf-spines, dragonflies, switches) are walked in batches too: a route is
    the endpoint's arc, a walk between switches on their all-pairs distances (one Dijkstra per
    switch, per bandwidth level) and the arc into the destination; each hop finds the candidates
    once per distinct (switch, target switch) and every route picks its own. 229,376 routes of
    recursive halving on a 16,384-host ECMP leaf-spine take about a second instead of ten.

>>> from topologies import fat_tree
>>> r = Router(fat_tree(4))
>>> r.policy
'dmodk'
>>> r.route("h0", "h1")
[('h0', 'edge0'), ('edge0', 'h1')]
>>> len(r.route_ranks(0, 15))  # another pod: up to a core switch and down again
6
"""

from __future__ import annotations

import heapq
import math
import operator
import zlib
from collections import OrderedDict
from collections.abc import Hashable

import networkx as nx
import numpy as np

from topologies.model import ROUTINGS, TopologyError, validate

__all__ = ["Router", "WEIGHTS", "POLICIES"]

#: Path costs a :class:`Router` can minimise.
WEIGHTS: tuple[str, ...] = ("latency", "hops")
#: Routing policies (see the module docstring).
POLICIES: tuple[str, ...] = ROUTINGS

_PICOSECOND = 1e-12
_CACHE_BYTES = 128 * 2**20  # memory for cached distance arrays
_HUB_BYTES = 256 * 2**20  # memory for the distances to and from hubs
_BATCH_BYTES = 1024 * 2**20  # memory for the tables of Router.route_arcs
_INF = math.inf


class _Distances:
    """Every node's distance to one destination ``t``, exact where a walk from a source needs it."""

    def __init__(self):
        self.width: dict[int, float] = {}  # widest bottleneck to t, memoised per node
        self.next: dict[int, tuple[list[int], list[float]]] = {}  # candidates(), memoised per node

    def covers(self, s: int) -> bool:  # noqa: D102
        raise NotImplementedError

    def at(self, u: int) -> float:  # noqa: D102
        raise NotImplementedError

    def candidates(self, u: int) -> tuple[list[int], list[float]]:
        """Next hops of ``u`` on shortest paths to ``t`` (successor order: by ``str``), and arc bandwidths."""
        raise NotImplementedError


class _DictDistances(_Distances):
    """From the small pure-Python search: a dict of settled nodes."""

    def __init__(self, router: Router, dist: dict[int, float]):
        super().__init__()
        self.r, self.d = router, dist

    def covers(self, s: int) -> bool:
        return s in self.d

    def at(self, u: int) -> float:
        return self.d.get(u, _INF)

    def candidates(self, u):
        d, du = self.d, self.d[u]
        vs, bws = [], []
        for v, c, b in self.r._succ_py(u):
            if d.get(v, _INF) + c == du:
                vs.append(v)
                bws.append(b)
        return vs, bws


def _walked(done: np.ndarray, pairs: list[np.ndarray], arcs: list[np.ndarray]) -> tuple:
    """A batch walk's result: ``(done, pair, arc)`` of the pairs it finished, arcs in route order."""
    ks = np.concatenate(pairs)
    out = np.concatenate(arcs)
    keep = done[ks]
    return done, ks[keep], out[keep]


class _ArrayDistances(_Distances):
    """From scipy's Dijkstra with a distance ``limit``: a dense array, ``inf`` beyond the limit."""

    def __init__(self, router: Router, dist: np.ndarray, limit: float):
        super().__init__()
        self.r, self.d, self.limit = router, dist, limit

    def covers(self, s: int) -> bool:
        return bool(np.isfinite(self.d[s])) or self.limit == np.inf

    def at(self, u: int) -> float:
        return float(self.d[u])

    def candidates(self, u):
        succ, cost, bw = self.r._succ(u)
        mask = cost + self.d[succ] == self.d[u]
        return succ[mask].tolist(), bw[mask].tolist()


class _HubDistances(_Distances):
    """Hub mode: ``d(x) = min(local(x), min_h to_hub[h, x] + from_hub[h, t])``.

    ``local`` holds the distances of paths whose inner nodes are not hubs (a search from ``t`` that
    settles hubs but does not expand them); any other shortest path has a first hub ``h``. Exact for
    every node.
    """

    def __init__(self, router: Router, t: int, local: dict[int, float]):
        super().__init__()
        self.r, self.t, self.local = router, t, local
        self.via = router._from_hub[:, t]  # distance from each hub to t
        self._via = self.via.tolist()
        self.memo: dict[int, float] = {}

    def covers(self, s: int) -> bool:
        return True

    def _of(self, nodes: list[int]) -> list[float]:
        memo, local, via, column = self.memo, self.local, self._via, self.r._hub_column
        for v in nodes:
            if v not in memo:
                x = min(map(operator.add, column(v), via))
                y = local.get(v, _INF)
                memo[v] = y if y < x else x
        return [memo[v] for v in nodes]

    def at(self, u: int) -> float:
        x = self.memo.get(u)
        return x if x is not None else self._of([u])[0]

    def candidates(self, u):
        out = self.next.get(u)
        if out is None:
            out = self.next[u] = self._candidates(u)
        return out

    def _candidates(self, u):
        r = self.r
        h = r._hub_pos.get(u)
        succ, cost, bw = r._succ(u)
        if h is None:
            vs = succ.tolist()
            du, *dv = self._of([u, *vs])
            ks = [k for k, (c, d) in enumerate(zip(cost.tolist(), dv, strict=True)) if c + d == du]
            return [vs[k] for k in ks], bw[ks].tolist()
        # u is a hub: its distance is exact in from_hub; its next hops are those towards a hub h2 on
        # a shortest path (precomputed per hub pair), plus those whose hub-free path reaches t.
        du = float(r._from_hub[h, self.t])
        pos: set[int] = set()
        best = r._hub_hub[h] + self.via  # u -> h2 -> t, for every hub h2
        for h2 in np.flatnonzero(best == du).tolist():
            if h2 != h:
                pos.update(r._hub_next(h, h2))
        where = r._succ_pos(u)
        for v, x in self.local.items():
            k = where.get(v)
            if k is not None and cost[k] + x == du:
                pos.add(k)
        ks = sorted(pos)
        return succ[ks].tolist(), bw[ks].tolist()


class Router:
    """Route flows on a topology along the widest shortest paths, choosing among them by a policy.

    Parameters
    ----------
    G : networkx.DiGraph
        A topology (validated on construction).
    weight : {"latency", "hops"}
        What a shortest path minimises; see the module docstring.
    policy : {"ecmp", "dmodk", "shortest", "dor"}, optional
        How to choose among equally good paths; default ``G.graph["routing"]``, else ``"ecmp"``.
        ``"dor"`` needs a lattice (graph attributes ``dims`` and ``wrap``).

    Raises
    ------
    TopologyError
        ``G`` is not a valid topology.
    ValueError
        Unknown ``weight`` or ``policy``, or ``"dor"`` on a graph that is not a lattice.

    Examples
    --------
    >>> from topologies import ring, torus
    >>> Router(ring(6)).route("h0", "h2")
    [('h0', 'h1'), ('h1', 'h2')]
    >>> Router(torus((3, 3))).route_ranks(0, 4)  # x (across a row) first, then y
    [('h0', 'h1'), ('h1', 'h4')]
    """

    #: Most arcs the pure-Python search relaxes before handing over to scipy.
    LOCAL_BUDGET = 256
    #: A node with more neighbours than this is a hub (see the module docstring).
    HUB_DEGREE = 64
    #: Hub mode is used with at most this many hubs.
    MAX_HUBS = 64
    #: Most arcs the hub-bounded search relaxes before falling back to the plain searches.
    HUB_BUDGET = 4096
    #: Batch routing (:meth:`route_arcs`) needs hub-free components of at most this many nodes...
    BATCH_COMPONENT = 64
    #: ... and at most this many distinct arc bandwidths.
    BATCH_LEVELS = 4

    def __init__(self, G: nx.DiGraph, weight: str = "latency", policy: str | None = None):
        if weight not in WEIGHTS:
            raise ValueError(f"weight must be one of: {', '.join(WEIGHTS)}; got {weight!r}")
        validate(G)
        if policy is None:
            policy = G.graph.get("routing") or "ecmp"
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of: {', '.join(POLICIES)}; got {policy!r}")
        from scipy.sparse import csr_array

        self.G = G
        self.weight = weight
        self.policy = policy
        self.endpoints: list = list(G.graph["endpoints"])
        self._nodes: list = list(G.nodes)
        self._index: dict = {n: i for i, n in enumerate(self._nodes)}
        self._rank: dict = {e: i for i, e in enumerate(self.endpoints)}
        n = len(self._nodes)
        m = G.number_of_edges()
        src = np.fromiter((self._index[u] for u, _ in G.edges), dtype=np.int64, count=m)
        dst = np.fromiter((self._index[v] for _, v in G.edges), dtype=np.int64, count=m)
        bw = np.fromiter((d for *_, d in G.edges(data="bandwidth")), dtype=float, count=m)
        if weight == "hops":
            cost = np.ones(m)
        else:
            lat = np.fromiter((d for *_, d in G.edges(data="latency")), dtype=float, count=m)
            cost = np.round(lat / _PICOSECOND) + 1.0  # whole numbers: path sums are exact in float64
        #: all arcs equally wide: the widest-path filter changes nothing and is skipped
        self._uniform = bool(m == 0 or bw.min() == bw.max())
        # Successors of each node, sorted by str(node) (the ECMP candidate order): flat arrays cut by
        # _bounds (succ(u) = _to[_bounds[u]:_bounds[u + 1]]).
        name = np.array([str(x) for x in self._nodes])
        order = np.lexsort((name[dst], src))
        src, dst, cost, bw = src[order], dst[order], cost[order], bw[order]
        self._arc_edge = order  # position of an arc here -> its index in G.edges
        self._bounds = np.searchsorted(src, np.arange(n + 1)).tolist()
        self._to, self._arc_cost, self._arc_bw = dst, cost, bw
        # Reversed graph: Dijkstra from t on it gives every node's distance *to* t.
        self._reverse = csr_array((cost, (dst, src)), shape=(n, n))
        # scipy's csgraph works on int32 indices: convert once, not on every Dijkstra call
        self._reverse.indices = self._reverse.indices.astype(np.int32)
        self._reverse.indptr = self._reverse.indptr.astype(np.int32)
        # The same as Python lists for the small searches, made per node when first needed.
        self._succ_lists: dict[int, list[tuple[int, float, float]]] = {}
        self._pred_lists: dict[int, list[tuple[int, float]]] = {}
        self._dist: OrderedDict[int, _Distances] = OrderedDict()
        self._hop = float(np.median(cost)) if len(cost) else 1.0  # a typical arc's cost
        self._max_dist = max(16, _CACHE_BYTES // (8 * max(n, 1)))
        self._routes: dict[tuple, list[tuple]] = {}
        # Hubs: few nodes of many neighbours (rail or spine switches of a big cluster).
        degree = np.diff(self._bounds)
        hubs = np.flatnonzero(degree > self.HUB_DEGREE)
        self._hubs = hubs if 0 < len(hubs) <= self.MAX_HUBS and 16 * len(hubs) * n <= _HUB_BYTES else None
        self._hub_pos: dict[int, int] = {}
        self._hub_ready = False
        self._batch = None  # tables of route_arcs, made on first use (False: not available)
        self._grid = self._lattice() if policy == "dor" else None

    # --- adjacency ------------------------------------------------------------------------------

    def _succ(self, u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Successors of ``u`` (ECMP order), the arcs' costs and bandwidths, as numpy arrays."""
        a, b = self._bounds[u], self._bounds[u + 1]
        return self._to[a:b], self._arc_cost[a:b], self._arc_bw[a:b]

    def _succ_py(self, u: int) -> list[tuple[int, float, float]]:
        out = self._succ_lists.get(u)
        if out is None:
            a, b = self._bounds[u], self._bounds[u + 1]
            out = list(
                zip(self._to[a:b].tolist(), self._arc_cost[a:b].tolist(), self._arc_bw[a:b].tolist(), strict=True)
            )
            self._succ_lists[u] = out
        return out

    def _pred_py(self, x: int) -> list[tuple[int, float]]:
        out = self._pred_lists.get(x)
        if out is None:
            R = self._reverse
            a, b = R.indptr[x], R.indptr[x + 1]
            out = list(zip(R.indices[a:b].tolist(), R.data[a:b].tolist(), strict=True))
            self._pred_lists[x] = out
        return out

    # --- public ---------------------------------------------------------------------------------

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
            s, t = self._index[src], self._index[dst]
            if self._grid is not None and src in self._rank and dst in self._rank:
                path = self._dor(self._rank[src], self._rank[dst])
            else:
                preds = list(self.G.pred[dst]) if s != t else []
                if len(preds) == 1 and preds[0] != src:
                    # dst hangs off one node a: every path ends with (a, dst), so route to a.
                    a = self._index[preds[0]]
                    path = self._walk(s, a, src, dst) + [(preds[0], dst)]
                else:
                    path = self._walk(s, t, src, dst)
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

    # --- dimension-order routing ----------------------------------------------------------------

    def _lattice(self) -> tuple[tuple[int, ...], bool]:
        G = self.G
        dims, wrap = G.graph.get("dims"), G.graph.get("wrap")
        if isinstance(dims, str):
            try:
                dims = tuple(int(x) for x in dims.lower().split("x"))
            except ValueError:
                dims = None
        elif isinstance(dims, (list, tuple)):
            dims = tuple(dims)
        if not dims or not isinstance(wrap, bool) or math.prod(dims) != len(self.endpoints):
            raise ValueError(
                f"policy 'dor' (dimension-order routing) needs a torus, mesh or hypercube: topology "
                f"{G.graph['name']!r} lacks graph attributes dims (e.g. '4x4', one entry per dimension, "
                f"as many endpoints as their product) and wrap (bool)"
            )
        return dims, wrap

    def _dor(self, i: int, j: int) -> list[tuple]:
        """Dimension-order route from rank ``i`` to rank ``j``: x (the last dimension) first."""
        dims, wrap = self._grid
        eps, path, cur, stride = self.endpoints, [], i, 1
        for size in reversed(dims):
            m, t = (i // stride) % size, (j // stride) % size
            if m != t:
                if wrap:
                    up = (m < t <= m + size // 2) or (m > size // 2 and (m + size // 2) % size >= t)
                else:
                    up = t > m
                step = 1 if up else -1
                c = m
                while c != t:
                    nc = (c + step) % size
                    nxt = cur + (nc - c) * stride
                    if not self.G.has_edge(eps[cur], eps[nxt]):
                        raise TopologyError(
                            f"topology {self.G.graph['name']!r}: dimension-order route from rank {i} to {j} "
                            f"needs the arc {(eps[cur], eps[nxt])!r}, which the graph lacks"
                        )
                    path.append((eps[cur], eps[nxt]))
                    cur, c = nxt, nc
            stride *= size
        return path

    # --- distances ------------------------------------------------------------------------------

    def _local(self, s: int, t: int, budget: int, stop_at_hubs: bool = False) -> tuple[dict[int, float], bool] | None:
        """Dijkstra towards ``t`` in pure Python: ``(distances, plain)`` or None past ``budget`` arcs.

        Plain (``plain=True``): stopped once ``s`` was settled; the settled distances are exact, and
        every node closer to ``t`` than ``s`` is among them. With ``stop_at_hubs``, hubs are settled
        but not expanded; if ``s`` is settled before any hub the result is still plain, else the
        search runs until nothing is left and returns the distances of hub-free paths
        (``plain=False``, see :class:`_HubDistances`).
        """
        settled: dict[int, float] = {}
        tentative = {t: 0.0}
        heap = [(0.0, t)]
        pred = self._pred_py
        hubs = self._hub_pos if stop_at_hubs else {}
        plain = True
        while heap:
            d, x = heapq.heappop(heap)
            if x in settled:
                continue
            settled[x] = d
            if x == s and plain:
                return settled, True
            if x in hubs:
                plain = False
                continue
            px = pred(x)
            budget -= len(px)
            if budget < 0:
                return None
            for u, c in px:
                nd = d + c
                if nd < tentative.get(u, _INF):
                    tentative[u] = nd
                    heapq.heappush(heap, (nd, u))
        return (settled, False) if stop_at_hubs else None

    def _prepare_hubs(self) -> None:
        """Distances from every node to every hub and from every hub to every node (2 H Dijkstras)."""
        from scipy.sparse.csgraph import dijkstra

        hubs = self._hubs
        self._hub_pos = {int(h): k for k, h in enumerate(hubs.tolist())}
        self._to_hub = dijkstra(self._reverse, directed=True, indices=hubs)
        forward = self._reverse.T.tocsr()
        forward.indices = forward.indices.astype(np.int32)
        forward.indptr = forward.indptr.astype(np.int32)
        self._from_hub = dijkstra(forward, directed=True, indices=hubs)
        self._hub_hub = self._from_hub[:, hubs]  # [h, h2]: distance from hub h to hub h2
        self._hub_next_cache: dict[tuple[int, int], list[int]] = {}
        self._hub_columns: dict[int, list[float]] = {}
        self._succ_pos_cache: dict[int, dict[int, int]] = {}
        self._hub_ready = True

    def _hub_column(self, v: int) -> list[float]:
        """Distances from node ``v`` to every hub, as a Python list (cached per node)."""
        out = self._hub_columns.get(v)
        if out is None:
            out = self._hub_columns[v] = self._to_hub[:, v].tolist()
        return out

    def _hub_next(self, h: int, h2: int) -> list[int]:
        """Positions in hub ``h``'s successors of the next hops on shortest paths from ``h`` to hub ``h2``."""
        key = (h, h2)
        out = self._hub_next_cache.get(key)
        if out is None:
            succ, cost, _ = self._succ(int(self._hubs[h]))
            ok = cost + self._to_hub[h2, succ] == self._hub_hub[h, h2]
            out = np.flatnonzero(ok).tolist()
            self._hub_next_cache[key] = out
        return out

    def _succ_pos(self, u: int) -> dict[int, int]:
        out = self._succ_pos_cache.get(u)
        if out is None:
            out = {v: k for k, v in enumerate(self._succ(u)[0].tolist())}
            self._succ_pos_cache[u] = out
        return out

    def _distances(self, s: int, t: int) -> _Distances:
        """Distances to ``t``, exact at least for every node no farther from ``t`` than ``s``.

        First a small pure-Python search (neighbours in a large torus or inside a server need only a
        few dozen nodes); then hub mode (when the graph has hubs); then
        :func:`scipy.sparse.csgraph.dijkstra` with a growing ``limit`` (2, 4, 8, 16, 32 typical hops,
        then none). Nodes beyond what was searched are missing or ``inf``; no walk from ``s`` needs
        them.
        """
        entry = self._dist.get(t)
        limit = 2 * self._hop
        if entry is not None:
            self._dist.move_to_end(t)
            if entry.covers(s):
                return entry
            if isinstance(entry, _ArrayDistances):
                limit = entry.limit * 2
        elif self._hubs is None:
            found = self._local(s, t, self.LOCAL_BUDGET)
            if found is not None:
                return self._remember(t, _DictDistances(self, found[0]))
        if self._hubs is not None:
            if not self._hub_ready:
                self._prepare_hubs()
            found = self._local(s, t, self.HUB_BUDGET, stop_at_hubs=True)
            if found is not None:
                local, plain = found
                return self._remember(t, _DictDistances(self, local) if plain else _HubDistances(self, t, local))
        from scipy.sparse.csgraph import dijkstra

        while True:
            if limit > 32 * self._hop:
                limit = np.inf
            dist = dijkstra(self._reverse, directed=True, indices=t, limit=limit)
            if np.isfinite(dist[s]) or limit == np.inf:
                break
            limit *= 2
        return self._remember(t, _ArrayDistances(self, dist, limit))

    def _remember(self, t: int, dist: _Distances) -> _Distances:
        self._dist[t] = dist
        if len(self._dist) > self._max_dist:
            self._dist.popitem(last=False)
        return dist

    # --- the walk -------------------------------------------------------------------------------

    def _width(self, u: int, D: _Distances, t: int) -> float:
        """Widest bottleneck (bytes/s) over the shortest paths from ``u`` to ``t`` (memoised in ``D``)."""
        memo = D.width
        if u in memo:
            return memo[u]
        memo.setdefault(t, _INF)
        stack = [u]
        while stack:
            x = stack[-1]
            if x in memo:
                stack.pop()
                continue
            vs, bws = D.candidates(x)
            todo = [v for v in vs if v not in memo]
            if todo:
                stack.extend(todo)
                continue
            memo[x] = max(min(b, memo[v]) for v, b in zip(vs, bws, strict=True))
            stack.pop()
        return memo[u]

    def _walk(self, s: int, t: int, src, dst) -> list[tuple]:
        if s == t:
            return []
        D = self._distances(s, t)
        if not D.at(s) < _INF:
            raise TopologyError(f"topology {self.G.graph['name']!r}: no path from {src!r} to {dst!r}")
        nodes, path, u = self._nodes, [], s
        policy, uniform = self.policy, self._uniform
        seed = zlib.crc32(f"{src}->{dst}".encode()) if policy == "ecmp" else 0
        digits = self._rank.get(dst, self._index[dst])  # dmodk: the destination's remaining digits
        while u != t:
            vs, bws = D.candidates(u)
            if len(vs) > 1 and not uniform:
                widths = [min(b, self._width(v, D, t)) for v, b in zip(vs, bws, strict=True)]
                best = max(widths)
                keep = [i for i, w in enumerate(widths) if w == best]
                # PXN: where paths tie, take the widest arc first, so data crosses NVLink to the
                # GPU on the destination's rail before it leaves the server (as NCCL's PXN does)
                first = max(bws[i] for i in keep)
                vs = [vs[i] for i in keep if bws[i] == first]
            k = len(vs)
            if k == 1:
                v = vs[0]
            elif policy == "ecmp":
                v = vs[zlib.crc32(str(nodes[u]).encode(), seed) % k]
            elif policy == "dmodk":
                v = sorted(vs)[digits % k]
                digits //= k
            else:  # shortest (and dor between non-endpoints)
                v = min(vs)
            path.append((nodes[u], nodes[v]))
            u = v
        return path

    # --- many routes at once --------------------------------------------------------------------

    def route_arcs(self, src, dst) -> tuple[np.ndarray, np.ndarray]:
        """Routes between many rank pairs at once, as arc indices in ``G.edges`` order.

        The same routes as :meth:`route_ranks` (``tests/test_routing.py`` holds them equal), found
        for all pairs together with numpy where the graph allows it (see the module docstring,
        *Batches*), else one by one.

        Parameters
        ----------
        src, dst : array of int
            Ranks (endpoint indices), equal lengths.

        Returns
        -------
        indptr, arcs : ndarray of int64
            The route of pair ``k`` is ``arcs[indptr[k]:indptr[k + 1]]`` (indices into ``list(G.edges)``).
        """
        eps = len(self.endpoints)
        src = np.asarray(src, dtype=np.int64).ravel()
        dst = np.asarray(dst, dtype=np.int64).ravel()
        if src.shape != dst.shape:
            raise ValueError(f"src and dst must have the same length, got {src.size} and {dst.size}")
        for r, what in ((src, "src"), (dst, "dst")):
            if r.size and (r.min() < 0 or r.max() >= eps):
                raise ValueError(f"ranks in {what} out of range: topology {self.G.graph['name']!r} has ranks 0..{eps - 1}")
        K = src.size
        pieces: list[tuple[np.ndarray, np.ndarray]] = []  # (pair, arc) in route order
        todo = np.arange(K)
        own = type(self).route is Router.route and type(self)._walk is Router._walk  # not overridden
        if K and own and self._batch_tables() is not None:
            node = self._endpoint_index()
            walk = self._core_walk if "core" in self._batch else self._batch_walk
            done, k_out, a_out = walk(node[src], node[dst], dst)
            pieces.append((k_out, a_out))
            todo = np.flatnonzero(~done)
        if todo.size:  # one by one: graphs without hub tables, or pairs the batch left
            idx, eps_ = self._index, self.endpoints
            ks_, us, vs = [], [], []
            for k, i, j in zip(todo.tolist(), src[todo].tolist(), dst[todo].tolist(), strict=True):
                route = self.route(eps_[i], eps_[j])
                ks_ += [k] * len(route)
                us += [idx[a] for a, _ in route]
                vs += [idx[b] for _, b in route]
            # the arcs of all of them looked up at once
            u_, v_ = np.array(us, dtype=np.int64), np.array(vs, dtype=np.int64)
            pieces.append((np.array(ks_, dtype=np.int64), self._arc_edge[self._arc_pos(u_, v_)]))
        ks = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0, dtype=np.int64)
        arcs = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, dtype=np.int64)
        order = np.argsort(ks, kind="stable")  # each pair's arcs were appended in route order
        indptr = np.zeros(K + 1, dtype=np.int64)
        np.cumsum(np.bincount(ks, minlength=K), out=indptr[1:])
        return indptr, arcs[order]

    def _endpoint_index(self) -> np.ndarray:
        out = getattr(self, "_ep_index", None)
        if out is None:
            out = self._ep_index = np.array([self._index[e] for e in self.endpoints], dtype=np.int64)
        return out

    def _arc_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """``u * n + v`` of every arc (sorted) and the arc's position here, for vectorised look-ups."""
        out = getattr(self, "_keys", None)
        if out is None:
            n = len(self._nodes)
            deg = np.diff(np.asarray(self._bounds, dtype=np.int64))
            key = np.repeat(np.arange(n, dtype=np.int64), deg) * n + self._to
            pos = np.argsort(key, kind="stable")
            out = self._keys = (key[pos], pos)
        return out

    def _arc_pos(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Positions of the arcs ``(u[k], v[k])`` here, -1 where the graph has no such arc."""
        keys, pos = self._arc_keys()
        want = u * len(self._nodes) + v
        at = np.minimum(np.searchsorted(keys, want), max(keys.size - 1, 0))
        found = keys[at] == want if keys.size else np.zeros(want.shape, dtype=bool)
        return np.where(found, pos[at] if keys.size else -1, -1)

    def _edges_of(self, route: list[tuple]) -> np.ndarray:
        idx = self._index
        u = np.fromiter((idx[a] for a, _ in route), dtype=np.int64, count=len(route))
        v = np.fromiter((idx[b] for _, b in route), dtype=np.int64, count=len(route))
        return self._arc_edge[self._arc_pos(u, v)]

    def _batch_tables(self):
        """Distance tables of the batch walk, or None where it does not apply (see *Batches*)."""
        if self._batch is None:
            self._batch = self._make_batch_tables() or False
        return self._batch or None

    def _make_batch_tables(self):
        if self.policy == "dor":
            return None
        return (self._make_hub_tables() if self._hubs is not None else None) or self._make_core_tables()

    def _make_core_tables(self):
        """Tables of :meth:`_core_walk`: every endpoint hangs off the fabric by one arc each way, and the
        distances between the other nodes (the switches) fit in memory, per bandwidth level."""
        from scipy.sparse import csr_array
        from scipy.sparse.csgraph import dijkstra

        n = len(self._nodes)
        if not self.endpoints or n == 0:
            return None
        bounds = np.asarray(self._bounds, dtype=np.int64)
        outdeg = np.diff(bounds)
        indeg = np.diff(self._reverse.indptr).astype(np.int64)
        ep = self._endpoint_index()
        is_ep = np.zeros(n, dtype=bool)
        is_ep[ep] = True
        if (outdeg[ep] != 1).any() or (indeg[ep] != 1).any():
            return None
        out = self._to[bounds[ep]]  # the node each endpoint sends to
        into = self._reverse.indices[self._reverse.indptr[ep]].astype(np.int64)  # and hears from
        if is_ep[out].any() or is_ep[into].any():
            return None
        core = np.flatnonzero(~is_ep)
        S = core.size
        levels = np.unique(self._arc_bw)[::-1] if not self._uniform else self._arc_bw[:1]
        if levels.size > self.BATCH_LEVELS or 8 * levels.size * S * S > _BATCH_BYTES:
            return None
        cidx = np.full(n, -1, dtype=np.int64)
        cidx[core] = np.arange(S)
        arc_src = np.repeat(np.arange(n, dtype=np.int64), outdeg)
        inner = (cidx[arc_src] >= 0) & (cidx[self._to] >= 0)
        dist = []
        for w in levels.tolist():
            keep = inner & (self._arc_bw >= w)
            rev = csr_array((self._arc_cost[keep], (cidx[self._to[keep]], cidx[arc_src[keep]])), shape=(S, S))
            # row t of a Dijkstra on the reversed graph: every switch's distance to switch t
            dist.append(np.ascontiguousarray(dijkstra(rev, directed=True).T))
        sw_out = np.full(n, -1, dtype=np.int64)
        c_out, bw_out = np.zeros(n), np.zeros(n)
        sw_out[ep], c_out[ep], bw_out[ep] = out, self._arc_cost[bounds[ep]], self._arc_bw[bounds[ep]]
        return {"core": True, "cidx": cidx, "dist": dist, "levels": levels, "sw_out": sw_out, "c_out": c_out,
                "bw_out": bw_out, "into": into}

    def _core_dist(self, j: int, v: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Exact distances from nodes ``v`` (switches or endpoints) to switches ``t`` on the arcs of level ``j``."""
        T = self._batch
        cidx = T["cidx"]
        host = cidx[v] < 0
        sw = np.where(host, T["sw_out"][v], v)
        d = T["dist"][j][cidx[sw], cidx[t]]
        if host.any():
            ok = T["bw_out"][v] >= T["levels"][j]
            d = np.where(host, np.where(ok, T["c_out"][v] + d, _INF), d)
        return d

    def _core_walk(self, S: np.ndarray, Tn: np.ndarray, dst_rank: np.ndarray):
        """The walk of :meth:`_walk` for many pairs at once where every endpoint hangs off one switch
        (:meth:`_make_core_tables`): ``(done, pair, arc)``, arcs in route order.

        Every route is: the endpoint's arc, the walk between switches to the switch the destination
        hangs off, its arc. Each hop, the next-hop candidates are found once per distinct (node,
        target) of the routes in flight, then every route picks its own as :meth:`_walk` does.
        """
        T = self._batch
        K = S.size
        n = len(self._nodes)
        L = T["levels"].size - 1
        nodes = self._nodes
        bounds = np.asarray(self._bounds, dtype=np.int64)
        done = np.ones(K, dtype=bool)
        diff = np.flatnonzero(S != Tn)
        target = Tn.copy()
        ep_pos = np.full(n, -1, dtype=np.int64)
        ep_pos[self._endpoint_index()] = np.arange(len(self.endpoints))
        target[diff] = T["into"][ep_pos[Tn[diff]]]
        tail = (diff, self._arc_edge[self._arc_pos(target[diff], Tn[diff])])
        u = S.copy()
        du = np.zeros(K)
        du[diff] = self._core_dist(L, u[diff], target[diff])
        bad = diff[~np.isfinite(du[diff])]
        done[bad] = False
        digits = dst_rank.astype(np.int64).copy()
        seeds = None
        if self.policy == "ecmp":
            seeds = np.array([zlib.crc32(f"{nodes[int(s)]}->{self.endpoints[int(d)]}".encode())
                              for s, d in zip(S.tolist(), dst_rank.tolist(), strict=True)], dtype=np.int64)
        k_out: list[np.ndarray] = []
        a_out: list[np.ndarray] = []
        hops = 0
        while True:
            ks = np.flatnonzero(done & (u != target))
            if not ks.size:
                break
            hops += 1
            if hops > n:
                raise TopologyError(f"topology {self.G.graph['name']!r}: a batch route did not end")  # pragma: no cover
            # the candidates of every distinct (node, target) once
            uniq, inv = np.unique(u[ks] * n + target[ks], return_inverse=True)
            inv = inv.ravel()
            uq, tq = uniq // n, uniq % n
            dq = self._core_dist(L, uq, tq)
            a, b = bounds[uq], bounds[uq + 1]
            deg = b - a
            rep = np.repeat(np.arange(uq.size), deg)
            pos = np.repeat(a - (np.cumsum(deg) - deg), deg) + np.arange(int(deg.sum()))
            v = self._to[pos]
            dv = self._core_dist(L, v, tq[rep])
            ok = self._arc_cost[pos] + dv == dq[rep]
            rep, pos, dv, v = rep[ok], pos[ok], dv[ok], v[ok]  # per (node, target), in ECMP order
            count = np.bincount(rep, minlength=uq.size)
            if not self._uniform and (count > 1).any():
                rep, pos, dv, v, count = self._widest(self._core_dist, rep, pos, dv, v, tq, uq.size)
            if self.policy in ("dmodk", "shortest"):
                o = np.lexsort((v, rep))  # sorted(vs): by node index
                rep, pos, dv, v = rep[o], pos[o], dv[o], v[o]
            start = np.zeros(uq.size, dtype=np.int64)
            np.cumsum(count[:-1], out=start[1:])
            c = count[inv]
            lost = c == 0
            done[ks[lost]] = False  # pragma: no cover (exact distances always leave a next hop)
            off = np.zeros(ks.size, dtype=np.int64)
            many = np.flatnonzero(c > 1)
            if many.size:
                if self.policy == "dmodk":
                    off[many] = digits[ks[many]] % c[many]
                    digits[ks[many]] //= c[many]
                elif self.policy == "ecmp":
                    names = [str(nodes[x]).encode() for x in uq.tolist()]
                    off[many] = [zlib.crc32(names[q], s) % m for q, s, m in
                                 zip(inv[many].tolist(), seeds[ks[many]].tolist(), c[many].tolist(), strict=True)]
            go = np.flatnonzero(~lost)
            sel = start[inv[go]] + off[go]
            k_out.append(ks[go])
            a_out.append(self._arc_edge[pos[sel]])
            u[ks[go]] = v[sel]
            du[ks[go]] = dv[sel]
        return _walked(done, k_out + [tail[0]], a_out + [tail[1]])

    def _widest(self, dist, rep, pos, dv, v, target, groups: int) -> tuple:
        """Of the next-hop candidates of each group (``rep``: group, ``pos``: arc, ``dv``: distance left from
        the arc's head ``v`` to the group's ``target``), keep the widest, as :meth:`_walk` does:
        width(v) is the widest bandwidth level on whose arcs v still reaches the target as fast
        (``dist(level, v, t)``), bounded by the arc's own; then, among those, the widest next arc
        (PXN). Returns the candidates kept and their count per group."""
        levels = self._batch["levels"]
        bw = self._arc_bw[pos]
        mi = np.flatnonzero(np.bincount(rep, minlength=groups)[rep] > 1)
        vm, tm = v[mi], target[rep[mi]]
        width = np.full(mi.size, _INF)
        open_ = vm != tm
        for j in range(levels.size):
            q = np.flatnonzero(open_)
            if not q.size:
                break
            hit = dist(j, vm[q], tm[q]) == dv[mi[q]]
            width[q[hit]] = levels[j]
            open_[q[hit]] = False
        wide = np.minimum(bw[mi], width)
        top = np.full(groups, -_INF)
        np.maximum.at(top, rep[mi], wide)
        keep = np.ones(rep.size, dtype=bool)
        keep[mi] = wide == top[rep[mi]]
        first = np.full(groups, -_INF)
        np.maximum.at(first, rep[keep], bw[keep])
        keep &= bw == first[rep]
        return rep[keep], pos[keep], dv[keep], v[keep], np.bincount(rep[keep], minlength=groups)

    def _make_hub_tables(self):
        from scipy.sparse import coo_array, csr_array
        from scipy.sparse.csgraph import connected_components, dijkstra

        if not self._hub_ready:
            self._prepare_hubs()
        n, hubs = len(self._nodes), self._hubs
        H = len(hubs)
        is_hub = np.zeros(n, dtype=bool)
        is_hub[hubs] = True
        arc_src = np.repeat(np.arange(n, dtype=np.int64), np.diff(np.asarray(self._bounds, dtype=np.int64)))
        arc_dst = self._to
        inner = ~is_hub[arc_src] & ~is_hub[arc_dst]
        # hub-free components: the graph without its hubs
        g = coo_array((np.ones(int(inner.sum())), (arc_src[inner], arc_dst[inner])), shape=(n, n))
        _, comp = connected_components(g, directed=False)
        comp = comp.astype(np.int64)
        comp[is_hub] = -1
        # renumber the components that hold non-hub nodes 0..C-1
        used, comp_of = np.unique(comp[~is_hub], return_inverse=True)
        comp = np.full(n, -1, dtype=np.int64)
        comp[~is_hub] = comp_of
        C = used.size
        sizes = np.bincount(comp[~is_hub], minlength=C)
        c = int(sizes.max(initial=1))
        levels = np.unique(self._arc_bw)[::-1] if not self._uniform else self._arc_bw[:1]
        if c > self.BATCH_COMPONENT or levels.size > self.BATCH_LEVELS:
            return None
        L = levels.size
        if 8 * L * (C * c * c + 2 * H * n) > _BATCH_BYTES:
            return None
        # position of every non-hub node in its component, and the members of every component
        order = np.argsort(comp, kind="stable")[int(is_hub.sum()):]
        starts = np.zeros(C + 1, dtype=np.int64)
        np.cumsum(sizes, out=starts[1:])
        where = np.full(n, -1, dtype=np.int64)
        where[order] = np.arange(order.size) - starts[comp[order]]
        members = np.full((C, c), -1, dtype=np.int64)
        members[comp[order], where[order]] = order
        forward = self._reverse.T.tocsr()
        local, to_hub, from_hub = [], [], []
        for j, w in enumerate(levels.tolist()):
            keep = self._arc_bw >= w
            # distances inside components along hub-free paths (Floyd-Warshall, all components at once)
            D = np.full((C, c, c), _INF)
            D[:, np.arange(c), np.arange(c)] = 0.0
            sel = inner & keep
            D[comp[arc_src[sel]], where[arc_src[sel]], where[arc_dst[sel]]] = self._arc_cost[sel]
            for m in range(c):
                np.minimum(D, D[:, :, m, None] + D[:, None, m, :], out=D)
            local.append(D)
            if j == L - 1:
                to_hub.append(np.ascontiguousarray(self._to_hub.T))
                from_hub.append(np.ascontiguousarray(self._from_hub.T))
            else:
                rev = csr_array((self._arc_cost[keep], (arc_dst[keep], arc_src[keep])), shape=(n, n))
                fwd = csr_array((self._arc_cost[keep], (arc_src[keep], arc_dst[keep])), shape=(n, n))
                to_hub.append(np.ascontiguousarray(dijkstra(rev, directed=True, indices=hubs).T))
                from_hub.append(np.ascontiguousarray(dijkstra(fwd, directed=True, indices=hubs).T))
        del forward
        hub_pos = np.full(n, -1, dtype=np.int64)
        hub_pos[hubs] = np.arange(H)
        indeg = np.diff(self._reverse.indptr).astype(np.int64)
        return {"comp": comp, "where": where, "members": members, "local": local, "to_hub": to_hub,
                "from_hub": from_hub, "levels": levels, "hub_pos": hub_pos, "indeg": indeg}

    def _batch_dist(self, j: int, v: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Exact distances from nodes ``v`` to nodes ``t`` (non-hubs) on the arcs of bandwidth level ``j``."""
        T = self._batch
        d = (T["to_hub"][j][v] + T["from_hub"][j][t]).min(axis=1) if len(self._hubs) else np.full(v.shape, _INF)
        cv, ct = T["comp"][v], T["comp"][t]
        same = np.flatnonzero(cv == ct)
        if same.size:
            w = T["where"]
            loc = T["local"][j][ct[same], w[v[same]], w[t[same]]]
            d[same] = np.minimum(d[same], loc)
        return d

    def _batch_walk(self, S: np.ndarray, Tn: np.ndarray, dst_rank: np.ndarray):
        """The walk of :meth:`_walk` for many pairs at once: ``(done, pair, arc)``, arcs in route order.

        Pairs it cannot take (a hub as destination, a hub whose next hops lead through other hubs,
        no path) come back with ``done`` False, for the one-by-one walk.
        """
        T = self._batch
        K = S.size
        L = T["levels"].size - 1
        done = np.ones(K, dtype=bool)
        k_out: list[np.ndarray] = []
        a_out: list[np.ndarray] = []
        # a destination with a single way in (not from src): route to that neighbour, then the arc
        R = self._reverse
        target = Tn.copy()
        one = (T["indeg"][Tn] == 1) & (S != Tn)
        if one.any():
            pred = R.indices[R.indptr[Tn[one]]].astype(np.int64)
            ok = pred != S[one]
            idx = np.flatnonzero(one)[ok]
            target[idx] = pred[ok]
            tail = (idx, self._arc_edge[self._arc_pos(target[idx], Tn[idx])])
        else:
            tail = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        done &= T["comp"][target] >= 0  # destinations that are hubs: one by one
        u = S.copy()
        du = np.zeros(K)
        live = np.flatnonzero(done & (u != target))
        if live.size:
            du[live] = self._batch_dist(L, u[live], target[live])
            bad = live[~np.isfinite(du[live])]
            done[bad] = False
        digits = dst_rank.astype(np.int64).copy()
        bounds = np.asarray(self._bounds, dtype=np.int64)
        hub_pos, members, comp, where = T["hub_pos"], T["members"], T["comp"], T["where"]
        nodes = self._nodes
        hops = 0
        while True:
            ks = np.flatnonzero(done & (u != target))
            if not ks.size:
                break
            hops += 1
            if hops > len(nodes):
                raise TopologyError(f"topology {self.G.graph['name']!r}: a batch route did not end")  # pragma: no cover
            uu, tt, dd = u[ks], target[ks], du[ks]
            parts = []
            # ordinary nodes: every successor
            nh = np.flatnonzero(hub_pos[uu] < 0)
            if nh.size:
                a, b = bounds[uu[nh]], bounds[uu[nh] + 1]
                deg = b - a
                rep = np.repeat(nh, deg)
                first = np.repeat(np.cumsum(deg) - deg, deg)
                pos = np.repeat(a, deg) + np.arange(rep.size) - first
                v = self._to[pos]
                dv = self._batch_dist(L, v, tt[rep])
                ok = self._arc_cost[pos] + dv == dd[rep]
                parts.append((rep[ok], pos[ok], dv[ok]))
            hb = np.flatnonzero(hub_pos[uu] >= 0)
            if hb.size:
                h = hub_pos[uu[hb]]
                via = T["from_hub"][L][tt[hb]]  # (pairs, hubs): distance from each hub to t
                best = self._hub_hub[h] + via
                best[np.arange(hb.size), h] = _INF
                through = (best == dd[hb, None]).any(axis=1)  # next hops towards other hubs: one by one
                done[ks[hb[through]]] = False
                hb = hb[~through]
                if hb.size:
                    mem = members[comp[tt[hb]]]  # (pairs, c)
                    rep = np.repeat(hb, mem.shape[1])
                    v = mem.ravel()
                    has = v >= 0
                    rep, v = rep[has], v[has]
                    pos = self._arc_pos(uu[rep], v)
                    found = pos >= 0
                    rep, v, pos = rep[found], v[found], pos[found]
                    dv = T["local"][L][comp[tt[rep]], where[v], where[tt[rep]]]
                    ok = self._arc_cost[pos] + dv == dd[rep]
                    parts.append((rep[ok], pos[ok], dv[ok]))
            rep = np.concatenate([p[0] for p in parts])
            pos = np.concatenate([p[1] for p in parts])
            dv = np.concatenate([p[2] for p in parts])
            o = np.lexsort((pos, rep))  # per pair, successors in ECMP order
            rep, pos, dv = rep[o], pos[o], dv[o]
            count = np.bincount(rep, minlength=ks.size)
            lost = (count == 0) & done[ks]
            done[ks[lost]] = False  # pragma: no cover (exact distances always leave a next hop)
            v = self._to[pos]
            multi = count[rep] > 1
            if multi.any() and not self._uniform:
                rep, pos, dv, v, count = self._widest(self._batch_dist, rep, pos, dv, v, tt, ks.size)
            start = np.zeros(ks.size, dtype=np.int64)
            np.cumsum(count[:-1], out=start[1:])
            pick = start.copy()
            many = np.flatnonzero(count > 1)
            if many.size:
                if self.policy == "dmodk":
                    o = np.lexsort((v, rep))  # sorted(vs): by node index within each pair
                    rep, pos, dv, v = rep[o], pos[o], dv[o], v[o]
                    kk = count[many]
                    pick[many] = start[many] + digits[ks[many]] % kk
                    digits[ks[many]] //= kk
                elif self.policy == "shortest":
                    o = np.lexsort((v, rep))
                    rep, pos, dv, v = rep[o], pos[o], dv[o], v[o]
                else:  # ecmp: the hash of the flow and of the node, one pair at a time
                    for i in many.tolist():
                        k = int(ks[i])
                        src_name = nodes[int(S[k])]
                        dst_name = self.endpoints[int(dst_rank[k])]
                        seed = zlib.crc32(f"{src_name}->{dst_name}".encode())
                        pick[i] = start[i] + zlib.crc32(str(nodes[int(uu[i])]).encode(), seed) % int(count[i])
            go = np.flatnonzero((count > 0) & done[ks])
            sel = pick[go]
            k_out.append(ks[go])
            a_out.append(self._arc_edge[pos[sel]])
            u[ks[go]] = v[sel]
            du[ks[go]] = dv[sel]
        return _walked(done, k_out + [tail[0]], a_out + [tail[1]])
