"""Channels and node orders: how topology-aware schedules walk through a :class:`Layout`.

A *channel* is one ring or tree that owns part of the buffer; several run at once, as NCCL's
channels do, each leaving a node through a NIC of its own. This module holds the one rule every
topology-aware generator (``ring``, ``tree``, ``hierarchical``) uses to order a node's ranks for a
channel, so that they agree on which rank talks to the network.

NICs. A node of ``R`` ranks with ``G = min(nics_per_node, R)`` NICs gives local rank ``l`` the NIC
``l * G // R``: consecutive local ranks share a NIC (GPUs behind one PCIe switch). NIC ``g`` serves
the local ranks ``[a_g, b_g)`` with ``a_g = ceil(g R / G)``.

Node order of channel ``c`` (``g = c mod G``): the node is entered at ``a_g``, walks the ranks of
the other NICs in rotated order and ends with the rest of NIC ``g``'s ranks::

    a_g, b_g, b_g + 1, ..., R - 1, 0, ..., a_g - 1, a_g + 1, ..., b_g - 1

A ring enters each node at the first rank of this order and leaves it from the last one. When a NIC
serves two or more ranks, both are NIC ``g``'s: the channel receives and sends through NIC ``g``
and stays on rail ``g`` between nodes. When every rank has a NIC of its own (``G = R``) the order is
the rotation starting at ``g``, and the channel leaves through NIC ``g - 1``; either way channels
``0 .. G-1`` leave every node through different NICs. Channels ``c >= G`` reuse the order of
channel ``c mod G``. With one NIC the order is the local rank order. On a one-node layout every
channel uses the local rank order (no traffic leaves the node).

>>> local_order(4, 1, 0).tolist()
[0, 1, 2, 3]
>>> [local_order(4, 2, c).tolist() for c in range(2)]  # 2 ranks per NIC: enter and leave on one NIC
[[0, 2, 3, 1], [2, 0, 1, 3]]
>>> [local_order(4, 4, c).tolist() for c in range(4)]  # a NIC per rank: a rotation per channel
[[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1], [3, 0, 1, 2]]
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from collectives.layout import Layout

__all__ = ["check_channels", "resolve_layout", "local_order", "NodeGroup", "node_groups", "channel_ring", "layout_params"]


def check_channels(channels) -> int:
    """Return ``channels`` as an int, or raise ValueError naming the allowed values."""
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"channels must be an integer >= 1, got {channels!r}")
    return int(channels)


def resolve_layout(layout, nranks: int) -> Layout:
    """``layout``, checked against ``nranks``; ``Layout.flat(nranks)`` when None."""
    if layout is None:
        return Layout.flat(nranks)
    if not isinstance(layout, Layout):
        raise ValueError(f"layout must be a collectives.layout.Layout or None, got {type(layout).__name__}")
    if layout.nranks != nranks:
        raise ValueError(f"layout has {layout.nranks} ranks ({layout.describe()}) but the schedule has nranks={nranks}")
    return layout


@lru_cache(maxsize=1024)
def _local_order(size: int, nics: int, channel: int) -> tuple[int, ...]:
    g_count = min(nics, size)
    g = channel % g_count
    a = -(-g * size // g_count)
    b = -(-(g + 1) * size // g_count)
    rest = [(b + i) % size for i in range(size - (b - a))]
    return (a, *rest, *range(a + 1, b))


def local_order(size: int, nics: int, channel: int) -> np.ndarray:
    """Local ranks of a node of ``size`` ranks and ``nics`` NICs in the order of ``channel``."""
    return np.asarray(_local_order(int(size), int(nics), int(channel)), dtype=np.int64)


class NodeGroup:
    """The nodes of one size: ``nodes`` (their indices) and ``ranks[i, l]`` (local rank ``l`` of node ``nodes[i]``)."""

    __slots__ = ("size", "nodes", "ranks")

    def __init__(self, size: int, nodes: np.ndarray, ranks: np.ndarray):
        self.size, self.nodes, self.ranks = size, nodes, ranks

    def ordered(self, layout: Layout, channel: int) -> np.ndarray:
        """``ranks`` with every row in the node order of ``channel`` (column ``q``: position ``q``)."""
        if layout.nnodes == 1:
            return self.ranks
        return self.ranks[:, local_order(self.size, layout.nics_per_node, channel)]


@lru_cache(maxsize=64)
def node_groups(layout: Layout) -> tuple[NodeGroup, ...]:
    """The layout's nodes grouped by size (ascending), as rank matrices for vectorised generators."""
    sizes = np.asarray(layout.ranks_per_node, dtype=np.int64)
    node_of = np.asarray(layout.node_of, dtype=np.int64)
    # ranks sorted by (node, rank): each node's ranks in local order, nodes in index order
    by_node = np.argsort(node_of, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    groups = []
    for size in np.unique(sizes).tolist():
        nodes = np.flatnonzero(sizes == size)
        ranks = by_node[starts[nodes][:, None] + np.arange(size)[None, :]]
        groups.append(NodeGroup(size, nodes, ranks))
    return tuple(groups)


@lru_cache(maxsize=256)
def _channel_ring(layout: Layout, channel: int) -> np.ndarray:
    sizes = np.asarray(layout.ranks_per_node, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    ring = np.empty(layout.nranks, dtype=np.int64)
    for group in node_groups(layout):
        ring[starts[group.nodes][:, None] + np.arange(group.size)[None, :]] = group.ordered(layout, channel)
    ring.setflags(write=False)
    return ring


def channel_ring(layout: Layout, channel: int) -> np.ndarray:
    """Ring order of ``channel``: node after node (in node order), each in the channel's node order.

    >>> channel_ring(Layout.regular(2, 2, nics_per_node=2), 1).tolist()
    [1, 0, 3, 2]
    >>> channel_ring(Layout.from_nodes([0, 1, 0, 1]), 0).tolist()
    [0, 2, 1, 3]
    """
    return _channel_ring(layout, int(channel))


def layout_params(layout: Layout, channels: int) -> dict:
    """What :attr:`Schedule.params` shows of a layout and channels (only what is not the default)."""
    out = {}
    if channels != 1:
        out["channels"] = channels
    if not layout.is_flat:
        out["layout"] = layout.describe()
    return out
