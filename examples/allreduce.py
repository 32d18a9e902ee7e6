"""Benchmark collsim's allreduce algorithms against native ``dist.all_reduce``, nccl-tests style.

Run one process per rank with torchrun::

    torchrun --nproc_per_node=4 examples/allreduce.py
    torchrun --nproc_per_node=4 examples/allreduce.py -b 8 -e 64M -f 2 -n 20 -w 5 \\
        --algorithms ring,tree,recursive_halving,recursive_doubling,auto,native --op sum --dtype float32 \\
        --json allreduce.jsonl

On several nodes (``torchrun --nnodes=2 --nproc_per_node=8 ...``) the algorithms that follow the
hardware use the layout torchrun gives (``GROUP_RANK``, ``LOCAL_WORLD_SIZE``): ``hierarchical``
(reduce-scatter inside nodes, allreduce across them, allgather inside), ``ring`` and ``tree`` as
NCCL orders them, with as many channels as ``COLLSIM_NICS_PER_NODE`` (default 1) or as an
algorithm's parameters say::

    torchrun --nnodes=2 --nproc_per_node=8 ... examples/allreduce.py \\
        --algorithms ring,ring:channels=4,hierarchical,hierarchical:outer=recursive_doubling,tree,native

``COLLSIM_RANKS_PER_NODE=2 torchrun --nproc_per_node=4 examples/allreduce.py`` simulates two nodes
of two ranks on one machine (``COLLSIM_LAYOUT=0,1,0,1`` places ranks by hand).

The backend is NCCL when every rank has a GPU of its own (CUDA tensors), else Gloo (CPU tensors);
``--backend`` overrides. For every size and algorithm the script first checks the result against
native ``dist.all_reduce`` on the same input (``#wrong``: elements that differ, summed over ranks;
exact for integer types, within ``2 p eps`` relative for floating types), then times ``-n`` in-place
iterations after ``-w`` warm-up ones; ``time(us)`` is the slowest rank's mean. The table has the
nccl-tests layout (``busbw = algbw * 2 (n - 1) / n``, decimal GB/s), followed by the best algorithm
per size and ``# Avg bus bandwidth`` per algorithm. ``--json FILE`` writes the same records as JSON
lines (``"source": "measured"``). Progress goes to stderr; rank 0 prints. The flags, sweep, table and
summary are :mod:`sim.bench`'s, shared with ``examples/allreduce_mpi.py``; this script is the transport.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from collectives.distributed import all_reduce, find_layout
from sim import bench
from sim.results import Record

__all__ = ["main"]

DTYPES = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "int8": torch.int8, "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8,
}
OPS = ("sum", "prod", "min", "max", "avg", "band", "bor", "bxor")
_OP_TO_RUNTIME = {"prod": "product"}


def build_parser() -> argparse.ArgumentParser:
    parser = bench.ArgumentParser(prog="allreduce.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bench.add_arguments(parser, ops=OPS, dtypes=list(DTYPES),
                        check_help="check every algorithm against native dist.all_reduce (#wrong)")
    parser.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto",
                        help="auto: nccl when every rank has its own GPU, else gloo")
    parser.add_argument("--timeout", type=float, default=300.0, help="process group timeout in seconds")
    return parser


def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    dtype = DTYPES[args.dtype]
    bench.validate_arguments(parser, args, itemsize=dtype.itemsize)
    op = _OP_TO_RUNTIME.get(args.op, args.op)
    if op in ("band", "bor", "bxor") and dtype.is_floating_point:
        parser.error(f"--op {args.op} needs an integer --dtype (int8, int32, int64, uint8), got {args.dtype}")
    if op == "avg" and not dtype.is_floating_point:
        parser.error(f"--op avg needs a floating point --dtype, got {args.dtype}")


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
    if algorithm == bench.NATIVE:
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


def run(args: argparse.Namespace) -> list[Record]:
    """Join the job and benchmark: the transport's part of :func:`sim.bench.run_sweep`."""
    backend, device = _init(args.backend, args.timeout)
    rank, nranks = dist.get_rank(), dist.get_world_size()
    dtype = DTYPES[args.dtype]
    op = _OP_TO_RUNTIME.get(args.op, args.op)

    def reference(count: int) -> torch.Tensor:
        ref = _check_input(count, dtype, op, rank, device)
        _runner(bench.NATIVE, op, nranks)(ref)
        return ref

    def measure(algorithm: str, count: int, ref: torch.Tensor | None) -> tuple[float, int | None]:
        fn = _runner(algorithm, op, nranks)
        wrong = None
        if ref is not None:
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
        return float(elapsed) / args.iters * 1e6, wrong

    itemsize = torch.empty((), dtype=dtype).element_size()
    return bench.run_sweep(args, measure, reference, rank=rank, nranks=nranks, itemsize=itemsize, backend=backend,
                           transport=f"backend {backend} device {device.type} layout {find_layout(device=device).describe()}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate(parser, args)
    try:
        records = run(args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    failed = any(r.wrong for r in records)  # None when nothing was checked
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
