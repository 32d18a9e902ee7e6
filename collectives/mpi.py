"""MPI runtime: execute collsim schedules with mpi4py point-to-point messages.

The same schedule objects that the checker proves and the simulator costs are executed here: every
rank compiles, once per (algorithm, communicator size, rank, count), its own program
(:func:`collectives.plan.program_for`) and runs it step by step with non-blocking point-to-point
calls (``Irecv`` for every receive, ``Isend`` for every send, one ``Waitall`` per step; a step of
exactly one receive and one send is one ``Sendrecv``, the same messages). Receives
that the schedule reduces land in a preallocated scratch buffer and are reduced into the user's
buffer in place with a numpy ufunc after the step's messages complete; copy receives land in the buffer
directly (or in scratch when the same step still sends from that range).

A repeated ``all_reduce`` on a numpy array (same communicator, op, algorithm, dtype, size, layout
and channels objects, and the same ``COLLSIM_*`` environment) skips the argument checks and the
resolution and runs the program kept from the first call: only the buffer's flags are looked at
again (a tuning file is read once, :mod:`collectives.tuning`).

Ranks are *communicator* ranks: ``comm.Get_rank()`` of whatever intracommunicator is passed
(``MPI.COMM_WORLD``, or one made with ``Split``/``Create``). Messages travel on a private
duplicate of ``comm`` (made once per communicator and cached as an MPI attribute), so they never
match the caller's own point-to-point traffic.

Buffers are numpy arrays, CPU torch tensors, or any object exposing the Python buffer protocol;
they are used in place, never copied. They must be contiguous (C or Fortran order; the collective
works on memory order, as MPI does) and, where written, writable. torch is not imported unless a
tensor is passed.

Ops are MPI's predefined reductions with MPI's datatype rules (or their names, as strings):

============================  ==================================
op                            dtypes
============================  ==================================
``SUM``, ``PROD``             integer, floating point, complex
``MIN``, ``MAX``              integer, floating point
``BAND``, ``BOR``, ``BXOR``   integer
``LAND``, ``LOR``, ``LXOR``   integer, bool
============================  ==================================

Every rank ends with bitwise identical results: each chunk is reduced on one rank and copied to
the others, except in recursive doubling, where both partners of an exchange reduce; there the
operands are applied in rank order (lower rank's value first) on both sides.

``algorithm="auto"`` takes the tuning table's choice (:func:`collectives.tuning.active_table`).
An algorithm may carry parameters as a spec, ``"ring:channels=2"`` (:func:`collectives.plan.parse_algorithm`).
With ``check=True`` (the default) one tiny allreduce first makes sure every rank passed the same
dtype, size, op, algorithm and parameters and that none refused its input; otherwise every rank raises.

Layouts
-------
Algorithms whose schedules follow the hardware (``ring``, ``tree``, ``hierarchical``) run on the
communicator's :class:`collectives.layout.Layout`, found once per communicator (:func:`find_layout`):
from ``COLLSIM_LAYOUT`` (a node label per ``COMM_WORLD`` rank, ``0,0,1,1``) or
``COLLSIM_RANKS_PER_NODE`` (``2``: consecutive world ranks in twos) when set, which simulates
several nodes on one machine; otherwise from ``comm.Split_type(MPI.COMM_TYPE_SHARED)``, the ranks
that share memory. ``COLLSIM_NICS_PER_NODE`` (default 1) is the NICs per node that
``channels="auto"`` runs as channels. An explicit ``layout=`` skips discovery. A sub-communicator's
layout is its members' nodes, in communicator rank order. reduce_scatter and all_gather run a
layout's schedule only where it is rank-blocked (block ``r`` on rank ``r``).

Not thread safe: one collective at a time per process (like ``MPI_THREAD_SERIALIZED``).

Examples
--------
Run with ``mpiexec -n 2 python script.py``::

    import numpy as np
    from mpi4py import MPI
    from collectives import mpi

    x = np.full(5, MPI.COMM_WORLD.rank + 1.0)
    mpi.all_reduce(x, algorithm="ring")             # rank 0: x == [3. 3. 3. 3. 3.]
                                                    # rank 1: x == [3. 3. 3. 3. 3.]
    out = np.empty(5)
    mpi.reduce_scatter(np.arange(10.0), out)        # rank 0: out == [0. 2. 4. 6. 8.]
                                                    # rank 1: out == [10. 12. 14. 16. 18.]
"""

from __future__ import annotations

import os
import sys
import zlib
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, NamedTuple

import numpy as np
from mpi4py import MPI

from collectives.algorithms import ALGORITHMS
from collectives.layout import Layout
from collectives.plan import (
    RankProgram,
    blocked_params,
    check_layout,
    labels_from_env,
    layout_of_ranks,
    nics_from_env,
    parse_algorithm,
    program_for,
    run_params,
    runnable_algorithms,
    takes_layout,
)
from collectives.tuning import active_table

__all__ = [
    "OPS",
    "AUTO",
    "all_reduce",
    "reduce_scatter",
    "all_gather",
    "allowed_algorithms",
    "resolve_algorithm",
    "find_layout",
    "release_buffers",
]

#: Name of the algorithm that picks one from the tuning table (:mod:`collectives.tuning`).
AUTO = "auto"

#: MPI tags are guaranteed up to 32767; steps wrap around (messages between a pair never overtake).
_TAG_SPACE = 32768


@dataclass(frozen=True)
class _Op:
    name: str
    mpi: MPI.Op
    ufunc: np.ufunc
    kinds: str  # numpy dtype kinds the op is defined for (MPI's datatype categories)


#: MPI predefined op name -> (op, reduction ufunc, allowed dtype kinds).
OPS: dict[str, _Op] = {
    op.name: op
    for op in (
        _Op("SUM", MPI.SUM, np.add, "iufc"),
        _Op("PROD", MPI.PROD, np.multiply, "iufc"),
        _Op("MIN", MPI.MIN, np.minimum, "iuf"),
        _Op("MAX", MPI.MAX, np.maximum, "iuf"),
        _Op("BAND", MPI.BAND, np.bitwise_and, "iu"),
        _Op("BOR", MPI.BOR, np.bitwise_or, "iu"),
        _Op("BXOR", MPI.BXOR, np.bitwise_xor, "iu"),
        _Op("LAND", MPI.LAND, np.logical_and, "iub"),
        _Op("LOR", MPI.LOR, np.logical_or, "iub"),
        _Op("LXOR", MPI.LXOR, np.logical_xor, "iub"),
    )
}

#: torch.distributed's name for PROD, so op names work in both runtimes
_OP_ALIASES = {"PRODUCT": "PROD"}

_KIND_NAMES = {"i": "integer", "u": "integer", "f": "floating point", "c": "complex", "b": "bool"}


# ----------------------------------------------------------------------------------------------
# argument checking


def _resolve_op(op: Any) -> _Op:
    if isinstance(op, str):
        found = OPS.get(_OP_ALIASES.get(op.upper(), op.upper()))
        if found is not None:
            return found
    elif isinstance(op, MPI.Op):
        for candidate in OPS.values():
            if candidate.mpi == op:
                return candidate
    raise ValueError(f"op must be one of MPI.{', MPI.'.join(OPS)} (or their names); got {op!r}")


def _check_op_dtype(op: _Op, dtype: np.dtype) -> None:
    if dtype.kind not in op.kinds:
        allowed = sorted({_KIND_NAMES[k] for k in op.kinds})
        hint = " (use LAND, LOR or LXOR for bool, as MPI does)" if dtype.kind == "b" else ""
        raise TypeError(f"op MPI.{op.name} is not defined for dtype {dtype} by MPI; it takes {', '.join(allowed)} types{hint}")


def _flat_view(buf: Any, name: str, writable: bool) -> np.ndarray:
    """A 1-D numpy view of ``buf``'s memory (no copy), or a clear TypeError/ValueError."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(buf, torch.Tensor):
        if buf.device.type != "cpu":
            raise ValueError(f"{name} is a torch tensor on {buf.device}; the MPI runtime takes CPU tensors "
                             "(the torch.distributed runtime takes device tensors)")
        if not buf.is_contiguous():
            raise ValueError(f"{name} is a non-contiguous tensor; pass tensor.contiguous() (the collective works in place)")
        if buf.is_conj() or buf.is_neg():
            raise ValueError(f"{name} has a lazy conjugate/negative bit; call .resolve_conj()/.resolve_neg() first")
        try:
            arr = buf.detach().numpy()
        except (TypeError, RuntimeError) as err:
            raise TypeError(f"{name} has dtype {buf.dtype}, which has no numpy/MPI equivalent: {err}") from None
    elif isinstance(buf, np.ndarray):
        arr = buf
    else:
        try:
            view = memoryview(buf)
        except TypeError:
            raise TypeError(f"{name} must be a numpy array, a CPU torch tensor or an object with the buffer "
                            f"protocol; got {type(buf).__name__}") from None
        if not view.contiguous:
            raise ValueError(f"{name} is a non-contiguous buffer; the collective needs contiguous memory")
        if writable and view.readonly:
            raise ValueError(f"{name} is a read-only buffer ({type(buf).__name__}); the collective writes into it")
        arr = np.asarray(view)
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        raise ValueError(f"{name} is a non-contiguous array (strides {arr.strides}); pass np.ascontiguousarray(...) "
                         "and use the result, the collective works in place")
    if writable and not arr.flags.writeable:
        raise ValueError(f"{name} is read-only; the collective writes its result into it")
    if arr.dtype.kind not in "biufc" or not arr.dtype.isnative:
        raise TypeError(f"{name} has dtype {arr.dtype}; the MPI runtime takes native-endian bool, integer, "
                        "floating point or complex data")
    return arr.reshape(-1, order="A")


def _check_comm(comm: Any) -> MPI.Intracomm:
    if not isinstance(comm, MPI.Intracomm):
        if isinstance(comm, MPI.Comm):
            raise ValueError("comm must be an intracommunicator (an intercommunicator has no collective schedule here)")
        raise TypeError(f"comm must be an mpi4py communicator (MPI.COMM_WORLD or one made by Split); got {type(comm).__name__}")
    if comm == MPI.COMM_NULL:
        raise ValueError("comm is MPI.COMM_NULL; this rank is not part of the communicator")
    return comm


@cache
def allowed_algorithms(collective: str) -> tuple[str, ...]:
    """Algorithms the MPI runtime runs for ``collective`` (``"allreduce"``, ``"reduce_scatter"``, ``"allgather"``).

    reduce_scatter and allgather need *rank-blocked* schedules (block ``r`` ends on / starts from
    rank ``r``); the registry says which algorithms have them (the tree's halves reduce onto and
    broadcast from its two roots, so it is allreduce-only).
    """
    return runnable_algorithms(collective)


def resolve_algorithm(collective: str, algorithm: str, nranks: int, nbytes: int) -> str:
    """The algorithm spec that runs: ``algorithm`` itself, or the tuning table's choice for ``"auto"``.

    ``"auto"`` reads :func:`collectives.tuning.active_table` for ``collective`` (a table from
    ``COLLSIM_TUNING`` if one there covers the collective, else the built-in one). A spec may
    carry parameters (``"ring:channels=2"``).

    Raises
    ------
    ValueError
        ``algorithm`` is not ``"auto"`` or one of :func:`allowed_algorithms` for ``collective``
        (with parameters its generator takes), or the tuning table cannot be read.
    """
    if algorithm == AUTO:
        choice = active_table(collective).choose(nranks, nbytes)
        return _check_algorithm(collective, choice)
    return _check_algorithm(collective, algorithm)


def _check_algorithm(collective: str, algorithm: str) -> str:
    allowed = allowed_algorithms(collective)
    name = algorithm.partition(":")[0].strip() if isinstance(algorithm, str) else algorithm
    if name not in allowed:
        extra = f" ({name} is allreduce-only)" if name in ALGORITHMS else ""
        raise ValueError(f"algorithm {algorithm!r} is not available for {collective}{extra}; "
                         f"choose from: {', '.join((AUTO, *allowed))}")
    parse_algorithm(algorithm)
    return algorithm


# ----------------------------------------------------------------------------------------------
# buffers and the private communicator


class _Pool:
    """Preallocated, growing buffers reused across calls, one per (purpose, dtype)."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, np.dtype], np.ndarray] = {}

    def get(self, purpose: str, dtype: np.dtype, count: int) -> np.ndarray:
        key = (purpose, dtype)
        buf = self._buffers.get(key)
        if buf is None or buf.size < count:
            buf = np.empty(count, dtype=dtype)
            self._buffers[key] = buf
        return buf[:count]

    def clear(self) -> None:
        self._buffers.clear()


_POOL = _Pool()


def release_buffers() -> None:
    """Free the scratch buffers kept between calls (they are reallocated when needed)."""
    _POOL.clear()


_KEYVAL: int | None = None


def _free_private(comm, keyval, private) -> None:
    if private != MPI.COMM_NULL and not MPI.Is_finalized():
        private.Free()


def _private_comm(comm: MPI.Intracomm) -> MPI.Intracomm:
    """A duplicate of ``comm`` for our messages, made collectively on first use and cached on ``comm``."""
    global _KEYVAL
    if _KEYVAL is None:
        _KEYVAL = MPI.Comm.Create_keyval(delete_fn=_free_private)
    private = comm.Get_attr(_KEYVAL)
    if private is None:
        private = comm.Dup()
        comm.Set_attr(_KEYVAL, private)
    return private


_LAYOUT_KEYVAL: int | None = None


def find_layout(comm: MPI.Intracomm = MPI.COMM_WORLD) -> Layout:
    """Which ranks of ``comm`` share a node (communicator ranks); found once per communicator.

    From ``COLLSIM_LAYOUT`` / ``COLLSIM_RANKS_PER_NODE`` when set (no communication), else from
    ``Split_type(MPI.COMM_TYPE_SHARED)`` and one allgather of each rank's node leader. Collective
    on ``comm`` the first time unless the environment gives the layout; cached on ``comm`` (an MPI
    attribute) per value of those variables and ``COLLSIM_NICS_PER_NODE``.

    Raises
    ------
    ValueError
        A malformed ``COLLSIM_*`` variable (the message names it).
    """
    global _LAYOUT_KEYVAL
    comm = _check_comm(comm)
    if _LAYOUT_KEYVAL is None:
        _LAYOUT_KEYVAL = MPI.Comm.Create_keyval()
    found = comm.Get_attr(_LAYOUT_KEYVAL)
    if found is None:
        found = {}
        comm.Set_attr(_LAYOUT_KEYVAL, found)
    key = tuple(os.environ.get(k) for k in ("COLLSIM_LAYOUT", "COLLSIM_RANKS_PER_NODE", "COLLSIM_NICS_PER_NODE"))
    if key in found:
        return found[key]
    nics = nics_from_env()
    labels = labels_from_env(MPI.COMM_WORLD.Get_size())
    if labels is not None:
        world_ranks = MPI.Group.Translate_ranks(comm.Get_group(), list(range(comm.Get_size())), MPI.COMM_WORLD.Get_group())
        layout = layout_of_ranks(labels, world_ranks, nics)
    elif comm.Get_size() == 1:
        layout = Layout.flat(1)
    else:
        private = _private_comm(comm)
        node = private.Split_type(MPI.COMM_TYPE_SHARED, key=private.Get_rank())
        try:
            leader = node.bcast(private.Get_rank(), root=0)  # the node's lowest rank names it
        finally:
            node.Free()
        layout = Layout.from_nodes(private.allgather(leader), nics)
    found[key] = layout
    return layout


# ----------------------------------------------------------------------------------------------
# execution


class _Step(NamedTuple):
    """One step of a laid-out program (plain tuples inside, unpacked in the hot loop)."""

    tag: int
    recvs: tuple  # (peer, into_scratch, lo, hi): receive into scratch or buffer [lo, hi)
    sends: tuple  # (peer, lo, hi): send buffer [lo, hi)
    reductions: tuple  # (peer_first, lo, hi, s_lo): buffer[lo:hi] = op(scratch[s_lo:...], buffer[lo:hi]) or swapped
    copies: tuple  # (lo, hi, s_lo): buffer[lo:hi] = scratch[s_lo:s_lo + hi - lo]


class _Exec(NamedTuple):
    """A rank program laid out for execution, and the scratch elements it needs."""

    steps: tuple[_Step, ...]
    scratch: int


@lru_cache(maxsize=512)
def _executable(collective: str, algorithm: str, nranks: int, rank: int, count: int, params: tuple) -> _Exec:
    return _layout(program_for(collective, algorithm, nranks, rank, count, params))


def _layout(program: RankProgram) -> _Exec:
    """Lay out a rank's program for execution: where each receive lands, what is reduced after.

    Reduce receives get consecutive ranges of scratch. A copy receive goes straight into the
    buffer, unless the same step sends from an overlapping range (sends read the pre-step state):
    then it waits in scratch and is copied in after the step's ``Waitall``.
    """
    rank = program.rank
    steps = []
    scratch = 0
    for step in program.steps:
        sent = [(t.lo, t.hi) for t in step.sends]
        recvs, reductions, copies = [], [], []
        offset = 0
        for t in step.recvs:
            overlaps = any(lo < t.hi and t.lo < hi for lo, hi in sent)
            if t.reduce or overlaps:
                recvs.append((t.peer, True, offset, offset + t.size))
                if t.reduce:
                    reductions.append((t.peer < rank, t.lo, t.hi, offset))
                else:
                    copies.append((t.lo, t.hi, offset))
                offset += t.size
            else:
                recvs.append((t.peer, False, t.lo, t.hi))
        scratch = max(scratch, offset)
        sends = tuple((t.peer, t.lo, t.hi) for t in step.sends)
        steps.append(_Step(step.index % _TAG_SPACE, tuple(recvs), sends, tuple(reductions), tuple(copies)))
    return _Exec(tuple(steps), scratch)


def _params(comm: MPI.Intracomm, collective: str, spec: str, nbytes: int, layout: Layout | None, channels) -> tuple:
    """(name, generator parameters) of a call, finding the layout (collectively) if the algorithm takes one.

    Every rank reaches it with the same arguments (checked before), so a ValueError here is
    raised on every rank.
    """
    nranks = comm.Get_size()
    name, params = parse_algorithm(spec)
    if layout is None and nranks > 1 and takes_layout(name):
        layout = find_layout(comm)
    params = run_params(name, params, nranks, nbytes, layout=layout, channels=channels)
    if collective != "allreduce" and nranks > 1 and not blocked_params(collective, name, nranks, params):
        raise ValueError(f"{collective}: {spec} on layout {layout.describe() if layout else 'flat'} does not leave "
                         f"block r on rank r; use it for all_reduce, or choose from: "
                         f"{', '.join(a for a in (AUTO, *allowed_algorithms(collective)) if a != name)}")
    return name, params


def _local_checks(spec: str, nranks: int, nbytes: int, layout, channels) -> str:
    """Check ``layout`` and ``channels`` locally (before ranks agree); the text ranks compare."""
    name, params = parse_algorithm(spec)
    if layout is not None:
        check_layout(layout, nranks)
    run_params(name, params, nranks, nbytes, channels=channels)  # channels the algorithm takes?
    return f"{spec} channels={channels} layout={None if layout is None else layout.node_of}/" \
           f"{None if layout is None else layout.nics_per_node}"


def _run(comm: MPI.Intracomm, collective: str, name: str, params: tuple, flat: np.ndarray,
         ufunc: np.ufunc | None) -> None:
    nranks, rank, count = comm.Get_size(), comm.Get_rank(), flat.size
    _execute(comm, _executable(collective, name, nranks, rank, count, params), flat, ufunc)


def _execute(comm: MPI.Intracomm, plan: _Exec, flat: np.ndarray, ufunc: np.ufunc | None,
             scratch: np.ndarray | None = None) -> None:
    """Run a laid-out program on ``flat``: per step receive all, send all, wait for all, then reduce/copy.

    A step with one receive and one send is one ``Sendrecv`` (which posts the receive, then the
    send, and waits for both: the same messages as ``Irecv`` + ``Isend`` + ``Waitall``, with less
    Python per step); any other step posts ``Irecv`` for each receive, ``Isend`` for each send and
    waits on them with one ``Waitall``. ``scratch`` (at least ``plan.scratch`` elements of
    ``flat``'s dtype) defaults to the pooled one.
    """
    if scratch is None:
        scratch = _POOL.get("scratch", flat.dtype, plan.scratch)
    for tag, recvs, sends, reductions, copies in plan.steps:
        if len(recvs) == 1 and len(sends) == 1:
            (rpeer, into_scratch, rlo, rhi), (speer, slo, shi) = recvs[0], sends[0]
            comm.Sendrecv(flat[slo:shi], speer, tag, (scratch if into_scratch else flat)[rlo:rhi], rpeer, tag)
        else:
            irecv, isend = comm.Irecv, comm.Isend
            requests = [irecv((scratch if into_scratch else flat)[lo:hi], peer, tag) for peer, into_scratch, lo, hi in recvs]
            requests += [isend(flat[lo:hi], peer, tag) for peer, lo, hi in sends]
            MPI.Request.Waitall(requests)
        for peer_first, lo, hi, s_lo in reductions:
            mine = flat[lo:hi]
            theirs = scratch[s_lo:s_lo + hi - lo]
            if peer_first:
                ufunc(theirs, mine, out=mine)
            else:
                ufunc(mine, theirs, out=mine)
        for lo, hi, s_lo in copies:
            flat[lo:hi] = scratch[s_lo:s_lo + hi - lo]


def _agreement_codes(fields: dict[str, Any], error: Exception | None) -> np.ndarray:
    """[refused, values..., -refused, -values...] as int64: what :func:`_agree` reduces with MAX."""
    codes = np.array([int(error is not None)]
                     + [v if isinstance(v, int) else zlib.crc32(str(v).encode()) for v in fields.values()], dtype=np.int64)
    return np.concatenate([codes, -codes])


def _agree(comm: MPI.Intracomm, what: str, fields: dict[str, Any], error: Exception | None,
           codes: np.ndarray | None = None) -> None:
    """Raise on every rank unless all ranks accepted their input and pass equal ``fields``.

    One small ``MPI_Allreduce`` (max of [refused, values] and of their negations); only when
    something differs are the readable values gathered to say which rank passed what. A rank that
    refused its own input (``error``) re-raises that error; the others raise a ValueError naming it.
    ``codes``: :func:`_agreement_codes` of ``fields`` (without error), kept from an earlier call.
    """
    both = _agreement_codes(fields, error) if codes is None else codes.copy()
    comm.Allreduce(MPI.IN_PLACE, both, op=MPI.MAX)
    k = both.size // 2
    maxima = both.tolist()  # a few integers: plain Python compares them faster than numpy
    if maxima[0] == 0 and maxima[:k] == [-v for v in maxima[k:]]:
        return
    everyone = comm.allgather((None if error is None else f"{type(error).__name__}: {error}",
                               tuple(str(v) for v in fields.values())))
    if error is not None:
        raise error
    refused = [(r, msg) for r, (msg, _) in enumerate(everyone) if msg is not None]
    if refused:
        listing = "; ".join(f"rank {r}: {msg}" for r, msg in refused)
        raise ValueError(f"{what}: other ranks of the communicator refused their input ({listing})")
    problems = []
    for i, name in enumerate(fields):
        values = [row[i] for _, row in everyone]
        if len(set(values)) > 1:
            listing = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            problems.append(f"{name} ({listing})")
    raise ValueError(f"{what}: ranks of the communicator disagree on {'; '.join(problems)}")


def _prologue(what: str, comm: Any, check: bool, keys: tuple[str, ...], validate) -> tuple:
    """Check ``comm``, run the local ``validate(nranks, rank) -> (fields, state)``, agree if ``check``.

    Returns ``(private_comm_or_None, state)``; ``None`` for a communicator of one rank. With
    ``check``, a rank whose input is refused still joins the agreement, so every rank raises
    instead of the others waiting for it.
    """
    comm = _check_comm(comm)
    nranks, rank = comm.Get_size(), comm.Get_rank()
    if nranks == 1:
        return None, validate(nranks, rank)[1]
    private = _private_comm(comm)
    if not check:
        return private, validate(nranks, rank)[1]
    try:
        fields, state = validate(nranks, rank)
    except (TypeError, ValueError) as err:
        _agree(private, what, dict.fromkeys(keys, 0), err)
        raise AssertionError("unreachable: _agree re-raises the error") from err
    _agree(private, what, fields, None)
    return private, state


# ----------------------------------------------------------------------------------------------
# repeated calls: resolve once, then go straight to the schedule
#
# A training loop or a benchmark calls all_reduce with the same arguments again and again. Everything
# between the call and the first message (checking the buffer, op and algorithm, reading the tuning
# table, finding the layout, compiling the program) depends only on the arguments' identities,
# the buffer's dtype and size, and a few environment variables; at 4 KiB it took longer than
# MPI_Allreduce itself. A resolved call is kept under exactly those (_CALLS); a repeat with a numpy
# array checks only what can change between calls (the buffer's flags, the tuning table's choice)
# and runs the same laid-out program through the same _execute, so the messages, the reductions
# and the results are the regular path's, bit for bit.

#: The environment variables a call's resolution reads: the tuning table and the layout.
_ENV_NAMES = ("COLLSIM_TUNING", "COLLSIM_LAYOUT", "COLLSIM_RANKS_PER_NODE", "COLLSIM_NICS_PER_NODE")


def _env_reader():
    """A function that returns the values of :data:`_ENV_NAMES` now (None where unset).

    ``os.environ.get`` encodes the name and decodes the value: about 1.3 us each on a slow core,
    a quarter of a whole 4 KiB ``MPI_Allreduce``. On POSIX CPython ``os.environ`` keeps the bytes
    in the dict ``os.environ._data`` and writes every assignment and deletion through to it, so
    reading that dict sees every change made with ``os.environ`` (a change made by C code behind
    Python's back is invisible to ``os.environ.get`` too). Elsewhere: ``os.environ.get``.
    """
    data = getattr(os.environ, "_data", None)
    if os.name != "posix" or not isinstance(data, dict):
        return lambda: tuple(os.environ.get(name) for name in _ENV_NAMES)
    get = data.get
    tuning, labels, per_node, nics = (os.fsencode(name) for name in _ENV_NAMES)
    return lambda: (get(tuning), get(labels), get(per_node), get(nics))


_collsim_env = _env_reader()


class _Call(NamedTuple):
    """An ``all_reduce`` resolved once: all that its arguments and the environment decide."""

    comm: Any  # the caller's comm, op, layout and channels, held so that the ids in the key stay theirs
    handle: int  # comm.handle then (freeing comm changes it)
    op: Any
    layout: Any
    channels: Any
    nranks: int
    spec: str  # the algorithm that runs (auto's choice)
    private: MPI.Intracomm | None  # our duplicate of comm; None on one rank
    plan: _Exec | None  # None when nothing is sent (one rank, zero elements)
    ufunc: np.ufunc
    fields: dict[str, Any]  # what ranks agree on with check=True, and its codes
    codes: np.ndarray


#: Resolved calls by (id(comm), id(op), algorithm, dtype, size, id(layout), id(channels), environment).
_CALLS: dict[tuple, _Call] = {}
_CALLS_MAX = 256


def _call_key(buf: Any, comm: Any, op: Any, algorithm: Any, layout: Any, channels: Any, env: tuple) -> tuple | None:
    """The key of a call that can be repeated the fast way: a numpy array and an algorithm name; else None."""
    if type(buf) is not np.ndarray or type(algorithm) is not str:
        return None
    return id(comm), id(op), algorithm, buf.dtype, buf.size, id(layout), id(channels), env


def _remember(key: tuple, call: _Call) -> None:
    if len(_CALLS) >= _CALLS_MAX:
        del _CALLS[next(iter(_CALLS))]  # the oldest
    _CALLS[key] = call


def _repeat_all_reduce(buf: Any, comm: Any, op: Any, algorithm: Any, check: bool, layout: Any, channels: Any,
                       env: tuple) -> bool:
    """Run an ``all_reduce`` resolved before, if this is one; False sends the call down the regular path.

    Falls back (and the regular path raises its clear error or resolves anew) when the buffer is
    no longer contiguous and writable or ``comm`` was freed. ``auto``'s choice needs no second look:
    the key holds ``COLLSIM_TUNING``, and the table of a path is read once.
    """
    if type(buf) is not np.ndarray or type(algorithm) is not str:
        return False
    call = _CALLS.get((id(comm), id(op), algorithm, buf.dtype, buf.size, id(layout), id(channels), env))  # _call_key
    if (call is None or call.comm is not comm or call.op is not op or call.layout is not layout
            or call.channels is not channels or call.handle != comm.handle):
        return False
    flags = buf.flags
    if not (flags.forc and flags.writeable):
        return False
    if check and call.private is not None:
        _agree(call.private, "all_reduce", call.fields, None, call.codes)
    if call.plan is not None:
        _execute(call.private, call.plan, buf if buf.ndim == 1 else buf.reshape(-1, order="A"), call.ufunc)
    return True


# ----------------------------------------------------------------------------------------------
# public collectives


def all_reduce(buf: Any, comm: MPI.Intracomm = MPI.COMM_WORLD, op: MPI.Op | str = MPI.SUM,
               algorithm: str = AUTO, check: bool = True, *, layout: Layout | None = None,
               channels: int | str | None = None) -> Any:
    """Reduce ``buf`` across the ranks of ``comm`` in place, so every rank holds the result.

    Parameters
    ----------
    buf : numpy array, CPU torch tensor or writable buffer-protocol object
        Contiguous; overwritten with the reduction over all ranks. Same dtype and size on all ranks.
    comm : mpi4py intracommunicator
        Ranks are this communicator's ranks.
    op : MPI.Op or str
        One of :data:`OPS` (``MPI.SUM``, ``MPI.PROD``, ``MPI.MIN``, ``MPI.MAX``, ``MPI.BAND``,
        ``MPI.BOR``, ``MPI.BXOR``, ``MPI.LAND``, ``MPI.LOR``, ``MPI.LXOR``) or its name.
    algorithm : str
        ``"auto"`` (the tuning table's choice for this size) or a registered algorithm name,
        optionally with parameters (``"ring:channels=2"``, ``"hierarchical:outer=tree"``).
    check : bool
        First verify, with one tiny allreduce, that every rank passed the same dtype, size, op,
        algorithm, layout and channels and that no rank refused its input: then every rank raises
        a clear error instead of hanging or computing garbage. ``False`` saves that latency (a few
        microseconds) but a rank that raises leaves the others waiting.
    layout : Layout, optional
        Which ranks of ``comm`` share a node. Default: :func:`find_layout`, when the algorithm
        takes a layout.
    channels : int or "auto", optional
        Concurrent channels for ``ring``, ``tree`` and ``hierarchical``; ``"auto"`` (what None
        means unless the spec says otherwise) runs the layout's ``nics_per_node``.

    Returns
    -------
    buf
        The same object, reduced.

    Raises
    ------
    TypeError
        ``buf`` is not a buffer, or its dtype is not allowed for ``op`` by MPI.
    ValueError
        Non-contiguous or read-only ``buf``, unknown ``op`` or ``algorithm``; with ``check=True``
        also on every rank when ranks disagree or another rank refused its input.

    Examples
    --------
    >>> x = np.full(4, comm.rank, dtype=np.int64)          # doctest: +SKIP
    >>> all_reduce(x, op=MPI.MAX, algorithm="tree")        # doctest: +SKIP
    array([3, 3, 3, 3])                                    # every rank, on 4 ranks
    """
    env = _collsim_env()
    if _repeat_all_reduce(buf, comm, op, algorithm, check, layout, channels, env):
        return buf

    def validate(nranks: int, rank: int):
        flat = _flat_view(buf, "buf", writable=True)
        red = _resolve_op(op)
        _check_op_dtype(red, flat.dtype)
        spec = resolve_algorithm("allreduce", algorithm, nranks, flat.nbytes)
        text = _local_checks(spec, nranks, flat.nbytes, layout, channels)
        fields = {"dtype": flat.dtype.str, "count": flat.size, "op": red.name, "algorithm": text}
        return fields, (flat, red, spec, fields)

    private, (flat, red, spec, fields) = _prologue("all_reduce", comm, check, ("dtype", "count", "op", "algorithm"), validate)
    plan = None
    if private is not None and flat.size:
        name, params = _params(comm, "allreduce", spec, flat.nbytes, layout, channels)
        plan = _executable("allreduce", name, private.Get_size(), private.Get_rank(), flat.size, params)
        _execute(private, plan, flat, red.ufunc)
    key = _call_key(buf, comm, op, algorithm, layout, channels, env)
    if key is not None:
        _remember(key, _Call(comm, comm.handle, op, layout, channels, comm.Get_size(), spec, private, plan, red.ufunc,
                             fields, _agreement_codes(fields, None)))
    return buf


def reduce_scatter(sendbuf: Any, recvbuf: Any, comm: MPI.Intracomm = MPI.COMM_WORLD,
                   op: MPI.Op | str = MPI.SUM, algorithm: str = AUTO, check: bool = True, *,
                   layout: Layout | None = None, channels: int | str | None = None) -> Any:
    """Reduce ``sendbuf`` across ranks and leave block ``rank`` of the result in ``recvbuf``.

    ``sendbuf`` holds ``p`` blocks of ``recvbuf.size`` elements (``p = comm.Get_size()``); rank ``r``
    receives block ``r`` of the elementwise reduction (``MPI_Reduce_scatter_block``, torch's
    ``reduce_scatter_tensor``). ``sendbuf`` is not modified: the schedule runs on a reused workspace.

    Parameters
    ----------
    sendbuf : numpy array, CPU torch tensor or buffer-protocol object
        Contiguous, ``p * recvbuf.size`` elements, same dtype as ``recvbuf``.
    recvbuf : numpy array, CPU torch tensor or writable buffer-protocol object
        Contiguous, writable.
    comm, op, check, layout, channels
        As in :func:`all_reduce`.
    algorithm : str
        ``"auto"`` or one of :func:`allowed_algorithms` ``("reduce_scatter")`` (not ``"tree"``),
        where its schedule on the layout is rank-blocked.

    Returns
    -------
    recvbuf

    Raises
    ------
    TypeError, ValueError
        As :func:`all_reduce`, and when the sizes or dtypes of ``sendbuf`` and ``recvbuf`` do not fit.

    Examples
    --------
    >>> out = np.empty(2)                                          # doctest: +SKIP
    >>> reduce_scatter(np.arange(4.0) + comm.rank, out)            # doctest: +SKIP
    array([1., 3.])                                                # rank 0, on 2 ranks
    array([5., 7.])                                                # rank 1
    """
    def validate(nranks: int, rank: int):
        send = _flat_view(sendbuf, "sendbuf", writable=False)
        recv = _flat_view(recvbuf, "recvbuf", writable=True)
        _check_pair(send, recv, nranks, "sendbuf", "recvbuf")
        red = _resolve_op(op)
        _check_op_dtype(red, recv.dtype)
        spec = resolve_algorithm("reduce_scatter", algorithm, nranks, send.nbytes)
        text = _local_checks(spec, nranks, send.nbytes, layout, channels)
        fields = {"dtype": recv.dtype.str, "recv count": recv.size, "op": red.name, "algorithm": text}
        return fields, (send, recv, red, spec, rank)

    keys = ("dtype", "recv count", "op", "algorithm")
    private, (send, recv, red, spec, rank) = _prologue("reduce_scatter", comm, check, keys, validate)
    if private is None:
        recv[:] = send
    elif recv.size:
        name, params = _params(comm, "reduce_scatter", spec, send.nbytes, layout, channels)
        work = _POOL.get("work", send.dtype, send.size)
        work[:] = send
        _run(private, "reduce_scatter", name, params, work, red.ufunc)
        recv[:] = work[rank * recv.size:(rank + 1) * recv.size]
    return recvbuf


def all_gather(sendbuf: Any, recvbuf: Any, comm: MPI.Intracomm = MPI.COMM_WORLD,
               algorithm: str = AUTO, check: bool = True, *, layout: Layout | None = None,
               channels: int | str | None = None) -> Any:
    """Gather every rank's ``sendbuf`` into ``recvbuf``, block ``r`` from rank ``r``, on all ranks.

    Parameters
    ----------
    sendbuf : numpy array, CPU torch tensor or buffer-protocol object
        Contiguous, ``k`` elements, same dtype as ``recvbuf``.
    recvbuf : numpy array, CPU torch tensor or writable buffer-protocol object
        Contiguous, writable, ``p * k`` elements.
    comm, check, layout, channels
        As in :func:`all_reduce`.
    algorithm : str
        ``"auto"`` or one of :func:`allowed_algorithms` ``("allgather")`` (not ``"tree"``), where
        its schedule on the layout is rank-blocked.

    Returns
    -------
    recvbuf

    Examples
    --------
    >>> out = np.empty(4, dtype=np.int32)                              # doctest: +SKIP
    >>> all_gather(np.full(2, comm.rank, dtype=np.int32), out)         # doctest: +SKIP
    array([0, 0, 1, 1], dtype=int32)                                   # every rank, on 2 ranks
    """
    def validate(nranks: int, rank: int):
        send = _flat_view(sendbuf, "sendbuf", writable=False)
        recv = _flat_view(recvbuf, "recvbuf", writable=True)
        _check_pair(recv, send, nranks, "recvbuf", "sendbuf")
        spec = resolve_algorithm("allgather", algorithm, nranks, recv.nbytes)
        text = _local_checks(spec, nranks, recv.nbytes, layout, channels)
        return {"dtype": recv.dtype.str, "send count": send.size, "algorithm": text}, (send, recv, spec, rank)

    private, (send, recv, spec, rank) = _prologue("all_gather", comm, check, ("dtype", "send count", "algorithm"), validate)
    if private is None:
        recv[:] = send
    elif send.size:
        name, params = _params(comm, "allgather", spec, recv.nbytes, layout, channels)
        recv[rank * send.size:(rank + 1) * send.size] = send
        _run(private, "allgather", name, params, recv, None)
    return recvbuf


def _check_pair(whole: np.ndarray, part: np.ndarray, nranks: int, whole_name: str, part_name: str) -> None:
    if whole.dtype != part.dtype:
        raise TypeError(f"{whole_name} has dtype {whole.dtype} but {part_name} has dtype {part.dtype}; they must match")
    if whole.size != nranks * part.size:
        raise ValueError(f"{whole_name} must hold {nranks} blocks of {part_name}'s {part.size} elements "
                         f"({nranks * part.size}) on a communicator of {nranks} ranks; it has {whole.size}")
