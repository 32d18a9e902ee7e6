"""collsim topologies: networkx builders, spec strings, routing, files, drawing and emulation.

A topology is a :class:`networkx.DiGraph` whose arcs carry ``bandwidth`` (bytes/s) and ``latency``
(seconds), whose nodes carry a ``kind`` and whose graph carries a ``name`` and the ordered
``endpoints`` (rank i runs on ``endpoints[i]``); see :mod:`topologies.model` for the full contract.

>>> import topologies
>>> G = topologies.from_spec("fat_tree:k=4,bandwidth=100Gbps,latency=1us")
>>> topologies.validate(G, nranks=16)
>>> topologies.Router(G).route_ranks(0, 15)[:2]
[('h0', 'edge0'), ('edge0', 'agg1')]

Heavy dependencies (scipy, pint, matplotlib) are imported only by the functions that need them.
"""

from topologies.builders import (
    BUILDERS,
    cluster,
    dragonfly,
    fat_tree,
    fully_connected,
    gpu_cluster,
    hypercube,
    leaf_spine,
    line,
    mesh,
    ring,
    switch,
    torus,
)
from topologies.drawing import draw
from topologies.io import load, save
from topologies.model import (
    KINDS,
    ROUTINGS,
    TopologyError,
    add_link,
    as_topology,
    endpoint_nodes,
    endpoints,
    links,
    new_topology,
    nics_per_node,
    validate,
)
from topologies.routing import Router
from topologies.spec import builder_params, from_spec, parse_bandwidth, parse_latency, spec_help
from topologies.summary import bisection_bandwidth, diameter, format_summary, summary

__all__ = [
    "BUILDERS",
    "KINDS",
    "ROUTINGS",
    "Router",
    "TopologyError",
    "add_link",
    "as_topology",
    "bisection_bandwidth",
    "builder_params",
    "cluster",
    "diameter",
    "draw",
    "dragonfly",
    "endpoint_nodes",
    "endpoints",
    "fat_tree",
    "format_summary",
    "from_spec",
    "fully_connected",
    "gpu_cluster",
    "hypercube",
    "leaf_spine",
    "line",
    "links",
    "load",
    "mesh",
    "new_topology",
    "nics_per_node",
    "parse_bandwidth",
    "parse_latency",
    "ring",
    "save",
    "spec_help",
    "summary",
    "switch",
    "torus",
    "validate",
]
