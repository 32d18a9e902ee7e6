"""The layout of a topology's ranks: which ranks share a node, and how many NICs a node has.

The simulator generates topology-aware schedules (channels, hierarchical, NCCL's tree) from the
same :class:`collectives.layout.Layout` the runtimes find at run time; here it comes from the
topology. Rank ``i`` runs on ``G.graph["endpoints"][i]``; its node is the endpoint's ``node``
attribute (``topologies.endpoint_nodes``), NICs per node ``topologies.nics_per_node``.

>>> import networkx as nx
>>> import topologies
>>> G = topologies.switch(4)
>>> layout_of(G).nnodes  # one host per endpoint: each its own node
4
>>> for e, n in zip(G.graph["endpoints"], [0, 0, 1, 1], strict=True):
...     G.nodes[e]["node"] = n
>>> layout_of(G).nodes
((0, 1), (2, 3))
"""

from __future__ import annotations

from collectives.layout import Layout

__all__ = ["layout_of", "node_labels"]


def node_labels(G) -> list:
    """The node of every endpoint, in rank order.

    ``topologies.endpoint_nodes(G)`` where the topologies package has it; otherwise the endpoints'
    ``node`` attribute, then the builders' older ``server`` attribute, else each endpoint its own
    node.
    """
    import topologies

    fn = getattr(topologies, "endpoint_nodes", None)
    if fn is not None:
        return list(fn(G))
    out = []
    for i, e in enumerate(G.graph["endpoints"]):
        data = G.nodes[e]
        out.append(data.get("node", data.get("server", ("endpoint", i))))
    return out


def _nics(G) -> int:
    import topologies

    fn = getattr(topologies, "nics_per_node", None)
    if fn is not None:
        return int(fn(G))
    if "nics_per_node" in G.graph:
        return int(G.graph["nics_per_node"])
    # older builders: count the NICs that sit in the first endpoint's server
    ends = G.graph["endpoints"]
    server = G.nodes[ends[0]].get("server") if ends else None
    if server is None:
        return 1
    return max(1, sum(1 for _, d in G.nodes(data=True) if d.get("kind") == "nic" and d.get("server") == server))


def layout_of(G) -> Layout:
    """The :class:`collectives.layout.Layout` of ``G``'s endpoints (rank order).

    Parameters
    ----------
    G : networkx.DiGraph
        A topology.

    Returns
    -------
    Layout
        Nodes numbered by first appearance; ``nics_per_node`` from the topology (1 if it says none).
    """
    return Layout.from_nodes(node_labels(G), nics_per_node=max(1, _nics(G)))
