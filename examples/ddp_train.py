"""Train a small model with DistributedDataParallel, gradients allreduced by collsim.

Run one process per rank with torchrun::

    torchrun --nproc_per_node=2 examples/ddp_train.py --algorithm ring --steps 30

Each rank trains the same MLP on its own shard of a synthetic regression problem. The gradient
buckets (``--bucket-kb`` each, so there are several) are averaged by collsim's allreduce through
a DDP communication hook (:mod:`collectives.ddp`). With ``--compare`` (the default) the same
training runs again with DDP's default hook and the script fails unless the two loss curves agree
within float tolerance and every rank ends with the same parameters. Rank 0 prints the losses.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

# collectives.ddp is imported before init_process_group on purpose (see the note at its imports):
# then destroy_process_group can free the group and stop Gloo's threads before the interpreter exits.
from collectives.ddp import HOOKS, register
from collectives.distributed import algorithms_for
from sim.bench import ArgumentParser

__all__ = ["train", "main"]


def train(hook: str | None, algorithm: str, steps: int, bucket_kb: int, seed: int = 0) -> tuple[list[float], torch.Tensor]:
    """Train for ``steps``; return the global mean loss per step and the final flat parameters.

    ``hook=None`` uses DDP's default (native) allreduce.
    """
    rank, nranks = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(seed)  # same initial weights everywhere (DDP also broadcasts them)
    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    ddp = DistributedDataParallel(model, bucket_cap_mb=bucket_kb / 1024)
    if hook is not None:
        register(ddp, hook, algorithm=algorithm)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1000 + seed)
    true_w = torch.randn(16, 1, generator=g)
    data = torch.Generator().manual_seed(2000 + seed + rank)  # this rank's shard
    losses = []
    for _ in range(steps):
        x = torch.randn(32, 16, generator=data)
        y = torch.sin(0.3 * (x @ true_w)) + 0.05 * torch.randn(32, 1, generator=data)
        loss = nn.functional.mse_loss(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(float(mean) / nranks)
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    return losses, params


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="ddp_train.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--hook", choices=list(HOOKS), default="allreduce", help="collsim comm hook")
    parser.add_argument("--algorithm", choices=algorithms_for("allreduce"), default="ring")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--bucket-kb", type=int, default=8, help="DDP bucket size (small: several buckets)")
    parser.add_argument("--compare", action=argparse.BooleanOptionalAction, default=True,
                        help="also train with DDP's default hook and require matching losses")
    parser.add_argument("--rtol", type=float, default=None,
                        help="loss tolerance (default 1e-4, 2e-2 for the compressing hooks)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if args.bucket_kb < 1:
        parser.error(f"--bucket-kb must be >= 1, got {args.bucket_kb}")
    if args.rtol is not None and not args.rtol > 0:
        parser.error(f"--rtol must be positive, got {args.rtol}")
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=os.environ.get("MASTER_PORT", "29534"))
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))
    try:
        rank = dist.get_rank()
        ours, params = train(args.hook, args.algorithm, args.steps, args.bucket_kb)
        everyone = [torch.empty_like(params) for _ in range(dist.get_world_size())]
        dist.all_gather(everyone, params)
        same = all(torch.equal(everyone[0], p) for p in everyone)
        ok = same
        if rank == 0:
            print(f"# DDP on {dist.get_world_size()} ranks, hook {args.hook}, algorithm {args.algorithm}")
        if args.compare:
            native, _ = train(None, args.algorithm, args.steps, args.bucket_kb)
            rtol = args.rtol if args.rtol is not None else (1e-4 if args.hook == "allreduce" else 2e-2)
            worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(ours, native, strict=True))
            ok = ok and worst <= rtol
            if rank == 0:
                print(f"{'step':>5} {'loss (collsim)':>15} {'loss (native)':>15}")
                for i, (a, b) in enumerate(zip(ours, native, strict=True)):
                    if i < 3 or i % 10 == 9 or i == len(ours) - 1:
                        print(f"{i + 1:>5} {a:>15.6f} {b:>15.6f}")
                print(f"# max relative loss difference {worst:.2e} (tolerance {rtol:.0e})")
        elif rank == 0:
            for i, a in enumerate(ours):
                print(f"{i + 1:>5} {a:>15.6f}")
        if rank == 0:
            print(f"# parameters identical on every rank: {same}")
            print("# OK" if ok else "# FAILED")
        return 0 if ok else 1
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
