"""Pictures of topologies, optionally coloured by link utilisation (matplotlib, Agg, no pyplot).

Layout: lattices whose nodes carry grid coordinates ``x`` (and ``y``, ``z``) are drawn on their grid;
graphs whose switches carry a ``group`` (dragonflies) are drawn by group: the groups around a
circle, the routers of a group side by side, each router's hosts just outside it, so that the
global links are the chords across the circle; when every node has a ``layer`` attribute and there
are several layers (the switched fabrics and GPU clusters), nodes are drawn in rows by layer,
endpoints at the bottom, in node order; otherwise (rings, hypercubes, user graphs) a Kamada-Kawai
layout up to 300 nodes and a seeded spring layout beyond. One line is drawn per full-duplex link;
its utilisation is the larger of its two arcs'.

Large graphs
    Above :data:`MAX_DRAWN_NODES` nodes a picture of every node is a grey block that takes seconds
    to render. Lattices stay on their grid up to :data:`MAX_GRID_NODES` nodes, and a larger 3-D
    lattice is drawn as its plane ``z = 0``. Anything else gets a *tier summary*: one box per tier (nodes of one
    ``layer``, ``kind`` and ``role``, with their count) and one line per pair of tiers that links
    join (with the number of links and their bandwidth; coloured by the busiest of them when
    utilisation is given).

Bottlenecks
    ``highlight`` names the candidate bottleneck arcs; with ``utilization`` given, only those that
    bind are drawn red: within 1 % of the busiest arc's utilisation, and that utilisation at least
    :data:`SATURATED` (a link busy half the time is not what limits the collective: a tree that
    keeps every host link half busy has no red link). See :func:`bottleneck_arcs`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping

import networkx as nx

from topologies.model import links

__all__ = ["draw", "layout", "picture", "bottleneck_arcs", "MAX_DRAWN_NODES", "MAX_GRID_NODES", "SATURATED"]

#: Graphs with more nodes are drawn as a tier summary (see the module docstring).
MAX_DRAWN_NODES = 600
#: Lattices (nodes with grid coordinates) are drawn on their grid up to this many nodes; larger
#: 3-D lattices are drawn as their plane z = 0.
MAX_GRID_NODES = 2048
#: Least utilisation at which the busiest links count as the bottleneck: a link busy less than
#: three quarters of the collective's time does not set it (latency, reductions or waits do).
SATURATED = 0.75
#: Links within this fraction of the busiest one's utilisation are its equals.
_TIE = 0.01

_STYLE = {  # kind -> (marker, colour, size)
    "host": ("o", "#1f77b4", 60),
    "gpu": ("^", "#2ca02c", 60),
    "nic": ("D", "#7f7f7f", 25),
    "switch": ("s", "#ff7f0e", 90),
}


def bottleneck_arcs(
    utilization: Mapping[tuple, float], candidates: Iterable[tuple] | None = None, saturated: float = SATURATED
) -> list[tuple]:
    """Return the arcs that bind: utilisation within 1 % of the largest, and that at least ``saturated``.

    Parameters
    ----------
    utilization : mapping of arc -> float
        Fraction of each arc's bandwidth in use over the collective.
    candidates : iterable of arcs, optional
        Restrict the answer to these (e.g. a simulator's busiest arcs); default every arc.
    saturated : float
        Least utilisation that counts as binding.

    Examples
    --------
    >>> bottleneck_arcs({("a", "b"): 0.995, ("b", "c"): 1.0, ("c", "d"): 0.5})
    [('a', 'b'), ('b', 'c')]
    >>> bottleneck_arcs({("a", "b"): 0.51, ("b", "c"): 0.51})  # nothing saturated: no bottleneck
    []
    """
    top = max(utilization.values(), default=0.0)
    if top < saturated:
        return []
    arcs = utilization if candidates is None else candidates
    return [a for a in arcs if utilization.get(a, 0.0) >= top * (1 - _TIE)]


def picture(G: nx.DiGraph) -> str:
    """How :func:`draw` pictures ``G``: ``"nodes"`` (every node), ``"plane"`` (the plane z = 0 of a
    large 3-D lattice) or ``"summary"`` (a tier summary; see the module docstring).

    Examples
    --------
    >>> from topologies import fat_tree, torus
    >>> picture(fat_tree(4)), picture(fat_tree(16)), picture(torus((16, 16, 16)))
    ('nodes', 'summary', 'plane')
    """
    n = G.number_of_nodes()
    grid = n > 0 and None not in dict(G.nodes(data="x")).values()
    if not grid:
        return "nodes" if n <= MAX_DRAWN_NODES else "summary"
    if n <= MAX_GRID_NODES:
        return "nodes"
    plane = sum(1 for _, z in G.nodes(data="z", default=0) if z == 0)
    return "plane" if plane <= MAX_GRID_NODES else "summary"


def _group_layout(G: nx.DiGraph) -> dict | None:
    """Dragonfly-like graphs: groups around a circle, routers of a group together, hosts outside."""
    group = {n: g for n, g in G.nodes(data="group") if g is not None}
    if not group:
        return None
    gids = sorted(set(group.values()), key=str)
    members: dict = {g: [] for g in gids}
    for n in G:  # node order
        if n in group:
            members[group[n]].append(n)
    angle: dict = {}
    share = 2 * math.pi / len(gids)
    for k, g in enumerate(gids):
        routers = members[g]
        step = 0.7 * share / len(routers)
        for r, n in enumerate(routers):
            angle[n] = math.pi / 2 - k * share - (r - (len(routers) - 1) / 2) * step
    pos = {n: (math.cos(a), math.sin(a)) for n, a in angle.items()}
    for n in G:
        if n in group:
            continue
        anchor = next((m for m in G.succ[n] if m in group), None)
        if anchor is None:
            return None
        hosts = [x for x in G.pred[anchor] if x not in group]
        step = 0.7 * share / len(members[group[anchor]]) / max(len(hosts), 1)
        a = angle[anchor] - (hosts.index(n) - (len(hosts) - 1) / 2) * step
        pos[n] = (1.3 * math.cos(a), 1.3 * math.sin(a))
    return pos


def layout(G: nx.DiGraph) -> dict:
    """Return node positions ``{node: (x, y)}`` as :func:`draw` places them."""
    xs, ys = dict(G.nodes(data="x")), dict(G.nodes(data="y", default=0))
    if G.number_of_nodes() and None not in xs.values():  # lattices: their grid, z drawn as a skew
        zs = dict(G.nodes(data="z", default=0))
        return {n: (xs[n] + 0.35 * zs[n], ys[n] + 0.25 * zs[n]) for n in G}
    pos = _group_layout(G)
    if pos is not None:
        return pos
    layers = dict(G.nodes(data="layer"))
    if G.number_of_nodes() and None not in layers.values() and len(set(layers.values())) > 1:
        rows: dict[int, list] = {}
        for n, k in layers.items():
            rows.setdefault(k, []).append(n)
        ordered = sorted(rows)
        pos = {}
        for y, k in enumerate(ordered):
            row = rows[k]
            for i, n in enumerate(row):
                pos[n] = ((i + 0.5) / len(row), float(y))
        return pos
    U = G.to_undirected(as_view=True)
    if G.number_of_nodes() <= 300:
        return nx.kamada_kawai_layout(U)
    return nx.spring_layout(U, seed=0, iterations=50)


def _segment(a: tuple, b: tuple, curve: bool, stubs: bool = False) -> list[tuple]:
    """A link's line; on a grid, links longer than one step (torus wrap-arounds) bow out as arcs,
    or, on large grids (``stubs``), leave both ends outwards as short stubs (the wrap is implied)."""
    (x0, y0), (x1, y1) = a, b
    length = math.hypot(x1 - x0, y1 - y0)
    if not curve or length < 1.5:
        return [a, b]
    if stubs:
        dx, dy = 0.4 * (x1 - x0) / length, 0.4 * (y1 - y0) / length
        return [(x0 - dx, y0 - dy), a, (math.nan, math.nan), b, (x1 + dx, y1 + dy)]
    # quadratic Bezier through a control point beside the midpoint, sampled as a polyline
    cx, cy = (x0 + x1) / 2 - 0.2 * (y1 - y0), (y0 + y1) / 2 + 0.2 * (x1 - x0)
    ts = [i / 16 for i in range(17)]
    return [
        (
            (1 - t) ** 2 * x0 + 2 * (1 - t) * t * cx + t * t * x1,
            (1 - t) ** 2 * y0 + 2 * (1 - t) * t * cy + t * t * y1,
        )
        for t in ts
    ]


def _check_arcs(G: nx.DiGraph, arcs: Iterable, what: str) -> None:
    for arc in arcs:
        if not (isinstance(arc, tuple) and len(arc) == 2 and G.has_edge(*arc)):
            raise ValueError(f"{what}: {arc!r} is not an arc (u, v) of topology {G.graph.get('name')!r}")


def draw(
    G: nx.DiGraph,
    path: str | os.PathLike,
    utilization: Mapping[tuple, float] | None = None,
    highlight: Iterable[tuple] | None = None,
    title: str | None = None,
    labels: bool | None = None,
) -> str:
    """Draw topology ``G`` to an image file and return its path.

    Parameters
    ----------
    G : networkx.DiGraph
        The topology.
    path : str or PathLike
        Output file; the extension picks the format (``.png``, ``.svg``, ``.pdf``).
    utilization : mapping of arc -> float, optional
        Fraction of each arc's bandwidth in use (0..1; larger values are drawn as 1). Links are
        coloured by it (viridis, with a colour bar) and drawn wider when busier. Arcs left out count
        as 0.
    highlight : iterable of arcs, optional
        Candidate bottleneck arcs: drawn thick and red. With ``utilization``, only those that bind
        (:func:`bottleneck_arcs`); the legend says when none does.
    title : str, optional
        Figure title (default: the topology name).
    labels : bool, optional
        Write node names (default: only when the graph has at most 64 nodes).

    Returns
    -------
    str
        ``path``. Graphs of more than :data:`MAX_DRAWN_NODES` nodes are drawn as a tier summary.

    Raises
    ------
    ValueError
        An arc in ``utilization`` or ``highlight`` that is not in ``G``, a negative utilisation, or an
        output folder that does not exist.

    Examples
    --------
    >>> import os, tempfile
    >>> from topologies import fat_tree
    >>> G = fat_tree(4)
    >>> out = draw(G, os.path.join(tempfile.mkdtemp(), "ft.png"),
    ...            utilization={("h0", "edge0"): 0.9}, highlight=[("h0", "edge0")])
    >>> os.path.getsize(out) > 0
    True
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {path!r}: folder {folder!r} does not exist")
    utilization = dict(utilization or {})
    highlight = list(highlight or [])
    _check_arcs(G, utilization, "utilization")
    _check_arcs(G, highlight, "highlight")
    bad = next((a for a, f in utilization.items() if not f >= 0), None)
    if bad is not None:
        raise ValueError(f"utilization: {bad!r} has {utilization[bad]!r}; fractions must be >= 0")
    note = None
    if utilization and highlight:
        binding = bottleneck_arcs(utilization, highlight)
        if not binding:
            note = f"no saturated link (busiest {100 * max(utilization.values()):.0f}%)"
        highlight = binding
    how = picture(G)
    if how == "summary":
        return _draw_summary(G, path, utilization, highlight, title, note)
    if how == "plane":
        plane = [x for x, z in G.nodes(data="z", default=0) if z == 0]
        heading = title if title is not None else G.graph.get("name", "")
        title = f"{heading}: the plane z = 0 ({len(plane)} of {G.number_of_nodes()} nodes)"
        G = G.subgraph(plane)
        utilization = {a: f for a, f in utilization.items() if G.has_edge(*a)}
        highlight = [a for a in highlight if G.has_edge(*a)]

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    pos = layout(G)
    n = G.number_of_nodes()
    side = min(max(6.0, 1.2 * math.sqrt(n)), 24.0)
    fig = Figure(figsize=(side * 1.3, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title if title is not None else G.graph.get("name", ""))

    pairs = list(links(G))
    grid = None not in dict(G.nodes(data="x")).values()
    stubs = grid and n > 64
    segments = [_segment(pos[u], pos[v], curve=grid, stubs=stubs) for u, v in pairs]
    small = n <= 64
    if utilization:
        import matplotlib

        util = [max(utilization.get((u, v), 0.0), utilization.get((v, u), 0.0)) for u, v in pairs]
        norm = Normalize(0.0, 1.0)
        cmap = matplotlib.colormaps["viridis"]
        widths = [0.5 + 4.0 * min(f, 1.0) for f in util]
        ax.add_collection(LineCollection(segments, colors=cmap(norm(util)), linewidths=widths, zorder=1))
        fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="link utilisation")
    else:
        ax.add_collection(
            LineCollection(segments, colors="#999999", linewidths=1.0 if small else 0.4, zorder=1)
        )
    if highlight:
        marked = [_segment(pos[u], pos[v], curve=grid, stubs=stubs) for u, v in highlight]
        ax.add_collection(LineCollection(marked, colors="#d62728", linewidths=3.5, zorder=2))

    handles = []
    scale = 1.0 if small else max(0.15, 8.0 / math.sqrt(n))
    for kind, (marker, colour, size) in _STYLE.items():
        nodes = [x for x, k in G.nodes(data="kind") if k == kind]
        if nodes:
            xs, ys = zip(*(pos[x] for x in nodes), strict=True)
            ax.scatter(
                xs, ys, s=size * scale, marker=marker, c=colour, edgecolors="black", linewidths=0.3, zorder=3
            )
            handles.append(
                Line2D([], [], marker=marker, color=colour, linestyle="", label=f"{kind} ({len(nodes)})")
            )
    if highlight:
        handles.append(Line2D([], [], color="#d62728", linewidth=3, label="bottleneck"))
    elif note:
        handles.append(Line2D([], [], color="none", label=note))
    if labels if labels is not None else small:
        for x, (px, py) in pos.items():
            ax.annotate(
                str(x), (px, py), fontsize=6, xytext=(0, 5), textcoords="offset points", ha="center", zorder=4
            )
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    ax.autoscale_view()
    ax.margins(0.05)
    fig.savefig(path, dpi=120)
    return path


def _tier(G: nx.DiGraph, n) -> tuple:
    d = G.nodes[n]
    return (d.get("layer", 0), d.get("kind", ""), d.get("role") or d.get("kind", ""))


def _tier_name(key: tuple, count: int) -> str:
    _, kind, role = key
    what = kind if role == kind else f"{role} {kind}"
    return f"{count} {what}{'es' if what.endswith('switch') and count > 1 else 's' if count > 1 else ''}"


def _rate(bw: float) -> str:
    return f"{bw / 1e9:.3g} GB/s" if bw >= 60e9 else f"{bw * 8 / 1e9:.3g} Gb/s"


def _draw_summary(
    G: nx.DiGraph, path: str, utilization: dict, highlight: list, title: str | None, note: str | None
) -> str:
    """Draw a tier summary of a large topology: one box per tier, one line per linked pair of tiers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tier = {n: _tier(G, n) for n in G}
    count: dict = {}
    for key in tier.values():
        count[key] = count.get(key, 0) + 1
    pairs: dict = {}  # (tier a, tier b, link role) -> [links, min bw, max bw, max utilisation, bottleneck]
    hot = set(highlight)
    for u, v in links(G):
        a, b = sorted((tier[u], tier[v]), key=str)
        d = G.edges[u, v]
        key = (a, b, d.get("role") or "")
        util = max(utilization.get((u, v), 0.0), utilization.get((v, u), 0.0))
        entry = pairs.setdefault(key, [0, math.inf, 0.0, 0.0, False])
        entry[0] += 1
        entry[1] = min(entry[1], d["bandwidth"], G.edges[v, u]["bandwidth"])
        entry[2] = max(entry[2], d["bandwidth"], G.edges[v, u]["bandwidth"])
        entry[3] = max(entry[3], util)
        entry[4] = entry[4] or (u, v) in hot or (v, u) in hot
    rows: dict = {}
    for key in sorted(count, key=str):
        rows.setdefault(key[0], []).append(key)
    pos = {}
    for y, layer in enumerate(sorted(rows)):
        for i, key in enumerate(rows[layer]):
            pos[key] = ((i + 0.5) / len(rows[layer]), float(y))

    fig = Figure(figsize=(10, 2.0 + 1.6 * len(rows)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_axis_off()
    heading = title if title is not None else G.graph.get("name", "")
    ax.set_title(
        f"{heading}\nsummary: {G.number_of_nodes()} nodes in {len(count)} tiers "
        f"(graphs of more than {MAX_DRAWN_NODES} nodes are not drawn node by node)",
        fontsize=9,
    )
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    loops: dict = {}
    for (a, b, role), (n, lo, hi, util, bottleneck) in pairs.items():
        rate = _rate(lo) if lo == hi else f"{_rate(lo)}..{_rate(hi)}"
        label = f"{n} {role + ' ' if role else ''}link{'s' if n > 1 else ''}, {rate}"
        if utilization:
            label += f", busiest {100 * util:.0f}%"
        colour = "#d62728" if bottleneck else cmap(min(util, 1.0)) if utilization else "#777777"
        if a == b:
            loops.setdefault(a, []).append((label, colour))
            continue
        (x0, y0), (x1, y1) = pos[a], pos[b]
        ax.plot([x0, x1], [y0, y1], color=colour, linewidth=3.0 if bottleneck else 1.5, zorder=1)
        ax.annotate(label, ((x0 + x1) / 2, (y0 + y1) / 2), fontsize=7, ha="center", va="center", zorder=3,
                    bbox={"boxstyle": "round", "fc": "white", "ec": "none", "alpha": 0.8})
    for key, (x, y) in pos.items():
        _, kind, _ = key
        colour = _STYLE.get(kind, ("s", "#cccccc", 0))[1]
        ax.annotate(_tier_name(key, count[key]), (x, y), fontsize=8, ha="center", va="center", zorder=4,
                    bbox={"boxstyle": "round", "fc": colour, "ec": "black", "alpha": 0.9})
        for k, (label, colour) in enumerate(loops.get(key, [])):
            ax.annotate(f"+ {label} among them", (x, y), xytext=(0, -14 - 10 * k), textcoords="offset points",
                        fontsize=7, ha="center", color=colour if colour != "#777777" else "black", zorder=4)
    if note:
        fig.text(0.5, 0.02, note, ha="center", fontsize=8)
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    fig.savefig(path, dpi=100)
    return path
