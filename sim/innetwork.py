r"""In-network reduction: NVLS (NVSwitch) and CollNet (SHARP switches), **simulated only**.

Some collectives reduce inside the network: an NVSwitch with NVLink SHARP (``nvls``) or InfiniBand
switches with SHARP (``collnet``) add up the data that arrives from the GPUs and multicast the
result back. No collsim runtime can drive that hardware, so these are not schedules: this module
costs them directly on the topology, only where the topology declares the capability (a switch
node with ``nvls=True``, fabric switches with ``sharp=True``). Everywhere they appear (``--help``,
tables, tuning output) they are marked *simulated only*; the runtime's tuning table never names
them.

Traffic
-------
``p`` ranks on ``N`` nodes of ``q`` ranks each, ``n`` bytes.

nvls, one node (NCCL's NVLS: ``multimem.ld_reduce`` then ``multimem.st``)
    The switch reads every GPU's contribution to each GPU's slice and hands the reduced slice to
    its owner; the owner multicasts it through the switch. Per GPU and direction on its NVLink:
    allreduce :math:`n(1 + 1/p)`; reduce_scatter up :math:`n`, down :math:`n/p`; allgather up
    :math:`n/p`, down :math:`n`.
nvls across nodes (needs ``sharp`` switches too, as NCCL runs multi-node NVLS only with CollNet)
    NVLS reduce-scatter inside each node, SHARP allreduce of each GPU's :math:`n/q` across nodes
    (GPUs of equal local rank, through their NICs), NVLS allgather inside each node.
collnet (CollNet Direct)
    Reduce-scatter inside each node (each GPU sends :math:`n/q` to each of its :math:`q-1` peers),
    a SHARP allreduce of :math:`n/q` per GPU across nodes, allgather inside each node.

SHARP merges flows: on a route up to the reducing switch, an arc above the first ``sharp`` (or
``nvls``) switch carries the group's data once, not once per member; on the way down, the
multicast replicates at the last such switch. The phases are pipelined in chunks (as NCCL runs
them), so every arc carries all its bytes over the whole collective:

.. math::  t = L + \max_{\text{arcs } a} \frac{\text{bytes}(a)}{f \cdot C_a}

with :math:`C_a` the arc's usable bandwidth (:class:`sim.params.ModelParams`), :math:`f` NCCL's
efficiency of the algorithm (NVLS 0.85: ``nvlsEfficiency`` for Hopper in NCCL 2.2x; CollNet 0.9:
NCCL 2.8's ``busBw *= .9`` for CollNet) and :math:`L` NCCL's latency (``src/graph/tuning.cc``):
NVLS 25 us (``hwLat[NVLINK][NVLS]`` in 2.2x, 23 in v2.19), plus 18 us (``hwLat[NET][NVLS]``)
across nodes; CollNet Direct :math:`2(\min(1, q-1)\cdot 3.7 + (q-1)\cdot 0.4) + 31` us (v2.19).
Both use NCCL's Simple protocol only.
The same cost serves the flow and the analytic model.

Examples
--------
>>> import topologies
>>> G = topologies.gpu_cluster(nodes=1, gpus_per_node=8)
>>> G.nodes["n0_nvswitch"]["nvls"] = True
>>> from sim.flow import Network
>>> from sim.params import GPU_PARAMS
>>> r = cost(Network(G, GPU_PARAMS), "nvls", "allreduce", 8, 1 << 30)
>>> r.simulated_only, r.protocol, round(r.busbw)
(True, 'simple', 487)
"""

from __future__ import annotations

import numpy as np

from sim.flow import Network, SimResult

__all__ = [
    "SIMULATED_ONLY",
    "NVLS_EFFICIENCY",
    "COLLNET_EFFICIENCY",
    "applicable",
    "why_not",
    "cost",
    "resolve_algorithms",
    "NOTE",
]

#: Algorithms the simulator costs but no runtime executes -> what they need.
SIMULATED_ONLY: dict[str, str] = {
    "nvls": "an NVSwitch with nvls=true (NVLink SHARP); across nodes also sharp=true fabric switches",
    "collnet": "fabric switches with sharp=true (InfiniBand SHARP) joining two or more nodes",
}
#: NCCL ``nvlsEfficiency`` (Hopper).
NVLS_EFFICIENCY = 0.85
#: NCCL's CollNet bandwidth factor (``busBw *= .9``).
COLLNET_EFFICIENCY = 0.9
_US = 1e-6
#: The line tables print under rows of simulated-only algorithms.
NOTE = ("(simulated-only): costed by the simulator where the topology declares the switch capability "
        "(nvls: NVSwitch nvls=true; collnet: sharp=true switches); no collsim runtime can execute it")


def _nodes(network: Network, nranks: int) -> list[list[int]]:
    from sim.layout import layout_of

    layout = layout_of(network.G)
    groups: dict[int, list[int]] = {}
    for r, nd in enumerate(layout.node_of[:nranks]):
        groups.setdefault(nd, []).append(r)
    return list(groups.values())


def _nvls_switch(G, endpoint):
    for s in G.successors(endpoint):
        if G.nodes[s].get("nvls"):
            return s
    return None


def _sharp_root(network: Network, members: list) -> object | None:
    """The ``sharp`` switch the members' SHARP tree is rooted at: on the route between the two
    members farthest apart, the sharp switch whose farthest member is nearest (None if none)."""
    G, router = network.G, network.router
    first = members[0]
    far = max(members[1:], key=lambda m: len(router.route(first, m)))
    candidates = [v for _, v in router.route(first, far) if G.nodes[v].get("sharp")]
    if not candidates:
        return None
    return min(candidates, key=lambda s: max(len(router.route(m, s)) for m in members))


def why_not(network: Network, algorithm: str, nranks: int, collective: str = "allreduce") -> str | None:
    """Why ``algorithm`` cannot run on the first ``nranks`` ranks of ``network`` (None when it can)."""
    if algorithm not in SIMULATED_ONLY:
        raise ValueError(f"unknown in-network algorithm {algorithm!r}; choose from: {', '.join(SIMULATED_ONLY)}")
    G = network.G
    ends = network.endpoints
    nodes = _nodes(network, nranks)
    multi = len(nodes) > 1
    if nranks < 2:
        return "needs at least 2 ranks"
    if algorithm == "nvls":
        for group in nodes:
            switches = {_nvls_switch(G, ends[r]) for r in group}
            if None in switches or len(switches) != 1:
                return "needs every node's GPUs on one NVSwitch with nvls=true"
        if multi and collective != "allreduce":
            return "is costed across nodes for allreduce only"
    elif not multi:
        return "needs two or more nodes joined by sharp=true switches"
    elif collective != "allreduce":
        return "is costed for allreduce only"
    if multi:
        q = len(nodes[0])
        if any(len(g) != q for g in nodes):
            return "needs the same number of ranks on every node"
        for k in range(q):
            if _sharp_root(network, [ends[g[k]] for g in nodes]) is None:
                return "needs sharp=true switches on the routes between nodes"
    return None


def applicable(network: Network, algorithm: str, nranks: int, collective: str = "allreduce") -> bool:
    """Whether the topology declares what ``algorithm`` needs for these ranks (see :func:`why_not`)."""
    return why_not(network, algorithm, nranks, collective) is None


class _Loads:
    """Bytes per arc, with SHARP merging: a route's arcs past a reducing switch count once per group."""

    def __init__(self, network: Network):
        self.net = network
        self.bytes = np.zeros(len(network.arcs))

    def route(self, u, v) -> list[int]:
        return [self.net.arc_index[a] for a in self.net.router.route(u, v)]

    def add(self, u, v, nbytes: float) -> None:
        if nbytes > 0 and u != v:
            np.add.at(self.bytes, self.route(u, v), nbytes)

    def tree(self, members: list, root, up: float, down: float) -> None:
        """Members send ``up`` bytes to ``root`` and receive ``down`` bytes from it, reduced and
        multicast by every ``sharp``/``nvls`` switch on the way (an arc carries them once)."""
        G = self.net.G
        merged: set[int] = set()
        for m in members:
            for direction, nbytes in (("up", up), ("down", down)):
                if nbytes <= 0:
                    continue
                path = self.net.router.route(m, root) if direction == "up" else self.net.router.route(root, m)
                nodes = [a[0] for a in path] + [path[-1][1]]
                reducer = [bool(G.nodes[x].get("sharp") or G.nodes[x].get("nvls")) for x in nodes]
                for k, arc in enumerate(path):
                    i = self.net.arc_index[arc]
                    # up: past a reducer at or before the arc's tail; down: before one at or after its head
                    shared = any(reducer[1:k + 1]) if direction == "up" else any(reducer[k + 1:-1])
                    if shared:
                        if (direction, i) in merged:
                            continue
                        merged.add((direction, i))
                    self.bytes[i] += nbytes


def cost(network: Network, algorithm: str, collective: str, nranks: int, nbytes: int, *, itemsize: int = 4,
         model: str = "flow") -> SimResult:
    """Predicted time of ``collective`` by the in-network ``algorithm`` (formulas in the module docstring).

    Raises
    ------
    ValueError
        The topology lacks the capability (the message says what is missing) or the collective is
        not costed for this algorithm.
    """
    from sim.results import busbw_factor  # noqa: F401  (documents the busbw the result reports)

    reason = why_not(network, algorithm, nranks, collective)
    if reason is not None:
        raise ValueError(f"{algorithm} {reason} ({SIMULATED_ONLY[algorithm]}); topology {network.name!r} does not have it")
    network.check_ranks(nranks)
    count = int(nbytes) // int(itemsize)
    if collective != "allreduce":
        count -= count % nranks
    n = float(count * itemsize)
    ends = network.endpoints
    nodes = _nodes(network, nranks)
    q, N, p = len(nodes[0]), len(nodes), nranks
    scale = network.params.latency_scale
    loads = _Loads(network)
    if algorithm == "nvls":
        efficiency = NVLS_EFFICIENCY
        if N == 1:
            up, down = {"allreduce": (n * (1 + 1 / p), n * (1 + 1 / p)), "reduce_scatter": (n, n / p),
                        "allgather": (n / p, n)}[collective]
            switch = _nvls_switch(network.G, ends[nodes[0][0]])
            for r in nodes[0]:
                loads.add(ends[r], switch, up)
                loads.add(switch, ends[r], down)
            latency = 25 * _US
        else:
            for group in nodes:  # NVLS reduce-scatter and allgather inside each node
                switch = _nvls_switch(network.G, ends[group[0]])
                for r in group:
                    loads.add(ends[r], switch, n + n / q)
                    loads.add(switch, ends[r], n / q + n)
            _sharp_allreduce(network, loads, nodes, n / q)
            latency = (25 + 18) * _US
    else:
        efficiency = COLLNET_EFFICIENCY
        for group in nodes:  # reduce-scatter and allgather inside each node: n/q to and from every peer
            for a in group:
                for b in group:
                    if a != b:
                        loads.add(ends[a], ends[b], 2 * n / q)
        _sharp_allreduce(network, loads, nodes, n / q)
        latency = (2 * (min(1, q - 1) * 3.7 + (q - 1) * 0.4) + 31) * _US
    latency *= scale
    capacity = network.capacity * efficiency
    with np.errstate(divide="ignore", invalid="ignore"):
        busy = np.where(loads.bytes > 0, loads.bytes / capacity, 0.0)
    t = latency + float(busy.max(initial=0.0)) if n > 0 and p > 1 else 0.0
    util = np.where(loads.bytes > 0, loads.bytes / (network.capacity * t), 0.0) if t > 0 else np.zeros_like(busy)
    top = util.max(initial=0.0)
    result = SimResult(
        collective=collective,
        algorithm=algorithm,
        nranks=p,
        nbytes=int(n),
        count=count,
        itemsize=itemsize,
        time=t,
        topology=network.name,
        model=model,
        finish=np.full(p, t),
        arcs=network.arcs,
        arc_bytes=loads.bytes,
        utilization=util,
        bottlenecks=[network.arcs[k] for k in np.flatnonzero(util >= top * (1 - 1e-3))] if top > 0 else [],
        params={},
    )
    result.protocol, result.simulated_only = "simple", True
    return result


def _sharp_allreduce(network: Network, loads: _Loads, nodes: list[list[int]], share: float) -> None:
    """GPUs of equal local rank allreduce ``share`` bytes each through the SHARP tree they meet in."""
    ends = network.endpoints
    for k in range(len(nodes[0])):
        members = [ends[g[k]] for g in nodes]
        loads.tree(members, _sharp_root(network, members), share, share)


def resolve_algorithms(names: list[str], text: str, network: Network, nranks: int, collective: str) -> list[str]:
    """The algorithms a command costs: with ``--algorithms all`` the simulated-only ones the
    topology supports join ``names``; a simulated-only one asked for by name must be supported
    (ValueError saying what the topology lacks)."""
    out = list(names)
    if text.strip() == "all":
        out += [a for a in SIMULATED_ONLY if a not in out and applicable(network, a, nranks, collective)]
        return out
    for a in out:
        if a in SIMULATED_ONLY:
            reason = why_not(network, a, nranks, collective)
            if reason is not None:
                raise ValueError(f"--algorithms: {a} (simulated only) {reason}; topology {network.name!r} does not declare it")
    return out
