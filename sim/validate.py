"""Validate predictions against real runs on an emulated topology.

Procedure (:func:`validate`)
----------------------------
1. Bring the topology up as an emulation (:class:`topologies.emulate.Emulation`): namespaces,
   veth links shaped with ``tc tbf``, routes from ``topologies.Router``.
2. Calibrate the model on it (:func:`sim.calibrate.calibrate_emulation`): point-to-point probes
   and local reduction timing only, never the collectives judged here. When the probed pairs'
   bottleneck links differ in bandwidth (fast links inside a machine, slow ones between machines),
   every link class gets the efficiency of the probes that crossed it (:func:`class_efficiencies`):
   the busy probe (every rank exchanging with a partner at once) for its pairs' links, each quiet
   pair's probes for its own.
3. Predict every (algorithm, size) with the flow model (:func:`sim.select.run_model`) on the same
   topology, arc latencies replaced by the measured per-hop latency (an emulation cannot impose the
   topology's latency).
4. Measure: one rank process per host namespace runs ``collectives.distributed.all_reduce`` over
   Gloo on the emulated network (rendezvous through a TCP store on rank 0's emulated address). Each
   repetition runs every (size, algorithm) once, in an order rotated per repetition, so slow
   periods of the shared machine hit every algorithm alike; one repetition's time runs from the
   last rank's start to the last rank's end (one clock on this machine; the simulator's picture
   of all ranks starting together); the reported time is the median over repetitions, with its
   95% confidence interval (:func:`sim.stats.median_ci`, distribution-free). Repetitions go on
   (at least ``reps``, at most ``max_reps``) until every point's interval lies within ``±rel``
   (3%) of its median; a point still wider at the bound is reported as *noisy*, and kept. Every
   rank sees the same repetition times (the start and end maxima are reduced to every rank after
   each round), so all ranks stop together. Every result is checked (``#wrong``).
5. Compare per point: error ``(predicted - measured) / measured``; per size: the predicted best
   algorithm, the measured best, and the *regret*: how much slower the predicted best measured than
   the measured best. Against a baseline algorithm (:meth:`Validation.speedups`): how much faster
   each algorithm is than the baseline, predicted and measured (the median of the per-round ratios
   with its 95% interval, :func:`sim.stats.ratio_ci`), and how far the two factors differ. The
   summary counts agreement on the best algorithm against the measured best and gives the noisy
   points apart (their count, and the median error without them beside the one with them).

Algorithms are specs (:func:`collectives.plan.parse_algorithm`): ``ring:channels=1``,
``ring:channels=2``, ``hierarchical``. Both sides run the same schedule on the topology's layout
(:func:`sim.layout.layout_of`: which endpoints share a machine, NICs per machine): the prediction
generates it with :func:`collectives.plan.run_params`, the ranks are given the layout
(``all_reduce(..., layout=...)``) and generate it the same way. On a topology of machines with two
NICs, ``ring`` means two channels (``channels=auto``): ask for ``ring:channels=1`` for one ring.

Targets (issue 7): median ``|error|`` at most 10 % for sizes >= 64 KiB; at >= 90 % of the sizes,
regret at most 5 %. Issue 12, on 2 machines x 2 ranks with 2 NICs each: the speedups of
``hierarchical`` and ``ring:channels=2`` over ``ring:channels=1`` measured within 15 % of the
predicted ones, and the predicted best the measured best at every size from 1 MiB.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Point",
    "Speedup",
    "Validation",
    "class_efficiencies",
    "predict",
    "Measured",
    "measure",
    "refit",
    "compare",
    "validate",
    "format_report",
    "main",
]

_REGRET_TARGET = 0.05


@dataclass(frozen=True)
class Point:
    """Predicted and measured time of one (algorithm, size)."""

    algorithm: str
    size: int
    predicted: float  # seconds
    measured: float  # seconds (median over repetitions)
    wrong: int
    low: float = float("nan")  # 95% confidence interval of the measured median (seconds)
    high: float = float("nan")
    reps: int = 0
    noisy: bool = False  # the interval did not get within the asked ±rel by the repetition bound
    samples: tuple[float, ...] = ()  # seconds of every repetition, in round order

    @property
    def error(self) -> float:
        """Relative error of the prediction: ``(predicted - measured) / measured``."""
        return (self.predicted - self.measured) / self.measured

    @property
    def rel_halfwidth(self) -> float:
        """Half-width of the measured interval relative to the median (``inf`` when unbounded)."""
        if not (self.low == self.low and self.high == self.high) or self.measured <= 0:
            return float("inf")
        return max(self.measured - self.low, self.high - self.measured) / self.measured


@dataclass(frozen=True)
class Speedup:
    """How much faster ``algorithm`` ran than ``baseline`` at ``size``: predicted and measured factors."""

    algorithm: str
    baseline: str
    size: int
    predicted: float  # baseline time / algorithm time, in the model
    measured: float  # the same, measured (median of the per-round ratios when rounds are paired)
    low: float = float("nan")  # 95% confidence interval of the measured factor
    high: float = float("nan")

    @property
    def error(self) -> float:
        """Relative error of the predicted factor: ``predicted / measured - 1``."""
        return self.predicted / self.measured - 1.0


@dataclass
class Validation:
    """Everything a validation produced: points, records, parameters, and the summary numbers."""

    topology: str
    nranks: int
    points: list[Point]
    params: dict
    records: list = field(default_factory=list)  # sim.results.Record, simulated and measured

    def errors(self, min_size: int = 0) -> list[float]:
        return [p.error for p in self.points if p.size >= min_size]

    def median_abs_error(self, min_size: int = 0) -> float:
        errs = [abs(e) for e in self.errors(min_size)]
        return statistics.median(errs) if errs else float("nan")

    def per_size(self) -> list[dict]:
        """Per size: predicted best, measured best, and the regret of following the prediction."""
        out = []
        for size in sorted({p.size for p in self.points}):
            pts = [p for p in self.points if p.size == size]
            pbest = min(pts, key=lambda p: p.predicted)
            mbest = min(pts, key=lambda p: p.measured)
            out.append({
                "size": size,
                "predicted_best": pbest.algorithm,
                "measured_best": mbest.algorithm,
                "regret": pbest.measured / mbest.measured - 1.0,
            })
        return out

    def speedups(self, baseline: str, min_size: int = 0) -> list[Speedup]:
        """Every other algorithm's speedup over ``baseline`` per size (from ``min_size``), predicted and measured.

        Raises
        ------
        ValueError
            ``baseline`` was not validated.
        """
        at = {(p.algorithm, p.size): p for p in self.points}
        if not any(a == baseline for a, _ in at):
            raise ValueError(f"baseline {baseline!r} is not among the validated algorithms: "
                             f"{', '.join(dict.fromkeys(a for a, _ in at))}")
        out = []
        for (alg, size), p in sorted(at.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            base = at.get((baseline, size))
            if alg != baseline and base is not None and size >= min_size:
                out.append(_speedup(p, base))
        return out

    def winners_agree(self, min_size: int = 0) -> bool:
        """Whether the predicted best is the measured best at every size from ``min_size``."""
        return all(r["predicted_best"] == r["measured_best"] for r in self.per_size() if r["size"] >= min_size)

    def best_agreement(self, tolerance: float = _REGRET_TARGET) -> float:
        """Fraction of sizes where the predicted best measured within ``tolerance`` of the best."""
        rows = self.per_size()
        return sum(r["regret"] <= tolerance for r in rows) / len(rows) if rows else float("nan")

    def noisy(self) -> list[Point]:
        """The points whose measured interval stayed wider than asked at the repetition bound."""
        return [p for p in self.points if p.noisy]

    def summary(self) -> dict:
        quiet = [abs(p.error) for p in self.points if not p.noisy and p.size >= 65536]
        rows = self.per_size()
        return {
            "topology": self.topology,
            "nranks": self.nranks,
            "points": len(self.points),
            "median_abs_error": self.median_abs_error(),
            "median_abs_error_ge_64KiB": self.median_abs_error(65536),
            "median_abs_error_ge_64KiB_quiet": statistics.median(quiet) if quiet else float("nan"),
            "best_within_5pct": self.best_agreement(),
            "best_agrees": sum(r["predicted_best"] == r["measured_best"] for r in rows),
            "sizes": len(rows),
            "noisy": [{"algorithm": p.algorithm, "size": p.size, "rel_halfwidth": p.rel_halfwidth} for p in self.noisy()],
            "max_rel_halfwidth": max((p.rel_halfwidth for p in self.points), default=float("nan")),
            "reps": sorted({p.reps for p in self.points}),
            "wrong": sum(p.wrong for p in self.points),
        }


def _speedup(p: Point, base: Point) -> Speedup:
    """``base``'s time over ``p``'s, predicted and measured (paired per round when both have the same rounds)."""
    from sim.stats import ratio_ci

    predicted = base.predicted / p.predicted
    if len(p.samples) == len(base.samples) >= 1:
        ci = ratio_ci(base.samples, p.samples)
        return Speedup(p.algorithm, base.algorithm, p.size, predicted, ci.estimate, ci.low, ci.high)
    return Speedup(p.algorithm, base.algorithm, p.size, predicted, base.measured / p.measured)


def _bottleneck_roles(G, router, i: int, j: int) -> set:
    """Roles of the narrowest arcs on the route from rank ``i`` to rank ``j``."""
    ends = G.graph["endpoints"]
    route = router.route(ends[i], ends[j])
    narrowest = min(float(G.edges[a]["bandwidth"]) for a in route)
    return {G.edges[a].get("role") for a in route if float(G.edges[a]["bandwidth"]) == narrowest} - {None}


def class_efficiencies(params, G):
    """``params`` with a bandwidth efficiency per link role, from the calibration's own probes.

    A calibration fits one efficiency, from the busy probe (pairs ``(r, r ^ 1)`` exchanging at
    once) when it ran. On a topology whose probed pairs have bottlenecks of different bandwidths
    (machines of several ranks: fast links inside, slow NIC links between) the busy pairs cross only
    some of the link classes, and their efficiency (on this machine often bounded by the CPU, on
    the fast links) says nothing about the others. Here each quiet pair's samples give the
    efficiency of its bottleneck links' roles (least squares of ``t - alpha - hops * hop_latency``
    against ``size / bottleneck``, with the pair fit's latency terms), and the busy fit's efficiency
    stays for the roles of the busy pairs' bottlenecks. With one-way probes of the same pairs, each
    role also gets its ``duplex_efficiency`` (the exchange's rate over the one-way rate) and the
    one-way rate as its efficiency; the busy pairs' (exchange) efficiency is divided by their role's
    duplex factor. Nothing changes when every probed pair has the same bottleneck bandwidth, or
    without a calibration record.

    Returns
    -------
    ModelParams
        With ``link_classes`` holding ``{"bandwidth_efficiency": e, "duplex_efficiency": d}`` per role so found.
    """
    from sim.calibrate import LATENCY_PROBE
    from topologies import Router

    record = params.extra.get("calibration") or {}
    pairs = record.get("pairs", [])
    if len({p["bottleneck_bandwidth"] for p in pairs}) < 2 or "pair_fit" not in record:
        return params
    router = Router(G)

    def slope(samples: list, fit: dict, p: dict) -> float:
        rows = [(s["size"] / p["bottleneck_bandwidth"], s["seconds"] - fit["alpha"] - p["hops"] * fit["hop_latency"])
                for s in samples if (s["src"], s["dst"]) == (p["src"], p["dst"]) and s["size"] > LATENCY_PROBE]
        return sum(x * y for x, y in rows) / sum(x * x for x, _ in rows) if rows else 0.0

    one = record.get("one_way_fit")
    classes = {}
    for p in pairs:
        exchange = slope(record["samples"], record["pair_fit"], p)
        if exchange <= 0:
            continue
        efficiency, duplex = min(1.0 / exchange, 1.0), 1.0
        one_way = slope(one["samples"], one, p) if one else 0.0
        if one_way > 0:  # the link one way, and what loading it both ways leaves
            efficiency, duplex = min(1.0 / one_way, 1.0), min(one_way / exchange, 1.0)
        for role in _bottleneck_roles(G, router, p["src"], p["dst"]):
            classes[role] = {"bandwidth_efficiency": efficiency, "duplex_efficiency": duplex}
    if "busy_fit" in record:
        n = len(G.graph["endpoints"])
        for r in range(0, n - 1, 2):
            for role in _bottleneck_roles(G, router, r, r + 1):
                duplex = classes.get(role, {}).get("duplex_efficiency", record.get("duplex_efficiency", 1.0))
                # the busy pairs exchange (both ways): their efficiency is the loaded one
                classes[role] = {"bandwidth_efficiency": min(record["busy_fit"]["bandwidth_efficiency"] / duplex, 1.0),
                                 "duplex_efficiency": duplex}
    return params.replace(link_classes={**params.link_classes, **classes})


def predict(G, params, sizes: Sequence[int], algorithms: Sequence[str], nranks: int | None = None) -> dict:
    """Flow-model time (s) of every (algorithm spec, size) on ``G`` with calibrated ``params``.

    Arc latencies are replaced by ``params.extra["hop_latency"]`` (0 when absent): the latency of
    the emulated network, which the calibration measured. Each schedule is generated on ``G``'s
    layout exactly as the runtime ranks generate theirs (:func:`collectives.plan.run_params`), and
    costed with the torch runtime's tactics at that size (:func:`collectives.execution.execution_for`).

    Returns
    -------
    dict
        ``{(algorithm spec, size): SimResult}``.
    """
    from collectives.algorithms import get_schedule
    from collectives.execution import execution_for
    from collectives.plan import parse_algorithm, run_params
    from sim.flow import Network
    from sim.select import MODELS

    H = G.copy()
    hop = float(params.extra.get("hop_latency", 0.0))
    for _, _, d in H.edges(data=True):
        d["latency"] = hop
    net = Network(H, params)
    n = len(G.graph["endpoints"]) if nranks is None else nranks
    layout = _layout(G, n)
    out = {}
    for spec in algorithms:
        name, spec_params = parse_algorithm(spec)
        for size in sizes:
            params_ = run_params(name, spec_params, n, size, layout=layout)
            schedule = get_schedule("allreduce", name, n, **dict(params_))
            execution = execution_for(schedule, size)  # the torch runtime on CPU, as the validation runs it
            out[(spec, size)] = MODELS["flow"](schedule, net, size, execution=None if execution.plain else execution)
    return out


def _layout(G, nranks: int):
    """The layout of ``G``'s first ``nranks`` endpoints (:func:`sim.layout.layout_of`)."""
    from collectives.layout import Layout
    from sim.layout import layout_of

    full = layout_of(G)
    return Layout.from_nodes(full.node_of[:nranks], nics_per_node=full.nics_per_node)


def _rank_main(args) -> int:
    """One measuring rank (``python -m sim.validate --worker``)."""
    import datetime

    import torch
    import torch.distributed as dist

    from collectives.distributed import all_reduce
    from sim.stats import median_ci, sample_until

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=args.timeout))
    try:
        from collectives.layout import Layout
        from collectives.plan import split_algorithms

        rank, n = dist.get_rank(), dist.get_world_size()
        sizes = [int(s) for s in args.sizes.split(",")]
        algorithms = split_algorithms(args.algorithms)
        layout = Layout(tuple(int(x) for x in args.layout.split(",")), args.nics) if args.layout else None
        expected = float(n * (n + 1) // 2)
        bufs = {s: torch.empty(s // 4, dtype=torch.float32) for s in sizes}
        wrong: dict[str, int] = {}

        def once(alg: str, size: int) -> tuple[float, float]:
            buf = bufs[size]
            buf.fill_(rank + 1)
            dist.barrier()
            t0 = time.perf_counter()  # CLOCK_MONOTONIC: one clock for every rank on this machine
            all_reduce(buf, "sum", algorithm=alg, layout=layout)
            t1 = time.perf_counter()
            key = f"{alg}:{size}"
            wrong[key] = wrong.get(key, 0) + int((buf != expected).sum())
            return t0, t1

        for size in sizes:  # warm-up: plans compiled, connections and TCP windows opened
            for alg in algorithms:
                for _ in range(args.warmup):
                    once(alg, size)
        wrong.clear()
        keys = [f"{alg}:{size}" for size in sizes for alg in algorithms]
        rounds = [0]

        def draw() -> dict[str, float]:
            """One round: every (size, algorithm) once, in a rotated order; times reduced to every rank."""
            r = rounds[0]
            rounds[0] += 1
            order = algorithms[r % len(algorithms):] + algorithms[: r % len(algorithms)]
            stamps = torch.zeros(2 * len(keys), dtype=torch.float64)
            for size in sizes if r % 2 == 0 else sizes[::-1]:
                for alg in order:
                    k = keys.index(f"{alg}:{size}")
                    stamps[2 * k], stamps[2 * k + 1] = once(alg, size)
            dist.all_reduce(stamps, op=dist.ReduceOp.MAX)  # last rank's start and last rank's end
            return {key: float(stamps[2 * k + 1] - stamps[2 * k]) for k, key in enumerate(keys)}

        got = sample_until(draw, lambda rs: {key: median_ci([r[key] for r in rs]) for key in keys},
                           rel=args.rel, min_samples=args.reps, max_samples=max(args.reps, args.max_reps))
        times = {key: [r[key] for r in got.samples] for key in keys}
        Path(args.out, f"rank{rank}.json").write_text(json.dumps({"rank": rank, "times": times, "wrong": wrong}))
    finally:
        dist.destroy_process_group()
    return 0


@dataclass(frozen=True)
class Measured:
    """One (algorithm, size) as measured: the median over repetitions, its interval, every repetition."""

    median: float  # seconds
    wrong: int
    low: float
    high: float
    samples: tuple[float, ...]
    noisy: bool
    reps: int = 0  # repetitions, when ``samples`` is not kept (0: ``len(samples)``)


def measure(emu, sizes: Sequence[int], algorithms: Sequence[str], *, reps: int = 5, max_reps: int | None = None,
            rel: float = 0.03, warmup: int = 1, timeout: float = 600.0, log=None) -> dict:
    """Run the collectives on the emulation; ``{(algorithm, size): Measured}``.

    One repetition's time runs from the moment the last rank enters the collective to the moment
    the last rank leaves it (every rank process runs on this machine, so all share one monotonic
    clock): the simulator's picture, in which every rank starts at 0 and the collective ends with
    its last rank. Timing each rank from its own start instead would add the skew with which the
    ranks leave the barrier before it. Rounds of every (size, algorithm) repeat at least ``reps``
    times and, while some point's 95% interval is wider than ``±rel`` of its median, up to
    ``max_reps`` times (default ``reps``: no extra rounds); a point still wider then is noisy.
    """
    from sim.calibrate import launch_ranks
    from sim.stats import median_ci

    max_reps = reps if max_reps is None else max_reps
    if not (isinstance(reps, int) and isinstance(max_reps, int) and 1 <= reps <= max_reps):
        raise ValueError(f"need integers 1 <= reps <= max_reps, got reps={reps!r}, max_reps={max_reps!r}")
    if not (isinstance(rel, (int, float)) and rel > 0):
        raise ValueError(f"rel must be a positive fraction (0.03 for ±3%), got {rel!r}")
    hosts = list(range(emu.nhosts))
    layout = _layout(emu.G, len(hosts))
    with tempfile.TemporaryDirectory(prefix="collsim-validate-") as tmp:
        argv = [
            sys.executable, "-m", "sim.validate", "--worker", "--out", tmp,
            "--sizes", ",".join(str(s) for s in sizes), "--algorithms", ",".join(algorithms),
            "--reps", str(reps), "--max-reps", str(max_reps), "--rel", str(rel),
            "--warmup", str(warmup), "--timeout", str(timeout),
            "--layout", ",".join(map(str, layout.node_of)), "--nics", str(layout.nics_per_node),
        ]
        if log is not None:
            more = f" (up to {max_reps} until every 95% interval is within ±{rel * 100:g}%)" if max_reps > reps else ""
            print(f"measure: {len(hosts)} ranks, {len(sizes)} sizes x {len(algorithms)} algorithms x {reps} "
                  f"repetitions{more}", file=log)
        launch_ranks(emu, hosts, argv, timeout=timeout, label="measurement")
        ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in hosts]
    out = {}
    for alg in algorithms:
        for size in sizes:
            key = f"{alg}:{size}"
            samples = tuple(ranks[0]["times"][key])  # every rank holds the same reduced times
            ci = median_ci(samples)
            out[(alg, size)] = Measured(ci.estimate, sum(r["wrong"].get(key, 0) for r in ranks), ci.low, ci.high,
                                        samples, not ci.within(rel))
    return out


def compare(G, predicted: dict, measured: dict, params) -> Validation:
    """Pair predictions with measurements; build the records of both (``sim.results.Record``)."""
    import dataclasses

    from sim.results import Record

    n = len(G.graph["endpoints"])
    name = str(G.graph.get("name", "topology"))
    points, records = [], []
    for (alg, size), res in predicted.items():
        m = measured[(alg, size)]
        t_meas, wrong = m.median, m.wrong
        reps = m.reps or len(m.samples)
        points.append(Point(alg, size, res.time, t_meas, wrong, m.low, m.high, reps, m.noisy, m.samples))
        records.append(dataclasses.replace(Record.from_result(res), algorithm=alg))  # the spec, as measured
        records.append(Record(
            source="measured", collective="allreduce", algorithm=alg, nranks=n, size=size, count=size // 4,
            dtype="float32", op="sum", time_us=t_meas * 1e6, wrong=wrong, topology=name,
            extra={"emulated": True, "time_us_low": m.low * 1e6, "time_us_high": m.high * 1e6,
                   "reps": reps, "noisy": m.noisy, "samples_us": [t * 1e6 for t in m.samples]},
        ))
    points.sort(key=lambda p: (p.size, p.algorithm))
    return Validation(topology=name, nranks=n, points=points, params=params.to_json(), records=records)


def validate(G, sizes: Sequence[int], algorithms: Sequence[str], *, spec: str | None = None, reps: int = 5,
             max_reps: int | None = None, rel: float = 0.03, probe_reps: int = 5, probe_sizes: Sequence[int] | None = None, timeout: float = 600.0,
             log=sys.stderr) -> Validation:
    """Emulate ``G``, calibrate, predict, measure and compare (see the module docstring)."""
    from collectives.plan import parse_algorithm
    from sim.calibrate import PROBE_SIZES, calibrate_emulation, format_params
    from topologies.emulate import Emulation

    for a in algorithms:
        parse_algorithm(a)
    if not sizes or any(s < 4 for s in sizes):
        raise ValueError("sizes must be at least 4 bytes (one float32)")
    bound = reps if max_reps is None else max_reps
    if not (isinstance(reps, int) and isinstance(bound, int) and 1 <= reps <= bound):
        raise ValueError(f"need integers 1 <= reps <= max_reps, got reps={reps!r}, max_reps={max_reps!r}")
    if not (isinstance(rel, (int, float)) and rel > 0):
        raise ValueError(f"rel must be a positive fraction (0.03 for ±3%), got {rel!r}")
    t0 = time.monotonic()
    with Emulation(G, spec=spec) as emu:
        if log is not None:
            print(f"validate: emulation {emu.prefix} up ({len(emu.namespaces)} namespaces, {len(emu.links)} links)",
                  file=log)
        params = class_efficiencies(calibrate_emulation(emu, sizes=probe_sizes or PROBE_SIZES, reps=probe_reps,
                                                        timeout=timeout, log=log), G)
        if log is not None:
            print(f"calibrate: {format_params(params)}", file=log)
            if params.link_classes:
                classes = ", ".join(f"{role} {over['bandwidth_efficiency']:.3f}"
                                    + (f" (duplex {over['duplex_efficiency']:.3f})" if "duplex_efficiency" in over else "")
                                    for role, over in sorted(params.link_classes.items()))
                print(f"calibrate: bandwidth efficiency per link class: {classes}", file=log)
        predicted = predict(G, params, sizes, algorithms)
        measured = measure(emu, sizes, algorithms, reps=reps, max_reps=max_reps, rel=rel, timeout=timeout, log=log)
    result = compare(G, predicted, measured, params)
    if log is not None:
        print(f"validate: done in {time.monotonic() - t0:.0f} s", file=log)
    return result


def refit(saved: dict) -> Validation:
    """The validation a saved run (``validation_<topology>.json`` of ``benchmarks/validation.py``)
    gives with this code: the same probe samples fitted again (:func:`sim.calibrate.build_params`,
    :func:`class_efficiencies`), every point predicted again, the same measurements.

    A change to the fit or the model can so be judged on measurements already made; the measured
    side is untouched (its repetitions, when the run kept them, give the paired speedup intervals).

    Raises
    ------
    ValueError
        The saved run has no calibration samples or no measured records.
    """
    from sim.calibrate import Sample, build_params
    from sim.params import ModelParams
    from topologies import Router, from_spec

    G = from_spec(saved["spec"])
    cal = ModelParams.from_json(saved["params"]).extra.get("calibration") or {}
    measured_records = [r for r in saved.get("records", []) if r["source"] == "measured"]
    if "samples" not in cal or not measured_records:
        raise ValueError("the saved run has no calibration samples or no measured records to refit")
    samples = [Sample(s["src"], s["dst"], s["size"], s["seconds"]) for s in cal["samples"]]
    gamma = [(int(g["size"]), float(g["seconds"])) for g in cal.get("gamma_samples", [])]
    busy = {int(b["size"]): float(b["seconds"]) for b in cal.get("busy_fit", {}).get("samples", [])}
    one_way = [Sample(s["src"], s["dst"], s["size"], s["seconds"])
               for s in cal.get("one_way_fit", {}).get("samples", [])]
    posted = {int(b["size"]): float(b["seconds"]) for b in cal.get("posted_fit", {}).get("samples", [])}
    spread = {int(b["size"]): float(b["half_range"]) for b in cal.get("busy_spread", [])}
    steps = {(int(b["pattern"]), int(b["size"])): float(b["seconds"])
             for b in cal.get("pattern_fit", {}).get("samples", [])}
    nranks = int(measured_records[0]["nranks"])
    params = class_efficiencies(build_params(samples, gamma, G, Router(G), busy=busy, nranks=nranks,
                                             one_way=one_way, busy_posted=posted, busy_spread=spread,
                                             pattern_times=steps), G)
    sizes = sorted({int(r["size"]) for r in measured_records})
    algorithms = list(dict.fromkeys(r["algorithm"] for r in measured_records))
    predicted = predict(G, params, sizes, algorithms)
    measured = {}
    for r in measured_records:
        extra = {**r, **(r.get("extra") or {})}  # a record's extra keys sit beside its fields (sim.results.Record)
        reps = tuple(x * 1e-6 for x in extra.get("samples_us", ()))
        measured[(r["algorithm"], int(r["size"]))] = Measured(
            r["time_us"] * 1e-6, int(r.get("wrong") or 0), extra.get("time_us_low", float("nan")) * 1e-6,
            extra.get("time_us_high", float("nan")) * 1e-6, reps, bool(extra.get("noisy", False)),
            int(extra.get("reps", 0)))
    return compare(G, predicted, measured, params)


def _ci_text(p: Point) -> str:
    """``±2.1%`` (the larger side of the measured interval), ``±inf`` below 6 repetitions."""
    h = p.rel_halfwidth
    return f"±{h * 100:.1f}%" if h != float("inf") else "±inf"


def format_report(v: Validation, baseline: str | None = None) -> str:
    """The per-(algorithm, size) table, the per-size winners and (with ``baseline``) the speedups, as text.

    ``95%CI`` is the half-width of the measured median's 95% confidence interval relative to the
    median; ``noisy`` marks points whose interval stayed wider than asked at the repetition bound.
    """
    lines = [
        f"# validation on {v.topology}: {v.nranks} ranks, emulated (tc tbf), allreduce float32 sum",
        f"# {'size(B)':>10} {'algorithm':>19} {'predicted(us)':>14} {'measured(us)':>13} {'95%CI':>7} {'reps':>4} "
        f"{'error%':>8} {'#wrong':>7}",
    ]
    for p in v.points:
        lines.append(
            f"  {p.size:>10} {p.algorithm:>19} {p.predicted * 1e6:>14.1f} {p.measured * 1e6:>13.1f} {_ci_text(p):>7} "
            f"{p.reps:>4} {p.error * 100:>+8.1f} {p.wrong:>7}" + ("  noisy" if p.noisy else "")
        )
    lines.append(f"# {'size(B)':>10} {'predicted best':>19} {'measured best':>19} {'regret%':>8}")
    for r in v.per_size():
        lines.append(f"  {r['size']:>10} {r['predicted_best']:>19} {r['measured_best']:>19} {r['regret'] * 100:>8.1f}")
    if baseline is not None:
        lines.append(f"# {'size(B)':>10} {'speedup over ' + baseline:>30} {'predicted':>10} {'measured':>9} "
                     f"{'95% interval':>15} {'error%':>8}")
        for sp in v.speedups(baseline):
            interval = f"[{sp.low:.2f}, {sp.high:.2f}]" if sp.low == sp.low and sp.high == sp.high else "-"
            lines.append(f"  {sp.size:>10} {sp.algorithm:>30} {sp.predicted:>9.2f}x {sp.measured:>8.2f}x "
                         f"{interval:>15} {sp.error * 100:>+8.1f}")
    s = v.summary()
    noisy = s["noisy"]
    lines.append(
        f"# median |error| {s['median_abs_error'] * 100:.1f}% (sizes >= 64 KiB: {s['median_abs_error_ge_64KiB'] * 100:.1f}%); "
        f"predicted best within 5% of measured best at {s['best_within_5pct'] * 100:.0f}% of sizes; "
        f"predicted best = measured best at {s['best_agrees']} of {s['sizes']} sizes"
    )
    if noisy:
        quiet = s["median_abs_error_ge_64KiB_quiet"]
        which = ", ".join(f"{n['algorithm']} at {n['size']} B ±{n['rel_halfwidth'] * 100:.1f}%" for n in noisy)
        lines.append(
            f"# noisy (95% interval wider than asked at the repetition bound): {len(noisy)} of {s['points']} points "
            f"({which}); median |error| without them (sizes >= 64 KiB): "
            + (f"{quiet * 100:.1f}%" if quiet == quiet else "no points left")
        )
    else:
        lines.append(f"# noisy points: none (widest 95% interval ±{s['max_rel_halfwidth'] * 100:.1f}%)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim.validate --worker ...``: one measuring rank (started by :func:`measure`)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m sim.validate")
    p.add_argument("--worker", action="store_true", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sizes", required=True)
    p.add_argument("--algorithms", required=True)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--max-reps", type=int, default=5)
    p.add_argument("--rel", type=float, default=0.03)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--layout", default="", help="node of every rank, comma-separated (default: flat)")
    p.add_argument("--nics", type=int, default=1, help="NICs per node")
    return _rank_main(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
