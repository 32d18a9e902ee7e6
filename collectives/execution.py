"""Execution tactics: what a runtime does beyond a schedule's steps, as data the simulator costs.

A schedule says which chunks go where in which step (:mod:`collectives.schedule`). How a runtime
*posts* those transfers can change their cost without changing the data they move. Every such
tactic is described here, in one place: the runtime reads its decisions from these functions, and
the simulator (:mod:`sim.flow`, :mod:`sim.analytic`) costs the :class:`Execution` that
:func:`execution_for` returns for the same call. A tactic the simulator cannot see is not allowed:
``tests/test_execution.py`` fails when the torch runtime's compiled plan carries a field that is
not one of :data:`MODELED_PLAN_FIELDS`.

The tactics
-----------
Only the torch runtime (:mod:`collectives.distributed`) on CPU buffers (Gloo) uses any. The MPI
runtime (:mod:`collectives.mpi`) and CUDA buffers (NCCL) run every step plainly: post the step's
receives and sends, wait for all of them, reduce.

**Receives posted a step ahead** (buffers of at most :data:`PREPOST_BYTES`). While step ``k`` is in
flight, a rank posts its receives of its next step wherever they land where step ``k`` does not
touch (:func:`can_post_ahead`; reduce-receives alternate between two scratch regions, so only
copy-receives can collide). Gloo's TCP pairs are rendezvous: a send waits for the receiver's
"receive posted" notification. A receive posted a step ahead has announced itself before its
sender gets there, so the sender does not wait for the receiver and one handshake leaves the
critical path. The simulator costs such a transfer as starting when its sender is ready (as an
eager message: the receiver's part ends at ``max(arrival, receiver ready)`` plus its reduction),
after ``ModelParams.posted_alpha`` (default: ``alpha``; ``collsim calibrate`` measures it with
back-to-back exchanges whose receives are posted ahead). :func:`posted_ahead` gives, per step, which
transfers' receivers posted them ahead; it agrees with every rank's own decision
(:func:`rank_ahead`), which the tests check for every algorithm.

**Lanes** (chunks of at least two :data:`SEGMENT_BYTES` segments). Every chunk is cut into ``L``
segments (:func:`lanes`, at most :data:`MAX_LANES`) and lane ``j`` runs the schedule on segment
``j`` of every chunk, one message per (step, lane), the lanes' messages of a step sent back to back
over the same pair. A receiver reduces each lane's segment when it arrives, while the later lanes
still arrive. The simulator costs a transfer as ``L`` messages of ``bytes / L`` in flight together,
each reduced on arrival: the data moves in the same time, and only the last lane's reduction,
``gamma * bytes / L``, follows the transfer. That is what runs when reducing a segment takes less
than receiving one (``gamma`` below the time per byte on the wire: 10 GB/s against 0.1-2 GB/s for
TCP); a reduction slower than the network would hide less.

**Partner switches** (one lane, messages of at least :data:`SWITCH_BYTES`: all a step sends from
one rank to another). On a real link, two large transfers to or from different partners that
overlap do not share it evenly as a flow model shares it: on an emulated switch recursive halving
took 1.13-1.33x the ring's time where the model said 1.00x (1.01-1.13x with these tactics). Two tactics would make them overlap
and are held back at a switch of partner:

* *Receives posted ahead.* A rank does not post its next step's receives ahead when one of them
  is a large message from a rank it does not receive from in the step in flight: that sender would
  stream into its link while the step's own messages still arrive.
* *Sends that end early.* A Gloo send is done once the kernel holds its bytes; up to 4 MiB may
  still wait in the socket. Where a large message's sender next sends to another rank, it waits
  for a *receipt*: the receiver answers with one element once its receives of the step are done.
  "Another rank" is one it does not send to in this step: a ring of several channels, which sends
  to the same ranks every step, needs none.

The simulator costs both: such a transfer is not in :attr:`Execution.posted`, and a receipted
transfer is done for its sender at ``max(arrival, receiver ready) + posted_alpha + latency`` (the
receipt's receive is posted when the step starts) instead of when its last byte leaves.
:func:`receipts` gives the receipted transfers per step; every rank's plan reads its own from it.
The ring, and every exchange with a fixed partner, never switch.

>>> from collectives.algorithms import get_schedule
>>> ex = execution_for(get_schedule("allreduce", "ring", 4), nbytes=1 << 20)
>>> ex.lanes, ex.posts_ahead
(1, True)
>>> [int(m.sum()) for m in ex.posted]  # step 0 is every rank's first: nothing is posted ahead of it
[0, 4, 4, 4, 4, 4]
>>> execution_for(get_schedule("allreduce", "ring", 4), nbytes=1 << 20, runtime="mpi").plain
True
>>> execution_for(get_schedule("allreduce", "ring", 2), nbytes=64 << 20).lanes
8
>>> rh = execution_for(get_schedule("allreduce", "recursive_halving", 4), nbytes=1 << 20)
>>> [None if m is None else m.tolist() for m in rh.receipts]  # partners r^1, r^2, r^2, r^1
[[True, True, True, True], None, [True, True, True, True], None]
>>> execution_for(get_schedule("allreduce", "ring", 4), nbytes=1 << 20).receipts is None
True
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from collectives.schedule import Schedule

__all__ = [
    "RUNTIMES",
    "DEVICES",
    "SEGMENT_BYTES",
    "MAX_LANES",
    "PREPOST_BYTES",
    "SWITCH_BYTES",
    "MODELED_PLAN_FIELDS",
    "Execution",
    "lanes",
    "posts_ahead",
    "can_post_ahead",
    "rank_ahead",
    "posted_ahead",
    "receipts",
    "execution_for",
]

#: Runtimes whose execution is described here.
RUNTIMES = ("torch", "mpi")
#: Buffer devices.
DEVICES = ("cpu", "cuda")

#: Bytes per lane segment on CPU: chunks of at least two segments are cut into lanes. 4 MiB
#: measured best on Gloo over loopback (1 MiB costs more per-lane Python overhead than the overlap
#: saves); ``COLLSIM_SEGMENT_BYTES`` overrides it at import.
SEGMENT_BYTES = int(os.environ.get("COLLSIM_SEGMENT_BYTES", 4 << 20))
#: Most lanes a plan uses.
MAX_LANES = 16
#: CPU buffers of at most this many bytes post each step's receives one step ahead where they can.
#: 0 turns it off; ``COLLSIM_PREPOST_BYTES`` overrides it at import.
PREPOST_BYTES = int(os.environ.get("COLLSIM_PREPOST_BYTES", 4 << 20))
#: One-lane CPU messages (all a step sends from one rank to another) of at least this many bytes
#: never share a link with a message of the next step to or from another partner (see Partner
#: switches above). 0 turns that off; ``COLLSIM_SWITCH_BYTES`` overrides it at import. Below it a
#: message's own transfer is short against the handshake or receipt it costs.
SWITCH_BYTES = int(os.environ.get("COLLSIM_SWITCH_BYTES", 256 << 10))

#: Fields of the torch runtime's compiled plan (``collectives.distributed._Plan``) and what the
#: simulator makes of each. A new field (a new tactic) fails ``tests/test_execution.py`` until it
#: is listed here with the simulator's account of it.
MODELED_PLAN_FIELDS = {
    "algorithm": "the schedule the simulator walks",
    "lanes": "Execution.lanes: each transfer as that many messages, the last lane's reduction on the critical path",
    "to_global": "rank translation only (no cost)",
    "scratch": "memory only (no cost)",
    "work": "memory only (no cost)",
    "ahead": "Execution.posted: transfers whose receives were posted a step ahead start when their sender is ready, "
             "after ModelParams.posted_alpha",
    "receipt": "Execution.receipts: a receipted transfer is done for its sender at max(arrival, receiver ready) "
               "+ posted_alpha + latency; the one-element buffer is memory only",
}


def _check(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of: {', '.join(allowed)}; got {value!r}")
    return value


def lanes(nchunks: int, count: int, itemsize: int, device: str = "cpu") -> int:
    """Lanes the torch runtime runs a buffer of ``count`` elements in (1: none).

    CUDA buffers always use one (NCCL pipelines inside each transfer); CPU buffers one lane per
    :data:`SEGMENT_BYTES` of a chunk, once a chunk holds two segments, at most :data:`MAX_LANES`.
    """
    if device != "cpu" or count == 0:
        return 1
    chunk_bytes = -(-count // nchunks) * itemsize
    return int(max(1, min(MAX_LANES, chunk_bytes // SEGMENT_BYTES)))


def posts_ahead(nbytes: int, device: str = "cpu", nlanes: int = 1) -> bool:
    """Whether the torch runtime posts receives a step ahead for a buffer of ``nbytes`` (one lane, CPU)."""
    return device == "cpu" and nlanes == 1 and nbytes <= PREPOST_BYTES


def can_post_ahead(busy: Sequence[tuple[int, int]], copy_recvs: Sequence[tuple[int, int]]) -> bool:
    """Whether a rank may post its next step's receives while a step is in flight.

    ``busy`` are the element ranges the step in flight sends, receives into or reduces into;
    ``copy_recvs`` the ranges the next step's copy-receives write (its reduce-receives land in the
    other scratch region). Each copy-receive writes its slice as soon as the peer's message
    arrives, so it must not overlap anything the step in flight touches.
    """
    return all(hi <= a or b <= lo for lo, hi in copy_recvs for a, b in busy)


def rank_ahead(program, itemsize: int = 4) -> tuple[bool, ...]:
    """One rank's decisions: entry ``k`` says whether its step ``k + 1`` is posted during its step ``k``.

    ``program`` is the rank's :class:`collectives.plan.RankProgram` (element ranges, empty
    transfers dropped). A step is posted ahead when its copy-receives land where the step in flight
    does not touch (:func:`can_post_ahead`) and it receives no message of :data:`SWITCH_BYTES` or
    more from a rank other than those the step in flight receives from (Partner switches above).
    """
    def busy(step):
        return [(t.lo, t.hi) for t in step.sends] + [(t.lo, t.hi) for t in step.recvs]

    def switches(a, b) -> bool:
        if SWITCH_BYTES <= 0 or not a.recvs:
            return False
        old = {t.peer for t in a.recvs}
        size: dict[int, int] = {}
        for t in b.recvs:
            size[t.peer] = size.get(t.peer, 0) + t.size * itemsize
        return any(n >= SWITCH_BYTES and peer not in old for peer, n in size.items())

    return tuple(can_post_ahead(busy(a), [(t.lo, t.hi) for t in b.recvs if not t.reduce]) and not switches(a, b)
                 for a, b in itertools.pairwise(program.steps))


def _pair_bytes(src: np.ndarray, dst: np.ndarray, size: np.ndarray, p: int) -> np.ndarray:
    """Per transfer: the bytes of every transfer of the step between the same two ranks, together."""
    _, inv = np.unique(src * p + dst, return_inverse=True)
    return np.bincount(inv, weights=size)[inv]


def receipts(schedule: Schedule, count: int, itemsize: int = 4) -> tuple[np.ndarray | None, ...] | None:
    """Per step: which transfers their sender waits a receipt for (None: none of the step's).

    A transfer is receipted when its sender sends its receiver at least :data:`SWITCH_BYTES` in the
    step and the next step in which its sender sends anything sends to a rank it does not send to
    in this step (a ring of several channels sends to the same ranks every step: no receipts).
    Zero-element transfers are dropped, as the runtime drops them. Returns None when no transfer
    is receipted.
    """
    if SWITCH_BYTES <= 0 or count * itemsize < SWITCH_BYTES:
        return None
    p = schedule.nranks
    offsets = schedule.chunk_offsets(count) * itemsize
    # (sender * p + receiver) of every rank's next step that sends, sorted
    following = np.zeros(0, dtype=np.int64)
    out: list[np.ndarray | None] = [None] * schedule.nsteps
    found = False
    for i in range(schedule.nsteps - 1, -1, -1):
        step = schedule.make_step(i)
        size = offsets[step.chunk + step.nchunks] - offsets[step.chunk]
        live = size > 0
        if not live.any():
            continue
        src, dst = step.src[live], step.dst[live]
        pairs = np.sort(src * p + dst)
        pairs = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])]
        if np.array_equal(pairs, following):  # the same partners as the next step (a ring)
            continue
        senders = np.unique(src)
        theirs = np.isin(following // p, senders)
        if np.bincount(src, weights=size[live], minlength=p).max() >= SWITCH_BYTES:
            ahead = following[theirs]
            switching = np.unique(ahead[~np.isin(ahead, pairs)] // p)  # a new partner next
            big = np.zeros(live.size, dtype=bool)
            big[live] = (_pair_bytes(src, dst, size[live], p) >= SWITCH_BYTES) & np.isin(src, switching)
            if big.any():
                out[i] = big
                found = True
        following = np.union1d(following[~theirs], pairs)
    return tuple(out) if found else None


def posted_ahead(schedule: Schedule, count: int, itemsize: int = 4) -> tuple[np.ndarray | None, ...]:
    """Per step: which transfers' receivers posted them a step ahead (None: a step with no transfers).

    Computed for every rank at once, with the rule of :func:`rank_ahead`: a rank posts its step's
    receives ahead when it took part in an earlier step, none of its copy-receives overlaps what
    it sends or receives in its previous step, and none of its receives is a message of
    :data:`SWITCH_BYTES` or more from a rank it did not receive from in its previous step (when it
    received in it). Zero-element transfers are dropped, as the runtime drops them (their entries
    are False).
    """
    p = schedule.nranks
    offsets = schedule.chunk_offsets(count)
    prev = np.full(p, -1, dtype=np.int64)  # each rank's last step with a transfer
    touched: dict[int, tuple] = {}  # step -> (ranks sorted, lo, hi, ptr by rank) of what it touched
    senders_of: dict[int, tuple] = {}  # step -> (receiver * p + sender, receiver) per transfer
    out: list[np.ndarray | None] = []
    for i in range(schedule.nsteps):
        step = schedule.make_step(i)
        lo = offsets[step.chunk]
        hi = offsets[step.chunk + step.nchunks]
        live = hi > lo
        if not live.any():
            out.append(None)
            continue
        src, dst, red = step.src[live], step.dst[live], step.reduce[live]
        lo, hi = lo[live], hi[live]
        ok = np.zeros(p, dtype=bool)
        ranks = np.unique(dst)
        ok[ranks] = prev[ranks] >= 0
        nbytes = (hi - lo) * itemsize
        if SWITCH_BYTES > 0 and np.bincount(dst, weights=nbytes, minlength=p).max() >= SWITCH_BYTES:
            # a large message from a rank the receiver did not receive from in its previous step
            big = np.flatnonzero(ok[dst] & (_pair_bytes(src, dst, nbytes, p) >= SWITCH_BYTES))
            for s in np.unique(prev[dst[big]]).tolist():
                rows = big[prev[dst[big]] == s]
                pairs, receivers = senders_of[s]
                fresh = ~np.isin(dst[rows] * p + src[rows], pairs) & np.isin(dst[rows], receivers)
                ok[dst[rows][fresh]] = False
        copy = np.flatnonzero(~red & ok[dst])
        for s in np.unique(prev[dst[copy]]).tolist():
            rows = copy[prev[dst[copy]] == s]
            b_rank, b_lo, b_hi, ptr = touched[s]
            r = dst[rows]
            n = ptr[r + 1] - ptr[r]
            which = np.repeat(np.arange(rows.size), n)
            pos = np.repeat(ptr[r] - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
            clash = (lo[rows][which] < b_hi[pos]) & (b_lo[pos] < hi[rows][which])
            ok[r[np.unique(which[clash])]] = False
        mask = np.zeros(live.size, dtype=bool)
        mask[live] = ok[dst]
        out.append(mask)
        # what this step touched, per rank: sends by their sender, receives by their receiver
        t_rank = np.concatenate([src, dst])
        order = np.argsort(t_rank, kind="stable")
        touched[i] = (t_rank[order], np.concatenate([lo, lo])[order], np.concatenate([hi, hi])[order],
                      np.searchsorted(t_rank[order], np.arange(p + 1)))
        senders_of[i] = (dst * p + src, dst)
        prev[t_rank] = i
        if len(touched) > 4:  # keep only the steps some rank still points at
            keep = set(np.unique(prev).tolist())
            for s in [s for s in touched if s not in keep]:
                del touched[s]
                del senders_of[s]
    return tuple(out)


@dataclass(frozen=True)
class Execution:
    """How a runtime executes one call of a schedule, beyond the schedule's steps.

    Attributes
    ----------
    runtime : {"torch", "mpi"}
    device : {"cpu", "cuda"}
    lanes : int
        Messages each transfer is cut into (1: none).
    posted : tuple of (ndarray of bool or None), or None
        Per step, per transfer: its receiver posted it a step ahead. None: nothing is.
    receipts : tuple of (ndarray of bool or None), or None
        Per step, per transfer: its sender waits for the receiver's receipt (None for a step: none
        of its transfers). None: nothing is.
    """

    runtime: str = "mpi"
    device: str = "cpu"
    lanes: int = 1
    posted: tuple | None = None
    receipts: tuple | None = None

    @property
    def posts_ahead(self) -> bool:
        """Whether any receive is posted ahead."""
        return self.posted is not None

    @property
    def per_step(self) -> bool:
        """Whether some steps run differently from others (receives posted ahead or receipts)."""
        return self.posted is not None or self.receipts is not None

    @property
    def plain(self) -> bool:
        """Whether the runtime runs the schedule's steps as they are (no tactic)."""
        return self.lanes == 1 and not self.per_step

    def describe(self) -> str:
        """One line for tables and reports."""
        parts = [f"{self.runtime} on {self.device}"]
        if self.lanes > 1:
            parts.append(f"{self.lanes} lanes")
        if self.posted is not None:
            n = sum(int(m.sum()) for m in self.posted if m is not None)
            total = sum(m.size for m in self.posted if m is not None)
            parts.append(f"receives posted ahead ({n} of {total} transfers)")
        if self.receipts is not None:
            n = sum(int(m.sum()) for m in self.receipts if m is not None)
            parts.append(f"{n} transfers receipted")
        return ", ".join(parts) if len(parts) > 1 else parts[0] + ", plain steps"


def execution_for(schedule: Schedule, nbytes: int, itemsize: int = 4, *, runtime: str = "torch",
                  device: str = "cpu") -> Execution:
    """The :class:`Execution` of ``schedule`` on a buffer of ``nbytes`` bytes, as ``runtime`` runs it.

    Parameters
    ----------
    schedule : Schedule
    nbytes : int
        The whole buffer (for reduce_scatter the input, for all_gather the output).
    itemsize : int
        Bytes per element.
    runtime : {"torch", "mpi"}
    device : {"cpu", "cuda"}
    """
    _check("runtime", runtime, RUNTIMES)
    _check("device", device, DEVICES)
    if runtime != "torch" or device != "cpu":
        return Execution(runtime, device)
    count = max(int(nbytes) // itemsize, 0)
    count -= count % schedule.nblocks
    n = lanes(schedule.nchunks, count, itemsize, device)
    posted = posted_ahead(schedule, count, itemsize) if posts_ahead(count * itemsize, device, n) else None
    if posted is not None and not any(m is not None and m.any() for m in posted):
        posted = None
    return Execution(runtime, device, n, posted, receipts(schedule, count, itemsize) if n == 1 else None)
