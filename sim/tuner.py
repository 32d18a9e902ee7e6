"""collsim's predicted choice as NCCL's tuner configuration (the example tuner plugin's CSV).

NCCL ships an example tuner plugin (``ext-tuner/example`` in the NCCL repository) that reads a CSV
file named by ``NCCL_TUNER_CONFIG_FILE`` (default ``nccl_tuner.conf``) and, for every collective
call, forces the algorithm and protocol of the first line that matches. Its documented layout::

    collective_type,min_bytes,max_bytes,algorithm,protocol,channels,nNodes,nRanks,numPipeOps,regBuff

* ``collective_type``: ``broadcast``, ``reduce``, ``allgather``, ``reducescatter``, ``allreduce``;
* ``min_bytes``, ``max_bytes``: the message size range, both ends included;
* ``algorithm``: ``tree``, ``ring``, ``collnet_direct``, ``collnet_chain``, ``nvls``, ``nvls_tree``,
  ``pat``; ``protocol``: ``ll``, ``ll128``, ``simple``;
* ``channels``: channels to use, or -1 to keep NCCL's default;
* ``nNodes``, ``nRanks``: the communicator to match, or -1 for any;
* ``numPipeOps``, ``regBuff`` (optional): -1 for any.

Lines starting with ``#`` are comments; at most 255 characters a line. collsim writes only the
algorithms NCCL has (``ring``, ``tree``, ``nvls``, ``collnet`` as ``collnet_direct``), so the file
hands NCCL collsim's predicted choice; ``channels`` is -1 because collsim's channels (one ring per
NIC) are not NCCL's channel count, which NCCL keeps choosing itself.

>>> row = TunerRow("allreduce", 0, 65535, "ring", "ll", nnodes=1, nranks=8)
>>> row.to_csv()
'allreduce,0,65535,ring,ll,-1,1,8,-1,-1'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "HEADER",
    "NCCL_ALGORITHMS",
    "NCCL_COLLECTIVES",
    "SIZE_MAX",
    "TunerRow",
    "tuner_rows",
    "format_tuner",
    "parse_tuner",
]

HEADER = "collective_type,min_bytes,max_bytes,algorithm,protocol,channels,nNodes,nRanks,numPipeOps,regBuff"
#: collsim algorithm -> NCCL's name for it (only these are written).
NCCL_ALGORITHMS: dict[str, str] = {"ring": "ring", "tree": "tree", "nvls": "nvls", "collnet": "collnet_direct"}
#: collsim collective -> the plugin's ``collective_type``.
NCCL_COLLECTIVES: dict[str, str] = {"allreduce": "allreduce", "reduce_scatter": "reducescatter", "allgather": "allgather"}
#: The largest ``size_t``: the last row's ``max_bytes``.
SIZE_MAX = 2**64 - 1
_PLUGIN_ALGORITHMS = ("tree", "ring", "collnet_direct", "collnet_chain", "nvls", "nvls_tree", "pat")
_PLUGIN_PROTOCOLS = ("ll", "ll128", "simple")
_PLUGIN_COLLECTIVES = ("broadcast", "reduce", "allgather", "reducescatter", "allreduce")


@dataclass(frozen=True)
class TunerRow:
    """One line of the plugin's CSV (``algorithm`` already NCCL's name)."""

    collective: str
    min_bytes: int
    max_bytes: int
    algorithm: str
    protocol: str
    channels: int = -1
    nnodes: int = -1
    nranks: int = -1
    num_pipe_ops: int = -1
    reg_buff: int = -1

    def to_csv(self) -> str:
        return ",".join(str(x) for x in (self.collective, self.min_bytes, self.max_bytes, self.algorithm, self.protocol,
                                          self.channels, self.nnodes, self.nranks, self.num_pipe_ops, self.reg_buff))


def _best(network, nranks, nbytes, algorithms, *, collective, model, itemsize, channels):
    from sim.select import run_model

    results = [run_model(model, collective, a, network, nranks, nbytes, itemsize, channels=channels) for a in algorithms]
    return min(results, key=lambda r: r.time)


def tuner_rows(network, nranks: int, sizes, *, collective: str = "allreduce", model: str = "flow", itemsize: int = 4,
               refine: int = 4, channels="auto", algorithms=None) -> list[TunerRow]:
    """The predicted fastest NCCL algorithm and protocol per size range, as tuner rows.

    Parameters
    ----------
    network : sim.flow.Network
        A GPU topology.
    nranks : int
        The communicator's ranks (the first ``nranks`` endpoints).
    sizes : sequence of int
        Swept sizes; between two with different winners the boundary is refined by ``refine``
        bisection steps (in log size).
    algorithms : sequence of str, optional
        Candidates (default: ring, tree where it runs ``collective``, and nvls / collnet where the
        topology declares them). Only NCCL's algorithms are allowed.

    Raises
    ------
    ValueError
        A CPU topology (NCCL runs on GPUs), a collective the plugin has no name for, or a
        candidate NCCL does not have.
    """
    from sim.innetwork import SIMULATED_ONLY, applicable
    from sim.params import device_of
    from sim.select import layout_for, run_model

    if device_of(network.G, network.params) != "gpu":
        raise ValueError(f"the NCCL tuner format needs a GPU topology; {network.name!r} has CPU endpoints")
    if collective not in NCCL_COLLECTIVES:
        raise ValueError(f"unknown collective {collective!r}; the NCCL tuner takes: {', '.join(NCCL_COLLECTIVES)}")
    if algorithms is None:
        algorithms = ["ring"] + (["tree"] if collective == "allreduce" else [])
        algorithms += [a for a in SIMULATED_ONLY if applicable(network, a, nranks, collective)]
    for a in algorithms:
        if a not in NCCL_ALGORITHMS:
            raise ValueError(f"{a!r} is not an NCCL algorithm; the tuner file takes: {', '.join(NCCL_ALGORITHMS)}")
    sizes = sorted(set(int(s) for s in sizes))
    if not sizes:
        raise ValueError("no sizes to tune")
    kw = dict(collective=collective, model=model, itemsize=itemsize, channels=channels)
    winners = [(s, _best(network, nranks, s, algorithms, **kw)) for s in sizes]
    layout = layout_for(network, nranks)
    nnodes = layout.nnodes if layout is not None else nranks
    step = itemsize * max(1, nranks)
    edges: list[tuple[int, tuple[str, str]]] = []  # (first size of a range, winner)
    for k, (size, r) in enumerate(winners):
        pick = (r.algorithm, r.protocol)
        if k == 0:
            edges.append((0, pick))
            continue
        if pick == edges[-1][1]:
            continue
        lo, hi = winners[k - 1][0], size
        before = edges[-1][1]
        for _ in range(refine):
            mid = int(round(math.sqrt(lo * hi)))
            mid -= mid % step
            if not lo < mid < hi:
                break
            t0 = run_model(model, collective, before[0], network, nranks, mid, itemsize, protocol=before[1],
                           channels=channels).time
            t1 = run_model(model, collective, pick[0], network, nranks, mid, itemsize, protocol=pick[1],
                           channels=channels).time
            lo, hi = (lo, mid) if t1 < t0 else (mid, hi)
        edges.append((hi, pick))
    rows = []
    for k, (start, (algorithm, protocol)) in enumerate(edges):
        end = edges[k + 1][0] - 1 if k + 1 < len(edges) else SIZE_MAX
        rows.append(TunerRow(NCCL_COLLECTIVES[collective], start, end, NCCL_ALGORITHMS[algorithm], protocol,
                             nnodes=nnodes, nranks=nranks))
    return rows


def format_tuner(rows, source: str = "") -> str:
    """The CSV file: ``#`` comment lines (the format, where it came from), then one line per row."""
    lines = [f"# {HEADER}", "# written by collsim select --format nccl-tuner" + (f" from {source}" if source else ""),
             "# use: NCCL_TUNER_PLUGIN=<example tuner plugin> NCCL_TUNER_CONFIG_FILE=<this file>",
             "# nvls and collnet_direct rows are collsim predictions (simulated only in collsim); NCCL runs them itself"]
    lines += [r.to_csv() for r in rows]
    return "\n".join(lines) + "\n"


def parse_tuner(text: str) -> list[TunerRow]:
    """Read a tuner CSV the way the example plugin does, refusing what it would misread.

    The plugin skips lines that start with ``#`` or are empty, splits on commas, trims blanks,
    needs 8 to 10 fields and maps unknown names to defaults silently; this reader raises
    ValueError instead, naming the line.

    >>> [r.algorithm for r in parse_tuner("# c\\nallreduce,0,100,tree,ll,-1,2,16\\n")]
    ['tree']
    """
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        if len(line) >= 256:
            raise ValueError(f"line {lineno}: longer than the plugin's 255 characters")
        fields = [f.strip() for f in line.split(",")]
        if not 8 <= len(fields) <= 10:
            raise ValueError(f"line {lineno}: {len(fields)} fields; the plugin needs 8 to 10 ({HEADER})")
        coll, lo, hi, algo, proto = fields[:5]
        if coll not in _PLUGIN_COLLECTIVES or algo not in _PLUGIN_ALGORITHMS or proto not in _PLUGIN_PROTOCOLS:
            raise ValueError(f"line {lineno}: unknown collective, algorithm or protocol in {line!r}")
        ints = [int(f) for f in fields[5:]] + [-1] * (10 - len(fields))
        rows.append(TunerRow(coll, int(lo), int(hi), algo, proto, *ints))
    return rows
