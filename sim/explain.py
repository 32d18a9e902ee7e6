"""Why the predicted winner wins: bottleneck links, latency against bandwidth, runner-up and margin.

For every range of sizes with the same winner (algorithm and, on GPUs, protocol), at the largest
size of the range:

* the **bottleneck links** of the winner and how busy they are (flow model: the arcs of highest
  average utilisation; the analytic model has no per-link results);
* the **latency share**: ``1 - T_bytes / T``, where ``T_bytes`` is the winner's time with every
  latency set to zero (per-message overhead, link and protocol latencies; the per-byte terms stay),
  and the **bandwidth share** ``T_bytes / T``;
* the **runner-up** and its **margin** (how much slower it is), the smallest margin over the range.

>>> import topologies
>>> from sim.flow import Network
>>> from sim.select import select, sweep
>>> net = Network(topologies.switch(8))
>>> sel = select(sweep(net, 8, [1024, 1 << 24], ["ring", "recursive_doubling"]))
>>> lines = explain(sel, net)
>>> print(lines[1].split(";")[0])
#   1 KiB: recursive_doubling
"""

from __future__ import annotations

__all__ = ["human", "explain"]


def human(n: int) -> str:
    """A byte count for people: ``1 KiB``, ``1.5 MiB``.

    >>> human(1536), human(1 << 30), human(100)
    ('1.5 KiB', '1 GiB', '100 B')
    """
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n} B"


def _bytes_only(network):
    """The same topology and parameters with every latency (nearly) zero."""
    from sim.flow import Network

    params = network.params.replace(alpha=0.0, latency_scale=1e-12)
    return Network(network.G, params, router=network.router)


def explain(selection, network, *, itemsize: int = 4, channels="auto", top: int = 3) -> list[str]:
    """``#`` lines saying, per size range, why the winner wins (see the module docstring)."""
    from sim.select import label, run_model

    by_size: dict[int, list] = {}
    for r in selection.results:
        by_size.setdefault(r.nbytes, []).append(r)
    ranges: list[list[int]] = []
    last = None
    for size in sorted(by_size):
        win = min(by_size[size], key=lambda r: r.time)
        if label(win) != last:
            ranges.append([])
            last = label(win)
        ranges[-1].append(size)
    zero = None
    lines = ["# why the winner wins (per size range, at its largest size):"]
    for sizes in ranges:
        size = sizes[-1]
        rs = sorted(by_size[size], key=lambda r: r.time)
        win = rs[0]
        span = human(sizes[0]) if len(sizes) == 1 else f"{human(sizes[0])} .. {human(size)}"
        parts = [f"{label(win)}"]
        if win.time > 0:
            if zero is None:
                zero = _bytes_only(network)
            fast = run_model(win.model, win.collective, win.algorithm, zero, win.nranks, size, itemsize,
                             protocol=getattr(win, "protocol", None) or "auto", channels=channels).time
            share = min(max(fast / win.time, 0.0), 1.0)
            parts.append(f"latency {100 * (1 - share):.0f}% / bandwidth {100 * share:.0f}% of {win.time * 1e6:.4g} us")
        if win.arc_bytes.size and win.arc_bytes.any():
            order = win.utilization.argsort()[::-1][:top]
            links = ", ".join(f"{win.arcs[k][0]}->{win.arcs[k][1]} {100 * win.utilization[k]:.0f}%" for k in order
                              if win.utilization[k] > 0)
            parts.append(f"busiest links {links}")
        elif win.model == "analytic":
            parts.append("no per-link data (analytic model)")
        if len(rs) > 1:
            margins = []
            for s in sizes:
                ordered = sorted(by_size[s], key=lambda r: r.time)
                if ordered[0].time > 0:
                    margins.append((ordered[1].time / ordered[0].time - 1, label(ordered[1])))
            if margins:
                margin, name = min(margins)
                parts.append(f"runner-up {name} {100 * margin:.1f}% slower" + (" (closest in the range)" if len(sizes) > 1 else ""))
        lines.append(f"#   {span}: " + "; ".join(parts))
    return lines
