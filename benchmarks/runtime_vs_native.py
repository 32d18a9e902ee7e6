"""collsim's torch.distributed allreduce against native Gloo ``dist.all_reduce``, as time ratios with 95% intervals.

For each world size (one process per rank, Gloo over loopback) and each size from ``--min-size``
to ``--max-size`` (doubling), the benchmark draws **rounds**. A round times every algorithm and
native once, in an order that rotates from round to round, so a slow phase of the machine hits
them alike. One timing (a sample) is ``k`` back-to-back in-place float32 allreduces after a
barrier, ``k`` chosen from native's time per call so that a sample lasts at least ``--sample-ms``
(as nccl-tests' ``-n``); its time per call is the slowest rank's. Per (p, size, algorithm) the
figure is the **median of the per-round ratios ours / native** with its distribution-free 95%
confidence interval (order statistics, :func:`sim.stats.ratio_ci`). Rounds continue until every
algorithm's interval lies within ``±--rel`` (5%) of its median, from ``--min-reps`` up to
``--max-reps`` rounds; a size that hits the bound is marked (``†``) and named on stderr.

Pinning: where the machine lets this process use at least ``2p`` cores, rank ``r``'s process is
started restricted to two cores of its own (``os.sched_setaffinity`` around its start, so the process
and every thread it starts, Gloo's included, run there): a rank's own thread and Gloo's I/O loop
thread run at once, and squeezed onto one core every message waits for a switch between them
(:func:`sim.stats.pin_plan` gives the measurement). Each rank reports its threads' cores, and the
output says whether it pinned and, if not, why (``--no-pin`` turns it off). The results record the
machine: cores, CPU model, load average before and after each world size, Python, torch (Gloo is
the one bundled with torch).

Awake cores (``--awake``): a rank that waits for a message blocks, and its core, with nothing else
to run, halts. A virtual machine's halted vCPU waits for the hypervisor to run it again (about half
a millisecond on the machine this was developed on, where a raw socket round trip between two
processes takes 50-70 us and a Gloo ``send``/``recv`` round trip 0.9 ms); on bare metal a core
wakes in microseconds. With ``--awake`` every core the ranks use runs an idle-priority
(``SCHED_IDLE``) busy loop, which the kernel preempts at once for any rank thread, so the cores
never halt and the ratios measure the code rather than the hypervisor. The report says which way
it ran.

Targets (issue 17, stated for p = 2; evaluated at every p measured) are printed as met (whole
interval at or below), missed (wholly above) or undecided (the interval straddles the target):
``auto`` <= 1.0x native at every size from 64 KiB; ``auto`` geometric mean <= 1.0 over 4 KiB-64 MiB
(bootstrap interval, :func:`sim.stats.geomean_ci`); ``ring`` <= 1.0x from 16 MiB; every interval
within ±5%.

Peak memory: for each algorithm a fresh group of processes allreduces one ``--rss-size`` float32
tensor a few times and reports its peak RSS (``ru_maxrss``); the table compares it with native's and
with one chunk (``size / p``, the ring's scratch).

Writes into ``--out`` (default ``benchmarks/results``): ``runtime_vs_native.csv`` (a row per p,
size and algorithm, with ``_lo``/``_hi`` interval columns), ``runtime_vs_native_rss.csv``,
``runtime_vs_native.json`` (machine, runs, rows with every round's ratio, targets),
``runtime_vs_native.md`` and ``runtime_vs_native.png``::

    python benchmarks/runtime_vs_native.py                          # p = 2 and 4, 4 KiB .. 64 MiB
    python benchmarks/runtime_vs_native.py --nranks 2 --algorithms ring,auto --max-reps 100
    python benchmarks/runtime_vs_native.py --quick --nranks 2 --max-size 8K --out /tmp/q   # smoke test

``--tuning-out FILE`` also writes the measured winner per (p, size), the algorithm with the lowest
median ratio (``auto`` aside), as a tuning table (:func:`collectives.tuning.table_from_best`):
``COLLSIM_TUNING=FILE`` then makes ``auto`` pick what this machine measured fastest.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import multiprocessing as mp
import os
import queue
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from collectives.tuning import table_from_best
from sim.bench import size_arg
from sim.stats import (
    awake_cores,
    best_by_size,
    geomean_ci,
    interleaved_rounds,
    load_average,
    machine_info,
    median_ci,
    pin_plan,
    pin_process,
    thread_affinity,
    verdict,
    verdict_all,
)

__all__ = ["main", "TARGETS"]

ALGORITHMS = ("native", "ring", "tree", "recursive_halving", "recursive_doubling", "auto")
#: Issue 17's targets at p = 2: (algorithm, kind, size range [lo, hi] in bytes, ratio at most).
TARGETS = (
    ("auto", "every size", (64 << 10, math.inf), 1.0),
    ("auto", "geometric mean", (4 << 10, 64 << 20), 1.0),
    ("ring", "every size", (16 << 20, math.inf), 1.0),
)
BOUND_MARK = "†"
#: Cores pinned per rank: its own thread and Gloo's I/O loop thread run at once.
CORES_PER_RANK = 2


def _init(rank: int, nranks: int, store: str):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store, nranks), rank=rank, world_size=nranks,
                            timeout=timedelta(seconds=600))
    return torch, dist


def _timing_worker(rank: int, nranks: int, store: str, cores: list[int] | None, sizes: list[int], algorithms: list[str],
                   opts: dict, results) -> None:
    pin_process(cores)  # already so from the start (_start_on); threads started from here on inherit it
    torch, dist = _init(rank, nranks, store)
    from collectives.distributed import all_reduce

    def runner(algorithm):
        if algorithm == "native":
            return dist.all_reduce
        return lambda t: all_reduce(t, algorithm=algorithm)

    def slowest(values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)  # a sample ends when the slowest rank is done
        return t.tolist()

    fns = {a: runner(a) for a in algorithms}
    rows = [row for size in sizes for row in _measure_size(torch, dist, fns, size, algorithms, opts, slowest)]
    results.put({"rank": rank, "affinity": thread_affinity(), "rows": rows if rank == 0 else None})
    dist.destroy_process_group()


def _measure_size(torch, dist, fns: dict, size: int, algorithms: list[str], opts: dict, slowest) -> list[dict]:
    """Rounds of every algorithm at one size until the ratios are precise; rows (on every rank)."""
    nranks = dist.get_world_size()
    count = size // 4
    bufs = {a: torch.zeros(count) for a in algorithms}  # zeros stay zeros: no overflow, no denormals
    for a in algorithms:  # warm-up: plans compiled, scratch allocated, pages touched
        for _ in range(opts["warmup"]):
            fns[a](bufs[a])

    def time_calls(a: str, k: int) -> float:
        fn, buf = fns[a], bufs[a]
        dist.barrier()
        start = time.perf_counter()
        for _ in range(k):
            fn(buf)
        return time.perf_counter() - start

    got = interleaved_rounds(time_calls, algorithms, "native", slowest, sample_seconds=opts["sample_s"],
                             rel=opts["rel"], min_rounds=opts["min_reps"], max_rounds=opts["max_reps"],
                             most_calls=opts["max_calls"])
    native_ci = median_ci([s["native"] * 1e6 for s in got.samples])
    rows = []
    for a, ratio in got.ratios.items():
        mine = median_ci([s[a] * 1e6 for s in got.samples])
        rows.append({
            "nranks": nranks, "size": size, "algorithm": a,
            **ratio.as_dict("ratio_median"),
            **mine.as_dict("time_us_median"),
            **native_ci.as_dict("native_us_median"),
            "reps": len(got.samples), "calls_per_sample": got.calls,
            "within": ratio.within(opts["rel"]), "bound_hit": got.bound_hit,
            "ratios": [s[a] / s["native"] for s in got.samples],
        })
    if dist.get_rank() == 0:
        shown = ", ".join(f"{a} {iv.format(2)}" for a, iv in got.ratios.items())
        mark = f" {BOUND_MARK} bound of {opts['max_reps']} rounds hit" if got.bound_hit else ""
        print(f"  p={nranks} {_fmt_size(size):>8}: {len(got.samples)} rounds x {got.calls} calls; {shown}{mark}",
              file=sys.stderr, flush=True)
    return rows


def _rss_worker(rank: int, nranks: int, store: str, cores: list[int] | None, size: int, algorithm: str, results) -> None:
    import resource

    torch, dist = _init(rank, nranks, store)
    from collectives.distributed import all_reduce

    x = torch.ones(size // 4)
    for _ in range(3):
        if algorithm == "native":
            dist.all_reduce(x)
        else:
            all_reduce(x, algorithm=algorithm)
    dist.barrier()
    results.put((rank, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
    dist.destroy_process_group()


def _start_on(proc, cores: list[int] | None) -> None:
    """Start ``proc`` restricted to ``cores`` from its first instruction (it inherits this thread's affinity)."""
    if cores is None:
        proc.start()
        return
    saved = os.sched_getaffinity(0)  # this thread's: the benchmark's other threads keep theirs
    pin_process(cores)
    try:
        proc.start()
    finally:
        os.sched_setaffinity(0, saved)


def _launch(nranks: int, target, args: tuple, expect: int, cores: list[list[int]] | None = None) -> list:
    """Run ``target(rank, nranks, store, cores, *args, results)`` in ``nranks`` processes (rank ``r`` on
    ``cores[r]``); collect ``expect`` results."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="collsim-bench-") as tmp:
        store = os.path.join(tmp, "store")
        procs = [ctx.Process(target=target, args=(r, nranks, store, cores[r] if cores else None, *args, results))
                 for r in range(nranks)]
        for rank, proc in enumerate(procs):
            _start_on(proc, cores[rank] if cores else None)
        out: list = []
        deadline = time.monotonic() + 6 * 3600
        try:
            while len(out) < expect:
                try:
                    out.append(results.get(timeout=1.0))
                except queue.Empty:
                    dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                    if dead or time.monotonic() > deadline:
                        raise RuntimeError(f"benchmark worker exited with {dead[0]}" if dead
                                           else "benchmark timed out") from None
        finally:
            for proc in procs:
                proc.join(60 if len(out) == expect else 1)
                if proc.is_alive():
                    proc.kill()
        bad = [proc.exitcode for proc in procs if proc.exitcode != 0]
        if bad:
            raise RuntimeError(f"benchmark worker exited with {bad[0]}")
    return out


def _fmt_size(size: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} B"


def _versions() -> dict[str, str]:
    import torch

    sha = ""
    for part in torch.__config__.show().split(","):
        if "COMMIT_SHA=" in part:
            sha = part.split("=", 1)[1].strip()[:12]
    return {"torch": torch.__version__, "gloo": f"bundled with torch {torch.__version__}" + (f" ({sha})" if sha else "")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nranks", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--min-size", type=size_arg, default=size_arg("4K"))
    parser.add_argument("--max-size", type=size_arg, default=size_arg("64M"))
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS[1:]),
                        help=f"comma-separated, from: {', '.join(ALGORITHMS[1:])} (native always runs)")
    parser.add_argument("--rel", type=float, default=0.05,
                        help="stop a size once every ratio's 95%% interval is within ±REL of its median (default 0.05)")
    parser.add_argument("--min-reps", type=int, default=10, help="rounds per size at least (default 10; >= 6 for a 95%% interval)")
    parser.add_argument("--max-reps", type=int, default=60, help="rounds per size at most: the bound (default 60)")
    parser.add_argument("--reps", type=int, help="exactly this many rounds per size (sets --min-reps and --max-reps)")
    parser.add_argument("--sample-ms", type=float, default=20.0,
                        help="back-to-back calls per sample so that one lasts at least this long (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per algorithm and size (default 3)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin ranks to cores")
    parser.add_argument("--cores-per-rank", type=int, default=CORES_PER_RANK,
                        help="cores of its own per pinned rank (default %(default)s: its thread and Gloo's I/O loop "
                             "thread); ranks are not pinned where the cores are too few")
    parser.add_argument("--awake", action="store_true",
                        help="keep the ranks' cores from halting while they wait (an idle-priority busy loop on "
                             "each: on a VM a halted vCPU can take ~0.5 ms to wake)")
    parser.add_argument("--rss-size", type=size_arg, default=size_arg("64M"))
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 6 rounds of >= 2 ms samples, 1 warm-up call, no peak-memory runs")
    parser.add_argument("--check-targets", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--tuning-out", type=Path, metavar="FILE",
                        help="write the measured winner per world size and size (lowest median ratio, auto "
                             "aside) as a tuning table for COLLSIM_TUNING")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    ours = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    bad = [a for a in ours if a not in ALGORITHMS[1:]]
    if bad or not ours:
        parser.error(f"unknown algorithm(s) {bad or '(none)'}; choose from: {', '.join(ALGORITHMS[1:])}")
    if args.quick:
        args.min_reps = args.max_reps = 6
        args.sample_ms, args.warmup, args.no_rss = 2.0, 1, True
    if args.reps is not None:
        args.min_reps = args.max_reps = args.reps
    if not 1 <= args.min_reps <= args.max_reps:
        parser.error(f"need 1 <= --min-reps <= --max-reps, got {args.min_reps} and {args.max_reps}")
    if not args.rel > 0 or not args.sample_ms > 0 or args.warmup < 0 or any(p < 1 for p in args.nranks):
        parser.error("--rel and --sample-ms must be positive, --warmup >= 0, --nranks >= 1")
    if args.cores_per_rank < 1:
        parser.error(f"--cores-per-rank must be at least 1, got {args.cores_per_rank}")
    if args.max_size < args.min_size or args.min_size < 4:
        parser.error(f"need 4 <= --min-size <= --max-size, got {args.min_size} and {args.max_size}")
    if args.tuning_out is not None:
        if ours == ["auto"]:
            parser.error("--tuning-out needs an algorithm besides auto in --algorithms")
        if not args.tuning_out.parent.is_dir():
            parser.error(f"--tuning-out: no folder {args.tuning_out.parent}")
    algorithms = ["native", *ours]
    sizes = []
    s = args.min_size
    while s <= args.max_size:
        sizes.append(s)
        s *= 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    opts = {"rel": args.rel, "min_reps": args.min_reps, "max_reps": args.max_reps, "sample_s": args.sample_ms / 1e3,
            "warmup": args.warmup, "max_calls": 100_000}
    machine = machine_info(**_versions())

    rows, runs = [], []
    for p in args.nranks:
        cores, pin_text = pin_plan(p, pin=not args.no_pin, cores_per_rank=args.cores_per_rank)
        print(f"timing p={p}: {len(sizes)} sizes x {len(algorithms)} algorithms, {args.min_reps}..{args.max_reps} "
              f"rounds until ±{args.rel:.0%}; {pin_text}", file=sys.stderr, flush=True)
        before = load_average()
        started = time.monotonic()
        with contextlib.ExitStack() as stack:
            used = [c for block in cores for c in block] if cores else None
            awake = stack.enter_context(awake_cores(used)) if args.awake else "cores not kept awake"
            got = _launch(p, _timing_worker, (sizes, algorithms, opts), p, cores)
        runs.append({"nranks": p, "pinned": cores is not None, "cores": cores, "pinning": pin_text, "awake": awake,
                     "threads": {g["rank"]: g["affinity"] for g in got},
                     "load_before": before, "load_after": load_average(),
                     "seconds": round(time.monotonic() - started, 1)})
        rows += next(g["rows"] for g in got if g["rank"] == 0)
    for row in rows:
        if row["bound_hit"]:
            print(f"bound hit: p={row['nranks']} {_fmt_size(row['size'])} {row['algorithm']}: "
                  f"{row['reps']} rounds, ratio {row['ratio_median']:.3f} "
                  f"[{row['ratio_median_lo']:.3f}, {row['ratio_median_hi']:.3f}]", file=sys.stderr)
    columns = [c for c in rows[0] if c != "ratios"]
    with open(out / "runtime_vs_native.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    rss_rows = []
    if not args.no_rss:
        for p in args.nranks:
            for a in algorithms:
                got = _launch(p, _rss_worker, (args.rss_size, a), p)
                rss_rows.append({"nranks": p, "algorithm": a, "peak_rss_mib_max": max(v for _, v in got) / (1 << 20)})
                print(f"rss p={p} {a}: {rss_rows[-1]['peak_rss_mib_max']:.1f} MiB", file=sys.stderr)
        with open(out / "runtime_vs_native_rss.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rss_rows[0]))
            writer.writeheader()
            writer.writerows(rss_rows)

    targets = [t for p in args.nranks for t in _targets(rows, p, args.rel)]
    settings = {k: getattr(args, k) for k in ("min_reps", "max_reps", "rel", "sample_ms", "warmup", "quick")}
    (out / "runtime_vs_native.json").write_text(json.dumps(
        {"machine": machine, "settings": settings, "runs": runs, "rows": rows, "rss": rss_rows, "targets": targets},
        indent=1) + "\n")
    report = _report(rows, rss_rows, sizes, ours, args, machine, runs, targets)
    (out / "runtime_vs_native.md").write_text(report)
    print(report)
    _plot(rows, ours, args.nranks, out / "runtime_vs_native.png")
    if args.tuning_out is not None:
        source = (f"measured: benchmarks/runtime_vs_native.py (torch {machine['versions'].get('torch')}, Gloo), "
                  f"{machine['cores']} cores, {machine['cpu_model']}")
        table_from_best(best_by_size(rows, "ratio_median"), source=source).save(args.tuning_out)
        print(f"tuning table (COLLSIM_TUNING={args.tuning_out}): the measured winner per size", file=sys.stderr)
    missed = [t for t in targets if t["verdict"] == "missed"]
    return 1 if args.check_targets and missed else 0


def _targets(rows: list[dict], p: int, rel: float) -> list[dict]:
    """Issue 17's targets at world size ``p``: verdicts from the intervals of the rows measured."""
    from sim.stats import Interval

    def interval(row: dict) -> Interval:
        return Interval(row["ratio_median"], row["ratio_median_lo"], row["ratio_median_hi"], row["reps"], 0.95,
                        math.nan, "order statistics")

    found = []
    for algorithm, kind, (lo, hi), limit in TARGETS:
        mine = [r for r in rows if r["nranks"] == p and r["algorithm"] == algorithm and lo <= r["size"] <= hi]
        span = f"{_fmt_size(lo)}-{_fmt_size(hi)}" if math.isfinite(hi) else f"from {_fmt_size(lo)}"
        what = f"{algorithm} {'<=' if kind == 'every size' else 'geomean <='} {limit}x native, {span}"
        entry = {"nranks": p, "target": what, "limit": limit}
        if not mine:
            found.append({**entry, "verdict": "not measured", "detail": "no size measured in this range"})
            continue
        sizes = f"{len(mine)} sizes {_fmt_size(mine[0]['size'])}-{_fmt_size(mine[-1]['size'])}"
        if kind == "every size":
            result, worst = verdict_all([interval(r) for r in mine], limit)
            at = next(r for r in mine if r["ratio_median"] == worst.estimate)
            detail = f"worst {worst.format()} at {_fmt_size(at['size'])} ({sizes})"
        else:
            iv = geomean_ci([r["ratios"] for r in mine])
            result, detail = verdict(iv, limit), f"{iv.format()} (bootstrap; {sizes})"
        found.append({**entry, "verdict": result, "detail": detail})
    mine = [r for r in rows if r["nranks"] == p]
    wide = [r for r in mine if not r["within"]]
    found.append({"nranks": p, "target": f"every interval within ±{rel:.0%}", "limit": rel,
                  "verdict": "met" if not wide else "missed",
                  "detail": f"{len(mine) - len(wide)} of {len(mine)} within" + (
                      "; wider: " + ", ".join(f"{_fmt_size(r['size'])} {r['algorithm']}" for r in wide[:8])
                      + (" ..." if len(wide) > 8 else "") if wide else "")})
    return found


def _report(rows, rss_rows, sizes, ours, args, machine, runs, targets) -> str:
    load = machine["load_average"]
    lines = [
        "# collsim allreduce vs native Gloo",
        "",
        "Time ratio ours / native `dist.all_reduce` (float32 sum, Gloo over loopback): the median of the per-round "
        "ratios, with its 95% confidence interval [low, high] (order statistics, distribution-free). A round times "
        f"every algorithm and native once, interleaved; a sample is k back-to-back calls lasting >= {args.sample_ms:g} "
        f"ms, the slowest rank's time. Rounds per size: {args.min_reps} to {args.max_reps}, stopping once every "
        f"interval is within ±{args.rel:.0%}; {BOUND_MARK}: the bound was hit first." + (
            " **--quick: a smoke test, not a measurement.**" if args.quick else ""),
        "",
        f"Machine: {machine['cores']} cores ({machine['usable_cores']} usable), {machine['cpu_model']}, "
        f"{machine['os']}, Python {machine['python']}, "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + (f"; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" if load else "") + ".",
        "",
    ]
    for p in args.nranks:
        run = next(r for r in runs if r["nranks"] == p)
        before, after = run["load_before"], run["load_after"]
        seen = "; ".join(f"rank {r}: {a['threads']} threads on cores {a['cores']}"
                         for r, a in sorted(run["threads"].items()) if a)
        lines.append(f"## p = {p}")
        lines.append("")
        lines.append(f"- {run['pinning']}" + (f" ({seen})" if seen else ""))
        lines.append(f"- {run.get('awake', 'cores not kept awake')}")
        if before and after:
            lines.append(f"- load average (1 min) {before[0]:.2f} before, {after[0]:.2f} after; {run['seconds']:.0f} s")
        lines.append("")
        lines.append("| size | native (us) | calls/sample | rounds | " + " | ".join(ours) + " |")
        lines.append("|---:|---:|---:|---:|" + "---:|" * len(ours))
        for size in sizes:
            r = {row["algorithm"]: row for row in rows if row["nranks"] == p and row["size"] == size}
            first = r[ours[0]]
            cells = [f"{r[a]['ratio_median']:.2f} [{r[a]['ratio_median_lo']:.2f}, {r[a]['ratio_median_hi']:.2f}]"
                     + (f" {BOUND_MARK}" if not r[a]["within"] else "") for a in ours]
            lines.append(f"| {_fmt_size(size)} | {first['native_us_median']:.0f} [{first['native_us_median_lo']:.0f}, "
                         f"{first['native_us_median_hi']:.0f}] | {first['calls_per_sample']} | {first['reps']} | "
                         + " | ".join(cells) + " |")
        lines.append("")
        lines.append(f"Targets (issue 17, set for p = 2){'' if p == 2 else ', shown for reference'}:")
        lines.append("")
        for t in targets:
            if t["nranks"] == p:
                lines.append(f"- {t['target']}: **{t['verdict']}**, {t['detail']}")
        lines.append("")
    if rss_rows:
        lines.append(f"## Peak RSS, one {_fmt_size(args.rss_size)} float32 allreduce per rank")
        lines.append("")
        lines.append("| p | algorithm | peak RSS (MiB) | vs native (MiB) | one chunk (MiB) |")
        lines.append("|---:|---|---:|---:|---:|")
        for row in rss_rows:
            native = next(r for r in rss_rows if r["nranks"] == row["nranks"] and r["algorithm"] == "native")
            chunk = args.rss_size / row["nranks"] / (1 << 20)
            lines.append(f"| {row['nranks']} | {row['algorithm']} | {row['peak_rss_mib_max']:.1f} | "
                         f"{row['peak_rss_mib_max'] - native['peak_rss_mib_max']:+.1f} | {chunk:.1f} |")
        lines.append("")
    return "\n".join(lines)


def _plot(rows, ours, nranks, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(nranks), figsize=(6 * len(nranks), 4.2), sharey=True, squeeze=False)
    for ax, p in zip(axes[0], nranks, strict=True):
        for a in ours:
            pts = sorted((row["size"], row["ratio_median"], row["ratio_median_lo"], row["ratio_median_hi"])
                         for row in rows if row["nranks"] == p and row["algorithm"] == a)
            xs = [x for x, *_ in pts]
            (line,) = ax.plot(xs, [m for _, m, _, _ in pts], marker="o", ms=3, label=a,
                              lw=2.2 if a in ("ring", "auto") else 1.0)
            ax.fill_between(xs, [lo for *_, lo, _ in pts], [hi for *_, hi in pts], color=line.get_color(), alpha=0.15,
                            lw=0)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_title(f"p = {p} (Gloo, loopback)")
        ax.set_xlabel("message size (bytes)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("time(collsim) / time(native): median, 95% CI")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
