"""Run collsim schedules over ``torch.distributed``: ``all_reduce``, ``reduce_scatter``, ``all_gather``.

The three collectives have ``torch.distributed``'s signatures and semantics (in place, same ops, same
process groups, ``async_op`` handles), plus an ``algorithm`` argument naming the schedule to run
(:data:`collectives.algorithms.ALGORITHMS` or ``"auto"``, which reads the tuning table of
:mod:`collectives.tuning`). The same code runs CPU tensors over Gloo and CUDA tensors over NCCL.

Layouts and channels
--------------------
Algorithms that follow the hardware (``ring``, ``tree``, ``hierarchical``: those whose generator
takes a layout) run on the group's :class:`collectives.layout.Layout`, which ranks share a node.
The runtime finds it once per group, the first time such an algorithm runs on it
(:func:`find_layout`):

1. ``COLLSIM_LAYOUT`` (a node label per world rank, ``0,0,1,1``) or ``COLLSIM_RANKS_PER_NODE``
   (``2``: consecutive world ranks in twos), if set: no communication; this is how a test
   simulates several nodes on one machine;
2. otherwise one all-gather over the group of each rank's torchrun node (``GROUP_RANK``, set by
   ``torchrun`` with ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``) and host name: ranks share a node when
   torchrun says so, or else when their host names are equal.

A subgroup's layout is the world layout restricted to its members, in group rank order. An
explicit ``layout=`` argument (a ``Layout`` of the group's size, group-local ranks) skips discovery.
``COLLSIM_NICS_PER_NODE`` (default 1) sets ``nics_per_node``; ``channels="auto"`` (the default)
runs that many channels, ``channels=k`` runs ``k``. The ``algorithm`` argument may also carry
parameters as an algorithm spec, ``"ring:channels=2"`` or ``"hierarchical:outer=recursive_doubling"``
(:func:`collectives.plan.parse_algorithm`); tuning tables use the same text. reduce_scatter and
all_gather run a layout's schedule only when it is rank-blocked (block ``r`` on rank ``r``), and
say so otherwise.

Ranks
-----
Every rank in this module is **group-local**: a position ``0 .. p-1`` in ``group``, as
``dist.get_rank(group)`` returns it; schedules are written in those ranks. When a plan is compiled
the peers are translated once to global ranks with ``dist.get_global_rank(group, r)`` for the
``P2POp`` objects. A process that is not a member of ``group`` returns ``None`` at once, as torch does.

Execution
---------
A schedule is compiled once per (group, collective, algorithm, count, dtype, device) into this rank's
program (:func:`collectives.plan.program_for`: per step, sends and receives as element ranges of the
flat buffer) and cached with a preallocated scratch tensor. Each step is one
``dist.batch_isend_irecv``: receives are posted first, copy-receives land directly in their slice
of the buffer, reduce-receives land in a slice of the scratch tensor, sends read slices of the
buffer; after the step's waits the received slices are reduced into the buffer in place. There is
no allocation and no host sync per step beyond the step's own waits.

Three tactics go beyond the schedule's steps; all are decided in :mod:`collectives.execution`,
which the simulator reads too, so the model costs what runs:

* Small CPU buffers (at most :data:`collectives.execution.PREPOST_BYTES`) post each step's
  receives one step ahead, while the step before is still in flight, whenever they land where that
  step does not touch: in Gloo a send whose receive is already posted goes straight out, one
  handshake fewer per step (consecutive steps take tags 0 and 1, and their reduce-receives two
  scratch regions).
* Large CPU buffers (chunks of at least two :data:`collectives.execution.SEGMENT_BYTES` segments)
  run in *lanes*: every chunk is cut into up to :data:`collectives.execution.MAX_LANES` segments
  and lane ``j`` executes the schedule on segment ``j`` of every chunk, one post per (step, lane),
  with tag ``j``. Reductions are elementwise, so lanes are independent: a lane posts its next step
  as soon as its current one is reduced, and reducing one lane overlaps the other lanes' transfers
  (as Gloo's own ring overlaps its segments). Every rank completes (step, lane) pairs in the same
  order, so no wait depends on a message posted later. CUDA tensors always use one lane (NCCL
  pipelines inside each transfer); do not run your own tagged Gloo point-to-point on the group
  concurrently with a collsim collective.
* Where partners change, one-lane CPU messages of at least
  :data:`collectives.execution.SWITCH_BYTES` do not share a link with the next partner's: a rank
  posts no receive ahead from a sender it does not receive from now, and a sender whose next step
  adds a partner waits for a *receipt*: the receiver answers with one element (tag
  :data:`RECEIPT_TAG`) once its receives of the step are done. A Gloo send is done when the kernel
  holds its bytes, so without it the next partner would share the link with the bytes the old
  partner still waits for.

When two ranks reduce the same pair of values (recursive doubling exchanges whole buffers), both
compute ``op(lower rank's value, higher rank's value)``: ``torch.minimum(0.0, -0.0)`` and NaN
payloads depend on operand order, so ordering the operands by rank keeps every rank's result
bitwise identical. The other algorithms reduce every chunk on one owner and copy it to the rest,
which makes the results identical by construction.

Extra memory (elements, for a buffer of ``n`` elements on ``p`` ranks):

================== ======================================= =====================================
algorithm          all_reduce scratch                      notes
================== ======================================= =====================================
ring               ``ceil(n / p)`` (one chunk)
tree               ``<= 2 * ceil(n / (2 * segments))``      two children's segments per step
recursive_halving  ``n / 2`` (``n`` when ``p`` is not 2^k)  the fold step receives the whole buffer
recursive_doubling ``n``                                    whole-vector exchange
================== ======================================= =====================================

CPU buffers of at most :data:`collectives.execution.PREPOST_BYTES` (receives posted a step ahead) use twice these.
``reduce_scatter`` additionally keeps a work copy of ``input`` (``p * m`` elements: the schedule
reduces in place and ``input`` must stay untouched); ``all_gather`` into a tensor needs nothing
extra (copy-only schedule, run in ``output``), into a list it keeps one ``p * m`` work buffer.
:func:`extra_memory` computes these numbers. Buffers are cached (at most :data:`CACHE_SIZE` plans);
:func:`clear_cache` frees them.

Ops
---
SUM, PRODUCT, MIN, MAX, AVG, BAND, BOR, BXOR as ``dist.ReduceOp`` values (or their names as
strings). As in torch: bitwise ops need integer or bool tensors; AVG (computed as SUM, then one
division by ``p``) needs floating point or complex tensors; complex tensors allow SUM and AVG only
(they run as real tensors of twice the length); PREMUL_SUM is not supported.

Async
-----
With ``async_op=True`` a CPU collective runs on one background worker thread per process (a FIFO:
collectives run in the order they were issued; a later synchronous call first waits for the pending
ones) and returns a :class:`CollectiveWork` whose ``wait()`` blocks until it is done and re-raises
its error. A CUDA collective is enqueued on the calling thread (NCCL and the reductions are already
asynchronous with respect to the host; ``wait()`` returns at once, like torch's NCCL ``Work.wait``).

Faults
------
A failure in a step (a dead peer, a timeout) raises :class:`CollectiveError` naming the collective,
algorithm, rank and step. ``timeout`` bounds every step's wait; without it the process group's
timeout (``init_process_group(timeout=...)``) applies. After such an error the process group should
be treated as broken.

Examples
--------
Under ``torchrun --nproc_per_node=2`` with ``dist.init_process_group("gloo")``::

    >>> from collectives.distributed import all_reduce
    >>> t = torch.full((4,), float(dist.get_rank()))   # rank 0: [0, 0, 0, 0]; rank 1: [1, 1, 1, 1]
    >>> all_reduce(t, algorithm="ring")
    >>> t                                              # rank 0 and rank 1
    tensor([1., 1., 1., 1.])
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import os
import socket
import threading
import zlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from collectives import execution
from collectives.algorithms import ALGORITHMS, get_schedule
from collectives.layout import Layout
from collectives.plan import (
    blocked_params,
    check_layout,
    format_algorithm,
    labels_from_env,
    layout_of_ranks,
    nics_from_env,
    parse_algorithm,
    program_for,
    run_params,
    runnable_algorithms,
    takes_layout,
)
from collectives.schedule import chunk_offsets
from collectives.tuning import active_table

__all__ = [
    "OPS",
    "DTYPES",
    "CACHE_SIZE",
    "BATCH_ON_CPU",
    "CollectiveError",
    "CollectiveWork",
    "algorithms_for",
    "find_layout",
    "all_reduce",
    "reduce_scatter",
    "all_gather",
    "extra_memory",
    "clear_cache",
]

#: Op names in torch's order; ``dist.ReduceOp.<NAME>`` or the name (any case) selects one.
OPS = ("sum", "avg", "product", "min", "max", "band", "bor", "bxor")

#: Tensor dtypes the runtime accepts.
DTYPES = (
    torch.float32, torch.float64, torch.float16, torch.bfloat16,
    torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool,
    torch.complex64, torch.complex128,
)

#: Cached plans (compiled program + scratch and work buffers) kept per process.
CACHE_SIZE = 64

_BITWISE = ("band", "bor", "bxor")
_REDUCE_FNS = {
    "sum": torch.add, "avg": torch.add, "product": torch.mul, "min": torch.minimum, "max": torch.maximum,
    "band": torch.bitwise_and, "bor": torch.bitwise_or, "bxor": torch.bitwise_xor,
}
_TORCH_OPS = {
    "sum": dist.ReduceOp.SUM, "avg": dist.ReduceOp.AVG, "product": dist.ReduceOp.PRODUCT,
    "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX, "band": dist.ReduceOp.BAND,
    "bor": dist.ReduceOp.BOR, "bxor": dist.ReduceOp.BXOR,
}


class CollectiveError(RuntimeError):
    """A collective that failed while running (dead peer, timeout, transport error)."""


def algorithms_for(collective: str) -> tuple[str, ...]:
    """Algorithms that implement ``collective`` with torch semantics (plus ``"auto"``).

    The tree's reduce_scatter/allgather halves reduce onto / broadcast from two roots; their blocks
    are not rank-blocked, so they are allreduce-only here, as is ``hierarchical``
    (:func:`collectives.plan.runnable_algorithms`).
    """
    return (*runnable_algorithms(collective), "auto")


# ---------------------------------------------------------------------------------------------
# validation


_OP_NAMES = {value: name for name, value in _TORCH_OPS.items()}


def _op_name(op: Any) -> str:
    if isinstance(op, str):
        name = op.lower()
        if name in OPS:
            return name
    else:
        try:
            return _OP_NAMES[op]
        except (KeyError, TypeError):
            pass
        for name, value in _TORCH_OPS.items():
            try:
                if op == value:
                    return name
            except TypeError:
                break
    raise ValueError(
        f"op {op!r} is not supported; choose from: {', '.join(n.upper() for n in OPS)} (dist.ReduceOp or name)"
    )


def _check_tensor(tensor: Any, name: str, fn: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype not in DTYPES:
        allowed = ", ".join(str(d).removeprefix("torch.") for d in DTYPES)
        raise TypeError(f"{fn}: {name} has unsupported dtype {tensor.dtype}; supported: {allowed}")
    if not tensor.is_contiguous():
        raise ValueError(
            f"{fn}: {name} must be contiguous (shape {tuple(tensor.shape)}, stride {tensor.stride()}); "
            "pass tensor.contiguous() and copy the result back"
        )
    if tensor.is_sparse:
        raise ValueError(f"{fn}: {name} must be a dense tensor")
    return tensor


def _check_op_dtype(op: str, dtype: torch.dtype, fn: str) -> None:
    if op in _BITWISE and (dtype.is_floating_point or dtype.is_complex):
        raise ValueError(f"{fn}: op {op.upper()} needs an integer or bool tensor, got {dtype}")
    if op == "avg" and not (dtype.is_floating_point or dtype.is_complex):
        raise ValueError(f"{fn}: op AVG needs a floating point or complex tensor, got {dtype} (use SUM)")
    if dtype.is_complex and op not in ("sum", "avg"):
        raise ValueError(f"{fn}: op {op.upper()} is not supported for complex tensors ({dtype}); use SUM or AVG")


def _resolve_algorithm(algorithm: str, collective: str, nranks: int, nbytes: int, fn: str) -> tuple[str, dict]:
    """(registered name, spec parameters) of ``algorithm`` (a spec, or ``"auto"``: the table's spec)."""
    allowed = algorithms_for(collective)
    name = algorithm.partition(":")[0].strip() if isinstance(algorithm, str) else algorithm
    if name not in allowed or (name == "auto" and algorithm != "auto"):
        extra = ""
        if name == "tree":
            extra = " (the tree's halves reduce onto two roots, they are not rank-blocked)"
        raise ValueError(f"{fn}: algorithm {algorithm!r} is not available{extra}; choose from: {', '.join(allowed)}")
    if algorithm == "auto":
        algorithm = active_table(collective).choose(nranks, nbytes)
        if algorithm.partition(":")[0] not in allowed:
            raise ValueError(f"{fn}: the tuning table chose {algorithm!r}, which cannot run {collective}")
    try:
        return parse_algorithm(algorithm)
    except ValueError as err:
        raise ValueError(f"{fn}: {err}") from None


def _as_timedelta(timeout: float | timedelta | None) -> timedelta | None:
    if timeout is None or isinstance(timeout, timedelta):
        return timeout
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be positive seconds or a timedelta, got {timeout!r}")
    return timedelta(seconds=float(timeout))


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor as a 1-D view; complex tensors as their real and imaginary parts."""
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor)
    return tensor.view(-1)


# ---------------------------------------------------------------------------------------------
# plans


#: Post CPU steps through ``dist.batch_isend_irecv`` (True) or straight on the group (False, faster).
BATCH_ON_CPU = False
#: Tag of receipts (one-lane plans, whose steps use tags 0 and 1).
RECEIPT_TAG = 2


@dataclass(frozen=True)
class _Step:
    index: int
    sends: tuple[tuple[int, int, int], ...]  # (group peer, lo, hi)
    recvs: tuple[tuple[int, int, int, int], ...]  # (group peer, lo, hi, scratch offset or -1 for copy)
    reduces: tuple[tuple[int, int, int, bool], ...]  # (lo, hi, scratch offset, peer's operand first)
    receipts: tuple[int, ...] = ()  # group peers whose receipt the next step waits for
    confirms: tuple[int, ...] = ()  # group peers to send a receipt to once the step's receives are done


@dataclass(frozen=True)
class _Plan:
    algorithm: str
    lanes: tuple[tuple[_Step, ...], ...]  # per lane, this rank's steps in schedule order
    to_global: tuple[int, ...]  # group rank -> global rank
    scratch: torch.Tensor | None
    work: torch.Tensor | None  # reduce_scatter input copy / all_gather list workspace
    ahead: tuple[bool, ...] | None = None  # one lane: may step k + 1's receives be posted during step k
    receipt: torch.Tensor | None = None  # one lane with receipts: two elements, [0] receives them, [1] sends them


_cache: collections.OrderedDict[tuple, _Plan] = collections.OrderedDict()
_cache_lock = threading.Lock()
_layouts: dict[tuple, Layout] = {}  # (group name, size, environment) -> layout found
_initialized_nccl: set[str] = set()


def clear_cache() -> None:
    """Drop every cached plan and its scratch buffers, and the layouts found (call it on every rank)."""
    with _cache_lock:
        _cache.clear()
        _layouts.clear()


def _group_name(group: dist.ProcessGroup | None) -> str:
    pg = group if group is not None else dist.group.WORLD
    return pg.group_name


def _pieces(lo: int, hi: int, offsets, nlanes: int) -> list[list[tuple[int, int]]]:
    """Cut the chunks inside ``[lo, hi)`` into ``nlanes`` segments each; lane j gets segment j of each."""
    lanes: list[list[tuple[int, int]]] = [[] for _ in range(nlanes)]
    first = int(np.searchsorted(offsets, lo, side="left"))
    for c in range(first, len(offsets) - 1):
        a, b = int(offsets[c]), int(offsets[c + 1])
        if a >= hi:
            break
        if b <= a:
            continue
        cuts = chunk_offsets(b - a, nlanes) + a
        for j in range(nlanes):
            x, y = int(cuts[j]), int(cuts[j + 1])
            if y > x:
                if lanes[j] and lanes[j][-1][1] == x:
                    lanes[j][-1] = (lanes[j][-1][0], y)
                else:
                    lanes[j].append((x, y))
    return lanes


def _plan(collective: str, algorithm: str, params: tuple, label: str, group, rank: int, nranks: int, count: int,
          dtype: torch.dtype, device: torch.device, need_work: bool) -> _Plan:
    key = (_group_name(group), collective, algorithm, params, count, dtype, device, need_work,
           execution.SEGMENT_BYTES, execution.PREPOST_BYTES, execution.SWITCH_BYTES, BATCH_ON_CPU)
    with _cache_lock:
        plan = _cache.get(key)
        if plan is not None:
            _cache.move_to_end(key)
            return plan
    program = program_for(collective, algorithm, nranks, rank, count, params)
    schedule = get_schedule(collective, algorithm, nranks, **dict(params))
    nlanes = execution.lanes(schedule.nchunks, count, dtype.itemsize, device.type)
    offsets = schedule.chunk_offsets(count)
    pg = group if group is not None else dist.group.WORLD
    to_global = [dist.get_global_rank(pg, r) for r in range(nranks)]

    # per lane and step: (sends, recvs, reduces) with scratch offsets relative to the lane's region
    raw: list[list[tuple]] = [[] for _ in range(nlanes)]
    for rs in program.steps:
        per_lane = [([], [], [], 0) for _ in range(nlanes)]
        for t in rs.sends:
            for j, pieces in enumerate(_pieces(t.lo, t.hi, offsets, nlanes)):
                per_lane[j][0].extend((t.peer, x, y) for x, y in pieces)
        for t in rs.recvs:
            for j, pieces in enumerate(_pieces(t.lo, t.hi, offsets, nlanes)):
                sends, recvs, reduces, used = per_lane[j]
                for x, y in pieces:
                    if t.reduce:
                        recvs.append((t.peer, x, y, used))
                        reduces.append((x, y, used, t.peer < rank))
                        used += y - x
                    else:
                        recvs.append((t.peer, x, y, -1))
                per_lane[j] = (sends, recvs, reduces, used)
        for j, (sends, recvs, reduces, used) in enumerate(per_lane):
            if sends or recvs:
                raw[j].append((rs.index, sends, recvs, reduces, used))
    # lane j's scratch region starts after the largest reductions of lanes 0 .. j-1; a plan whose
    # receives go out a step ahead alternates its steps between two regions of that size
    sizes = [max((used for *_, used in steps), default=0) for steps in raw]
    prepost = execution.posts_ahead(count * dtype.itemsize, device.type, nlanes)
    shift = sizes[0] if prepost else 0
    base = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
    receipted = (execution.receipts(schedule, count, dtype.itemsize)
                 if nlanes == 1 and device.type == "cpu" and not BATCH_ON_CPU else None)

    def peers(index: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """This rank's receipts to wait for and to send in step ``index`` (sorted group ranks)."""
        mask = receipted[index] if receipted is not None else None
        if mask is None or not mask.any():
            return (), ()
        step = schedule.make_step(index)
        src, dst = step.src[mask], step.dst[mask]
        return (tuple(sorted(set(dst[src == rank].tolist()))), tuple(sorted(set(src[dst == rank].tolist()))))

    lanes = tuple(
        tuple(
            _Step(index, tuple(sends),
                  tuple((q, x, y, off + base[j] + (k % 2) * shift if off >= 0 else -1) for q, x, y, off in recvs),
                  tuple((x, y, off + base[j] + (k % 2) * shift, first) for x, y, off, first in reduces),
                  *peers(index))
            for k, (index, sends, recvs, reduces, _) in enumerate(steps)
        )
        for j, steps in enumerate(raw)
    )
    nscratch = base[-1] + shift
    scratch = torch.empty(nscratch, dtype=dtype, device=device) if nscratch else None
    work = torch.empty(count, dtype=dtype, device=device) if need_work else None
    ahead = execution.rank_ahead(program, dtype.itemsize) if prepost else None
    receipt = torch.zeros(2, dtype=dtype, device=device) if receipted is not None else None
    plan = _Plan(label, lanes, tuple(to_global), scratch, work, ahead, receipt)
    with _cache_lock:
        _cache[key] = plan
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return plan


def extra_memory(collective: str, algorithm: str, nranks: int, count: int, itemsize: int, rank: int = 0,
                 device: str = "cpu", *, layout: Layout | None = None, channels: int | str | None = None) -> int:
    """Bytes of scratch ``rank`` allocates to run ``collective`` on a buffer of ``count`` elements.

    ``count`` is the full buffer (for reduce_scatter the input, for all_gather the output). The
    work copy reduce_scatter keeps of its input is included. (Lanes reuse one region each, so the
    total stays the per-step maximum up to rounding.) CPU buffers of at most :data:`collectives.execution.PREPOST_BYTES`
    post their receives a step ahead into a second region, which doubles their scratch.
    ``algorithm`` may be a spec (``"ring:channels=2"``); ``layout`` and ``channels`` as in
    :func:`all_reduce` (no layout: flat).
    """
    nbytes = count * itemsize
    name, spec = parse_algorithm(algorithm)
    params = run_params(name, spec, nranks, nbytes, layout=layout, channels=channels)
    algorithm = name
    scratch = program_for(collective, algorithm, nranks, rank, count, params).scratch
    nchunks = get_schedule(collective, algorithm, nranks, **dict(params)).nchunks
    if execution.posts_ahead(nbytes, device, execution.lanes(nchunks, count, itemsize, device)):
        scratch *= 2
    work = count if collective == "reduce_scatter" else 0
    return (scratch + work) * itemsize


def _fail(plan: _Plan, step: _Step, err: Exception, what: str, rank: int, nranks: int) -> CollectiveError:
    peers = sorted({plan.to_global[p] for p, *_ in step.sends} | {plan.to_global[p] for p, *_ in step.recvs})
    text = str(err).strip()
    return CollectiveError(
        f"collsim {what} ({plan.algorithm}) failed on group rank {rank} of {nranks} "
        f"(global rank {dist.get_rank()}) in step {step.index} with global peers {peers}: "
        f"{text.splitlines()[0] if text else type(err).__name__}"
    )


def _execute(plan: _Plan, buf: torch.Tensor, op: str, group, timeout: timedelta | None,
             what: str, rank: int, nranks: int) -> None:
    """Run ``plan`` on the flat buffer ``buf`` in place.

    With one lane: per step post the step's receives and sends, wait, reduce. On CUDA the posts are
    one ``dist.batch_isend_irecv`` of ``P2POp`` objects (NCCL coalesces them into one group call). On
    CPU (Gloo, which does not coalesce: ``batch_isend_irecv`` is a loop of ``isend``/``irecv``) the
    same receives and sends are issued straight on the process group, ``group.recv``/``group.send``
    with group ranks, which skips about 0.1 ms of Python argument checking per step (set
    :data:`BATCH_ON_CPU` to use ``batch_isend_irecv`` there too). A plan with ``ahead`` (small CPU
    buffers) posts step ``k + 1``'s receives right after step ``k``'s sends when ``ahead[k]``
    allows it, and otherwise right after step ``k`` is reduced; a batch (CUDA) posts a step's
    receives with its sends, so nothing goes ahead there. A step with ``receipts`` (one lane, CPU,
    large messages whose sender next sends elsewhere: :func:`collectives.execution.receipts`) posts
    a one-element receive per such peer before its sends, and its receivers answer as soon as
    their receives of the step are done; the sender reduces, then waits for the receipts before
    its next step. With several lanes (large
    CPU buffers) the chunks are cut into segments and lane ``j`` runs the schedule on segment ``j``
    of every chunk: lanes are independent (reductions are elementwise), so lane ``j``'s next step
    is posted as soon as its current one is reduced, and reducing one lane overlaps the transfers
    of the others (what Gloo's own ring does with its segments). Lane ``j`` uses tag ``j``; every
    rank completes (step, lane) pairs in the same order, so nothing can wait on a message that is
    posted later.
    """
    reduce_fn = _REDUCE_FNS[op]
    scratch = plan.scratch
    lanes = plan.lanes

    # receives are posted first: a message that arrives finds its buffer posted
    if buf.device.type != "cpu" or BATCH_ON_CPU:
        isend, irecv, P2POp, to_global = dist.isend, dist.irecv, dist.P2POp, plan.to_global

        def post(step: _Step, tag: int) -> list:
            ops = [P2POp(irecv, buf[lo:hi] if off < 0 else scratch[off:off + hi - lo], to_global[peer], group, tag)
                   for peer, lo, hi, off in step.recvs]
            ops.extend(P2POp(isend, buf[lo:hi], to_global[peer], group, tag) for peer, lo, hi in step.sends)
            return dist.batch_isend_irecv(ops)

        def post_recvs(step: _Step, tag: int) -> list:
            return []  # one batch carries a step's receives together with its sends

        post_sends = post
    else:
        pg = group if group is not None else dist.group.WORLD
        recv, send = pg.recv, pg.send

        def post_recvs(step: _Step, tag: int) -> list:
            return [recv([buf[lo:hi] if off < 0 else scratch[off:off + hi - lo]], peer, tag)
                    for peer, lo, hi, off in step.recvs]

        def post_sends(step: _Step, tag: int) -> list:
            return [send([buf[lo:hi]], peer, tag) for peer, lo, hi in step.sends]

        def post(step: _Step, tag: int) -> list:
            return post_recvs(step, tag) + post_sends(step, tag)

    def wait(works: list) -> None:
        for work in works:
            if timeout is None:
                work.wait()
            else:
                work.wait(timeout)

    def finish(step: _Step, works: list, receipts: list = ()) -> None:
        if step.confirms:  # receipts go out as soon as the step's receives are done
            nrecv = len(step.recvs)
            wait(works[:nrecv])
            confirms = [send([plan.receipt[1:]], peer, RECEIPT_TAG) for peer in step.confirms]
            wait(works[nrecv:])
        else:
            wait(works)
        for lo, hi, off, peer_first in step.reduces:
            mine, theirs = buf[lo:hi], scratch[off:off + hi - lo]
            if peer_first:
                reduce_fn(theirs, mine, out=mine)
            else:
                reduce_fn(mine, theirs, out=mine)
        wait(receipts)
        if step.confirms:
            wait(confirms)

    if len(lanes) == 1:
        # step k + 1's receives go out during step k where the plan allows it (``ahead``), else
        # once step k is reduced; consecutive steps alternate tags 0 and 1
        steps, ahead = lanes[0], plan.ahead or ()
        step = steps[0] if steps else None
        try:
            recvs = post_recvs(step, step.index & 1) if steps else []
            for k, step in enumerate(steps):
                # a receipt's receive is posted before the sends it answers
                receipts = [recv([plan.receipt[:1]], peer, RECEIPT_TAG) for peer in step.receipts]
                works = recvs + post_sends(step, step.index & 1)
                following = steps[k + 1] if k + 1 < len(steps) else None
                early = following is not None and k < len(ahead) and ahead[k]
                if early:
                    recvs = post_recvs(following, following.index & 1)
                finish(step, works, receipts)
                if following is not None and not early:
                    recvs = post_recvs(following, following.index & 1)
        except RuntimeError as err:
            raise _fail(plan, step, err, what, rank, nranks) from err
        return

    nexts = [0] * len(lanes)
    posted: list = [None] * len(lanes)
    order = sorted({step.index for steps in lanes for step in steps})
    step = lanes[0][0] if lanes[0] else None
    try:
        for j, steps in enumerate(lanes):
            if steps:
                step = steps[0]
                posted[j] = post(step, j)
        for index in order:
            for j, steps in enumerate(lanes):
                k = nexts[j]
                if k < len(steps) and steps[k].index == index:
                    step = steps[k]
                    finish(step, posted[j])
                    nexts[j] = k + 1
                    if k + 1 < len(steps):
                        step = steps[k + 1]
                        posted[j] = post(step, j)
    except RuntimeError as err:
        raise _fail(plan, step, err, what, rank, nranks) from err


# ---------------------------------------------------------------------------------------------
# async handles


class CollectiveWork:
    """Handle of an ``async_op=True`` collective: ``wait()``, ``is_completed()``, ``get_future()``.

    ``wait()`` blocks until the collective has finished and re-raises its error
    (:class:`CollectiveError`, or the error of a bad call); it returns True, like torch's ``Work``.
    """

    def __init__(self, future: concurrent.futures.Future, result: Any = None):
        self._future = future
        self._result = result
        self._torch_future: torch.futures.Future | None = None
        self._lock = threading.Lock()

    def wait(self, timeout: float | timedelta | None = None) -> bool:
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        try:
            self._future.result(timeout=seconds)
        except concurrent.futures.TimeoutError:
            raise CollectiveError(f"collsim collective still running after {seconds} s") from None
        return True

    def is_completed(self) -> bool:
        return self._future.done()

    def exception(self) -> BaseException | None:
        return self._future.exception() if self._future.done() else None

    def get_future(self) -> torch.futures.Future:
        """A ``torch.futures.Future`` completed with the result tensor (as DDP comm hooks need)."""
        with self._lock:
            if self._torch_future is None:
                fut: torch.futures.Future = torch.futures.Future()
                self._torch_future = fut

                def done(f: concurrent.futures.Future) -> None:
                    err = f.exception()
                    if err is not None:
                        fut.set_exception(err)
                    else:
                        fut.set_result(self._result)

                self._future.add_done_callback(done)
            return self._torch_future


_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_last_async: concurrent.futures.Future | None = None


def _submit(fn, result) -> CollectiveWork:
    global _executor, _last_async
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="collsim")
        future = _executor.submit(fn)
        _last_async = future
    return CollectiveWork(future, result)


def _done(result) -> CollectiveWork:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(None)
    return CollectiveWork(future, result)


def _drain() -> None:
    """Let pending async collectives finish first, so collectives run in the order issued."""
    pending = _last_async
    if pending is not None and not pending.done() and threading.current_thread().name[:7] != "collsim":
        concurrent.futures.wait([pending])


def _dispatch(run, device: torch.device, async_op: bool, result) -> CollectiveWork | None:
    if async_op and device.type == "cpu":
        return _submit(run, result)
    _drain()
    run()
    return _done(result) if async_op else None


# ---------------------------------------------------------------------------------------------
# shared front half


def _gather_int64(values: list[int], group, nranks: int, device: torch.device) -> list[list[int]]:
    """All-gather a few int64 per rank over ``group`` (on ``device`` for NCCL); rows by group rank."""
    on = device if dist.get_backend(group) == "nccl" else torch.device("cpu")
    mine = torch.tensor(values, dtype=torch.int64, device=on)
    everyone = torch.empty(nranks * mine.numel(), dtype=torch.int64, device=on)
    dist.all_gather_into_tensor(everyone, mine, group=group)
    return everyone.view(nranks, -1).cpu().tolist()


def _host_id() -> int:
    """This machine's host name as a signed 64-bit number (equal names, equal numbers)."""
    digest = hashlib.blake2b(socket.gethostname().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def find_layout(group: dist.ProcessGroup | None = None, device: torch.device | str = "cpu") -> Layout:
    """Which ranks of ``group`` share a node (group-local ranks); found once per group and cached.

    From ``COLLSIM_LAYOUT`` / ``COLLSIM_RANKS_PER_NODE`` if set (no communication), else from one
    all-gather over ``group`` of torchrun's ``GROUP_RANK`` and the host name (see the module
    docstring). ``COLLSIM_NICS_PER_NODE`` gives ``nics_per_node``. Collective on first use for a
    group unless the environment gives the layout: every rank of ``group`` must call it (the
    collectives call it for the algorithms that take a layout). ``device``: where the all-gather's
    tensors live on NCCL groups.

    Raises
    ------
    ValueError
        A malformed ``COLLSIM_*`` variable (the message names it).
    """
    info = _group_info(group, "find_layout")
    if info is None:
        raise ValueError("find_layout: this process is not a member of group")
    _, nranks = info
    pg = group if group is not None else dist.group.WORLD
    env = tuple(os.environ.get(k) for k in ("COLLSIM_LAYOUT", "COLLSIM_RANKS_PER_NODE", "COLLSIM_NICS_PER_NODE",
                                            "GROUP_RANK", "LOCAL_WORLD_SIZE"))
    key = (_group_name(group), nranks, env)
    layout = _layouts.get(key)
    if layout is not None:
        return layout
    nics = nics_from_env()
    labels = labels_from_env(dist.get_world_size())
    if labels is not None:
        layout = layout_of_ranks(labels, [dist.get_global_rank(pg, r) for r in range(nranks)], nics)
    elif nranks == 1:
        layout = Layout.flat(1)
    else:
        torchrun = "LOCAL_WORLD_SIZE" in os.environ and os.environ.get("GROUP_RANK", "").isdigit()
        _drain()  # an all-gather on the group must not overtake pending async collectives
        rows = _gather_int64([int(os.environ["GROUP_RANK"]) if torchrun else -1, _host_id()], group, nranks,
                             torch.device(device))
        by_torchrun = all(node >= 0 for node, _ in rows)
        layout = Layout.from_nodes([node if by_torchrun else host for node, host in rows], nics)
    _layouts[key] = layout
    return layout


def _params(fn: str, collective: str, name: str, spec: dict, group, nranks: int, nbytes: int,
            layout: Layout | None, channels, device: torch.device) -> tuple:
    """The generator parameters of this call (finding the layout if the algorithm takes one)."""
    try:
        if layout is not None:
            layout = check_layout(layout, nranks)
        elif nranks > 1 and takes_layout(name):
            run_params(name, spec, nranks, nbytes, channels=channels)  # bad channels: refused before the all-gather
            layout = find_layout(group, device)
        params = run_params(name, spec, nranks, nbytes, layout=layout, channels=channels)
        if collective != "allreduce" and nranks > 1 and not blocked_params(collective, name, nranks, params):
            where = f" on layout {layout.describe()}" if layout is not None else ""
            raise ValueError(f"{format_algorithm(name, spec)}{where} does not leave block r on rank r, so it cannot run "
                             f"{collective}; use it for all_reduce, or choose from: "
                             f"{', '.join(a for a in algorithms_for(collective) if a != name)}")
    except ValueError as err:
        raise ValueError(f"{fn}: {err}") from None
    return params


def _group_info(group, fn: str) -> tuple[int, int] | None:
    """(group rank, group size), or None when this process is not in ``group``."""
    if not dist.is_initialized():
        raise RuntimeError(f"{fn}: call torch.distributed.init_process_group first")
    pg = group if group is not None else dist.group.WORLD
    if pg is None or pg == dist.GroupMember.NON_GROUP_MEMBER:
        return None
    rank = dist.get_rank(pg)
    if rank < 0:
        return None
    return rank, dist.get_world_size(pg)


def _ensure_nccl(group, device: torch.device) -> None:
    """NCCL wants the first p2p batch on a communicator to involve every rank: warm it up once."""
    name = _group_name(group)
    if device.type == "cuda" and name not in _initialized_nccl:
        dist.all_reduce(torch.zeros(1, device=device), group=group)
        _initialized_nccl.add(name)


def _check_metadata(fn: str, group, nranks: int, device: torch.device, fields: dict[str, int],
                    names: dict[str, Any]) -> None:
    """All-gather a few integers and raise the same clear ValueError on every rank on a mismatch."""
    table = _gather_int64(list(fields.values()), group, nranks, device)
    for j, field in enumerate(fields):
        values = [row[j] for row in table]
        if len(set(values)) > 1:
            label = names.get(field, {})
            shown = ", ".join(f"rank {r}: {label.get(v, v)}" for r, v in enumerate(values))
            raise ValueError(f"{fn}: ranks disagree on {field} ({shown})")


def _metadata(count: int, dtype: torch.dtype, op: str, algorithm: str, params: tuple) -> tuple[dict, dict]:
    algos = tuple(ALGORITHMS)
    shown = ", ".join(f"{k}={v.describe() if isinstance(v, Layout) else v}" for k, v in params) or "none"
    code = zlib.crc32(shown.encode())
    fields = {
        "element count": count,
        "dtype": DTYPES.index(dtype),
        "op": OPS.index(op),
        "algorithm": algos.index(algorithm),
        "algorithm parameters": code,
    }
    names = {
        "dtype": {i: str(d).removeprefix("torch.") for i, d in enumerate(DTYPES)},
        "op": {i: o.upper() for i, o in enumerate(OPS)},
        "algorithm": dict(enumerate(algos)),
        "algorithm parameters": {code: shown},
    }
    return fields, names


# ---------------------------------------------------------------------------------------------
# the collectives


def all_reduce(
    tensor: torch.Tensor,
    op: Any = dist.ReduceOp.SUM,
    group: dist.ProcessGroup | None = None,
    algorithm: str = "auto",
    async_op: bool = False,
    *,
    layout: Layout | None = None,
    channels: int | str | None = None,
    check: bool = False,
    timeout: float | timedelta | None = None,
) -> CollectiveWork | None:
    """Reduce ``tensor`` across ``group`` in place with a collsim schedule, like ``dist.all_reduce``.

    Parameters
    ----------
    tensor : torch.Tensor
        Contiguous input and output, same shape and dtype on every rank.
    op : dist.ReduceOp or str
        SUM, PRODUCT, MIN, MAX, AVG, BAND, BOR or BXOR (see the module docstring for dtype rules).
    group : ProcessGroup, optional
        Default: the world. Ranks outside it return None at once.
    algorithm : str
        A name from :data:`collectives.algorithms.ALGORITHMS` (``"ring"``, ``"tree"``,
        ``"hierarchical"``, ``"recursive_halving"``, ``"recursive_doubling"``), optionally with
        parameters (``"ring:channels=2"``), or ``"auto"`` (the tuning table's choice for this world
        size and message size).
    async_op : bool
        Return a :class:`CollectiveWork` instead of waiting.
    layout : Layout, optional
        Which ranks of ``group`` share a node (group-local ranks). Default: found by
        :func:`find_layout` when the algorithm takes a layout.
    channels : int or "auto", optional
        Concurrent channels for ``ring``, ``tree`` and ``hierarchical``; ``"auto"`` (what None
        means unless the algorithm spec says otherwise): the layout's ``nics_per_node``.
    check : bool
        First exchange (element count, dtype, op, algorithm and its parameters) with every rank and
        raise ValueError on every rank if they differ (one small all-gather).
    timeout : float seconds or timedelta, optional
        Bound on each step's wait; default: the process group's timeout.

    Returns
    -------
    CollectiveWork or None
        A handle if ``async_op``, else None.

    Raises
    ------
    TypeError
        Not a tensor, or an unsupported dtype.
    ValueError
        Non-contiguous tensor, op not allowed for the dtype, unknown algorithm or parameter, a
        layout of the wrong size, or (``check=True``) ranks that disagree.
    CollectiveError
        A peer died or a step timed out.

    Examples
    --------
    >>> t = torch.arange(4, dtype=torch.float32) * (dist.get_rank() + 1)  # rank 0: [0,1,2,3]; rank 1: [0,2,4,6]
    >>> all_reduce(t, op=dist.ReduceOp.MAX, algorithm="recursive_doubling")
    >>> t                                                                  # rank 0 and rank 1
    tensor([0., 2., 4., 6.])
    """
    fn = "all_reduce"
    _check_tensor(tensor, "tensor", fn)
    op = _op_name(op)
    _check_op_dtype(op, tensor.dtype, fn)
    timeout = _as_timedelta(timeout)
    info = _group_info(group, fn)
    if info is None:
        return None
    rank, nranks = info
    buf = _flat(tensor)
    nbytes = tensor.numel() * tensor.element_size()
    algorithm, spec = _resolve_algorithm(algorithm, "allreduce", nranks, nbytes, fn)
    params = _params(fn, "allreduce", algorithm, spec, group, nranks, nbytes, layout, channels, tensor.device)
    if check and nranks > 1:
        fields, names = _metadata(tensor.numel(), tensor.dtype, op, algorithm, params)
        _check_metadata(fn, group, nranks, tensor.device, fields, names)
    label = format_algorithm(algorithm, spec)

    def run() -> None:
        with torch.no_grad():
            if nranks > 1 and buf.numel() > 0:
                _ensure_nccl(group, tensor.device)
                plan = _plan("allreduce", algorithm, params, label, group, rank, nranks, buf.numel(), buf.dtype,
                             buf.device, need_work=False)
                _execute(plan, buf, op, group, timeout, fn, rank, nranks)
            if op == "avg" and nranks > 1:
                buf.div_(nranks)

    return _dispatch(run, tensor.device, async_op, tensor)


def _check_blocks(fn: str, name: str, blocked, like_name: str, like: torch.Tensor, nranks: int) -> None:
    """``blocked`` is ``p`` blocks shaped like ``like``: one tensor of ``p * like.numel()`` elements or
    a list of ``p`` tensors (torch's two forms), with ``like``'s dtype and device."""
    m = like.numel()
    if isinstance(blocked, (list, tuple)):
        if len(blocked) != nranks:
            raise ValueError(f"{fn}: {name} list has {len(blocked)} tensors, the group has {nranks} ranks")
        for i, t in enumerate(blocked):
            if t.numel() != m or t.dtype != like.dtype or t.device != like.device:
                raise ValueError(f"{fn}: {name}[{i}] must match {like_name} ({m} {like.dtype} elements on {like.device})")
        return
    if blocked.numel() != m * nranks:
        raise ValueError(f"{fn}: {name} has {blocked.numel()} elements; it must be {nranks} x {like_name} ({m}) = {m * nranks}")
    if blocked.dtype != like.dtype or blocked.device != like.device:
        raise ValueError(f"{fn}: {name} ({blocked.dtype}, {blocked.device}) and {like_name} ({like.dtype}, "
                         f"{like.device}) must have the same dtype and device")


def reduce_scatter(
    output: torch.Tensor,
    input: torch.Tensor | list[torch.Tensor],
    op: Any = dist.ReduceOp.SUM,
    group: dist.ProcessGroup | None = None,
    algorithm: str = "auto",
    async_op: bool = False,
    *,
    layout: Layout | None = None,
    channels: int | str | None = None,
    check: bool = False,
    timeout: float | timedelta | None = None,
) -> CollectiveWork | None:
    """Reduce ``input`` across ``group`` and leave block ``rank`` in ``output``, like ``dist.reduce_scatter_tensor``.

    ``input`` holds ``p`` blocks of ``output.numel()`` elements (block ``r`` goes to group rank
    ``r``); a list of ``p`` tensors shaped like ``output`` (``dist.reduce_scatter``'s form) is
    accepted too. ``input`` is not modified. Algorithms: :func:`algorithms_for` ``("reduce_scatter")``
    (not the tree), on layouts where the schedule is rank-blocked. Other parameters, return value
    and errors as :func:`all_reduce`.

    Examples
    --------
    >>> inp = torch.ones(4) * (dist.get_rank() + 1)   # rank 0: [1,1,1,1]; rank 1: [2,2,2,2]
    >>> out = torch.empty(2)
    >>> reduce_scatter(out, inp)
    >>> out                                           # rank 0 and rank 1
    tensor([3., 3.])
    """
    fn = "reduce_scatter"
    _check_tensor(output, "output", fn)
    blocks = None
    if isinstance(input, (list, tuple)):
        blocks = [_check_tensor(t, f"input[{i}]", fn) for i, t in enumerate(input)]
    else:
        _check_tensor(input, "input", fn)
    op = _op_name(op)
    _check_op_dtype(op, output.dtype, fn)
    timeout = _as_timedelta(timeout)
    info = _group_info(group, fn)
    if info is None:
        return None
    rank, nranks = info
    m = output.numel()
    _check_blocks(fn, "input", input if blocks is None else blocks, "output", output, nranks)
    nbytes = m * nranks * output.element_size()
    algorithm, spec = _resolve_algorithm(algorithm, "reduce_scatter", nranks, nbytes, fn)
    params = _params(fn, "reduce_scatter", algorithm, spec, group, nranks, nbytes, layout, channels, output.device)
    if check and nranks > 1:
        fields, names = _metadata(m, output.dtype, op, algorithm, params)
        _check_metadata(fn, group, nranks, output.device, fields, names)
    label = format_algorithm(algorithm, spec)

    def run() -> None:
        with torch.no_grad():
            out = _flat(output)
            if nranks == 1 or m == 0:
                src = blocks[0] if blocks is not None else input
                if m:
                    out.copy_(_flat(src))
            else:
                _ensure_nccl(group, output.device)
                count = out.numel() * nranks
                plan = _plan("reduce_scatter", algorithm, params, label, group, rank, nranks, count, out.dtype,
                             out.device, need_work=True)
                work = plan.work
                if blocks is not None:
                    for i, t in enumerate(blocks):
                        work[i * out.numel():(i + 1) * out.numel()].copy_(_flat(t))
                else:
                    work.copy_(_flat(input))
                _execute(plan, work, op, group, timeout, fn, rank, nranks)
                out.copy_(work[rank * out.numel():(rank + 1) * out.numel()])
            if op == "avg" and nranks > 1:
                out.div_(nranks)

    return _dispatch(run, output.device, async_op, output)


def all_gather(
    output: torch.Tensor | list[torch.Tensor],
    input: torch.Tensor,
    group: dist.ProcessGroup | None = None,
    algorithm: str = "auto",
    async_op: bool = False,
    *,
    layout: Layout | None = None,
    channels: int | str | None = None,
    check: bool = False,
    timeout: float | timedelta | None = None,
) -> CollectiveWork | None:
    """Gather every rank's ``input`` into ``output``, like ``dist.all_gather_into_tensor``.

    ``output`` holds ``p`` blocks of ``input.numel()`` elements (block ``r`` from group rank ``r``);
    a list of ``p`` tensors shaped like ``input`` (``dist.all_gather``'s form) is accepted too.
    Algorithms: :func:`algorithms_for` ``("allgather")`` (not the tree), on layouts where the
    schedule is rank-blocked. Other parameters, return value and errors as :func:`all_reduce`.

    Examples
    --------
    >>> out = torch.empty(4)
    >>> all_gather(out, torch.full((2,), float(dist.get_rank())))   # rank 0: [0, 0]; rank 1: [1, 1]
    >>> out                                                         # rank 0 and rank 1
    tensor([0., 0., 1., 1.])
    """
    fn = "all_gather"
    _check_tensor(input, "input", fn)
    outs = None
    if isinstance(output, (list, tuple)):
        outs = [_check_tensor(t, f"output[{i}]", fn) for i, t in enumerate(output)]
    else:
        _check_tensor(output, "output", fn)
    timeout = _as_timedelta(timeout)
    info = _group_info(group, fn)
    if info is None:
        return None
    rank, nranks = info
    m = input.numel()
    _check_blocks(fn, "output", output if outs is None else outs, "input", input, nranks)
    nbytes = m * nranks * input.element_size()
    algorithm, spec = _resolve_algorithm(algorithm, "allgather", nranks, nbytes, fn)
    params = _params(fn, "allgather", algorithm, spec, group, nranks, nbytes, layout, channels, input.device)
    if check and nranks > 1:
        fields, names = _metadata(m, input.dtype, "sum", algorithm, params)
        _check_metadata(fn, group, nranks, input.device, fields, names)
    label = format_algorithm(algorithm, spec)

    def run() -> None:
        with torch.no_grad():
            src = _flat(input)
            k = src.numel()
            plan = None
            if nranks > 1 and k > 0:
                _ensure_nccl(group, input.device)
                plan = _plan("allgather", algorithm, params, label, group, rank, nranks, k * nranks, src.dtype,
                             src.device, need_work=outs is not None)
            buf = (plan.work if plan is not None else None) if outs is not None else _flat(output)
            if buf is None:  # list output, nothing to communicate
                for t in outs:
                    _flat(t).copy_(src)
                return
            buf[rank * k:(rank + 1) * k].copy_(src)
            if plan is not None:
                _execute(plan, buf, "sum", group, timeout, fn, rank, nranks)
            if outs is not None:
                for i, t in enumerate(outs):
                    _flat(t).copy_(buf[i * k:(i + 1) * k])

    return _dispatch(run, input.device, async_op, output)
