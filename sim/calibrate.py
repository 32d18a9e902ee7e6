"""Calibrate the cost model from point-to-point probes and local reduction timing.

Model fitted
------------
A message of ``s`` bytes from rank ``i`` to rank ``j`` takes, one way,

``t(s) = alpha + h_ij * hop_latency + s / (efficiency * B_ij)``

where ``h_ij`` is the number of arcs on the route (``topologies.Router``, the routing the simulator
uses) and ``B_ij`` the smallest nominal bandwidth on it. Exchange probes (two ranks send each
other ``s`` bytes at once with ``torch.distributed.batch_isend_irecv`` over Gloo, as the runtime
runs a step) between a few rank pairs over a sweep of sizes give ``t``; least squares over the
samples gives ``alpha`` and ``hop_latency`` from the tiny messages and ``efficiency`` from the
others (:func:`fit_link`). When every probed pair has the same hop count the hop latency cannot be
told apart from ``alpha`` and is folded into it (``hop_latency = 0``). A last probe, every rank
exchanging with a partner at the same time, measures a step's cost with every rank busy, and its
fit gives the ``alpha`` and ``efficiency`` used (:func:`build_params`). The same probe with every
receive posted while the exchange before is still in flight, as the torch runtime runs small
buffers (:mod:`collectives.execution`), gives ``posted_alpha``. Where it runs (4 ranks or more) the
*pattern probe* decides ``alpha`` and ``efficiency`` instead: every rank runs one step pattern of the
collectives' own schedules at once (the ring's neighbour, recursive doubling's partners), and the
step times are fitted through the flow model (:func:`fit_patterns`), so what a collective's steps
pay, links they share included, is what is fitted; its residuals per pattern show where the
sharing the model assumes is not what the machine does.

``gamma`` (s/byte) is the slope of a least-squares line through the time of reducing a received
buffer into the local one (``buf.add_(recv)``, float32) at several sizes, measured in the rank
process itself.

The collective results the model is later judged on are never used here: only point-to-point
messages and local arithmetic.

Output
------
A ``collsim-params/1`` file (:mod:`sim.params`) with ``alpha``, ``gamma``,
``bandwidth_efficiency``, plus ``hop_latency`` (seconds per arc: the latency the flow model should
give every arc when predicting this network, since an emulation cannot impose the topology's
latency) and ``calibration`` (the samples, the fitted values, the relative residuals of every
sample and their RMS).

From real collective runs (``collsim calibrate --from FILE``)
-------------------------------------------------------------
:func:`read_nccl_tests` reads the output of NVIDIA's nccl-tests (``all_reduce_perf`` and its
siblings) in its exact layout: ``#`` header lines (``# Rank ... on HOST device ...`` lines give the
ranks and nodes), then per size ``size count type redop root time algbw busbw #wrong`` for the
out-of-place run and ``time algbw busbw #wrong`` for the in-place one (older versions without the
``root`` column, ``#wrong`` as ``N/A`` or a float, and launcher prefixes such as ``0:`` or
``[1,0]<stdout>:`` are read too); or collsim's own JSON lines (``source: measured``).

:func:`fit_measured` then fits two terms of the model on one or two sizes the user names: the
model's time at a size splits into a latency part ``L`` (what is left when every latency is set to
zero: per-message overhead, link and NCCL protocol latencies) and a bandwidth part ``B``;
measured ``t = a L + b B`` gives ``a`` (``latency_scale`` and ``alpha`` multiplied by it) and
``b`` (the bandwidth efficiency of the link roles that limit the model at the most
bandwidth-bound fitted size divided by it, above 1 if need be: the topology's nominal figure may
understate a link). Two sizes give both; one size gives the term that
dominates there and keeps the other. The sizes used are recorded in the file, so a later
comparison can say which points were fitted and which were predicted.

Where it runs
-------------
* In an emulation (:func:`calibrate_emulation`, ``collsim calibrate --topology SPEC``): one probe
  process per host namespace involved.
* On a real cluster under ``torchrun`` (``collsim calibrate --topology SPEC --out calib.json``
  started by torchrun on every rank, ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` set): rank ``i`` is
  ``endpoints[i]`` of the topology; rank 0 fits and writes the file.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.params import ModelParams

__all__ = [
    "PROBE_SIZES",
    "LATENCY_PROBE",
    "GAMMA_SIZES",
    "Sample",
    "FitResult",
    "probe_pairs",
    "pair_info",
    "fit_link",
    "fit_gamma",
    "build_params",
    "busy_bandwidth",
    "duplex_from",
    "calibration_notes",
    "probe_patterns",
    "fit_patterns",
    "run_probes",
    "calibrate_emulation",
    "launch_ranks",
    "main",
    "Measured",
    "read_nccl_tests",
    "read_measured",
    "fit_measured",
]

#: Default probe sizes (bytes): a latency probe, then 16 KiB to 4 MiB, x4 (where collectives move chunks).
PROBE_SIZES: tuple[int, ...] = (*(16384 * 4**k for k in range(5)), 8)
#: Probes of at most this many bytes measure latency (alpha + hops * hop_latency) only.
LATENCY_PROBE = 64
#: Default sizes of the reduction timing (bytes).
GAMMA_SIZES: tuple[int, ...] = tuple(65536 * 4**k for k in range(5))
_STORE_PORT = 29511


@dataclass(frozen=True)
class Sample:
    """One probe: ranks ``src`` and ``dst`` exchanged ``size`` bytes each way in ``seconds``.

    The median over repetitions; for latency probes (at most :data:`LATENCY_PROBE` bytes) the
    minimum, since scheduling noise only ever adds to a tiny message's time.
    """

    src: int
    dst: int
    size: int
    seconds: float


@dataclass(frozen=True)
class FitResult:
    """Fitted link parameters and the fit's relative residuals (``(model - measured) / measured``)."""

    alpha: float
    hop_latency: float
    efficiency: float
    residuals: tuple[float, ...]

    @property
    def rms(self) -> float:
        return math.sqrt(sum(r * r for r in self.residuals) / len(self.residuals)) if self.residuals else 0.0


def pair_info(G, router, i: int, j: int) -> tuple[int, float]:
    """``(hops, bottleneck nominal bandwidth)`` of the route from rank ``i`` to rank ``j``."""
    ends = G.graph["endpoints"]
    route = router.route(ends[i], ends[j])
    return len(route), min(float(G.edges[a]["bandwidth"]) for a in route)


def probe_pairs(G, router, nranks: int | None = None) -> list[tuple[int, int]]:
    """Rank pairs to probe: ``(0, 1)`` and, per distinct (hops, bottleneck) route class from rank 0,
    the first rank of that class, so every kind of path the collectives use is measured once."""
    n = len(G.graph["endpoints"]) if nranks is None else nranks
    if n < 2:
        raise ValueError(f"calibration needs at least 2 ranks, got {n}")
    pairs, seen = [], set()
    for j in range(1, n):
        key = pair_info(G, router, 0, j)
        if key not in seen:
            seen.add(key)
            pairs.append((0, j))
        if len(pairs) == 3:
            break
    return pairs


def fit_link(samples: Sequence[Sample], info: dict[tuple[int, int], tuple[int, float]]) -> FitResult:
    """Least-squares fit of ``alpha``, ``hop_latency`` and ``efficiency`` (see the module docstring).

    Two stages. Latency probes (messages of at most :data:`LATENCY_PROBE` bytes, whose bandwidth
    term is negligible) give ``t0 = alpha + hops * hop_latency`` per pair, fitted over the pairs;
    the other samples then give ``1 / efficiency`` as the weighted least-squares slope of
    ``t - t0`` against ``size / bottleneck``. Without latency probes all three are fitted at once.

    Parameters
    ----------
    samples : sequence of Sample
        Probe results; at least two distinct sizes.
    info : dict
        ``(src, dst) -> (hops, bottleneck bandwidth in bytes/s)`` for every probed pair.

    Raises
    ------
    ValueError
        Fewer than two sizes, or a pair missing from ``info``.

    Examples
    --------
    >>> info = {(0, 1): (2, 1e8), (0, 2): (4, 1e8)}
    >>> s = [Sample(0, j, b, 1e-4 + h * 1e-5 + b / 0.9e8) for j, h in ((1, 2), (2, 4)) for b in (8, 10**5, 10**6)]
    >>> f = fit_link(s, info)
    >>> round(f.alpha, 6), round(f.hop_latency, 7), round(f.efficiency, 3)
    (0.0001, 1e-05, 0.9)
    """
    if len({s.size for s in samples}) < 2:
        raise ValueError("fit_link needs probes at two or more sizes")
    for s in samples:
        if (s.src, s.dst) not in info:
            raise ValueError(f"no route information for pair {(s.src, s.dst)}")
    t = np.array([s.seconds for s in samples])
    hops = np.array([info[(s.src, s.dst)][0] for s in samples], dtype=float)
    x = np.array([s.size / info[(s.src, s.dst)][1] for s in samples])
    tiny = np.array([s.size <= LATENCY_PROBE for s in samples])
    w = 1.0 / t

    def solve(cols, y, rows):
        A = np.column_stack(cols)[rows] * w[rows, None]
        coef, *_ = np.linalg.lstsq(A, y[rows] * w[rows], rcond=None)
        return coef

    one = np.ones_like(t)
    if tiny.any() and (~tiny).any():
        inv_eff = 0.0
        for _ in range(2):  # second pass: take the latency probes' own small bandwidth term out
            y = t - x * inv_eff
            if len(set(hops[tiny].tolist())) > 1:
                alpha, lat = solve([one, hops], y, tiny)
                if lat < 0:
                    alpha, lat = solve([one], y, tiny)[0], 0.0
            else:
                alpha, lat = solve([one], y, tiny)[0], 0.0
            alpha = max(float(alpha), 0.0)
            # the bandwidth term: plain least squares, so the large messages that show the
            # sustained rate decide it (small ones still ride on the shaper's bucket of two frames)
            rows = ~tiny
            (inv_eff,), *_ = np.linalg.lstsq(x[rows, None], (t - alpha - hops * lat)[rows], rcond=None)
    else:
        rows = np.ones_like(tiny)
        lat = 0.0
        if len(set(hops.tolist())) > 1:
            alpha, lat, inv_eff = solve([one, hops, x], t, rows)
        if lat <= 0:
            alpha, inv_eff = solve([one, x], t, rows)
            lat = 0.0
        alpha = max(float(alpha), 0.0)
    efficiency = min(1.0 / float(inv_eff), 1.0) if inv_eff > 0 else 1.0
    model = alpha + hops * lat + x / efficiency
    residuals = tuple(float(r) for r in (model - t) / t)
    return FitResult(alpha=alpha, hop_latency=float(lat), efficiency=efficiency, residuals=residuals)


def fit_gamma(timings: Sequence[tuple[int, float]]) -> tuple[float, tuple[float, ...]]:
    """Slope (s/byte) of reduction time against bytes by least squares; and relative residuals.

    >>> g, res = fit_gamma([(1000, 2e-6 + 1000e-10), (10**6, 2e-6 + 1e-4)])
    >>> round(g * 1e10, 6)
    1.0
    """
    if len({b for b, _ in timings}) < 2:
        raise ValueError("fit_gamma needs timings at two or more sizes")
    b = np.array([float(s) for s, _ in timings])
    t = np.array([float(x) for _, x in timings])
    A = np.column_stack([np.ones_like(b), b]) / t[:, None]
    (c, gamma), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    gamma = max(float(gamma), 0.0)
    residuals = tuple(float(r) for r in ((c + gamma * b) - t) / t)
    return gamma, residuals


def busy_bandwidth(G, router, nranks: int) -> float:
    """Nominal bandwidth of the slowest pair in the busy probe (pairs ``(r, r ^ 1)`` all at once):
    per pair the smallest fair share ``bandwidth / flows`` over the arcs of its two routes."""
    ends = G.graph["endpoints"]
    pairs = [(r, r ^ 1) for r in range(nranks) if r ^ 1 < nranks]
    flows: dict = {}
    routes = {(a, b): router.route(ends[a], ends[b]) for a, b in pairs}
    for route in routes.values():
        for arc in route:
            flows[arc] = flows.get(arc, 0) + 1
    return min(
        min(float(G.edges[arc]["bandwidth"]) / flows[arc] for arc in route) for route in routes.values()
    )


def duplex_from(samples: Sequence[Sample], one_way: Sequence[Sample], info: dict) -> tuple[float, FitResult | None]:
    """``(duplex efficiency, one-way fit)``: the exchanges' efficiency over the one-way transfers' of the same pairs.

    Both fits share the latency probes (exchanges of at most :data:`LATENCY_PROBE` bytes), so only
    the slopes differ. 1.0 (and no fit) without one-way samples at two sizes or more; at most 1.0.

    >>> info = {(0, 1): (2, 1e8)}
    >>> ex = [Sample(0, 1, b, 1e-4 + b / 0.72e8) for b in (8, 10**5, 10**6)]
    >>> one = [Sample(0, 1, b, 1e-4 + b / 0.9e8) for b in (10**5, 10**6)]
    >>> round(duplex_from(ex, one, info)[0], 3)
    0.8
    """
    if len({s.size for s in one_way}) < 2:
        return 1.0, None
    latency = [s for s in samples if s.size <= LATENCY_PROBE]
    exchange = fit_link(samples, info)
    one = fit_link(latency + list(one_way), info)
    return min(exchange.efficiency / one.efficiency, 1.0), one


#: Most step patterns :func:`probe_patterns` returns.
MAX_PATTERNS = 4
#: Algorithms whose step patterns the pattern probe times (in this order).
PATTERN_ALGORITHMS = ("ring", "recursive_doubling", "recursive_halving")


def probe_patterns(nranks: int, algorithms: Sequence[str] = PATTERN_ALGORITHMS) -> list[tuple[int, ...]]:
    """The step patterns of the collectives' schedules on ``nranks`` ranks, for the pattern probe.

    Each pattern is ``to``: ``to[r]`` is the rank that rank ``r`` sends to in that step (-1: none).
    Patterns come from the allreduce schedules of ``algorithms`` in order, distinct, from steps
    where every rank sends at most one message and receives at most one, at most
    :data:`MAX_PATTERNS`.

    >>> probe_patterns(4)  # the ring's neighbour, then recursive doubling's partners at distance 1 and 2
    [(1, 2, 3, 0), (1, 0, 3, 2), (2, 3, 0, 1)]
    """
    from collectives.algorithms import get_schedule

    seen: list[tuple[int, ...]] = []
    for algorithm in algorithms:
        schedule = get_schedule("allreduce", algorithm, nranks)
        for i in range(schedule.nsteps):
            step = schedule.step(i)
            if len(np.unique(step.src)) != len(step) or len(np.unique(step.dst)) != len(step):
                continue
            to = [-1] * nranks
            for a, b in zip(step.src.tolist(), step.dst.tolist(), strict=True):
                to[a] = b
            if tuple(to) not in seen:
                seen.append(tuple(to))
            if len(seen) == MAX_PATTERNS:
                return seen
    return seen


def fit_patterns(G, patterns: Sequence[tuple[int, ...]], times: dict[tuple[int, int], float]) -> tuple[FitResult, dict]:
    """Fit ``alpha`` and ``efficiency`` to the pattern probe through the flow model.

    For every (pattern, size) the flow model gives the step's time with nominal links, no
    overheads and no latency, ``T1`` (its flows sharing the links they cross, max-min); the
    measured step time is fitted as ``alpha + T1 / efficiency`` by weighted least squares
    (:func:`fit_link` with each (pattern, size) as a sample on a link of rate ``size / T1``).
    Returns the fit and, per pattern, the mean relative residual: how much dearer (negative) or
    cheaper (positive) than the fit each pattern measured.
    """
    from sim.flow import Network

    H = G.copy()
    for _, _, d in H.edges(data=True):
        d["latency"] = 0.0
    net = Network(H, ModelParams(alpha=0.0, gamma=0.0))
    samples, info, which = [], {}, []
    for (k, size), t in sorted(times.items()):
        if size <= LATENCY_PROBE or t <= 0:
            continue
        to = patterns[k]
        src = np.array([r for r in range(len(to)) if to[r] >= 0], dtype=np.int64)
        dst = np.array([to[r] for r in src.tolist()], dtype=np.int64)
        t1 = float(net.compile(src, dst).run(np.zeros(src.size), np.full(src.size, float(size))).max())
        info[(k, size)] = (1, size / t1)
        samples.append(Sample(k, size, size, t))
        which.append(k)
    fit = fit_link(samples, info)
    by_pattern = {k: float(np.mean([r for r, j in zip(fit.residuals, which, strict=True) if j == k]))
                  for k in sorted(set(which))}
    return fit, by_pattern


def build_params(samples: Sequence[Sample], gamma_timings: Sequence[tuple[int, float]], G, router,
                 busy: dict[int, float] | None = None, nranks: int | None = None,
                 one_way: Sequence[Sample] = (), busy_posted: dict[int, float] | None = None,
                 busy_spread: dict[int, float] | None = None,
                 pattern_times: dict[tuple[int, int], float] | None = None) -> ModelParams:
    """Fit everything and return the parameters with the calibration record in ``extra``.

    ``busy`` (``{size: seconds}`` of :func:`_busy_exchanges`, every rank exchanging with a partner
    at once), when it has two sizes or more above the latency probes, gives the ``alpha`` and
    ``efficiency`` used: a collective's steps run with every rank busy, and on a shared machine
    that costs scheduling delays a probe of one quiet pair does not see. The pairwise fit still
    gives the per-hop latency, and both fits are recorded.

    ``busy_posted`` (the busy exchanges with every receive posted while the exchange before is in
    flight, ``_busy_exchanges(ahead=True)``) gives ``posted_alpha``, the per-message overhead of
    the torch runtime's receives posted a step ahead (:mod:`collectives.execution`): ``alpha``
    less what posting ahead saved (or cost) per step in the two busy probes, alike in all else, at
    their two smallest sizes above the latency probe, where the per-message overhead is most of a
    step (the median of the paired differences: fitted intercepts move by more than the saving
    with the machine's noise); without it ``posted_alpha`` stays unset (``alpha``).

    ``pattern_times`` (``{(pattern, size): seconds}`` of :func:`_pattern_steps`: every rank runs
    one step pattern of the collectives' schedules (:func:`probe_patterns`), all at once, back to
    back) replaces the busy probe where it is given: it measures what a collective's steps pay,
    and :func:`fit_patterns` fits it through the flow model, so links the pattern shares are
    charged as the model shares them. The busy fit stays in the record.

    ``busy_spread`` (``{size: half-range / median}`` of the busy repetitions) is the machine's
    noise; it is recorded, and :func:`calibration_notes` reports it with the fits' residuals and
    says why a fitted value falls outside what the links make plausible.

    ``one_way`` (the same pairs timed one way, :func:`_one_way`) gives the duplex share the
    exchanges pay (:func:`duplex_from`), which is recorded (``calibration.duplex_efficiency``) but
    not applied here: the parameters keep the exchanges' efficiency and a duplex efficiency of 1.
    :func:`sim.validate.class_efficiencies` applies it per link class where the probed pairs cross
    links of different classes (machines joined through NICs). On the emulated one-class
    topologies a share from quiet pairs made predictions worse (switch 7.5 -> 8.5 %, ring of 5
    6.9 -> 12.4 % median error), on two machines with two NICs each it made them right (speedup
    errors 9.7-25.7 % -> 3.5-12.9 %).
    """
    pairs = sorted({(s.src, s.dst) for s in samples})
    info = {p: pair_info(G, router, *p) for p in pairs}
    fit = fit_link(samples, info)
    gamma, gamma_res = fit_gamma(gamma_timings)
    alpha, efficiency = fit.alpha, fit.efficiency
    busy_fit = None
    n = len(G.graph["endpoints"]) if nranks is None else nranks
    if busy and len([b for b in busy if b > LATENCY_PROBE]) >= 2:
        bw = busy_bandwidth(G, router, n)
        # hop latency of the busy pairs is in their tiny exchange time; the model adds it per hop
        hops = statistics.mean(pair_info(G, router, r, r ^ 1)[0] for r in range(0, n - 1, 2))
        # tiny busy exchanges are dominated by scheduling noise; the intercept of the sizes that
        # collectives move (weighted least squares, fit_link without latency probes) is steadier
        busy_samples = [Sample(0, 1, b, t) for b, t in sorted(busy.items()) if b > LATENCY_PROBE]
        busy_fit = fit_link(busy_samples, {(0, 1): (1, bw)})
        alpha = max(busy_fit.alpha - hops * fit.hop_latency, 0.0)
        efficiency = busy_fit.efficiency
    pattern_fit = by_pattern = patterns = None
    if pattern_times and len({size for _, size in pattern_times if size > LATENCY_PROBE}) >= 2:
        patterns = probe_patterns(n)
        pattern_fit, by_pattern = fit_patterns(G, patterns, pattern_times)
        hops = statistics.mean(pair_info(G, router, r, r ^ 1)[0] for r in range(0, n - 1, 2))
        alpha = max(pattern_fit.alpha - hops * fit.hop_latency, 0.0)
        efficiency = pattern_fit.efficiency
    posted_fit = posted_alpha = None
    if busy_fit is not None and busy_posted and len([b for b in busy_posted if b > LATENCY_PROBE]) >= 2:
        posted_samples = [Sample(0, 1, b, t) for b, t in sorted(busy_posted.items()) if b > LATENCY_PROBE]
        posted_fit = fit_link(posted_samples, {(0, 1): (1, bw)})
        # what posting ahead saves per step, from the two busy probes (alike in all else) at the sizes
        # where the per-message overhead is most of a step (the two smallest above the latency probe):
        # paired differences, not fitted intercepts, which noise moves by more than the saving
        small = sorted(b for b in busy_posted if b > LATENCY_PROBE and b in busy)[:2]
        saving = statistics.median(busy[b] - busy_posted[b] for b in small) if small else 0.0
        posted_alpha = max(alpha - saving, 0.0)
    duplex, one_fit = duplex_from(samples, one_way, info)
    record = {
        "topology": G.graph.get("name"),
        "method": "pairwise exchanges (batch_isend_irecv, gloo), medians; least squares (fit_link)",
        "pairs": [{"src": a, "dst": b, "hops": info[(a, b)][0], "bottleneck_bandwidth": info[(a, b)][1]} for a, b in pairs],
        "samples": [{"src": s.src, "dst": s.dst, "size": s.size, "seconds": s.seconds} for s in samples],
        "residuals": list(fit.residuals),
        "rms_relative_residual": fit.rms,
        "pair_fit": {"alpha": fit.alpha, "hop_latency": fit.hop_latency, "bandwidth_efficiency": fit.efficiency},
        "gamma_samples": [{"size": b, "seconds": t} for b, t in gamma_timings],
        "gamma_residuals": list(gamma_res),
        "nranks": n,
        "cores": os.cpu_count(),
    }
    if busy_spread:
        record["busy_spread"] = [{"size": b, "half_range": t} for b, t in sorted(busy_spread.items())]
    if one_fit is not None:
        record["one_way_fit"] = {
            "alpha": one_fit.alpha, "hop_latency": one_fit.hop_latency, "bandwidth_efficiency": one_fit.efficiency,
            "samples": [{"src": s.src, "dst": s.dst, "size": s.size, "seconds": s.seconds} for s in one_way],
            "residuals": list(one_fit.residuals), "rms_relative_residual": one_fit.rms,
        }
        record["duplex_efficiency"] = duplex
    if pattern_fit is not None:
        record["pattern_fit"] = {
            "alpha": pattern_fit.alpha, "bandwidth_efficiency": pattern_fit.efficiency,
            "patterns": [list(p) for p in patterns],
            "samples": [{"pattern": k, "size": b, "seconds": t} for (k, b), t in sorted(pattern_times.items())],
            "residuals": list(pattern_fit.residuals), "rms_relative_residual": pattern_fit.rms,
            "mean_residual_by_pattern": {str(k): v for k, v in by_pattern.items()},
        }
    if posted_fit is not None:
        record["posted_fit"] = {
            "alpha": posted_fit.alpha, "bandwidth_efficiency": posted_fit.efficiency, "saving": saving,
            "samples": [{"size": b, "seconds": t} for b, t in sorted(busy_posted.items())],
            "residuals": list(posted_fit.residuals), "rms_relative_residual": posted_fit.rms,
        }
    if busy_fit is not None:
        record["busy_fit"] = {
            "alpha": busy_fit.alpha, "bandwidth_efficiency": busy_fit.efficiency,
            "samples": [{"size": b, "seconds": t} for b, t in sorted(busy.items())],
            "residuals": list(busy_fit.residuals), "rms_relative_residual": busy_fit.rms,
        }
    return ModelParams(
        alpha=alpha,
        gamma=gamma,
        bandwidth_efficiency=efficiency,
        extra={"hop_latency": fit.hop_latency, "calibration": record},
        posted_alpha=posted_alpha,
    )


# -- rank side -----------------------------------------------------------------------------------


def _exchange(peer: int, initiator: bool, sizes: Sequence[int], reps: int) -> list[tuple[int, float]]:
    """Time of exchanging ``size`` bytes with ``peer`` (both directions at once), per size.

    The two ranks post a receive and a send to each other with ``batch_isend_irecv`` and wait, the
    way the runtime runs a step; the link is used in both directions at once, as collectives use it
    (the acknowledgements of one direction share the queue with the data of the other). A barrier
    between exchanges (for the pair only: a zero-byte round trip) starts both sides together.
    """
    import torch
    import torch.distributed as dist

    out = []
    token = torch.zeros(1, dtype=torch.float32)
    for size in sizes:
        send = torch.zeros(max(size // 4, 1), dtype=torch.float32)
        recv = torch.zeros_like(send)
        times = []
        # latency probes are short and noisy on a shared machine: take more of them
        n = reps * 4 if size <= LATENCY_PROBE else reps
        for rep in range(n + 1):  # the first exchange warms the connection up
            if initiator:  # line both ranks up
                dist.send(token, peer)
                dist.recv(token, peer)
            else:
                dist.recv(token, peer)
                dist.send(token, peer)
            t0 = time.perf_counter()
            ops = [dist.P2POp(dist.irecv, recv, peer), dist.P2POp(dist.isend, send, peer)]
            for req in dist.batch_isend_irecv(ops):
                req.wait()
            if rep:
                times.append(time.perf_counter() - t0)
        # latency: the quickest exchange (scheduling noise only ever adds); bandwidth: the median
        out.append((send.numel() * 4, min(times) if size <= LATENCY_PROBE else statistics.median(times)))
    return out


def _one_way(peer: int, initiator: bool, sizes: Sequence[int], reps: int) -> list[tuple[int, float]]:
    """Time of sending ``size`` bytes to ``peer`` one way (the initiator sends), per size above the latency probes.

    The initiator sends, the peer receives and answers with one element; the initiator's time runs
    from its send to that answer. Set against :func:`_exchange` of the same pair it gives what
    moving data in both directions of a link at once costs (``ModelParams.duplex_efficiency``):
    the answer's latency is in the intercept, not in the slope that the efficiency comes from.
    """
    import torch
    import torch.distributed as dist

    out = []
    token = torch.zeros(1, dtype=torch.float32)
    for size in sizes:
        if size <= LATENCY_PROBE:
            continue
        buf = torch.zeros(max(size // 4, 1), dtype=torch.float32)
        times = []
        for rep in range(reps + 1):  # the first transfer warms the connection up
            if initiator:
                dist.send(token, peer)  # line both ranks up
                t0 = time.perf_counter()
                dist.send(buf, peer)
                dist.recv(token, peer)
                if rep:
                    times.append(time.perf_counter() - t0)
            else:
                dist.recv(token, peer)
                dist.recv(buf, peer)
                dist.send(token, peer)
        out.append((buf.numel() * 4, statistics.median(times) if times else 0.0))
    return out


def _reduction_timing(sizes: Sequence[int], reps: int) -> list[tuple[int, float]]:
    import torch

    out = []
    for size in sizes:
        a = torch.ones(size // 4, dtype=torch.float32)
        b = torch.ones(size // 4, dtype=torch.float32)
        a.add_(b)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            a.add_(b)
            times.append(time.perf_counter() - t0)
        out.append((size, statistics.median(times)))
    return out


def _busy_exchanges(sizes: Sequence[int], reps: int, *, ahead: bool = False) -> dict[int, tuple[float, float]]:
    """Every rank exchanges ``size`` bytes with partner ``rank ^ 1``, all pairs at once.

    Per size: the median over ``reps`` of the time per exchange of a burst of back-to-back
    exchanges (as consecutive steps of a collective run). This is what a step costs with every
    rank busy: on a shared machine it includes the scheduling delays that a probe of one quiet pair
    does not see. With ``ahead`` each exchange's receive is posted while the exchange before is
    still in flight, into the other of two buffers, as the torch runtime posts small buffers'
    receives a step ahead (:mod:`collectives.execution`): its intercept is ``posted_alpha``. A rank
    without a partner (the last one of an odd world size) returns ``{}``. Per size ``(median,
    spread)``: the spread is half the range of the repetitions over their median, the machine's
    noise as this probe sees it.
    """
    import torch
    import torch.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    peer = rank ^ 1
    out = {}
    for size in sizes:
        send = torch.zeros(max(size // 4, 1), dtype=torch.float32)
        recvs = [torch.zeros_like(send), torch.zeros_like(send)]
        rounds = max(1, min(20, (1 << 20) // max(size, 1)))
        per_step = []
        for rep in range(reps + 1):
            dist.barrier()
            if peer >= n:
                continue
            t0 = time.perf_counter()
            if ahead:
                posted = dist.irecv(recvs[0], peer, tag=0)
                for k in range(rounds):
                    sent = dist.isend(send, peer, tag=k & 1)
                    following = dist.irecv(recvs[(k + 1) & 1], peer, tag=(k + 1) & 1) if k + 1 < rounds else None
                    posted.wait()
                    sent.wait()
                    posted = following
            else:
                for _ in range(rounds):
                    ops = [dist.P2POp(dist.irecv, recvs[0], peer), dist.P2POp(dist.isend, send, peer)]
                    for req in dist.batch_isend_irecv(ops):
                        req.wait()
            if rep:
                per_step.append((time.perf_counter() - t0) / rounds)
        if per_step:
            mid = statistics.median(per_step)
            out[send.numel() * 4] = (mid, (max(per_step) - min(per_step)) / (2 * mid) if mid > 0 else 0.0)
    return out


def _pattern_steps(sizes: Sequence[int], reps: int) -> dict[tuple[int, int], float]:
    """Every rank runs each step pattern of :func:`probe_patterns` at once, back to back; per (pattern, size) this rank's median time per step.

    As a collective's steps run: each round posts the rank's receive (from the rank that sends to
    it) and its send, and waits for both; the rounds follow each other without a barrier. A rank
    the pattern leaves out only joins the barriers (time 0).
    """
    import torch
    import torch.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    out = {}
    for k, to in enumerate(probe_patterns(n)):
        dst = to[rank]
        src = to.index(rank) if rank in to else -1
        for size in sizes:
            if size <= LATENCY_PROBE:
                continue
            send = torch.zeros(max(size // 4, 1), dtype=torch.float32)
            recv = torch.zeros_like(send)
            rounds = max(1, min(20, (1 << 20) // max(size, 1)))
            per_step = []
            for rep in range(reps + 1):
                dist.barrier()
                t0 = time.perf_counter()
                for _ in range(rounds):
                    works = [dist.irecv(recv, src)] if src >= 0 else []
                    if dst >= 0:
                        works.append(dist.isend(send, dst))
                    for work in works:
                        work.wait()
                if rep:
                    per_step.append((time.perf_counter() - t0) / rounds)
            out[(k, send.numel() * 4)] = statistics.median(per_step) if (src >= 0 or dst >= 0) else 0.0
    return out


def run_probes(pairs: Sequence[tuple[int, int]], sizes: Sequence[int] = PROBE_SIZES, reps: int = 5,
               gamma_sizes: Sequence[int] = GAMMA_SIZES) -> tuple[list[Sample], list[tuple[int, float]], float | None] | None:
    """Run the probes in an initialised default process group; every rank calls it.

    Pairs are probed one after the other (a barrier between them), so probes never share links;
    then (4 ranks or more) every rank exchanges with a partner at once (:func:`_busy_exchanges`).
    Every pair is also timed one way (:func:`_one_way`). Returns ``(samples, reduction timings,
    {size: slowest pair's busy exchange time}, one-way samples, {size: slowest pair's busy exchange
    time with receives posted ahead}, {size: largest spread of the busy repetitions},
    {(pattern, size): slowest rank's step time of the pattern probe (:func:`_pattern_steps`)})`` on
    rank 0 and None elsewhere.
    """
    import torch.distributed as dist

    rank = dist.get_rank()
    mine: list[Sample] = []
    ones: list[Sample] = []
    for a, b in pairs:
        dist.barrier()
        if rank in (a, b):
            res = _exchange(b if rank == a else a, rank == a, sizes, reps)
            one = _one_way(b if rank == a else a, rank == a, sizes, reps)
            if rank == a:
                mine.extend(Sample(a, b, s, t) for s, t in res)
                ones.extend(Sample(a, b, s, t) for s, t in one)
    busy = _busy_exchanges(sizes, reps) if dist.get_world_size() >= 4 else {}
    ahead = _busy_exchanges(sizes, reps, ahead=True) if dist.get_world_size() >= 4 else {}
    steps = _pattern_steps(sizes, reps) if dist.get_world_size() >= 4 else {}
    dist.barrier()
    gamma = _reduction_timing(gamma_sizes, max(reps, 5)) if rank == 0 else []
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (mine, busy, ones, ahead, steps))
    if rank != 0:
        return None
    samples = [s for part, *_ in gathered for s in part]
    one_way = [s for part in gathered for s in part[2]]

    def slowest(which: int, field: int = 0) -> dict[int, float]:  # a step ends when its slowest pair does
        out: dict[int, float] = {}
        for part in gathered:
            for size, t in part[which].items():
                out[size] = max(out.get(size, 0.0), t[field])
        return out

    spread = {size: max(slowest(1, 1).get(size, 0.0), slowest(3, 1).get(size, 0.0)) for size in slowest(1)}
    pattern_times: dict[tuple[int, int], float] = {}
    for part in gathered:  # a step ends when its slowest rank does
        for key, t in part[4].items():
            pattern_times[key] = max(pattern_times.get(key, 0.0), t)
    return samples, gamma, slowest(1), one_way, slowest(3), spread, pattern_times


def _worker(args) -> int:
    """Entry of one rank: probe, and on rank 0 write the raw results as JSON."""
    import datetime

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=args.timeout))
    try:
        pairs = [tuple(int(x) for x in p.split("-")) for p in args.pairs.split(",")]
        sizes = [int(s) for s in args.sizes.split(",")]
        res = run_probes(pairs, sizes, args.reps)
        if res is not None:
            samples, gamma, busy, one_way, ahead, spread, steps = res
            Path(args.out).write_text(json.dumps({
                "samples": [s.__dict__ for s in samples],
                "gamma": gamma,
                "busy": sorted(busy.items()),
                "one_way": [s.__dict__ for s in one_way],
                "busy_posted": sorted(ahead.items()),
                "busy_spread": sorted(spread.items()),
                "pattern_times": [[k, b, t] for (k, b), t in sorted(steps.items())],
            }))
    finally:
        dist.destroy_process_group()
    return 0


# -- driver side ---------------------------------------------------------------------------------


#: Niceness of rank processes in an emulation: ranks on a cluster have cores of their own; on one
#: shared machine a higher priority keeps their wake-up latency (which every step pays) small.
RANK_NICE = -19


def launch_ranks(emu, hosts: Sequence[int], argv: Sequence[str], *, timeout: float, label: str = "ranks",
                 env: dict | None = None, nice: int = RANK_NICE) -> None:
    """Run ``argv`` as one rank per host namespace (``hosts[k]`` runs rank ``k``) and wait.

    torch.distributed's env:// rendezvous is used: ``MASTER_ADDR`` is ``hosts[0]``'s address in the
    emulated network, so even the store's traffic stays inside the emulation.

    Raises
    ------
    RuntimeError
        A rank failed or the ranks did not finish within ``timeout`` seconds (the message carries
        the tail of the failing rank's stderr); all ranks are killed first.
    """
    base = {
        "MASTER_ADDR": emu.host_address(hosts[0]),
        "MASTER_PORT": str(_STORE_PORT),
        "WORLD_SIZE": str(len(hosts)),
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    base.update(env or {})
    logs, procs = [], []
    try:
        for k, h in enumerate(hosts):
            log = tempfile.TemporaryFile(mode="w+")
            logs.append(log)
            procs.append(emu.run(h, list(argv), {**base, "RANK": str(k), "LOCAL_RANK": "0"},
                                 stdout=log, stderr=subprocess.STDOUT, nice=nice))
        deadline = time.monotonic() + timeout
        while True:
            codes = [p.poll() for p in procs]
            failed = [k for k, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                k = failed[0]
                raise RuntimeError(f"{label}: rank {k} exited with status {codes[k]}: {_tail(logs[k])}")
            if all(c == 0 for c in codes):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: ranks did not finish within {timeout:.0f} s; rank 0: {_tail(logs[0])}")
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


def _tail(log, n: int = 600) -> str:
    log.flush()
    log.seek(0)
    text = log.read().strip().replace("\n", " | ")
    return text[-n:] if text else "(no output)"


def calibrate_emulation(emu, *, sizes: Sequence[int] = PROBE_SIZES, reps: int = 5,
                        pairs: Sequence[tuple[int, int]] | None = None, timeout: float = 300.0,
                        log=None) -> ModelParams:
    """Calibrate on an emulation that is up: probe processes in the host namespaces, then fit.

    Returns
    -------
    ModelParams
        With ``hop_latency`` and the ``calibration`` record in ``extra``.
    """
    pairs = list(pairs) if pairs is not None else probe_pairs(emu.G, emu.router)
    hosts = list(range(emu.nhosts))  # every rank: the busy probe runs them all at once
    local = {h: k for k, h in enumerate(hosts)}
    if log is not None:
        print(f"calibrate: probing pairs {', '.join(f'{a}-{b}' for a, b in pairs)} at {len(sizes)} sizes", file=log)
    with tempfile.TemporaryDirectory(prefix="collsim-calib-") as tmp:
        out = Path(tmp) / "probes.json"
        argv = [
            sys.executable, "-m", "sim.calibrate", "--worker", "--out", str(out),
            "--pairs", ",".join(f"{local[a]}-{local[b]}" for a, b in pairs),
            "--sizes", ",".join(str(s) for s in sizes), "--reps", str(reps), "--timeout", str(timeout),
        ]
        launch_ranks(emu, hosts, argv, timeout=timeout, label="calibration probes")
        raw = json.loads(out.read_text())
    samples = [Sample(hosts[d["src"]], hosts[d["dst"]], d["size"], d["seconds"]) for d in raw["samples"]]
    gamma = [(int(b), float(t)) for b, t in raw["gamma"]]
    busy = {int(b): float(t) for b, t in raw.get("busy", [])}
    posted = {int(b): float(t) for b, t in raw.get("busy_posted", [])}
    spread = {int(b): float(t) for b, t in raw.get("busy_spread", [])}
    steps = {(int(k), int(b)): float(t) for k, b, t in raw.get("pattern_times", [])}
    one_way = [Sample(hosts[d["src"]], hosts[d["dst"]], d["size"], d["seconds"]) for d in raw.get("one_way", [])]
    return build_params(samples, gamma, emu.G, emu.router, busy=busy, nranks=emu.nhosts, one_way=one_way,
                        busy_posted=posted, busy_spread=spread, pattern_times=steps)


def calibrate_torchrun(G, out: str, *, sizes: Sequence[int] = PROBE_SIZES, reps: int = 5,
                       timeout: float = 300.0) -> ModelParams | None:
    """Calibrate from inside a torchrun job (every rank calls it); rank 0 writes ``out``."""
    import datetime

    import torch
    import torch.distributed as dist

    from sim.params import save_params
    from topologies import Router

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout))
    try:
        n = dist.get_world_size()
        if n > len(G.graph["endpoints"]):
            raise ValueError(f"{n} ranks but the topology has {len(G.graph['endpoints'])} endpoints")
        router = Router(G)
        res = run_probes(probe_pairs(G, router, n), sizes, reps)
    finally:
        dist.destroy_process_group()
    if res is None:
        return None
    params = build_params(res[0], res[1], G, router, busy=res[2], nranks=n, one_way=res[3], busy_posted=res[4],
                          busy_spread=res[5], pattern_times=res[6])
    save_params(params, out)
    return params


def calibration_notes(params: ModelParams) -> list[str]:
    """What a reader should know about a calibration: the machine's noise, and why a fitted value
    falls outside what the links make plausible (efficiency below 0.7, receives posted ahead no
    cheaper than the others or, clamped at 0, free)."""
    cal = params.extra.get("calibration", {})
    notes = []
    spread = [s["half_range"] for s in cal.get("busy_spread", [])]
    if spread:
        notes.append(f"noise: repeated busy probes spread by +-{100 * statistics.median(spread):.1f}% "
                     f"(median half-range; up to +-{100 * max(spread):.1f}%)")
    pairs = cal.get("pairs", [])
    if params.bandwidth_efficiency < 0.7 and pairs:
        link = min(p["bottleneck_bandwidth"] for p in pairs)
        n, cores = cal.get("nranks"), cal.get("cores")
        why = (f"{n} rank processes share {cores} cores here, so the ranks' CPU time (Gloo's copies and Python per "
               f"message) rather than the links bounds the rate" if n and cores and n > cores
               else "something other than the links (CPU, TCP over the shaped links) bounds the rate")
        notes.append(f"bandwidth_efficiency {params.bandwidth_efficiency:.2f} is below 0.7: the busy probes moved "
                     f"{params.bandwidth_efficiency * link / 1e6:.1f} MB/s over links of {link / 1e6:.1f} MB/s; {why}. "
                     f"The model charges the measured rate.")
    by_pattern = cal.get("pattern_fit", {}).get("mean_residual_by_pattern", {})
    if by_pattern and max(by_pattern.values()) - min(by_pattern.values()) > 0.05:
        names = [", ".join(str(r) for r in p) for p in cal["pattern_fit"]["patterns"]]
        notes.append("step patterns cost differently from what the flow model's sharing says (mean residual of "
                     "the fit; negative: measured dearer): " + "; ".join(
                         f"[{names[int(k)]}] {100 * v:+.1f}%" for k, v in sorted(by_pattern.items())))
    saving = cal.get("posted_fit", {}).get("saving")
    if params.posted_alpha == 0 and saving is not None and saving >= params.alpha > 0:
        notes.append(f"posted_alpha is 0: posting receives ahead saved {saving * 1e6:.0f} us per exchange in the "
                     f"busy probes, not less than alpha ({params.alpha * 1e6:.0f} us); the model charges those "
                     f"messages no per-message cost, where a collective's steps each wait for the step before")
    if params.posted_alpha is not None and params.posted_alpha >= params.alpha:
        notes.append(f"receives posted a step ahead measured no cheaper per message (posted_alpha "
                     f"{params.posted_alpha * 1e6:.0f} us, alpha {params.alpha * 1e6:.0f} us): the model charges "
                     f"what was measured")
    return notes


def format_params(params: ModelParams) -> str:
    """A short human summary of calibrated parameters, then :func:`calibration_notes`, one per line."""
    cal = params.extra.get("calibration", {})
    notes = "".join(f"\n  note: {line}" for line in calibration_notes(params))
    return (
        f"alpha={params.alpha * 1e6:.1f} us  "
        + (f"posted_alpha={params.posted_alpha * 1e6:.1f} us  " if params.posted_alpha is not None else "")
        + f"hop_latency={params.extra.get('hop_latency', 0) * 1e6:.1f} us  "
        f"bandwidth_efficiency={params.bandwidth_efficiency:.3f}  "
        + (f"duplex share measured {cal['duplex_efficiency']:.3f} (applied per link class only)  "
           if "duplex_efficiency" in cal else "")
        + f"gamma={params.gamma:.3g} s/B "
        f"({1 / params.gamma / 1e9 if params.gamma else float('inf'):.2f} GB/s)  "
        f"rms residual: pairs {cal.get('rms_relative_residual', float('nan')) * 100:.1f}%"
        + (f", busy {cal['busy_fit']['rms_relative_residual'] * 100:.1f}%" if "busy_fit" in cal else "")
        + (f", one-way {cal['one_way_fit']['rms_relative_residual'] * 100:.1f}%" if "one_way_fit" in cal else "")
        + (f", posted {cal['posted_fit']['rms_relative_residual'] * 100:.1f}%" if "posted_fit" in cal else "")
        + (f", patterns {cal['pattern_fit']['rms_relative_residual'] * 100:.1f}%" if "pattern_fit" in cal else "")
        + notes
    )


# -- calibration from real collective runs (nccl-tests output or collsim JSON lines) ----------------


@dataclass(frozen=True)
class Measured:
    """What a measurement file holds: per size the seconds of one collective, and the world.

    ``times`` maps bytes to seconds; ``nranks`` and ``nnodes`` are None when the file does not say.
    """

    collective: str
    times: dict
    nranks: int | None = None
    nnodes: int | None = None
    busbw: dict | None = None


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_WRONG = r"(?:\d+|N/A|" + _NUMBER + r")"
_ROW = re.compile(
    r"(?:^|[\s:>])(?P<size>\d+)\s+(?P<count>\d+)\s+(?P<type>[A-Za-z_]\w*)\s+(?P<redop>[A-Za-z_]\w*)\s+"
    r"(?:(?P<root>-?\d+)\s+)?"
    r"(?P<t0>" + _NUMBER + r")\s+(?P<a0>" + _NUMBER + r")\s+(?P<b0>" + _NUMBER + r")\s+(?P<w0>" + _WRONG + r")\s+"
    r"(?P<t1>" + _NUMBER + r")\s+(?P<a1>" + _NUMBER + r")\s+(?P<b1>" + _NUMBER + r")\s+(?P<w1>" + _WRONG + r")\s*$"
)
_RANK = re.compile(r"#\s*Rank\s+(\d+)\b.*?\bon\s+(\S+)")
_TESTS = {"all_reduce": "allreduce", "reduce_scatter": "reduce_scatter", "all_gather": "allgather"}


def read_nccl_tests(path, *, in_place: bool = False, collective: str | None = None) -> Measured:
    """Read nccl-tests output (``all_reduce_perf`` and friends); see the module docstring.

    Parameters
    ----------
    path : str or path-like
        The saved output.
    in_place : bool
        Take the in-place columns instead of the out-of-place ones.
    collective : str, optional
        The collective the test ran (default: from the file's ``*_perf`` name if it shows one,
        else allreduce).

    Raises
    ------
    ValueError
        The file cannot be read or holds no result rows.
    """
    from pathlib import Path

    try:
        text = Path(path).read_text(errors="replace")
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from None
    if collective is None:
        collective = "allreduce"
        for name, coll in _TESTS.items():
            if f"{name}_perf" in text:
                collective = coll
    times, busbw, ranks, hosts = {}, {}, set(), set()
    for line in text.splitlines():
        m = _RANK.search(line)
        if m:
            ranks.add(int(m.group(1)))
            hosts.add(m.group(2))
            continue
        if line.lstrip().startswith("#"):
            continue
        m = _ROW.search(line)
        if not m:
            continue
        k = "1" if in_place else "0"
        t_us = float(m.group("t" + k))
        if t_us > 0:
            size = int(m.group("size"))
            times[size] = t_us * 1e-6
            busbw[size] = float(m.group("b" + k))
    if not times:
        raise ValueError(f"{path}: no nccl-tests result rows (size count type redop [root] time algbw busbw #wrong ...)")
    nranks = len(ranks) or None
    if nranks is None and collective == "allreduce":  # busbw / algbw = 2(n-1)/n on the largest size
        size = max(times)
        algbw = size / times[size] / 1e9
        ratio = busbw[size] / algbw if algbw > 0 else 0.0
        if 0 < ratio < 2:
            nranks = max(1, round(2 / (2 - ratio)))
    return Measured(collective, times, nranks, len(hosts) or None, busbw)


def read_measured(path) -> Measured:
    """Read collsim JSON lines (measured records of one collective and world size) or nccl-tests output."""
    from sim.results import read_jsonl

    with open(path, errors="replace") as fh:
        head = fh.read(4096).lstrip()
    if not head.startswith("{"):
        return read_nccl_tests(path)
    records = [r for r in read_jsonl(path) if r.source == "measured"]
    if not records:
        raise ValueError(f"{path}: no measured records (source: measured)")
    kinds = {(r.collective, r.nranks) for r in records}
    if len(kinds) != 1:
        raise ValueError(f"{path}: records of several collectives or world sizes {sorted(kinds)}; give one")
    (collective, nranks), = kinds
    times: dict = {}
    for r in records:  # the fastest algorithm per size is what a tuned library would run
        times[r.size] = min(times.get(r.size, math.inf), r.time_us * 1e-6)
    return Measured(collective, times, nranks, None, None)


def _model_split(network, nranks, nbytes, algorithms, collective, itemsize):
    """(time, latency part, bandwidth part, result) of the fastest of ``algorithms`` at ``nbytes``."""
    from sim.explain import _bytes_only
    from sim.select import run_model

    results = [run_model("flow", collective, a, network, nranks, nbytes, itemsize) for a in algorithms]
    best = min(results, key=lambda r: r.time)
    fast = run_model("flow", collective, best.algorithm, _bytes_only(network), nranks, nbytes, itemsize,
                     protocol=getattr(best, "protocol", None) or "auto").time
    fast = min(fast, best.time)
    return best.time, best.time - fast, fast, best


def _bottleneck_roles(G, result) -> set:
    """Link roles of the arcs that limit ``result`` (its bottlenecks); empty when it has no per-link data."""
    return {G.edges[a].get("role") for a in getattr(result, "bottlenecks", [])}


def _scaled(params, G, a: float, b: float, roles: set | None = None):
    """``params`` with latencies times ``a`` and the bandwidth efficiency of the link ``roles``
    (default: every role of ``G``) divided by ``b``."""
    classes = {role: dict(over) for role, over in params.link_classes.items()}
    every = {d.get("role") for *_, d in G.edges(data=True)}
    roles = every if not roles else set(roles)
    for role in roles - {None}:
        over = classes.setdefault(role, {})
        over["bandwidth_efficiency"] = over.get("bandwidth_efficiency", params.bandwidth_efficiency) / b
    if None in roles:  # arcs without a role use the global factor
        eff = params.bandwidth_efficiency / b
        if eff > 1:
            raise ValueError("calibration needs more bandwidth than nominal on arcs without a role; give them a role")
        params = params.replace(bandwidth_efficiency=eff)
    return params.replace(alpha=params.alpha * a, latency_scale=params.latency_scale * a, link_classes=classes)


def fit_measured(G, measured: Measured, fit_sizes, *, params=None, algorithms=None, nranks: int | None = None,
                 itemsize: int = 4, rounds: int = 3):
    """Fit the latency and bandwidth terms of the model to measured times at one or two sizes.

    Parameters
    ----------
    G : networkx.DiGraph
        The topology the measurements ran on (nominal figures).
    measured : Measured
        From :func:`read_nccl_tests` or :func:`read_measured`.
    fit_sizes : sequence of int
        One or two sizes of ``measured`` to fit on.
    params : ModelParams, optional
        Starting point (default: :func:`sim.params.defaults_for` ``G``).
    algorithms : sequence of str, optional
        What the measured library may have run (default: ring and tree, plus nvls / collnet where
        ``G`` declares them): at every size the model's fastest of them is fitted, as a tuned
        library runs its fastest.
    nranks : int, optional
        World size (default: the file's, else every endpoint of ``G``).

    Returns
    -------
    ModelParams
        With ``device``, the fitted ``latency_scale``, ``alpha`` and link-class efficiencies, and
        a ``calibration`` record: the fitted sizes, the two factors, and per size of the file the
        measured and predicted time and the relative error (``fitted`` marks the sizes used).

    Raises
    ------
    ValueError
        No or more than two fit sizes, a size the file lacks, or a world size the topology cannot
        hold.
    """
    from sim.flow import Network
    from sim.innetwork import SIMULATED_ONLY, applicable
    from sim.params import defaults_for, device_of

    fit_sizes = sorted(set(int(s) for s in fit_sizes))
    if not 1 <= len(fit_sizes) <= 2:
        raise ValueError(f"give one or two sizes to fit on, got {len(fit_sizes)}")
    missing = [s for s in fit_sizes if s not in measured.times]
    if missing:
        raise ValueError(f"the measurements have no size {missing[0]}; they have {sorted(measured.times)}")
    n = nranks or measured.nranks or len(G.graph["endpoints"])
    if n > len(G.graph["endpoints"]):
        raise ValueError(f"{n} ranks measured but the topology has {len(G.graph['endpoints'])} endpoints")
    params = params if params is not None else defaults_for(G)
    params = params.replace(device=device_of(G, params))
    if algorithms is None:
        base = Network(G, params)
        algorithms = ["ring"] + (["tree"] if measured.collective == "allreduce" else [])
        algorithms += [a for a in SIMULATED_ONLY if applicable(base, a, n, measured.collective)]
    a_total = b_total = 1.0
    for _ in range(rounds):
        net = Network(G, params)
        splits = [_model_split(net, n, s, algorithms, measured.collective, itemsize) for s in fit_sizes]
        rows = [(measured.times[s], *split[:3]) for s, split in zip(fit_sizes, splits, strict=True)]
        # the bandwidth term belongs to the links that limit the size where bandwidth weighs most
        widest = max(splits, key=lambda sp: sp[2] / max(sp[0], 1e-30))
        roles = _bottleneck_roles(G, widest[3])
        a, b = 1.0, 1.0
        if len(rows) == 2:
            A = np.array([[lat, bw] for _, _, lat, bw in rows])
            y = np.array([t for t, *_ in rows])
            try:
                a, b = np.linalg.solve(A, y)
            except np.linalg.LinAlgError:
                a, b = -1.0, -1.0
        if len(rows) == 1 or not (a > 0 and b > 0):
            t, total, lat, bw = rows[-1] if len(rows) == 1 else max(rows, key=lambda r: r[3] / max(r[1], 1e-30))
            a, b = 1.0, 1.0
            if lat > bw and lat > 0:
                a = max((t - bw) / lat, 1e-3)
            elif bw > 0:
                b = max((t - lat) / bw, 1e-3)
            if len(rows) == 2:  # the other size decides the other term
                t2, _, lat2, bw2 = min(rows, key=lambda r: r[3] / max(r[1], 1e-30))
                if lat2 > 0 and a == 1.0:
                    a = max((t2 - b * bw2) / lat2, 1e-3)
        params = _scaled(params, G, float(a), float(b), roles)
        a_total *= float(a)
        b_total *= float(b)
        if abs(a - 1) < 1e-3 and abs(b - 1) < 1e-3:
            break
    net = Network(G, params)
    points = []
    for size in sorted(measured.times):
        t_pred, _, _, best = _model_split(net, n, size, algorithms, measured.collective, itemsize)
        t = measured.times[size]
        points.append({"size": size, "measured_us": t * 1e6, "predicted_us": t_pred * 1e6,
                       "error": (t_pred - t) / t, "fitted": size in fit_sizes,
                       "algorithm": best.algorithm, "protocol": getattr(best, "protocol", None)})
    record = {
        "method": "collective times (nccl-tests or collsim JSON lines): latency and bandwidth terms of the model",
        "collective": measured.collective,
        "nranks": n,
        "fitted_sizes": fit_sizes,
        "latency_factor": a_total,
        "bandwidth_factor": 1.0 / b_total,
        "bandwidth_roles": sorted(str(r) for r in roles),
        "algorithms": list(algorithms),
        "points": points,
        "median_abs_error_unfitted": float(np.median([abs(p["error"]) for p in points if not p["fitted"]]))
        if any(not p["fitted"] for p in points) else None,
    }
    return params.replace(extra={**params.extra, "calibration": record})


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim.calibrate --worker ...``: one probe rank (started by :func:`calibrate_emulation`)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m sim.calibrate")
    p.add_argument("--worker", action="store_true", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--pairs", required=True)
    p.add_argument("--sizes", required=True)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--timeout", type=float, default=300.0)
    return _worker(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
