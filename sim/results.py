"""Result records: the nccl-tests table and JSON lines, shared by simulations and measurements.

Every benchmark or simulation row is a :class:`Record`. Printed, records form the table that
nccl-tests users already read and parse::

    #       size(B)        count      type   redop           algorithm     time(us)  algbw(GB/s)  busbw(GB/s)  #wrong
           1048576       262144   float32     sum                ring       123.45         8.49        15.93       0

(decimal GB/s; ``algbw = size / time``; ``busbw = algbw * 2(n-1)/n`` for allreduce and
``(n-1)/n`` for reduce_scatter and allgather). Written with ``--json FILE``, the same records are
JSON lines with the fields ``source`` (``"simulated"`` or ``"measured"``), ``collective``,
``algorithm``, ``nranks``, ``size`` (bytes), ``count``, ``dtype``, ``op``, ``time_us``, ``algbw``,
``busbw``, ``wrong`` (an int, or null when nothing was checked) and, for simulations, ``topology``
and ``model``; further keys are kept in :attr:`Record.extra`. Any two files can be compared or
plotted together (``collsim plot``).

>>> r = Record("simulated", "allreduce", "ring", 4, 1024, 256, "float32", "sum", 10.0, topology="switch:n=4")
>>> round(r.algbw, 4), round(r.busbw, 4)
(0.1024, 0.1536)
>>> Record.from_json(r.to_json()) == r
True
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DTYPES",
    "SOURCES",
    "Record",
    "busbw_factor",
    "format_header",
    "format_row",
    "format_table",
    "format_winners",
    "algorithm_cell",
    "best_per_size",
    "write_jsonl",
    "read_jsonl",
    "parse_size",
    "parse_sizes",
    "check_sizes",
    "Progress",
]

#: Element type name -> bytes per element.
DTYPES: dict[str, int] = {
    "float32": 4,
    "float64": 8,
    "float16": 2,
    "bfloat16": 2,
    "int8": 1,
    "uint8": 1,
    "int32": 4,
    "int64": 8,
}

#: Where a record comes from.
SOURCES = ("simulated", "measured")

_FIELDS = ("source", "collective", "algorithm", "nranks", "size", "count", "dtype", "op", "time_us", "algbw", "busbw", "wrong")


def busbw_factor(collective: str, nranks: int) -> float:
    """nccl-tests bus bandwidth factor: ``2(n-1)/n`` for allreduce, ``(n-1)/n`` for the others.

    >>> busbw_factor("allreduce", 4), busbw_factor("allgather", 4), busbw_factor("allreduce", 1)
    (1.5, 0.75, 0.0)
    """
    if nranks <= 1:
        return 0.0
    if collective == "allreduce":
        return 2.0 * (nranks - 1) / nranks
    return (nranks - 1) / nranks


@dataclass
class Record:
    """One row: a collective of ``size`` bytes by ``algorithm`` on ``nranks`` ranks took ``time_us``.

    ``algbw`` and ``busbw`` (GB/s, decimal) are derived from ``size`` and ``time_us`` unless given.
    """

    source: str
    collective: str
    algorithm: str
    nranks: int
    size: int
    count: int
    dtype: str
    op: str
    time_us: float
    algbw: float | None = None
    busbw: float | None = None
    wrong: int | None = None
    topology: str | None = None
    model: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}; got {self.source!r}")
        if self.algbw is None:
            self.algbw = self.size / (self.time_us * 1e3) if self.time_us > 0 else 0.0
        if self.busbw is None:
            self.busbw = self.algbw * busbw_factor(self.collective, self.nranks)

    def to_json(self) -> dict:
        """The JSON-lines object (``topology``/``model`` only when set, extra keys after)."""
        data = {name: getattr(self, name) for name in _FIELDS}
        for name in ("topology", "model"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        data.update(self.extra)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Record:
        """Parse one JSON-lines object (ValueError naming a missing or bad field)."""
        if not isinstance(data, dict):
            raise ValueError(f"a record must be a JSON object, got {type(data).__name__}")
        required = ("source", "collective", "algorithm", "nranks", "size", "time_us")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"record lacks {', '.join(missing)}")
        try:
            time_us = float(data["time_us"])
            size, nranks = int(data["size"]), int(data["nranks"])
        except (TypeError, ValueError):
            raise ValueError("record fields size, nranks and time_us must be numbers") from None
        if not math.isfinite(time_us) or time_us < 0:
            raise ValueError(f"record time_us must be a finite number >= 0, got {data['time_us']!r}")
        known = set(_FIELDS) | {"topology", "model"}
        return cls(
            source=str(data["source"]),
            collective=str(data["collective"]),
            algorithm=str(data["algorithm"]),
            nranks=nranks,
            size=size,
            count=int(data.get("count", 0)),
            dtype=str(data.get("dtype", "float32")),
            op=str(data.get("op", "sum")),
            time_us=time_us,
            algbw=None if data.get("algbw") is None else float(data["algbw"]),
            busbw=None if data.get("busbw") is None else float(data["busbw"]),
            wrong=None if data.get("wrong") is None else int(data["wrong"]),
            topology=data.get("topology"),
            model=data.get("model"),
            extra={k: v for k, v in data.items() if k not in known},
        )

    @classmethod
    def from_result(cls, result, dtype: str = "float32", op: str = "sum") -> Record:
        """A simulated record from a :class:`sim.flow.SimResult`.

        ``extra`` carries the schedule parameters (a layout as its description), the GPU
        protocol the model took (``protocol``), ``simulated_only`` for in-network algorithms, and
        ``execution`` (the runtime tactics costed, :mod:`collectives.execution`) where any was.
        """
        extra = {"params": {k: (v.describe() if hasattr(v, "describe") else v) for k, v in result.params.items()}} \
            if result.params else {}
        if getattr(result, "protocol", None):
            extra["protocol"] = result.protocol
        if getattr(result, "simulated_only", False):
            extra["simulated_only"] = True
        execution = getattr(result, "execution", None)
        if execution is not None and not execution.plain:
            extra["execution"] = execution.describe()
        return cls(
            source="simulated",
            collective=result.collective,
            algorithm=result.algorithm,
            nranks=result.nranks,
            size=result.nbytes,
            count=result.count,
            dtype=dtype,
            op=op,
            time_us=result.time * 1e6,
            wrong=None,
            topology=result.topology,
            model=result.model,
            extra=extra,
        )


_WIDTHS = (13, 12, 9, 7, 19, 12, 12, 12, 7)
_TITLES = ("size(B)", "count", "type", "redop", "algorithm", "time(us)", "algbw(GB/s)", "busbw(GB/s)", "#wrong")


def format_header(widths: Sequence[int] = _WIDTHS, sep: str = "") -> str:
    """The column header line (starts with ``#``, like nccl-tests); ``widths``, ``sep`` as in :func:`format_row`."""
    cells = [t.rjust(w) for t, w in zip(_TITLES, widths, strict=True)]
    return "#" + sep.join(cells)[1:]


def format_row(
    rec: Record,
    widths: Sequence[int] = _WIDTHS,
    sep: str = "",
    *,
    time_format: str = ".2f",
    type_names: Mapping[str, str] | None = None,
) -> str:
    """One table line for ``rec``.

    Parameters
    ----------
    rec : Record
        The row.
    widths : sequence of int
        Characters per column, each cell right-aligned (a longer cell takes the room it needs).
    sep : str
        Put between the columns.
    time_format : str
        Format spec of ``time(us)``.
    type_names : mapping, optional
        Names to print in the ``type`` column instead of ``rec.dtype`` (e.g. nccl-tests' ``float``
        for ``float32``); dtypes it lacks print as they are.

    Examples
    --------
    >>> rec = Record("measured", "allreduce", "ring", 2, 1024, 256, "float32", "sum", 10.0, wrong=0)
    >>> format_row(rec, (5, 4, 5, 3, 4, 5, 6, 6, 2), " ", time_format=".1f", type_names={"float32": "float"})
    ' 1024  256 float sum ring  10.0  0.102  0.102  0'
    """
    wrong = "N/A" if rec.wrong is None else str(rec.wrong)
    cells = (
        str(rec.size),
        str(rec.count),
        (type_names or {}).get(rec.dtype, rec.dtype),
        rec.op,
        algorithm_cell(rec),
        f"{rec.time_us:{time_format}}",
        f"{rec.algbw:.3f}",
        f"{rec.busbw:.3f}",
        wrong,
    )
    # a cell as wide as its column or wider still keeps one space from its neighbour
    return sep.join(c.rjust(w) if len(c) < w or sep else " " + c for c, w in zip(cells, widths, strict=True))


def algorithm_cell(rec: Record) -> str:
    """The algorithm column: ``name``, ``name/protocol`` on GPU topologies, and
    ``(simulated-only)`` appended for algorithms no runtime executes (``nvls``, ``collnet``).

    >>> algorithm_cell(Record("simulated", "allreduce", "nvls", 8, 1024, 256, "float32", "sum", 9.0,
    ...                       extra={"protocol": "simple", "simulated_only": True}))
    'nvls/simple(simulated-only)'
    """
    text = rec.algorithm
    if rec.extra.get("protocol"):
        text += f"/{rec.extra['protocol']}"
    if rec.extra.get("simulated_only"):
        text += "(simulated-only)"
    return text


def format_table(records: Iterable[Record], title: str | None = None) -> str:
    """Header plus one line per record (in the given order); ``title`` becomes ``#`` lines above."""
    lines = [f"# {line}" for line in title.splitlines()] if title else []
    lines.append(format_header())
    lines.extend(format_row(r) for r in records)
    return "\n".join(lines)


def best_per_size(records: Iterable[Record]) -> dict[int, Record]:
    """The fastest record for every size (ties go to the first one seen)."""
    best: dict[int, Record] = {}
    for r in records:
        if r.size not in best or r.time_us < best[r.size].time_us:
            best[r.size] = r
    return dict(sorted(best.items()))


def format_winners(records: Iterable[Record]) -> str:
    """``#`` lines naming the fastest algorithm per size and where the winner changes."""
    best = best_per_size(records)
    lines = ["# best algorithm per size:"]
    for size, r in best.items():
        lines.append(f"#   {size:>13} B  {algorithm_cell(r):<19} {r.time_us:.2f} us  busbw {r.busbw:.3f} GB/s")
    return "\n".join(lines)


def write_jsonl(records: Iterable[Record], path: str | os.PathLike) -> int:
    """Write ``records`` as JSON lines; returns how many."""
    n = 0
    with open(path, "w") as fh:
        for r in records:
            fh.write(json.dumps(r.to_json(), sort_keys=False) + "\n")
            n += 1
    return n


def read_jsonl(path: str | os.PathLike) -> list[Record]:
    """Read records from a JSON-lines file (ValueError naming the file and line on bad input)."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Record.from_json(json.loads(line)))
        except (json.JSONDecodeError, ValueError) as err:
            raise ValueError(f"{path}:{lineno}: not a collsim record: {err}") from None
    if not out:
        raise ValueError(f"{path}: no records")
    return out


_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kib": 1 << 10, "kb": 10**3,
    "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
    "g": 1 << 30, "gib": 1 << 30, "gb": 10**9,
    "t": 1 << 40, "tib": 1 << 40, "tb": 10**12,
}


def parse_size(text: str) -> int:
    """Parse a byte size: ``4096``, ``64KiB``, ``1MB`` (decimal), ``128M`` (binary, as nccl-tests).

    >>> parse_size("64KiB"), parse_size("1MB"), parse_size("128M")
    (65536, 1000000, 134217728)
    """
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ValueError(f"bad size {text!r}: use a number of bytes with an optional unit (B, KiB, MiB, GiB, KB, MB, GB, K, M, G)")
    value = float(m.group(1)) * _UNITS[unit]
    if value != int(value):
        raise ValueError(f"bad size {text!r}: not a whole number of bytes")
    return int(value)


def parse_sizes(text: str, itemsize: int = 1, dtype: str | None = None) -> list[int]:
    """Parse a size sweep: ``1KiB:1GiB`` (doubling), ``1KiB:1GiB:x4``, or a list ``1KiB,64KiB``.

    Every size must hold at least one element of ``itemsize`` bytes (:func:`check_sizes`).

    >>> parse_sizes("1KiB:8KiB")
    [1024, 2048, 4096, 8192]
    >>> parse_sizes("1K:1M:x32")
    [1024, 32768, 1048576]
    >>> parse_sizes("8,1KiB")
    [8, 1024]
    """
    text = str(text).strip()
    if "," in text:
        sizes = [parse_size(t) for t in text.split(",") if t.strip()]
    else:
        parts = text.split(":")
        if len(parts) == 1:
            sizes = [parse_size(parts[0])]
        elif len(parts) in (2, 3):
            lo, hi = parse_size(parts[0]), parse_size(parts[1])
            factor = 2.0
            if len(parts) == 3:
                step = parts[2].strip()
                try:
                    factor = float(step[1:]) if step[:1] in ("x", "*") else float("nan")
                except ValueError:
                    factor = float("nan")
                if not factor > 1:
                    raise ValueError(f"bad size step {step!r} in {text!r}: use xF with F > 1, e.g. x2")
            check_sizes([lo], itemsize, dtype)
            if hi < lo:
                raise ValueError(f"bad size range {text!r}: need start <= end")
            sizes, s = [], float(lo)
            while s <= hi * (1 + 1e-12):
                sizes.append(int(round(s)))
                s *= factor
        else:
            raise ValueError(f"bad sizes {text!r}: use START:END[:xF] or a comma-separated list")
    if not sizes:
        raise ValueError(f"bad sizes {text!r}: no sizes")
    return check_sizes(sorted(dict.fromkeys(sizes)), itemsize, dtype)


def check_sizes(sizes: Sequence[int], itemsize: int = 1, dtype: str | None = None) -> list[int]:
    """Return ``sizes`` if each holds at least one element, else raise ValueError.

    The one rule for every size collsim takes (``simulate``/``select``/``validate --sizes``, the
    benchmarks' ``-b``/``-e``): a size smaller than one element is an error, never a silent 0.

    >>> check_sizes([4, 1024], 4)
    [4, 1024]
    >>> check_sizes([3], 4, "float32")
    Traceback (most recent call last):
    ValueError: size 3 B is smaller than one float32 element (4 B)
    """
    for size in sizes:
        if size < max(itemsize, 1):
            what = f"one {dtype} element" if dtype else "one element"
            raise ValueError(f"size {size} B is smaller than {what} ({max(itemsize, 1)} B)")
    return list(sizes)


class Progress:
    """Progress of a long sweep on stderr: a one-line bar on a terminal, else a line every few seconds.

    On a terminal the bar is redrawn in place. Elsewhere (stderr piped to a file or a CI log) a
    plain line ``label: done/total (pct%), N s`` is written every :attr:`every` seconds, so a
    sweep that takes minutes is never silent, and one that takes less writes nothing.
    ``enabled=False`` turns both off; a total below 2 shows nothing.

    >>> with Progress(3, "sweep", enabled=False) as bar:
    ...     for _ in range(3):
    ...         bar.advance()
    """

    #: Seconds between progress lines when the stream is not a terminal.
    every = 5.0

    def __init__(self, total: int, label: str = "", *, enabled: bool | None = None, stream=None):
        import sys
        import time

        self.total, self.label, self.done = int(total), label, 0
        self.stream = stream if stream is not None else sys.stderr
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        if enabled is None:
            enabled = self.total > 1
        self.enabled = enabled and tty
        self.lines = enabled and not tty
        self._clock = time.monotonic
        self._started = self._last = self._clock()

    def advance(self, note: str = "") -> None:
        self.done += 1
        if self.enabled:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {note[:40]:<40}")
            self.stream.flush()
        elif self.lines and (now := self._clock()) - self._last >= self.every:
            self._last = now
            pct = 100 * self.done / max(self.total, 1)
            self.stream.write(f"{self.label}: {self.done}/{self.total} ({pct:.0f}%), "
                              f"{self._last - self._started:.0f} s{' ' + note if note else ''}\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
