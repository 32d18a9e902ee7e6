"""The runtime-vs-native benchmarks end to end, in ``--quick`` mode: two tiny sizes at p = 2.

These check the scripts, not the speed: each run writes its files with the 95% interval columns,
records the machine and says whether it pinned its ranks. Each starts real process groups (two
torch processes, or ``mpiexec -n 2``), so each takes ~10 s on an idle 2-core machine and more
under load: slower than the suite's usual tests, on purpose, as the only end-to-end check that the
committed benchmarks still run.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collectives.tuning import load_table

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 240


def _run(script: str, args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = dict(os.environ, **env)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    environ.pop("COLLSIM_TUNING", None)
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--nranks", "2", *args, "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT, env=environ)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _check_machine(machine: dict, run: dict) -> None:
    assert machine["cores"] >= 1 and machine["cpu_model"]
    assert run["load_before"] is None or len(run["load_before"]) == 3
    assert run["load_after"] is None or len(run["load_after"]) == 3
    assert run["pinning"].startswith(("pinned", "not pinned"))
    if run["pinned"]:  # every thread of every rank on that rank's cores
        for rank, seen in run["threads"].items():
            assert seen["cores"] == run["cores"][int(rank)], (rank, seen)


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 30)
def test_runtime_vs_native_quick(tmp_path):
    proc = _run("runtime_vs_native.py", ["--min-size", "4K", "--max-size", "8K", "--algorithms", "ring,auto",
                                         "--tuning-out", str(tmp_path / "measured.json")], tmp_path)
    with open(tmp_path / "runtime_vs_native.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["size"], r["algorithm"]) for r in rows] == [("4096", "ring"), ("4096", "auto"),
                                                           ("8192", "ring"), ("8192", "auto")]
    for r in rows:
        lo, mid, hi = (float(r[k]) for k in ("ratio_median_lo", "ratio_median", "ratio_median_hi"))
        assert lo <= mid <= hi and mid > 0
        assert float(r["native_us_median_lo"]) <= float(r["native_us_median"]) <= float(r["native_us_median_hi"])
        assert int(r["reps"]) == 6 and int(r["calls_per_sample"]) >= 1
    data = json.loads((tmp_path / "runtime_vs_native.json").read_text())
    assert "torch" in data["machine"]["versions"] and "gloo" in data["machine"]["versions"]
    (run,) = data["runs"]
    _check_machine(data["machine"], run)
    assert all(len(row["ratios"]) == 6 for row in data["rows"])
    assert {t["verdict"] for t in data["targets"]} <= {"met", "missed", "undecided", "not measured"}
    report = (tmp_path / "runtime_vs_native.md").read_text()
    assert "95% confidence interval" in report and "Machine:" in report and run["pinning"] in report
    assert "| 4 KiB |" in report and "auto geomean <= 1.0x native" in report
    assert (tmp_path / "runtime_vs_native.png").stat().st_size > 0
    assert not (tmp_path / "runtime_vs_native_rss.csv").exists()  # --quick skips the memory runs
    assert "Targets" in proc.stdout
    table = load_table(tmp_path / "measured.json")  # the one algorithm besides auto wins everywhere
    assert table.tables == {2: [(None, "ring")]}
    assert table.source.startswith("measured: benchmarks/runtime_vs_native.py (torch ")


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 30)
def test_mpi_vs_native_quick(tmp_path):
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install -e '.[mpi]')")
    # MPICH busy-polls; on a loaded machine let waiting ranks give their core away
    _run("mpi_vs_native.py", ["-b", "4K", "-e", "8K", "--algorithms", "ring", "recursive_doubling", "auto",
                              "--tuning-out", str(tmp_path / "measured.json")], tmp_path,
         MPIR_CVAR_ENABLE_HEAVY_YIELD="1")
    data = json.loads((tmp_path / "mpi_vs_native.json").read_text())
    records = data["records"]
    assert sorted((r["size"], r["algorithm"]) for r in records) == sorted(
        (s, a) for s in (4096, 8192) for a in ("native", "ring", "recursive_doubling", "auto"))
    for r in records:
        assert r["ratio_lo"] <= r["ratio"] <= r["ratio_hi"] and r["reps"] == 6 and len(r["ratios"]) == 6
        assert r["time_us_lo"] <= r["time_us"] <= r["time_us_hi"]
    (run,) = data["runs"]
    _check_machine(data["machine"], run)
    assert "MPICH" in data["machine"]["versions"]["mpi"] or data["machine"]["versions"]["mpi"]
    assert run["mpir_cvars"] == {"MPIR_CVAR_ENABLE_HEAVY_YIELD": "1"} or "MPIR_CVAR_ENABLE_HEAVY_YIELD" in run["mpir_cvars"]
    report = (tmp_path / "mpi_vs_native.md").read_text()
    assert "95% confidence interval" in report and "Machine:" in report and "auto geomean <= 1.5x" in report
    assert (tmp_path / "mpi_vs_native.png").stat().st_size > 0
    # the measured winner per size: the lower median ratio of ring and recursive doubling
    winners = [min((r for r in records if r["size"] == size and r["algorithm"] in ("ring", "recursive_doubling")),
                   key=lambda r: r["ratio"])["algorithm"] for size in (4096, 8192)]
    table = load_table(tmp_path / "measured.json")
    assert [table.choose(2, size) for size in (4096, 8192)] == winners
    assert table.source.startswith("measured: benchmarks/mpi_vs_native.py (")


@pytest.mark.timeout(60)
def test_mpi_worker_refuses_a_world_of_the_wrong_size():
    """A rank whose MPI is not mpiexec's sees a world of 1: it names the library it loaded and exits 2."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install -e '.[mpi]')")
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for name in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        environ.pop(name, None)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "mpi_vs_native.py"), "--worker", "--nranks", "2",
           "-b", "4K", "-e", "4K", "--algorithms", "ring"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=50, cwd=ROOT, env=environ)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    (line,) = proc.stdout.splitlines()
    error = json.loads(line)["error"]
    assert error.startswith("mpiexec -n 2 started ranks that see a world of 1: mpi4py loaded ") and "MPI4PY_LIBMPI" in error


@pytest.mark.parametrize("script,algorithms", [("runtime_vs_native.py", ["--algorithms", "auto"]),
                                               ("mpi_vs_native.py", ["--algorithms", "auto"])])
def test_tuning_out_is_checked_before_any_rank_starts(tmp_path, script, algorithms):
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    base = [sys.executable, str(ROOT / "benchmarks" / script), "--out", str(tmp_path)]
    proc = subprocess.run([*base, *algorithms, "--tuning-out", str(tmp_path / "t.json")],
                          capture_output=True, text=True, timeout=60, env=environ)
    assert proc.returncode == 2 and "--tuning-out needs an algorithm besides auto in --algorithms" in proc.stderr
    proc = subprocess.run([*base, "--tuning-out", str(tmp_path / "no" / "t.json")],
                          capture_output=True, text=True, timeout=60, env=environ)
    assert proc.returncode == 2 and f"--tuning-out: no folder {tmp_path / 'no'}" in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written
