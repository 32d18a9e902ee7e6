"""Flow simulator at cluster scale: ring with channels and hierarchical allreduce, 1 GiB, on rail clusters.

Issue 12's scale target: ``gpu_cluster(nodes=16384, gpus_per_node=8)`` (131,072 GPUs, eight NICs
per server on eight rails, routed destination-mod-k), ``ring`` with channels (one per NIC, the
default ``channels="auto"``) and ``hierarchical``, each under 60 s and 8 GiB. Every (nodes,
algorithm) runs in a fresh process through ``sim.select.run_model`` as ``collsim simulate`` does
(GPU defaults, NCCL protocols chosen automatically). "build" is the topology and its compiled
network; "simulate" is the model call, which includes routing every rank pair the schedule uses.
Seconds are CPU time of the process (the machine may be shared; wall time is kept in the JSON);
peak memory is the process's maximum resident set size.

    python benchmarks/sim_scaling_cluster.py                 # 128 .. 16384 servers
    python benchmarks/sim_scaling_cluster.py --nodes 128 1024

Writes ``benchmarks/results/sim_scaling_cluster.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

NODES = (128, 1024, 2048, 8192, 16384)
ALGORITHMS = ("ring", "hierarchical")
SIZE = 1 << 30


def child(nodes: int, algorithm: str) -> dict:
    import resource

    import topologies
    from sim.flow import Network
    from sim.params import defaults_for
    from sim.select import run_model

    c, w = time.process_time(), time.perf_counter()
    G = topologies.gpu_cluster(nodes=nodes, gpus_per_node=8)
    net = Network(G, defaults_for(G))
    build, build_wall = time.process_time() - c, time.perf_counter() - w
    c, w = time.process_time(), time.perf_counter()
    r = run_model("flow", "allreduce", algorithm, net, nodes * 8, SIZE)
    sim, sim_wall = time.process_time() - c, time.perf_counter() - w
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB (KiB on Linux)
    return {"nodes": nodes, "nranks": nodes * 8, "algorithm": algorithm, "size": SIZE, "build_s": build,
            "build_wall_s": build_wall, "simulate_s": sim, "simulate_wall_s": sim_wall, "peak_gib": peak,
            "busbw": r.busbw, "predicted_us": r.time * 1e6, "protocol": getattr(r, "protocol", None),
            "channels": r.params.get("channels")}


def table(rows: list[dict]) -> str:
    lines = ["| ranks | servers | algorithm | build (s) | simulate (s) | total (s) | peak memory (GiB) | busbw (GB/s) "
             "| protocol |", "|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        name = r["algorithm"] + (f" ({r['channels']} channels)" if r.get("channels") else "")
        lines.append(f"| {r['nranks']} | {r['nodes']} | {name} | {r['build_s']:.1f} | {r['simulate_s']:.1f} | "
                     f"{r['build_s'] + r['simulate_s']:.1f} | {r['peak_gib']:.2f} | {r['busbw']:.1f} | {r['protocol']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=list(NODES), help="servers of 8 GPUs")
    parser.add_argument("--child", nargs=2, metavar=("NODES", "ALGORITHM"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1])))
        return 0
    rows = []
    load_before = os.getloadavg()[0]
    for nodes in args.nodes:
        for algorithm in ALGORITHMS:
            print(f"# {nodes * 8} ranks, {algorithm} ...", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, __file__, "--child", str(nodes), algorithm],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout))
    text = table(rows)
    text += (f"\n\nMachine: {os.cpu_count()} CPUs, load average {load_before:.1f} at the start and "
             f"{os.getloadavg()[0]:.1f} at the end (CPU seconds grow when other work shares the cores).")
    print(text)
    with open(os.path.join(args.out, "sim_scaling_cluster.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    with open(os.path.join(args.out, "sim_scaling_cluster.md"), "w") as fh:
        fh.write("# Flow simulator on rail-optimised GPU clusters (allreduce, 1 GiB; seconds are CPU time)\n\n")
        fh.write("Produced by `python benchmarks/sim_scaling_cluster.py`.\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
