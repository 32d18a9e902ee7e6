"""How the flow simulator scales: ranks vs seconds vs peak memory.

For every topology and world size, a fresh process builds the topology, compiles it
(``sim.flow.Network``) and simulates an allreduce with each algorithm at a latency-bound and a
bandwidth-bound size. "first" is the first simulation (it includes routing every rank pair the
algorithm uses, cached afterwards); "again" is the median of the repetitions that follow (routes
cached, as in a size sweep). Seconds are process CPU time (the machine is shared, so wall time is
noisier; it is recorded too). Peak memory is the process's maximum resident set size.

The targets: p = 1024 under 1 s per (algorithm, size), p = 16,384 under 10 s, first run and
again, on every row. The builders' default topologies (fat trees and leaf-spines route
destination-mod-k) run rank-ordered patterns in lock-step; the ECMP rows show what ranks that
drift apart cost: there flows of different steps meet on links, and from the first step where
they would, the simulation runs every step on one event clock, compiled ("clock events": its rate
recomputations; "-": it never ran). The compiled event loops (the clock, and the loop of a large
group of flows in one step) load once per process (numba's cache); the child measures that apart,
before the first row.

With ``--cluster``: issue 12's scale target instead. ``gpu_cluster(nodes=N, gpus_per_node=8)``
(rail-optimised: eight NICs per server on eight rails, routed destination-mod-k) from 128 to 16,384
servers (131,072 GPUs), allreduce 1 GiB with ``ring`` with channels (one per NIC, the default
``channels="auto"``) and ``hierarchical``; target under 60 s and 8 GiB at 131,072 ranks, the
topology build included. Every (servers, algorithm) runs in a fresh process through
``sim.select.run_model`` as ``collsim simulate`` does (GPU defaults, NCCL protocols chosen
automatically: every protocol is costed, sharing routes and compiled flow patterns). "build" is the
topology and its compiled network; "simulate" is the model call, which includes routing every rank
pair the schedule uses.

    python benchmarks/sim_scaling.py                # the full table (a few minutes)
    python benchmarks/sim_scaling.py --quick        # 128 and 1024 ranks only
    python benchmarks/sim_scaling.py --cluster      # 128 .. 16384 servers of 8 GPUs
    python benchmarks/sim_scaling.py --cluster --nodes 128 1024
    python benchmarks/sim_scaling.py --topology dragonfly:groups=16,routers_per_group=8,hosts_per_router=8

``--topology`` runs the same rows on shapes of your own (``--nranks`` ranks, 1024 by default; the
target of that world size applies) and prints them without touching the committed results.

Writes ``benchmarks/results/sim_scaling.md`` and ``.json`` (``sim_scaling_cluster.md`` and ``.json``
with ``--cluster``).
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
CLUSTER_NODES = (128, 1024, 2048, 8192, 16384)
CLUSTER_ALGORITHMS = ("ring", "hierarchical")
CLUSTER_SIZE = 1 << 30


def child(spec: str, nranks: int, reps: int) -> dict:
    import resource

    import sim.flow
    import topologies
    from collectives import algorithm_params, get_schedule
    from sim.flow import Network, load_compiled, simulate

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
    # the compiled event loops load once per process (numba's cache; compiled on the first use on a
    # machine): measured apart, so "first" is what one more (algorithm, size) costs
    t = time.process_time()
    load_compiled()
    clock_load = time.process_time() - t
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
            "build_s": build, "clock_load_s": clock_load, "peak_mib": peak, "rows": rows}


def cluster_child(nodes: int, algorithm: str) -> dict:
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
    r = run_model("flow", "allreduce", algorithm, net, nodes * 8, CLUSTER_SIZE)
    sim, sim_wall = time.process_time() - c, time.perf_counter() - w
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB (KiB on Linux)
    return {"nodes": nodes, "nranks": nodes * 8, "algorithm": algorithm, "size": CLUSTER_SIZE, "build_s": build,
            "build_wall_s": build_wall, "simulate_s": sim, "simulate_wall_s": sim_wall, "peak_gib": peak,
            "busbw": r.busbw, "predicted_us": r.time * 1e6, "protocol": getattr(r, "protocol", None),
            "channels": r.params.get("channels")}


def cluster_table(rows: list[dict]) -> str:
    lines = ["| ranks | servers | algorithm | build (s) | simulate (s) | total (s) | peak memory (GiB) | busbw (GB/s) "
             "| protocol |", "|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        name = r["algorithm"] + (f" ({r['channels']} channels)" if r.get("channels") else "")
        lines.append(f"| {r['nranks']} | {r['nodes']} | {name} | {r['build_s']:.1f} | {r['simulate_s']:.1f} | "
                     f"{r['build_s'] + r['simulate_s']:.1f} | {r['peak_gib']:.2f} | {r['busbw']:.1f} | {r['protocol']} |")
    return "\n".join(lines)


def machine_line(load_before: float) -> str:
    return (f"Machine: {os.cpu_count()} CPUs, load average {load_before:.1f} at the start and "
            f"{os.getloadavg()[0]:.1f} at the end (CPU seconds grow when other work shares the cores).")


def cluster_main(args) -> int:
    rows = []
    load_before = os.getloadavg()[0]
    for nodes in args.nodes:
        for algorithm in CLUSTER_ALGORITHMS:
            print(f"# {nodes * 8} ranks, {algorithm} ...", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, __file__, "--cluster-child", str(nodes), algorithm],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout))
    text = cluster_table(rows) + "\n\n" + machine_line(load_before)
    print(text)
    if sorted(args.nodes) == sorted(CLUSTER_NODES):
        _write(args.out, "sim_scaling_cluster", rows, text,
               "Flow simulator on rail-optimised GPU clusters (allreduce, 1 GiB; seconds are CPU time)",
               "python benchmarks/sim_scaling.py --cluster")
    return 0


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


TARGETS = {1024: 1.0, 16384: 10.0}  # seconds per (algorithm, size)


def verdict(results: list[dict]) -> str:
    """One line per world size with a target: the slowest first and repeated run against it."""
    lines = []
    for nranks, limit in TARGETS.items():
        rows = [(res["topology"], row) for res in results if res["nranks"] == nranks for row in res["rows"]]
        if not rows:
            continue
        spec, worst = max(rows, key=lambda r: max(r[1]["first_s"], r[1]["again_s"]))
        t = max(worst["first_s"], worst["again_s"])
        lines.append(f"p = {nranks}: target < {limit:g} s per (algorithm, size), first run or again: "
                     f"{'met' if t < limit else 'MISSED'}, slowest {t:.2f} s ({worst['algorithm']}, "
                     f"{worst['size'] >> 20} MiB, {spec})")
    loads = [res["clock_load_s"] for res in results if "clock_load_s" in res]
    if loads:
        lines.append(f"Loading the compiled event loops, once per process (not in the times above): "
                     f"{min(loads):.2f}-{max(loads):.2f} s.")
    return "\n".join(lines)


def _check_shapes(configs: list[tuple[str, int]]) -> str | None:
    """What is wrong with ``(spec, ranks)`` shapes given on the command line, before any child starts."""
    import topologies

    for spec, nranks in configs:
        if nranks < 2:
            return f"--nranks must be at least 2, got {nranks}"
        try:
            hosts = len(topologies.endpoints(topologies.from_spec(spec)))
        except ValueError as err:
            return f"--topology {spec}: {err}"
        if hosts < nranks:
            return f"--topology {spec} has {hosts} endpoints, fewer than --nranks {nranks}"
    return None


def _write(out: str, name: str, rows, text: str, title: str, command: str) -> None:
    """``<name>.json`` (the rows) and ``<name>.md`` (the table, with the command that made it) in ``out``."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    with open(os.path.join(out, f"{name}.md"), "w") as fh:
        fh.write(f"# {title}\n\nProduced by `{command}`.\n\n{text}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip 16384 ranks")
    parser.add_argument("--reps", type=int, default=3, help="repetitions after the first run (default 3)")
    parser.add_argument("--cluster", action="store_true",
                        help="rail-optimised GPU clusters of 8-GPU servers: ring with channels and hierarchical, 1 GiB")
    parser.add_argument("--nodes", type=int, nargs="+", default=list(CLUSTER_NODES),
                        help="with --cluster: servers of 8 GPUs (default: %(default)s)")
    parser.add_argument("--topology", nargs="+", metavar="SPEC",
                        help="only these topologies (collsim specs), at --nranks ranks; results are printed, not written")
    parser.add_argument("--nranks", type=int, default=1024, help="with --topology: ranks (default %(default)s)")
    parser.add_argument("--child", nargs=2, metavar=("SPEC", "NRANKS"), help=argparse.SUPPRESS)
    parser.add_argument("--cluster-child", nargs=2, metavar=("NODES", "ALGORITHM"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    if any(n < 1 for n in args.nodes):
        parser.error(f"--nodes must be positive, got {args.nodes}")
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.reps)))
        return 0
    if args.cluster_child:
        print(json.dumps(cluster_child(int(args.cluster_child[0]), args.cluster_child[1])))
        return 0
    if args.cluster:
        return cluster_main(args)
    configs = CONFIGS
    if args.topology:
        configs = [(spec, args.nranks) for spec in args.topology]
        problem = _check_shapes(configs)
        if problem:
            parser.error(problem)
    results = []
    load_before = os.getloadavg()[0]
    for spec, nranks in configs:
        if args.quick and nranks > 1024:
            continue
        reps = args.reps if nranks <= 1024 else 1
        print(f"# {nranks} ranks on {spec} ...", file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, __file__, "--child", spec, str(nranks), "--reps", str(reps)],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout))
    text = table(results) + "\n\n" + verdict(results) + "\n\n" + machine_line(load_before)
    print(text)
    if not args.quick and not args.topology:
        _write(args.out, "sim_scaling", results, text,
               "Flow simulator scaling (allreduce; seconds are CPU time of one simulation)",
               "python benchmarks/sim_scaling.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
