"""Topology builders, one module per family, and the registry name -> builder.

The registry :data:`BUILDERS` is the single list of topology names: the spec parser
(:func:`topologies.from_spec`), the ``collsim topology`` CLI and the tests all read it.

- :mod:`~topologies.builders.simple`: ring, line, switch, fully_connected
- :mod:`~topologies.builders.lattice`: torus, mesh, hypercube
- :mod:`~topologies.builders.datacenter`: fat_tree, leaf_spine, dragonfly
- :mod:`~topologies.builders.gpu`: gpu_cluster, cluster (multi-GPU servers, multi-host CPU machines)
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from topologies.builders.datacenter import dragonfly, fat_tree, leaf_spine
from topologies.builders.gpu import cluster, gpu_cluster
from topologies.builders.lattice import hypercube, mesh, torus
from topologies.builders.simple import fully_connected, line, ring, switch

__all__ = [
    "BUILDERS",
    "ring",
    "line",
    "switch",
    "fully_connected",
    "torus",
    "mesh",
    "hypercube",
    "fat_tree",
    "leaf_spine",
    "dragonfly",
    "gpu_cluster",
    "cluster",
]

#: Topology name -> builder. Every builder takes keyword arguments ``bandwidth`` (bytes/s) and
#: ``latency`` (seconds) with defaults, and returns a validated-shape :class:`networkx.DiGraph`.
BUILDERS: dict[str, Callable[..., nx.DiGraph]] = {
    "ring": ring,
    "line": line,
    "switch": switch,
    "fully_connected": fully_connected,
    "torus": torus,
    "mesh": mesh,
    "hypercube": hypercube,
    "fat_tree": fat_tree,
    "leaf_spine": leaf_spine,
    "dragonfly": dragonfly,
    "gpu_cluster": gpu_cluster,
    "cluster": cluster,
}
