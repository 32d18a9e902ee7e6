"""Virtual ranks for recursive algorithms on a world size that is not a power of two.

The standard pre/post step (Thakur, Rabenseifner and Gropp, 2005): with ``p = 2**k + rem``, the
first ``2 * rem`` ranks pair up; even rank ``2i`` folds its data into odd rank ``2i + 1`` before
the recursive part and gets the result back after it. The ``2**k`` participating ranks are
renumbered ``0 .. 2**k - 1`` ("virtual ranks"): virtual ``v < rem`` is real ``2v + 1``, virtual
``v >= rem`` is real ``v + rem``. Virtual rank ``v`` stands for the real ranks ``2v, 2v + 1`` or
``v + rem``, so it owns their blocks ``[first_block(v), first_block(v + 1))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Folding"]


@dataclass(frozen=True)
class Folding:
    """How ``nranks`` real ranks map onto a power-of-two set of virtual ranks."""

    nranks: int

    @property
    def pof2(self) -> int:
        return 1 << (self.nranks.bit_length() - 1)

    @property
    def rem(self) -> int:
        return self.nranks - self.pof2

    @property
    def levels(self) -> int:
        return self.pof2.bit_length() - 1

    def real(self, v: np.ndarray) -> np.ndarray:
        """Real rank of virtual rank(s) ``v``."""
        v = np.asarray(v, dtype=np.int64)
        return np.where(v < self.rem, 2 * v + 1, v + self.rem)

    def first_block(self, v: np.ndarray) -> np.ndarray:
        """First of the real-rank blocks virtual rank ``v`` stands for (``v`` may equal ``pof2``)."""
        v = np.asarray(v, dtype=np.int64)
        return np.where(v < self.rem, 2 * v, v + self.rem)

    @property
    def folded(self) -> np.ndarray:
        """The even ranks ``2i`` (``i < rem``) that sit out the recursive part."""
        return 2 * np.arange(self.rem, dtype=np.int64)
