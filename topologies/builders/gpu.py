"""Multi-GPU servers: NVLink/NVSwitch inside each server, one NIC rail per GPU between servers."""

from __future__ import annotations

from typing import Literal

import networkx as nx

from topologies.builders._common import check_int, check_link, check_size
from topologies.model import Bandwidth, Latency, add_link, new_topology

__all__ = ["gpu_cluster"]


def gpu_cluster(
    nodes: int = 2,
    gpus_per_node: int = 8,
    fabric: Literal["rail", "single"] = "rail",
    intra: Literal["nvswitch", "nvlink"] = "nvswitch",
    *,
    bandwidth: Bandwidth = 400e9 / 8,
    latency: Latency = 1e-6,
    nvlink_bandwidth: Bandwidth = 450e9,
    nvlink_latency: Latency = 0.5e-6,
    pcie_bandwidth: Bandwidth = 64e9,
    pcie_latency: Latency = 0.5e-6,
) -> nx.DiGraph:
    """Build a GPU cluster in the DGX/HGX style; the endpoints are the GPUs.

    Server ``s`` holds GPUs ``n{s}_gpu{g}`` and, for each GPU, its own NIC ``n{s}_nic{g}`` (one
    *rail* per GPU, linked to the GPU by PCIe). Inside a server the GPUs talk over NVLink:

    - ``intra="nvswitch"``: every GPU links to the server's NVSwitch ``n{s}_nvswitch`` at
      ``nvlink_bandwidth`` (the per-GPU NVLink bandwidth, 450 GB/s per direction on H100);
    - ``intra="nvlink"``: a direct NVLink mesh, each GPU's ``nvlink_bandwidth`` split evenly over its
      ``gpus_per_node - 1`` peers.

    Between servers the NICs (``bandwidth``, 400 Gb/s) go to

    - ``fabric="rail"`` (rail-optimised): one switch ``rail{g}`` per GPU index ``g``; GPU ``g`` of
      every server is on rail ``g``. Traffic between different GPU indices of two servers crosses
      NVLink to the peer GPU of the right rail first (as NCCL's PXN does);
    - ``fabric="single"``: one switch ``fabric0`` for all NICs.

    Parameters
    ----------
    nodes : int
        Number of servers (>= 1).
    gpus_per_node : int
        GPUs (and NICs) per server (>= 1; 1 means no NVLink).
    fabric : {"rail", "single"}
        Network between servers, see above.
    intra : {"nvswitch", "nvlink"}
        GPU interconnect inside a server, see above.
    bandwidth, latency : float
        NIC-to-switch links: bytes/s per direction (default 400 Gb/s = 50e9) and seconds (1 us).
    nvlink_bandwidth, nvlink_latency : float
        Per-GPU NVLink bytes/s per direction (default 450e9) and seconds per NVLink hop (0.5 us).
    pcie_bandwidth, pcie_latency : float
        GPU-to-NIC PCIe link (default 64e9 bytes/s, Gen5 x16; 0.5 us).

    Returns
    -------
    networkx.DiGraph
        ``nodes * gpus_per_node`` GPUs (endpoints, server-major: rank ``s * gpus_per_node + g``)
        and as many NICs; nodes carry ``server`` (and GPUs/NICs ``rail``).

    Raises
    ------
    ValueError
        An argument out of range (the message names it and the allowed values).

    Examples
    --------
    >>> G = gpu_cluster(nodes=2, gpus_per_node=8)
    >>> len(G.graph["endpoints"]), G.graph["endpoints"][9]
    (16, 'n1_gpu1')
    >>> sorted({k for _, k in G.nodes(data="kind")})
    ['gpu', 'nic', 'switch']
    >>> G.edges["n0_gpu0", "n0_nvswitch"]["bandwidth"], G.edges["n0_nic0", "rail0"]["bandwidth"]
    (450000000000.0, 50000000000.0)
    """
    check_int("nodes", nodes)
    check_int("gpus_per_node", gpus_per_node)
    check_size(
        f"nodes={nodes},gpus_per_node={gpus_per_node}",
        nodes * (2 * gpus_per_node + 1) + gpus_per_node,
        nodes * gpus_per_node * (2 + gpus_per_node),
    )
    if fabric not in ("rail", "single"):
        raise ValueError(f"fabric must be one of: rail, single; got {fabric!r}")
    if intra not in ("nvswitch", "nvlink"):
        raise ValueError(f"intra must be one of: nvswitch, nvlink; got {intra!r}")
    bw, lat = check_link(bandwidth, latency)
    nvbw, nvlat = check_link(nvlink_bandwidth, nvlink_latency, "nvlink_")
    pbw, plat = check_link(pcie_bandwidth, pcie_latency, "pcie_")

    gpn = gpus_per_node
    name = f"gpu_cluster:nodes={nodes},gpus_per_node={gpn}"
    if fabric != "rail":
        name += f",fabric={fabric}"
    if intra != "nvswitch":
        name += f",intra={intra}"
    G = new_topology(name)
    gpus = [f"n{s}_gpu{g}" for s in range(nodes) for g in range(gpn)]
    G.graph["endpoints"] = gpus
    if fabric == "rail":
        switches = [f"rail{g}" for g in range(gpn)]
        G.add_nodes_from(switches, kind="switch", layer=2, role="rail")
    else:
        switches = ["fabric0"]
        G.add_node("fabric0", kind="switch", layer=2, role="fabric")
    for s in range(nodes):
        gpu = gpus[s * gpn : (s + 1) * gpn]
        for g in range(gpn):
            G.add_node(gpu[g], kind="gpu", layer=0, server=s, rail=g)
            nic = f"n{s}_nic{g}"
            G.add_node(nic, kind="nic", layer=1, server=s, rail=g)
            add_link(G, gpu[g], nic, pbw, plat, role="pcie")
            add_link(G, nic, switches[g if fabric == "rail" else 0], bw, lat, role="network")
        if gpn > 1 and intra == "nvswitch":
            nvs = f"n{s}_nvswitch"
            G.add_node(nvs, kind="switch", layer=-1, role="nvswitch", server=s)
            for g in range(gpn):
                add_link(G, gpu[g], nvs, nvbw, nvlat, role="nvlink")
        elif gpn > 1:
            for g in range(gpn):
                for g2 in range(g + 1, gpn):
                    add_link(G, gpu[g], gpu[g2], nvbw / (gpn - 1), nvlat, role="nvlink")
    return G
