"""Plots: bandwidth curves of records, and a topology coloured by link utilisation.

* :func:`plot_curves` draws bus bandwidth and time against message size on log axes: one colour
  per algorithm (the same colour in every picture), simulated results dashed, measured solid, so a
  ``torchrun`` measurement and a simulation overlay in one picture.
* :func:`draw_utilization` draws a topology with its links coloured by how busy a simulated
  collective kept them, the bottleneck links in red (through :func:`topologies.draw`).

matplotlib is imported inside the functions (Agg backend), so importing :mod:`sim` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from collectives.algorithms import ALGORITHMS
from sim.results import Record

__all__ = ["algorithm_color", "plot_curves", "draw_utilization"]

_EXTRA_COLORS = ("tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
_COLORS = dict(zip(ALGORITHMS, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=False))


def algorithm_color(algorithm: str) -> str:
    """The colour of ``algorithm`` in every plot (registry order; others hashed to spare colours)."""
    if algorithm in _COLORS:
        return _COLORS[algorithm]
    return _EXTRA_COLORS[sum(map(ord, algorithm)) % len(_EXTRA_COLORS)]


def _check_out(path: str | os.PathLike) -> Path:
    out = Path(path)
    if not out.parent.exists():
        raise ValueError(f"output folder {str(out.parent)!r} does not exist")
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ValueError(f"output {str(out)!r}: use a .png, .svg or .pdf file name")
    return out


def plot_curves(records: Sequence[Record], path: str | os.PathLike, title: str | None = None) -> str:
    """Plot busbw and time against size for ``records`` and save the figure to ``path``.

    Lines are grouped by (source, algorithm, collective, ranks, topology, model); simulated lines
    are dashed with hollow markers, measured lines solid.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        No records, or an output folder that does not exist.
    """
    if not records:
        raise ValueError("nothing to plot: no records")
    out = _check_out(path)
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[Record]] = {}
    for r in records:
        key = (r.source, r.algorithm, r.collective, r.nranks, r.topology or "", r.model or "")
        groups.setdefault(key, []).append(r)
    fig, (ax_bw, ax_t) = plt.subplots(1, 2, figsize=(12, 4.8))
    for (source, algorithm, collective, nranks, topology, model), rows in sorted(groups.items()):
        rows = sorted((r for r in rows if r.size > 0 and r.time_us > 0), key=lambda r: r.size)
        if not rows:
            continue
        sizes = [r.size for r in rows]
        simulated = source == "simulated"
        style = {
            "color": algorithm_color(algorithm),
            "linestyle": "--" if simulated else "-",
            "marker": "o",
            "markersize": 3.5,
            "markerfacecolor": "none" if simulated else algorithm_color(algorithm),
        }
        where = f"{topology}, {model}" if simulated else topology
        what = f"{algorithm} {collective} p={nranks}" if len({(k[2], k[3]) for k in groups}) > 1 else algorithm
        label = f"{what} ({source}: {where})" if where else f"{what} ({source})"
        ax_bw.plot(sizes, [max(r.busbw, 1e-12) for r in rows], label=label, **style)
        ax_t.plot(sizes, [r.time_us for r in rows], label=label, **style)
    for ax in (ax_bw, ax_t):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("message size (bytes)")
        ax.grid(True, which="both", alpha=0.3)
    ax_bw.set_ylabel("bus bandwidth (GB/s)")
    ax_t.set_ylabel("time (us)")
    ax_bw.set_title("bus bandwidth (higher is better)")
    ax_t.set_title("time (lower is better)")
    handles, labels = ax_bw.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    if title is None:
        colls = sorted({r.collective for r in records})
        title = f"{', '.join(colls)}: simulated dashed, measured solid"
    fig.suptitle(title)
    nrows = (len(labels) + 1) // 2
    fig.tight_layout(rect=(0, min(0.08 + 0.035 * nrows, 0.5), 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)


def draw_utilization(G, result, path: str | os.PathLike, title: str | None = None) -> str:
    """Draw topology ``G`` coloured by the link utilisation of a flow-model ``result``.

    Parameters
    ----------
    G : networkx.DiGraph
        The topology simulated.
    result : sim.flow.SimResult
        A flow-model result (analytic results have no per-link data).
    path : str or PathLike
        Output image (.png, .svg or .pdf).
    title : str, optional
        Default: collective, algorithm, size, time and the busiest link.
    """
    import topologies

    if not len(result.arc_bytes):
        raise ValueError("this result has no per-link data: draw needs the flow model")
    _check_out(path)
    if title is None:
        top = max(result.utilization, default=0.0)
        title = (
            f"{result.collective} {result.algorithm}, {result.nbytes} B on {result.topology} ({result.nranks} ranks)\n"
            f"{result.time * 1e6:.1f} us, busbw {result.busbw:.2f} GB/s; busiest links {100 * top:.0f}% (red)"
        )
    return topologies.draw(G, path, utilization=result.utilization_map(), highlight=result.bottlenecks, title=title)
