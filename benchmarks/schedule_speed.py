"""Schedule IR speed: build + verify at p = 1024, build lazily + iterate every step at p = 16384.

Targets (issue 2): build and verify each algorithm's allreduce at p = 1024 in under 2 s; build and
iterate the step arrays at p = 16384 in under 5 s with peak memory under 1 GiB. Each case runs in
fresh processes: the time is the median of ``--repeat`` untraced runs, the peak memory comes from
one more run under tracemalloc (which sees numpy's buffers, and slows allocation down).

    python benchmarks/schedule_speed.py [--json benchmarks/results/schedule_speed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CASE = r"""
import json, sys, time, tracemalloc
from collectives import algorithm_params, get_schedule, verify
algorithm, nranks, mode, traced = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
if traced:
    tracemalloc.start()
start = time.perf_counter()
schedule = get_schedule("allreduce", algorithm, nranks, **algorithm_params(algorithm, nranks, 1 << 28))
transfers = 0
if mode == "verify":
    verify(schedule)
    transfers = None
else:
    for step in schedule.steps():
        transfers += len(step)
seconds = time.perf_counter() - start
peak = tracemalloc.get_traced_memory()[1] if traced else 0
print(json.dumps({"algorithm": algorithm, "nranks": nranks, "mode": mode, "steps": schedule.nsteps,
                  "transfers": transfers, "seconds": seconds, "peak_mib": peak / 2**20}))
"""

ALGORITHMS = ["ring", "tree", "recursive_halving", "recursive_doubling"]
CASES = [("verify", 1024, 2.0, None), ("iterate", 16384, 5.0, 1024.0)]


def _run_case(algorithm: str, nranks: int, mode: str, traced: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CASE, algorithm, str(nranks), mode, str(int(traced))],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--repeat", type=int, default=3, help="untraced runs per case (median)")
    args = parser.parse_args()
    records = []
    print(f"{'mode':>8} {'ranks':>6} {'algorithm':>18} {'steps':>6} {'seconds':>8} {'target':>7} {'peak MiB':>9} {'ok':>3}")
    for mode, nranks, limit_s, limit_mib in CASES:
        for algorithm in ALGORITHMS:
            rec = _run_case(algorithm, nranks, mode, traced=True)
            rec["seconds"] = statistics.median(
                _run_case(algorithm, nranks, mode, traced=False)["seconds"] for _ in range(args.repeat)
            )
            ok = rec["seconds"] < limit_s and (limit_mib is None or rec["peak_mib"] < limit_mib)
            rec["ok"] = ok
            records.append(rec)
            print(f"{mode:>8} {nranks:>6} {algorithm:>18} {rec['steps']:>6} {rec['seconds']:>8.2f} "
                  f"{'<' + str(limit_s):>7} {rec['peak_mib']:>9.1f} {'yes' if ok else 'NO':>3}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
