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


GLOO_THREADS_AFTER_DESTROY = """
import gc, os, sys, threading
import collectives.ddp  # before the group exists, as the example does
import torch, torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1])
dist.init_process_group("gloo")
model = DistributedDataParallel(nn.Linear(4, 4))
collectives.ddp.register(model, "fp16_compress", algorithm="ring")
model(torch.randn(2, 4)).sum().backward()
loss = torch.ones(1)
dist.all_reduce(loss)
del model, loss
dist.destroy_process_group()
gc.collect()
native = len(os.listdir("/proc/self/task"))
print(native, len(threading.enumerate()))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_destroy_process_group_stops_gloo_threads_after_ddp(tmp_path):
    """The cause of the DDP example's rare SIGABRT after '# OK', held so it cannot come back.

    DDP imports torch.distributed.nn.functional (through torch._dynamo), whose default arguments
    bind ``group.WORLD`` at import. Imported after init_process_group, they kept the world group
    alive, so destroy_process_group left Gloo's worker threads running into interpreter shutdown;
    a worker that freed a finished allreduce's tensor there took the GIL and CPython ended the
    thread inside a destructor: "terminate called without an active exception" (seen in a core
    dump: ProcessGroupGloo::runLoop -> ~AsyncAllreduceWork -> decref_pyobject -> take_gil ->
    pthread_exit). With collectives.ddp imported first, destroying the group joins its threads, so
    only Python's own threads (main and collsim's worker) remain.
    """
    port = str(29400 + os.getpid() % 500)
    out = subprocess.run([sys.executable, "-c", GLOO_THREADS_AFTER_DESTROY, port], cwd=tmp_path, capture_output=True,
                         text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    native, python = map(int, out.stdout.split())
    assert native == python, f"{native - python} native threads (Gloo's) outlived destroy_process_group"


@pytest.mark.slow  # five torchrun jobs of three ranks next to two busy loops: about a minute on two cores
def test_ddp_example_exits_cleanly_every_time_under_load(tmp_path):
    """The example as the issue ran it (3 ranks, fp16_compress, auto), five times with the CPUs busy."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        for run in range(5):
            proc = subprocess.run(
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=3",
                 str(ROOT / "examples" / "ddp_train.py"), "--hook", "fp16_compress", "--algorithm", "auto",
                 "--steps", "5"],
                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
            )
            text = proc.stdout + proc.stderr
            assert proc.returncode == 0 and "terminate called" not in text, f"run {run + 1}:\n{text}"
            assert "# OK" in proc.stdout, text
    finally:
        for p in busy:
            p.kill()
            p.wait()
