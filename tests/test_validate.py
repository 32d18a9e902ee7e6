"""``collsim validate``: one small validation on an emulated switch, and the comparison arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sim.validate import Point, Validation, format_report
from topologies.emulate import emulation_unavailable_reason

REASON = emulation_unavailable_reason()


def _validation(points):
    return Validation(topology="t", nranks=4, points=[Point(*p) for p in points], params={})


def test_errors_best_and_regret():
    v = _validation([
        ("ring", 65536, 1.1, 1.0, 0), ("tree", 65536, 1.0, 1.04, 0),         # predicted tree, measured ring: 4 %
        ("ring", 1 << 20, 9.0, 10.0, 0), ("tree", 1 << 20, 8.0, 12.0, 0),    # predicted tree, measured ring: 20 %
        ("ring", 1024, 1.0, 2.0, 0), ("tree", 1024, 3.0, 2.5, 0),
    ])
    assert [round(p.error, 3) for p in v.points][:2] == [0.1, round(1 / 1.04 - 1, 3)]
    rows = {r["size"]: r for r in v.per_size()}
    assert rows[65536]["predicted_best"] == "tree" and rows[65536]["measured_best"] == "ring"
    assert rows[65536]["regret"] == pytest.approx(0.04)
    assert rows[1 << 20]["regret"] == pytest.approx(0.2)
    assert rows[1024]["regret"] == 0.0
    assert v.best_agreement() == pytest.approx(2 / 3)
    # median |error| over sizes >= 64 KiB: errors 0.1, 0.0385, 0.1, 0.333
    assert v.median_abs_error(65536) == pytest.approx(0.1)
    text = format_report(v)
    assert "predicted best" in text and "+10.0" in text and "regret%" in text


@pytest.mark.skipif(REASON is not None, reason=f"emulation unavailable: {REASON}")
def test_small_validation_end_to_end(tmp_path):
    """4 hosts on a switch, 2 sizes, every algorithm: table, JSON lines of both sources, plot, exit status."""
    out, plot = tmp_path / "v.jsonl", tmp_path / "v.png"
    proc = subprocess.run(
        [sys.executable, "-m", "sim", "validate", "--topology", "switch:n=4,bandwidth=200Mbps",
         "--sizes", "256KiB,1MiB", "--algorithms", "all", "--reps", "3", "--json", str(out), "--plot", str(plot),
         "--max-error", "0.5"],
        capture_output=True, text=True, timeout=170, cwd=tmp_path,
    )
    assert proc.returncode in (0, 1), proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    measured = [r for r in records if r["source"] == "measured"]
    simulated = [r for r in records if r["source"] == "simulated"]
    assert len(measured) == len(simulated) == 2 * 4
    assert {r["algorithm"] for r in measured} == {"ring", "tree", "recursive_halving", "recursive_doubling"}
    assert all(r["wrong"] == 0 for r in measured), measured  # every measured result was correct
    assert all(r["time_us"] > 0 and r["nranks"] == 4 for r in records)
    assert plot.stat().st_size > 10_000
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 8 + 2  # a row per point, a row per size (winners)
    # exit status follows --max-error; a gross model or measurement failure cannot pass
    median_line = next(line for line in proc.stdout.splitlines() if line.startswith("# median |error|"))
    median = float(median_line.split()[3].rstrip("%")) / 100
    assert (proc.returncode == 1) == (median > 0.5), proc.stdout
    assert median < 0.5, proc.stdout + proc.stderr


def test_validate_bad_arguments(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "sim", "validate", *args], capture_output=True, text=True, timeout=60)

    spec = ["--topology", "switch:n=4,bandwidth=200Mbps"]
    for args, needle in [
        (["--algorithms", "ring,nope"], "--algorithms"),
        (["--sizes", "1MiB:64KiB"], "bad size range"),
        (["--max-error", "0"], "--max-error"),
        (["--plot", str(tmp_path / "x.txt")], "--plot"),
        (["--json", str(tmp_path / "missing" / "x.jsonl")], "--json"),
    ]:
        proc = run(*spec, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("collsim: error:") and needle in proc.stderr and proc.stderr.count("\n") == 1
