"""The flow model's event loops, compiled: the event clock across steps, and one step's large group.

:class:`sim.flow._Clock` owns the tables (the live steps' transfers, the (step, rank) tables, the
clock's arcs) and generates steps as ranks reach them; :func:`run` steps through the events. It
returns when it is done, when every rank is ready at one instant with nothing in flight, or when a
rank needs a step that is not generated yet (the caller generates it and calls again: every piece
of state lives in the arrays passed in, so the call goes on where it stopped).

The model is :mod:`sim.flow`'s (see its docstring), event for event:

* a rank that finished a step enters the first live step after it that involves it; a transfer
  starts ``alpha`` after both its ranks entered its step (after its sender did, when eager);
* at each event the flows whose last byte left end (their sender's part is done then, or for a
  receipted transfer at ``max(arrival, when the receiver entered) + back``; the receiver's at
  ``max(arrival, when it entered) + reduction``), the ranks done with a step move on, and the
  transfers due start;
* when a flow that shares an arc starts or ends, every rate is recomputed max-min fairly by
  progressive filling: the lowest ``capacity left / flows left`` over the arcs freezes the flows on
  the arcs at that level (within ``1e-12``), whose rates come off their arcs' capacities; a flow
  alone on all its arcs starts at its slowest arc's rate;
* past the budget of exact events (``CLOCK_EXACT_EVENTS`` per step generated), flows that end or
  start within ``EVENT_WINDOW`` of the shortest transfer time of the live steps join the event; a
  flow started early by that gets as much more to send.

:func:`group_events` is the step loop's event loop for one large group of flows of one step (the
same sharing, every rate filled again at each event).

Compiled with numba (``cache=True``: the first use on a machine compiles them, about 20 s on 2
cores, announced on stderr by :func:`note_first_compile`; later processes load them from the cache
in about 0.6 s). The same work in numpy costs tens of small array operations per event; here an
event costs the loops over the flows in flight, so a thousand-rank pipeline with ranks that drift
apart takes a fraction of a second instead of seconds.
"""

from __future__ import annotations

import functools
import os
import sys

import numpy as np
from numba import njit

__all__ = ["run", "group_events", "grouped_events", "overlap_groups", "step_groups", "note_first_compile", "istate", "fstate", "DONE", "SYNC", "NEED_STEP", "PHASE",
           "N_ACT", "N_PEND", "N_MV", "EVENTS", "BUDGET", "TOP", "TR_BASE", "LIVE_LO", "EXHAUSTED", "NSTEPS", "RESYNC",
           "PH_START", "PH_LOOP"]

# what run() returns
DONE = 0  # nothing in flight or waiting: every rank is done (or the schedule deadlocks)
SYNC = 1  # every rank ready at fstate[T] with nothing in flight and no step of theirs started
NEED_STEP = 2  # a rank moving on needs the next step generated (or EXHAUSTED set)

# the integer state (istate)
PHASE = 0  # where the next call goes on: PH_START, PH_LOOP or PH_ENDED
N_ACT = 1  # flows in flight
N_PEND = 2  # transfers waiting for their start time
N_MV = 3  # ranks waiting to move on (a stack)
EVENTS = 4  # rate recomputations so far
BUDGET = 5  # exact ones allowed so far
TOP = 6  # highest step that ever had a flow in flight
TR_BASE = 7  # clock id of the transfer table's first row
LIVE_LO = 8  # live steps before this position of the order are dropped (every rank is through)
EXHAUSTED = 9  # every step is generated
NSTEPS = 10  # the schedule's steps
RESYNC = 11  # return SYNC at the first instant the ranks are ready together
RERATE = 12  # (PH_ENDED) rates to recompute
N_SEEDS = 13  # (PH_ENDED) arcs on the seed list
_NI = 14

# the float state (fstate)
T = 0  # the clock
LIMIT = 1  # (PH_ENDED) this event takes what ends or starts up to here
_NF = 2

PH_START = 0  # move the ranks on the stack on, then events
PH_LOOP = 1  # the next event
PH_ENDED = 2  # in an event: the ranks on the stack move on, then the due transfers start

_REL = 1e-12  # as sim.flow._REL
_SCAN_ROUNDS = 8  # rounds of max-min filling that scan the arcs before the shares go on a heap


def istate(resync: bool, nsteps: int, tr_base: int) -> np.ndarray:
    """A fresh integer state."""
    out = np.zeros(_NI, dtype=np.int64)
    out[PHASE], out[TOP], out[TR_BASE], out[NSTEPS], out[RESYNC] = PH_START, -1, tr_base, nsteps, int(resync)
    return out


def fstate() -> np.ndarray:
    """A fresh float state."""
    out = np.zeros(_NF)
    out[T] = -np.inf
    return out


@njit(cache=True, inline="always")
def _part_done(e, time, p, tmax, left, parts, rowstep, mv_after, mv_rank, mv_time, ist):
    """A part of (step, rank) entry ``e`` is done at ``time``; the rank goes on the stack when it was the last."""
    if time > tmax[e]:
        tmax[e] = time
    left[e] -= 1
    parts[e // p] -= 1
    if left[e] == 0:
        n = ist[N_MV]
        mv_after[n] = rowstep[e // p]
        mv_rank[n] = e % p
        mv_time[n] = tmax[e]
        ist[N_MV] = n + 1


@njit(cache=True, inline="always")
def _try_start(cid, base, enter, srow, drow, eager, alpha, started, p_id, p_time, ist):
    """Start transfer ``cid`` if both its ranks entered its step (its sender, when eager)."""
    k = cid - base
    if started[k]:
        return
    es = enter[srow[k]]
    if np.isnan(es):
        return
    ed = enter[drow[k]]
    if eager[k]:
        start = es + alpha[k]
    elif np.isnan(ed):
        return
    else:
        start = max(es, ed) + alpha[k]
    started[k] = True
    n = ist[N_PEND]
    p_id[n] = cid
    p_time[n] = start
    ist[N_PEND] = n + 1


@njit(cache=True)
def _move_on(p, enter, left, tmax, involved, sends, recvs, parts, rowstep, order_idx, order_row,
             srow, drow, eager, alpha, started, arrival, red, back, cur, ready, p_id, p_time,
             mv_after, mv_rank, mv_time, ist):
    """Move the ranks on the stack into their next steps; False when one needs a step not generated yet."""
    base = ist[TR_BASE]
    while ist[N_MV] > 0:
        n = ist[N_MV] - 1
        after, r, time = mv_after[n], mv_rank[n], mv_time[n]
        found = -1
        for j in range(ist[LIVE_LO], order_idx.size):
            if order_idx[j] > after and involved[order_row[j] * p + r]:
                found = j
                break
        ist[N_MV] = n
        if found < 0:
            if ist[EXHAUSTED] == 0:
                ist[N_MV] = n + 1  # (stays on the stack)
                return False
            cur[r] = ist[NSTEPS]
            ready[r] = time
            continue
        e = order_row[found] * p + r
        enter[e] = time
        cur[r] = order_idx[found]
        ready[r] = time
        for c in range(sends.shape[1]):
            cid = sends[e, c]
            if cid < 0:
                break
            _try_start(cid, base, enter, srow, drow, eager, alpha, started, p_id, p_time, ist)
        for c in range(recvs.shape[1]):
            cid = recvs[e, c]
            if cid < 0:
                break
            _try_start(cid, base, enter, srow, drow, eager, alpha, started, p_id, p_time, ist)
        for c in range(recvs.shape[1]):  # eager messages that arrived before the rank came
            cid = recvs[e, c]
            if cid < 0:
                break
            k = cid - base
            if not np.isnan(arrival[k]):
                _part_done(e, max(arrival[k], time) + red[k], p, tmax, left, parts, rowstep,
                           mv_after, mv_rank, mv_time, ist)
                if back[k] > 0:  # its receipt leaves now, and its sender waited for it
                    _part_done(srow[k], max(arrival[k], time) + back[k], p, tmax, left, parts, rowstep,
                               mv_after, mv_rank, mv_time, ist)
    return True


@njit(cache=True, inline="always")
def _link(i, a_id, base, tarcs, tlens, width, head, nxt, prv):
    """Put the flow in flight at position ``i`` on the lists of the flows on each of its arcs."""
    k = a_id[i] - base
    for c in range(tlens[k]):
        e = i * width + c
        a = tarcs[k, c]
        h = head[a]
        nxt[e] = h
        prv[e] = -1
        if h >= 0:
            prv[h] = e
        head[a] = e


@njit(cache=True, inline="always")
def _unlink(i, a_id, base, tarcs, tlens, width, head, nxt, prv):
    """Take the flow at position ``i`` off its arcs' lists."""
    k = a_id[i] - base
    for c in range(tlens[k]):
        e = i * width + c
        if prv[e] >= 0:
            nxt[prv[e]] = nxt[e]
        else:
            head[tarcs[k, c]] = nxt[e]
        if nxt[e] >= 0:
            prv[nxt[e]] = prv[e]


@njit(cache=True, inline="always")
def _take(e, sel, n_sel, mine, width, nxt):
    """Add to ``sel[:n_sel]`` the flows on the arc list that starts at entry ``e`` not marked in ``mine``
    (marking them); returns the new ``n_sel``."""
    while e >= 0:
        j = e // width
        if not mine[j]:
            mine[j] = True
            sel[n_sel] = j
            n_sel += 1
        e = nxt[e]
    return n_sel


@njit(cache=True)
def _spread(sel, n_sel, mine, seen, a_id, base, tarcs, tlens, load, width, head, nxt):
    """Add to the flows ``sel[:n_sel]`` (marked in ``mine``) every flow connected to them through arcs they
    share, transitively (arcs visited are marked in ``seen``, which the caller clears); returns the new
    ``n_sel``."""
    q = 0
    while q < n_sel:
        k = a_id[sel[q]] - base
        q += 1
        for c in range(tlens[k]):
            a = tarcs[k, c]
            if load[a] < 2 or seen[a]:
                continue
            seen[a] = True
            n_sel = _take(head[a], sel, n_sel, mine, width, nxt)
    return n_sel


@njit(cache=True, inline="always")
def _push(hk, ha, hv, n, key, arc, ver):
    """Push (key, arc, version) on the binary min-heap of the first ``n`` entries; returns the new size."""
    i = n
    while i > 0:
        up = (i - 1) >> 1
        if hk[up] <= key:
            break
        hk[i], ha[i], hv[i] = hk[up], ha[up], hv[up]
        i = up
    hk[i], ha[i], hv[i] = key, arc, ver
    return n + 1


@njit(cache=True, inline="always")
def _pop(hk, ha, hv, n):
    """Remove the smallest entry of the heap of ``n`` entries (read it at index 0 first); returns the new size."""
    n -= 1
    key, arc, ver = hk[n], ha[n], hv[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and hk[c + 1] < hk[c]:
            c += 1
        if key <= hk[c]:
            break
        hk[i], ha[i], hv[i] = hk[c], ha[c], hv[c]
        i = c
    if n > 0:
        hk[i], ha[i], hv[i] = key, arc, ver
    return n


@njit(cache=True, inline="always")
def _freeze(nh, hit, level, head, fill, lst, frozen, rate, a_id, base, tarcs, tlens, dec, cnt, ver):
    """Freeze at ``level`` the flows not frozen yet on the arcs ``hit[:nh]``: their rates come off their arcs
    (``dec``, ``cnt``), and those arcs are listed after the hit ones in ``hit``, each once (marked by
    a negative ``ver``: the caller unmarks them). Returns the flows frozen and the arcs listed."""
    n = 0
    nd = 0
    for h in range(nh):
        a = hit[h]
        for q in range(head[a], fill[a]):
            i = lst[q]
            if frozen[i]:
                continue
            frozen[i] = True
            rate[i] = level
            n += 1
            k = a_id[i] - base
            for c in range(tlens[k]):
                b = tarcs[k, c]
                if ver[b] >= 0:
                    ver[b] = -ver[b] - 1
                    hit[nh + nd] = b
                    nd += 1
                dec[b] += level
                cnt[b] -= 1
    return n, nd


@njit(cache=True)
def _scratch(na):
    """The per-arc work arrays of :func:`_maxmin` for ``na`` arcs: ``cnt``, ``capr``, ``dec``, ``touched``,
    ``head``, ``fill``, ``hit`` (twice as long) and ``ver`` (``cnt``, ``dec`` and ``ver`` zero)."""
    return (np.zeros(na, dtype=np.int64), np.empty(na), np.zeros(na), np.empty(na, dtype=np.int64),
            np.empty(na, dtype=np.int64), np.empty(na, dtype=np.int64), np.empty(2 * na, dtype=np.int64),
            np.zeros(na, dtype=np.int64))


@njit(cache=True)
def _maxmin(sel, n_sel, a_id, base, tarcs, tlens, cap, rate, cnt, capr, dec, touched, head, fill, lst, frozen, hit,
            ver):
    """Max-min fair rates of the flows ``sel[:n_sel]`` (which share no arc with other flows in flight) by
    progressive filling; ``cnt`` all zero on entry and exit. Returns ``lst`` (grown when needed).

    Each round the lowest share ``capacity left / flows left`` over the arcs is the level; the flows
    on every arc whose share is within ``1e-12`` of it freeze at the level, and their rates come off
    their arcs. The first rounds scan the arcs flows still cross (few distinct levels: a few passes);
    after ``_SCAN_ROUNDS`` the shares go on a heap (an arc's entry is stale once its version moved
    on), so a round then costs the arcs it touches, not every arc.
    """
    nt = 0
    total = 0
    for s in range(n_sel):
        k = a_id[sel[s]] - base
        for c in range(tlens[k]):
            a = tarcs[k, c]
            if cnt[a] == 0:
                touched[nt] = a
                nt += 1
            cnt[a] += 1
        total += tlens[k]
    if lst.size < total:
        lst = np.empty(2 * total, dtype=np.int64)
    pos = 0
    for j in range(nt):
        a = touched[j]
        head[a] = pos
        fill[a] = pos
        pos += cnt[a]
        capr[a] = cap[a]
        dec[a] = 0.0
        ver[a] = 0
    for s in range(n_sel):
        i = sel[s]
        k = a_id[i] - base
        for c in range(tlens[k]):
            a = tarcs[k, c]
            lst[fill[a]] = i
            fill[a] += 1
        frozen[i] = False
    remaining = n_sel
    # the first rounds scan the arcs that flows still cross (most fillings end within them) ...
    rounds = 0
    while remaining > 0 and rounds < _SCAN_ROUNDS:
        rounds += 1
        level = np.inf
        for j in range(nt):
            a = touched[j]
            s = capr[a] / cnt[a]
            if s < level:
                level = s
        top = level * (1 + _REL)
        nh = 0
        for j in range(nt):
            a = touched[j]
            if capr[a] / cnt[a] <= top:
                hit[nh] = a
                nh += 1
        n, nd = _freeze(nh, hit, level, head, fill, lst, frozen, rate, a_id, base, tarcs, tlens, dec, cnt, ver)
        remaining -= n
        for d in range(nh, nh + nd):
            ver[hit[d]] = -ver[hit[d]]  # (unmarked)
        # take the frozen flows' rates off their arcs; drop the arcs no flow left crosses
        kept = 0
        for j in range(nt):
            a = touched[j]
            if dec[a] != 0.0:
                capr[a] = max(capr[a] - dec[a], 0.0)
                dec[a] = 0.0
            if cnt[a] > 0:
                touched[kept] = a
                kept += 1
        nt = kept
    if remaining == 0:
        return lst
    # ... and many levels go on with the shares on a heap
    hk = np.empty(nt + total)
    ha = np.empty(nt + total, dtype=np.int64)
    hv = np.empty(nt + total, dtype=np.int64)
    hn = 0
    for j in range(nt):
        a = touched[j]
        hn = _push(hk, ha, hv, hn, capr[a] / cnt[a], a, ver[a])
    while remaining > 0:
        while ha[0] < 0 or hv[0] != ver[ha[0]]:  # stale entries
            hn = _pop(hk, ha, hv, hn)
        level = hk[0]
        top = level * (1 + _REL)
        nh = 0
        while hn > 0 and hk[0] <= top:
            a = ha[0]
            if hv[0] == ver[a]:
                hit[nh] = a
                nh += 1
                ver[a] += 1  # (taken: its other entries are stale)
            hn = _pop(hk, ha, hv, hn)
        n, nd = _freeze(nh, hit, level, head, fill, lst, frozen, rate, a_id, base, tarcs, tlens, dec, cnt, ver)
        remaining -= n
        # take the frozen flows' rates off their arcs; the arcs that flows still cross get their new share
        for d in range(nh, nh + nd):
            b = hit[d]
            ver[b] = -ver[b]  # (unmarked, and one version on)
            capr[b] = max(capr[b] - dec[b], 0.0)
            dec[b] = 0.0
            if cnt[b] > 0:
                hn = _push(hk, ha, hv, hn, capr[b] / cnt[b], b, ver[b])
    return lst


@njit(cache=True)
def run(ist, fst, window, shortest,
        size, red, back, lat, alpha, eager, started, arrival, srow, drow, tstep, tarcs, tlens,
        enter, left, tmax, involved, sends, recvs, parts, rowstep, order_idx, order_row,
        cap, load, carried, cur, ready,
        a_id, a_rem, a_rate, p_id, p_time, mv_after, mv_rank, mv_time, seeds, seeded):
    """Run the clock from where ``ist`` and ``fst`` say; returns DONE, SYNC or NEED_STEP.

    ``window``: EVENT_WINDOW; ``shortest``: the shortest transfer time of each step of the order;
    ``seeds`` and ``seeded`` (one entry per clock arc): the arcs whose flows' rates may change, kept
    across calls (``seeded`` all False between events).
    """
    p = cur.size
    base = ist[TR_BASE]
    na = cap.size
    cnt, capr, dec, touched, head, fill, hit, ver = _scratch(na)
    lst = np.empty(16, dtype=np.int64)
    nmax = a_id.size
    frozen = np.zeros(nmax, dtype=np.bool_)
    t_end = np.empty(nmax)
    late = np.empty(nmax)
    ended = np.empty(nmax, dtype=np.int64)
    ended_at = np.empty(nmax)
    n_seeds = 0
    sel = np.empty(nmax, dtype=np.int64)  # the flows whose rates are recomputed
    mine = np.zeros(nmax, dtype=np.bool_)
    seen = np.zeros(na, dtype=np.bool_)
    # every flow in flight on the list of each of its arcs: entry i * width + c is the c-th arc of the
    # flow at position i; head[a] is arc a's first entry (-1: none); rebuilt at every call
    width = tarcs.shape[1]
    lhead = np.full(na, -1, dtype=np.int64)
    nxt = np.empty(nmax * width, dtype=np.int64)
    prv = np.empty(nmax * width, dtype=np.int64)
    for i in range(ist[N_ACT]):
        _link(i, a_id, base, tarcs, tlens, width, lhead, nxt, prv)

    resume = False
    if ist[PHASE] != PH_LOOP:
        if not _move_on(p, enter, left, tmax, involved, sends, recvs, parts, rowstep, order_idx, order_row,
                        srow, drow, eager, alpha, started, arrival, red, back, cur, ready, p_id, p_time,
                        mv_after, mv_rank, mv_time, ist):
            return NEED_STEP
        resume = ist[PHASE] == PH_ENDED
        ist[PHASE] = PH_LOOP
    while True:
        t = fst[T]
        n_act = ist[N_ACT]
        if resume:
            resume = False
            limit = fst[LIMIT]
            need = ist[RERATE] != 0
            n_seeds = ist[N_SEEDS]
        else:
            n_pend = ist[N_PEND]
            t_next = np.inf
            for i in range(n_act):
                t_end[i] = t + a_rem[i] / a_rate[i]
                if t_end[i] < t_next:
                    t_next = t_end[i]
            for i in range(n_pend):
                if p_time[i] < t_next:
                    t_next = p_time[i]
            if t_next == np.inf:
                return DONE
            for i in range(n_act):
                a_rem[i] = max(a_rem[i] - a_rate[i] * (t_next - t), 0.0)
            t = t_next
            fst[T] = t
            limit = t * (1 + _REL)
            if ist[EVENTS] >= ist[BUDGET]:
                # past the budget, events closer than a fraction of the shortest transfer of the live
                # steps are merged (flows that start early are made as much longer, below)
                short = np.inf
                for j in range(ist[LIVE_LO], shortest.size):
                    short = min(short, shortest[j])
                if short < np.inf:
                    limit += window * short
            need = False
            n_seeds = 0
            n_end = 0
            i = 0
            while i < n_act:
                if t_end[i] > limit:
                    i += 1
                    continue
                # the flow at i ends: off its arcs, and the last flow in flight takes its place
                k = a_id[i] - base
                for c in range(tlens[k]):
                    load[tarcs[k, c]] -= 1
                ended[n_end] = k
                ended_at[n_end] = t_end[i]
                n_end += 1
                _unlink(i, a_id, base, tarcs, tlens, width, lhead, nxt, prv)
                n_act -= 1
                if i < n_act:
                    _unlink(n_act, a_id, base, tarcs, tlens, width, lhead, nxt, prv)
                    a_id[i], a_rem[i], a_rate[i], t_end[i] = a_id[n_act], a_rem[n_act], a_rate[n_act], t_end[n_act]
                    _link(i, a_id, base, tarcs, tlens, width, lhead, nxt, prv)
            ist[N_ACT] = n_act
            if n_end:
                for m in range(n_end):  # other flows on an ended flow's arcs may speed up
                    k = ended[m]
                    for c in range(tlens[k]):
                        a = tarcs[k, c]
                        if load[a] > 0:
                            need = True
                            if not seeded[a]:
                                seeded[a] = True
                                seeds[n_seeds] = a
                                n_seeds += 1
                for m in range(n_end):
                    k = ended[m]
                    end = ended_at[m]
                    arr = end + lat[k]
                    arrival[k] = arr
                    ed = enter[drow[k]]
                    if back[k] <= 0:
                        _part_done(srow[k], end, p, tmax, left, parts, rowstep, mv_after, mv_rank, mv_time, ist)
                    elif not np.isnan(ed):  # a receipted sender is done when the receipt is back
                        _part_done(srow[k], max(arr, ed) + back[k], p, tmax, left, parts, rowstep,
                                   mv_after, mv_rank, mv_time, ist)
                    if not np.isnan(ed):  # (a receiver not there yet gets an eager message when it comes)
                        _part_done(drow[k], max(arr, ed) + red[k], p, tmax, left, parts, rowstep,
                                   mv_after, mv_rank, mv_time, ist)
                if not _move_on(p, enter, left, tmax, involved, sends, recvs, parts, rowstep, order_idx, order_row,
                                srow, drow, eager, alpha, started, arrival, red, back, cur, ready, p_id, p_time,
                                mv_after, mv_rank, mv_time, ist):
                    ist[PHASE] = PH_ENDED
                    ist[RERATE] = int(need)
                    ist[N_SEEDS] = n_seeds
                    fst[LIMIT] = limit
                    return NEED_STEP
        # the steps at the front that every rank is through are no longer live
        lo = ist[LIVE_LO]
        while lo < order_row.size and parts[order_row[lo]] == 0:
            lo += 1
        ist[LIVE_LO] = lo
        # the transfers due start
        n_pend = ist[N_PEND]
        first = n_act
        kept = 0
        for i in range(n_pend):
            if p_time[i] <= limit:
                cid = p_id[i]
                k = cid - base
                a_id[n_act] = cid
                a_rem[n_act] = size[k]
                late[n_act] = p_time[i] - t
                if tstep[k] > ist[TOP]:
                    ist[TOP] = tstep[k]
                for c in range(tlens[k]):
                    a = tarcs[k, c]
                    carried[a] += size[k]
                    load[a] += 1
                _link(n_act, a_id, base, tarcs, tlens, width, lhead, nxt, prv)
                n_act += 1
            else:
                p_id[kept] = p_id[i]
                p_time[kept] = p_time[i]
                kept += 1
        ist[N_PEND] = kept
        ist[N_ACT] = n_act
        n_sel = 0
        for i in range(first, n_act):
            # a new flow alone on all its arcs runs at its slowest arc's rate and slows nobody down
            k = a_id[i] - base
            r = np.inf
            shared = False
            for c in range(tlens[k]):
                a = tarcs[k, c]
                r = min(r, cap[a])
                if load[a] > 1:
                    shared = True
            a_rate[i] = r
            if shared:
                need = True
                sel[n_sel] = i
                mine[i] = True
                n_sel += 1
        if n_act:
            if need:
                # only the flows connected to the changed arcs through arcs they share can change rate
                for m in range(n_seeds):
                    n_sel = _take(lhead[seeds[m]], sel, n_sel, mine, width, nxt)
                n_sel = _spread(sel, n_sel, mine, seen, a_id, base, tarcs, tlens, load, width, lhead, nxt)
                for s in range(n_sel):
                    k = a_id[sel[s]] - base
                    for c in range(tlens[k]):
                        seen[tarcs[k, c]] = False
                lst = _maxmin(sel, n_sel, a_id, base, tarcs, tlens, cap, a_rate, cnt, capr, dec, touched, head, fill,
                              lst, frozen, hit, ver)
            for s in range(n_sel):
                mine[sel[s]] = False
            if first < n_act and limit > t * (1 + _REL):
                # flows started up to a window early end as much later (at the rate they start with)
                for i in range(first, n_act):
                    a_rem[i] += a_rate[i] * max(late[i], 0.0)
            ist[EVENTS] += 1
        for m in range(n_seeds):
            seeded[seeds[m]] = False
        n_seeds = 0
        ist[N_SEEDS] = 0
        if not n_act and ist[RESYNC]:
            k = cur.min()
            if ist[TOP] < k:
                same = True
                for r in range(1, p):
                    if ready[r] != ready[0]:
                        same = False
                        break
                if same:
                    fst[T] = ready[0]
                    return SYNC


@njit(cache=True)
def _routes(eptr, earc):
    """The arcs of flows ``f`` (``earc[eptr[f]:eptr[f + 1]]``) as rows padded with -1, and their counts."""
    n = eptr.size - 1
    width = 1
    for f in range(n):
        width = max(width, eptr[f + 1] - eptr[f])
    tarcs = np.full((n, width), -1, dtype=np.int64)
    tlens = np.empty(n, dtype=np.int64)
    for f in range(n):
        tlens[f] = eptr[f + 1] - eptr[f]
        for c in range(tlens[f]):
            tarcs[f, c] = earc[eptr[f] + c]
    return tarcs, tlens


@njit(cache=True)
def _group_loop(lo, hi, starts, rem, end, tarcs, tlens, cap, budget, window_after, act, rate, t_end, sel, frozen,
                cnt, capr, dec, touched, head, fill, hit, ver, lst):
    """The event loop of flows ``lo..hi-1`` (sorted by start, sharing arcs with no other flow in flight):
    see :func:`group_events`. Returns the budget left and ``lst``."""
    n_act = 0
    nxt = lo
    t = starts[lo] if hi > lo else 0.0
    window = 0.0 if budget > 0 else window_after
    while True:
        lim = t + window
        while nxt < hi and starts[nxt] <= lim:
            act[n_act] = nxt
            n_act += 1
            nxt += 1
        if n_act == 0:
            if nxt >= hi:
                return budget, lst
            t = starts[nxt]
            continue
        lst = _maxmin(sel, n_act, act, 0, tarcs, tlens, cap, rate, cnt, capr, dec, touched, head, fill, lst, frozen,
                      hit, ver)
        t_next = starts[nxt] if nxt < hi else np.inf
        for i in range(n_act):
            t_end[i] = t + rem[act[i]] / rate[i]
            t_next = min(t_next, t_end[i])
        top = t_next * (1 + _REL) + window
        kept = 0
        for i in range(n_act):
            f = act[i]
            if t_end[i] <= top:
                end[f] = t_end[i]
            else:
                rem[f] = max(rem[f] - rate[i] * (t_next - t), 0.0)
                act[kept] = f
                kept += 1
        n_act = kept
        t = t_next
        budget -= 1
        if budget == 0:
            window = window_after


@njit(cache=True)
def group_events(starts, size, eptr, earc, cap, budget, window_after):
    """Event-driven max-min sharing of one group of flows of one step (the step loop's large groups).

    Flows ``0..n-1`` sorted by start (``starts``), ``size`` bytes each, crossing the arcs
    ``earc[eptr[f]:eptr[f + 1]]`` (numbered ``0..cap.size-1``). At every event the rates of all flows
    in flight are filled again. While ``budget`` (exact events left) lasts, every start and end is
    an event; from then on, starts and ends within ``window_after`` of an event join it. Returns
    when each flow's last byte leaves, and the budget left.
    """
    n = starts.size
    tarcs, tlens = _routes(eptr, earc)
    rem = size.astype(np.float64)
    end = np.empty(n)
    cnt, capr, dec, touched, head, fill, hit, ver = _scratch(cap.size)
    budget, _ = _group_loop(0, n, starts, rem, end, tarcs, tlens, cap, budget, window_after,
                            np.empty(n, dtype=np.int64), np.empty(n), np.empty(n), np.arange(n),
                            np.zeros(n, dtype=np.bool_), cnt, capr, dec, touched, head, fill, hit, ver,
                            np.empty(16, dtype=np.int64))
    return end, budget


@njit(cache=True)
def grouped_events(fptr, starts, size, eptr, earc, cap, windows):
    """:func:`group_events` for many groups of one step, each on its own clock: group ``g`` is flows
    ``fptr[g]..fptr[g + 1]-1`` (sorted by start within it). A group with ``windows[g] > 0`` merges
    starts and ends within that of an event from its first event on; the others are exact.
    Returns when each flow's last byte leaves."""
    n = starts.size
    tarcs, tlens = _routes(eptr, earc)
    rem = size.astype(np.float64)
    end = np.empty(n)
    act = np.empty(n, dtype=np.int64)
    rate = np.empty(n)
    t_end = np.empty(n)
    sel = np.arange(n)
    frozen = np.zeros(n, dtype=np.bool_)
    cnt, capr, dec, touched, head, fill, hit, ver = _scratch(cap.size)
    lst = np.empty(16, dtype=np.int64)
    for g in range(fptr.size - 1):
        exact = windows[g] <= 0.0
        _, lst = _group_loop(fptr[g], fptr[g + 1], starts, rem, end, tarcs, tlens, cap,
                             np.int64(1) << 62 if exact else np.int64(0), windows[g], act, rate, t_end, sel, frozen,
                             cnt, capr, dec, touched, head, fill, hit, ver, lst)
    return end


@njit(cache=True)
def overlap_groups(f, arc, start, latest, m0, span, nflows):
    """Label flows ``0..nflows-1`` by independent group (the step loop's ``_Pattern._groups``).

    ``(arc[i], f[i])`` lists arcs of flows, sorted by arc, then by start; ``arc`` numbers the arcs
    of the whole pattern, so a caller may leave out the arcs that only one flow crosses (they join
    nothing) and get the same labels. Per arc, a flow joins the group of the flow with the
    latest "latest end" among those before it when it starts before that end (``latest``: start
    plus size at the flow's worst share). Values are shifted per arc (``- m0 + arc * span``) as the
    numpy version shifted them by the arc's position among the pattern's arcs (the same number when
    every arc is listed), so the comparisons are the same to the bit. Flows not listed are groups
    of their own. Groups are numbered by their smallest flow, as scipy's connected components
    number them.
    """
    parent = np.arange(nflows)
    runmax = -np.inf
    leader = 0
    for i in range(f.size):
        seg = arc[i]
        first = i == 0 or seg != arc[i - 1]
        if not first and (start[f[i]] - m0) + seg * span < runmax * (1 + 1e-12):
            a, b = f[i], f[leader]
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            while parent[b] != b:
                parent[b] = parent[parent[b]]
                b = parent[b]
            if a != b:
                parent[max(a, b)] = min(a, b)
        shifted = (latest[f[i]] - m0) + seg * span
        if shifted > runmax:
            runmax = shifted
        if shifted >= runmax:
            leader = i
    labels = np.empty(nflows, dtype=np.int64)
    number = np.full(nflows, -1, dtype=np.int64)
    k = 0
    for v in range(nflows):
        r = v
        while parent[r] != r:
            r = parent[r]
        if number[r] < 0:
            number[r] = k
            k += 1
        labels[v] = number[r]
    return labels


@njit(cache=True)
def step_groups(erow, earc, start, size, worst_rate, static_rate, indptr, indices, cap, large):
    """One step of flows that start unevenly, grouped and run in one call (the step loop's usual case).

    ``(earc[i], erow[i])`` are the (arc, flow) entries on arcs that several flows cross, sorted by
    arc, then by entry. The groups are :func:`overlap_groups`'s; a flow alone in its group ends at
    ``start + size / static_rate`` (what its own event loop gives, to the bit); the other groups run
    exact on their own clocks (:func:`grouped_events`), laid out as ``sim.flow._group_layout`` lays
    them out (by group, then start, then flow). Returns the end times (an empty array when a group
    has more than ``large`` flows: the caller's budgeted loop takes those) and the group labels.
    """
    n = start.size
    latest = start + size / worst_rate
    m0 = min(start.min(), 0.0)
    span = (latest.max() - m0) + 1.0
    # the entries by arc, then by start, then by entry (np.lexsort's order)
    order = np.empty(erow.size, dtype=np.int64)
    lo = 0
    while lo < erow.size:
        hi = lo + 1
        while hi < erow.size and earc[hi] == earc[lo]:
            hi += 1
        seg = np.argsort(start[erow[lo:hi]], kind="mergesort")
        for k in range(hi - lo):
            order[lo + k] = lo + seg[k]
        lo = hi
    labels = overlap_groups(erow[order], earc[order], start, latest, m0, span, n)
    counts = np.bincount(labels)
    if counts.max() > large:
        return np.empty(0), labels
    end = np.empty(n)
    nrest = 0
    for f in range(n):
        if counts[labels[f]] == 1:
            end[f] = start[f] + size[f] / static_rate[f]
        else:
            nrest += 1
    if nrest == 0:
        return end, labels
    rest = np.empty(nrest, dtype=np.int64)
    k = 0
    for f in range(n):
        if counts[labels[f]] > 1:
            rest[k] = f
            k += 1
    # by group, then by start, then by flow (np.lexsort((start, label)) over ascending flows)
    by_start = rest[np.argsort(start[rest], kind="mergesort")]
    perm = by_start[np.argsort(labels[by_start], kind="mergesort")]
    fptr = np.empty(nrest + 1, dtype=np.int64)
    ng = 0
    for k in range(nrest):
        if k == 0 or labels[perm[k]] != labels[perm[k - 1]]:
            fptr[ng] = k
            ng += 1
    fptr[ng] = nrest
    eptr = np.empty(nrest + 1, dtype=np.int64)
    eptr[0] = 0
    for k in range(nrest):
        eptr[k + 1] = eptr[k] + indptr[perm[k] + 1] - indptr[perm[k]]
    arcs = np.empty(eptr[nrest], dtype=np.int64)
    for k in range(nrest):
        f = perm[k]
        for c in range(indptr[f + 1] - indptr[f]):
            arcs[eptr[k] + c] = indices[indptr[f] + c]
    got = grouped_events(fptr[:ng + 1], start[perm], size[perm], eptr, arcs, cap, np.zeros(ng))
    for k in range(nrest):
        end[perm[k]] = got[k]
    return end, labels


@functools.cache
def note_first_compile() -> None:
    """Say on stderr, once per process, when the event loops are about to be compiled: the first use on a
    machine compiles them (about 20 s on 2 cores); later processes load them from numba's cache."""
    try:
        missing = [f for f in (run, group_events, grouped_events, step_groups)
                   if not os.path.exists(f._cache._cache_file._index_path)]
    except AttributeError:  # a numba without these internals: say nothing rather than guess
        return
    if missing:
        print("collsim: compiling the flow simulator's event loops for this machine (once; about 20 s on 2 cores) ...",
              file=sys.stderr, flush=True)
