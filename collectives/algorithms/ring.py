"""Ring: reduce-scatter around a ring, then allgather around it; several rings (channels) at once.

Rank ``r`` sends only to ``(r + 1) % p`` and receives only from ``(r - 1) % p``. The buffer is cut
into ``p`` chunks. In reduce-scatter step ``s`` (``0 <= s < p - 1``) rank ``r`` sends chunk
``(r - s - 1) % p``, the one it reduced in the step before, and reduces what it receives into its
own copy. Invariant: after step ``s`` the chunk rank ``r`` just received, ``(r - s - 2) % p``,
holds ``s + 2`` contributions; after ``p - 1`` steps rank ``r`` owns chunk ``r`` reduced from all
``p``. The allgather forwards each owned chunk ``p - 1`` times around the ring, overwriting.

Channels and layouts
--------------------
With ``channels=k`` the buffer is cut into ``k * p`` chunks and ``k`` rings run in the same steps,
each on its own share: chunk ``b * k + c`` is channel ``c``'s part of block ``b`` (interleaved), and
block ``b`` ends reduced on rank ``b`` in every channel, so reduce_scatter and allgather stay
rank-blocked. Every step has ``k * p`` transfers. With a ``layout`` (:class:`collectives.layout.Layout`)
each channel's ring goes through all ranks of a node, then on to the next node, as NCCL orders its
rings; the node order of channel ``c`` (:mod:`collectives.algorithms._channels`) makes channels
leave each node through different NICs. The position of a rank in its channel's ring replaces
``r`` above; chunks keep their owners. A flat layout with one channel is the plain ring above.

Textbook cost per rank: ``2 (p - 1)`` steps, ``2 (p - 1) / p * n`` bytes sent and received, for
any number of channels and any layout.
"""

from __future__ import annotations

import numpy as np

from collectives.algorithms._channels import channel_ring, check_channels, layout_params, resolve_layout
from collectives.schedule import Schedule, Step, concat_steps

__all__ = ["allreduce", "reduce_scatter", "allgather", "ring_orders"]


def ring_orders(nranks: int, layout=None, channels: int = 1) -> np.ndarray:
    """Ring order of every channel, shape ``(channels, nranks)``: ``orders[c, q]`` is at position ``q``.

    >>> from collectives.layout import Layout
    >>> ring_orders(4, Layout.regular(2, 2, nics_per_node=2), channels=2).tolist()
    [[0, 1, 2, 3], [1, 0, 3, 2]]
    """
    layout = resolve_layout(layout, nranks)
    channels = check_channels(channels)
    return np.stack([channel_ring(layout, c) for c in range(channels)])


def _ring_steps(orders: np.ndarray, shift: int, reduce: bool, phase: str):
    """Steps in which position ``q`` of channel ``c`` sends its channel's part of the block of position ``q - s - shift``."""
    k, p = orders.shape
    src = orders.ravel()
    dst = np.roll(orders, -1, axis=1).ravel()
    lane = np.repeat(np.arange(k, dtype=np.int64), p)
    ones = np.ones(k * p, dtype=np.int64)
    flags = np.full(k * p, reduce)
    key = ("ring", "reduce" if reduce else "copy")

    def make_step(s: int) -> Step:
        # np.roll(order, m)[q] == order[(q - m) % p], without the cost of a modulo
        chunk = np.roll(orders, s + shift, axis=1).ravel()
        if k > 1:
            chunk = chunk * k + lane
        return Step(src, dst, chunk, ones, flags, key, phase)

    return max(p - 1, 0), make_step


def _keys(p: int, *reduces: bool):
    """``key_of`` for phases of ``p - 1`` steps each: the ring's key depends only on the phase."""
    return concat_steps(*[(max(p - 1, 0), lambda _, r=r: ("ring", "reduce" if r else "copy")) for r in reduces])[1]


def _setup(nranks: int, layout, channels: int):
    layout = resolve_layout(layout, nranks)
    channels = check_channels(channels)
    orders = ring_orders(nranks, layout, channels)
    owner = np.repeat(np.arange(nranks, dtype=np.int64), channels)
    return orders, owner, nranks * channels, layout_params(layout, channels)


def allreduce(nranks: int, layout=None, channels: int = 1) -> Schedule:
    """Ring allreduce on ``nranks`` ranks: ``2 (p - 1)`` steps, ``channels`` rings of one chunk each."""
    orders, owner, nchunks, params = _setup(nranks, layout, channels)
    nsteps, make_step = concat_steps(_ring_steps(orders, 1, True, "reduce_scatter"), _ring_steps(orders, 0, False, "allgather"))
    return Schedule("allreduce", "ring", nranks, nchunks, owner, nsteps, make_step, params=params, key_of=_keys(nranks, True, False))


def reduce_scatter(nranks: int, layout=None, channels: int = 1) -> Schedule:
    """Ring reduce-scatter: rank ``r`` ends with block ``r`` reduced."""
    orders, owner, nchunks, params = _setup(nranks, layout, channels)
    nsteps, make_step = _ring_steps(orders, 1, True, "reduce_scatter")
    return Schedule(
        "reduce_scatter", "ring", nranks, nchunks, owner, nsteps, make_step, nblocks=nranks, params=params, key_of=_keys(nranks, True)
    )


def allgather(nranks: int, layout=None, channels: int = 1) -> Schedule:
    """Ring allgather: block ``r`` starts on rank ``r`` and reaches every rank."""
    orders, owner, nchunks, params = _setup(nranks, layout, channels)
    nsteps, make_step = _ring_steps(orders, 0, False, "allgather")
    return Schedule(
        "allgather", "ring", nranks, nchunks, owner, nsteps, make_step, nblocks=nranks, params=params, key_of=_keys(nranks, False)
    )
