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
global factor), ``bandwidth`` (bytes/s, replaces the arc's nominal bandwidth) and ``latency``
(seconds, replaces the arc's latency). Other keys are kept (``extra``) and written back unchanged,
so a calibration may record where its numbers came from.

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

__all__ = ["FORMAT", "ModelParams", "DEFAULT_PARAMS", "load_params", "save_params"]

FORMAT = "collsim-params/1"

_CLASS_KEYS = ("bandwidth_efficiency", "bandwidth", "latency")


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

    def __post_init__(self) -> None:
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
                    at_most_one=key == "bandwidth_efficiency",
                )
            classes[str(role)] = checked
        object.__setattr__(self, "link_classes", classes)

    def effective_bandwidth(self, bandwidth: float, role: str | None = None) -> float:
        """Bytes/s a flow can use on an arc of nominal ``bandwidth`` and ``role``."""
        over = self.link_classes.get(role, {}) if role is not None else {}
        return float(over.get("bandwidth", bandwidth)) * float(over.get("bandwidth_efficiency", self.bandwidth_efficiency))

    def arc_latency(self, latency: float, role: str | None = None) -> float:
        """Latency (s) of an arc of nominal ``latency`` and ``role``."""
        over = self.link_classes.get(role, {}) if role is not None else {}
        return float(over.get("latency", latency))

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
        extra = {k: v for k, v in data.items() if k not in ("format", "alpha", "gamma", "bandwidth_efficiency", "link_classes")}
        return cls(data["alpha"], data["gamma"], data["bandwidth_efficiency"], data.get("link_classes", {}) or {}, extra)


#: Parameters used when none are given: 5 us per message (a typical TCP/MPI software overhead), reduction at
#: 10 GB/s (gamma = 1e-10 s/B) and full nominal bandwidth.
DEFAULT_PARAMS = ModelParams(alpha=5e-6, gamma=1e-10, bandwidth_efficiency=1.0)


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
