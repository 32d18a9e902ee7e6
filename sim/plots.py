"""Plots: bandwidth curves of records, and a topology coloured by link utilisation.

* :func:`plot_curves` draws bus bandwidth and time against message size on log axes: one colour
  per algorithm (the same colour in every picture), simulated results dashed, measured solid, so a
  ``torchrun`` measurement and a simulation overlay in one picture.
* :func:`draw_utilization` draws a topology with its links coloured by how busy a simulated
  collective kept them, the bottleneck links in red (through :func:`topologies.draw`).

matplotlib is imported inside the functions (Agg backend), so importing :mod:`sim` stays light.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from collectives.algorithms import ALGORITHMS
from sim.results import Record

__all__ = ["algorithm_color", "figure_formats", "check_figure_path", "format_bytes", "plot_curves", "draw_utilization"]

_EXTRA_COLORS = ("tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
_COLORS = dict(zip(ALGORITHMS, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=False))


def algorithm_color(algorithm: str) -> str:
    """The colour of ``algorithm`` in every plot (registry order; others hashed to spare colours)."""
    if algorithm in _COLORS:
        return _COLORS[algorithm]
    return _EXTRA_COLORS[sum(map(ord, algorithm)) % len(_EXTRA_COLORS)]


def figure_formats() -> tuple[str, ...]:
    """The picture file types every collsim command writes: matplotlib's, less ``pgf`` (needs LaTeX).

    One list for ``simulate --plot``, ``plot -o``, ``draw -o``, ``show --plot``, ``validate --plot``
    and ``topology --draw``.

    >>> {"png", "svg", "pdf", "jpg"} <= set(figure_formats())
    True
    """
    from matplotlib.backend_bases import FigureCanvasBase

    return tuple(sorted(set(FigureCanvasBase.get_supported_filetypes()) - {"pgf"}))


def check_figure_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path if its suffix is one of :func:`figure_formats`, else ValueError listing them."""
    out = Path(path)
    formats = figure_formats()
    if out.suffix.lower().lstrip(".") not in formats:
        shown = f"{out.suffix!r}" if out.suffix else "no file type"
        raise ValueError(f"cannot write a picture to {str(out)!r} ({shown}); use one of: "
                         f"{', '.join('.' + f for f in formats)}")
    return out


def _check_out(path: str | os.PathLike) -> Path:
    out = check_figure_path(path)
    if not out.parent.exists():
        raise ValueError(f"output folder {str(out.parent)!r} does not exist")
    return out


def format_bytes(n: float, _pos=None) -> str:
    """A byte count in binary units, as an axis label: ``512 B``, ``64 KiB``, ``1.5 MiB``, ``2 GiB``.

    >>> [format_bytes(n) for n in (4, 1024, 1536 * 1024, 1 << 30)]
    ['4 B', '1 KiB', '1.5 MiB', '1 GiB']
    """
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n:.4g} B"


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
    labels, common = _legend_labels(list(groups))
    fig, (ax_bw, ax_t) = plt.subplots(1, 2, figsize=(12, 4.8))
    all_sizes = []
    for key, rows in sorted(groups.items()):
        source, algorithm = key[0], key[1]
        rows = sorted((r for r in rows if r.size > 0 and r.time_us > 0), key=lambda r: r.size)
        if not rows:
            continue
        sizes = [r.size for r in rows]
        all_sizes += sizes
        simulated = source == "simulated"
        style = {
            "color": algorithm_color(algorithm),
            "linestyle": "--" if simulated else "-",
            "marker": "o",
            "markersize": 3.5,
            "markerfacecolor": "none" if simulated else algorithm_color(algorithm),
        }
        ax_bw.plot(sizes, [max(r.busbw, 1e-12) for r in rows], label=labels[key], **style)
        ax_t.plot(sizes, [r.time_us for r in rows], label=labels[key], **style)
    for ax in (ax_bw, ax_t):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _size_axis(ax.xaxis, all_sizes)
        ax.set_xlabel("message size")
        ax.grid(True, which="both", alpha=0.3)
    ax_bw.set_ylabel("bus bandwidth (GB/s)")
    ax_t.set_ylabel("time (us)")
    ax_bw.set_title("bus bandwidth (higher is better)")
    ax_t.set_title("time (lower is better)")
    handles, labels = ax_bw.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    if title is None:
        title = f"{common}: simulated dashed, measured solid"
    fig.suptitle(title)
    nrows = (len(labels) + 1) // 2
    fig.tight_layout(rect=(0, min(0.08 + 0.035 * nrows, 0.5), 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)


def _legend_labels(keys: list[tuple]) -> tuple[dict[tuple, str], str]:
    """A legend label per line naming only what differs between the lines, and what they share.

    ``keys`` are (source, algorithm, collective, nranks, topology, model). The algorithm is always
    named; the topology, model, source, collective and world size only where they differ, so the
    common part goes once into the title instead of into every entry.
    """
    varies = [len(set(field)) > 1 for field in zip(*keys, strict=True)] if keys else [False] * 6
    labels = {}
    for source, algorithm, collective, nranks, topology, model in keys:
        what = f"{algorithm} {collective} p={nranks}" if varies[2] or varies[3] else algorithm
        where = ", ".join(x for x, v in ((topology, varies[4]), (model and f"{model} model", varies[5])) if v and x)
        if varies[0]:
            where = f"{source}: {where}" if where else source
        labels[(source, algorithm, collective, nranks, topology, model)] = f"{what} ({where})" if where else what
    first = keys[0] if keys else ("", "", "", 0, "", "")
    shared = []
    if not (varies[2] or varies[3]):
        shared.append(f"{first[2]}, {first[3]} ranks")
    if not varies[4] and first[4]:
        shared.append(f"on {first[4]}")
    if not varies[5] and first[5]:
        shared.append(f"{first[5]} model")
    return labels, " ".join(shared) or "collsim"


def _size_axis(axis, sizes: Sequence[int]) -> None:
    """Label a log2 size axis in B/KiB/MiB/GiB: at most 9 ticks at powers of two, 1 KiB/1 MiB/1 GiB among them."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    if not sizes:
        return
    lo, hi = math.floor(math.log2(min(sizes))), math.ceil(math.log2(max(sizes)))
    for step in (1, 2, 5, 10, 20, 30):  # divisors of 10 first: the unit boundaries 2^10, 2^20, ... stay ticks
        exponents = [k for k in range(lo, hi + 1) if k % step == 0]
        if len(exponents) <= 9:
            break
    axis.set_major_locator(FixedLocator([2.0**k for k in exponents]))
    axis.set_major_formatter(FuncFormatter(format_bytes))
    axis.set_minor_formatter(NullFormatter())


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
