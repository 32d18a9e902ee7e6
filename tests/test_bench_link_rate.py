"""``benchmarks/link_rate.py``: what rate TCP gets over emulated links."""

from __future__ import annotations

import os
import subprocess

import pytest
from _bench import run_benchmark

from topologies.emulate import emulation_unavailable_reason

REASON = emulation_unavailable_reason()


def _run(*args: str) -> subprocess.CompletedProcess:
    return run_benchmark("link_rate.py", *args)


def test_bad_arguments_are_refused_before_any_namespace():
    proc = _run("--rates", "100Mbps,fast")
    assert proc.returncode == 2 and "--rates: cannot read 'fast' as a bandwidth" in proc.stderr
    proc = _run("--bucket-seconds", "1")
    assert proc.returncode == 2 and "--bucket-seconds must be within 0..0.1, got 1.0" in proc.stderr
    proc = _run("--mib", "1")
    assert proc.returncode == 2 and "--mib must be at least 2, got 1" in proc.stderr


@pytest.mark.skipif(REASON is not None, reason=f"emulation unavailable: {REASON}")
def test_one_flow_and_four_hosts_are_measured_and_the_namespaces_go():
    before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    proc = _run("--rates", "200Mbps", "--mib", "4")
    assert proc.returncode == 0, proc.stderr
    row = proc.stdout.splitlines()[-1].split()
    assert row[:3] == ["200Mbps", "one", "flow"] and row[5:8] == ["hosts", "both", "ways"]
    rates = [float(row[3]), *map(float, row[8:12])]
    # shaped to the rate, give or take what a short transfer gains from the bucket and the first window
    assert all(0 < r < 1.1 * 200 for r in rates), rates
    after = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    assert after <= before
