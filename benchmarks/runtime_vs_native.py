"""collsim's torch.distributed allreduce against native Gloo ``dist.all_reduce``, as time ratios.

For p = 2 and 4 ranks (one process each, on this machine, Gloo over loopback) and sizes 4 KiB to
64 MiB, every repetition runs every algorithm once, interleaved in a rotating order, so slow phases
of a shared machine hit all of them alike. One measurement is ``k`` back-to-back in-place
allreduces after a barrier (``k`` larger for small sizes), timed on every rank; its time is the
slowest rank's. The reported number per (p, size, algorithm) is the median over repetitions of
``time(ours) / time(native)`` taken within the same repetition.

Peak memory: for each algorithm a fresh group of processes allreduces one 64 MiB float32 tensor a
few times and reports its peak RSS (``ru_maxrss``); the table compares it with native's and with
one chunk (``64 MiB / p``, the ring's scratch).

Writes ``runtime_vs_native.csv``, ``runtime_vs_native_rss.csv``, ``runtime_vs_native.md`` and
``runtime_vs_native.png`` into ``--out`` (default ``benchmarks/results``)::

    python benchmarks/runtime_vs_native.py                  # p = 2 and 4, 10 repetitions
    python benchmarks/runtime_vs_native.py --nranks 4 --reps 15 --max-size 16M
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sim.bench import size_arg

__all__ = ["main"]

ALGORITHMS = ("native", "ring", "tree", "recursive_halving", "recursive_doubling", "auto")


def _init(rank: int, nranks: int, store: str):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store, nranks), rank=rank, world_size=nranks,
                            timeout=timedelta(seconds=600))
    return torch, dist


def _timing_worker(rank: int, nranks: int, store: str, sizes: list[int], algorithms: list[str], reps: int,
                   results) -> None:
    torch, dist = _init(rank, nranks, store)
    from collectives.distributed import all_reduce

    def runner(algorithm):
        if algorithm == "native":
            return dist.all_reduce
        return lambda t: all_reduce(t, algorithm=algorithm)

    times: dict = {}
    for size in sizes:
        count = size // 4
        k = max(1, min(16, (1 << 20) // size))  # >= 1 MiB of traffic per measurement
        bufs = {a: torch.ones(count) for a in algorithms}
        for a in algorithms:  # warm-up: plans compiled, scratch allocated, pages touched
            for _ in range(2):
                runner(a)(bufs[a])
        for rep in range(reps):
            order = algorithms[rep % len(algorithms):] + algorithms[:rep % len(algorithms)]
            for a in order:
                fn, buf = runner(a), bufs[a]
                dist.barrier()
                t0 = time.perf_counter()
                for _ in range(k):
                    fn(buf)
                times[(size, a, rep)] = (time.perf_counter() - t0) / k
        if rank == 0:
            print(f"  p={nranks} {size:>9} B done", file=sys.stderr, flush=True)
        del bufs
    keys = sorted(times)
    mine = torch.tensor([times[key] for key in keys], dtype=torch.float64)
    dist.all_reduce(mine, op=dist.ReduceOp.MAX)  # a measurement ends when the slowest rank is done
    if rank == 0:
        results.put([(*key, float(t)) for key, t in zip(keys, mine.tolist(), strict=True)])
    dist.destroy_process_group()


def _rss_worker(rank: int, nranks: int, store: str, size: int, algorithm: str, results) -> None:
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


def _launch(nranks: int, target, args: tuple, expect: int) -> list:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="collsim-bench-") as tmp:
        store = os.path.join(tmp, "store")
        procs = [ctx.Process(target=target, args=(r, nranks, store, *args, results)) for r in range(nranks)]
        for proc in procs:
            proc.start()
        out = [results.get(timeout=3600) for _ in range(expect)]
        for proc in procs:
            proc.join(60)
            if proc.exitcode != 0:
                raise RuntimeError(f"benchmark worker exited with {proc.exitcode}")
    return out


def _fmt_size(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nranks", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--min-size", type=size_arg, default=size_arg("4K"))
    parser.add_argument("--max-size", type=size_arg, default=size_arg("64M"))
    parser.add_argument("--reps", type=int, default=10, help="repetitions (median of the ratios)")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS[1:]),
                        help=f"comma-separated, from: {', '.join(ALGORITHMS[1:])} (native always runs)")
    parser.add_argument("--rss-size", type=size_arg, default=size_arg("64M"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    ours = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    bad = [a for a in ours if a not in ALGORITHMS[1:]]
    if bad:
        parser.error(f"unknown algorithm(s) {bad}; choose from: {', '.join(ALGORITHMS[1:])}")
    if args.reps < 1:
        parser.error("--reps must be >= 1")
    algorithms = ["native", *ours]
    sizes = []
    s = args.min_size
    while s <= args.max_size:
        sizes.append(s)
        s *= 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows = []
    for p in args.nranks:
        print(f"timing p={p}: {len(sizes)} sizes x {len(algorithms)} algorithms x {args.reps} reps", file=sys.stderr)
        (measured,) = _launch(p, _timing_worker, (sizes, algorithms, args.reps), 1)
        t = {(size, a, rep): v for size, a, rep, v in measured}
        for size in sizes:
            for a in ours:
                ratios = [t[(size, a, r)] / t[(size, "native", r)] for r in range(args.reps)]
                rows.append({
                    "nranks": p, "size": size, "algorithm": a,
                    "ratio_median": statistics.median(ratios),
                    "time_us_median": statistics.median(t[(size, a, r)] for r in range(args.reps)) * 1e6,
                    "native_us_median": statistics.median(t[(size, "native", r)] for r in range(args.reps)) * 1e6,
                    "reps": args.reps,
                })
    with open(out / "runtime_vs_native.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    rss_rows = []
    for p in args.nranks:
        for a in algorithms:
            got = _launch(p, _rss_worker, (args.rss_size, a), p)
            rss_rows.append({"nranks": p, "algorithm": a, "peak_rss_mib_max": max(v for _, v in got) / (1 << 20)})
            print(f"rss p={p} {a}: {rss_rows[-1]['peak_rss_mib_max']:.1f} MiB", file=sys.stderr)
    with open(out / "runtime_vs_native_rss.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rss_rows[0]))
        writer.writeheader()
        writer.writerows(rss_rows)

    report = _report(rows, rss_rows, sizes, ours, args)
    (out / "runtime_vs_native.md").write_text(report)
    print(report)
    _plot(rows, ours, args.nranks, out / "runtime_vs_native.png")
    return 0


def _report(rows, rss_rows, sizes, ours, args) -> str:
    lines = [f"# collsim allreduce vs native Gloo (time ratio ours/native, median of {args.reps} interleaved reps)", ""]
    for p in args.nranks:
        lines.append(f"## p = {p}")
        lines.append("")
        lines.append("| size | native (us) | " + " | ".join(ours) + " |")
        lines.append("|---:|---:|" + "---:|" * len(ours))
        for size in sizes:
            r = {row["algorithm"]: row for row in rows if row["nranks"] == p and row["size"] == size}
            native = next(iter(r.values()))["native_us_median"]
            lines.append(f"| {_fmt_size(size)} | {native:.0f} | " + " | ".join(f"{r[a]['ratio_median']:.2f}" for a in ours) + " |")
        lines.append("")
        if "ring" in ours:
            big = [row["ratio_median"] for row in rows if row["nranks"] == p and row["algorithm"] == "ring" and row["size"] >= 16 << 20]
            if big:
                lines.append(f"- ring at >= 16 MiB: max ratio {max(big):.3f} (target <= 1.05)")
        if "auto" in ours:
            auto = [row["ratio_median"] for row in rows if row["nranks"] == p and row["algorithm"] == "auto"]
            geo = math.exp(sum(math.log(v) for v in auto) / len(auto))
            lines.append(f"- auto geometric mean over all sizes: {geo:.3f} (target <= 1.0)")
        lines.append("")
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
            pts = sorted((row["size"], row["ratio_median"]) for row in rows if row["nranks"] == p and row["algorithm"] == a)
            ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", ms=3, label=a,
                    lw=2.2 if a in ("ring", "auto") else 1.0)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(1.05, color="k", lw=0.6, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_title(f"p = {p} (Gloo, loopback)")
        ax.set_xlabel("message size (bytes)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("time(collsim) / time(native), median")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
