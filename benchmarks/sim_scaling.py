"""How the flow simulator scales: ranks vs seconds vs peak memory.

For every topology and world size, a fresh process builds the topology, compiles it
(``sim.flow.Network``) and simulates an allreduce with each algorithm at a latency-bound and a
bandwidth-bound size. "first" is the first simulation (it includes routing every rank pair the
algorithm uses, cached afterwards); "again" is the median of the repetitions that follow (routes
cached, as in a size sweep). Seconds are process CPU time (the machine is shared, so wall time is
noisier; it is recorded too). Peak memory is the process's maximum resident set size.

The targets: p = 1024 under 1 s per (algorithm, size), p = 16,384 under 10 s, on the builders'
default topologies (fat trees and leaf-spines route destination-mod-k, so rank-ordered patterns
run in lock-step). The ECMP rows show what ranks that drift apart cost: there flows of different
steps meet on links, and from the first step where they would, the simulation runs every step on
one event clock ("clock events": its rate recomputations; "-": it never ran).

    python benchmarks/sim_scaling.py                # the full table (a few minutes)
    python benchmarks/sim_scaling.py --quick        # 128 and 1024 ranks only

Writes ``benchmarks/results/sim_scaling.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CONFIGS = [
    ("fat_tree:k=8", 128),
    ("fat_tree:k=16", 1024),
    ("leaf_spine:leaves=256,spines=16,hosts_per_leaf=64", 16384),
    # ECMP hashing: collisions make ranks drift apart, so flows of different steps meet
    ("fat_tree:k=16,routing=ecmp", 1024),
    ("leaf_spine:leaves=256,spines=16,hosts_per_leaf=64,routing=ecmp", 16384),
]
ALGORITHMS = ("ring", "tree", "recursive_halving", "recursive_doubling")
SIZES = (1 << 20, 1 << 28)


def child(spec: str, nranks: int, reps: int) -> dict:
    import resource

    import sim.flow
    import topologies
    from collectives import algorithm_params, get_schedule
    from sim.flow import Network, simulate

    events: list[int] = []  # rate recomputations of the event clock across steps, per run of it
    clock = getattr(sim.flow, "_Clock", None)
    if clock is not None:
        run = clock.run

        def counted(self):
            out = run(self)
            events.append(self.events)
            return out

        clock.run = counted
    t = time.process_time()
    G = topologies.from_spec(spec)
    net = Network(G)
    build = time.process_time() - t
    rows = []
    for algorithm in ALGORITHMS:
        for nbytes in SIZES:
            schedule = get_schedule("allreduce", algorithm, nranks, **algorithm_params(algorithm, nranks, nbytes))
            cpu, wall = [], []
            for _ in range(reps + 1):
                events.clear()
                c, w = time.process_time(), time.perf_counter()
                result = simulate(schedule, net, nbytes)
                cpu.append(time.process_time() - c)
                wall.append(time.perf_counter() - w)
            again = sorted(cpu[1:])[len(cpu[1:]) // 2]
            rows.append({"algorithm": algorithm, "size": nbytes, "steps": schedule.nsteps, "first_s": cpu[0],
                         "again_s": again, "again_wall_s": sorted(wall[1:])[len(wall[1:]) // 2],
                         "predicted_us": result.time * 1e6, "busbw": result.busbw,
                         "clock_events": sum(events) if events else None})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"topology": spec, "nranks": nranks, "nodes": G.number_of_nodes(), "arcs": G.number_of_edges(),
            "build_s": build, "peak_mib": peak, "rows": rows}


def table(results: list[dict]) -> str:
    lines = [
        "| ranks | topology | algorithm | size | steps | first (s) | again (s) | clock events | predicted (us) "
        "| peak memory (MiB) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        for row in res["rows"]:
            size = f"{row['size'] >> 20} MiB"
            events = row.get("clock_events")
            lines.append(f"| {res['nranks']} | {res['topology']} | {row['algorithm']} | {size} | {row['steps']} | "
                         f"{row['first_s']:.2f} | {row['again_s']:.2f} | {'-' if events is None else events} | "
                         f"{row['predicted_us']:.1f} | {res['peak_mib']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip 16384 ranks")
    parser.add_argument("--reps", type=int, default=3, help="repetitions after the first run (default 3)")
    parser.add_argument("--child", nargs=2, metavar=("SPEC", "NRANKS"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.reps)))
        return 0
    results = []
    load_before = os.getloadavg()[0]
    for spec, nranks in CONFIGS:
        if args.quick and nranks > 1024:
            continue
        reps = args.reps if nranks <= 1024 else 1
        print(f"# {nranks} ranks on {spec} ...", file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, __file__, "--child", spec, str(nranks), "--reps", str(reps)],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout))
    text = table(results)
    text += (f"\n\nMachine: {os.cpu_count()} CPUs, load average {load_before:.1f} at the start and "
             f"{os.getloadavg()[0]:.1f} at the end (CPU seconds grow when other work shares the cores).")
    print(text)
    if not args.quick:
        with open(os.path.join(args.out, "sim_scaling.json"), "w") as fh:
            json.dump(results, fh, indent=1)
        with open(os.path.join(args.out, "sim_scaling.md"), "w") as fh:
            fh.write("# Flow simulator scaling (allreduce; seconds are CPU time of one simulation)\n\n")
            fh.write("Produced by `python benchmarks/sim_scaling.py`.\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
