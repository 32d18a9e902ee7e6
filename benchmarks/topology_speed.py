"""How fast topologies are built and routed at data-centre scale.

Cases (targets from the design):

- ``fat_tree:k=32`` (8192 hosts, 1280 switches, 24576 links): build it, make a ``Router`` and route
  every ring-neighbour pair of ranks ``(i, i+1 mod n)``, target < 5 s in all;
  the same once more in a new Python process, so that start-up and imports count too;
- ``gpu_cluster:nodes=128`` (1024 GPUs): build it, target < 2 s;
- for reference (no target): routing the ring on the GPU cluster and on a 32x32x32 torus (32768 hosts,
  one Dijkstra per destination: no host hangs off a single switch), and ``summary`` (bisection
  max-flow and endpoint diameter) of ``fat_tree:k=32``.

Each case runs ``--repeat`` times in this process (fresh graph and router every time, so no cached
routes are reused); the table shows the median, min and max wall time. The machine is shared, so
read the median.

Run::

    python benchmarks/topology_speed.py [--repeat 5] [--json benchmarks/results/topology_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import topologies

__all__ = ["CASES", "main"]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _route_ring(spec: str):
    """Build ``spec``, make a Router and route every ring-neighbour pair: (graph, ranks, arcs routed)."""
    G = topologies.from_spec(spec)
    router = topologies.Router(G)
    n = len(G.graph["endpoints"])
    hops = sum(len(router.route_ranks(i, (i + 1) % n)) for i in range(n))
    return G, n, hops


def _fat_tree_ring():
    _, n, hops = _route_ring("fat_tree:k=32")
    return f"{n} hosts, {n} routes, {hops} arcs"


def _fat_tree_ring_cold():
    # A fresh interpreter: Python start-up and the networkx/numpy/scipy imports count too.
    code = "import sys; sys.argv = ['x']; from benchmarks.topology_speed import _fat_tree_ring; print(_fat_tree_ring())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=_ROOT, timeout=300)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return "fresh process: " + out.stdout.strip()


def _gpu_build():
    G = topologies.from_spec("gpu_cluster:nodes=128")
    return f"{len(G.graph['endpoints'])} GPUs, {G.number_of_nodes()} nodes, {G.number_of_edges() // 2} links"


def _gpu_ring():
    _, n, _ = _route_ring("gpu_cluster:nodes=128")
    return f"{n} routes"


def _torus_ring():
    _, n, _ = _route_ring("torus:dims=32x32x32")
    return f"{n} hosts, {n} routes"


def _fat_tree_summary():
    s = topologies.summary(topologies.fat_tree(32))
    return f"bisection {s['bisection_bandwidth'] / 1e12:g} TB/s, diameter {s['diameter']}"


#: name -> (function, target seconds or None)
CASES = {
    "fat_tree:k=32 build+route ring": (_fat_tree_ring, 5.0),
    "fat_tree:k=32 same, new python process": (_fat_tree_ring_cold, 5.0),
    "gpu_cluster:nodes=128 build": (_gpu_build, 2.0),
    "gpu_cluster:nodes=128 build+route ring": (_gpu_ring, None),
    "torus:dims=32x32x32 build+route ring": (_torus_ring, None),
    "fat_tree:k=32 summary": (_fat_tree_summary, None),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (default 5)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    topologies.Router(topologies.ring(3))  # import scipy once, outside the timings
    topologies.from_spec("ring:bandwidth=1Gbps")  # and pint

    rows = []
    print(f"{'case':<40} {'target(s)':>9} {'median(s)':>9} {'min(s)':>7} {'max(s)':>7}  ok   what")
    for name, (fn, target) in CASES.items():
        times = []
        for rep in range(args.repeat):
            print(f"  {name}: run {rep + 1}/{args.repeat}", file=sys.stderr, end="\r")
            start = time.perf_counter()
            what = fn()
            times.append(time.perf_counter() - start)
        med = statistics.median(times)
        ok = "-" if target is None else ("yes" if med < target else "NO")
        shown = "-" if target is None else f"{target:g}"
        print(" " * 70, file=sys.stderr, end="\r")
        print(f"{name:<40} {shown:>9} {med:>9.3f} {min(times):>7.3f} {max(times):>7.3f}  {ok:<4} {what}")
        rows.append({"case": name, "target_s": target, "median_s": med, "times_s": times, "what": what})
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"python": platform.python_version(), "machine": platform.machine(), "cases": rows}, f, indent=1)
            f.write("\n")
    return 0 if all(r["target_s"] is None or r["median_s"] < r["target_s"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
