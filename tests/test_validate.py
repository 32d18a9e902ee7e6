"""``collsim validate``: small validations on an emulated switch and on 2 machines x 2 ranks, and the arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sim.validate import Point, Validation, format_report
from topologies.emulate import emulation_unavailable_reason

REASON = emulation_unavailable_reason()


def _validation(points):
    return Validation(topology="t", nranks=4, points=[Point(*p) for p in points], params={})


def test_errors_best_and_regret():
    v = _validation([
        ("ring", 65536, 1.1, 1.0, 0), ("tree", 65536, 1.0, 1.04, 0),         # predicted tree, measured ring: 4 %
        ("ring", 1 << 20, 9.0, 10.0, 0), ("tree", 1 << 20, 8.0, 12.0, 0),    # predicted tree, measured ring: 20 %
        ("ring", 1024, 1.0, 2.0, 0), ("tree", 1024, 3.0, 2.5, 0),
    ])
    assert [round(p.error, 3) for p in v.points][:2] == [0.1, round(1 / 1.04 - 1, 3)]
    rows = {r["size"]: r for r in v.per_size()}
    assert rows[65536]["predicted_best"] == "tree" and rows[65536]["measured_best"] == "ring"
    assert rows[65536]["regret"] == pytest.approx(0.04)
    assert rows[1 << 20]["regret"] == pytest.approx(0.2)
    assert rows[1024]["regret"] == 0.0
    assert v.best_agreement() == pytest.approx(2 / 3)
    # median |error| over sizes >= 64 KiB: errors 0.1, 0.0385, 0.1, 0.333
    assert v.median_abs_error(65536) == pytest.approx(0.1)
    text = format_report(v)
    assert "predicted best" in text and "+10.0" in text and "regret%" in text


@pytest.mark.skipif(REASON is not None, reason=f"emulation unavailable: {REASON}")
def test_small_validation_end_to_end(tmp_path):
    """4 hosts on a switch, 2 sizes, every algorithm: table, JSON lines of both sources, plot, exit status."""
    out, plot = tmp_path / "v.jsonl", tmp_path / "v.png"
    proc = subprocess.run(
        [sys.executable, "-m", "sim", "validate", "--topology", "switch:n=4,bandwidth=200Mbps",
         "--sizes", "256KiB,1MiB", "--algorithms", "ring,tree,recursive_halving,recursive_doubling", "--reps", "3",
         "--max-reps", "3", "--json", str(out), "--plot", str(plot),
         "--max-error", "0.5"],
        capture_output=True, text=True, timeout=170, cwd=tmp_path,
    )
    assert proc.returncode in (0, 1), proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    measured = [r for r in records if r["source"] == "measured"]
    simulated = [r for r in records if r["source"] == "simulated"]
    assert len(measured) == len(simulated) == 2 * 4
    assert {r["algorithm"] for r in measured} == {"ring", "tree", "recursive_halving", "recursive_doubling"}
    assert all(r["wrong"] == 0 for r in measured), measured  # every measured result was correct
    assert all(r["time_us"] > 0 and r["nranks"] == 4 for r in records)
    assert plot.stat().st_size > 10_000
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 8 + 2  # a row per point, a row per size (winners)
    # exit status follows --max-error; a gross model or measurement failure cannot pass
    median_line = next(line for line in proc.stdout.splitlines() if line.startswith("# median |error|"))
    median = float(median_line.split()[3].rstrip("%")) / 100
    assert (proc.returncode == 1) == (median > 0.5), proc.stdout
    assert median < 0.5, proc.stdout + proc.stderr


def test_speedups_over_a_baseline_and_winners():
    v = _validation([
        ("ring:channels=1", 1 << 20, 6.0, 6.6, 0), ("ring:channels=2", 1 << 20, 3.0, 3.6, 0), ("hierarchical", 1 << 20, 2.5, 3.0, 0),
        ("ring:channels=1", 2 << 20, 12.0, 12.0, 0), ("ring:channels=2", 2 << 20, 6.0, 5.5, 0), ("hierarchical", 2 << 20, 5.0, 5.9, 0),
    ])
    speedups = {(sp.algorithm, sp.size): sp for sp in v.speedups("ring:channels=1")}
    assert len(speedups) == 4
    sp = speedups[("hierarchical", 1 << 20)]
    assert (sp.predicted, sp.measured) == pytest.approx((2.4, 2.2)) and sp.error == pytest.approx(2.4 / 2.2 - 1)
    assert [sp.size for sp in v.speedups("ring:channels=1", min_size=2 << 20)] == [2 << 20] * 2
    # 1 MiB: hierarchical predicted and measured best; 2 MiB: hierarchical predicted, the 2-channel ring measured
    assert [(r["predicted_best"], r["measured_best"]) for r in v.per_size()] == [
        ("hierarchical", "hierarchical"), ("hierarchical", "ring:channels=2")]
    assert not v.winners_agree(1 << 20) and not v.winners_agree(2 << 20)
    assert v.winners_agree(3 << 20)  # no sizes left: nothing disagrees
    assert "speedup over ring:channels=1" in format_report(v, baseline="ring:channels=1")
    with pytest.raises(ValueError, match="baseline 'tree'"):
        v.speedups("tree")


def _measured_point(alg, size, predicted, samples):
    from sim.stats import median_ci

    ci = median_ci(samples)
    return Point(alg, size, predicted, ci.estimate, 0, ci.low, ci.high, len(samples), not ci.within(0.03),
                 tuple(samples))


def test_intervals_noisy_points_and_paired_speedups():
    """Each point carries its median's 95% interval; a wide one is noisy, reported apart and not hidden."""
    quiet = [1.00, 1.01, 0.99, 1.00, 1.02, 0.98, 1.00, 1.01]
    wild = [2.0, 3.1, 1.2, 2.6, 1.9, 3.3, 1.1, 2.2]
    base = [2.0 * x for x in quiet]
    v = Validation(topology="t", nranks=4, params={}, points=[
        _measured_point("ring:channels=1", 1 << 20, 2.2, base),
        _measured_point("ring:channels=2", 1 << 20, 1.1, quiet),
        _measured_point("hierarchical", 1 << 20, 1.5, wild),
    ])
    ring2, hier = v.points[1], v.points[2]
    assert not ring2.noisy and ring2.rel_halfwidth <= 0.03 and ring2.low <= ring2.measured <= ring2.high
    assert hier.noisy and hier.rel_halfwidth > 0.3
    s = v.summary()
    assert [n["algorithm"] for n in s["noisy"]] == ["hierarchical"]
    assert s["points"] == 3 and s["best_agrees"] == 1 and s["sizes"] == 1 and s["reps"] == [8]
    # the median error with the noisy point (0.1, 0.1, |1.5/2.1 - 1|) and without it (0.1, 0.1)
    assert s["median_abs_error_ge_64KiB"] == pytest.approx(0.1)
    assert s["median_abs_error_ge_64KiB_quiet"] == pytest.approx(0.1)
    sp = {x.algorithm: x for x in v.speedups("ring:channels=1")}["ring:channels=2"]
    assert sp.measured == pytest.approx(2.0) and sp.low == pytest.approx(2.0) and sp.high == pytest.approx(2.0)
    text = format_report(v, baseline="ring:channels=1")
    assert "noisy" in text.splitlines()[4]  # hierarchical's row
    assert "1 of 3 points (hierarchical at 1048576 B" in text and "[2.00, 2.00]" in text
    assert "95%CI" in text and "±" in text
    quiet_only = Validation(topology="t", nranks=4, params={}, points=v.points[:2])
    assert "noisy points: none (widest 95% interval" in format_report(quiet_only)



def test_class_efficiencies_from_the_probes():
    """Fast links inside machines, slow between: each pair's probes give its links' efficiency, the busy probe its own."""
    import topologies
    from sim.params import ModelParams
    from sim.validate import class_efficiencies

    G = topologies.cluster(2, 2, 2, bandwidth=1e6, intra_bandwidth=8e6)
    alpha = 1e-3
    samples = [{"src": 0, "dst": j, "size": b, "seconds": alpha + b / (eff * bw)}
               for j, bw, eff in ((1, 8e6, 0.5), (2, 1e6, 0.9)) for b in (8, 65536, 1 << 20)]
    record = {
        "pairs": [{"src": 0, "dst": 1, "hops": 2, "bottleneck_bandwidth": 8e6},
                  {"src": 0, "dst": 2, "hops": 4, "bottleneck_bandwidth": 1e6}],
        "samples": samples, "pair_fit": {"alpha": alpha, "hop_latency": 0.0, "bandwidth_efficiency": 0.7},
        "busy_fit": {"alpha": 2e-3, "bandwidth_efficiency": 0.4},
    }
    params = ModelParams(alpha=2e-3, gamma=0.0, bandwidth_efficiency=0.4, extra={"calibration": record})
    classes = class_efficiencies(params, G).link_classes
    slow = {d["role"] for *_, d in G.edges(data=True) if d["bandwidth"] == 1e6}
    fast = {d["role"] for *_, d in G.edges(data=True) if d["bandwidth"] == 8e6}
    assert slow and fast and not slow & fast and set(classes) == slow | fast
    assert all(classes[role]["bandwidth_efficiency"] == pytest.approx(0.9) for role in slow)
    # the busy pairs (0, 1), (2, 3) are inside machines: their efficiency is the fast links'
    assert all(classes[role]["bandwidth_efficiency"] == pytest.approx(0.4) for role in fast)
    # one bottleneck bandwidth for every probed pair: nothing to split
    record["pairs"][0]["bottleneck_bandwidth"] = 1e6
    assert class_efficiencies(params, G).link_classes == {}


def test_validate_bad_arguments(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "sim", "validate", *args], capture_output=True, text=True, timeout=60)

    spec = ["--topology", "switch:n=4,bandwidth=200Mbps"]
    for args, needle in [
        (["--algorithms", "ring,nope"], "--algorithms"),
        (["--algorithms", "ring:lanes=2"], "lanes"),
        (["--algorithms", "ring,tree", "--baseline", "hierarchical"], "--baseline"),
        (["--winners-from", "lots"], "--winners-from"),
        (["--max-speedup-error", "0"], "--max-speedup-error"),
        (["--sizes", "1MiB:64KiB"], "bad size range"),
        (["--max-error", "0"], "--max-error"),
        (["--plot", str(tmp_path / "x.txt")], "--plot"),
        (["--json", str(tmp_path / "missing" / "x.jsonl")], "--json"),
    ]:
        proc = run(*spec, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("collsim: error:") and needle in proc.stderr and proc.stderr.count("\n") == 1


#: Issue 12's emulated proof (as in benchmarks/validation.py): 2 machines x 2 ranks, 160 Mbit/s inside a
#: machine, 20 Mbit/s between machines through 2 NICs per machine.
CLUSTER = "cluster:nodes=2,hosts_per_node=2,nics_per_node=2,bandwidth=20Mbps,intra_bandwidth=160Mbps"


@pytest.mark.skipif(REASON is not None, reason=f"emulation unavailable: {REASON}")
def test_hierarchy_pays_on_two_emulated_machines():
    """The 2-channel ring and hierarchical allreduce against the flat ring at 1 MiB, predicted and measured.

    Deliberately slow (about 45 s: the links are slow so that this 2-core machine moves the bytes
    without the CPU becoming the bottleneck). It checks that the layout reaches both sides: every
    result correct; both predicted 1.5-2.3x faster than the flat ring (one ring crosses between the
    machines through one NIC each way, they use both, each NIC both ways at its calibrated duplex
    share) and measured clearly faster; the predicted best the measured best. The speedups must agree within 35 % here, on a machine shared with
    other tests (the flat schedules on both sides would give 1.0x); benchmarks/validation.py holds
    the 15 % target over 1-4 MiB with more repetitions.
    """
    import topologies
    from sim.validate import validate

    algorithms = ["ring:channels=1", "ring:channels=2", "hierarchical"]
    v = validate(topologies.from_spec(CLUSTER), [1 << 20], algorithms, spec=CLUSTER, reps=3,
                 probe_sizes=(8, 16384, 65536, 262144, 1 << 20), probe_reps=3, timeout=400, log=None)
    report = format_report(v, baseline="ring:channels=1")
    assert all(p.wrong == 0 for p in v.points), report
    speedups = v.speedups("ring:channels=1")
    assert {sp.algorithm for sp in speedups} == {"ring:channels=2", "hierarchical"}, report
    assert all(sp.predicted > 1.5 and sp.measured > 1.35 for sp in speedups), report
    assert all(abs(sp.error) <= 0.35 for sp in speedups), report
    assert v.winners_agree(), report


def test_refit_judges_a_saved_run_again_with_the_same_measurements():
    """A saved run refitted with unchanged code gives back its predictions; its measurements stay as measured."""
    import topologies
    from sim.calibrate import Sample, build_params
    from sim.validate import Measured, compare, predict, refit
    from topologies import Router

    spec = "switch:n=4,bandwidth=100Mbps"
    G = topologies.from_spec(spec)
    bw, alpha = 12.5e6, 3e-4
    sizes_probe = (8, 65536, 262144, 1 << 20)
    samples = [Sample(0, 1, b, alpha + b / (0.8 * bw)) for b in sizes_probe]
    one_way = [Sample(0, 1, b, alpha + b / (0.9 * bw)) for b in sizes_probe[1:]]
    busy = {b: 1.5 * alpha + b / (0.85 * bw) for b in sizes_probe[1:]}
    gamma = [(65536 * 4**k, 1e-6 * 4**k) for k in range(3)]
    params = build_params(samples, gamma, G, Router(G), busy=busy, nranks=4, one_way=one_way)
    assert params.extra["calibration"]["duplex_efficiency"] == pytest.approx(0.8 / 0.9, rel=1e-5)
    assert params.duplex_efficiency == 1.0  # one link class: recorded, not applied
    algorithms, sizes = ["ring", "recursive_doubling"], [65536, 1 << 20]
    predicted = predict(G, params, sizes, algorithms)
    measured = {(a, s): Measured(1.1 * predicted[(a, s)].time, 0, 1.0 * predicted[(a, s)].time,
                                 1.2 * predicted[(a, s)].time, tuple(1.1 * predicted[(a, s)].time for _ in range(6)), False)
                for a in algorithms for s in sizes}
    v = compare(G, predicted, measured, params)
    saved = json.loads(json.dumps({"spec": spec, "params": v.params, "records": [r.to_json() for r in v.records]}))
    again = refit(saved)
    assert [(p.algorithm, p.size) for p in again.points] == [(p.algorithm, p.size) for p in v.points]
    for a, b in zip(again.points, v.points, strict=True):
        assert a.predicted == pytest.approx(b.predicted, rel=1e-12)
        assert (a.measured, a.low, a.high, a.reps) == pytest.approx((b.measured, b.low, b.high, b.reps))
        assert a.error == pytest.approx(0.1 / 1.1 * -1, rel=1e-9)
    with pytest.raises(ValueError, match="no calibration samples"):
        refit({**saved, "records": []})
