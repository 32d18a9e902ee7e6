"""``benchmarks/exchange_patterns.py``: one step of each connection pattern, timed on an emulated switch."""

from __future__ import annotations

import os
import subprocess

import pytest
from _bench import run_benchmark

from topologies.emulate import emulation_unavailable_reason

REASON = emulation_unavailable_reason()


def _run(*args: str) -> subprocess.CompletedProcess:
    return run_benchmark("exchange_patterns.py", *args)


def test_bad_arguments_are_refused_before_any_namespace():
    proc = _run("--reps", "0")
    assert proc.returncode == 2 and "--reps must be at least 1, got 0" in proc.stderr
    proc = _run("--topology", "switch:n=3")
    assert proc.returncode == 2 and "fewer than 4 endpoints" in proc.stderr
    proc = _run("--allreduce", "-1")
    assert proc.returncode == 2 and "--allreduce must be 0 or more rounds, got -1" in proc.stderr
    proc = _run("--send-buffer", "1K")
    assert proc.returncode == 2 and "--send-buffer must be at least 4K, got 1024" in proc.stderr


@pytest.mark.skipif(REASON is not None, reason=f"emulation unavailable: {REASON}")
def test_every_pattern_is_timed_and_the_namespaces_go():
    before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    proc = _run("--topology", "switch:n=4,bandwidth=1Gbps", "--size", "16K", "--reps", "1", "--allreduce", "2",
                "--send-buffer", "64K")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("|")[1].strip() for line in proc.stdout.splitlines()
            if line.startswith("| ") and "pattern" not in line and "allreduce" not in line]
    assert rows == ["oneway", "ring", "exchange", "switching", "ring", "recursive_halving", "recursive_doubling",
                    "recursive_halving/off", "recursive_doubling/off"]
    assert "send buffer at most 65536 B" in proc.stderr
    after = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    assert after <= before
