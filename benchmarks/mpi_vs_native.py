"""collsim's MPI allreduce against MPI_Allreduce: time ratio ours / native per size, with 95% intervals.

    python benchmarks/mpi_vs_native.py [--nranks 2 4] [-b 4K] [-e 64M] [--max-reps 60] [--out benchmarks/results]
    python benchmarks/mpi_vs_native.py --quick --nranks 2 -b 4K -e 8K --out /tmp/q     # smoke test

Run without ``mpiexec``: the script launches itself under ``mpiexec -n N`` for each ``N``. The
statistics are those of ``benchmarks/runtime_vs_native.py``: per size the job draws **rounds**; a
round times every algorithm and native once, side by side, in an order that rotates from round
to round; one timing (a sample) is ``k`` back-to-back in-place float32 allreduces after a barrier,
``k`` chosen from native's time per call so that a sample lasts at least ``--sample-ms`` (as
nccl-tests' ``-n``), on the slowest rank. The figure per (n, size, algorithm) is the **median of
the per-round ratios ours / native** with its distribution-free 95% confidence interval (order
statistics, :func:`sim.stats.ratio_ci`); rounds continue until every interval is within ``±--rel``
(5%), from ``--min-reps`` up to ``--max-reps``; a size that hits the bound is marked ``†`` and named.

Pinning: where this process may use at least ``n`` cores, rank ``r`` runs on its own core (Hydra's
``-bind-to user:...`` from the process's start, and ``os.sched_setaffinity`` from ``PMI_RANK``
before MPI starts, for other launchers; threads started afterwards inherit the core); the output says whether it pinned and why not (``--no-pin`` turns it off). The results
record the machine: cores, CPU model, load average before and after each job, the MPI library's
version string, mpi4py and numpy versions, and the ``MPIR_CVAR_*`` settings in the environment.

Targets (issue 17, stated for n = 2; evaluated at every n) are printed as met / missed / undecided
from the intervals: ``ring`` and ``recursive_halving`` <= 1.0x ``MPI_Allreduce`` at every size from
1 MiB; ``auto`` geometric mean <= 1.5 below 1 MiB (bootstrap interval, :func:`sim.stats.geomean_ci`).

Writes ``mpi_vs_native.json`` (``machine``, ``settings``, ``runs``, ``targets`` and ``records``: one
per (n, size, algorithm) with ``ratio``/``ratio_lo``/``ratio_hi`` and every round's ratio),
``mpi_vs_native.md`` (the table) and ``mpi_vs_native.png`` (ratio against size) into ``--out``;
with ``--tuning-out FILE`` also the measured winner per (n, size), ``auto`` aside, as a tuning table
for ``COLLSIM_TUNING`` (:func:`collectives.tuning.table_from_best`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from collectives.tuning import table_from_best
from sim.bench import size_arg
from sim.stats import (
    Interval,
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

__all__ = ["main", "worker", "TARGETS"]

ALGORITHMS = ["ring", "recursive_halving", "tree", "recursive_doubling", "auto"]
#: Issue 17's targets at n = 2: (algorithm, kind, size range [lo, hi] in bytes, ratio at most).
TARGETS = (
    ("ring", "every size", (1 << 20, math.inf), 1.0),
    ("recursive_halving", "every size", (1 << 20, math.inf), 1.0),
    ("auto", "geometric mean", (1, (1 << 20) - 1), 1.5),
)
BOUND_MARK = "†"


def human(nbytes: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift} {unit}"
    return f"{nbytes} B"


# ----------------------------------------------------------------------------------------------
# inside mpiexec


def _launcher_rank() -> int | None:
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return None


def worker(args: argparse.Namespace) -> None:
    """Measure every size on this job's ranks; rank 0 prints one JSON record per (size, algorithm), then the job's facts."""
    cores = [int(c) for c in args.cores.split(",")] if args.cores else None
    early = _launcher_rank()
    if cores is not None and early is not None:
        pin_process(cores[early])  # Hydra already bound it; other launchers: before MPI starts any thread
    import numpy as np
    from mpi4py import MPI

    from collectives import mpi as cmpi

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    if comm.Get_size() != args.nranks[0]:  # each process its own world: mpiexec is not the MPI mpi4py loaded
        if rank == 0:
            library = " ".join(MPI.Get_library_version().split("\n")[0].split())
            print(json.dumps({"error": f"mpiexec -n {args.nranks[0]} started ranks that see a world of "
                              f"{comm.Get_size()}: mpi4py loaded {library}, not the MPI of the mpiexec used "
                              "(set MPI4PY_LIBMPI to that MPI's libmpi, or put its mpiexec first on PATH)"}), flush=True)
        raise SystemExit(2)
    if cores is not None and early != rank:
        pin_process(cores[rank])
    names = ["native", *args.algorithms]

    def call(name: str, buf: np.ndarray) -> None:
        if name == "native":
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        else:
            cmpi.all_reduce(buf, comm, op=MPI.SUM, algorithm=name, check=False)

    def slowest(values: list[float]) -> list[float]:
        got = np.array(values, dtype=np.float64)
        comm.Allreduce(MPI.IN_PLACE, got, op=MPI.MAX)  # a sample ends when the slowest rank is done
        return got.tolist()

    size = args.minbytes
    while size <= args.maxbytes:
        _measure_size(MPI, comm, call, size, names, args, slowest)
        size *= 2
    affinity = comm.gather(thread_affinity(), root=0)
    if rank == 0:
        import mpi4py

        facts = {"mpi_library": " ".join(MPI.Get_library_version().split("\n")[0].split()), "mpi4py": mpi4py.__version__,
                 "numpy": np.__version__, "threads": dict(enumerate(affinity)),
                 "mpir_cvars": {k: v for k, v in os.environ.items() if k.startswith("MPIR_CVAR_")}}
        print(json.dumps({"job": facts}), flush=True)


def _measure_size(MPI, comm, call, size: int, names: list[str], args: argparse.Namespace, slowest) -> None:
    """Rounds of every algorithm at one size until the ratios are precise; rank 0 prints the records."""
    import numpy as np

    count = size // 4
    buf = np.zeros(count, dtype=np.float32)  # zeros stay zeros: no overflow, no denormals
    for name in names:
        for _ in range(args.warmup):
            call(name, buf)  # page faults, scratch, compiled programs, the MPI path

    def time_calls(name: str, k: int) -> float:
        comm.Barrier()
        t0 = MPI.Wtime()
        for _ in range(k):
            call(name, buf)
        return MPI.Wtime() - t0

    got = interleaved_rounds(time_calls, names, "native", slowest, sample_seconds=args.sample_ms / 1e3, rel=args.rel,
                             min_rounds=args.min_reps, max_rounds=args.max_reps)
    if comm.Get_rank() != 0:
        return
    native_ci = median_ci([s["native"] * 1e6 for s in got.samples])
    for name in names:
        ratios = [s[name] / s["native"] for s in got.samples]
        ratio = got.ratios[name] if name != "native" else median_ci(ratios)
        mine = median_ci([s[name] * 1e6 for s in got.samples])
        record = {"source": "measured", "collective": "allreduce", "algorithm": name, "nranks": comm.Get_size(),
                  "size": count * 4, "count": count, "dtype": "float32", "op": "sum",
                  "time_us": mine.estimate, "time_us_lo": mine.low, "time_us_hi": mine.high,
                  "native_time_us": native_ci.estimate, "native_time_us_lo": native_ci.low,
                  "native_time_us_hi": native_ci.high,
                  "ratio": ratio.estimate, "ratio_lo": ratio.low, "ratio_hi": ratio.high,
                  "ratio_min": min(ratios), "ratio_max": max(ratios),
                  "reps": len(got.samples), "calls_per_sample": got.calls,
                  "within": ratio.within(args.rel), "bound_hit": got.bound_hit, "ratios": ratios}
        record["algbw"] = record["size"] / record["time_us"] / 1e3
        record["busbw"] = record["algbw"] * 2 * (comm.Get_size() - 1) / comm.Get_size()
        record["wrong"] = 0
        print(json.dumps(record), flush=True)


# ----------------------------------------------------------------------------------------------
# driver


def find_mpiexec() -> list[str]:
    candidates = [Path(sysconfig.get_path("scripts")) / "mpiexec", Path(sys.executable).parent / "mpiexec"]
    found = next((str(p) for p in candidates if p.is_file() and os.access(p, os.X_OK)), None) or shutil.which("mpiexec")
    if found is None:
        raise SystemExit("mpi_vs_native: error: no mpiexec next to python or on PATH (pip install -e '.[mpi]')")
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    return [found, "-launcher", "fork"] if "HYDRA" in version else [found]


def _cell(rec: dict | None) -> str:
    if rec is None:
        return ""
    mark = "" if rec["within"] else f" {BOUND_MARK}"
    return f"{rec['ratio']:.2f} [{rec['ratio_lo']:.2f}, {rec['ratio_hi']:.2f}]{mark}"


def table(records: list[dict]) -> str:
    nranks = sorted({r["nranks"] for r in records})
    algorithms = [a for a in ALGORITHMS if any(r["algorithm"] == a for r in records)]
    by = {(r["nranks"], r["size"], r["algorithm"]): r for r in records}
    sizes = sorted({r["size"] for r in records})
    head = ["size", *[f"n={n} native (us)" for n in nranks], *[f"n={n} rounds" for n in nranks],
            *[f"n={n} {a}" for n in nranks for a in algorithms]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size in sizes:
        row = [human(size)]
        for n in nranks:
            rec = by.get((n, size, "native"))
            row.append("" if rec is None else f"{rec['time_us']:.0f} [{rec['time_us_lo']:.0f}, {rec['time_us_hi']:.0f}]")
        row += [str(by[(n, size, "native")]["reps"]) if (n, size, "native") in by else "" for n in nranks]
        row += [_cell(by.get((n, size, a))) for n in nranks for a in algorithms]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def targets(records: list[dict], n: int, rel: float) -> list[dict]:
    """Issue 17's MPI targets at ``n`` ranks: verdicts from the records' intervals."""
    found = []
    for algorithm, kind, (lo, hi), limit in TARGETS:
        mine = sorted((r for r in records if r["nranks"] == n and r["algorithm"] == algorithm and lo <= r["size"] <= hi),
                      key=lambda r: r["size"])
        span = f"below {human(hi + 1)}" if math.isfinite(hi) else f"from {human(lo)}"
        what = f"{algorithm} {'<=' if kind == 'every size' else 'geomean <='} {limit}x MPI_Allreduce, {span}"
        entry = {"nranks": n, "target": what, "limit": limit}
        if not mine:
            found.append({**entry, "verdict": "not measured", "detail": "no size measured in this range"})
            continue
        sizes = f"{len(mine)} sizes {human(mine[0]['size'])}-{human(mine[-1]['size'])}"
        if kind == "every size":
            ivs = [Interval(r["ratio"], r["ratio_lo"], r["ratio_hi"], r["reps"], 0.95, math.nan, "order statistics")
                   for r in mine]
            result, worst = verdict_all(ivs, limit)
            at = next(r for r in mine if r["ratio"] == worst.estimate)
            detail = f"worst {worst.format()} at {human(at['size'])} ({sizes})"
        else:
            iv = geomean_ci([r["ratios"] for r in mine])
            result, detail = verdict(iv, limit), f"{iv.format()} (bootstrap; {sizes})"
        found.append({**entry, "verdict": result, "detail": detail})
    mine = [r for r in records if r["nranks"] == n and r["algorithm"] != "native"]
    wide = [r for r in mine if not r["within"]]
    found.append({"nranks": n, "target": f"every interval within ±{rel:.0%}", "limit": rel,
                  "verdict": "met" if not wide else "missed",
                  "detail": f"{len(mine) - len(wide)} of {len(mine)} within" + (
                      "; wider: " + ", ".join(f"{human(r['size'])} {r['algorithm']}" for r in wide[:8])
                      + (" ..." if len(wide) > 8 else "") if wide else "")})
    return found


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nranks = sorted({r["nranks"] for r in records})
    fig, axes = plt.subplots(1, len(nranks), figsize=(6 * len(nranks), 4), sharey=True, squeeze=False)
    for ax, n in zip(axes[0], nranks, strict=True):
        for a in ALGORITHMS:
            rows = sorted((r["size"], r["ratio"], r["ratio_lo"], r["ratio_hi"]) for r in records
                          if r["nranks"] == n and r["algorithm"] == a)
            if rows:
                xs = [s for s, *_ in rows]
                (line,) = ax.plot(xs, [q for _, q, _, _ in rows], marker="o", label=a)
                ax.fill_between(xs, [lo for *_, lo, _ in rows], [hi for *_, hi in rows], color=line.get_color(),
                                alpha=0.15, lw=0)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axvline(1 << 20, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("message size (bytes)")
        ax.set_title(f"{n} ranks: time ours / MPI_Allreduce (median, 95% CI)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("time ratio (lower is better)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nranks", type=int, nargs="+", default=[2, 4], help="world sizes (default 2 4)")
    parser.add_argument("-b", "--minbytes", type=size_arg, default=size_arg("4K"))
    parser.add_argument("-e", "--maxbytes", type=size_arg, default=size_arg("64M"))
    parser.add_argument("--algorithms", nargs="+", default=ALGORITHMS, choices=ALGORITHMS)
    parser.add_argument("--rel", type=float, default=0.05,
                        help="stop a size once every ratio's 95%% interval is within ±REL of its median (default 0.05)")
    parser.add_argument("--min-reps", type=int, default=10, help="rounds per size at least (default 10; >= 6 for a 95%% interval)")
    parser.add_argument("--max-reps", type=int, default=60, help="rounds per size at most: the bound (default 60)")
    parser.add_argument("--reps", type=int, help="exactly this many rounds per size (sets --min-reps and --max-reps)")
    parser.add_argument("--sample-ms", type=float, default=20.0,
                        help="back-to-back calls per sample so that one lasts at least this long (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per algorithm and size (default 3)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin ranks to cores")
    parser.add_argument("--quick", action="store_true", help="smoke test: 6 rounds of >= 2 ms samples, 1 warm-up call")
    parser.add_argument("--check-targets", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--tuning-out", type=Path, metavar="FILE",
                        help="write the measured winner per world size and size (lowest median ratio, auto "
                             "aside) as a tuning table for COLLSIM_TUNING")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"),
                        help="folder for mpi_vs_native.{json,md,png}")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cores", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.min_reps = args.max_reps = 6
        args.sample_ms, args.warmup = 2.0, 1
    if args.reps is not None:
        args.min_reps = args.max_reps = args.reps
    if args.worker:
        worker(args)
        return 0
    if any(n < 1 for n in args.nranks) or not 1 <= args.min_reps <= args.max_reps or not 4 <= args.minbytes <= args.maxbytes:
        parser.error("--nranks must be positive, 1 <= --min-reps <= --max-reps and 4 <= -b <= -e")
    if not args.rel > 0 or not args.sample_ms > 0 or args.warmup < 0:
        parser.error("--rel and --sample-ms must be positive and --warmup >= 0")
    if args.tuning_out is not None:
        if args.algorithms == ["auto"]:
            parser.error("--tuning-out needs an algorithm besides auto in --algorithms")
        if not args.tuning_out.parent.is_dir():
            parser.error(f"--tuning-out: no folder {args.tuning_out.parent}")
    mpiexec = find_mpiexec()
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    import mpi4py
    import numpy

    machine = machine_info(mpi4py=mpi4py.__version__, numpy=numpy.__version__)
    records, runs = [], []
    for n in args.nranks:
        cores, pin_text = pin_plan(n, pin=not args.no_pin)
        cmd = [*mpiexec, "-n", str(n), sys.executable, str(Path(__file__).resolve()), "--worker", "--nranks", str(n),
               "-b", str(args.minbytes), "-e", str(args.maxbytes), "--rel", str(args.rel),
               "--min-reps", str(args.min_reps), "--max-reps", str(args.max_reps), "--sample-ms", str(args.sample_ms),
               "--warmup", str(args.warmup), "--algorithms", *args.algorithms]
        if cores is not None:
            listed = ",".join(str(block[0]) for block in cores)  # a core per rank: an MPI rank is one thread
            cmd += ["--cores", listed]
            if "-launcher" in mpiexec:  # Hydra binds each rank from its start; the worker checks it
                cmd[len(mpiexec):len(mpiexec)] = ["-bind-to", f"user:{listed}"]
        print(f"mpi_vs_native: n={n}: {args.min_reps}..{args.max_reps} rounds until ±{args.rel:.0%}; {pin_text}",
              file=sys.stderr, flush=True)
        before = load_average()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        job: dict = {}
        for line in proc.stdout:
            rec = json.loads(line)
            if "error" in rec:
                proc.wait()
                raise SystemExit(f"mpi_vs_native: error: {rec['error']}")
            if "job" in rec:
                job = rec["job"]
                continue
            records.append(rec)
            if rec["algorithm"] != "native":
                mark = f" {BOUND_MARK} bound of {rec['reps']} rounds hit" if not rec["within"] else ""
                print(f"  n={n} {human(rec['size']):>8} {rec['algorithm']:>18}: ratio {rec['ratio']:.3f} "
                      f"[{rec['ratio_lo']:.3f}, {rec['ratio_hi']:.3f}] ({rec['reps']} rounds x {rec['calls_per_sample']}"
                      f" calls, native {rec['native_time_us']:.0f} us){mark}", file=sys.stderr, flush=True)
        if proc.wait() != 0:
            raise SystemExit(f"mpi_vs_native: error: mpiexec -n {n} exited {proc.returncode}")
        runs.append({"nranks": n, "pinned": cores is not None, "cores": cores, "pinning": pin_text,
                     "load_before": before, "load_after": load_average(),
                     "seconds": round(time.perf_counter() - start, 1), **job})
        print(f"mpi_vs_native: n={n} done in {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    if runs and runs[0].get("mpi_library"):
        machine["versions"]["mpi"] = runs[0]["mpi_library"]
    found = [t for n in args.nranks for t in targets(records, n, args.rel)]
    settings = {k: getattr(args, k) for k in ("min_reps", "max_reps", "rel", "sample_ms", "warmup", "quick")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mpi_vs_native.json").write_text(json.dumps(
        {"machine": machine, "settings": settings, "runs": runs, "targets": found, "records": records}, indent=1) + "\n")
    text = table(records)
    load = machine["load_average"]
    header = [
        "Time ratio collsim / MPI_Allreduce, float32 sum: the median of the per-round ratios with its 95% confidence "
        "interval [low, high] (order statistics). A round times every algorithm and native once, interleaved; a "
        f"sample is k back-to-back calls lasting >= {args.sample_ms:g} ms, the slowest rank's time. Rounds per size: "
        f"{args.min_reps} to {args.max_reps}, stopping once every interval is within ±{args.rel:.0%}; "
        f"{BOUND_MARK}: the bound was hit first." + (" **--quick: a smoke test, not a measurement.**" if args.quick else ""),
        "",
        f"Machine: {machine['cores']} cores ({machine['usable_cores']} usable), {machine['cpu_model']}, {machine['os']}, "
        f"Python {machine['python']}, " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + (f"; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" if load else "") + ".",
        "",
    ]
    for run in runs:
        before, after = run["load_before"], run["load_after"]
        loads = f"; load average (1 min) {before[0]:.2f} before, {after[0]:.2f} after" if before and after else ""
        seen = "; ".join(f"rank {r}: {a['threads']} threads on cores {a['cores']}"
                         for r, a in sorted(run.get("threads", {}).items()) if a)
        header.append(f"- n = {run['nranks']}: {run['pinning']}" + (f" ({seen})" if seen else "")
                      + f"{loads}; {run['seconds']:.0f} s")
    footer = ["", "Targets (issue 17, set for n = 2; other n shown for reference):", ""]
    footer += [f"- n = {t['nranks']}: {t['target']}: **{t['verdict']}**, {t['detail']}" for t in found]
    (args.out / "mpi_vs_native.md").write_text("\n".join(header) + f"\n\n{text}\n" + "\n".join(footer) + "\n")
    plot(records, args.out / "mpi_vs_native.png")
    if args.tuning_out is not None:
        source = (f"measured: benchmarks/mpi_vs_native.py ({machine['versions'].get('mpi', 'MPI')}), "
                  f"{machine['cores']} cores, {machine['cpu_model']}")
        table_from_best(best_by_size(records, "ratio"), source=source).save(args.tuning_out)
        print(f"mpi_vs_native: tuning table (COLLSIM_TUNING={args.tuning_out}): the measured winner per size",
              file=sys.stderr)
    print(text)
    print("\n".join(footer))
    for r in records:
        if r["algorithm"] != "native" and not r["within"]:
            print(f"mpi_vs_native: bound hit: n={r['nranks']} {human(r['size'])} {r['algorithm']}: {r['reps']} rounds, "
                  f"ratio {r['ratio']:.3f} [{r['ratio_lo']:.3f}, {r['ratio_hi']:.3f}]", file=sys.stderr)
    missed = [t for t in found if t["verdict"] == "missed"]
    return 1 if args.check_targets and missed else 0


if __name__ == "__main__":
    sys.exit(main())
