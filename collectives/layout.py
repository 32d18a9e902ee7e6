"""Layouts: which ranks share a node, and how many NICs a node has.

A :class:`Layout` is what a topology-aware schedule generator needs to know about the machine. It
is plain, hashable data, so the runtimes can cache compiled programs per layout and the simulator
can key its caches on it. The runtime finds the layout at run time (torchrun's local world, MPI's
shared-memory split, host names); the simulator takes it from the topology's endpoints.

Ranks are group-local (``0 .. p-1``), as everywhere in :mod:`collectives`. Ranks may sit on nodes in
any order: ``node_of[r]`` is the node of rank ``r``; nodes are numbered ``0 .. nnodes-1`` in the
order of their lowest rank. Inside a node, ranks keep rank order (the *local rank*).

>>> L = Layout.from_nodes([0, 0, 1, 1, 0, 1], nics_per_node=2)
>>> L.nnodes, L.ranks_per_node, L.nodes
(2, (3, 3), ((0, 1, 4), (2, 3, 5)))
>>> L.local_rank(4), L.node(5)
(2, 1)
>>> Layout.flat(4).is_flat
True
>>> Layout.regular(2, 4).node_of
(0, 0, 0, 0, 1, 1, 1, 1)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import cached_property

__all__ = ["Layout"]


@dataclass(frozen=True)
class Layout:
    """Ranks grouped into nodes.

    Parameters
    ----------
    node_of : tuple of int
        ``node_of[r]``: node index of rank ``r``. Nodes are numbered ``0 .. nnodes-1`` by first
        appearance (use :meth:`from_nodes` to renumber arbitrary labels).
    nics_per_node : int
        NICs per node (>= 1): how many channels leave a node through NICs of their own.
    """

    node_of: tuple[int, ...]
    nics_per_node: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.node_of, tuple) or not self.node_of:
            raise ValueError(f"node_of must be a non-empty tuple of node indices, got {self.node_of!r}")
        seen = -1
        for n in self.node_of:
            if isinstance(n, bool) or not isinstance(n, int) or n < 0 or n > seen + 1:
                raise ValueError(
                    f"node_of must number nodes 0, 1, ... in order of first appearance; got {self.node_of!r}"
                )
            seen = max(seen, n)
        if isinstance(self.nics_per_node, bool) or not isinstance(self.nics_per_node, int) or self.nics_per_node < 1:
            raise ValueError(f"nics_per_node must be an integer >= 1, got {self.nics_per_node!r}")

    @classmethod
    def from_nodes(cls, labels: Sequence[Hashable], nics_per_node: int = 1) -> Layout:
        """Layout from one node label per rank (host names, node ids: anything hashable)."""
        if len(labels) == 0:
            raise ValueError("labels must name the node of at least one rank")
        index: dict[Hashable, int] = {}
        return cls(tuple(index.setdefault(x, len(index)) for x in labels), nics_per_node)

    @classmethod
    def flat(cls, nranks: int) -> Layout:
        """One node holding every rank: topology-aware algorithms reduce to the flat ones."""
        if isinstance(nranks, bool) or not isinstance(nranks, int) or nranks < 1:
            raise ValueError(f"nranks must be a positive integer, got {nranks!r}")
        return cls((0,) * nranks)

    @classmethod
    def regular(cls, nnodes: int, ranks_per_node: int, nics_per_node: int = 1) -> Layout:
        """``nnodes`` nodes of ``ranks_per_node`` consecutive ranks each (torchrun's placement)."""
        for name, v in (("nnodes", nnodes), ("ranks_per_node", ranks_per_node)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        return cls(tuple(r // ranks_per_node for r in range(nnodes * ranks_per_node)), nics_per_node)

    @property
    def nranks(self) -> int:
        return len(self.node_of)

    @cached_property
    def nodes(self) -> tuple[tuple[int, ...], ...]:
        """The ranks of each node, in rank order."""
        out: list[list[int]] = []
        for r, n in enumerate(self.node_of):
            if n == len(out):
                out.append([])
            out[n].append(r)
        return tuple(tuple(x) for x in out)

    @property
    def nnodes(self) -> int:
        return len(self.nodes)

    @property
    def ranks_per_node(self) -> tuple[int, ...]:
        return tuple(len(x) for x in self.nodes)

    @property
    def is_flat(self) -> bool:
        """True when every rank is on one node."""
        return self.nnodes == 1

    @property
    def is_regular(self) -> bool:
        """True when every node holds the same number of ranks."""
        return len(set(self.ranks_per_node)) == 1

    def node(self, rank: int) -> int:
        return self.node_of[rank]

    def local_rank(self, rank: int) -> int:
        """Position of ``rank`` among the ranks of its node."""
        return self.nodes[self.node_of[rank]].index(rank)

    def describe(self) -> str:
        rpn = self.ranks_per_node
        shape = f"{self.nnodes}x{rpn[0]}" if self.is_regular else f"{self.nnodes} nodes of {'/'.join(map(str, rpn))}"
        return f"{shape} ranks, {self.nics_per_node} NIC(s) per node"
