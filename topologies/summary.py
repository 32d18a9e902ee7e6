"""Numbers that describe a topology: counts, machines, injection and bisection bandwidth, diameter.

Machines and injection bandwidth
    Endpoints are grouped into machines by their ``node`` attribute (:func:`topologies.endpoint_nodes`);
    NICs and switches with a ``node`` attribute belong to that machine too. A machine's **injection
    bandwidth** is the sum of the bandwidths of the arcs that leave it: for a GPU server its NIC
    links into the fabric, for a single host its links to the network.

Bisection bandwidth
    Computing the worst-case bisection of a general graph is NP-hard, so collsim reports it for the
    split that matters to collectives placed in rank order: the **first half of the endpoint list
    against the second half** (ranks ``0 .. n//2 - 1`` against the rest). The value is the maximum
    flow from the first half to the second through a super-source and super-sink, with every arc's
    bandwidth as its capacity (max-flow = min-cut), in bytes/s, one direction. It is exact up to the
    integer scaling :func:`scipy.sparse.csgraph.maximum_flow` needs (relative error below 1e-6). For
    the symmetric builders this split is a worst-case one (a fat tree gives ``n/2`` host links).
Diameter
    The largest number of arcs on a shortest path between two endpoints. Exact (one breadth-first
    search per distinct first-hop switch or endpoint) up to 4096 such sources; beyond that a
    deterministic sample of 1024 sources gives a lower bound, flagged ``diameter_exact=False``.
"""

from __future__ import annotations

from collections import Counter

import networkx as nx
import numpy as np

from topologies.model import endpoint_nodes, links, nics_per_node, validate

__all__ = ["summary", "bisection_bandwidth", "diameter", "injection_bandwidth", "format_summary"]

_EXACT_SOURCES = 4096
_SAMPLED_SOURCES = 1024


def _matrix(G: nx.DiGraph, extra: int = 0, weight: str | None = None, scale: float = 1.0):
    from scipy.sparse import csr_array

    index = {n: i for i, n in enumerate(G)}
    m = G.number_of_edges()
    src = np.fromiter((index[u] for u, _ in G.edges), dtype=np.int64, count=m)
    dst = np.fromiter((index[v] for _, v in G.edges), dtype=np.int64, count=m)
    if weight is None:
        data = np.ones(m)
    else:
        data = np.fromiter((d for *_, d in G.edges(data=weight)), dtype=float, count=m) / scale
    n = len(index) + extra
    return index, src, dst, data, n, csr_array


def bisection_bandwidth(G: nx.DiGraph) -> float | None:
    """Return the max flow (bytes/s) from the first half of the endpoints to the second half.

    ``None`` for fewer than two endpoints. See the module docstring for what this measures.

    Examples
    --------
    >>> from topologies import fat_tree, ring
    >>> bisection_bandwidth(fat_tree(4)) / 12.5e9   # 8 host links: full bisection
    8.0
    >>> bisection_bandwidth(ring(8)) / 12.5e9       # a ring is cut in two places
    2.0
    """
    validate(G)
    eps = G.graph["endpoints"]
    if len(eps) < 2:
        return None
    from scipy.sparse.csgraph import maximum_flow

    half_a, half_b = eps[: len(eps) // 2], eps[len(eps) // 2 :]
    out_a = [sum(d for *_, d in G.out_edges(a, data="bandwidth")) for a in half_a]
    in_b = [sum(d for *_, d in G.in_edges(b, data="bandwidth")) for b in half_b]
    bound = min(sum(out_a), sum(in_b))  # no flow can exceed this
    unit = bound / 2**30  # capacities become integers <= 2**30 (scipy's maximum_flow is int32)
    index, src, dst, data, n, csr_array = _matrix(G, extra=2, weight="bandwidth", scale=unit)
    s, t = n - 2, n - 1
    src = np.concatenate([src, np.full(len(half_a), s), [index[b] for b in half_b]])
    dst = np.concatenate([dst, [index[a] for a in half_a], np.full(len(half_b), t)])
    data = np.concatenate([data, np.array(out_a) / unit, np.array(in_b) / unit])
    cap = np.clip(np.rint(data), 1, 2**30).astype(np.int32)
    flow = maximum_flow(csr_array((cap, (src, dst)), shape=(n, n)), s, t).flow_value
    return float(flow) * unit


def diameter(G: nx.DiGraph) -> tuple[int, bool]:
    """Return ``(hops, exact)``: the most arcs on a shortest path between two endpoints.

    Examples
    --------
    >>> from topologies import fat_tree, torus
    >>> diameter(fat_tree(4)), diameter(torus((4, 6)))
    ((6, True), (5, True))
    """
    validate(G)
    eps = G.graph["endpoints"]
    if len(eps) < 2:
        return 0, True
    from scipy.sparse.csgraph import shortest_path

    index, src, dst, data, n, csr_array = _matrix(G)
    graph = csr_array((data, (src, dst)), shape=(n, n))
    # An endpoint whose only link goes to one node s (a host on its switch) is 1 + s's distances away.
    anchor = {}
    for e in eps:
        succ, pred = list(G.succ[e]), list(G.pred[e])
        anchor[e] = succ[0] if len(succ) == 1 and pred == succ else e
    sources = list(dict.fromkeys(anchor.values()))
    exact = len(sources) <= _EXACT_SOURCES
    if not exact:
        step = len(sources) / _SAMPLED_SOURCES
        sources = [sources[int(i * step)] for i in range(_SAMPLED_SOURCES)]
    cols = np.array([index[e] for e in eps])
    attached: dict = {}
    for e in eps:
        attached.setdefault(anchor[e], []).append(e)
    best = 0.0
    for start in range(0, len(sources), 256):
        chunk = sources[start : start + 256]
        rows = shortest_path(graph, unweighted=True, indices=[index[x] for x in chunk])[:, cols]
        top = np.argmax(rows, axis=1)
        m1 = rows[np.arange(len(chunk)), top]
        m2 = -np.partition(-rows, 1, axis=1)[:, 1] if rows.shape[1] > 1 else m1
        for r, x in enumerate(chunk):
            for e in attached[x]:
                if e == x:
                    ecc = m1[r]
                else:  # distances from e: 1 + distance from x, not counting e itself
                    ecc = 1 + (m2[r] if eps[top[r]] == e else m1[r])
                best = max(best, ecc)
    return int(best), exact


def injection_bandwidth(G: nx.DiGraph) -> dict[int, float]:
    """Return ``{machine: bytes/s}``: the summed bandwidth of the arcs leaving each machine.

    Examples
    --------
    >>> from topologies import gpu_cluster, fat_tree
    >>> injection_bandwidth(gpu_cluster(nodes=2, nics_per_node=4))  # 4 NICs of 400 Gb/s
    {0: 200000000000.0, 1: 200000000000.0}
    >>> set(injection_bandwidth(fat_tree(4)).values())  # one 100 Gb/s link per host
    {12500000000.0}
    """
    machine = {n: m for n, m in G.nodes(data="node") if isinstance(m, int) and not isinstance(m, bool)}
    machine.update(zip(G.graph["endpoints"], endpoint_nodes(G), strict=True))
    out = dict.fromkeys(sorted(set(endpoint_nodes(G))), 0.0)
    for u, v, bw in G.edges(data="bandwidth"):
        mu = machine.get(u)
        if mu is not None and machine.get(v) != mu:
            out[mu] = out.get(mu, 0.0) + bw
    return out


def summary(G: nx.DiGraph) -> dict:
    """Return the numbers ``collsim topology`` prints: counts, bandwidths, bisection, diameter.

    Keys: ``name``, ``endpoints``, ``hosts``, ``gpus``, ``nics``, ``switches``, ``links``
    (full-duplex), ``arcs``, ``min_bandwidth``/``max_bandwidth`` (bytes/s), ``nodes`` (machines),
    ``endpoints_per_node`` (min, max), ``nics_per_node``, ``routing`` (the policy a Router uses),
    ``min_injection``/``max_injection`` (bytes/s per machine, see :func:`injection_bandwidth`),
    ``bisection_bandwidth`` (bytes/s, first half of the endpoints to the second; ``None`` below two
    endpoints), ``diameter`` (arcs) and ``diameter_exact``.

    Examples
    --------
    >>> from topologies import fat_tree
    >>> s = summary(fat_tree(4))
    >>> s["endpoints"], s["switches"], s["links"], s["bisection_bandwidth"], s["diameter"]
    (16, 20, 48, 100000000000.0, 6)
    >>> s["nodes"], s["nics_per_node"], s["routing"], s["min_injection"]
    (16, 1, 'dmodk', 12500000000.0)
    """
    validate(G)
    kinds = [k for _, k in G.nodes(data="kind")]
    bws = [d for *_, d in G.edges(data="bandwidth")]
    hops, exact = diameter(G)
    sizes = Counter(endpoint_nodes(G)).values()
    inject = injection_bandwidth(G).values()
    return {
        "name": G.graph["name"],
        "endpoints": len(G.graph["endpoints"]),
        "hosts": kinds.count("host"),
        "gpus": kinds.count("gpu"),
        "nics": kinds.count("nic"),
        "switches": kinds.count("switch"),
        "links": sum(1 for _ in links(G)),
        "arcs": G.number_of_edges(),
        "min_bandwidth": min(bws, default=None),
        "max_bandwidth": max(bws, default=None),
        "nodes": len(sizes),
        "endpoints_per_node": (min(sizes), max(sizes)),
        "nics_per_node": nics_per_node(G),
        "routing": G.graph.get("routing") or "ecmp",
        "min_injection": min(inject),
        "max_injection": max(inject),
        "bisection_bandwidth": bisection_bandwidth(G),
        "diameter": hops,
        "diameter_exact": exact,
    }


def _rate(bps: float | None) -> str:
    if bps is None:
        return "n/a"
    return f"{bps / 1e9:.6g} GB/s ({bps * 8 / 1e9:.6g} Gb/s)"


def format_summary(s: dict) -> str:
    """Render :func:`summary` as aligned ``key  value`` lines."""
    n = s["endpoints"]
    lo, hi = s["endpoints_per_node"]
    each = f"{lo}" if lo == hi else f"{lo}..{hi}"
    inject = _rate(s["min_injection"])
    if s["max_injection"] != s["min_injection"]:
        inject += f" .. {_rate(s['max_injection'])}"
    rows = [
        ("topology", s["name"]),
        ("endpoints", f"{n}"),
        ("hosts / gpus", f"{s['hosts']} / {s['gpus']}"),
        ("nics", f"{s['nics']}"),
        ("switches", f"{s['switches']}"),
        ("nodes", f"{s['nodes']} machines, {each} endpoint{'' if hi == 1 else 's'} each"),
        ("nics/node", f"{s['nics_per_node']}"),
        ("routing", s["routing"]),
        ("injection", f"{inject} per node"),
        ("links", f"{s['links']} full-duplex ({s['arcs']} arcs)"),
        ("link bandwidth", f"{_rate(s['min_bandwidth'])} .. {_rate(s['max_bandwidth'])}"),
        (
            "bisection",
            f"{_rate(s['bisection_bandwidth'])} one way, ranks 0..{n // 2 - 1} -> {n // 2}..{n - 1}",
        ),
        ("diameter", f"{'' if s['diameter_exact'] else '>= '}{s['diameter']} hops between endpoints"),
    ]
    return "\n".join(f"{k:<15} {v}" for k, v in rows)
