"""Multi-GPU servers and multi-host machines: fast links inside a machine, NICs into a fabric between.

- :func:`gpu_cluster`: DGX/HGX-style servers (NVSwitch, NVLink or PCIe between the GPUs; NICs
  behind PCIe switches) on a rail-optimised, fat-tree or single-switch fabric.
- :func:`cluster`: CPU machines of a few hosts each, small enough to emulate on one Linux box.

Every endpoint carries ``node`` (its machine's index); endpoints are numbered machine by machine, so
rank ``r`` is local rank ``r % per_node`` of machine ``r // per_node``. The graph carries
``nics_per_node``. Routing defaults to ``dmodk`` for GPU clusters (InfiniBand-like fabrics) and to
``ecmp`` for the CPU ``cluster`` (Ethernet; its routes have no choice to make anyway: every host has
one way out, its NIC).
"""

from __future__ import annotations

from typing import Literal

import networkx as nx

from topologies.builders._common import (
    GBPS_100,
    check_int,
    check_link,
    check_positive,
    check_routing,
    check_size,
    set_routing,
)
from topologies.model import Bandwidth, Latency, Routing, add_link, new_topology

__all__ = ["gpu_cluster", "cluster"]

#: Leaf switch ports facing down in ``fabric="fat_tree"`` when ``nodes_per_leaf`` is not given.
_LEAF_DOWN_PORTS = 32


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _spec_value(value) -> str:
    """A parameter value as a spec string writes it (``true``, ``2.5``, ``4``, ``rail``)."""
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _divisor(name: str, value, of_name: str, of: int) -> int:
    check_int(name, value)
    if of % value:
        raise ValueError(f"{name}={value} must divide {of_name}={of}")
    return value


def gpu_cluster(
    nodes: int = 2,
    gpus_per_node: int = 8,
    fabric: Literal["rail", "fat_tree", "single"] = "rail",
    intra: Literal["nvswitch", "nvlink", "pcie"] = "nvswitch",
    *,
    nics_per_node: int | None = None,
    nodes_per_leaf: int | None = None,
    spines: int | None = None,
    oversubscription: float = 1.0,
    nvls: bool = False,
    sharp: bool = False,
    routing: Routing = "dmodk",
    bandwidth: Bandwidth = 400e9 / 8,
    latency: Latency = 1e-6,
    nvlink_bandwidth: Bandwidth = 450e9,
    nvlink_latency: Latency = 0.5e-6,
    pcie_bandwidth: Bandwidth = 64e9,
    pcie_latency: Latency = 0.5e-6,
) -> nx.DiGraph:
    """Build a GPU cluster in the DGX/HGX style; the endpoints are the GPUs.

    The defaults describe 8-GPU H100 servers: NVSwitch (NVLink4, 450 GB/s per direction per GPU),
    eight 400 Gb/s NICs, one per GPU on PCIe Gen5 (64 GB/s), on a rail-optimised fabric.

    Inside server ``s`` (GPUs ``n{s}_gpu{g}``, NICs ``n{s}_nic{j}``):

    - NICs: GPU ``g`` uses NIC ``j = g // (gpus_per_node / nics_per_node)``. With one GPU per NIC
      the GPU links straight to its NIC over PCIe; with several, the GPUs of NIC ``j`` and the NIC
      share a PCIe switch ``n{s}_pcie{j}`` (every link at ``pcie_bandwidth``).
    - ``intra="nvswitch"``: every GPU links to the server's NVSwitch ``n{s}_nvswitch`` at
      ``nvlink_bandwidth`` (the per-GPU NVLink bandwidth); ``nvls=True`` marks it able to reduce
      (NVLink SHARP).
    - ``intra="nvlink"``: a direct NVLink mesh, each GPU's ``nvlink_bandwidth`` split evenly over its
      ``gpus_per_node - 1`` peers.
    - ``intra="pcie"``: no NVLink; PCIe switches (one per NIC) under a root complex ``n{s}_cpu``.

    Routes prefer the widest of the shortest paths, so two GPUs that NVLink joins never talk over
    an equally short PCIe path.

    Between servers the NICs (``bandwidth``, 400 Gb/s) go to:

    - ``fabric="rail"`` (rail-optimised): NIC ``j`` of every server is on rail ``j``. With
      ``nodes_per_leaf`` unset every rail is one leaf switch ``rail{j}``, and traffic between
      different rails crosses NVLink to a GPU of the right rail first (as NCCL's PXN does) unless
      ``spines`` adds a tier above the rails. With ``nodes_per_leaf`` each rail has a leaf
      ``rail{j}_{g}`` per group of that many servers, and spines (default ``nodes_per_leaf``) join
      the leaves.
    - ``fabric="fat_tree"``: leaf switches ``leaf{g}`` serve all NICs of ``nodes_per_leaf`` servers
      (default: 32 NICs' worth), spines ``spine{k}`` (default ``nics_per_node``) join the leaves.
    - ``fabric="single"``: one switch ``fabric0`` for all NICs.

    A spine tier gets one link from every leaf to every spine, each of
    ``down / (spines * oversubscription)`` bytes/s where ``down`` is the leaf's total NIC bandwidth.
    ``sharp=True`` marks every fabric switch able to reduce (InfiniBand SHARP).

    Parameters
    ----------
    nodes : int
        Number of servers (>= 1).
    gpus_per_node : int
        GPUs per server (>= 1; 1 means no NVLink).
    fabric : {"rail", "fat_tree", "single"}
        Network between servers, see above.
    intra : {"nvswitch", "nvlink", "pcie"}
        GPU interconnect inside a server, see above.
    nics_per_node : int, optional
        NICs per server; must divide ``gpus_per_node`` (default: one per GPU).
    nodes_per_leaf : int, optional
        Servers per leaf switch (see ``fabric``).
    spines : int, optional
        Spine switches above the leaves (0: none; default see ``fabric``).
    oversubscription : float
        NIC bandwidth over uplink bandwidth per leaf (1 = non-blocking), > 0.
    nvls, sharp : bool
        In-network reduction on the NVSwitch (``nvls``) and on the fabric switches (``sharp``).
    routing : {"dmodk", "ecmp", "shortest"}
        Routing policy, kept in ``G.graph["routing"]`` (default ``"dmodk"``, InfiniBand's; see
        :mod:`topologies.routing`).
    bandwidth, latency : float
        NIC-to-switch links: bytes/s per direction (default 400 Gb/s = 50e9) and seconds (1 us);
        switch-to-switch links have the same latency.
    nvlink_bandwidth, nvlink_latency : float
        Per-GPU NVLink bytes/s per direction (default 450e9) and seconds per NVLink hop (0.5 us).
    pcie_bandwidth, pcie_latency : float
        PCIe links (default 64e9 bytes/s, Gen5 x16; 0.5 us).

    Returns
    -------
    networkx.DiGraph
        ``nodes * gpus_per_node`` GPUs (endpoints, server-major: rank ``s * gpus_per_node + g``);
        GPUs, NICs and the switches inside a server carry ``node`` (and ``server``) ``= s``; GPUs and
        NICs carry ``rail`` (the NIC index). Graph attribute ``nics_per_node``.

    Raises
    ------
    ValueError
        An argument out of range (the message names it and the allowed values).

    Examples
    --------
    >>> G = gpu_cluster(nodes=2, gpus_per_node=8)
    >>> len(G.graph["endpoints"]), G.graph["endpoints"][9], G.nodes["n1_gpu1"]["node"]
    (16, 'n1_gpu1', 1)
    >>> sorted({k for _, k in G.nodes(data="kind")})
    ['gpu', 'nic', 'switch']
    >>> G.edges["n0_gpu0", "n0_nvswitch"]["bandwidth"], G.edges["n0_nic0", "rail0"]["bandwidth"]
    (450000000000.0, 50000000000.0)
    >>> H = gpu_cluster(nodes=2, gpus_per_node=8, nics_per_node=4, fabric="fat_tree", sharp=True)
    >>> H.graph["nics_per_node"], sorted(H.succ["n0_pcie1"]), H.nodes["leaf0"]["sharp"]
    (4, ['n0_gpu2', 'n0_gpu3', 'n0_nic1'], True)
    """
    check_int("nodes", nodes)
    gpn = check_int("gpus_per_node", gpus_per_node)
    npn = gpn if nics_per_node is None else _divisor("nics_per_node", nics_per_node, "gpus_per_node", gpn)
    if fabric not in ("rail", "fat_tree", "single"):
        raise ValueError(f"fabric must be one of: rail, fat_tree, single; got {fabric!r}")
    if intra not in ("nvswitch", "nvlink", "pcie"):
        raise ValueError(f"intra must be one of: nvswitch, nvlink, pcie; got {intra!r}")
    if nodes_per_leaf is not None:
        check_int("nodes_per_leaf", nodes_per_leaf)
    if spines is not None:
        check_int("spines", spines, minimum=0)
    over = check_positive("oversubscription", oversubscription)
    _check_bool("nvls", nvls)
    _check_bool("sharp", sharp)
    if nvls and intra != "nvswitch":
        raise ValueError(f"nvls=True needs intra='nvswitch' (NVLink SHARP runs on an NVSwitch), got intra={intra!r}")
    check_routing(routing)
    bw, lat = check_link(bandwidth, latency)
    nvbw, nvlat = check_link(nvlink_bandwidth, nvlink_latency, "nvlink_")
    pbw, plat = check_link(pcie_bandwidth, pcie_latency, "pcie_")

    share = gpn // npn  # GPUs per NIC
    pcie_switches = share > 1 or (intra == "pcie" and gpn > 1)
    # The fabric: leaf groups and spines.
    if fabric == "single":
        per_leaf, nspines = nodes, 0
    elif fabric == "rail":
        per_leaf = nodes if nodes_per_leaf is None else min(nodes_per_leaf, nodes)
        groups = -(-nodes // per_leaf)
        nspines = spines if spines is not None else (0 if groups == 1 else per_leaf)
    else:
        default = max(1, _LEAF_DOWN_PORTS // npn)
        per_leaf = min(default if nodes_per_leaf is None else nodes_per_leaf, nodes)
        groups = -(-nodes // per_leaf)
        nspines = (spines if spines is not None else npn) if groups > 1 else (spines or 0)
    groups = -(-nodes // per_leaf)
    nleaves = groups * (npn if fabric == "rail" else 1) if fabric != "single" else 1
    per_server_nodes = gpn + npn + (npn if pcie_switches else 0) + (1 if gpn > 1 and intra != "nvlink" else 0)
    per_server_links = gpn + npn + (gpn + npn if pcie_switches else 0)
    per_server_links += gpn * (gpn - 1) // 2 if intra == "nvlink" else gpn
    check_size(
        f"nodes={nodes},gpus_per_node={gpn}",
        nodes * per_server_nodes + nleaves + nspines,
        nodes * per_server_links + nleaves * nspines,
    )

    name = f"gpu_cluster:nodes={nodes},gpus_per_node={gpn}"
    for key, value, default in (
        ("fabric", fabric, "rail"),
        ("intra", intra, "nvswitch"),
        ("nics_per_node", npn, gpn),
        ("nodes_per_leaf", nodes_per_leaf, None),
        ("spines", spines, None),
        ("oversubscription", over, 1.0),
        ("nvls", nvls, False),
        ("sharp", sharp, False),
    ):
        if value != default:
            name += f",{key}={_spec_value(value)}"
    G = new_topology(name)
    G.graph["nics_per_node"] = npn
    gpus = [f"n{s}_gpu{g}" for s in range(nodes) for g in range(gpn)]
    G.graph["endpoints"] = gpus
    fabric_attrs = {"kind": "switch", **({"sharp": True} if sharp else {})}

    # Leaves: leaf_of(s, j) is the switch NIC j of server s plugs into.
    if fabric == "single":
        G.add_node("fabric0", layer=3, role="fabric", **fabric_attrs)
        leaves = ["fabric0"]

        def leaf_of(s: int, j: int) -> str:
            return "fabric0"
    elif fabric == "rail":
        if groups == 1:
            leaves = [f"rail{j}" for j in range(npn)]
        else:
            leaves = [f"rail{j}_{g}" for g in range(groups) for j in range(npn)]
        G.add_nodes_from(leaves, layer=3, role="rail", **fabric_attrs)

        def leaf_of(s: int, j: int) -> str:
            return leaves[(s // per_leaf) * npn + j] if groups > 1 else leaves[j]
    else:
        leaves = [f"leaf{g}" for g in range(groups)]
        G.add_nodes_from(leaves, layer=3, role="leaf", **fabric_attrs)

        def leaf_of(s: int, j: int) -> str:
            return leaves[s // per_leaf]

    for s in range(nodes):
        gpu = gpus[s * gpn : (s + 1) * gpn]
        here = {"node": s, "server": s}
        for j in range(npn):
            nic = f"n{s}_nic{j}"
            G.add_node(nic, kind="nic", layer=2, rail=j, **here)
            add_link(G, nic, leaf_of(s, j), bw, lat, role="network")
            if pcie_switches:
                G.add_node(f"n{s}_pcie{j}", kind="switch", layer=1, role="pcie", **here)
                add_link(G, f"n{s}_pcie{j}", nic, pbw, plat, role="pcie")
        for g in range(gpn):
            j = g // share
            G.add_node(gpu[g], kind="gpu", layer=0, rail=j, **here)
            add_link(G, gpu[g], f"n{s}_pcie{j}" if pcie_switches else f"n{s}_nic{j}", pbw, plat, role="pcie")
        if gpn > 1 and intra == "nvswitch":
            nvs = f"n{s}_nvswitch"
            G.add_node(nvs, kind="switch", layer=-1, role="nvswitch", **here, **({"nvls": True} if nvls else {}))
            for g in range(gpn):
                add_link(G, gpu[g], nvs, nvbw, nvlat, role="nvlink")
        elif gpn > 1 and intra == "nvlink":
            for g in range(gpn):
                for g2 in range(g + 1, gpn):
                    add_link(G, gpu[g], gpu[g2], nvbw / (gpn - 1), nvlat, role="nvlink")
        elif gpn > 1:  # pcie: the PCIe switches meet at the root complex
            root = f"n{s}_cpu"
            G.add_node(root, kind="switch", layer=-1, role="pcie_root", **here)
            for j in range(npn):
                add_link(G, f"n{s}_pcie{j}", root, pbw, plat, role="pcie")
    if nspines:
        spine_ids = [f"spine{k}" for k in range(nspines)]
        G.add_nodes_from(spine_ids, layer=4, role="spine", **fabric_attrs)
        for leaf in leaves:
            down = sum(G.edges[x, leaf]["bandwidth"] for x in G.pred[leaf])
            for spine in spine_ids:
                add_link(G, leaf, spine, down / (nspines * over), lat, role="uplink")
    set_routing(G, routing, "dmodk")
    return G


def cluster(
    nodes: int = 2,
    hosts_per_node: int = 2,
    nics_per_node: int = 2,
    *,
    bandwidth: Bandwidth = GBPS_100,
    latency: Latency = 1e-6,
    intra_bandwidth: Bandwidth = 4 * GBPS_100,
    intra_latency: Latency = 0.5e-6,
    routing: Routing = "ecmp",
) -> nx.DiGraph:
    """Build CPU machines of several hosts each, joined through their NICs by one fabric switch.

    Machine ``s`` holds hosts ``n{s}_h{i}`` (the endpoints, machine-major) joined by fast links
    (``intra_bandwidth``) through the machine's switch ``n{s}_sw``, and NICs ``n{s}_nic{j}``, each
    linked to the fabric switch ``fabric0`` by a slow link (``bandwidth``): the machine's injection
    bandwidth is ``nics_per_node * bandwidth``.

    Host ``i`` reaches the fabric only through its own NIC ``j = i // (hosts_per_node /
    nics_per_node)``, on a link of the NIC's rate. So local rank ``i`` always leaves its machine
    through NIC ``j`` and enters another machine through that machine's NIC of the destination's
    local rank: with 2 hosts and 2 NICs per machine, a ring with 2 channels that crosses between
    machines at different local ranks puts its two inter-machine flows on different NICs. Traffic
    between hosts of one machine takes the machine switch (the widest of the equally short paths;
    the way through a shared NIC is no shorter and narrower).

    This is the shape of the emulated 2 machines x 2 ranks proof (:mod:`topologies.emulate`: every
    node is a namespace, the NICs and switches forward).

    Parameters
    ----------
    nodes, hosts_per_node : int
        Machines and hosts (ranks) per machine, each >= 1.
    nics_per_node : int
        NICs per machine, >= 1; must divide ``hosts_per_node``.
    bandwidth, latency : float
        Each NIC's links (host to NIC, NIC to fabric): bytes/s per direction (default 100 Gb/s) and
        seconds (1 us).
    intra_bandwidth, intra_latency : float
        Host to machine switch links (default 400 Gb/s, 0.5 us).
    routing : {"ecmp", "dmodk", "shortest"}
        Routing policy, kept in ``G.graph["routing"]`` (default ``"ecmp"``, Ethernet's; see
        :mod:`topologies.routing`).

    Returns
    -------
    networkx.DiGraph
        ``nodes * hosts_per_node`` hosts with ``node`` set; graph attribute ``nics_per_node``.

    Raises
    ------
    ValueError
        An argument out of range (the message names it and the allowed values).

    Examples
    --------
    >>> G = cluster(nodes=2, hosts_per_node=2, nics_per_node=2)
    >>> G.graph["endpoints"], G.graph["nics_per_node"]
    (['n0_h0', 'n0_h1', 'n1_h0', 'n1_h1'], 2)
    >>> from topologies import Router
    >>> [v for _, v in Router(G).route("n0_h1", "n1_h0")]
    ['n0_nic1', 'fabric0', 'n1_nic0', 'n1_h0']
    """
    check_int("nodes", nodes)
    hpn = check_int("hosts_per_node", hosts_per_node)
    npn = _divisor("nics_per_node", nics_per_node, "hosts_per_node", hpn)
    check_size(
        f"nodes={nodes},hosts_per_node={hpn}", nodes * (hpn + npn + 1) + 1, nodes * (2 * hpn + npn)
    )
    bw, lat = check_link(bandwidth, latency)
    ibw, ilat = check_link(intra_bandwidth, intra_latency, "intra_")
    check_routing(routing)
    G = new_topology(f"cluster:nodes={nodes},hosts_per_node={hpn},nics_per_node={npn}")
    G.graph["nics_per_node"] = npn
    G.add_node("fabric0", kind="switch", layer=3, role="fabric")
    share = hpn // npn
    eps = []
    for s in range(nodes):
        here = {"node": s}
        for j in range(npn):
            nic = f"n{s}_nic{j}"
            G.add_node(nic, kind="nic", layer=2, rail=j, **here)
            add_link(G, nic, "fabric0", bw, lat, role="network")
        if hpn > 1:
            G.add_node(f"n{s}_sw", kind="switch", layer=1, role="node_switch", **here)
        for i in range(hpn):
            host = f"n{s}_h{i}"
            eps.append(host)
            G.add_node(host, kind="host", layer=0, rail=i // share, **here)
            add_link(G, host, f"n{s}_nic{i // share}", bw, lat, role="network")
            if hpn > 1:
                add_link(G, host, f"n{s}_sw", ibw, ilat, role="intra")
    G.graph["endpoints"] = eps
    set_routing(G, routing, "ecmp")
    return G
