"""The MPI runtime's repeated-call fast path, under a real ``mpiexec`` at 2 and 3 processes.

A repeated ``all_reduce`` with a numpy array goes straight from a kept resolution to the schedule
(``collectives.mpi._repeat_all_reduce``). These cases hold it to the regular path: bitwise the same
results for every algorithm, several dtypes and ops, counts 0, 1, < p, prime; the same clear
errors when the buffer, the communicator or the environment changed since; and the fast path
really taken (the regular path's prologue is made to fail while it runs).

Run by pytest (below), or by hand: ``mpiexec -n 3 python tests/test_mpi_fastpath.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()


# ----------------------------------------------------------------------------------------------
# pytest: launch this file under mpiexec


@pytest.mark.timeout(150)
@pytest.mark.parametrize("nranks", [2, 3])
def test_fast_path_under_mpiexec(nranks):
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install -e '.[mpi]')")
    from test_mpi import MPIEXEC, SUMMARY, TIMEOUT_S, _env

    if MPIEXEC is None:
        pytest.fail("mpi4py is installed but no mpiexec was found next to python or on PATH")
    command = [*MPIEXEC, "-n", str(nranks), sys.executable, str(HERE)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=_env(), cwd=HERE.parent.parent)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"mpiexec -n {nranks} ran past {TIMEOUT_S}s (a hang?); output so far:\n{err.stdout}\n{err.stderr}")
    output = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, f"mpiexec -n {nranks} exited {proc.returncode}\n{output}"
    match = SUMMARY.search(proc.stdout)
    assert match and int(match.group(1)) == nranks, f"no summary line from rank 0\n{output}"
    assert int(match.group(2)) == len(CASE_NAMES) and int(match.group(3)) > 500


# ----------------------------------------------------------------------------------------------
# inside mpiexec

#: (dtype, op) pairs: floating, integer, complex and bool types, arithmetic, ordering, bitwise, logical ops
DTYPE_OPS = [("float32", "SUM"), ("float64", "PROD"), ("float16", "MIN"), ("int32", "MAX"), ("int64", "BXOR"),
             ("uint8", "BAND"), ("complex128", "SUM"), ("bool", "LOR"), ("int16", "LXOR")]
CASE_NAMES = ["fast_equals_regular", "fast_path_is_taken", "fast_path_with_check", "changed_buffer_is_refused",
              "changed_environment_is_followed", "freed_communicator_is_refused", "cache_is_bounded"]


@contextmanager
def regular_path_forbidden(cmpi):
    """While inside, the regular path's prologue raises: a call that gets through took the fast path."""
    real = cmpi._prologue

    def forbidden(*args, **kwargs):
        raise AssertionError("the regular path ran where the fast path was expected")

    cmpi._prologue = forbidden
    try:
        yield
    finally:
        cmpi._prologue = real


def _cases():
    import mpi_suite as suite
    from mpi4py import MPI

    from collectives import ALGORITHMS
    from collectives import mpi as cmpi

    algorithms = [*ALGORITHMS, "auto"]

    def fast_equals_regular(comm) -> int:
        """Every algorithm, dtype/op and count: the regular call, its repeat and MPI_Allreduce agree bit for bit."""
        n, rank = comm.Get_size(), comm.Get_rank()
        checks, results = 0, []
        for dtype, op in DTYPE_OPS:
            for count in suite.counts_for(n):
                data = suite.make_data(dtype, count, rank, op)
                want = data.copy()
                comm.Allreduce(MPI.IN_PLACE, want, op=cmpi.OPS[op].mpi)
                for algorithm in algorithms:
                    cmpi._CALLS.clear()
                    first = data.copy()
                    cmpi.all_reduce(first, comm, op=op, algorithm=algorithm, check=False)
                    again = data.copy()
                    with regular_path_forbidden(cmpi):
                        cmpi.all_reduce(again, comm, op=op, algorithm=algorithm, check=False)
                    what = f"{algorithm} {dtype} {op} count={count}"
                    checks += suite.expect_equal(first, want, f"{what}: regular path")
                    assert suite._value_bytes(again) == suite._value_bytes(first), f"{what}: fast path differs from regular"
                    results.append((what, again))
        return checks + suite.expect_all_identical(comm, results)

    def fast_path_is_taken(comm) -> int:
        """One entry per distinct call; the repeat finds it; 2-D arrays in C and Fortran order work in memory order."""
        rank = comm.Get_rank()
        cmpi._CALLS.clear()
        x = np.arange(12.0) + rank
        cmpi.all_reduce(x, comm, check=False)
        assert len(cmpi._CALLS) == 1, f"one call left {len(cmpi._CALLS)} entries"
        with regular_path_forbidden(cmpi):
            for _ in range(3):
                cmpi.all_reduce(x, comm, check=False)
        assert len(cmpi._CALLS) == 1
        checks = suite.expect_equal(x, (np.arange(12.0) * comm.size + sum(range(comm.size))) * comm.size ** 3,
                                    "four allreduces in a row")
        for order in "CF":
            grid = np.asarray(np.arange(12, dtype=np.int32).reshape(3, 4) + rank, order=order)
            want = grid.copy(order="K")
            comm.Allreduce(MPI.IN_PLACE, want)
            cmpi.all_reduce(grid.copy(order="K"), comm, algorithm="ring", check=False)
            with regular_path_forbidden(cmpi):
                cmpi.all_reduce(grid, comm, algorithm="ring", check=False)
            checks += suite.expect_equal(grid, want, f"{order}-order 3x4 array")
        return checks

    def fast_path_with_check(comm) -> int:
        """check=True on the fast path still agrees first: disagreement and a refusing rank raise on every rank."""
        n, rank = comm.Get_size(), comm.Get_rank()
        cmpi._CALLS.clear()
        for op in ("SUM", "MAX"):
            cmpi.all_reduce(np.ones(10), comm, op=op)  # both calls resolved on every rank
        x = np.ones(10)
        with regular_path_forbidden(cmpi):
            cmpi.all_reduce(x, comm, op="SUM")
        checks = suite.expect_equal(x, np.full(10, float(n)), "fast path with check=True")
        mine = "SUM" if rank == 0 else "MAX"
        with regular_path_forbidden(cmpi):  # every rank is on the fast path; the agreement catches the ops
            checks += suite.expect_error(ValueError, ("disagree", "op", "rank 0: SUM", "rank 1: MAX"),
                                         lambda: cmpi.all_reduce(np.ones(10), comm, op=mine), "ops differ")
        readonly = np.ones(10)
        readonly.setflags(write=False)
        if rank == 0:  # the regular path refuses rank 0's input; the others are on the fast path
            checks += suite.expect_error(ValueError, ("buf", "read-only"), lambda: cmpi.all_reduce(readonly, comm),
                                         "read-only on rank 0")
        else:
            checks += suite.expect_error(ValueError, ("refused", "rank 0", "read-only"),
                                         lambda: cmpi.all_reduce(np.ones(10), comm), "others see rank 0 refuse")
        return checks

    def changed_buffer_is_refused(comm) -> int:
        """A buffer of a kept call's dtype and size that became read-only or is strided gets the regular errors."""
        cmpi._CALLS.clear()
        x = np.ones(10)
        cmpi.all_reduce(x, comm, check=False)
        x.setflags(write=False)
        checks = suite.expect_error(ValueError, ("buf", "read-only"), lambda: cmpi.all_reduce(x, comm, check=False),
                                    "buffer made read-only")
        strided = np.ones(20)[::2]
        checks += suite.expect_error(ValueError, ("buf", "non-contiguous"),
                                     lambda: cmpi.all_reduce(strided, comm, check=False), "strided view, same size")
        checks += suite.expect_error(TypeError, ("BAND", "float64"),
                                     lambda: cmpi.all_reduce(np.ones(10), comm, op="BAND", check=False), "op for dtype")
        return checks

    def changed_environment_is_followed(comm) -> int:
        """auto follows COLLSIM_TUNING naming another file between repeats; a file is read once (rewritten or
        removed later, its table stays); layouts follow COLLSIM_RANKS_PER_NODE."""
        n, rank = comm.Get_size(), comm.Get_rank()
        cmpi._CALLS.clear()
        x = np.arange(100.0)
        cmpi.all_reduce(x, comm, check=False)
        spec = next(iter(cmpi._CALLS.values())).spec
        paths = []
        if rank == 0:
            for choice in ("tree", "recursive_halving"):
                fd, path = tempfile.mkstemp(suffix=".json")
                os.close(fd)
                Path(path).write_text(json.dumps({"format": "collsim-tuning/1", "tables": {"1": [[None, choice]]}}))
                paths.append(path)
        paths = comm.bcast(paths)
        checks = 0

        def run_auto(label: str) -> set:
            nonlocal checks
            for _ in range(2):  # the first call resolves anew, the second repeats it
                y = np.arange(100.0) + rank
                cmpi.all_reduce(y, comm, check=False)
                checks += suite.expect_equal(y, np.arange(100.0) * n + sum(range(n)), label)
            return {c.spec for key, c in cmpi._CALLS.items() if key[2] == "auto" and key[-1][0] == os.fsencode(
                os.environ["COLLSIM_TUNING"])}

        try:
            for path, choice in zip(paths, ("tree", "recursive_halving"), strict=True):
                os.environ["COLLSIM_TUNING"] = path
                chosen = run_auto(f"auto from a table of {choice}")
                assert chosen == {choice}, f"auto ran {chosen}, the table says {choice} (the default was {spec})"
            comm.Barrier()
            if rank == 0:  # read once: a rewritten file keeps its first table, a removed one too
                Path(paths[0]).write_text(json.dumps({"format": "collsim-tuning/1", "tables": {"1": [[None, "ring"]]}}))
                os.unlink(paths[1])
            comm.Barrier()
            for path, choice in zip(paths, ("tree", "recursive_halving"), strict=True):
                os.environ["COLLSIM_TUNING"] = path
                chosen = run_auto(f"auto from the table of {choice} read before")
                assert chosen == {choice}, f"auto ran {chosen} after its file changed; it read {choice} first"
            os.environ["COLLSIM_TUNING"] = paths[1] + ".never"
            checks += suite.expect_error(ValueError, ("tuning table", paths[1] + ".never", "COLLSIM_TUNING"),
                                         lambda: cmpi.all_reduce(x, comm, check=False), "a tuning file that is not there")
        finally:
            del os.environ["COLLSIM_TUNING"]
            comm.Barrier()
            for path in paths if rank == 0 else []:
                if os.path.exists(path):
                    os.unlink(path)
        with regular_path_forbidden(cmpi):  # back to the first environment: the first resolution again
            cmpi.all_reduce(x, comm, check=False)
        for per_node in ("1", None):
            if per_node is not None:
                os.environ["COLLSIM_RANKS_PER_NODE"] = per_node  # every rank its own node
            try:
                for _ in range(2):
                    y = np.arange(50, dtype=np.int64) + rank
                    cmpi.all_reduce(y, comm, algorithm="hierarchical", check=False)
                checks += suite.expect_equal(y, np.arange(50, dtype=np.int64) * n + sum(range(n)),
                                             f"hierarchical, COLLSIM_RANKS_PER_NODE={per_node}")
            finally:
                os.environ.pop("COLLSIM_RANKS_PER_NODE", None)
        kept = {key[-1][2] for key in cmpi._CALLS if key[2] == "hierarchical"}
        assert kept == {b"1", None}, f"hierarchical kept for COLLSIM_RANKS_PER_NODE values {kept}, want b'1' and unset"
        return checks + 1

    def freed_communicator_is_refused(comm) -> int:
        dup = comm.Dup()
        x = np.ones(8)
        cmpi.all_reduce(x, dup, check=False)
        dup.Free()
        return suite.expect_error(ValueError, ("COMM_NULL",), lambda: cmpi.all_reduce(x, dup, check=False),
                                  "a communicator freed after a call")

    def cache_is_bounded(comm) -> int:
        n, rank = comm.Get_size(), comm.Get_rank()
        saved = cmpi._CALLS_MAX
        cmpi._CALLS_MAX = 4
        cmpi._CALLS.clear()
        checks = 0
        try:
            for count in range(1, 11):
                for _ in range(2):
                    x = np.arange(count, dtype=np.int32) + rank
                    cmpi.all_reduce(x, comm, algorithm="ring", check=False)
                checks += suite.expect_equal(x, np.arange(count, dtype=np.int32) * n + sum(range(n)), f"count {count}")
                assert len(cmpi._CALLS) <= 4, f"{len(cmpi._CALLS)} kept calls, the bound is 4"
            cmpi.release_buffers()
            x = np.arange(10, dtype=np.int32) + rank
            cmpi.all_reduce(x, comm, algorithm="ring", check=False)
            checks += suite.expect_equal(x, np.arange(10, dtype=np.int32) * n + sum(range(n)), "after release_buffers")
        finally:
            cmpi._CALLS_MAX = saved
        return checks

    found = dict(locals())
    return [(name, found[name]) for name in CASE_NAMES]


def main() -> int:
    sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent)]
    import mpi_suite as suite

    suite.CASES[:] = _cases()
    return suite.main([])


if __name__ == "__main__":
    sys.exit(main())
