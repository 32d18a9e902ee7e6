"""The torch.distributed runtime against native torch.distributed, on real Gloo process groups.

Each test runs one (world size, collective, algorithm) over every count, dtype and op inside a
reused worker pool (:mod:`_dist_harness`) and reports every failing case by name. Every rank must
end bitwise identical; floats must match ``dist.all_reduce`` within a tolerance, integers exactly.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import queue
import signal
import time
import zlib
from datetime import timedelta

import pytest
from _dist_harness import mp_context, node_environment, pool

WORLD_SIZES = (1, 2, 3, 4, 5, 7, 8)
ALLREDUCE_ALGORITHMS = ("ring", "tree", "recursive_halving", "recursive_doubling", "auto")
BLOCKED_ALGORITHMS = ("ring", "recursive_halving", "recursive_doubling", "auto")
DTYPES = ("float32", "float64", "float16", "bfloat16", "int32", "int64", "uint8")
FLOAT_OPS = ("sum", "product", "min", "max", "avg")
INT_OPS = ("sum", "product", "min", "max", "band", "bor", "bxor")


def counts_for(p: int) -> list[int]:
    return sorted({0, 1, max(p - 1, 0), p, p + 1, 1031, 65539})


def ops_for(dtype: str, collective: str) -> tuple[str, ...]:
    if collective == "allgather":
        return ("copy",)
    return FLOAT_OPS if "float" in dtype else INT_OPS


def matrix_cases(nranks: int, collective: str, dtypes=DTYPES, counts=None) -> list[tuple[int, str, str]]:
    """(count, dtype, op) cases: the full product with COLLSIM_FULL_MATRIX=1, else an all-pairs cover.

    The cover holds every (count, dtype), (dtype, op) and (count, op) pair at least once, which is
    what the runtime's code paths depend on (ranges come from the count, reduction kernels from
    dtype and op) at a quarter of the collectives; the full product is the same code, run longer.
    """
    counts = counts_for(nranks) if counts is None else counts
    if os.environ.get("COLLSIM_FULL_MATRIX") == "1":
        return [(c, d, o) for c in counts for d in dtypes for o in ops_for(d, collective)]
    cases = set()
    for i, count in enumerate(counts):
        for j, dtype in enumerate(dtypes):
            ops = ops_for(dtype, collective)
            cases.add((count, dtype, ops[(i + j) % len(ops)]))
    for i, count in enumerate(counts):
        for k, op in enumerate(dict.fromkeys(o for d in dtypes for o in ops_for(d, collective))):
            if not any(c == count and o == op for c, _, o in cases):
                able = [d for d in dtypes if op in ops_for(d, collective)]
                cases.add((count, able[(i + k) % len(able)], op))
    return sorted(cases)


# ----------------------------------------------------------------------------------------------
# code that runs on the workers

_groups: dict = {}


def _group(ranks):
    import torch.distributed as dist

    if ranks is None:
        return None
    key = tuple(ranks)
    if key not in _groups:
        _groups[key] = dist.new_group(list(ranks))  # collective: every worker calls it
    return _groups[key]


def _input(count: int, dtype_name: str, op: str, seed: int):
    """Values that keep products and sums finite: near 1 for products, small ints where it matters."""
    import torch

    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        if op == "product":
            x = 0.8 + 0.45 * torch.rand(count, generator=g, dtype=torch.float64)
        else:
            x = 0.5 + torch.rand(count, generator=g, dtype=torch.float64)
        return x.to(dtype)
    info = torch.iinfo(dtype)
    if op == "product":
        lo, hi = (0, 4) if info.min == 0 else (-3, 4)
    elif op == "sum":
        lo, hi = max(info.min, -1000), min(info.max, 1000)
    else:
        lo, hi = max(info.min, -(1 << 30)), min(info.max, 1 << 30)
    return torch.randint(lo, hi, (count,), generator=g, dtype=torch.int64).to(dtype)


def _native(collective: str, x, op: str, group, nranks: int):
    """The reference result through native torch.distributed (Gloo has no AVG: SUM, then divide)."""
    import torch.distributed as dist

    from collectives.distributed import _TORCH_OPS

    if collective == "allgather":
        out = x.new_empty(x.numel() * nranks)
        dist.all_gather_into_tensor(out, x, group=group)
        return out
    ref = x.clone()
    dist.all_reduce(ref, op=_TORCH_OPS["sum" if op == "avg" else op], group=group)
    if op == "avg":
        ref = ref / nranks
    if collective == "reduce_scatter":
        m = x.numel() // nranks
        r = dist.get_rank(group)
        ref = ref[r * m:(r + 1) * m]
    return ref


def _compare(got, ref, nranks: int) -> str | None:
    import torch

    if got.dtype.is_floating_point:
        eps = torch.finfo(got.dtype).eps
        try:
            torch.testing.assert_close(got, ref, rtol=2 * nranks * eps, atol=2 * nranks * eps)
        except AssertionError as err:
            return str(err).strip().splitlines()[0] + " " + " ".join(str(err).split("\n")[1:4])
        return None
    if not torch.equal(got, ref):
        bad = (got != ref).nonzero().flatten()
        i = int(bad[0])
        return f"{bad.numel()} elements differ, first at {i}: got {got[i].item()} expected {ref[i].item()}"
    return None


_references: dict = {}


def run_matrix(collective: str, algorithm: str, cases, group_ranks=None, settings=None, layout=None) -> dict:
    """Run the (count, dtype, op) ``cases`` of ``collective`` on this rank; return failures and digests.

    Native results are cached per case, so the reference runs once per world size, not per algorithm.
    ``settings`` overrides runtime or :mod:`collectives.execution` attributes for this call (``SEGMENT_BYTES``: tiny values
    force many lanes; ``BATCH_ON_CPU``: post through ``dist.batch_isend_irecv``, the CUDA path).
    ``layout`` is passed to the collectives (None: the runtime finds it).
    """
    import torch
    import torch.distributed as dist

    import collectives.distributed as runtime
    import collectives.execution as tactics
    from collectives.distributed import all_gather, all_reduce, reduce_scatter

    if settings:
        # the tactics' thresholds live in collectives.execution, the rest in the runtime module
        owner = {name: tactics if hasattr(tactics, name) else runtime for name in settings}
        saved = {name: getattr(owner[name], name) for name in settings}
        for name, value in settings.items():
            setattr(owner[name], name, value)
        try:
            runtime.clear_cache()
            result = run_matrix(collective, algorithm, cases, group_ranks, layout=layout)
            result["max_lanes"] = max((len(plan.lanes) for plan in runtime._cache.values()), default=0)
            result["receipts"] = sum(len(step.receipts) for plan in runtime._cache.values() for lane in plan.lanes
                                     for step in lane)
            return result
        finally:
            for name, value in saved.items():
                setattr(owner[name], name, value)
            runtime.clear_cache()

    group = _group(group_ranks)
    grank = dist.get_rank(group)
    if grank < 0:  # not a member: our collectives must return None at once
        t0 = time.perf_counter()
        x = torch.ones(4)
        results = (all_reduce(x, group=group, algorithm=algorithm),
                   reduce_scatter(x[:1], x, group=group), all_gather(x, x[:1], group=group))
        return {"member": False, "returned": results, "seconds": time.perf_counter() - t0}
    nranks = dist.get_world_size(group)
    failures, digests = [], []
    for count, dtype, op in cases:
        name = f"count={count} dtype={dtype} op={op}"
        total = count * nranks if collective == "reduce_scatter" else count
        seed = zlib.crc32(f"{name} {dist.get_rank()}".encode())
        x = _input(total, dtype, op, seed)
        key = (collective, group_ranks, count, dtype, op)
        try:
            if key not in _references:
                _references[key] = _native(collective, x, op, group, nranks)
            ref = _references[key]
            if collective == "allreduce":
                got = x.clone()
                all_reduce(got, op=op, group=group, algorithm=algorithm, layout=layout)
            elif collective == "reduce_scatter":
                got = x.new_full((count,), 7)
                reduce_scatter(got, x, op=op, group=group, algorithm=algorithm, layout=layout)
                if not torch.equal(x, _input(total, dtype, op, seed)):
                    failures.append(f"{name}: reduce_scatter modified its input")
            else:
                got = x.new_full((count * nranks,), 7)
                all_gather(got, x, group=group, algorithm=algorithm, layout=layout)
        except Exception as err:  # noqa: BLE001 - reported by name; the other ranks see the same
            failures.append(f"{name}: {type(err).__name__}: {err}")
            continue
        problem = _compare(got, ref, nranks)
        if problem:
            failures.append(f"{name}: {problem}")
        if collective != "reduce_scatter":  # reduce_scatter outputs differ by rank by design
            digests.append(hashlib.sha1(got.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest())
    return {"member": True, "rank": grank, "failures": failures, "digests": digests,
            "plans": sorted({plan.algorithm for plan in runtime._cache.values()})}


def run_matrix_on_nodes(env: dict, torchrun_local: int | None, *args, **kwargs) -> dict:
    """:func:`run_matrix` with this rank placed on a node (``_dist_harness.node_environment``)."""
    with node_environment(env, torchrun_local):
        result = run_matrix(*args, **kwargs)
        import collectives.distributed as runtime

        result["layouts"] = sorted({layout.node_of for layout in runtime._layouts.values()})
        return result


# ----------------------------------------------------------------------------------------------
# the matrix


def _check_results(results: list[dict], label: str) -> None:
    members = [r for r in results if r["member"]]
    failures = [f"{label} rank {r['rank']}: {f}" for r in members for f in r["failures"]]
    for r in results:
        if not r["member"]:
            if r["returned"] != (None, None, None):
                failures.append(f"{label}: a non-member got {r['returned']} instead of None")
            if r["seconds"] > 1.0:
                failures.append(f"{label}: a non-member took {r['seconds']:.2f} s to return")
    digests = [r["digests"] for r in members]
    if any(d != digests[0] for d in digests):
        n = sum(1 for i in range(len(digests[0])) if len({d[i] for d in digests}) > 1)
        failures.append(f"{label}: results are not bitwise identical across ranks in {n} cases")
    assert not failures, f"{len(failures)} failing cases:\n" + "\n".join(failures[:40])


CASES = [(p, "allreduce", a) for p in WORLD_SIZES for a in ALLREDUCE_ALGORITHMS] + [
    (p, c, a) for p in WORLD_SIZES for c in ("reduce_scatter", "allgather") for a in BLOCKED_ALGORITHMS
]
CASES.sort(key=lambda case: case[0])  # one pool per world size, reused by consecutive tests


@pytest.mark.parametrize(("nranks", "collective", "algorithm"), CASES, ids=[f"p{p}-{c}-{a}" for p, c, a in CASES])
def test_matches_native(nranks, collective, algorithm):
    results = pool(nranks).run(run_matrix, collective, algorithm, matrix_cases(nranks, collective))
    _check_results(results, f"p={nranks} {collective} {algorithm}")


SMALL_DTYPES = ("float32", "bfloat16", "int64", "uint8")
LANE_CASES = [(p, c, a) for p in (2, 3, 5, 8) for c, a in
              [("allreduce", "ring"), ("allreduce", "tree"), ("allreduce", "recursive_halving"),
               ("allreduce", "recursive_doubling"), ("reduce_scatter", "recursive_halving"), ("allgather", "ring")]]


@pytest.mark.parametrize(("nranks", "collective", "algorithm"), LANE_CASES, ids=[f"p{p}-{c}-{a}" for p, c, a in LANE_CASES])
def test_lanes_match_native(nranks, collective, algorithm):
    """Large CPU buffers run in lanes (segments of every chunk, pipelined): force many with tiny segments."""
    cases = matrix_cases(nranks, collective, dtypes=SMALL_DTYPES, counts=[nranks + 1, 1031])
    results = pool(nranks).run(run_matrix, collective, algorithm, cases, settings={"SEGMENT_BYTES": 64})
    assert all(r["max_lanes"] == 16 for r in results), [r["max_lanes"] for r in results]
    _check_results(results, f"p={nranks} {collective} {algorithm} (lanes)")


PREPOST_CASES = [(p, "allreduce", a) for p in (2, 3, 4) for a in ALLREDUCE_ALGORITHMS] + [
    (4, c, a) for c in ("reduce_scatter", "allgather") for a in BLOCKED_ALGORITHMS
]


@pytest.mark.parametrize(("nranks", "collective", "algorithm"), PREPOST_CASES,
                         ids=[f"p{p}-{c}-{a}" for p, c, a in PREPOST_CASES])
def test_without_posting_ahead_matches_native(nranks, collective, algorithm):
    """Small buffers post receives a step ahead by default; the plain path (``PREPOST_BYTES = 0``) too."""
    cases = matrix_cases(nranks, collective, dtypes=SMALL_DTYPES, counts=[0, 1, nranks + 1, 1031])
    results = pool(nranks).run(run_matrix, collective, algorithm, cases, settings={"PREPOST_BYTES": 0})
    _check_results(results, f"p={nranks} {collective} {algorithm} (receives posted in their own step)")


SWITCH_CASES = [(p, "allreduce", a) for p in (3, 4) for a in ("tree", "recursive_halving", "recursive_doubling")] + [
    (4, c, a) for c in ("reduce_scatter", "allgather") for a in ("recursive_halving", "recursive_doubling")
]


@pytest.mark.parametrize(("nranks", "collective", "algorithm"), SWITCH_CASES,
                         ids=[f"p{p}-{c}-{a}" for p, c, a in SWITCH_CASES])
def test_partner_switches_match_native(nranks, collective, algorithm):
    """With every message large (``SWITCH_BYTES = 8``), a sender whose next step goes elsewhere waits for
    receipts and no receive from a new partner is posted ahead: the results stay right and nothing hangs."""
    cases = matrix_cases(nranks, collective, dtypes=SMALL_DTYPES, counts=[0, 1, nranks + 1, 1031])
    results = pool(nranks).run(run_matrix, collective, algorithm, cases, settings={"SWITCH_BYTES": 8})
    _check_results(results, f"p={nranks} {collective} {algorithm} (partner switches)")
    assert sum(r["receipts"] for r in results) > 0  # (at p = 3 only the rank that unfolds waits for one)


BATCH_CASES = [(p, "allreduce", a) for p in (3, 4) for a in ALLREDUCE_ALGORITHMS] + [
    (4, c, a) for c in ("reduce_scatter", "allgather") for a in BLOCKED_ALGORITHMS
]


@pytest.mark.parametrize(("nranks", "collective", "algorithm"), BATCH_CASES, ids=[f"p{p}-{c}-{a}" for p, c, a in BATCH_CASES])
def test_batch_isend_irecv_path_matches_native(nranks, collective, algorithm):
    """The ``dist.batch_isend_irecv`` posting path (the one CUDA tensors take), with and without lanes."""
    cases = matrix_cases(nranks, collective, dtypes=SMALL_DTYPES, counts=[0, 1, nranks + 1, 1031])
    for segment in (1 << 20, 64):
        results = pool(nranks).run(run_matrix, collective, algorithm, cases,
                                   settings={"BATCH_ON_CPU": True, "SEGMENT_BYTES": segment})
        _check_results(results, f"p={nranks} {collective} {algorithm} (batch_isend_irecv, segment {segment} B)")
    _check_results(results, f"p={nranks} {collective} {algorithm} (lanes)")


SUBGROUP_CASES = [("allreduce", a) for a in ALLREDUCE_ALGORITHMS] + [
    (c, a) for c in ("reduce_scatter", "allgather") for a in BLOCKED_ALGORITHMS
]


@pytest.mark.parametrize(("collective", "algorithm"), SUBGROUP_CASES, ids=[f"{c}-{a}" for c, a in SUBGROUP_CASES])
def test_subgroup_of_three_out_of_five(collective, algorithm):
    """Group ranks [1, 3, 4] of a world of 5: peers translated, non-members return None at once."""
    results = pool(5).run(run_matrix, collective, algorithm, matrix_cases(3, collective), group_ranks=(1, 3, 4))
    assert [r["member"] for r in results] == [False, True, False, True, True]
    _check_results(results, f"group [1, 3, 4] of 5 {collective} {algorithm}")


# two simulated nodes: torchrun's variables (LOCAL_WORLD_SIZE=2 on 4 processes), COLLSIM_LAYOUT, subgroups

TORCHRUN_2X2 = ({}, 2)  # (COLLSIM_* variables, torchrun's --nproc_per_node)
UNEVEN_5 = ({"COLLSIM_LAYOUT": "0,1,0,1,1", "COLLSIM_NICS_PER_NODE": "2"}, None)  # nodes {0, 2} and {1, 3, 4}
NODE_CASES = [
    *((4, TORCHRUN_2X2, "allreduce", a, (0, 0, 1, 1)) for a in
      ("ring", "ring:channels=2", "tree", "tree:channels=2", "hierarchical", "hierarchical:channels=2")),
    *((4, TORCHRUN_2X2, c, "ring:channels=2", (0, 0, 1, 1)) for c in ("reduce_scatter", "allgather")),
    *((5, UNEVEN_5, "allreduce", a, (0, 1, 0, 1, 1)) for a in ("ring", "tree", "hierarchical")),
    (5, UNEVEN_5, "reduce_scatter", "ring", (0, 1, 0, 1, 1)),
]


@pytest.mark.parametrize(("nranks", "placement", "collective", "algorithm", "node_of"), NODE_CASES,
                         ids=[f"p{p}-{'torchrun' if t else 'env'}-{c}-{a}" for p, (_, t), c, a, _ in NODE_CASES])
def test_on_two_nodes_matches_native(nranks, placement, collective, algorithm, node_of):
    """Topology-aware schedules on a layout the runtime finds (torchrun's variables or COLLSIM_LAYOUT)."""
    cases = matrix_cases(nranks, collective, dtypes=SMALL_DTYPES)
    results = pool(nranks).run(run_matrix_on_nodes, *placement, collective, algorithm, cases)
    _check_results(results, f"p={nranks} {placement} {collective} {algorithm}")
    assert all(r["layouts"] == [node_of] for r in results), [r["layouts"] for r in results]


@pytest.mark.parametrize("algorithm", ["hierarchical", "ring:channels=2", "tree"])
def test_subgroup_on_two_nodes(algorithm):
    """Group [1, 3, 4] of 5 ranks on nodes 0,0,1,1,1: the group's layout is (0, 1, 1)."""
    env = {"COLLSIM_LAYOUT": "0,0,1,1,1"}
    results = pool(5).run(run_matrix_on_nodes, env, None, "allreduce", algorithm,
                          matrix_cases(3, "allreduce", dtypes=SMALL_DTYPES), group_ranks=(1, 3, 4))
    _check_results(results, f"group [1, 3, 4] of 5 on 2 nodes, {algorithm}")
    assert all(r["layouts"] == [(0, 1, 1)] for r in results if r["member"])


def test_explicit_layout_argument():
    """``layout=`` skips discovery; ranks placed on nodes out of order (0 and 3 share a node)."""
    from collectives.layout import Layout

    layout = Layout((0, 1, 1, 0), nics_per_node=2)
    for algorithm in ("hierarchical", "ring"):
        results = pool(4).run(run_matrix_on_nodes, {}, None, "allreduce", algorithm,
                              matrix_cases(4, "allreduce", dtypes=SMALL_DTYPES, counts=[0, 5, 1031]), layout=layout)
        _check_results(results, f"explicit layout {layout.node_of}, {algorithm}")
        assert all(r["layouts"] == [] for r in results)  # nothing was discovered


def test_auto_picks_layout_algorithms_from_the_table(tmp_path):
    """A tuning table may name specs with parameters; ``auto`` runs them on the layout it finds."""
    from collectives.tuning import TuningTable

    path = tmp_path / "table.json"
    TuningTable({4: [(1000, "ring:channels=2"), (None, "hierarchical")]}).save(path)
    env = {"COLLSIM_TUNING": str(path)}
    results = pool(4).run(run_matrix_on_nodes, env, 2, "allreduce", "auto",
                          matrix_cases(4, "allreduce", dtypes=("float32", "int64"), counts=[5, 1031]))
    _check_results(results, "auto from a table with specs, torchrun 2x2")
    assert all(r["plans"] == ["hierarchical", "ring:channels=2"] for r in results), [r["plans"] for r in results]


def layout_errors() -> list[str]:
    """Bad layout and channels arguments raise ValueErrors naming the argument."""
    import torch

    from collectives.distributed import all_gather, all_reduce
    from collectives.layout import Layout

    problems = []
    x = torch.ones(8)
    for kwargs, words in [
        ({"layout": Layout.regular(2, 3)}, ["layout has 6 ranks", "group has 4"]),
        ({"layout": [0, 0, 1, 1]}, ["layout must be"]),
        ({"channels": 0}, ["channels must be"]),
        ({"algorithm": "recursive_doubling", "channels": 2}, ["takes no channels"]),
        ({"algorithm": "ring:channels=2", "channels": 3}, ["contradicts"]),
        ({"algorithm": "ring:chanels=2"}, ["chanels", "channels"]),
    ]:
        kwargs.setdefault("algorithm", "ring")
        try:
            all_reduce(x, **kwargs)
        except ValueError as err:
            missing = [w for w in words if w not in str(err)]
            if missing or not str(err).startswith("all_reduce: "):
                problems.append(f"{kwargs}: {err} lacks {missing}")
        else:
            problems.append(f"{kwargs}: no error")
    try:
        all_gather(torch.empty(8), torch.ones(2), algorithm="hierarchical")
    except ValueError as err:
        if "hierarchical" not in str(err) or "ring" not in str(err):
            problems.append(f"all_gather hierarchical: {err}")
    else:
        problems.append("all_gather hierarchical: no error")
    return problems


def test_bad_layout_arguments_raise_clear_errors():
    assert pool(4).run(layout_errors) == [[]] * 4


# ----------------------------------------------------------------------------------------------
# bad input, async, bitwise identity, faults


def bad_inputs() -> list[str]:
    """Each bad call must raise the right exception with a message naming the problem."""
    import torch

    from collectives.distributed import all_gather, all_reduce, reduce_scatter

    problems = []

    def expect(exc, words, call, *args, **kwargs):
        try:
            call(*args, **kwargs)
        except exc as err:
            missing = [w for w in words if w not in str(err)]
            if missing:
                problems.append(f"{call.__name__}{kwargs}: message {str(err)!r} lacks {missing}")
        except Exception as err:  # noqa: BLE001
            problems.append(f"{call.__name__}{kwargs}: raised {type(err).__name__}: {err}, expected {exc.__name__}")
        else:
            problems.append(f"{call.__name__}{kwargs}: did not raise {exc.__name__}")

    x = torch.ones(8)
    expect(ValueError, ["contiguous"], all_reduce, torch.ones(4, 4).t())
    expect(ValueError, ["contiguous"], reduce_scatter, torch.ones(4), torch.ones(4, 2).t())
    expect(TypeError, ["dtype", "uint16", "float32"], all_reduce, torch.ones(4, dtype=torch.uint16))
    expect(TypeError, ["torch.Tensor"], all_reduce, [1.0, 2.0])
    expect(ValueError, ["BAND", "integer"], all_reduce, x, op="band")
    expect(ValueError, ["AVG", "floating"], all_reduce, torch.ones(4, dtype=torch.int32), op="avg")
    expect(ValueError, ["MAX", "complex"], all_reduce, torch.ones(4, dtype=torch.complex64), op="max")
    expect(ValueError, ["PREMUL_SUM", "SUM"], all_reduce, x, op=torch.distributed.ReduceOp.PREMUL_SUM)
    expect(ValueError, ["'bogus'", "ring", "recursive_doubling", "auto"], all_reduce, x, algorithm="bogus")
    expect(ValueError, ["'tree'", "ring", "recursive_halving", "auto"], reduce_scatter, x[:4], x, algorithm="tree")
    expect(ValueError, ["'tree'", "ring", "recursive_halving", "auto"], all_gather, x, x[:4], algorithm="tree")
    expect(ValueError, ["input has 7", "output"], reduce_scatter, torch.ones(4), torch.ones(7))
    expect(ValueError, ["output has 7"], all_gather, torch.ones(7), torch.ones(4))
    expect(ValueError, ["timeout"], all_reduce, x, timeout=-1)
    return problems


def test_bad_input_raises_clear_errors():
    assert pool(2).run(bad_inputs) == [[], []]


def mismatched(kind: str) -> str:
    import torch
    import torch.distributed as dist

    from collectives.distributed import all_reduce

    rank = dist.get_rank()
    if kind == "size":
        x = torch.ones(10 + rank)
    elif kind == "dtype":
        x = torch.ones(10, dtype=torch.float32 if rank == 0 else torch.float64)
    else:
        x = torch.ones(10)
    algorithm = ("ring" if rank == 0 else "recursive_doubling") if kind == "algorithm" else "ring"
    try:
        all_reduce(x, algorithm=algorithm, check=True)
    except ValueError as err:
        return str(err)
    return "no error"


@pytest.mark.parametrize(("kind", "words"), [
    ("size", ["element count", "rank 0: 10", "rank 1: 11"]),
    ("dtype", ["dtype", "float32", "float64"]),
    ("algorithm", ["algorithm", "ring", "recursive_doubling"]),
])
def test_check_detects_mismatch_on_every_rank(kind, words):
    messages = pool(3).run(mismatched, kind)
    for message in messages:
        assert all(w in message for w in words), message


def async_ops() -> list[str]:
    """Several async collectives in flight; wait() in any order; futures carry the tensor."""
    import torch
    import torch.distributed as dist

    from collectives.distributed import CollectiveWork, all_gather, all_reduce, reduce_scatter

    rank, p = dist.get_rank(), dist.get_world_size()
    problems = []
    tensors = [torch.full((1000 + i,), float(rank + i)) for i in range(4)]
    works = [all_reduce(t, algorithm=a, async_op=True)
             for t, a in zip(tensors, ["ring", "tree", "recursive_halving", "recursive_doubling"], strict=True)]
    out = torch.empty(3 * p)
    works.append(all_gather(out, torch.full((3,), float(rank)), async_op=True))
    rs = torch.empty(5)
    works.append(reduce_scatter(rs, torch.ones(5 * p), async_op=True))
    if not all(isinstance(w, CollectiveWork) for w in works):
        problems.append(f"async_op=True returned {works}")
    fut = works[0].get_future()
    for w in reversed(works):
        w.wait()
    base = sum(range(p))
    for i, t in enumerate(tensors):
        if not torch.equal(t, torch.full_like(t, float(base + p * i))):
            problems.append(f"async all_reduce {i} wrong: {t[:3]}")
    if not torch.equal(out, torch.arange(p).repeat_interleave(3).float()):
        problems.append(f"async all_gather wrong: {out}")
    if not torch.equal(rs, torch.full((5,), float(p))):
        problems.append(f"async reduce_scatter wrong: {rs}")
    if fut.wait() is not tensors[0] or not works[0].is_completed():
        problems.append("get_future() does not complete with the tensor")
    # a synchronous call after async ones runs after them
    a = torch.ones(100)
    w = all_reduce(a, async_op=True)
    b = torch.ones(100)
    all_reduce(b)
    w.wait()
    if not (torch.equal(a, torch.full_like(a, p)) and torch.equal(b, torch.full_like(b, p))):
        problems.append("sync after async gave wrong results")
    return problems


def test_async_handles():
    assert pool(3).run(async_ops) == [[], [], []]


def signed_zeros(algorithm: str, op: str) -> str:
    """MIN/MAX of +0.0 and -0.0 (and NaN payloads in SUM) depend on operand order: all ranks must agree."""
    import torch
    import torch.distributed as dist

    from collectives.distributed import all_reduce

    rank = dist.get_rank()
    x = torch.tensor([0.0, -0.0, float("nan"), 1.0] * 4)
    if rank % 2:
        x = -x  # flips signs of zeros and NaN sign bits
        x[2::4] = torch.tensor(float("nan")).view(torch.int32).add(rank).view(torch.float32)  # other payloads
    all_reduce(x, op=op, algorithm=algorithm)
    return hashlib.sha1(x.view(torch.uint8).numpy().tobytes()).hexdigest()


@pytest.mark.parametrize(("nranks", "op"), [(p, op) for p in (2, 3, 4, 5) for op in ("min", "max", "sum")])
def test_bitwise_identical_with_signed_zeros_and_nans(nranks, op):
    digests = pool(nranks).run(signed_zeros, "recursive_doubling", op)
    assert len(set(digests)) == 1, digests


def complex_sum() -> bool:
    import torch
    import torch.distributed as dist

    from collectives.distributed import all_reduce

    rank, p = dist.get_rank(), dist.get_world_size()
    x = torch.full((5,), complex(rank, -rank), dtype=torch.complex64)
    all_reduce(x, op="avg")
    s = sum(range(p)) / p
    return torch.equal(x, torch.full((5,), complex(s, -s), dtype=torch.complex64))


def test_complex_avg():
    assert pool(3).run(complex_sum) == [True, True, True]


def test_extra_memory_ring_is_one_chunk():
    from collectives.distributed import extra_memory

    assert extra_memory("allreduce", "ring", 4, 4 << 20, 4) == (4 << 20)  # one chunk of n/p elements
    assert extra_memory("allreduce", "recursive_doubling", 4, 4 << 20, 4) == 16 << 20
    # buffers up to PREPOST_BYTES post receives a step ahead into a second region: two chunks
    assert extra_memory("allreduce", "ring", 4, 1 << 20, 4) == 2 * (1 << 20)
    assert extra_memory("allreduce", "ring", 3, 10, 8) == 2 * 4 * 8
    assert extra_memory("allreduce", "recursive_doubling", 4, 1000, 4) == 2 * 4000
    assert extra_memory("allreduce", "ring", 4, 1 << 20, 4, device="cuda") == (1 << 20)
    assert extra_memory("allgather", "ring", 4, 1000, 4) == 0


def test_tree_is_allreduce_only():
    from collectives.distributed import algorithms_for

    assert "tree" in algorithms_for("allreduce")
    assert "tree" not in algorithms_for("reduce_scatter")
    assert "tree" not in algorithms_for("allgather")


def test_package_import_stays_light():
    """``import collectives`` must not import torch (the runtime is loaded on first use)."""
    import subprocess
    import sys

    code = "import sys, collectives; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------------------
# a rank dies mid-collective


def _fault_worker(rank: int, nprocs: int, store_path: str, events, timeout: float) -> None:
    import torch
    import torch.distributed as dist

    from collectives.distributed import CollectiveError, all_reduce

    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store_path, nprocs), rank=rank, world_size=nprocs,
                            timeout=timedelta(seconds=120))
    x = torch.ones(1 << 18)
    events.put(("running", rank, time.monotonic()))
    try:
        for _ in range(100000):
            all_reduce(x, algorithm="ring", timeout=timeout)
            x.fill_(1.0)
        events.put(("finished", rank, time.monotonic()))
    except CollectiveError as err:
        events.put(("error", rank, time.monotonic(), str(err)))
    except Exception as err:  # noqa: BLE001
        events.put(("wrong error", rank, time.monotonic(), f"{type(err).__name__}: {err}"))


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_dead_rank_raises_within_timeout(tmp_path, how):
    """Kill (or freeze) one rank while the others are inside ring allreduces: they raise in time.

    SIGKILL closes the victim's sockets (peers see a closed connection); SIGSTOP keeps them open,
    so the survivors are stopped only by the ``timeout`` passed to ``all_reduce``.
    """
    nprocs, victim, timeout = 4, 2, 3.0
    ctx = mp_context()
    events = ctx.Queue()
    procs = [ctx.Process(target=_fault_worker, args=(r, nprocs, str(tmp_path / "store"), events, timeout), daemon=True)
             for r in range(nprocs)]
    for proc in procs:
        proc.start()
    try:
        running = set()
        while len(running) < nprocs:
            running.add(events.get(timeout=60)[1])
        time.sleep(0.5)  # well inside the loop of collectives
        os.kill(procs[victim].pid, getattr(signal, how))
        killed_at = time.monotonic()
        outcomes = {}
        while len(outcomes) < nprocs - 1:
            try:
                event = events.get(timeout=timeout + 20)
            except queue.Empty:
                break
            outcomes[event[1]] = event
        assert set(outcomes) == set(range(nprocs)) - {victim}, f"ranks that never raised: {outcomes}"
        for rank, (kind, _, at, *message) in outcomes.items():
            assert kind == "error", (rank, kind, message)
            assert at - killed_at < timeout + 5.0, f"rank {rank} took {at - killed_at:.1f} s to notice"
            assert "collsim all_reduce (ring) failed on group rank" in message[0], message[0]
        print(f"{how}: " + "; ".join(f"rank {r} after {at - killed_at:.2f} s: {m[0]}" for r, (_, _, at, *m) in outcomes.items()))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(10)


def test_mp_context_is_forkserver():
    assert isinstance(mp_context(), type(mp.get_context("forkserver")))


def test_tuning_table_from_environment(tmp_path, monkeypatch):
    """COLLSIM_TUNING names one file per collective; collectives it does not cover use the built-in table."""
    from collectives.tuning import DEFAULT_TABLES, TuningTable, active_table

    path = tmp_path / "allreduce.json"
    TuningTable({2: [(1024, "tree"), (None, "recursive_halving")]}, source="test").save(path)
    monkeypatch.setenv("COLLSIM_TUNING", str(path))
    table = active_table("allreduce")
    assert table.choose(2, 100) == "tree" and table.choose(3, 1 << 20) == "recursive_halving"
    assert active_table("reduce_scatter") is DEFAULT_TABLES["reduce_scatter"]
    with pytest.raises(ValueError, match="reduce_scatter names algorithm 'tree'"):
        TuningTable({2: [(None, "tree")]}, collective="reduce_scatter")
    monkeypatch.setenv("COLLSIM_TUNING", str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="missing.json"):
        active_table()


def auto_with_table(path: str) -> list[str]:
    """Run auto with COLLSIM_TUNING set on this rank; return the algorithms the cached plans used."""
    import torch

    import collectives.distributed as runtime

    os.environ["COLLSIM_TUNING"] = path
    try:
        runtime.clear_cache()
        for count in (10, 100000):
            x = torch.ones(count)
            runtime.all_reduce(x, algorithm="auto")
            assert torch.equal(x, torch.full_like(x, 3.0))
        return sorted(plan.algorithm for plan in runtime._cache.values())
    finally:
        del os.environ["COLLSIM_TUNING"]
        runtime.clear_cache()


def test_auto_reads_the_tuning_table(tmp_path):
    from collectives.tuning import TuningTable

    path = tmp_path / "table.json"
    TuningTable({3: [(1000, "tree"), (None, "recursive_doubling")]}).save(path)
    assert pool(3).run(auto_with_table, str(path)) == [["recursive_doubling", "tree"]] * 3


# ----------------------------------------------------------------------------------------------
# the main job, end to end


@pytest.mark.parametrize(("nranks", "extra"), [
    (4, []),
    (3, ["--dtype", "int32", "--op", "bxor", "--algorithms", "ring,tree,recursive_halving,recursive_doubling,auto,native"]),
    (2, ["--dtype", "float16", "--op", "avg", "--algorithms", "auto,native"]),
], ids=["p4-float32-sum", "p3-int32-bxor", "p2-float16-avg"])
def test_allreduce_example_under_torchrun(tmp_path, nranks, extra):
    """`torchrun examples/allreduce.py`: nccl-tests table, #wrong 0, summary lines, JSON records."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "allreduce.py"
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nranks}", str(script),
         "-b", "1K", "-e", "64K", "-f", "8", "-n", "2", "-w", "1", "--json", str(out), *extra],
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[2].split() == ["#", "size(B)", "count", "type", "redop", "algorithm", "time(us)",
                                "algbw(GB/s)", "busbw(GB/s)", "#wrong"], lines[:3]
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    algorithms = (extra[extra.index("--algorithms") + 1] if "--algorithms" in extra
                  else "ring,tree,recursive_halving,recursive_doubling,native").split(",")
    assert len(rows) == 3 * len(algorithms) and {r[4] for r in rows} == set(algorithms)
    assert all(r[-1] == "0" for r in rows), proc.stdout
    for r in rows:  # busbw = algbw * 2 (n - 1) / n
        assert float(r[7]) == pytest.approx(float(r[6]) * 2 * (nranks - 1) / nranks, abs=2e-3)
    assert "# Out of bounds values : 0 OK" in proc.stdout
    assert sum(line.startswith("# Avg bus bandwidth") for line in lines) == len(algorithms)
    assert "# Best algorithm per size" in proc.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(rows)
    assert {k for k in records[0]} >= {"source", "collective", "algorithm", "nranks", "size", "count", "dtype",
                                       "op", "time_us", "algbw", "busbw", "wrong"}
    assert {r["source"] for r in records} == {"measured"} and {r["nranks"] for r in records} == {nranks}


def test_allreduce_example_on_two_torchrun_nodes(tmp_path):
    """Two torchrun agents of 2 ranks each (``--nnodes=2``) on this machine: the runtime finds 2 nodes
    from torchrun's variables and runs the topology-aware algorithms; every result checked against native.

    Deliberately slow (two agents start four ranks and rendezvous: 15-50 s on 2 cores): the only test
    of the real torchrun placement, which the pool tests imitate with the same variables.
    """
    import socket
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "allreduce.py"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    algorithms = "ring:channels=2,tree,hierarchical,native"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("COLLSIM_LAYOUT", "COLLSIM_RANKS_PER_NODE", "COLLSIM_NICS_PER_NODE"):
        env.pop(name, None)
    agents = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}", "--nproc_per_node=2",
             "--master_addr=127.0.0.1", f"--master_port={port}", str(script), "-b", "4K", "-e", "256K", "-f", "64",
             "-n", "2", "-w", "1", "--algorithms", algorithms],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for node in (0, 1)
    ]
    try:
        outputs = [agent.communicate(timeout=240) for agent in agents]
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
    assert [a.returncode for a in agents] == [0, 0], outputs
    stdout = outputs[0][0]
    assert "layout 2x2 ranks" in stdout.splitlines()[0], stdout
    rows = [line.split() for line in stdout.splitlines() if line.strip()[:1].isdigit()]
    assert {r[4] for r in rows} == set(algorithms.split(",")) and len(rows) == 2 * 4
    assert all(r[-1] == "0" for r in rows), stdout
