"""Pictures of topologies, optionally coloured by link utilisation (matplotlib, Agg, no pyplot).

Layout: lattices whose nodes carry grid coordinates ``x`` (and ``y``, ``z``) are drawn on their grid;
when every node has a ``layer`` attribute and there are several layers (the switched
fabrics and GPU clusters), nodes are drawn in rows by layer, endpoints at the bottom, in node order;
otherwise (rings, tori, hypercubes, user graphs) a Kamada-Kawai layout up to 300 nodes and a seeded
spring layout beyond. One line is drawn per full-duplex link; its utilisation is the larger of its
two arcs'.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping

import networkx as nx

from topologies.model import links

__all__ = ["draw", "layout"]

_STYLE = {  # kind -> (marker, colour, size)
    "host": ("o", "#1f77b4", 60),
    "gpu": ("^", "#2ca02c", 60),
    "nic": ("D", "#7f7f7f", 25),
    "switch": ("s", "#ff7f0e", 90),
}


def layout(G: nx.DiGraph) -> dict:
    """Return node positions ``{node: (x, y)}`` as :func:`draw` places them."""
    xs, ys = dict(G.nodes(data="x")), dict(G.nodes(data="y", default=0))
    if G.number_of_nodes() and None not in xs.values():  # lattices: their grid, z drawn as a skew
        zs = dict(G.nodes(data="z", default=0))
        return {n: (xs[n] + 0.35 * zs[n], ys[n] + 0.25 * zs[n]) for n in G}
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


def _segment(a: tuple, b: tuple, curve: bool) -> list[tuple]:
    """A link's line; on a grid, links longer than one step (torus wrap-arounds) bow out as arcs."""
    (x0, y0), (x1, y1) = a, b
    length = math.hypot(x1 - x0, y1 - y0)
    if not curve or length < 1.5:
        return [a, b]
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
        Arcs to mark (the bottleneck links): drawn thick and red.
    title : str, optional
        Figure title (default: the topology name).
    labels : bool, optional
        Write node names (default: only when the graph has at most 64 nodes).

    Returns
    -------
    str
        ``path``.

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
    segments = [_segment(pos[u], pos[v], curve=grid) for u, v in pairs]
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
        marked = [_segment(pos[u], pos[v], curve=grid) for u, v in highlight]
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
