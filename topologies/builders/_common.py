"""Helpers shared by the builder families (not public)."""

from __future__ import annotations

__all__ = [
    "GBPS_100",
    "MAX_NODES",
    "MAX_LINKS",
    "check_int",
    "check_positive",
    "check_link",
    "check_dims",
    "check_size",
    "hosts",
    "check_routing",
    "set_routing",
]

import networkx as nx

#: 100 Gb/s in bytes/s, the default link bandwidth of the generic builders.
GBPS_100 = 100e9 / 8


#: Largest topology a builder makes (networkx holds it in memory: about 1 KB per link).
MAX_NODES = 2**20
MAX_LINKS = 2**21


def check_size(what: str, nodes: int, links: int) -> None:
    """Raise ValueError if a topology of ``nodes`` nodes and ``links`` links is too big to build."""
    if nodes > MAX_NODES or links > MAX_LINKS:
        raise ValueError(
            f"{what} would have {nodes} nodes and {links} links; the limit is {MAX_NODES} nodes and {MAX_LINKS} links"
        )


def check_int(name: str, value, minimum: int = 1, even: bool = False) -> int:
    """Return ``value`` if it is an int >= ``minimum`` (and even if asked), else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (even and value % 2):
        what = f"an even integer >= {minimum}" if even else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_positive(name: str, value, allow_zero: bool = False) -> float:
    """Return ``float(value)`` if it is a number > 0 (>= 0 with ``allow_zero``), else raise ValueError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if ok:
        ok = value >= 0 if allow_zero else value > 0
    if not ok or value == float("inf"):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_link(bandwidth, latency, prefix: str = "") -> tuple[float, float]:
    """Return a link's ``(bandwidth, latency)`` as floats: bandwidth > 0, latency >= 0.

    The error names the argument as ``{prefix}bandwidth`` / ``{prefix}latency`` (e.g. ``nvlink_``).
    """
    return check_positive(f"{prefix}bandwidth", bandwidth), check_positive(f"{prefix}latency", latency, allow_zero=True)


def check_dims(name: str, dims) -> tuple[int, ...]:
    """Return ``dims`` as a tuple of ints >= 1 (an int means one dimension)."""
    if isinstance(dims, int) and not isinstance(dims, bool):
        dims = (dims,)
    try:
        dims = tuple(dims)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of integers >= 1 such as (4, 4), got {dims!r}") from None
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
        raise ValueError(f"{name} must be a non-empty sequence of integers >= 1 such as (4, 4), got {dims!r}")
    return dims


def hosts(G: nx.DiGraph, n: int, prefix: str = "h") -> list[str]:
    """Add ``n`` host nodes ``h0 .. h{n-1}`` (layer 0), make them ``G``'s endpoints in that order, return their ids.

    Each host is a machine of its own: host ``i`` gets ``node=i``.
    """
    ids = [f"{prefix}{i}" for i in range(n)]
    G.add_nodes_from((x, {"kind": "host", "layer": 0, "node": i}) for i, x in enumerate(ids))
    G.graph["endpoints"] = ids
    return ids


def check_routing(routing, lattice: bool = False) -> str:
    """Return ``routing`` if it is a policy this builder's graphs can use, else raise ValueError.

    ``"dor"`` (dimension-order routing) needs a lattice (``lattice=True``).
    """
    from topologies.model import ROUTINGS

    allowed = ROUTINGS if lattice else tuple(r for r in ROUTINGS if r != "dor")
    if routing not in allowed:
        extra = "" if lattice or routing != "dor" else " (dor needs a torus, mesh or hypercube)"
        raise ValueError(f"routing must be one of: {', '.join(allowed)}; got {routing!r}{extra}")
    return routing


def set_routing(G: nx.DiGraph, routing: str, default: str) -> None:
    """Store ``routing`` in ``G.graph`` and name it in ``G.graph["name"]`` when it is not ``default``."""
    G.graph["routing"] = routing
    if routing != default:
        G.graph["name"] += f",routing={routing}" if ":" in G.graph["name"] else f":routing={routing}"
