"""The MPI runtime's test suite; runs inside ``mpiexec`` (``tests/test_mpi.py`` launches it).

    mpiexec -n 4 python tests/mpi_suite.py [--torch] [-k NAME[,NAME...]]
    COLLSIM_RANKS_PER_NODE=2 mpiexec -n 4 python tests/mpi_suite.py -k layouts   # two simulated nodes

Every case runs on every rank of ``MPI.COMM_WORLD`` and compares :mod:`collectives.mpi` against
the MPI library's own collective (``MPI_Allreduce``, ``MPI_Reduce_scatter_block``,
``MPI_Allgather``) on the same data, exactly: inputs are small integers (exact in every floating
type), so any wrong element is a bug, not rounding. A rank whose case fails prints the case and
its traceback and calls ``MPI.COMM_WORLD.Abort(1)``, so the job ends instead of hanging. The last
line rank 0 prints is ``mpi_suite: nranks=N cases=C checks=K passed``. With ``COLLSIM_LAYOUT`` or
``COLLSIM_RANKS_PER_NODE`` set, the topology-aware algorithms run on that layout (several simulated
nodes); without, on what ``Split_type(COMM_TYPE_SHARED)`` finds (one node here).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable

import numpy as np
from mpi4py import MPI

from collectives import ALGORITHMS
from collectives import mpi as cmpi
from collectives.layout import Layout

__all__ = ["CASES", "main"]

WORLD = MPI.COMM_WORLD
ALLREDUCE_ALGORITHMS = [*ALGORITHMS, "auto"]
BLOCKED_ALGORITHMS = [*cmpi.allowed_algorithms("reduce_scatter"), "auto"]
DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
          np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128]
SMALL_VALUE_OPS = ("SUM", "PROD")

CASES: list[tuple[str, Callable[[MPI.Intracomm], int]]] = []


def case(fn: Callable[[MPI.Intracomm], int]) -> Callable[[MPI.Intracomm], int]:
    """Register a case: ``fn(comm) -> number of checks it made``."""
    CASES.append((fn.__name__, fn))
    return fn


def counts_for(n: int) -> list[int]:
    """Element counts: 0, 1, fewer than ranks, a prime, and a larger prime."""
    return sorted({0, 1, max(n - 1, 1), 13, 1031})


def allowed(op: str, dtype) -> bool:
    return np.dtype(dtype).kind in cmpi.OPS[op].kinds


def make_data(dtype, count: int, rank: int, op: str, seed: int = 0) -> np.ndarray:
    """Data on which every op is exact: small values for SUM/PROD, full-range bits for the rest."""
    dt = np.dtype(dtype)
    idx = np.arange(count)
    if dt.kind == "b":
        return ((idx * 7 + rank * 3 + seed) % 3 == 0).astype(dt)
    if dt.kind in "iu" and op not in SMALL_VALUE_OPS:
        info = np.iinfo(dt)
        rng = np.random.default_rng([seed, rank, count])
        return rng.integers(info.min, info.max, size=count, endpoint=True, dtype=dt)
    small = (idx * 7 + rank * 3 + seed) % 5
    if dt.kind == "u":
        return small.astype(dt)
    values = small - 2
    if dt.kind == "c":
        return (values + 1j * ((idx + rank) % 3 - 1)).astype(dt)
    return values.astype(dt)


def _value_bytes(arr: np.ndarray) -> bytes:
    """The bytes that carry ``arr``'s values (x87 long doubles have 6 arbitrary padding bytes)."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype.kind in "fc" and arr.dtype.itemsize // (2 if arr.dtype.kind == "c" else 1) > 8 \
            and np.finfo(np.longdouble).nmant == 63:
        return arr.view(np.uint8).reshape(-1, 16)[:, :10].tobytes()
    return arr.tobytes()


def expect_equal(got: np.ndarray, want: np.ndarray, what: str) -> int:
    """``got`` equals ``want`` exactly (by value: MPI may reduce in another order, so a zero's sign may differ)."""
    if got.dtype != want.dtype or got.shape != want.shape:
        raise AssertionError(f"{what}: got {got.dtype}{got.shape}, want {want.dtype}{want.shape}")
    if not np.array_equal(got, want):
        g, w = got.reshape(-1), want.reshape(-1)
        bad = np.flatnonzero(g != w)[:5]
        raise AssertionError(f"{what}: got {g[bad]} at {bad.tolist()}, want {w[bad]}")
    return 1


def expect_identical(comm: MPI.Intracomm, arr: np.ndarray, what: str) -> int:
    """All ranks of ``comm`` hold bitwise identical ``arr``."""
    return expect_all_identical(comm, [(what, arr)])


def expect_all_identical(comm: MPI.Intracomm, results: list[tuple[str, np.ndarray]]) -> int:
    """Every result is bitwise identical on all ranks (one allgather of digests for the lot)."""
    mine = [zlib.crc32(_value_bytes(arr)) for _, arr in results]
    everyone = comm.allgather(mine)
    for i, (what, _) in enumerate(results):
        digests = [row[i] for row in everyone]
        if len(set(digests)) != 1:
            raise AssertionError(f"{what}: results differ between ranks (crc32 per rank {digests})")
    return len(results)


def expect_error(kind: type[Exception], words: tuple[str, ...], fn: Callable[[], object], what: str) -> int:
    try:
        fn()
    except kind as err:
        text = str(err)
        missing = [w for w in words if w not in text]
        if missing:
            raise AssertionError(f"{what}: {kind.__name__} message lacks {missing}: {text!r}") from None
        return 1
    except Exception as err:  # the wrong kind of error is a failure too
        raise AssertionError(f"{what}: expected {kind.__name__}, got {type(err).__name__}: {err}") from None
    raise AssertionError(f"{what}: expected {kind.__name__}, nothing was raised")


# ----------------------------------------------------------------------------------------------
# cases


@case
def allreduce_every_dtype_op_algorithm(comm: MPI.Intracomm) -> int:
    checks = 0
    results = []
    n, rank = comm.Get_size(), comm.Get_rank()
    for dtype in DTYPES:
        for op in cmpi.OPS:
            if not allowed(op, dtype):
                continue
            for count in counts_for(n):
                base = make_data(dtype, count, rank, op)
                want = base.copy()
                comm.Allreduce(MPI.IN_PLACE, want, op=cmpi.OPS[op].mpi)
                for algorithm in ALLREDUCE_ALGORITHMS:
                    got = base.copy()
                    out = cmpi.all_reduce(got, comm, op=cmpi.OPS[op].mpi, algorithm=algorithm)
                    what = f"all_reduce {algorithm} {np.dtype(dtype)} {op} count={count}"
                    assert out is got, f"{what}: did not return the buffer it was given"
                    checks += expect_equal(got, want, what)
                    results.append((what, got))
    return checks + expect_all_identical(comm, results)


@case
def allreduce_bitwise_identical_on_random_floats(comm: MPI.Intracomm) -> int:
    """Rounding differs by algorithm, but never between ranks; signed zeros too (MIN/MAX)."""
    checks = 0
    n, rank = comm.Get_size(), comm.Get_rank()
    rng = np.random.default_rng(rank)
    base = rng.standard_normal(4099)
    zeros = np.where(np.arange(64) % n == rank, -0.0, 0.0)
    for algorithm in ALLREDUCE_ALGORITHMS:
        for op, data in (("SUM", base), ("PROD", 1 + base / 8), ("MIN", zeros), ("MAX", zeros)):
            for dtype in (np.float32, np.float64):
                got = data.astype(dtype)
                cmpi.all_reduce(got, comm, op=op, algorithm=algorithm)
                what = f"all_reduce {algorithm} {np.dtype(dtype)} {op} random"
                checks += expect_identical(comm, got, what)
                want = data.astype(dtype)
                comm.Allreduce(MPI.IN_PLACE, want, op=cmpi.OPS[op].mpi)
                if not np.allclose(got, want, rtol=1e-4, atol=1e-4):
                    raise AssertionError(f"{what}: far from MPI_Allreduce")
                checks += 1
    return checks


@case
def reduce_scatter_every_algorithm(comm: MPI.Intracomm) -> int:
    checks = 0
    n, rank = comm.Get_size(), comm.Get_rank()
    for dtype, op in ((np.float64, "SUM"), (np.int32, "PROD"), (np.int64, "MIN"), (np.float32, "MAX"),
                      (np.uint8, "BXOR"), (np.uint16, "BOR"), (np.int8, "BAND"), (np.complex64, "SUM")):
        for block in counts_for(n):
            send = make_data(dtype, n * block, rank, op, seed=1)
            keep = send.copy()
            want = np.empty(block, dtype=dtype)
            comm.Reduce_scatter_block(send, want, op=cmpi.OPS[op].mpi)
            for algorithm in BLOCKED_ALGORITHMS:
                got = np.full(block, 99, dtype=dtype)
                out = cmpi.reduce_scatter(send, got, comm, op=op, algorithm=algorithm)
                what = f"reduce_scatter {algorithm} {np.dtype(dtype)} {op} block={block}"
                assert out is got, f"{what}: did not return recvbuf"
                checks += expect_equal(got, want, what)
                checks += expect_equal(send, keep, f"{what}: sendbuf modified")
    return checks


@case
def all_gather_every_algorithm(comm: MPI.Intracomm) -> int:
    checks = 0
    n, rank = comm.Get_size(), comm.Get_rank()
    for dtype in (np.float64, np.int16, np.bool_, np.complex128, np.float16):
        for block in counts_for(n):
            send = make_data(dtype, block, rank, "MAX", seed=2)
            want = np.empty(n * block, dtype=dtype)
            comm.Allgather(send, want)
            for algorithm in BLOCKED_ALGORITHMS:
                got = np.zeros(n * block, dtype=dtype)
                cmpi.all_gather(send, got, comm, algorithm=algorithm)
                checks += expect_equal(got, want, f"all_gather {algorithm} {np.dtype(dtype)} block={block}")
    return checks


@case
def sub_communicators(comm: MPI.Intracomm) -> int:
    """Split into halves with reversed keys (communicator ranks differ from world ranks)."""
    checks = 0
    rank = comm.Get_rank()
    for name, color in (("parity", rank % 2), ("rank0 alone", int(rank == 0))):
        sub = comm.Split(color, key=-rank)
        try:
            n, srank = sub.Get_size(), sub.Get_rank()
            for algorithm in ALLREDUCE_ALGORITHMS:
                got = make_data(np.int64, 29, srank, "SUM") * (rank + 1)
                want = got.copy()
                sub.Allreduce(MPI.IN_PLACE, want)
                cmpi.all_reduce(got, sub, algorithm=algorithm)
                checks += expect_equal(got, want, f"{name} split all_reduce {algorithm}")
            for algorithm in BLOCKED_ALGORITHMS:
                send = make_data(np.float32, 3 * n, srank, "SUM") + rank
                want = np.empty(3, np.float32)
                sub.Reduce_scatter_block(send, want)
                got = np.empty(3, np.float32)
                cmpi.reduce_scatter(send, got, sub, algorithm=algorithm)
                checks += expect_equal(got, want, f"{name} split reduce_scatter {algorithm}")
                gathered, want = np.empty(3 * n, np.float32), np.empty(3 * n, np.float32)
                sub.Allgather(got * (srank + 1), want)
                cmpi.all_gather(got * (srank + 1), gathered, sub, algorithm=algorithm)
                checks += expect_equal(gathered, want, f"{name} split all_gather {algorithm}")
        finally:
            sub.Free()
    left_out = comm.Split(MPI.UNDEFINED if rank == 0 else 0, key=rank)
    if rank == 0:
        checks += expect_error(ValueError, ("COMM_NULL",), lambda: cmpi.all_reduce(np.ones(3), left_out), "COMM_NULL")
    else:
        left_out.Free()
    return checks


#: Specs whose schedules follow the layout, with channels and inner choices.
LAYOUT_SPECS = ["ring", "ring:channels=2", "tree", "tree:channels=2", "hierarchical", "hierarchical:channels=2",
                "hierarchical:outer=recursive_doubling"]


@case
def layouts(comm: MPI.Intracomm) -> int:
    """Topology-aware schedules on the layout found (from the environment, else Split_type) and on subgroups."""
    from collectives.plan import labels_from_env

    checks = 0
    n, rank = comm.Get_size(), comm.Get_rank()
    labels = labels_from_env(n)
    layout = cmpi.find_layout(comm)
    want = tuple(Layout.from_nodes(labels).node_of) if labels is not None else (0,) * n  # one machine: one node
    assert layout.node_of == want, f"find_layout gave {layout.node_of}, expected {want}"
    assert cmpi.find_layout(comm) is layout, "find_layout is not cached"
    checks += 1
    results = []
    for dtype, op in ((np.float64, "SUM"), (np.int32, "PROD"), (np.uint8, "BXOR"), (np.float32, "MAX"), (np.bool_, "LOR")):
        for count in counts_for(n):
            base = make_data(dtype, count, rank, op)
            want = base.copy()
            comm.Allreduce(MPI.IN_PLACE, want, op=cmpi.OPS[op].mpi)
            for spec in LAYOUT_SPECS:
                got = base.copy()
                cmpi.all_reduce(got, comm, op=op, algorithm=spec)
                what = f"all_reduce {spec} on {layout.node_of} {np.dtype(dtype)} {op} count={count}"
                checks += expect_equal(got, want, what)
                results.append((what, got))
    checks += expect_all_identical(comm, results)
    for block in counts_for(n):
        send = make_data(np.int64, n * block, rank, "SUM", seed=3)
        want = np.empty(block, np.int64)
        comm.Reduce_scatter_block(send, want)
        gathered_want = np.empty(n * block, np.int64)
        comm.Allgather(want, gathered_want)
        for channels in (1, 2):
            got = np.full(block, 99, np.int64)
            cmpi.reduce_scatter(send, got, comm, algorithm="ring", channels=channels)
            checks += expect_equal(got, want, f"reduce_scatter ring channels={channels} block={block}")
            gathered = np.zeros(n * block, np.int64)
            cmpi.all_gather(got, gathered, comm, algorithm="ring", channels=channels)
            checks += expect_equal(gathered, gathered_want, f"all_gather ring channels={channels} block={block}")
    explicit = Layout(tuple(r % 2 for r in range(n)), nics_per_node=2)  # ranks on nodes out of order
    got = make_data(np.int64, 1031, rank, "SUM")
    want = got.copy()
    comm.Allreduce(MPI.IN_PLACE, want)
    cmpi.all_reduce(got, comm, algorithm="hierarchical", layout=explicit)
    checks += expect_equal(got, want, f"all_reduce hierarchical on explicit layout {explicit.node_of}")
    sub = comm.Split(rank % 2, key=-rank)  # reversed order: communicator ranks differ from world ranks
    try:
        sub_layout = cmpi.find_layout(sub)
        if labels is not None:
            members = sub.allgather(rank)
            assert sub_layout.node_of == Layout.from_nodes([labels[r] for r in members]).node_of, sub_layout
        for spec in ("hierarchical", "ring:channels=2", "tree"):
            got = make_data(np.float64, 29, sub.Get_rank(), "SUM") * (rank + 1)
            want = got.copy()
            sub.Allreduce(MPI.IN_PLACE, want)
            cmpi.all_reduce(got, sub, algorithm=spec)
            checks += expect_equal(got, want, f"split all_reduce {spec} on {sub_layout.node_of}")
    finally:
        sub.Free()
    checks += expect_error(ValueError, ("reduce_scatter", "hierarchical"),
                           lambda: cmpi.reduce_scatter(np.ones(2 * n), np.empty(2), comm, algorithm="hierarchical"),
                           "reduce_scatter hierarchical")
    checks += expect_error(ValueError, ("takes no channels",),
                           lambda: cmpi.all_reduce(np.ones(4), comm, algorithm="recursive_doubling", channels=2),
                           "channels for recursive doubling")
    checks += expect_error(ValueError, ("layout has", f"group has {n}"),
                           lambda: cmpi.all_reduce(np.ones(4), comm, algorithm="ring", layout=Layout.flat(n + 1)),
                           "layout of the wrong size")
    return checks


@case
def user_traffic_is_not_intercepted(comm: MPI.Intracomm) -> int:
    """A pending wildcard receive of the caller's must not swallow the runtime's messages."""
    n, rank = comm.Get_size(), comm.Get_rank()
    mine = np.zeros(1, np.int64)
    pending = comm.Irecv(mine, source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG)
    want = np.arange(100, dtype=np.int64) + rank
    comm.Allreduce(MPI.IN_PLACE, want)
    for algorithm in ALLREDUCE_ALGORITHMS:
        got = np.arange(100, dtype=np.int64) + rank
        cmpi.all_reduce(got, comm, algorithm=algorithm)
        expect_equal(got, want, f"all_reduce {algorithm} with a wildcard receive pending")
    comm.Send(np.array([rank], np.int64), dest=(rank + 1) % n, tag=7)
    pending.Wait()
    assert mine[0] == (rank - 1) % n, f"the caller's own message got {mine[0]}"
    comm.Barrier()  # nobody starts the next case while a wildcard receive is still open
    return len(ALLREDUCE_ALGORITHMS) + 1


@case
def copy_receive_into_a_range_being_sent(comm: MPI.Intracomm) -> int:
    """Schedule semantics: sends read the pre-step state, even when the step also receives there.

    No registered schedule does this today, so a hand-made one: pairs swap their buffers in one step.
    """
    from collectives.plan import RankProgram, RankStep, Transfer

    n, rank = comm.Get_size(), comm.Get_rank()
    peer = rank ^ 1
    count = 1000
    steps = ()
    if peer < n:
        steps = (RankStep(0, sends=(Transfer(peer, 0, count, False),), recvs=(Transfer(peer, 0, count, False),)),)
    plan = cmpi._layout(RankProgram(rank, count, steps, scratch=0))
    assert plan.scratch == (count if steps else 0), f"copy receive over a sent range needs scratch, got {plan.scratch}"
    buf = np.full(count, rank, dtype=np.int32)
    cmpi._execute(cmpi._private_comm(comm), plan, buf, None)  # on the runtime's own communicator, as it runs
    want = np.full(count, peer if peer < n else rank, dtype=np.int32)
    return 1 + expect_equal(buf, want, "pairwise swap in one step")


@case
def buffer_kinds_and_layouts(comm: MPI.Intracomm) -> int:
    import array

    checks = 0
    rank = comm.Get_rank()
    fortran = np.asfortranarray(np.arange(35, dtype=np.float64).reshape(5, 7) + rank)
    want = fortran.copy(order="K")
    comm.Allreduce(MPI.IN_PLACE, want)
    cmpi.all_reduce(fortran, comm, algorithm="ring")
    checks += expect_equal(fortran, want, "Fortran-ordered 2-D array")
    ba = bytearray((np.arange(50) * (rank + 1) % 256).astype(np.uint8).tobytes())
    want = np.frombuffer(bytes(ba), dtype=np.uint8).copy()
    comm.Allreduce(MPI.IN_PLACE, want, op=MPI.BXOR)
    cmpi.all_reduce(ba, comm, op=MPI.BXOR, algorithm="recursive_halving")
    checks += expect_equal(np.frombuffer(bytes(ba), np.uint8), want, "bytearray")
    arr = array.array("d", [rank, 2.0, 3.5])
    want = np.array(arr)
    comm.Allreduce(MPI.IN_PLACE, want, op=MPI.MAX)
    cmpi.all_reduce(arr, comm, op="max", algorithm="recursive_doubling")
    checks += expect_equal(np.array(arr), want, "array.array")
    got = np.arange(1, 6, dtype=np.int64) + rank
    want = got.copy()
    comm.Allreduce(MPI.IN_PLACE, want, op=MPI.PROD)
    cmpi.all_reduce(got, comm, op="product", algorithm="ring")  # torch.distributed's name works too
    checks += expect_equal(got, want, 'op="product"')
    return checks


@case
def auto_reads_tuning_table(comm: MPI.Intracomm) -> int:
    """``auto`` follows COLLSIM_TUNING: one file per collective, joined with the path separator."""
    from collectives.tuning import active_table

    n, rank = comm.Get_size(), comm.Get_rank()
    tables = {
        "allreduce": '{"format": "collsim-tuning/1", "tables": {"1": [[100, "recursive_doubling"], [null, "tree"]]}}',
        "reduce_scatter": '{"format": "collsim-tuning/1", "collective": "reduce_scatter", '
                          '"tables": {"1": [[100, "ring"], [null, "recursive_doubling"]]}}',
    }
    paths = []
    if rank == 0:
        for text in tables.values():
            fd, path = tempfile.mkstemp(suffix=".json")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            paths.append(path)
    paths = comm.bcast(paths)
    os.environ["COLLSIM_TUNING"] = os.pathsep.join(paths)
    checks = 0
    try:
        for collective, nbytes, want in (("allreduce", 64, "recursive_doubling"), ("allreduce", 4096, "tree"),
                                         ("reduce_scatter", 64, "ring"), ("reduce_scatter", 4096, "recursive_doubling"),
                                         ("allgather", 4096, active_table("allgather").choose(n, 4096))):
            got = cmpi.resolve_algorithm(collective, "auto", n, nbytes)
            assert got == want, f"auto for {collective} at {nbytes} B chose {got}, the table says {want}"
            checks += 1
        got = np.arange(300, dtype=np.float64) + rank
        want = got.copy()
        comm.Allreduce(MPI.IN_PLACE, want)
        cmpi.all_reduce(got, comm)
        checks += expect_equal(got, want, "all_reduce auto from a tuning table")
        send = np.arange(300 * n, dtype=np.float64) + rank
        got, want = np.empty(300), np.empty(300)
        comm.Reduce_scatter_block(send, want)
        cmpi.reduce_scatter(send, got, comm)
        checks += expect_equal(got, want, "reduce_scatter auto from a tuning table")
        os.environ["COLLSIM_TUNING"] = paths[0] + ".missing" if paths else "missing.json"
        checks += expect_error(ValueError, ("tuning table",), lambda: cmpi.all_reduce(np.ones(4), comm), "unreadable table")
    finally:
        del os.environ["COLLSIM_TUNING"]
        comm.Barrier()
        for path in paths if rank == 0 else []:
            os.unlink(path)
    return checks


@case
def bad_input_is_refused_clearly(comm: MPI.Intracomm) -> int:
    x = np.ones(10)
    readonly = np.ones(10)
    readonly.setflags(write=False)
    out = np.empty(2)
    cases = [
        (ValueError, ("buf", "non-contiguous"), lambda: cmpi.all_reduce(np.ones(20)[::2], comm)),
        (ValueError, ("buf", "read-only"), lambda: cmpi.all_reduce(readonly, comm)),
        (ValueError, ("buf", "read-only"), lambda: cmpi.all_reduce(b"abcd", comm, op=MPI.BOR)),
        (TypeError, ("buf", "buffer protocol"), lambda: cmpi.all_reduce([1.0, 2.0], comm)),
        (TypeError, ("buf", "dtype"), lambda: cmpi.all_reduce(np.array(["a", "b"]), comm)),
        (TypeError, ("buf", "dtype"), lambda: cmpi.all_reduce(np.ones(3, dtype=">f8"), comm)),
        (TypeError, ("BAND", "float64", "integer"), lambda: cmpi.all_reduce(x, comm, op=MPI.BAND)),
        (TypeError, ("SUM", "bool", "LAND"), lambda: cmpi.all_reduce(np.ones(3, bool), comm)),
        (TypeError, ("MIN", "complex"), lambda: cmpi.all_reduce(np.ones(3, complex), comm, op=MPI.MIN)),
        (ValueError, ("op", "MPI.SUM", "MPI.BXOR"), lambda: cmpi.all_reduce(x, comm, op=MPI.MAXLOC)),
        (ValueError, ("op", "MPI.SUM"), lambda: cmpi.all_reduce(x, comm, op="avg")),
        (ValueError, ("algorithm", "ring", "auto"), lambda: cmpi.all_reduce(x, comm, algorithm="bogus")),
        (ValueError, ("tree", "ring", "recursive_halving"),
         lambda: cmpi.reduce_scatter(np.ones(2 * comm.size), out, comm, algorithm="tree")),
        (ValueError, ("tree", "ring"),
         lambda: cmpi.all_gather(out, np.ones(2 * comm.size), comm, algorithm="tree")),
        (ValueError, ("sendbuf", "recvbuf", "blocks"), lambda: cmpi.reduce_scatter(np.ones(2 * comm.size + 1), out, comm)),
        (TypeError, ("sendbuf", "recvbuf", "dtype"),
         lambda: cmpi.reduce_scatter(np.ones(2 * comm.size, np.float32), out, comm)),
        (ValueError, ("recvbuf", "read-only"), lambda: cmpi.all_gather(x[:1], readonly[: comm.size], comm)),
        (TypeError, ("comm", "communicator"), lambda: cmpi.all_reduce(x, comm=0)),
    ]
    return sum(expect_error(kind, words, fn, f"bad input #{i}") for i, (kind, words, fn) in enumerate(cases))


@case
def ranks_that_disagree_get_the_same_error(comm: MPI.Intracomm) -> int:
    n, rank = comm.Get_size(), comm.Get_rank()
    if n == 1:
        return 0
    last = rank == n - 1
    checks = 0
    checks += expect_error(ValueError, ("count", f"rank {n - 1}: 12"),
                           lambda: cmpi.all_reduce(np.ones(12 if last else 10), comm), "count mismatch")
    checks += expect_error(ValueError, ("dtype",),
                           lambda: cmpi.all_reduce(np.ones(10, np.float32 if last else np.float64), comm), "dtype mismatch")
    checks += expect_error(ValueError, ("op",),
                           lambda: cmpi.all_reduce(np.ones(10), comm, op=MPI.MAX if last else MPI.SUM), "op mismatch")
    checks += expect_error(ValueError, ("algorithm",),
                           lambda: cmpi.all_reduce(np.ones(10), comm, algorithm="tree" if last else "ring"), "algorithm")
    checks += expect_error(ValueError, ("recv count",),
                           lambda: cmpi.reduce_scatter(np.ones(n * (3 if last else 2)), np.empty(3 if last else 2), comm),
                           "reduce_scatter count mismatch")
    readonly = np.ones(10)
    readonly.setflags(write=not last)
    if last:
        checks += expect_error(ValueError, ("buf", "read-only"), lambda: cmpi.all_reduce(readonly, comm), "own refusal")
    else:
        checks += expect_error(ValueError, ("other ranks", f"rank {n - 1}", "read-only"),
                               lambda: cmpi.all_reduce(readonly, comm), "another rank's refusal")
    bad_send = np.ones(n * 2 + int(last))
    checks += expect_error(ValueError, ("sendbuf",), lambda: cmpi.reduce_scatter(bad_send, np.empty(2), comm),
                           "reduce_scatter: one rank's sendbuf does not fit")
    checks += expect_error(ValueError, ("send count",),
                           lambda: cmpi.all_gather(np.ones(2 + int(last)), np.empty(n * (2 + int(last))), comm),
                           "all_gather count mismatch")
    got = np.full(10, rank, np.int64)
    cmpi.all_reduce(got, comm)  # still usable afterwards
    checks += expect_equal(got, np.full(10, n * (n - 1) // 2, np.int64), "all_reduce after refused calls")
    return checks


def torch_tensors(comm: MPI.Intracomm) -> int:
    """CPU tensors in place (no copy), and a clear error for dtypes numpy lacks."""
    assert "torch" not in sys.modules, "collectives.mpi imported torch without being given a tensor"
    import torch

    checks = 0
    rank = comm.Get_rank()
    for dtype in (torch.float32, torch.int64, torch.float16):
        t = torch.arange(37, dtype=dtype) + rank
        t.requires_grad_(dtype.is_floating_point)
        address = t.data_ptr()
        want = t.detach().numpy().copy()
        comm.Allreduce(MPI.IN_PLACE, want)
        for algorithm in ALLREDUCE_ALGORITHMS:
            t2 = (torch.arange(37, dtype=dtype) + rank)
            cmpi.all_reduce(t2, comm, algorithm=algorithm)
            checks += expect_equal(t2.numpy(), want, f"torch {dtype} {algorithm}")
        cmpi.all_reduce(t, comm)
        assert t.data_ptr() == address, "the tensor was replaced"
        checks += expect_equal(t.detach().numpy(), want, f"torch {dtype} requires_grad")
    send = torch.arange(2 * comm.size, dtype=torch.float64)
    recv = torch.empty(2, dtype=torch.float64)
    cmpi.reduce_scatter(send, recv, comm)
    checks += expect_equal(recv.numpy(), send.numpy()[2 * rank:2 * rank + 2] * comm.size, "torch reduce_scatter")
    checks += expect_error(TypeError, ("buf", "bfloat16"), lambda: cmpi.all_reduce(torch.ones(4, dtype=torch.bfloat16), comm),
                           "bfloat16")
    checks += expect_error(ValueError, ("buf", "non-contiguous"), lambda: cmpi.all_reduce(torch.ones(4, 4).t(), comm),
                           "non-contiguous tensor")
    return checks


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", action="store_true", help="also run the torch tensor case (imports torch)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each case's time (rank 0)")
    parser.add_argument("-k", default="", help="run only cases whose name contains one of these (comma-separated)")
    args = parser.parse_args(argv)
    cases = [(name, fn) for name, fn in CASES if any(k in name for k in args.k.split(","))]
    if args.torch:
        cases.append(("torch_tensors", torch_tensors))
    rank, n = WORLD.Get_rank(), WORLD.Get_size()
    checks = 0
    for name, fn in cases:
        start = time.perf_counter()
        try:
            checks += fn(WORLD)
            if rank == 0 and args.verbose:
                print(f"mpi_suite: {name}: {time.perf_counter() - start:.2f}s", flush=True)
        except BaseException:
            sys.stderr.write(f"mpi_suite: rank {rank} of {n}: case {name} FAILED\n{traceback.format_exc()}")
            sys.stderr.flush()
            time.sleep(1.0)  # let mpiexec forward the report before Abort tears the job down
            WORLD.Abort(1)
    total = WORLD.allreduce(checks)
    if rank == 0:
        print(f"mpi_suite: nranks={n} cases={len(cases)} checks={total} passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
