"""``benchmarks/sim_scaling.py --topology``: the scaling rows on a shape of the user's, checked first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "sim_scaling.py"), *args, "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def test_a_shape_of_ones_own_runs_every_row_and_writes_nothing(tmp_path):
    proc = _run("--topology", "switch:n=16", "--nranks", "16", "--reps", "1", out=tmp_path / "results")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 16 | switch:n=16 |")]
    assert len(rows) == 8  # 4 algorithms x 2 sizes
    assert not (tmp_path / "results").exists()  # the committed results are left alone


def test_a_shape_with_too_few_endpoints_is_refused_before_any_work(tmp_path):
    proc = _run("--topology", "switch:n=8", out=tmp_path)
    assert proc.returncode == 2
    assert "--topology switch:n=8 has 8 endpoints, fewer than --nranks 1024" in proc.stderr
    proc = _run("--topology", "nonsense:n=8", out=tmp_path)
    assert proc.returncode == 2 and "unknown topology 'nonsense'" in proc.stderr
