"""The MPI runtime under a real ``mpiexec``: ``tests/mpi_suite.py`` at 1, 2, 3, 4 and 5 processes.

Each world size is one test, so a failure names it. Two more runs place the ranks on simulated
nodes (``COLLSIM_RANKS_PER_NODE=2`` on 4 processes, ``COLLSIM_LAYOUT=0,1,0,1,1`` on 5) and run the
cases whose results depend on the layout. The suite compares every collective with the
MPI library's own and aborts the whole job when any rank fails, so a bug ends the run instead of
hanging it; the timeout here is the backstop.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install -e '.[mpi]')")

SUITE = Path(__file__).with_name("mpi_suite.py")
ROOT = SUITE.parent.parent
SUMMARY = re.compile(r"^mpi_suite: nranks=(\d+) cases=(\d+) checks=(\d+) passed$", re.M)
TIMEOUT_S = 90


def find_mpiexec() -> list[str] | None:
    """The ``mpiexec`` that belongs to this Python's MPI (pip's mpich installs it next to python).

    Hydra (MPICH's launcher) is told to fork locally, so no ssh is needed.
    """
    candidates = [Path(sysconfig.get_path("scripts")) / "mpiexec", Path(sys.executable).parent / "mpiexec"]
    found = next((str(p) for p in candidates if p.is_file() and os.access(p, os.X_OK)), None) or shutil.which("mpiexec")
    if found is None:
        return None
    try:
        version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    return [found, "-launcher", "fork"] if "HYDRA" in version else [found]


MPIEXEC = find_mpiexec()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # MPICH busy-polls; on an oversubscribed machine let waiting ranks give their core away
    env.setdefault("MPIR_CVAR_ENABLE_HEAVY_YIELD", "1")
    for name in ("COLLSIM_TUNING", "COLLSIM_LAYOUT", "COLLSIM_RANKS_PER_NODE", "COLLSIM_NICS_PER_NODE"):
        env.pop(name, None)
    return env


def _run_suite(nranks: int, args: list[str], env: dict[str, str]) -> tuple[int, int]:
    """Run the suite under mpiexec; return (cases, checks) from rank 0's summary line."""
    if MPIEXEC is None:
        pytest.fail("mpi4py is installed but no mpiexec was found next to python or on PATH")
    command = [*MPIEXEC, "-n", str(nranks), sys.executable, str(SUITE), *args]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"mpiexec -n {nranks} ran past {TIMEOUT_S}s (a hang?); output so far:\n{err.stdout}\n{err.stderr}")
    output = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, f"mpiexec -n {nranks} exited {proc.returncode}\n{output}"
    match = SUMMARY.search(proc.stdout)
    assert match, f"no summary line from rank 0\n{output}"
    assert int(match.group(1)) == nranks
    return int(match.group(2)), int(match.group(3))


@pytest.mark.timeout(TIMEOUT_S + 30)
@pytest.mark.parametrize("nranks", [1, 2, 3, 4, 5])
def test_mpi_suite(nranks):
    # importing torch in every rank is slow; two sizes cover the tensor path
    cases, checks = _run_suite(nranks, ["--torch"] if nranks in (2, 3) else [], _env())
    assert cases >= 10 and checks > 1000


#: The cases whose results depend on the layout: the topology-aware algorithms and the blocked collectives.
LAYOUT_CASES = "layouts,reduce_scatter_every,all_gather_every,sub_communicators"


@pytest.mark.timeout(TIMEOUT_S + 30)
@pytest.mark.parametrize(("nranks", "placement"), [
    (4, {"COLLSIM_RANKS_PER_NODE": "2", "COLLSIM_NICS_PER_NODE": "2"}),
    (5, {"COLLSIM_LAYOUT": "0,1,0,1,1", "COLLSIM_NICS_PER_NODE": "2"}),
], ids=["p4-2x2", "p5-uneven"])
def test_mpi_suite_on_two_nodes(nranks, placement):
    """mpiexec with a layout: ring (2 channels: auto), tree and hierarchical against MPI's own."""
    cases, checks = _run_suite(nranks, ["-k", LAYOUT_CASES], {**_env(), **placement})
    assert cases >= 4 and checks > 1000


def test_a_failing_rank_aborts_the_job(tmp_path):
    """The suite's abort path: one rank raising ends the whole job promptly with a nonzero exit."""
    if MPIEXEC is None:
        pytest.fail("no mpiexec")
    script = tmp_path / "fail_one.py"
    script.write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {str(SUITE.parent)!r}]\n"
        "import mpi_suite as suite\n"
        "def boom(comm):\n"
        "    if comm.rank == 1:\n"
        "        raise RuntimeError('deliberate failure')\n"
        "    comm.Barrier()  # rank 1 never arrives: without Abort this would hang\n"
        "    return 1\n"
        "suite.CASES[:] = [('boom', boom)]\n"
        "suite.main([])\n"
    )
    proc = subprocess.run([*MPIEXEC, "-n", "2", sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env=_env(), cwd=ROOT)
    assert proc.returncode != 0
    assert "case boom FAILED" in proc.stderr and "deliberate failure" in proc.stderr


def test_runtime_does_not_import_torch():
    """``import collectives.mpi`` leaves torch alone (it is imported only by callers with tensors)."""
    code = "import sys, collectives.mpi; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
