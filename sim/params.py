"""Model parameters of the simulator: alpha, gamma, bandwidth efficiency, per-link-class overrides.

The cost of one message of ``b`` bytes on a route is

``alpha + sum(hop latencies) + b / (efficiency * bandwidth) [+ gamma * b at the receiver if reduced]``

* ``alpha`` (seconds): per-message software overhead (posting, matching, rendezvous), paid once per
  transfer before its data moves.
* per-hop latency and bandwidth come from the topology's arcs (``latency`` in s, ``bandwidth`` in
  bytes/s); ``beta = 1 / (efficiency * bandwidth)`` is the time per byte of an arc.
* ``bandwidth_efficiency`` (0 < f <= 1): fraction of nominal arc bandwidth a flow can use (protocol
  headers, the transport's achievable goodput).
* ``gamma`` (s/byte): time to reduce one byte of a received message into the local buffer.

Defaults by device kind
-----------------------
What the endpoints are decides the defaults (:func:`defaults_for`):

CPU hosts (:data:`CPU_PARAMS`, also :data:`DEFAULT_PARAMS`)
    ``alpha = 5 us`` (a typical TCP/MPI software overhead per message), ``gamma = 1e-10 s/B``
    (a 10 GB/s single-core float add) and the full nominal bandwidth. These are what the emulated
    CPU runs were calibrated against (``benchmarks/validation.py``).
GPUs (:data:`GPU_PARAMS`, when every endpoint has ``kind="gpu"``)
    * ``gamma = 0``: a GPU reduces inside the copy kernel at link speed (NCCL's primitives
      ``recvReduceSend``), so a reduction adds no serial per-byte term.
    * ``alpha = 0`` and the arcs' own latencies are replaced by NCCL's per-step latency of the
      protocol and the link kind the step crosses, plus a per-collective base latency
      (:mod:`sim.protocols`, from NCCL's ``src/graph/tuning.cc``).
    * Achievable link bandwidth, per link role, from NCCL's own figures (``src/graph/topo.h``):
      ``nvlink`` 20.6 GB/s per NVLink4 link of 25 GB/s per direction (``SM90_NVLINK_BW``) = 0.824;
      ``pcie`` 12 GB/s for a Gen3 x16 link of 15.75 GB/s (``PCI_BW``) = 0.762; ``network`` 12 GB/s
      for 100 Gb/s = 12.5 GB/s (``NET_BW``) = 0.96.

``device`` in a parameter file (``"cpu"`` or ``"gpu"``) overrides what the topology says; without
it the topology decides.

File format (``--params calib.json``), written by the calibration and readable by hand::

    {
      "format": "collsim-params/1",
      "alpha": 5e-06,
      "gamma": 2.5e-10,
      "bandwidth_efficiency": 0.9,
      "link_classes": {
        "nvlink": {"bandwidth_efficiency": 0.8},
        "network": {"bandwidth": 12.5e9, "latency": 2e-06}
      }
    }

``alpha``, ``gamma`` and ``bandwidth_efficiency`` are required. ``link_classes`` is optional: it
maps an arc's ``role`` attribute (set by the topology builders, e.g. ``"nvlink"``, ``"pcie"``,
``"network"``) to overrides for the arcs of that role: ``bandwidth_efficiency`` (replaces the
global factor; a calibration may set it above 1 when a link carries more than the topology's
nominal figure says), ``bandwidth`` (bytes/s, replaces the arc's nominal bandwidth) and ``latency``
(seconds, replaces the arc's latency). Optional too: ``device`` (``"cpu"`` or ``"gpu"``) and
``latency_scale`` (> 0, default 1), which multiplies every arc latency and, on GPUs, NCCL's
protocol latencies (``collsim calibrate --from`` fits it), and ``eager_threshold`` (bytes, default 0:
sends of fewer bytes go eagerly, without waiting for the receiver; see :mod:`sim.flow`), and
``duplex_efficiency`` (in (0, 1], default 1; also per link class): the fraction of an arc's
capacity left to its flows while the opposite arc of the same link carries a flow of the same step.
A full-duplex link (NVLink, InfiniBand, Ethernet) moves both directions at full rate, hence 1 by
default; TCP over a shaped link does not: each direction's acknowledgements queue behind the other
direction's data, and an exchange measures slower than a one-way transfer (emulated 20 Mbit/s NIC
links: 0.76-0.81 of the rate against 0.92 one way, 256 KiB messages). ``collsim calibrate`` fits it
from one-way and exchange probes of the same pairs. ``posted_alpha`` (seconds, default: ``alpha``)
is the per-message overhead of a receive posted a step ahead (:mod:`collectives.execution`), which
``collsim calibrate`` measures with back-to-back exchanges that post their next receive early. Other keys are kept (``extra``) and written back
unchanged, so a calibration may record where its numbers came from.

>>> p = ModelParams(alpha=2e-6, gamma=1e-10, bandwidth_efficiency=0.5)
>>> p.effective_bandwidth(10e9)
5000000000.0
>>> ModelParams.from_json(p.to_json()) == p
True
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "FORMAT",
    "DEVICES",
    "ModelParams",
    "DEFAULT_PARAMS",
    "CPU_PARAMS",
    "GPU_PARAMS",
    "device_of",
    "defaults_for",
    "describe_params",
    "load_params",
    "save_params",
]

FORMAT = "collsim-params/1"

#: Device kinds with defaults of their own.
DEVICES = ("cpu", "gpu")

_CLASS_KEYS = ("bandwidth_efficiency", "bandwidth", "latency", "duplex_efficiency")


def _number(name: str, value, *, positive: bool = False, at_most_one: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    if at_most_one and value > 1:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return value


@dataclass(frozen=True)
class ModelParams:
    """Parameters of the alpha-beta-gamma cost of a message (see the module docstring).

    Parameters
    ----------
    alpha : float
        Per-message overhead in seconds (>= 0).
    gamma : float
        Reduction time in seconds per byte (>= 0).
    bandwidth_efficiency : float
        Fraction of nominal arc bandwidth usable by flows, in (0, 1].
    link_classes : dict
        ``role -> {"bandwidth_efficiency": f, "bandwidth": B/s, "latency": s}`` overrides.
    extra : dict
        Other keys of the file, kept verbatim.
    device : {"cpu", "gpu"} or None
        The cost model to use (None: the topology's endpoints decide, see :func:`device_of`).
    latency_scale : float
        Multiplies arc latencies and, on GPUs, the protocol latencies (> 0).
    eager_threshold : float
        Bytes: a transfer of fewer bytes is sent eagerly (it starts when its sender is ready,
        without waiting for the receiver; :mod:`sim.flow`). 0 (default): every send is rendezvous.
    duplex_efficiency : float
        In (0, 1]: an arc's capacity is multiplied by it while the opposite arc of its link carries
        a flow of the same step (default 1: full duplex). A link class may override it.
    posted_alpha : float or None
        Per-message overhead in seconds of a transfer whose receive was posted a step ahead (the
        torch runtime's small CPU buffers, :mod:`collectives.execution`); None (default): ``alpha``.

    Raises
    ------
    ValueError
        A value out of range or a link class with unknown keys.
    """

    alpha: float = 0.0
    gamma: float = 0.0
    bandwidth_efficiency: float = 1.0
    link_classes: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    device: str | None = None
    latency_scale: float = 1.0
    eager_threshold: float = 0.0
    duplex_efficiency: float = 1.0
    posted_alpha: float | None = None

    def __post_init__(self) -> None:
        if self.posted_alpha is not None:
            object.__setattr__(self, "posted_alpha", _number("posted_alpha", self.posted_alpha))
        object.__setattr__(self, "eager_threshold", _number("eager_threshold", self.eager_threshold))
        object.__setattr__(self, "duplex_efficiency", _number("duplex_efficiency", self.duplex_efficiency,
                                                              positive=True, at_most_one=True))
        if self.device is not None and self.device not in DEVICES:
            raise ValueError(f"device must be one of: {', '.join(DEVICES)}; got {self.device!r}")
        object.__setattr__(self, "latency_scale", _number("latency_scale", self.latency_scale, positive=True))
        object.__setattr__(self, "alpha", _number("alpha", self.alpha))
        object.__setattr__(self, "gamma", _number("gamma", self.gamma))
        object.__setattr__(
            self, "bandwidth_efficiency", _number("bandwidth_efficiency", self.bandwidth_efficiency, positive=True, at_most_one=True)
        )
        if not isinstance(self.link_classes, dict):
            raise ValueError(f"link_classes must be an object mapping a link role to overrides, got {self.link_classes!r}")
        classes = {}
        for role, over in self.link_classes.items():
            if not isinstance(over, dict):
                raise ValueError(f"link_classes[{role!r}] must be an object, got {over!r}")
            unknown = sorted(set(over) - set(_CLASS_KEYS))
            if unknown:
                raise ValueError(f"link_classes[{role!r}] has unknown keys {unknown}; allowed: {', '.join(_CLASS_KEYS)}")
            checked = {}
            for key, value in over.items():
                checked[key] = _number(
                    f"link_classes[{role!r}].{key}",
                    value,
                    positive=key != "latency",
                    at_most_one=key == "duplex_efficiency",
                )
            classes[str(role)] = checked
        object.__setattr__(self, "link_classes", classes)

    @property
    def alpha_posted(self) -> float:
        """Per-message overhead (s) of a receive posted a step ahead: ``posted_alpha``, else ``alpha``."""
        return self.alpha if self.posted_alpha is None else self.posted_alpha

    def effective_bandwidth(self, bandwidth: float, role: str | None = None) -> float:
        """Bytes/s a flow can use on an arc of nominal ``bandwidth`` and ``role``."""
        over = self.link_classes.get(role, {}) if role is not None else {}
        return float(over.get("bandwidth", bandwidth)) * float(over.get("bandwidth_efficiency", self.bandwidth_efficiency))

    def duplex_factor(self, role: str | None = None) -> float:
        """Capacity factor of an arc of ``role`` while the opposite arc carries a flow of the same step."""
        over = self.link_classes.get(role, {}) if role is not None else {}
        return float(over.get("duplex_efficiency", self.duplex_efficiency))

    @property
    def has_duplex(self) -> bool:
        """Whether any arc loses capacity to traffic in the opposite direction."""
        return self.duplex_efficiency != 1.0 or any("duplex_efficiency" in o for o in self.link_classes.values())

    def arc_latency(self, latency: float, role: str | None = None) -> float:
        """Latency (s) of an arc of nominal ``latency`` and ``role``."""
        over = self.link_classes.get(role, {}) if role is not None else {}
        return float(over.get("latency", latency)) * self.latency_scale

    def to_json(self) -> dict:
        """The file's JSON object."""
        data = {
            "format": FORMAT,
            "alpha": self.alpha,
            "gamma": self.gamma,
            "bandwidth_efficiency": self.bandwidth_efficiency,
        }
        if self.link_classes:
            data["link_classes"] = {k: dict(v) for k, v in self.link_classes.items()}
        if self.device is not None:
            data["device"] = self.device
        if self.latency_scale != 1.0:
            data["latency_scale"] = self.latency_scale
        if self.eager_threshold:
            data["eager_threshold"] = self.eager_threshold
        if self.duplex_efficiency != 1.0:
            data["duplex_efficiency"] = self.duplex_efficiency
        if self.posted_alpha is not None:
            data["posted_alpha"] = self.posted_alpha
        data.update(self.extra)
        return data

    @classmethod
    def from_json(cls, data: dict) -> ModelParams:
        """Build from the file's JSON object (ValueError naming what is wrong)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a collsim parameter file (\"format\" must be {FORMAT!r})")
        missing = [k for k in ("alpha", "gamma", "bandwidth_efficiency") if k not in data]
        if missing:
            raise ValueError(f"parameter file lacks {', '.join(missing)}")
        known = ("format", "alpha", "gamma", "bandwidth_efficiency", "link_classes", "device", "latency_scale",
                 "eager_threshold", "duplex_efficiency", "posted_alpha")
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(data["alpha"], data["gamma"], data["bandwidth_efficiency"], data.get("link_classes", {}) or {}, extra,
                   device=data.get("device"), latency_scale=data.get("latency_scale", 1.0),
                   eager_threshold=data.get("eager_threshold", 0.0),
                   duplex_efficiency=data.get("duplex_efficiency", 1.0), posted_alpha=data.get("posted_alpha"))

    def replace(self, **changes) -> ModelParams:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        import dataclasses

        return dataclasses.replace(self, **changes)


#: CPU hosts: 5 us per message (a typical TCP/MPI software overhead), reduction at 10 GB/s
#: (gamma = 1e-10 s/B) and full nominal bandwidth.
CPU_PARAMS = ModelParams(alpha=5e-6, gamma=1e-10, bandwidth_efficiency=1.0)

#: Parameters used when none are given and the topology is not a GPU one (the CPU defaults).
DEFAULT_PARAMS = CPU_PARAMS

#: GPUs: reduction inside the transfer (gamma 0), no per-message software overhead beyond NCCL's
#: protocol latencies (:mod:`sim.protocols`), NCCL's achievable link bandwidths (module docstring).
GPU_PARAMS = ModelParams(
    alpha=0.0,
    gamma=0.0,
    bandwidth_efficiency=1.0,
    link_classes={
        "nvlink": {"bandwidth_efficiency": 20.6 / 25.0},  # NCCL topo.h SM90_NVLINK_BW per NVLink4 link
        "pcie": {"bandwidth_efficiency": 12.0 / 15.75},  # NCCL topo.h PCI_BW for PCIe Gen3 x16
        "network": {"bandwidth_efficiency": 12.0 / 12.5},  # NCCL topo.h NET_BW for 100 Gb/s
    },
    device="gpu",
)


def device_of(G, params: ModelParams | None = None) -> str:
    """``"gpu"`` when every endpoint of ``G`` has ``kind="gpu"`` (or ``params.device`` says so), else ``"cpu"``.

    >>> import topologies
    >>> device_of(topologies.gpu_cluster(nodes=1, gpus_per_node=2)), device_of(topologies.switch(4))
    ('gpu', 'cpu')
    """
    if params is not None and params.device is not None:
        return params.device
    ends = G.graph.get("endpoints", [])
    return "gpu" if ends and all(G.nodes[e].get("kind") == "gpu" for e in ends) else "cpu"


def defaults_for(G) -> ModelParams:
    """The default parameters for topology ``G``: :data:`GPU_PARAMS` on GPUs, else :data:`CPU_PARAMS`."""
    return GPU_PARAMS if device_of(G) == "gpu" else CPU_PARAMS


def describe_params(params: ModelParams, G=None, *, protocol: str = "auto", channels="auto",
                    runtime: str | None = None) -> str:
    """One or two lines saying which cost model and parameters a table was made with."""
    device = device_of(G, params) if G is not None else (params.device or "cpu")
    classes = ", ".join(
        f"{role} x{over['bandwidth_efficiency']:.3g}" for role, over in sorted(params.link_classes.items())
        if "bandwidth_efficiency" in over
    )
    line = (f"{device} model: alpha={params.alpha:g} s, gamma={params.gamma:g} s/B, "
            f"bandwidth_efficiency={params.bandwidth_efficiency:g}" + (f" ({classes})" if classes else ""))
    if params.latency_scale != 1.0:
        line += f", latency_scale={params.latency_scale:g}"
    if params.posted_alpha is not None:
        line += f", posted_alpha={params.posted_alpha:g} s"
    if params.has_duplex:
        duplex = ", ".join(f"{role} x{over['duplex_efficiency']:.3g}" for role, over in sorted(params.link_classes.items())
                           if "duplex_efficiency" in over)
        line += f", duplex_efficiency={params.duplex_efficiency:g}" + (f" ({duplex})" if duplex else "")
    if device == "gpu":
        line += f"\nNCCL protocol {protocol} (sim.protocols), channels {channels}"
    else:
        line += f", channels {channels}"
        if runtime is not None:
            line += (", torch runtime (receives posted ahead, lanes: collectives.execution)" if runtime == "torch"
                     else f", {runtime} runtime (plain steps)")
    return line


def load_params(path: str | os.PathLike) -> ModelParams:
    """Read a ``collsim-params/1`` JSON file (ValueError with the file name if it is not one)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read parameter file {path}: {err}") from None
    try:
        return ModelParams.from_json(data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def save_params(params: ModelParams, path: str | os.PathLike) -> None:
    """Write ``params`` as a ``collsim-params/1`` JSON file."""
    Path(path).write_text(json.dumps(params.to_json(), indent=2) + "\n")
