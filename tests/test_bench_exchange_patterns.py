"""``benchmarks/exchange_patterns.py``: one step of each connection pattern, timed on an emulated switch."""

from __future__ import annotations

import pytest
from _bench import namespaces, refused, run_benchmark

from topologies.emulate import emulation_unavailable_reason

REASON = emulation_unavailable_reason()


@pytest.mark.parametrize("args, message", [
    (["--reps", "0"], "--reps must be at least 1, got 0"),
    (["--topology", "switch:n=3"], "fewer than 4 endpoints"),
    (["--allreduce", "-1"], "--allreduce must be 0 or more rounds, got -1"),
    (["--send-buffer", "1K"], "--send-buffer must be at least 4K, got 1024"),
])
def test_bad_arguments_are_refused_before_any_namespace(args, message):
    assert message in refused("exchange_patterns.py", *args)


@pytest.mark.skipif(REASON is not None, reason=f"emulation unavailable: {REASON}")
def test_every_pattern_is_timed_and_the_namespaces_go():
    before = namespaces()
    proc = run_benchmark("exchange_patterns.py", "--topology", "switch:n=4,bandwidth=1Gbps", "--size", "16K", "--reps", "1", "--allreduce", "2",
                "--send-buffer", "64K")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("|")[1].strip() for line in proc.stdout.splitlines()
            if line.startswith("| ") and "pattern" not in line and "allreduce" not in line]
    assert rows == ["oneway", "ring", "exchange", "switching", "ring", "recursive_halving", "recursive_doubling",
                    "recursive_halving/off", "recursive_doubling/off"]
    assert "send buffer at most 65536 B" in proc.stderr
    assert namespaces() <= before
