"""Benchmark collsim's allreduce algorithms against native ``dist.all_reduce``, nccl-tests style.

Run one process per rank with torchrun::

    torchrun --nproc_per_node=4 examples/allreduce.py
    torchrun --nproc_per_node=4 examples/allreduce.py -b 8 -e 64M -f 2 -n 20 -w 5 \\
        --algorithms ring,tree,recursive_halving,recursive_doubling,auto,native --op sum --dtype float32 \\
        --json allreduce.jsonl

The backend is NCCL when every rank has a GPU of its own (CUDA tensors), else Gloo (CPU tensors);
``--backend`` overrides. For every size and algorithm the script first checks the result against
native ``dist.all_reduce`` on the same input (``#wrong``: elements that differ, summed over ranks;
exact for integer types, within ``2 p eps`` relative for floating types), then times ``-n`` in-place
iterations after ``-w`` warm-up ones; ``time(us)`` is the slowest rank's mean. The table has the
nccl-tests layout (``busbw = algbw * 2 (n - 1) / n``, decimal GB/s), followed by the best algorithm
per size and ``# Avg bus bandwidth`` per algorithm. ``--json FILE`` writes the same records as JSON
lines (``"source": "measured"``). Progress goes to stderr; rank 0 prints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from collectives.algorithms import ALGORITHMS
from collectives.distributed import all_reduce

__all__ = ["main", "parse_size"]

DTYPES = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "int8": torch.int8, "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8,
}
#: nccl-tests' short type names
TYPE_NAMES = {"float32": "float", "float64": "double", "float16": "half", "bfloat16": "bfloat16",
              "int8": "int8", "int32": "int32", "int64": "int64", "uint8": "uint8"}
OPS = ("sum", "prod", "min", "max", "avg", "band", "bor", "bxor")
_OP_TO_RUNTIME = {"prod": "product"}
CHOICES = (*ALGORITHMS, "auto", "native")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """Parse ``8``, ``64K``, ``64M``, ``1G`` (binary units, as nccl-tests) into bytes."""
    t = text.strip().upper().removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    try:
        value = int(t[: len(t) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 8, 64K, 64M or 1G, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return value


def _algorithms(text: str) -> list[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in names if a not in CHOICES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown algorithm(s) {', '.join(bad) or '(none)'}; choose from: {', '.join(CHOICES)}")
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="allreduce.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-b", "--minbytes", type=parse_size, default=parse_size("16"), help="smallest size (bytes; K/M/G)")
    parser.add_argument("-e", "--maxbytes", type=parse_size, default=parse_size("16M"), help="largest size")
    parser.add_argument("-f", "--stepfactor", type=int, default=4, help="multiply the size by this each step")
    parser.add_argument("-n", "--iters", type=int, default=10, help="timed iterations per size and algorithm")
    parser.add_argument("-w", "--warmup_iters", type=int, default=2, help="warm-up iterations")
    parser.add_argument("--algorithms", type=_algorithms, default=_algorithms("ring,tree,recursive_halving,recursive_doubling,native"),
                        help=f"comma-separated, from: {', '.join(CHOICES)}")
    parser.add_argument("--op", choices=OPS, default="sum")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto",
                        help="auto: nccl when every rank has its own GPU, else gloo")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="check every algorithm against native dist.all_reduce (#wrong)")
    parser.add_argument("--timeout", type=float, default=300.0, help="process group timeout in seconds")
    parser.add_argument("--json", metavar="FILE", help="also write the records as JSON lines")
    return parser


def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.maxbytes < args.minbytes:
        parser.error(f"-e/--maxbytes ({args.maxbytes}) must be >= -b/--minbytes ({args.minbytes})")
    if args.stepfactor < 2:
        parser.error(f"-f/--stepfactor must be >= 2, got {args.stepfactor}")
    if args.iters < 1 or args.warmup_iters < 0:
        parser.error("-n/--iters must be >= 1 and -w/--warmup_iters >= 0")
    dtype = DTYPES[args.dtype]
    op = _OP_TO_RUNTIME.get(args.op, args.op)
    if op in ("band", "bor", "bxor") and dtype.is_floating_point:
        parser.error(f"--op {args.op} needs an integer --dtype (int8, int32, int64, uint8), got {args.dtype}")
    if op == "avg" and not dtype.is_floating_point:
        parser.error(f"--op avg needs a floating point --dtype, got {args.dtype}")


def _sizes(lo: int, hi: int, factor: int) -> list[int]:
    out = []
    size = lo
    while size <= hi:
        out.append(size)
        size *= factor
    return out


def _init(backend: str, timeout: float) -> tuple[str, torch.device]:
    """Join the job torchrun started (or run alone as one rank); pick the backend and device."""
    if "RANK" not in os.environ:  # plain `python examples/allreduce.py`: a world of one
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", "29533"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    own_gpu = torch.cuda.is_available() and torch.cuda.device_count() >= local_world
    if backend == "auto":
        backend = "nccl" if own_gpu and dist.is_nccl_available() else "gloo"
    if backend == "nccl":
        if not own_gpu:
            raise SystemExit(f"allreduce.py: error: --backend nccl needs one GPU per rank "
                             f"({torch.cuda.device_count()} GPUs for {local_world} local ranks)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    # backend auto must agree everywhere: one node with GPUs and one without would mix devices
    flag = torch.tensor([1 if backend == "nccl" else 0], device=device)
    dist.all_reduce(flag)
    if int(flag) not in (0, dist.get_world_size()):
        raise SystemExit("allreduce.py: error: some ranks have their own GPU and some do not; pass --backend")
    return backend, device


def _runner(algorithm: str, op: str, nranks: int):
    if algorithm == "native":
        if op == "avg":  # Gloo has no AVG: SUM, then one division, as collsim does
            def native_avg(t: torch.Tensor) -> None:
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
                t.div_(nranks)
            return native_avg
        torch_op = getattr(dist.ReduceOp, {"product": "PRODUCT"}.get(op, op.upper()))
        return lambda t: dist.all_reduce(t, op=torch_op)
    return lambda t: all_reduce(t, op=op, algorithm=algorithm)


def _check_input(count: int, dtype: torch.dtype, op: str, rank: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(1234 + rank)
    if dtype.is_floating_point:
        lo, width = (0.9, 0.2) if op == "product" else (0.5, 1.0)
        return (lo + width * torch.rand(count, generator=g, dtype=torch.float64)).to(dtype).to(device)
    hi = 3 if op == "product" else 100
    return torch.randint(0, hi, (count,), generator=g).to(dtype).to(device)


def _wrong(got: torch.Tensor, ref: torch.Tensor, nranks: int) -> int:
    if got.dtype.is_floating_point:
        tol = 2 * nranks * torch.finfo(got.dtype).eps
        bad = ~torch.isclose(got.double(), ref.double(), rtol=tol, atol=tol)
        return int(bad.sum())
    return int((got != ref).sum())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> list[dict]:
    backend, device = _init(args.backend, args.timeout)
    rank, nranks = dist.get_rank(), dist.get_world_size()
    dtype = DTYPES[args.dtype]
    op = _OP_TO_RUNTIME.get(args.op, args.op)
    itemsize = torch.empty((), dtype=dtype).element_size()
    sizes = [s for s in _sizes(args.minbytes, args.maxbytes, args.stepfactor) if s >= itemsize]
    say = print if rank == 0 else (lambda *a, **k: None)
    say(f"# collsim allreduce benchmark: nranks {nranks} backend {backend} device {device.type} "
        f"minBytes {args.minbytes} maxBytes {args.maxbytes} step: {args.stepfactor}(factor) "
        f"warmup iters: {args.warmup_iters} iters: {args.iters} validation: {int(args.check)}")
    say("#")
    header = (f"{'size(B)':>12} {'count':>12} {'type':>8} {'redop':>6} {'algorithm':>18} {'time(us)':>10} "
              f"{'algbw(GB/s)':>11} {'busbw(GB/s)':>11} {'#wrong':>6}")
    say("#" + header[1:])
    records = []
    started = time.monotonic()
    for i, size in enumerate(sizes):
        count = size // itemsize
        nbytes = count * itemsize
        ref = None
        if args.check:
            ref = _check_input(count, dtype, op, rank, device)
            _runner("native", op, nranks)(ref)
        for algorithm in args.algorithms:
            fn = _runner(algorithm, op, nranks)
            wrong = -1
            if args.check:
                x = _check_input(count, dtype, op, rank, device)
                fn(x)
                mine = torch.tensor([_wrong(x, ref, nranks)], dtype=torch.int64, device=device)
                dist.all_reduce(mine)
                wrong = int(mine)
            buf = torch.ones(count, dtype=dtype, device=device)
            for _ in range(args.warmup_iters):
                fn(buf)
            _sync(device)
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(args.iters):
                fn(buf)
            _sync(device)
            elapsed = torch.tensor([time.perf_counter() - t0], dtype=torch.float64, device=device)
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
            time_us = float(elapsed) / args.iters * 1e6
            algbw = nbytes / time_us / 1e3  # bytes/us = MB/s -> GB/s
            busbw = algbw * (2 * (nranks - 1) / nranks)
            rec = {
                "source": "measured", "collective": "allreduce", "algorithm": algorithm, "nranks": nranks,
                "size": nbytes, "count": count, "dtype": args.dtype, "op": args.op, "time_us": time_us,
                "algbw": algbw, "busbw": busbw, "wrong": wrong if args.check else None, "backend": backend,
            }
            records.append(rec)
            shown = str(wrong) if args.check else "N/A"
            say(f"{nbytes:>12} {count:>12} {TYPE_NAMES[args.dtype]:>8} {args.op:>6} {algorithm:>18} {time_us:>10.1f} "
                f"{algbw:>11.3f} {busbw:>11.3f} {shown:>6}", flush=True)
        if rank == 0:
            print(f"[{i + 1}/{len(sizes)}] {nbytes} B done, {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    _summary(records, args, say)
    if args.json and rank == 0:
        with open(args.json, "w") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
        say(f"# wrote {len(records)} records to {args.json}")
    return records


def _summary(records: list[dict], args: argparse.Namespace, say) -> None:
    ours = [a for a in args.algorithms if a != "native"]
    say("#")
    if ours:
        say("# Best algorithm per size" + (" (time relative to native)" if "native" in args.algorithms else ""))
        by_size: dict[int, list[dict]] = {}
        for rec in records:
            by_size.setdefault(rec["size"], []).append(rec)
        for size, recs in by_size.items():
            best = min((r for r in recs if r["algorithm"] != "native"), key=lambda r: r["time_us"])
            native = next((r for r in recs if r["algorithm"] == "native"), None)
            vs = f"  x{best['time_us'] / native['time_us']:.2f} of native" if native else ""
            say(f"#  {size:>12}  {best['algorithm']:<18} {best['time_us']:>10.1f} us{vs}")
        say("#")
    wrong = sum(r["wrong"] or 0 for r in records)
    say(f"# Out of bounds values : {wrong} {'OK' if wrong == 0 else 'FAILED'}" if args.check else "# Out of bounds values : N/A")
    for algorithm in args.algorithms:
        values = [r["busbw"] for r in records if r["algorithm"] == algorithm]
        avg = sum(values) / len(values) if values else math.nan
        say(f"# Avg bus bandwidth    : {avg:<10.5g} {algorithm}")
    say("#")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate(parser, args)
    try:
        records = run(args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    failed = args.check and any(r["wrong"] for r in records)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
