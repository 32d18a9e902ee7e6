"""Tuning tables: which algorithm ``algorithm="auto"`` picks for a world size and message size.

A tuning table is a small JSON file, written by ``collsim select`` (the simulator) or by hand::

    {
      "format": "collsim-tuning/1",
      "collective": "allreduce",
      "source": "fat_tree:k=4 (flow model)",
      "tables": {
        "4": [[65536, "recursive_doubling"], [null, "ring"]],
        "8": [[32768, "recursive_doubling"], [1048576, "recursive_halving"], [null, "ring"]]
      }
    }

Each world size maps to rows ``[max_bytes, algorithm]`` in increasing order: the first row whose
``max_bytes`` is at least the message size (``null``: no limit) wins. A world size that is not listed
uses the nearest listed one below it (or the smallest listed). The algorithm is a spec, a registered
name with optional parameters (:func:`collectives.plan.parse_algorithm`): ``"hierarchical"``,
``"ring:channels=2"``; the runtime runs it on the layout it finds.

The runtime reads the files named by the ``COLLSIM_TUNING`` environment variable (one path, or
several separated by ``os.pathsep``, one per collective); a collective no file covers uses its
built-in table in :data:`DEFAULT_TABLES` (:data:`DEFAULT_TABLE` for allreduce). A file is read once
per process, the first time its path is named, as MPI libraries and NCCL read their tuning files
at start: ``auto`` then costs a dictionary lookup per call, not a file check. To change tables in a
running process, set ``COLLSIM_TUNING`` to another path. Tables for
reduce_scatter and allgather may only name rank-blocked algorithms (not ``tree`` or ``hierarchical``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from collectives.plan import parse_algorithm, runnable_algorithms

__all__ = ["FORMAT", "TuningTable", "DEFAULT_TABLE", "DEFAULT_TABLES", "load_table", "active_table", "table_from_best"]

FORMAT = "collsim-tuning/1"


@dataclass(frozen=True)
class TuningTable:
    """Size thresholds per world size -> algorithm name."""

    tables: dict[int, list[tuple[int | None, str]]]
    collective: str = "allreduce"
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tables:
            raise ValueError("tuning table has no world sizes")
        for nranks, rows in self.tables.items():
            if not rows or rows[-1][0] is not None:
                raise ValueError(f"tuning table for {nranks} ranks must end with a [null, algorithm] row")
            limits = [m for m, _ in rows[:-1]]
            if any(m is None for m in limits) or limits != sorted(limits):
                raise ValueError(f"tuning table for {nranks} ranks: max_bytes must increase, null only last")
            allowed = runnable_algorithms(self.collective)
            for _, spec in rows:
                if not isinstance(spec, str) or spec.partition(":")[0] not in allowed:
                    raise ValueError(
                        f"tuning table for {self.collective} names algorithm {spec!r}; choose from: {', '.join(allowed)}"
                    )
                try:
                    parse_algorithm(spec)
                except ValueError as err:
                    raise ValueError(f"tuning table for {self.collective}: {err}") from None

    def choose(self, nranks: int, nbytes: int) -> str:
        """The algorithm spec for ``nbytes`` on ``nranks`` ranks (a name, or ``name:key=value,...``)."""
        sizes = sorted(self.tables)
        below = [s for s in sizes if s <= nranks]
        rows = self.tables[below[-1] if below else sizes[0]]
        for max_bytes, name in rows:
            if max_bytes is None or nbytes <= max_bytes:
                return name
        raise AssertionError("unreachable: last row has no limit")

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "collective": self.collective,
            "source": self.source,
            **self.extra,
            "tables": {str(n): [[m, a] for m, a in rows] for n, rows in sorted(self.tables.items())},
        }

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def from_json(cls, data: dict) -> TuningTable:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a collsim tuning table (format must be {FORMAT!r})")
        tables = {int(n): [(None if m is None else int(m), str(a)) for m, a in rows] for n, rows in data["tables"].items()}
        extra = {k: v for k, v in data.items() if k not in ("format", "collective", "source", "tables")}
        return cls(tables, data.get("collective", "allreduce"), data.get("source", ""), extra)


def table_from_best(best: dict[int, list[tuple[int, str]]], *, collective: str = "allreduce",
                    source: str = "") -> TuningTable:
    """A tuning table from the best algorithm at each size: ``{nranks: [(size, algorithm), ...]}``.

    Where the winner changes between two sizes the switch is at the larger one (the row of the
    smaller reaches one byte below it), as ``collsim select`` writes a crossover; the last winner
    has no limit. The runtime benchmarks write their measured winners this way (``--tuning-out``).

    >>> table_from_best({4: [(4096, "recursive_doubling"), (65536, "recursive_doubling"), (1 << 20, "ring")]}).tables
    {4: [(1048575, 'recursive_doubling'), (None, 'ring')]}
    """
    tables = {}
    for nranks, points in best.items():
        points = sorted(points)
        if not points:
            raise ValueError(f"no measured size for {nranks} ranks")
        rows: list[tuple[int | None, str]] = [(s1 - 1, a0) for (_, a0), (s1, a1) in zip(points, points[1:], strict=False)
                                              if a1 != a0]
        rows.append((None, points[-1][1]))
        tables[int(nranks)] = rows
    return TuningTable(tables, collective=collective, source=source)


def load_table(path: str | os.PathLike) -> TuningTable:
    """Read a tuning table JSON file (clear ValueError if it is not one)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read tuning table {path}: {err}") from None
    return TuningTable.from_json(data)


#: Built-in defaults, used when no table is configured: latency-bound sizes go to recursive
#: doubling (log2 p steps), large messages to the ring (bandwidth-optimal). Thresholds from
#: benchmarks/runtime_vs_native.py on Gloo over loopback with two cores of its own per rank
#: (16-core machine, p = 2, 4 and 8). From p = 4 the ring beats recursive doubling from 512 KiB and
#: the double binary tree at every size measured (p = 4: 0.85 / 0.88 / 0.96 of native at
#: 512 KiB / 1 MiB / 2 MiB, against the tree's 0.92 / 1.31 and doubling's 1.53); with fewer cores
#: than threads the scheduler decides instead. A simulator-written table replaces them.
DEFAULT_TABLE = TuningTable(
    {1: [(None, "ring")], 2: [(1 << 21, "recursive_doubling"), (None, "ring")],
     4: [(1 << 18, "recursive_doubling"), (None, "ring")]},
    source="built-in defaults",
)

#: Built-in table per collective. Reduce-scatter and allgather: recursive halving/doubling moves the
#: same bytes as the ring in log2 p steps instead of p - 1, so it wins until bandwidth dominates.
DEFAULT_TABLES: dict[str, TuningTable] = {
    "allreduce": DEFAULT_TABLE,
    "reduce_scatter": TuningTable(
        {1: [(None, "ring")], 2: [(None, "ring")], 4: [(1 << 21, "recursive_halving"), (None, "ring")]},
        collective="reduce_scatter", source="built-in defaults",
    ),
    "allgather": TuningTable(
        {1: [(None, "ring")], 2: [(None, "ring")], 4: [(1 << 21, "recursive_halving"), (None, "ring")]},
        collective="allgather", source="built-in defaults",
    ),
}


_read: dict[str, TuningTable] = {}  # path -> its table, read once per process
_active: dict[tuple[str, str], TuningTable] = {}  # (COLLSIM_TUNING, collective) -> the table that applies


def _read_once(path: str) -> TuningTable:
    """:func:`load_table` the first time ``path`` is named; the same table after that."""
    table = _read.get(path)
    if table is None:
        try:
            table = _read[path] = load_table(path)
        except ValueError as err:
            raise ValueError(f"{err} (from COLLSIM_TUNING)") from None
    return table


def active_table(collective: str = "allreduce") -> TuningTable:
    """The table for ``collective``: from ``COLLSIM_TUNING`` if a file there covers it, else built in."""
    paths = os.environ.get("COLLSIM_TUNING", "")
    table = _active.get((paths, collective))
    if table is not None:
        return table
    if collective not in DEFAULT_TABLES:
        raise ValueError(f"no tuning table for collective {collective!r}; choose from: {', '.join(DEFAULT_TABLES)}")
    table = DEFAULT_TABLES[collective]
    for path in filter(None, paths.split(os.pathsep)):
        read = _read_once(path)
        if read.collective == collective:
            table = read
            break
    _active[(paths, collective)] = table
    return table
