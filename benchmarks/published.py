"""Predict published nccl-tests results on real GPU systems, and say how far off the model is.

The measurements (``benchmarks/data/published.json``, each dataset with its source) are real
nccl-tests runs. Every dataset's hardware is expressed with the topology builders from public
nominal figures (link rates from datasheets; what a source does not say is listed as ``assumed``
in the data file). Two modes:

* ``nominal``: the GPU defaults of :mod:`sim.params` and NCCL's protocol constants
  (:mod:`sim.protocols`); nothing fitted.
* ``calibrated``: per dataset, one point is fitted (:func:`sim.calibrate.fit_measured`: the
  model's dominant term at that size) and every other point is predicted. The fitted point is the
  dataset's largest size (ties: the most ranks, then the first listed), chosen by that rule and
  not by looking at errors; its error is shown but left out of the dataset's median.

At each point the model picks, as NCCL does, the fastest of the algorithms the run could have
used (``candidates``: ``ring`` and ``tree``, ``nvls`` where NCCL ran with NVLS enabled, one of
them where the run forced it with ``NCCL_ALGO``) with the fastest protocol. The error is
``predicted time / measured time - 1`` (a time 25% too long is +25%; busbw is shown too).

Targets (issue 13): nominal median |error| <= 20% per dataset, calibrated <= 10%; the model picks
NVLS from 2 MiB on D4 (and not below) and the ring when NVLS is off.

    python benchmarks/published.py                       # both modes, flow model
    python benchmarks/published.py --mode nominal --datasets D4,D8

Writes ``benchmarks/results/published.md`` and ``.json`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "published.json"
RESULTS = HERE / "results"

#: Targets of the median |error| per dataset.
TARGETS = {"nominal": 0.20, "calibrated": 0.10}


def load(path: Path = DATA) -> dict:
    """The published data set (``collsim-published/1``)."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != "collsim-published/1":
        raise ValueError(f"{path}: not a collsim-published/1 file")
    return data


def measured_time(point: dict) -> float:
    """Seconds of the measured collective (from ``time_us``, else from ``busbw``)."""
    from sim.results import busbw_factor

    if point.get("time_us") is not None:
        return point["time_us"] * 1e-6
    factor = busbw_factor(point["collective"], point["nranks"])
    return point["size"] * factor / (point["busbw"] * 1e9)


def topology(name: str, point: dict):
    """The dataset's hardware as a topology (nominal figures; see ``hardware`` in the data file)."""
    import topologies

    if name == "D4" or point.get("system") == "h100":
        return topologies.gpu_cluster(nodes=1, gpus_per_node=8, nvls=True, nvlink_bandwidth=450e9)
    if name == "D2":
        return topologies.gpu_cluster(nodes=point["nodes"], gpus_per_node=8, nics_per_node=4, fabric="single",
                                      bandwidth=25e9, nvlink_bandwidth=300e9, pcie_bandwidth=32e9)
    if name == "D7":
        return topologies.gpu_cluster(nodes=1, gpus_per_node=2, intra="pcie", pcie_bandwidth=15.75e9)
    if name == "D8":
        return _one_gpu_four_nics(nodes=2)
    if point.get("system") == "dgx_a100":
        return topologies.gpu_cluster(nodes=point["nodes"], gpus_per_node=8, nics_per_node=8, bandwidth=25e9,
                                      nvlink_bandwidth=300e9, pcie_bandwidth=32e9)
    raise ValueError(f"no topology for dataset {name!r}")


def _one_gpu_four_nics(nodes: int, nics: int = 4):
    """D8's servers: one H100 on PCIe Gen5 behind a PCIe switch with 4 NICs of 400 Gb/s, one fabric switch.

    (``gpu_cluster`` puts at most one NIC per GPU, so this shape is built by hand.)
    """
    import topologies

    G = topologies.new_topology(f"d8:nodes={nodes},nics_per_node={nics}")
    G.graph["nics_per_node"] = nics
    G.add_node("fabric0", kind="switch", role="fabric")
    ends = []
    for s in range(nodes):
        gpu, sw = f"n{s}_gpu0", f"n{s}_pcie0"
        G.add_node(gpu, kind="gpu", node=s)
        G.add_node(sw, kind="switch", node=s, role="pcie")
        topologies.add_link(G, gpu, sw, 64e9, 0.5e-6, role="pcie")
        for j in range(nics):
            nic = f"n{s}_nic{j}"
            G.add_node(nic, kind="nic", node=s, rail=j)
            topologies.add_link(G, sw, nic, 64e9, 0.5e-6, role="pcie")
            topologies.add_link(G, nic, "fabric0", 50e9, 1e-6, role="network")
        ends.append(gpu)
    G.graph["endpoints"] = ends
    return G


def fit_point(points: list[dict]) -> int:
    """Index of the dataset's calibration point: the largest size, then the most ranks, then the first."""
    return max(range(len(points)), key=lambda i: (points[i]["size"], points[i]["nranks"], -i))


def predict(name: str, point: dict, params=None, model: str = "flow", cache: dict | None = None):
    """The model's pick (fastest candidate, fastest protocol) for one point: a SimResult."""
    from sim.flow import Network
    from sim.params import defaults_for
    from sim.select import run_model

    key = (name, point.get("nodes"), point.get("system"))
    if cache is not None and key in cache:
        net = cache[key]
    else:
        G = topology(name, point)
        net = Network(G, params if params is not None else defaults_for(G))
        if cache is not None:
            cache[key] = net
    results = [run_model(model, point["collective"], a, net, point["nranks"], point["size"]) for a in point["candidates"]]
    return min(results, key=lambda r: r.time)


def calibrate(name: str, points: list[dict]):
    """Fit one point of the dataset (:func:`fit_point`); returns (params, index)."""
    from sim.calibrate import Measured, fit_measured

    i = fit_point(points)
    point = points[i]
    G = topology(name, point)
    measured = Measured(point["collective"], {point["size"]: measured_time(point)}, point["nranks"])
    params = fit_measured(G, measured, [point["size"]], algorithms=point["candidates"], nranks=point["nranks"])
    return params, i


def run(datasets: dict, modes, model: str = "flow", progress=None) -> dict:
    """Predict every point in every mode; the report as a dict (see :func:`format_report`)."""
    report = {"model": model, "modes": {}}
    for mode in modes:
        per = {}
        for name, ds in datasets.items():
            points = ds["points"]
            params, fitted = None, None
            if mode == "calibrated":
                if name == "REF":  # single figures of different systems: nothing to fit on
                    continue
                params, fitted = calibrate(name, points)
            cache: dict = {}
            rows = []
            for i, point in enumerate(points):
                t0 = time.perf_counter()
                r = predict(name, point, params, model, cache)
                t_meas = measured_time(point)
                rows.append({
                    "collective": point["collective"], "nranks": point["nranks"], "nodes": point.get("nodes", 1),
                    "size": point["size"], "nccl": point["nccl"], "candidates": point["candidates"],
                    "pick": r.algorithm, "protocol": getattr(r, "protocol", None),
                    "measured_us": t_meas * 1e6, "predicted_us": r.time * 1e6,
                    "measured_busbw": point.get("busbw"), "predicted_busbw": r.busbw,
                    "error": r.time / t_meas - 1, "fitted": i == fitted,
                    "seconds": time.perf_counter() - t0,
                })
                if progress:
                    progress(f"{mode} {name} {i + 1}/{len(points)}")
            errors = [abs(x["error"]) for x in rows if not x["fitted"]]
            per[name] = {"rows": rows, "median_abs_error": statistics.median(errors) if errors else None,
                         "fitted": fitted, "params": params.to_json() if params is not None else None}
            if name == "D4":  # the ring must win at 16 GiB when NVLS is off (NCCL_ALGO=Ring's point, with tree too)
                point = {"collective": "allreduce", "nranks": 8, "size": 16 << 30, "candidates": ["ring", "tree"]}
                r = predict(name, point, params, model, cache)
                per[name]["nvls_off_16gib"] = {"pick": r.algorithm, "protocol": getattr(r, "protocol", None)}
        every = [abs(x["error"]) for d in per.values() for x in d["rows"] if not x["fitted"]]
        report["modes"][mode] = {"datasets": per, "overall_median_abs_error": statistics.median(every) if every else None}
    report["picks"] = pick_checks(report)
    return report


def pick_checks(report: dict) -> list[dict]:
    """The algorithm targets: NVLS from 2 MiB on D4 (not below), the ring at 16 GiB and 8 GiB with NVLS off."""
    out = []
    for mode, m in report["modes"].items():
        d4 = m["datasets"].get("D4")
        if not d4:
            continue
        for row in d4["rows"]:
            if row["candidates"] == ["ring", "tree", "nvls"]:
                want = "nvls" if row["size"] >= 2 << 20 else "not nvls"
                ok = (row["pick"] == "nvls") == (want == "nvls")
            elif row["candidates"] == ["ring", "tree"]:
                want, ok = "ring", row["pick"] == "ring"
            else:
                continue
            out.append({"mode": mode, "size": row["size"], "nranks": row["nranks"], "want": want,
                        "pick": f"{row['pick']}/{row['protocol']}", "ok": ok})
        off = d4.get("nvls_off_16gib")
        if off:
            out.append({"mode": mode, "size": 16 << 30, "nranks": 8, "want": "ring (NVLS off)",
                        "pick": f"{off['pick']}/{off['protocol']}", "ok": off["pick"] == "ring"})
    return out


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} B"


#: What the report says about how the model and the data met (printed with every report).
NOTES = """\
Notes, so the numbers can be judged:

- Nothing in the nominal mode is fitted: link rates are datasheet figures, efficiencies and latencies
  are NCCL's own constants (`sim.params`, `sim.protocols`). But the datasets were looked at while the
  model was built. Three changes came after seeing them: the LL bandwidth cap bounds only the
  bandwidth term (NCCL's `latency + bytes / bw`; seen on D4 at 1 MiB); a segmented tree pays NCCL's
  hop latency once per pipeline stage, not per segment (`sim.protocols.pipeline_factor`; D8 was
  +8% .. +18% at 8-32 MiB before, within 2% after); calibration scales only the link roles that
  limit the fitted point (seen on D2). D4 and D8 are therefore not independent tests of those changes.
- D7 misses in the nominal mode: the topology has PCIe Gen3 x16's datasheet 15.75 GB/s per GPU,
  while copies staged through host memory reach 4 GB/s (the dataset's own point-to-point test: 5.71).
  The source does not name the machine, so its PCIe layout is unknown, and no layout that datasheet
  rates allow lands within 20 %: with NCCL's PCIe efficiency (12 of 15.75 GB/s) x8 per GPU, or both
  GPUs behind one x16 switch uplink (each staged byte crosses it up and down), predicts 6.0 GB/s
  busbw (median 30.1 %); behind one x8 uplink 3.0 (30.9 %). The x16 topology stays. One fitted
  point (1 GiB) fixes the bandwidth term; the small sizes also miss on latency (12.3 us measured
  at 8 B, NCCL's constants give 8.6).
- D2 ran NCCL 2.8.4, whose constants differ from the 2.2x tables the model uses (2.8's are
  smaller, so they would predict faster still). Its one-node points, which cross no fabric, miss by
  21-61 %. The multi-node points run at a third of 4x HDR200 and are not monotone in the node
  count (32 MiB: 15 GB/s on 8 nodes, 27 on 16). ABCI's own guide ("Using SHARP") shows two A-nodes
  with NCCL 2.8 moving 32 MiB in 870 us, at least 38.6 GB/s per node, where D2 took 1887 us
  (17.8 GB/s per node): the fabric can carry more than D2 got, so no fabric shape from public
  facts explains it. Tried and not adopted, being unsupported by any public fact: a 3:1
  oversubscribed fat tree (median 25.9 %, 2-3x too slow at 4-16 nodes) and staging network traffic
  through host memory (no GPUDirect RDMA; half the PCIe rate, median 21.8 %).
"""


def format_report(report: dict, datasets: dict) -> str:
    """Markdown: per mode and dataset the points, predicted against measured, medians, targets, picks."""
    lines = [f"# Published nccl-tests results against collsim's GPU model ({report['model']} model)", "",
             "Command: `python benchmarks/published.py` (data: `benchmarks/data/published.json`).", "", NOTES]
    for mode, m in report["modes"].items():
        target = TARGETS[mode]
        lines += [f"## {mode}", ""]
        for name, d in m["datasets"].items():
            ds = datasets[name]
            med = d["median_abs_error"]
            verdict = "-" if med is None else ("met" if med <= target else "missed")
            lines += [f"### {name}: {ds['title']}", "", f"Source: {ds['source']}.", ""]
            if d["fitted"] is not None:
                p = d["rows"][d["fitted"]]
                cal = d["params"].get("calibration", {})
                lines += [f"Fitted on: {p['collective']} {_size(p['size'])} on {p['nranks']} ranks "
                          f"(latency x{cal.get('latency_factor', 1):.3g}, bandwidth x{cal.get('bandwidth_factor', 1):.3g}); "
                          "every other point predicted.", ""]
            lines += ["| collective | ranks | nodes | size | NCCL ran | model pick | measured busbw | predicted busbw "
                      "| measured us | predicted us | error |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in d["rows"]:
                mb = "-" if r["measured_busbw"] is None else f"{r['measured_busbw']:.2f}"
                fit = " (fitted)" if r["fitted"] else ""
                lines.append(f"| {r['collective']} | {r['nranks']} | {r['nodes']} | {_size(r['size'])} | {r['nccl']} | "
                             f"{r['pick']}/{r['protocol']} | {mb} | {r['predicted_busbw']:.2f} | {r['measured_us']:.4g} | "
                             f"{r['predicted_us']:.4g} | {100 * r['error']:+.1f}%{fit} |")
            lines += ["", f"Median |error| {name} ({mode}): "
                      + ("-" if med is None else f"{100 * med:.1f}%") + f" (target <= {100 * target:.0f}%: {verdict})", ""]
        overall = m["overall_median_abs_error"]
        lines += [f"**Overall median |error| ({mode}): {100 * overall:.1f}%**", ""]
    if report["picks"]:
        lines += ["## Algorithm picks on D4", "", "| mode | ranks | size | NCCL ran | model pick | ok |", "|---|---|---|---|---|---|"]
        for p in report["picks"]:
            lines.append(f"| {p['mode']} | {p['nranks']} | {_size(p['size'])} | {p['want']} | {p['pick']} | "
                         f"{'yes' if p['ok'] else 'NO'} |")
        lines.append("")
    return "\n".join(lines)


def write_nccl_tests(points: list[dict], path, *, nranks: int | None = None, hosts: list[str] | None = None,
                     note: str = "") -> None:
    """Write measured points of one collective and world size in nccl-tests' ``all_reduce_perf`` layout.

    Out-of-place and in-place columns both carry the published time (the sources give one); ``#wrong`` is 0.
    ``note`` becomes a first ``#`` line (nccl-tests readers skip ``#`` lines).
    """
    from sim.results import busbw_factor

    n = nranks or points[0]["nranks"]
    nodes = points[0].get("nodes", 1)
    hosts = hosts or [f"node{r * nodes // n}" for r in range(n)]
    lo, hi = min(p["size"] for p in points), max(p["size"] for p in points)
    lines = [f"# {note}"] if note else []
    lines += [f"# nThread 1 nGpus 1 minBytes {lo} maxBytes {hi} step: 2(factor) warmup iters: 5 iters: 20 agg iters: 1 "
              "validation: 1 graph: 0", "#", "# Using devices"]
    for r in range(n):
        lines.append(f"#  Rank {r:2d} Group  0 Pid {1000 + r:6d} on {hosts[r]:>10} device {r % 8:2d} [0x{r:02x}] GPU")
    lines += ["#",
              "#                                                              out-of-place                       in-place",
              "#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong",
              "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)"]
    busbws = []
    for p in sorted(points, key=lambda p: p["size"]):
        t = measured_time(p) * 1e6
        algbw = p["size"] / (t * 1e3)
        bus = algbw * busbw_factor(p["collective"], n)
        busbws.append(bus)
        cols = f"{t:8.2f} {algbw:7.2f} {bus:7.2f} {0:6d}"
        lines.append(f"{p['size']:12d} {p['size'] // 4:13d} {'float':>9} {'sum':>7} {-1:7d} {cols} {cols}")
    lines += ["# Out of bounds values : 0 OK", f"# Avg bus bandwidth    : {sum(busbws) / len(busbws):.4g}", "#"]
    Path(path).write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", default="both", choices=("nominal", "calibrated", "both"))
    ap.add_argument("--datasets", default=None, help="comma-separated dataset names (default: all)")
    ap.add_argument("--model", default="flow", choices=("flow", "analytic"))
    ap.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results/published.*")
    ap.add_argument("--nccl-tests", metavar="DATASET", default=None,
                    help="instead: print DATASET's points (one world size) in nccl-tests' all_reduce_perf layout")
    args = ap.parse_args(argv)
    if args.nccl_tests:
        import tempfile

        ds = load()["datasets"].get(args.nccl_tests)
        if ds is None or len({(p["collective"], p["nranks"]) for p in ds["points"]}) != 1:
            ap.error(f"--nccl-tests: give a dataset of one collective and world size (e.g. D7, D8), got {args.nccl_tests!r}")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "all_reduce_perf.txt"
            write_nccl_tests(ds["points"], out, note=f"collsim: dataset {args.nccl_tests} of benchmarks/data/published.json "
                             "in nccl-tests' layout (published numbers, not a raw log)")
            print(out.read_text(), end="")
        return 0
    data = load()
    datasets = data["datasets"]
    if args.datasets:
        names = [n.strip() for n in args.datasets.split(",") if n.strip()]
        unknown = [n for n in names if n not in datasets]
        if unknown:
            ap.error(f"--datasets: unknown {unknown[0]!r}; choose from: {', '.join(datasets)}")
        datasets = {n: datasets[n] for n in names}
    modes = ["nominal", "calibrated"] if args.mode == "both" else [args.mode]
    t0 = time.perf_counter()
    report = run(datasets, modes, args.model, progress=lambda note: print(f"  {note}", file=sys.stderr, end="\r"))
    report["seconds"] = time.perf_counter() - t0
    text = format_report(report, datasets)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "published.md").write_text(text + "\n")
        (RESULTS / "published.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"# wrote {RESULTS / 'published.md'} and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
