"""What one step costs on an emulated switch, by how its transfers use connections (needs root).

    sudo python benchmarks/exchange_patterns.py [--topology switch:n=4,bandwidth=20Mbps] [--size 1M] [--reps 3]
        [--allreduce ROUNDS] [--send-buffer 64K]

The flow model prices a step by the bytes each link carries. Recursive halving and doubling
measure slower than it says on a switch, also at link rates where the ranks leave the CPU idle
(``docs/validation.md``), while the ring matches. This script times one step of each shape that
those schedules are made of, four ranks on the emulation's first four hosts, Gloo ``send``/``recv``:

* ``oneway``: ranks 0 and 2 send ``--size`` to ranks 1 and 3, which answer with 4 bytes;
* ``ring``: every rank sends to the next and receives from the one before (two connections, one
  direction each), as the ring's steps do;
* ``exchange``: ranks pair up (r xor 1) and send each other ``--size`` on their one connection,
  both ways at once, as every step of recursive halving and doubling does; the same pair every
  step;
* ``switching``: the same exchange, with partners r xor 1 and r xor 2 taking turns, as recursive
  halving's steps do.

Every pattern moves ``--size`` per rank over links of the same rate, so the flow model prices a
step of each the same (the one-way step also). A step's time is from posting to completion on the
rank; the output gives, per pattern, the median and the 10th-90th percentile over every step of
every rank, and the median relative to ``oneway``. Six steps per repetition, a barrier between
repetitions; nothing is saved. ``--allreduce ROUNDS`` then times whole allreduces of ``--size``
bytes with the ring, recursive halving and recursive doubling (collsim's torch runtime), the
latter two also without the runtime's partner-switch tactic (``/off``:
``collectives.execution.SWITCH_BYTES = 0``), the slowest rank's time per round, relative to the
ring. ``--send-buffer`` caps what a socket may hold
unsent (``tcp_wmem``) in every namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

PATTERNS = ("oneway", "ring", "exchange", "switching")
STEPS = 6

RANK = r"""
import json, os, sys, time
import torch, torch.distributed as dist

rank, reps, count, steps = (int(os.environ[k]) for k in ("RANK", "REPS", "COUNT", "STEPS"))
dist.init_process_group("gloo", init_method=f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
                        rank=rank, world_size=4)
pg = dist.group.WORLD
mine, theirs = torch.zeros(count), torch.zeros(count)


def timed(recvs, sends):
    start = time.perf_counter()
    works = [pg.recv([buf], peer, tag) for buf, peer, tag in recvs] + [pg.send([buf], peer, tag) for buf, peer, tag in sends]
    for work in works:
        work.wait()
    return time.perf_counter() - start


def step(pattern, k):
    if pattern == "oneway":
        peer = rank ^ 1
        if rank % 2 == 0:
            return timed([(theirs[:1], peer, 1000 + k)], [(mine, peer, k)])
        return timed([(theirs, peer, k)], [(mine[:1], peer, 1000 + k)])
    if pattern == "ring":
        return timed([(theirs, (rank - 1) % 4, k)], [(mine, (rank + 1) % 4, k)])
    peer = rank ^ 1 if pattern == "exchange" or k % 2 == 0 else rank ^ 2
    return timed([(theirs, peer, k)], [(mine, peer, k)])


times = {}
for pattern in sys.argv[1:]:
    for _ in range(reps):
        dist.barrier()
        times.setdefault(pattern, []).extend(step(pattern, k) for k in range(steps))
rounds = int(os.environ["ALLREDUCE"])
if rounds:  # whole allreduces of count * 4 bytes, the algorithms interleaved in a rotating order
    import collectives.execution as tactics
    from collectives.distributed import all_reduce

    switch = tactics.SWITCH_BYTES
    names = ("ring", "recursive_halving", "recursive_doubling", "recursive_halving/off", "recursive_doubling/off")

    def call(name):  # "/off": the runtime without its partner-switch tactic (SWITCH_BYTES = 0)
        tactics.SWITCH_BYTES = 0 if name.endswith("/off") else switch
        all_reduce(mine, algorithm=name.split("/")[0])

    for name in names:
        call(name)  # warm-up: connections, plan, scratch
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            dist.barrier()
            start = time.perf_counter()
            call(name)
            times.setdefault("allreduce " + name, []).append(time.perf_counter() - start)
print(json.dumps(times))
dist.destroy_process_group()
"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    from sim.bench import size_arg

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default="switch:n=4,bandwidth=20Mbps",
                        help="an emulated topology with at least 4 endpoints (default %(default)s)")
    parser.add_argument("--size", type=size_arg, default=1 << 20, help="bytes per rank and step: 8, 64K, 1M ... (default 1M)")
    parser.add_argument("--reps", type=int, default=3, help=f"repetitions of {STEPS} steps per pattern (default 3)")
    parser.add_argument("--allreduce", type=int, default=0, metavar="ROUNDS",
                        help="also time whole allreduces of --size bytes (ring, recursive halving, recursive doubling, "
                             "the last two also with partner switches off), "
                             "this many rounds; a round's time is its slowest rank's (default 0: none)")
    parser.add_argument("--send-buffer", type=size_arg, default=None,
                        help="cap what a socket may hold unsent (tcp_wmem's maximum), e.g. 64K; default: the kernel's")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error(f"--reps must be at least 1, got {args.reps}")
    if args.size < 4:
        parser.error(f"--size must be at least 4 bytes, got {args.size}")
    if args.allreduce < 0:
        parser.error(f"--allreduce must be 0 or more rounds, got {args.allreduce}")
    if args.send_buffer is not None and args.send_buffer < 4096:
        parser.error(f"--send-buffer must be at least 4K, got {args.send_buffer}")

    import topologies
    from topologies.emulate import Emulation, emulation_unavailable_reason

    try:
        G = topologies.from_spec(args.topology)
    except ValueError as err:
        parser.error(f"--topology: {err}")
    if len(topologies.endpoints(G)) < 4:
        parser.error(f"--topology {args.topology} has fewer than 4 endpoints")
    reason = emulation_unavailable_reason()
    if reason:
        parser.error(f"cannot emulate here: {reason}")

    buffer = f", send buffer at most {args.send_buffer} B" if args.send_buffer else ""
    print(f"# {args.topology}: 4 ranks, {args.size} B per rank and step, {args.reps} x {STEPS} steps per pattern{buffer}",
          file=sys.stderr, flush=True)
    with Emulation(G, spec=args.topology, send_buffer=args.send_buffer) as em:
        env = {"MASTER_ADDR": em.host_address(0), "MASTER_PORT": "29517", "REPS": str(args.reps),
               "COUNT": str(args.size // 4), "STEPS": str(STEPS), "ALLREDUCE": str(args.allreduce)}
        procs = [em.run(i, [sys.executable, "-c", RANK, *PATTERNS], {**env, "RANK": str(i)},
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for i in range(4)]
        outs = [p.communicate(timeout=3600)[0] for p in procs]
        if any(p.returncode for p in procs):
            print(f"exchange_patterns: a rank failed (exit codes {[p.returncode for p in procs]})", file=sys.stderr)
            return 1
    steps: dict[str, list[float]] = {name: [] for name in PATTERNS}
    rounds: dict[str, list[list[float]]] = {}
    for out in outs:
        for name, values in json.loads(out.strip().splitlines()[-1]).items():
            if name.startswith("allreduce "):
                rounds.setdefault(name, []).append([v * 1e3 for v in values])
            else:
                steps[name].extend(v * 1e3 for v in values)
    base = statistics.median(steps["oneway"])
    print("| pattern | median (ms) | 10th-90th percentile (ms) | median / oneway |")
    print("|---|---:|---:|---:|")
    for name in PATTERNS:
        values = steps[name]
        print(f"| {name} | {statistics.median(values):.1f} | {_percentile(values, 0.1):.1f}-{_percentile(values, 0.9):.1f} "
              f"| {statistics.median(values) / base:.2f} |")
    if rounds:
        slowest = {name: [max(ranks) for ranks in zip(*per_rank, strict=True)] for name, per_rank in rounds.items()}
        ring = statistics.median(slowest["allreduce ring"])
        print()
        print("| allreduce | median (ms) | 10th-90th percentile (ms) | median / ring |")
        print("|---|---:|---:|---:|")
        for name, values in slowest.items():
            print(f"| {name.split()[1]} | {statistics.median(values):.1f} | {_percentile(values, 0.1):.1f}-"
                  f"{_percentile(values, 0.9):.1f} | {statistics.median(values) / ring:.2f} |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
