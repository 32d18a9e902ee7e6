r"""Closed-form alpha-beta-gamma cost of every algorithm and collective.

Assumptions
-----------
The network is seen as **uniform and fully connected**: every ordered pair of ranks has a link of
its own with bandwidth ``B`` (bytes/s, already times the bandwidth efficiency) and latency ``L``
(s), so the transfers of a step never share a link. On a real topology (:func:`route_link`)
``B`` is the narrowest usable bandwidth on the routes the schedule's transfers take and ``L`` the
largest latency of those routes: the links the traffic crosses, not the slowest link anywhere (on
one 8-GPU node the ring sees NVLink, not the NICs). Where the parameters give links a duplex share
below 1 (``ModelParams.duplex_efficiency``), an arc whose opposite arc the same step also loads
counts at that share, as in the flow model. A message of ``b`` bytes costs

.. math::  c(b) = \alpha + L + b\beta, \qquad c_\gamma(b) = c(b) + b\gamma \quad (\beta = 1/B)

where :math:`c_\gamma` is for a message the receiver reduces. The semantics are those of the flow
model (:mod:`sim.flow`), step for step: a rank starts a step when it has finished the previous one,
a transfer starts when both its ends have (rendezvous), the sender is done when its last byte has
left (:math:`\alpha + b\beta`), the receiver when it has arrived and been reduced; reductions of
different messages do not wait for each other. So on such a network the flow model and these
formulas agree exactly (tested to 1e-9) whenever the chunks are equal (the element count divisible
by the number of chunks); otherwise chunks differ by one element and the formulas use the mean.

Notation: ``p`` ranks, ``n`` bytes (the whole buffer; for reduce_scatter and allgather the ``p``
blocks of ``n/p`` bytes), ``P = 2**floor(log2 p)``, ``k = log2 P``, ``r = p - P``, ``[r]`` is 1 if
``r > 0`` else 0, masks ``m = 1, 2, ..., P/2``.

Formulas
--------
ring
    allreduce :math:`(p-1)\,c_\gamma(n/p) + (p-1)\,c(n/p)`
    = :math:`2(p-1)(\alpha+L) + 2\frac{p-1}{p}n\beta + \frac{p-1}{p}n\gamma`;
    reduce_scatter :math:`(p-1)\,c_\gamma(n/p)`; allgather :math:`(p-1)\,c(n/p)`.
recursive_halving (Rabenseifner)
    allreduce :math:`[r]\,c_\gamma(n) + \sum_m c_\gamma(m n/P) + \sum_m c(m n/P) + [r]\,c(n)`
    = :math:`2(k+[r])(\alpha+L) + 2\frac{P-1}{P}n\beta + \frac{P-1}{P}n\gamma + [r](2n\beta+n\gamma)`:
    the extra ranks fold their whole vector into a partner first and get the result back last.
    reduce_scatter :math:`[r]\,c_\gamma(n) + \sum_m c_\gamma\big((m+\min(r,m))\,n/p\big) + [r]\,c(n/p)`:
    a virtual rank below ``r`` stands for two real ranks, and the virtual rank 0 always receives the
    largest half (``m + min(r, m)`` blocks) and is the last to finish.
    allgather: see recursive_doubling's allgather (the same schedule).
recursive_doubling
    allreduce :math:`(k+[r])\,c_\gamma(n) + [r]\,c(n)` = :math:`\log_2 p\,(\alpha+L+n\beta+n\gamma)`
    for a power of two.
    reduce_scatter :math:`(k+[r])\,c_\gamma(n) + [r]\,c(n/p)`.
    allgather (blocks doubling; with folding the held ranges differ in size): after the hand-in
    :math:`[r]\,c(n/p)`, the critical path runs through the rank whose high bits are zero, so it is
    :math:`\max\big(\max_v S(v),\ \max_{v<r} S(v) + c(n)\big)` with
    :math:`S(v) = \sum_m \max\big(\alpha + o_m(v)\beta,\ \alpha + L + i_m(v)\beta\big)`, where
    :math:`o_m(v) = (m + \mathrm{clip}(r - v_m m, 0, m))\,n/p` is what it sends and
    :math:`i_m(v) = (m + \mathrm{clip}(r - (1 - v_m) m, 0, m))\,n/p` what it receives in the step of
    mask ``m`` (``v_m`` is bit ``m`` of ``v``). For a power of two this is
    :math:`k(\alpha+L) + \frac{p-1}{p}n\beta`.
tree (double binary tree, ``S`` segments per tree, segment ``s = n / (2S)``)
    allreduce :math:`(S + H)\,c_\gamma(s) + (S + D - 1)\,c(s)`; reduce_scatter (onto the two roots)
    :math:`(S + H)\,c_\gamma(s)`; allgather (from the roots) :math:`(S + D - 1)\,c(s)`: the pipeline
    fills in ``H`` (reduce) or ``D - 1`` (broadcast) steps and then delivers a segment per step,
    where ``H`` is the largest height of a non-root rank and ``D`` the largest depth in the two trees
    (read off the schedule's step counts). For ``p = 3`` both trees send over the arc ``2 -> 0`` in
    ``S - 1`` steps of each phase, which then carry ``2s`` bytes: those steps cost
    :math:`c(2s)` (plus :math:`s\gamma` when reducing).

With ``p = 1`` or ``n = 0`` every cost is 0 (the runtimes send nothing).

Schedules without a closed form
-------------------------------
``hierarchical``, and ``ring`` or ``tree`` with ``channels`` or a ``layout``, are costed by walking
their steps without link contention (:func:`walk`): a transfer of ``b`` bytes from ``i`` to ``j``
starts when both ranks have finished their previous step, and takes
:math:`\alpha + b_{ij}/B_{ij}` to leave and :math:`L_{ij}` more to arrive (plus :math:`b\gamma` if
reduced), with ``B_ij`` and ``L_ij`` the narrowest usable bandwidth and the latency of the route
``i -> j`` and ``b_ij`` every byte the step sends from ``i`` to ``j`` (transfers between one pair
share its bandwidth). On a uniform fully connected network this is the flow model's time.

Examples
--------
>>> t = cost("allreduce", "ring", 4, 4_000_000, bandwidth=1e9, latency=1e-6)
>>> round(t * 1e6, 3)  # 6 (alpha + L) + 1.5 * n * beta + 0.75 * n * gamma, alpha = gamma = 0
6006.0
"""

from __future__ import annotations

import numpy as np

from collectives.algorithms import algorithm_params, check_algorithm, check_collective, get_schedule
from sim.params import DEFAULT_PARAMS, ModelParams

__all__ = ["CLOSED_FORMS", "cost", "uniform_link", "route_link", "walk", "predict"]


#: Algorithms with closed forms (flat schedules: no channels, no layout).
CLOSED_FORMS = ("ring", "tree", "recursive_halving", "recursive_doubling")


def _clip(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


def cost(
    collective: str,
    algorithm: str,
    nranks: int,
    nbytes: float,
    *,
    bandwidth: float,
    latency: float,
    alpha: float = 0.0,
    gamma: float = 0.0,
    segments: int | None = None,
) -> float:
    """Predicted seconds for ``collective`` by ``algorithm`` (formulas in the module docstring).

    Parameters
    ----------
    collective, algorithm : str
    nranks : int
    nbytes : float
        The whole buffer in bytes.
    bandwidth : float
        Usable bytes/s of a link (efficiency already applied).
    latency : float
        Seconds of latency between two ranks.
    alpha, gamma : float
        Per-message overhead (s) and reduction cost (s/byte).
    segments : int, optional
        The tree's segments per tree (default: ``collectives.algorithm_params`` for ``nbytes``).

    Raises
    ------
    ValueError
        Unknown collective or algorithm, or a non-positive bandwidth / rank count.
    """
    check_collective(collective)
    check_algorithm(algorithm)
    if not isinstance(nranks, (int, np.integer)) or nranks < 1:
        raise ValueError(f"nranks must be a positive integer, got {nranks!r}")
    p, n = int(nranks), float(nbytes)
    if not bandwidth > 0 and p > 1:
        raise ValueError(f"bandwidth must be > 0 bytes/s, got {bandwidth!r}")
    if p == 1 or n <= 0:
        return 0.0
    beta = 1.0 / bandwidth

    def c(b, reduce=False):
        return alpha + latency + b * beta + (b * gamma if reduce else 0.0)

    P = 1 << (p.bit_length() - 1)
    k = P.bit_length() - 1
    r = p - P
    fold = 1 if r else 0
    masks = [1 << i for i in range(k)]
    blk = n / p

    if algorithm == "ring":
        if collective == "allreduce":
            return (p - 1) * c(n / p, True) + (p - 1) * c(n / p)
        if collective == "reduce_scatter":
            return (p - 1) * c(blk, True)
        return (p - 1) * c(blk)

    if algorithm == "tree":
        S = int(segments) if segments is not None else algorithm_params("tree", p, int(n))["segments"]
        s = n / (2 * S)
        shared = S - 1 if p == 3 else 0  # steps in which both trees use the arc 2 -> 0

        def phase(nsteps, reduce):
            doubled = alpha + latency + 2 * s * beta + (s * gamma if reduce else 0.0)
            return (nsteps - shared) * c(s, reduce) + shared * doubled

        up = phase(get_schedule("reduce_scatter", "tree", p, segments=S).nsteps, True)
        down = phase(get_schedule("allgather", "tree", p, segments=S).nsteps, False)
        return {"allreduce": up + down, "reduce_scatter": up, "allgather": down}[collective]

    if collective == "allgather":  # recursive_halving and recursive_doubling share it
        return _doubling_allgather(p, n, P, r, masks, alpha, latency, beta)

    if algorithm == "recursive_halving":
        if collective == "allreduce":
            chunk = n / P
            return (
                fold * c(n, True)
                + sum(c(m * chunk, True) for m in masks)
                + sum(c(m * chunk) for m in masks)
                + fold * c(n)
            )
        return fold * c(n, True) + sum(c((m + min(r, m)) * blk, True) for m in masks) + fold * c(blk)

    # recursive_doubling
    if collective == "allreduce":
        return (k + fold) * c(n, True) + fold * c(n)
    return (k + fold) * c(n, True) + fold * c(blk)


def _doubling_allgather(p, n, P, r, masks, alpha, latency, beta) -> float:
    blk = n / p
    v = np.arange(P, dtype=np.int64)
    path = np.zeros(P)
    for m in masks:
        bit = (v & m) != 0
        own = m + _clip(r - np.where(bit, m, 0), 0, m)
        peer = m + _clip(r - np.where(bit, 0, m), 0, m)
        path += np.maximum(alpha + own * blk * beta, alpha + latency + peer * blk * beta)
    if not r:
        return float(path.max())
    hand_in = alpha + latency + blk * beta
    back = alpha + latency + n * beta
    return hand_in + float(max(path.max(), path[:r].max() + back))


def uniform_link(network, nranks: int) -> tuple[float, float]:
    """The (bandwidth, latency) of a uniform view of the whole of ``network``.

    Bandwidth is the smallest usable arc bandwidth of the topology; latency the largest route
    latency from rank 0 to the other ranks. :func:`predict` uses :func:`route_link` instead,
    which looks only at the routes a schedule takes.
    """
    network.check_ranks(nranks)
    bandwidth = float(network.capacity.min()) if network.capacity.size else float("inf")
    latency = max((network.route_latency(0, j) for j in range(1, nranks)), default=0.0)
    return bandwidth, latency


def route_link(network, schedule) -> tuple[float, float]:
    """The (bandwidth, latency) of the links ``schedule``'s transfers cross on ``network``.

    Bandwidth is the narrowest usable arc bandwidth on any route a transfer of the schedule takes,
    latency the largest route latency (:meth:`sim.flow.Network.route_latency`) among them. Steps
    with the same pattern key are looked at once.
    """
    network.check_ranks(schedule.nranks)
    pairs: set[tuple[int, int]] = set()
    seen = set()
    bandwidth = float("inf")
    for i in range(schedule.nsteps):
        step = schedule.make_step(i)
        if step.key in seen:
            continue
        seen.add(step.key)
        step_pairs = set(zip(step.src.tolist(), step.dst.tolist(), strict=True))
        pairs.update(step_pairs)
        if network.duplex is not None and step_pairs:  # a link loaded both ways in a step keeps its duplex share
            arcs = np.unique(np.concatenate([network.path(a, b) for a, b in step_pairs]))
            bandwidth = min(bandwidth, float(network.capacities(arcs).min()))
    if not pairs:
        return float("inf"), 0.0
    if network.duplex is None:
        bandwidth = min(float(network.capacity[network.path(i, j)].min()) for i, j in pairs)
    latency = max(network.route_latency(i, j) for i, j in pairs)
    return bandwidth, latency


def walk(schedule, network, nbytes: int, *, itemsize: int = 4, execution=None) -> float:
    """Seconds of ``schedule`` walked step by step without link contention (module docstring).

    Each transfer uses its route's narrowest usable bandwidth and its route latency
    (:meth:`sim.flow.Network.route_latency`); transfers of one step between the same pair of ranks
    share the pair's bandwidth. ``execution`` (:class:`collectives.execution.Execution`) as in
    :func:`sim.flow.simulate`: a receive posted a step ahead lets its transfer start when the
    sender is ready, after ``posted_alpha``; a receipted transfer holds its sender until the
    receipt is back (``posted_alpha`` and the latency after the receive); lanes divide the reduction
    that follows a transfer.
    """
    from sim.flow import element_count

    p = schedule.nranks
    count = element_count(schedule, nbytes, itemsize)
    offsets = schedule.chunk_offsets(count) * itemsize
    alpha, gamma = network.params.alpha, network.params.gamma
    alpha_posted = network.params.alpha_posted
    posted = receipts = None
    if execution is not None:
        gamma /= execution.lanes
        posted, receipts = execution.posted, execution.receipts
    ready = np.zeros(p)
    links: dict[int, tuple[float, float]] = {}
    for i in range(schedule.nsteps):
        step = schedule.make_step(i)
        size = (offsets[step.chunk + step.nchunks] - offsets[step.chunk]).astype(float)
        keep = size > 0
        if not keep.any():
            continue
        src, dst, red, size = step.src[keep], step.dst[keep], step.reduce[keep], size[keep]
        ahead = None if posted is None or posted[i] is None else posted[i][keep]
        pair = src * p + dst
        uniq, inv = np.unique(pair, return_inverse=True)
        total = np.bincount(inv, weights=size)[inv]
        for k in uniq.tolist():
            if k not in links:
                a, b = divmod(k, p)
                links[k] = (float(network.capacity[network.path(a, b)].min()), network.route_latency(a, b))
        if network.duplex is None:
            bw = np.array([links[k][0] for k in uniq.tolist()])[inv]
        else:  # the step's arcs together: a link loaded both ways keeps its duplex share
            paths = [network.path(*divmod(k, p)) for k in uniq.tolist()]
            arcs = np.unique(np.concatenate(paths))
            cap = dict(zip(arcs.tolist(), network.capacities(arcs).tolist(), strict=True))
            bw = np.array([min(cap[a] for a in path.tolist()) for path in paths])[inv]
        lat = np.array([links[k][1] for k in uniq.tolist()])[inv]
        if ahead is None or not ahead.any():
            start = np.maximum(ready[src], ready[dst])
            sent = start + alpha + total / bw
            done = sent + lat + np.where(red, gamma * size, 0.0)
        else:  # a receive posted ahead does not hold its sender; it ends once the receiver is there
            start = np.where(ahead, ready[src], np.maximum(ready[src], ready[dst]))
            sent = start + np.where(ahead, alpha_posted, alpha) + total / bw
            done = np.maximum(sent + lat, ready[dst]) + np.where(red, gamma * size, 0.0)
        receipted = None if receipts is None or receipts[i] is None else receipts[i][keep]
        if receipted is not None and receipted.any():  # the sender waits for the receiver's receipt
            sent = np.where(receipted, np.maximum(sent + lat, ready[dst]) + alpha_posted + lat, sent)
        upd = np.full(p, -np.inf)
        np.maximum.at(upd, src, sent)
        np.maximum.at(upd, dst, done)
        involved = upd > -np.inf
        ready[involved] = upd[involved]
    return float(ready.max()) if p else 0.0


def predict(schedule, network, nbytes: int, *, itemsize: int = 4, params: ModelParams | None = None,
            execution=None):
    """Analytic prediction for a schedule on a network, as a :class:`sim.flow.SimResult`.

    The topology is seen through :func:`route_link` (the links the schedule crosses); per-link
    results are left empty. ``execution`` as in :func:`sim.flow.simulate`: with receives posted
    ahead the schedule is walked (:func:`walk`); lanes divide ``gamma`` in the closed forms.
    """
    from sim.flow import Network, element_count

    if not isinstance(network, Network):
        network = Network(network, params if params is not None else DEFAULT_PARAMS)
    p = schedule.nranks
    count = element_count(schedule, nbytes, itemsize)
    flat = schedule.algorithm in CLOSED_FORMS and not ({"channels", "layout"} & set(schedule.params))
    if not flat or (execution is not None and execution.per_step):
        t = walk(schedule, network, nbytes, itemsize=itemsize, execution=execution)
        return _result(schedule, network, count, itemsize, t)
    bandwidth, latency = route_link(network, schedule)
    prm = network.params
    t = cost(
        schedule.collective,
        schedule.algorithm,
        p,
        count * itemsize,
        bandwidth=bandwidth,
        latency=latency,
        alpha=prm.alpha,
        gamma=prm.gamma / (execution.lanes if execution is not None else 1),
        segments=schedule.params.get("segments"),
    )
    return _result(schedule, network, count, itemsize, t)


def _result(schedule, network, count: int, itemsize: int, t: float):
    from sim.flow import SimResult

    p = schedule.nranks
    return SimResult(
        collective=schedule.collective,
        algorithm=schedule.algorithm,
        nranks=p,
        nbytes=count * itemsize,
        count=count,
        itemsize=itemsize,
        time=t,
        topology=network.name,
        model="analytic",
        finish=np.full(p, t),
        arcs=[],
        arc_bytes=np.zeros(0),
        utilization=np.zeros(0),
        bottlenecks=[],
        params=dict(schedule.params),
    )
