"""DDP with collsim's comm hooks: same losses as DDP's default hook, run by torchrun and in a worker pool."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _dist_harness import pool

ROOT = Path(__file__).resolve().parents[1]


def train_both(hook: str, algorithm: str, steps: int) -> dict:
    """On every rank: train with the collsim hook and with DDP's default; return losses and params."""
    sys.path.insert(0, str(ROOT / "examples"))
    import torch
    from ddp_train import train

    ours, params = train(hook, algorithm, steps, bucket_kb=4)
    native, native_params = train(None, algorithm, steps, bucket_kb=4)
    return {"ours": ours, "native": native, "params": params.numpy().tobytes(),
            "param_diff": float((params - native_params).abs().max()), "finite": bool(torch.isfinite(params).all())}


HOOK_CASES = [("allreduce", "ring", 1e-5), ("allreduce", "tree", 1e-5), ("allreduce", "recursive_halving", 1e-5),
              ("allreduce", "recursive_doubling", 1e-5), ("allreduce", "auto", 1e-5),
              ("fp16_compress", "ring", 2e-2), ("bf16_compress", "auto", 5e-2)]


@pytest.mark.parametrize(("hook", "algorithm", "rtol"), HOOK_CASES, ids=[f"{h}-{a}" for h, a, _ in HOOK_CASES])
def test_hook_matches_default_hook(hook, algorithm, rtol):
    results = pool(2).run(train_both, hook, algorithm, 12)
    for r in results:
        worst = max(abs(a - b) / abs(b) for a, b in zip(r["ours"], r["native"], strict=True))
        assert worst <= rtol, (hook, algorithm, worst, r["ours"], r["native"])
        assert r["finite"]
    assert results[0]["params"] == results[1]["params"], "ranks ended with different parameters"
    assert results[0]["ours"][-1] < results[0]["ours"][0], "training did not reduce the loss"


def test_register_rejects_unknown_names():
    from collectives.ddp import HOOKS, register

    with pytest.raises(ValueError, match="allreduce, fp16_compress, bf16_compress"):
        register(object(), "nope")
    assert set(HOOKS) == {"allreduce", "fp16_compress", "bf16_compress"}


def test_ddp_example_under_torchrun(tmp_path):
    """The example as users run it: torchrun, 2 ranks, ring; it exits 0 only if the losses match."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(ROOT / "examples" / "ddp_train.py"), "--algorithm", "ring", "--steps", "20"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "# OK" in proc.stdout and "parameters identical on every rank: True" in proc.stdout, proc.stdout
