"""Spec strings: a topology in one line, for the command line.

Grammar::

    SPEC  := NAME [":" PARAM ("," PARAM)*]  |  FILE.json  |  FILE.graphml
    PARAM := KEY "=" VALUE

``NAME`` is a key of :data:`topologies.builders.BUILDERS`; ``KEY`` a parameter of that builder. Values
are parsed by the builder's type annotations:

- integers and floats as written (``k=4``, ``oversubscription=3``);
- dimensions as ``4x4`` or ``8x8x8``;
- choices by name (``fabric=single``), flags as ``true``/``false`` (``sharp=true``);
- bandwidths with units, parsed by :mod:`pint`: bits (``100Gbps``, ``400Gb/s``, ``100Gbit/s``) or bytes
  (``50GB/s``, ``12.5e9bytes/s``, ``1GiB/s``) per second. Decimal prefixes are powers of 1000
  (``1Gbps = 1.25e8`` bytes/s);
- latencies with units (``1us``, ``500ns``, ``0.2ms``, ``1e-6s``).

A bandwidth or latency without a unit is refused (``100`` could be bytes/s, bits/s or Gb/s; ``1``
could be seconds or microseconds), except ``0``. The Python builders take plain floats in bytes/s
and seconds.

A spec ending in ``.json`` or ``.graphml`` is a file written by :func:`topologies.save` (or another
tool) and is loaded and validated.

>>> G = from_spec("fat_tree:k=4,bandwidth=100Gbps,latency=1us")
>>> G.graph["name"], G.edges["h0", "edge0"]["bandwidth"], G.edges["h0", "edge0"]["latency"]
('fat_tree:k=4', 12500000000.0, 1e-06)
>>> from_spec("torus:dims=4x4").number_of_nodes()
16
>>> from_spec("fat_tree:k=3")
Traceback (most recent call last):
...
ValueError: fat_tree: k must be an even integer >= 2, got 3
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

from topologies.builders import BUILDERS
from topologies.model import validate

__all__ = ["from_spec", "parse_bandwidth", "parse_latency", "Param", "builder_params", "spec_help"]

_BW_EXAMPLES = "e.g. 100Gbps, 400Gb/s, 50GB/s, 12.5e9bytes/s"
_TIME_EXAMPLES = "e.g. 1us, 500ns, 0.2ms, 1e-6s"
_BW_UNITS = "bps, b/s, bit/s (bits) or Bps, B/s, byte/s, bytes/s, with a prefix k, M, G, T or Ki, Mi, Gi, Ti"
_TIME_UNITS = "s, ms, us (µs), ns, ps"
_NUMBER = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*")
# "Gbps", "Gb/s", "GBps", "GB/s": pint reads "b" as the gilbert and has no "Bps", so spell these out.
_PER_SECOND = re.compile(r"(|k|K|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)([bB])(?:ps|/s)")


@functools.lru_cache(maxsize=1)
def _units():
    import pint  # heavy (~0.3 s): only when a unit is parsed

    return pint.UnitRegistry(cache_folder=None)


def _bare(text: str) -> float | None:
    """The number ``text`` is when it has no unit, else None."""
    m = _NUMBER.fullmatch(str(text))
    return float(m.group(1)) if m is not None and not m.group(2) else None


def _quantity(text: str, default_unit: str):
    m = _NUMBER.fullmatch(str(text))
    if m is None:
        return None
    number, unit = float(m.group(1)), m.group(2)
    if not unit:
        unit = default_unit
    p = _PER_SECOND.fullmatch(unit)
    if p:
        unit = f"{'k' if p.group(1) == 'K' else p.group(1)}{'bit' if p.group(2) == 'b' else 'byte'}/s"
    ureg = _units()
    try:
        return ureg.Quantity(number, unit)
    except Exception:  # pint raises several error types for unknown or malformed units
        return None


def _clean(x: float) -> float:
    """Drop the last-bit noise of unit conversion (500 ns -> 5e-07, not 5.000000000000001e-07)."""
    return float(f"{float(x):.15g}")


def parse_bandwidth(text: str | float) -> float:
    """Return a bandwidth in bytes/s from ``"100Gbps"``, ``"50GB/s"``, ``"12.5e9bytes/s"`` ...

    A Python number is taken as bytes/s; a string needs a unit (``"0"`` aside).

    Raises
    ------
    ValueError
        Not a number with a bits- or bytes-per-second unit (the message names the units).

    Examples
    --------
    >>> parse_bandwidth("100Gbps"), parse_bandwidth("400 Gb/s"), parse_bandwidth("450GB/s")
    (12500000000.0, 50000000000.0, 450000000000.0)
    >>> parse_bandwidth("1GiB/s"), parse_bandwidth(2e9)
    (1073741824.0, 2000000000.0)
    >>> parse_bandwidth("100")
    Traceback (most recent call last):
    ...
    ValueError: cannot read '100' as a bandwidth: a number needs a unit (bits or bytes per second?); units: bps, b/s, bit/s (bits) or Bps, B/s, byte/s, bytes/s, with a prefix k, M, G, T or Ki, Mi, Gi, Ti; e.g. 100Gbps, 400Gb/s, 50GB/s, 12.5e9bytes/s
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    bare = _bare(text)
    if bare == 0:
        return 0.0
    if bare is not None:
        raise ValueError(
            f"cannot read {text!r} as a bandwidth: a number needs a unit (bits or bytes per second?); "
            f"units: {_BW_UNITS}; {_BW_EXAMPLES}"
        )
    q = _quantity(text, "byte/s")
    units = str(q.units) if q is not None else ""
    if q is None or not any(w in units for w in ("bit", "byte", "baud")) or not q.check("1/[time]"):
        raise ValueError(f"cannot read {text!r} as a bandwidth; write a number with a unit, {_BW_EXAMPLES}")
    return _clean(q.to("byte/s").magnitude)


def parse_latency(text: str | float) -> float:
    """Return a time in seconds from ``"1us"``, ``"500ns"``, ``"2ms"``, ``"1e-6s"`` ...

    A Python number is taken as seconds; a string needs a unit (``"0"`` aside).

    Raises
    ------
    ValueError
        Not a number with a time unit (the message names the units).

    Examples
    --------
    >>> parse_latency("1us"), parse_latency("500 ns"), parse_latency("2ms"), parse_latency("3s"), parse_latency("0")
    (1e-06, 5e-07, 0.002, 3.0, 0.0)
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    bare = _bare(text)
    if bare == 0:
        return 0.0
    if bare is not None:
        raise ValueError(
            f"cannot read {text!r} as a time: a number needs a unit; units: {_TIME_UNITS}; {_TIME_EXAMPLES}"
        )
    q = _quantity(text, "second")
    if q is None or not q.check("[time]"):
        raise ValueError(f"cannot read {text!r} as a time; write a number with a unit, {_TIME_EXAMPLES}")
    return _clean(q.to("second").magnitude)


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as an integer") from None


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a number") from None


def _parse_bool(text: str) -> bool:
    low = str(text).strip().lower()
    if low in ("true", "yes", "on", "1"):
        return True
    if low in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"cannot read {text!r} as a flag; write true or false")


def _parse_dims(text: str) -> tuple[int, ...]:
    parts = str(text).lower().split("x")
    if not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"cannot read {text!r} as dimensions; write sizes joined by 'x', e.g. 4x4 or 8x8x8")
    return tuple(int(p) for p in parts)


@dataclass(frozen=True)
class Param:
    """One spec parameter of a builder: its name, kind, default and (for choices) allowed values."""

    name: str
    kind: str  # "int", "float", "bool", "bandwidth", "latency", "dims", "choice"
    default: object
    choices: tuple[str, ...] = ()
    optional: bool = False

    def parse(self, text: str):
        """Parse the spec text of this parameter into the builder's argument."""
        if self.kind == "choice":
            if text not in self.choices:
                raise ValueError(f"cannot use {text!r}; allowed values: {', '.join(self.choices)}")
            return text
        parser: Callable[[str], object] = {
            "int": _parse_int,
            "float": _parse_float,
            "bool": _parse_bool,
            "bandwidth": parse_bandwidth,
            "latency": parse_latency,
            "dims": _parse_dims,
        }[self.kind]
        return parser(text)

    def describe(self) -> str:
        """``name=default`` as a spec would write it (``name=a|b`` for choices)."""
        if self.kind == "choice":  # the default first
            return f"{self.name}={'|'.join(sorted(self.choices, key=lambda c: c != self.default))}"
        if self.default is None:
            return f"{self.name}=<{self.kind}>"
        if self.kind == "bandwidth":  # network rates in Gb/s, device-internal ones in GB/s
            if self.default >= 60e9:
                return f"{self.name}={self.default / 1e9:g}GB/s"
            return f"{self.name}={self.default * 8 / 1e9:g}Gbps"
        if self.kind == "latency":
            return f"{self.name}={self.default * 1e6:g}us"
        if self.kind == "dims":
            return f"{self.name}={'x'.join(map(str, self.default))}"
        if self.kind == "bool":
            return f"{self.name}={str(self.default).lower()}"
        return f"{self.name}={self.default}"


def _kind(hint) -> tuple[str, tuple[str, ...], bool]:
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
    if typing.get_origin(hint) is typing.Annotated:
        return typing.get_args(hint)[1], (), optional
    if typing.get_origin(hint) is typing.Literal:
        return "choice", tuple(typing.get_args(hint)), optional
    if typing.get_origin(hint) is tuple:
        return "dims", (), optional
    if hint is bool:
        return "bool", (), optional
    if hint is int:
        return "int", (), optional
    if hint is float:
        return "float", (), optional
    raise TypeError(f"no spec parser for annotation {hint!r}")


@functools.cache
def builder_params(name: str) -> dict[str, Param]:
    """Return the spec parameters of the builder ``name``, read from its signature and annotations.

    Examples
    --------
    >>> [p.describe() for p in builder_params("fat_tree").values()]
    ['k=4', 'bandwidth=100Gbps', 'latency=1us', 'routing=dmodk|ecmp|shortest']
    """
    builder = _builder(name)
    hints = typing.get_type_hints(builder, include_extras=True)
    params = {}
    for p in inspect.signature(builder).parameters.values():
        kind, choices, optional = _kind(hints[p.name])
        params[p.name] = Param(p.name, kind, p.default, choices, optional)
    return params


def _builder(name: str):
    if name not in BUILDERS:
        raise ValueError(f"unknown topology {name!r}; choose from: {', '.join(BUILDERS)}")
    return BUILDERS[name]


def spec_help() -> str:
    """One line per topology: its name and parameters with defaults (for ``--help`` and docs)."""
    return "\n".join(
        f"{name}:" + ",".join(p.describe() for p in builder_params(name).values()) for name in BUILDERS
    )


def from_spec(spec: str) -> nx.DiGraph:
    """Build (or load) the topology a spec string describes, and validate it.

    Parameters
    ----------
    spec : str
        ``name:key=value,...`` (see the module docstring) or a ``.json`` / ``.graphml`` file.

    Returns
    -------
    networkx.DiGraph
        The topology; ``G.graph["spec"]`` keeps the spec string.

    Raises
    ------
    ValueError
        One line naming the topology, the parameter and the allowed values or format.

    Examples
    --------
    >>> from_spec("gpu_cluster:nodes=4").graph["endpoints"][-1]
    'n3_gpu7'
    >>> from_spec("leaf_spine:leaves=2,spines=1,hosts_per_leaf=4,oversubscription=2").number_of_nodes()
    11
    >>> from_spec("torus:size=4")
    Traceback (most recent call last):
    ...
    ValueError: torus: unknown parameter 'size'; parameters: dims, bandwidth, latency, routing
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"topology spec must be a non-empty string such as 'fat_tree:k=4', got {spec!r}")
    spec = spec.strip()
    if spec.lower().endswith((".json", ".graphml")):
        from topologies.io import load

        return load(spec)
    name, _, rest = spec.partition(":")
    name = name.strip()
    params = builder_params(name)  # raises for an unknown name, listing the choices
    kwargs: dict[str, object] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, text = (s.strip() for s in item.partition("="))
        if not eq or not key or not text:
            raise ValueError(f"{name}: cannot read {item!r}; write key=value, e.g. {next(iter(params))}=...")
        if key not in params:
            raise ValueError(f"{name}: unknown parameter {key!r}; parameters: {', '.join(params)}")
        if key in kwargs:
            raise ValueError(f"{name}: parameter {key!r} given twice")
        try:
            kwargs[key] = params[key].parse(text)
        except ValueError as err:
            raise ValueError(f"{name}: {key}: {err}") from None
    try:
        G = BUILDERS[name](**kwargs)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    G.graph["spec"] = spec
    validate(G)
    return G
