"""Topology files: node-link JSON and GraphML, written and read back with every attribute.

- ``.json``: networkx node-link data (``{"directed": true, "graph": {...}, "nodes": [...],
  "edges": [...]}``); node ids keep their JSON types (lists are read back as tuples).
- ``.graphml``: the format of Gephi, yEd and igraph. GraphML node ids are strings, so non-string ids
  are written as ``str(id)``; the ``endpoints`` list is stored as a JSON string graph attribute;
  other graph attributes that are not str, int, float or bool are left out.

Both keep what routing and the schedules need: the endpoints' ``node`` (machine), switch flags
(``nvls``, ``sharp``) and the graph's ``routing``, ``nics_per_node``, ``dims`` and ``wrap``. A file
that is not GraphML or node-link JSON is refused with one line saying what is wrong.

>>> import os, tempfile
>>> from topologies import ring
>>> path = os.path.join(tempfile.mkdtemp(), "ring.graphml")
>>> save(ring(4), path)
>>> load(path).graph["endpoints"]
['h0', 'h1', 'h2', 'h3']
"""

from __future__ import annotations

import json
import os

import networkx as nx

from topologies.model import TopologyError, validate

__all__ = ["save", "load", "FORMATS"]

#: File extensions -> format names.
FORMATS: dict[str, str] = {".json": "node-link JSON", ".graphml": "GraphML"}


def _format(path: str | os.PathLike) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        raise ValueError(
            f"cannot tell the file format of {os.fspath(path)!r}; use one of: {', '.join(FORMATS)}"
        )
    return ext


def _plain(x):
    """numpy scalars -> Python scalars, so both formats write them."""
    return x.item() if hasattr(x, "item") and not isinstance(x, (list, tuple, dict, str)) else x


def save(G: nx.DiGraph, path: str | os.PathLike) -> None:
    """Write topology ``G`` to ``path`` (``.json`` node-link or ``.graphml``, by extension).

    The file is written beside ``path`` and renamed into place, so a failure leaves nothing behind.

    Raises
    ------
    ValueError
        Unknown extension (the message lists the allowed ones), missing folder, or an attribute the
        format cannot store (GraphML: str, int, float, bool only).
    """
    ext = _format(path)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {path!r}: folder {folder!r} does not exist")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:  # write beside the target, then rename: a failure leaves no half-written file
        if ext == ".json":
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(nx.node_link_data(G, edges="edges"), f, default=_plain)
                f.write("\n")
        else:
            nx.write_graphml(_for_graphml(G), tmp)
        os.replace(tmp, path)
    except (TypeError, ValueError, nx.NetworkXError) as err:
        raise ValueError(f"cannot save topology {G.graph.get('name')!r} as {FORMATS[ext]}: {err}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _for_graphml(G: nx.DiGraph) -> nx.DiGraph:
    H = nx.relabel_nodes(G, {n: str(n) for n in G if not isinstance(n, str)}, copy=True)
    for _, data in H.nodes(data=True):
        for k, v in data.items():
            data[k] = _plain(v)
    for _, _, data in H.edges(data=True):
        for k, v in data.items():
            data[k] = _plain(v)
    H.graph = {
        k: (json.dumps([str(e) for e in v]) if k == "endpoints" else v)
        for k, v in G.graph.items()
        if isinstance(v, (str, int, float, bool)) or k == "endpoints"
    }
    return H


def _tuples(x):
    return tuple(_tuples(y) for y in x) if isinstance(x, list) else x


def _load_json(path) -> nx.DiGraph:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    edges = "edges" if isinstance(data, dict) and "edges" in data else "links"
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) or not isinstance(data.get(edges), list):
        found = ", ".join(map(repr, data)) if isinstance(data, dict) and data else "none"
        raise ValueError(
            "not a node-link topology: the JSON object needs a list 'nodes' and a list 'edges' "
            f"(as topologies.save and networkx.node_link_data write them); keys found: {found}"
        )
    for k, node in enumerate(data["nodes"]):
        if not isinstance(node, dict) or "id" not in node:
            raise ValueError(f"nodes[{k}] must be an object with an 'id', got {node!r}")
        node["id"] = _tuples(node["id"])
    for k, edge in enumerate(data[edges]):
        if not isinstance(edge, dict) or "source" not in edge or "target" not in edge:
            raise ValueError(f"{edges}[{k}] must be an object with 'source' and 'target', got {edge!r}")
        edge["source"], edge["target"] = _tuples(edge["source"]), _tuples(edge["target"])
    G = nx.node_link_graph(data, directed=True, multigraph=False, edges=edges)
    if isinstance(G.graph.get("endpoints"), list):
        G.graph["endpoints"] = [_tuples(e) for e in G.graph["endpoints"]]
    return G


def load(path: str | os.PathLike, check: bool = True) -> nx.DiGraph:
    """Read a topology written by :func:`save` (or another tool) from ``path``.

    Parameters
    ----------
    path : str or PathLike
        A ``.json`` (node-link) or ``.graphml`` file.
    check : bool
        Validate the result (default), raising :class:`TopologyError` if it breaks the model.

    Returns
    -------
    networkx.DiGraph
        The topology (an undirected file gives two arcs per edge).

    Raises
    ------
    ValueError
        One line: the file is missing, is not JSON / GraphML, or is JSON without node-link
        ``nodes`` and ``edges``.
    TopologyError
        The graph breaks the topology model (with ``check``).
    """
    ext = _format(path)
    if not os.path.exists(path):
        raise ValueError(f"topology file {os.fspath(path)!r} does not exist")
    from xml.etree.ElementTree import ParseError

    try:
        if ext == ".json":
            G = _load_json(path)
        else:
            try:
                G = nx.read_graphml(path)
            except ParseError as err:
                raise ValueError(f"not GraphML (the XML does not parse: {err})") from None
            eps = G.graph.get("endpoints")
            if isinstance(eps, str):
                G.graph["endpoints"] = json.loads(eps)
    except json.JSONDecodeError as err:
        raise ValueError(f"cannot read topology file {os.fspath(path)!r}: not JSON ({err})") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, nx.NetworkXError) as err:
        what = f"missing key {err}" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"cannot read topology file {os.fspath(path)!r}: {what}") from None
    if not G.is_directed():
        G = nx.DiGraph(G)
    G = nx.DiGraph(G)  # a multigraph file collapses to one arc per direction
    if check:
        try:
            validate(G)
        except TopologyError as err:
            raise TopologyError(f"{os.fspath(path)}: {err}") from None
    return G
