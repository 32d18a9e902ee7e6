"""``benchmarks/link_rate.py``: what rate TCP gets over emulated links."""

from __future__ import annotations

import pytest
from _bench import namespaces, refused, run_benchmark

from topologies.emulate import emulation_unavailable_reason

REASON = emulation_unavailable_reason()


@pytest.mark.parametrize("args, message", [
    (["--rates", "100Mbps,fast"], "--rates: cannot read 'fast' as a bandwidth"),
    (["--bucket-seconds", "1"], "--bucket-seconds must be within 0..0.1, got 1.0"),
    (["--mib", "1"], "--mib must be at least 2, got 1"),
])
def test_bad_arguments_are_refused_before_any_namespace(args, message):
    assert message in refused("link_rate.py", *args)


@pytest.mark.skipif(REASON is not None, reason=f"emulation unavailable: {REASON}")
def test_one_flow_and_four_hosts_are_measured_and_the_namespaces_go():
    before = namespaces()
    proc = run_benchmark("link_rate.py", "--rates", "200Mbps", "--mib", "4")
    assert proc.returncode == 0, proc.stderr
    row = proc.stdout.splitlines()[-1].split()
    assert row[:3] == ["200Mbps", "one", "flow"] and row[5:8] == ["hosts", "both", "ways"]
    rates = [float(row[3]), *map(float, row[8:12])]
    # shaped to the rate, give or take what a short transfer gains from the bucket and the first window
    assert all(0 < r < 1.1 * 200 for r in rates), rates
    assert namespaces() <= before
