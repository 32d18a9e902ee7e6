r"""NCCL's three protocols (LL, LL128, Simple) as the GPU cost model sees them.

A GPU collective in NCCL moves its data with one of three protocols that trade latency for
bandwidth. NCCL's own cost model (``src/graph/tuning.cc``) gives every algorithm x protocol x link
kind a per-collective base latency, a per-step ("hop") latency and a bandwidth fraction, and runs
the cheapest. collsim uses the same numbers, but the bandwidth side is the simulation itself: the
schedule's transfers are routed on the topology and share its links (:mod:`sim.flow`), or the
closed forms of :mod:`sim.analytic` see the links they cross.

Model
-----
For a GPU topology, protocol ``P`` and algorithm family ``F`` (``tree`` for the tree, ``ring`` for
every other step-by-step schedule: ring, hierarchical, recursive halving/doubling):

.. math::

   t_P = \mathrm{base}[F][P] \cdot s + T_{\mathrm{lat}}
         + \max\Big(T_{\mathrm{sim}} - T_{\mathrm{lat}},\ \frac{f_{bus}\,n}{C_P}\Big)

* :math:`T_{\mathrm{sim}}`: the flow (or analytic) model's time of the schedule with
  - every arc's usable bandwidth times the protocol's **bandwidth fraction** ``frac[F][P]``;
  - every transfer delayed by the **step latency** ``hw[kind][F][P] * s`` of the route it takes,
    where ``kind`` is ``net`` when the route crosses an arc whose role is not ``nvlink`` or
    ``pcie``, else ``pcie`` when it crosses a ``pcie`` arc, else ``nvlink``. NCCL's step latency
    includes the wire, so the arcs' own latencies are not added again.
* :math:`C_P`: the protocol's cap on bus bandwidth (LL only: NCCL's ``llMaxBw``);
  :math:`f_{bus} n` is the bus bytes (``busbw_factor * n``); :math:`T_{\mathrm{lat}}` is the
  simulated time of the same schedule with one element per chunk (its latency), so the cap
  bounds the bandwidth term only, as NCCL's ``latency + bytes / bandwidth`` does.
* :math:`s`: ``ModelParams.latency_scale`` (1 by default; ``collsim calibrate --from`` fits it).
* A segmented schedule (the tree) pays the step latency once per pipeline stage, not once per
  segment, as NCCL counts the tree's hops (:func:`pipeline_factor`).

With ``protocol="auto"`` the model costs every protocol the topology allows and takes the fastest,
as NCCL does. LL128 is allowed only when every route between GPUs of one node is NVLink (NCCL
enables it only for ``typeIntra <= PATH_NVB``). CPU topologies have a single protocol and never
come here.

Constants (microseconds, GB/s)
------------------------------
From NVIDIA NCCL ``src/graph/tuning.cc`` (``baseLat``, ``hwLat``, ``llMaxBws``, the bandwidth
refinements of ``ncclTopoTuneModel``). Two versions were read: v2.19 (commit b6475625, read
directly) and the 2.2x defaults (``ncclTunerConstantsDefaults``, from a public description of
them, since that file was not available to read). The table uses the 2.2x values, as the H200 data
(NCCL 2.30) ran with them; where they differ from v2.19: the tree's Simple hop latency was 28 us
(NVLink, PCIe, network; NCCL's comment: "the latency [of] a 256kB chunk", which the simulation pays
as transfer time anyway), its Simple base latency 0, the ring's LL fraction 1/4 and Hopper's
``llMaxBw`` row 87.7 / 22.5 / 19.0. The ring rows are the same in both.

===========  ==============  ===================  ==================  ==================
family       base LL/128/S   NVLink hop LL/128/S  PCIe hop LL/128/S   net hop LL/128/S
===========  ==============  ===================  ==================  ==================
ring         6.6 / 14 / 8.4  0.6 / 1.9 / 3.4      1.0 / 2.5 / 5.7     2.7 / 4.0 / 14.0
tree         6.8 / 14 / 8.4  0.6 / 1.25 / 4.0     1.0 / 1.9 / 4.0     5.0 / 8.5 / 14.0
===========  ==============  ===================  ==================  ==================

Bandwidth fractions (``ncclTopoTuneModel``):

* ring: LL 0.5 (capped at ``llMaxBw``; 1/4 in v2.19), LL128 0.92 (0.7 with fewer than 2 GPUs
  per node), Simple 1.
* tree: Simple 0.92; LL 0.92 / 3.8 (capped at ``llMaxBw``); LL128 0.92 x 7/9 on one node,
  0.92 x 120/128 across nodes.
* ``llMaxBw`` (bus GB/s) by GPU generation and 1 / 2 / more nodes: Volta 39 / 39 / 20.4, Ampere
  87.7 / 22.5 / 19.0, Hopper 141 / 45 / 35. The generation is read off the per-GPU NVLink
  bandwidth of the topology (>= 400 GB/s per direction: Hopper; >= 250: Ampere; else Volta).

Multi-node refinements (``ncclTopoTuneModel`` / ``ncclTopoGetAlgoTime``): the ring's intra-node
steps cost at least NCCL's network post overhead (1 us, 3 us for Simple); the ring's Simple
allreduce latency is multiplied by 1.4 (the "plateau effect of ring"). Left out, because they
describe NCCL's own channel counts or chunking that the simulation represents itself: the
per-channel caps (``perChMaxRingLL128Bw``, ``perChMaxTreeBw``) and the tree's empirical
``treeCorrectionFactor``.

Examples
--------
>>> PROTOCOLS
('ll', 'll128', 'simple')
>>> [round(t * 1e6, 2) for t in step_latencies("ring", "simple", nnodes=1)]  # NVLink, PCIe, network
[3.4, 5.7, 14.0]
>>> round(bandwidth_fraction("tree", "ll128", nnodes=2, ranks_per_node=8), 4)
0.8625
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass

import numpy as np

from sim.flow import Network
from sim.params import device_of

__all__ = [
    "PROTOCOLS",
    "PROTOCOL_CHOICES",
    "BASE_LATENCY",
    "HW_LATENCY",
    "LL_MAX_BW",
    "family_of",
    "gpu_generation",
    "step_latencies",
    "bandwidth_fraction",
    "bus_cap",
    "check_protocol",
    "ProtocolNetwork",
    "Variant",
    "GpuShape",
    "gpu_shape",
    "variants",
    "pipeline_factor",
]

#: The protocols, cheapest latency first.
PROTOCOLS: tuple[str, ...] = ("ll", "ll128", "simple")
#: What ``--protocol`` accepts.
PROTOCOL_CHOICES: tuple[str, ...] = ("auto", *PROTOCOLS)

_US = 1e-6
#: Per-collective base latency (s) by family and protocol (NCCL ``baseLat``).
BASE_LATENCY: dict[str, dict[str, float]] = {
    "ring": {"ll": 6.6 * _US, "ll128": 14.0 * _US, "simple": 8.4 * _US},
    "tree": {"ll": 6.8 * _US, "ll128": 14.0 * _US, "simple": 8.4 * _US},
}
#: Per-step latency (s) by link kind, family and protocol (NCCL ``hwLat``).
HW_LATENCY: dict[str, dict[str, dict[str, float]]] = {
    "nvlink": {"ring": {"ll": 0.6 * _US, "ll128": 1.9 * _US, "simple": 3.4 * _US},
               "tree": {"ll": 0.6 * _US, "ll128": 1.25 * _US, "simple": 4.0 * _US}},
    "pcie": {"ring": {"ll": 1.0 * _US, "ll128": 2.5 * _US, "simple": 5.7 * _US},
             "tree": {"ll": 1.0 * _US, "ll128": 1.9 * _US, "simple": 4.0 * _US}},
    "net": {"ring": {"ll": 2.7 * _US, "ll128": 4.0 * _US, "simple": 14.0 * _US},
            "tree": {"ll": 5.0 * _US, "ll128": 8.5 * _US, "simple": 14.0 * _US}},
}
#: NCCL ``llMaxBws`` (bus bytes/s) by GPU generation, for 1, 2 and more nodes.
LL_MAX_BW: dict[str, tuple[float, float, float]] = {
    "volta": (39.0e9, 39.0e9, 20.4e9),
    "ampere": (87.7e9, 22.5e9, 19.0e9),
    "hopper": (141.0e9, 45.0e9, 35.0e9),
}
#: NCCL's network post overhead (s) that multi-node rings pay on every step (x3 for Simple).
NET_OVERHEAD = 1.0 * _US
#: NCCL's "plateau effect of ring": multi-node Simple ring allreduce latency factor (compute capability >= 8.0).
RING_PLATEAU = 1.4

_KINDS = ("nvlink", "pcie", "net")


def family_of(algorithm: str) -> str:
    """NCCL's algorithm whose latencies a collsim algorithm pays: ``tree`` for the tree, else ``ring``."""
    return "tree" if algorithm == "tree" else "ring"


def check_protocol(protocol: str) -> str:
    """Return ``protocol`` if it is one of :data:`PROTOCOL_CHOICES`, else raise ValueError."""
    if protocol not in PROTOCOL_CHOICES:
        raise ValueError(f"unknown protocol {protocol!r}; choose from: {', '.join(PROTOCOL_CHOICES)}")
    return protocol


def _node_index(nnodes: int) -> int:
    return 0 if nnodes <= 1 else (1 if nnodes == 2 else 2)


def step_latencies(family: str, protocol: str, *, nnodes: int = 1, scale: float = 1.0) -> tuple[float, float, float]:
    """Seconds a step over an NVLink, a PCIe and a network route costs (see the module docstring)."""
    nv, pci, net = (HW_LATENCY[k][family][protocol] * scale for k in _KINDS)
    if nnodes > 1 and family == "ring":  # intra-node steps of a multi-node ring pay NCCL's net post overhead
        floor = NET_OVERHEAD * (3 if protocol == "simple" else 1) * scale
        nv, pci = max(nv, floor), max(pci, floor)
    return nv, pci, net


def bandwidth_fraction(family: str, protocol: str, *, nnodes: int = 1, ranks_per_node: float = 1.0) -> float:
    """Fraction of a link's usable bandwidth the protocol delivers (see the module docstring)."""
    if family == "ring":
        return {"ll": 0.5, "ll128": 0.92 if ranks_per_node >= 2 else 0.7, "simple": 1.0}[protocol]
    tree = 0.92
    return {"ll": tree / 3.8, "ll128": tree * (7.0 / 9.0 if nnodes <= 1 else 120.0 / 128.0), "simple": tree}[protocol]


def bus_cap(protocol: str, generation: str, nnodes: int) -> float:
    """Largest bus bandwidth (bytes/s) the protocol reaches: ``llMaxBw`` for LL, unbounded otherwise."""
    if protocol != "ll":
        return float("inf")
    return LL_MAX_BW[generation][_node_index(nnodes)]


def gpu_generation(G) -> str:
    """``"hopper"``, ``"ampere"`` or ``"volta"`` from the largest per-GPU NVLink bandwidth in ``G``.

    A GPU's NVLink bandwidth is the sum over its ``nvlink`` arcs (per direction); without NVLink
    the oldest row of NCCL's tables applies, as NCCL does for GPUs before Ampere.
    """
    best = 0.0
    for e in G.graph.get("endpoints", []):
        total = sum(float(d["bandwidth"]) for _, _, d in G.out_edges(e, data=True) if d.get("role") == "nvlink")
        best = max(best, total)
    return "hopper" if best >= 400e9 else ("ampere" if best >= 250e9 else "volta")


def _arc_kinds(net: Network) -> np.ndarray:
    """0, 1 or 2 per arc of ``net`` (NVLink, PCIe, network); computed once per topology."""
    kinds = _KIND_CACHE.get(net)
    if kinds is None:
        codes = {"nvlink": 0, "pcie": 1}
        kinds = np.array([codes.get(d.get("role"), 2) for *_, d in net.G.edges(data=True)], dtype=np.int64)
        kinds.setflags(write=False)
        _KIND_CACHE[net] = kinds
    return kinds


def _route_kinds(net: Network, src: np.ndarray, dst: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """The slowest kind of arc (0, 1 or 2) on each route ``src[k] -> dst[k]``, 0 for an empty route."""
    arcs, lengths = net.routes(src, dst)
    out = np.zeros(lengths.size, dtype=np.int64)
    nonempty = lengths > 0
    if arcs.size:
        starts = (np.cumsum(lengths) - lengths)[nonempty]
        out[nonempty] = np.maximum.reduceat(kinds[arcs], starts)
    return out


class ProtocolNetwork(Network):
    """A compiled GPU topology as one protocol sees it: scaled capacities, NCCL step latencies.

    Built by :func:`variants` from a plain :class:`sim.flow.Network` (sharing its router and route
    cache); not constructed directly.
    """

    protocol: str
    family: str
    step_latency: np.ndarray

    def pair_kind(self, i: int, j: int) -> int:
        """0, 1 or 2: NVLink, PCIe or network, the slowest kind of arc on the route ``i -> j``."""
        key = (i, j)
        k = self._kind_cache.get(key)
        if k is None:
            arcs = self.path(i, j)
            k = self._kind_cache[key] = int(self._arc_kind[arcs].max()) if arcs.size else 0
        return k

    def compile(self, src: np.ndarray, dst: np.ndarray):
        pat = super().compile(src, dst)
        kinds = _route_kinds(self, src, dst, self._arc_kind)
        pat.latency = pat.latency + self.step_latency[kinds]
        return pat

    def route_latency(self, i: int, j: int) -> float:
        return super().route_latency(i, j) + float(self.step_latency[self.pair_kind(i, j)])


@dataclass(frozen=True)
class GpuShape:
    """What the protocol tables need to know about ``nranks`` ranks on a GPU topology."""

    nnodes: int
    ranks_per_node: float
    generation: str
    ll128: bool


def gpu_shape(network: Network, nranks: int) -> GpuShape:
    """Nodes, ranks per node, GPU generation and whether LL128 is allowed, for the first ``nranks`` ranks."""
    cache = _SHAPES.setdefault(network, {})
    shape = cache.get(nranks)
    if shape is None:
        from sim.layout import layout_of

        layout = layout_of(network.G)
        node_of = layout.node_of[:nranks]
        nnodes = len(set(node_of))
        kinds = _arc_kinds(network) if not hasattr(network, "_arc_kind") else network._arc_kind
        # LL128 needs NVLink between the GPUs of a node: the route from each node's first rank to
        # every other rank of the node crosses NVLink only
        nodes = np.asarray(node_of, dtype=np.int64)
        _, first_of, inverse = np.unique(nodes, return_index=True, return_inverse=True)
        src = first_of[inverse.ravel()].astype(np.int64)
        others = np.flatnonzero(src != np.arange(nodes.size))
        ll128 = not others.size or bool((_route_kinds(network, src[others], others, kinds) == 0).all())
        shape = cache[nranks] = GpuShape(nnodes, nranks / max(nnodes, 1), gpu_generation(network.G), ll128)
    return shape


@dataclass
class Variant:
    """One protocol's view of a GPU network for one algorithm family."""

    protocol: str
    family: str
    network: ProtocolNetwork
    base_latency: float
    bus_cap: float

    def finish(self, result, base: Network, latency_part: float = 0.0):
        """Add the base latency, apply the bus-bandwidth cap and label ``result`` (in place; returned).

        ``latency_part``: the simulated time of the same schedule with one element per chunk (its
        latency alone); the cap bounds only what is left, as NCCL adds ``latency + bytes / bw``.
        """
        from sim.results import busbw_factor

        t = result.time
        if t > 0:
            floor = result.nbytes * busbw_factor(result.collective, result.nranks) / self.bus_cap
            lat = min(latency_part, t)
            t = self.base_latency + lat + max(t - lat, floor)
            shift = t - result.time
            result.finish = np.where(result.finish > 0, result.finish + shift, result.finish)
            result.time = t
            if result.arc_bytes.size:
                result.utilization = np.where(result.arc_bytes > 0, result.arc_bytes / (base.capacity * t), 0.0)
                top = result.utilization.max()
                result.bottlenecks = [base.arcs[k] for k in np.flatnonzero(result.utilization >= top * (1 - 1e-3))] if top > 0 else []
        result.protocol = self.protocol
        return result


_SHAPES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_KIND_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_VARIANTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _variant_network(base: Network, protocol: str, family: str, fraction: float, latencies) -> ProtocolNetwork:
    net = copy.copy(base)
    # caches of compiled patterns hold capacities and latencies: a variant starts with its own; the
    # route cache (_pairs) and the arc index are shared, since routes do not depend on the protocol
    for key, value in list(vars(net).items()):
        if isinstance(value, dict) and key not in ("arc_index", "_pairs", "_blocks", "_incidence"):
            setattr(net, key, type(value)())
    net.__class__ = ProtocolNetwork
    net.capacity = base.capacity * fraction
    net.latency = np.zeros_like(base.latency)  # NCCL's step latency includes the wire
    net.protocol, net.family = protocol, family
    net.step_latency = np.asarray(latencies, dtype=float)
    net._arc_kind = _arc_kinds(base)
    net._kind_cache = {}
    return net


def pipeline_factor(schedule) -> float:
    """The share of a segmented schedule's steps that are pipeline stages: 1 without segments.

    NCCL charges a tree its hop latency once per hop of the tree (``2 * depth`` hops), not once
    per segment: the segments stream through the pipeline behind the first. A collsim tree of
    ``S`` segments per phase has ``S - 1`` more steps per phase than its depth, each of which the
    flow model would charge a step latency; spreading NCCL's hop latency over all the steps,
    ``(nsteps - phases * (S - 1)) / nsteps`` per step, charges it once per hop as NCCL does.
    """
    segments = int(schedule.params.get("segments", 1) or 1)
    if segments <= 1 or schedule.nsteps == 0:
        return 1.0
    phases = 2 if schedule.collective == "allreduce" else 1
    fill = max(schedule.nsteps - phases * (segments - 1), 1)
    return fill / schedule.nsteps


def variants(network: Network, nranks: int, algorithm: str, collective: str, protocol: str = "auto",
             pipeline: float = 1.0) -> list[Variant]:
    """The protocol views of ``network`` to cost ``algorithm`` with (one unless ``protocol="auto"``).

    ``pipeline`` multiplies the step latencies (:func:`pipeline_factor` of the schedule).

    Raises
    ------
    ValueError
        ``network`` is not a GPU topology, or an unknown protocol.
    """
    check_protocol(protocol)
    if device_of(network.G, network.params) != "gpu":
        raise ValueError(f"protocols apply to GPU topologies; {network.name!r} has CPU endpoints")
    shape = gpu_shape(network, nranks)
    family = family_of(algorithm)
    names = [p for p in PROTOCOLS if p != "ll128" or shape.ll128] if protocol == "auto" else [protocol]
    scale = network.params.latency_scale
    cache = _VARIANTS.setdefault(network, {})
    out = []
    for name in names:
        plateau = RING_PLATEAU if (shape.nnodes > 1 and family == "ring" and name == "simple"
                                   and collective == "allreduce") else 1.0
        key = (name, family, shape, plateau, round(pipeline, 9))
        net = cache.get(key)
        if net is None:
            fraction = bandwidth_fraction(family, name, nnodes=shape.nnodes, ranks_per_node=shape.ranks_per_node)
            lat = step_latencies(family, name, nnodes=shape.nnodes, scale=scale * plateau * pipeline)
            net = cache[key] = _variant_network(network, name, family, fraction, lat)
        out.append(Variant(name, family, net, BASE_LATENCY[family][name] * scale * plateau,
                           bus_cap(name, shape.generation, shape.nnodes)))
    return out
