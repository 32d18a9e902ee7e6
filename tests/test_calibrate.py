"""Calibration: the least-squares fits recover known parameters; ``collsim calibrate`` on an emulation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import topologies
from sim.calibrate import (
    LATENCY_PROBE,
    Sample,
    build_params,
    busy_bandwidth,
    fit_gamma,
    fit_link,
    probe_pairs,
)
from sim.params import ModelParams, load_params
from topologies.emulate import emulation_unavailable_reason

REASON = emulation_unavailable_reason()


def _samples(alpha, lat, eff, info, sizes, noise, rng):
    out = []
    for (a, b), (hops, bw) in info.items():
        for s in sizes:
            t = alpha + hops * lat + s / (eff * bw)
            out.append(Sample(a, b, s, t * (1 + noise * rng.standard_normal())))
    return out


@pytest.mark.parametrize("alpha,lat,eff", [(5e-5, 0.0, 0.95), (2e-4, 3e-5, 0.7), (1e-6, 1e-6, 1.0)])
@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_fit_link_recovers_parameters(alpha, lat, eff, noise):
    rng = np.random.default_rng(7)
    info = {(0, 1): (2, 12.5e6), (0, 3): (4, 12.5e6), (0, 5): (4, 6.25e6)}
    sizes = [8, 3 * 16384, 65536, 262144, 1 << 20, 3 << 20]
    fit = fit_link(_samples(alpha, lat, eff, info, sizes, noise, rng), info)
    assert fit.efficiency == pytest.approx(eff, rel=0.02 + 2 * noise)
    assert fit.alpha + 3 * fit.hop_latency == pytest.approx(alpha + 3 * lat, rel=0.05 + 10 * noise, abs=5e-6)
    assert len(fit.residuals) == len(info) * len(sizes)
    assert fit.rms <= 3 * noise + 1e-6


def test_fit_link_without_latency_probes_and_one_hop_class():
    info = {(0, 1): (2, 1e8)}
    samples = [Sample(0, 1, s, 1e-4 + s / 0.8e8) for s in (16384, 1 << 20, 4 << 20)]
    fit = fit_link(samples, info)
    assert fit.hop_latency == 0.0  # one hop count: folded into alpha
    assert fit.alpha == pytest.approx(1e-4, rel=1e-6)
    assert fit.efficiency == pytest.approx(0.8, rel=1e-9)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="two or more sizes"):
        fit_link([Sample(0, 1, 100, 1.0)], {(0, 1): (1, 1e6)})
    with pytest.raises(ValueError, match="no route information"):
        fit_link([Sample(0, 1, 100, 1.0), Sample(0, 2, 200, 2.0)], {(0, 1): (1, 1e6)})
    with pytest.raises(ValueError, match="two or more sizes"):
        fit_gamma([(100, 1e-6)])


def test_fit_gamma_slope():
    timings = [(b, 3e-6 + 8e-11 * b) for b in (1 << 16, 1 << 18, 1 << 20, 1 << 22)]
    gamma, residuals = fit_gamma(timings)
    assert gamma == pytest.approx(8e-11, rel=1e-9)
    assert max(abs(r) for r in residuals) < 1e-9


def test_build_params_writes_the_simulators_format(tmp_path):
    G = topologies.from_spec("leaf_spine:leaves=2,spines=1,hosts_per_leaf=3,oversubscription=3,bandwidth=100Mbps")
    router = topologies.Router(G)
    pairs = probe_pairs(G, router)
    assert pairs[0] == (0, 1) and any(j >= 3 for _, j in pairs)  # one pair in the rack, one across
    from sim.calibrate import pair_info

    info = {p: pair_info(G, router, *p) for p in pairs}
    samples = _samples(6e-5, 1e-5, 0.93, info, [8, 65536, 1 << 20, 4 << 20], 0.0, np.random.default_rng(0))
    # busy probe: pairs (0,1) (2,3) (4,5) at once; (2,3) crosses the uplink
    bw = busy_bandwidth(G, router, 6)
    assert bw == pytest.approx(12.5e6)
    busy = {b: 3e-4 + b / (0.9 * bw) for b in (8, 65536, 1 << 20, 4 << 20)}
    params = build_params(samples, [(1 << 16, 1e-6), (1 << 22, 5e-5)], G, router, busy=busy, nranks=6)
    assert params.bandwidth_efficiency == pytest.approx(0.9, rel=1e-4)
    assert params.alpha > 6e-5  # busy steps cost more than a quiet pair's messages
    assert params.extra["calibration"]["pair_fit"]["bandwidth_efficiency"] == pytest.approx(0.93, rel=1e-4)
    from sim.params import save_params

    save_params(params, tmp_path / "p.json")
    back = load_params(tmp_path / "p.json")
    assert isinstance(back, ModelParams) and back.alpha == params.alpha and back.gamma > 0
    assert back.extra["hop_latency"] == pytest.approx(1e-5, rel=1e-3)
    assert LATENCY_PROBE >= 8
    assert params.posted_alpha is None and params.alpha_posted == params.alpha  # no posted probe: alpha

    # the same busy probe with receives posted a step ahead: a smaller intercept, the same slope
    posted = {b: 1e-4 + b / (0.9 * bw) for b in busy}
    ahead = build_params(samples, [(1 << 16, 1e-6), (1 << 22, 5e-5)], G, router, busy=busy, nranks=6,
                         busy_posted=posted)
    hops = np.mean([pair_info(G, router, r, r ^ 1)[0] for r in (0, 2, 4)])
    assert ahead.posted_alpha == pytest.approx(1e-4 - hops * ahead.extra["hop_latency"], rel=1e-3)
    assert ahead.alpha == pytest.approx(params.alpha) and ahead.posted_alpha < ahead.alpha
    assert ahead.extra["calibration"]["posted_fit"]["bandwidth_efficiency"] == pytest.approx(0.9, rel=1e-4)
    save_params(ahead, tmp_path / "q.json")
    assert load_params(tmp_path / "q.json").posted_alpha == ahead.posted_alpha


def test_calibration_says_why_a_fit_is_implausible(monkeypatch):
    """Notes: the machine's noise, an efficiency below 0.7 (and why), posting ahead measured no cheaper."""
    from sim.calibrate import calibration_notes, format_params, pair_info

    G = topologies.from_spec("switch:n=4,bandwidth=100Mbps")
    router = topologies.Router(G)
    pairs = probe_pairs(G, router)
    info = {p: pair_info(G, router, *p) for p in pairs}
    samples = _samples(6e-5, 0.0, 0.9, info, [8, 65536, 1 << 20, 4 << 20], 0.0, np.random.default_rng(1))
    bw = busy_bandwidth(G, router, 4)
    busy = {b: 3e-4 + b / (0.5 * bw) for b in (8, 65536, 1 << 20, 4 << 20)}
    posted = {b: 4e-4 + b / (0.5 * bw) for b in busy}
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    params = build_params(samples, [(1 << 16, 1e-6), (1 << 22, 5e-5)], G, router, busy=busy, nranks=4,
                          busy_posted=posted, busy_spread={65536: 0.04, 1 << 20: 0.02})
    notes = calibration_notes(params)
    assert notes[0] == "noise: repeated busy probes spread by +-3.0% (median half-range; up to +-4.0%)"
    assert "bandwidth_efficiency 0.50 is below 0.7" in notes[1] and "4 rank processes share 2 cores" in notes[1]
    assert "measured no cheaper per message" in notes[2]
    assert format_params(params).count("\n  note: ") == 3
    quiet = build_params(samples, [(1 << 16, 1e-6), (1 << 22, 5e-5)], G, router,
                         busy={b: 3e-4 + b / (0.9 * bw) for b in busy}, nranks=4)
    assert calibration_notes(quiet) == []
    # posting ahead saved more than the whole alpha: posted_alpha is clamped at 0, and a note says so
    free = build_params(samples, [(1 << 16, 1e-6), (1 << 22, 5e-5)], G, router,
                        busy={b: 3e-4 + b / (0.9 * bw) for b in busy}, nranks=4,
                        busy_posted={b: b / (0.9 * bw) - 5e-5 for b in busy})
    assert free.posted_alpha == 0.0
    saving = free.extra["calibration"]["posted_fit"]["saving"]
    assert saving == pytest.approx(3.5e-4) and saving > free.alpha
    assert calibration_notes(free) == [
        f"posted_alpha is 0: posting receives ahead saved {saving * 1e6:.0f} us per exchange in the busy probes, "
        f"not less than alpha ({free.alpha * 1e6:.0f} us); the model charges those messages no per-message cost, "
        "where a collective's steps each wait for the step before"]


@pytest.mark.skipif(REASON is not None, reason=f"emulation unavailable: {REASON}")
def test_calibrate_command_on_an_emulation(tmp_path):
    out = tmp_path / "calib.json"
    proc = subprocess.run(
        [sys.executable, "-m", "sim", "calibrate", "--topology", "switch:n=4,bandwidth=200Mbps", "--out", str(out),
         "--sizes", "64KiB:1MiB:x4", "--reps", "3"],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    params = load_params(out)
    cal = params.extra["calibration"]
    # the fitted efficiency is what TCP gets through tbf: below 1448/1514 of nominal, well above half
    assert 0.5 < params.bandwidth_efficiency <= 0.97, params
    assert params.alpha >= 0 and params.gamma > 0
    assert {s["size"] for s in cal["samples"]} == {8, 65536, 262144, 1048576}
    assert len(cal["residuals"]) == len(cal["samples"])
    assert "busy_fit" in cal and len(cal["busy_fit"]["samples"]) == 4
    assert "posted_fit" in cal and params.posted_alpha is not None
    # the step patterns of the ring and recursive doubling, each at the three sizes, decide alpha and efficiency
    assert cal["pattern_fit"]["patterns"] == [[1, 2, 3, 0], [1, 0, 3, 2], [2, 3, 0, 1]]
    assert len(cal["pattern_fit"]["samples"]) == 9
    assert params.bandwidth_efficiency == pytest.approx(cal["pattern_fit"]["bandwidth_efficiency"])
    assert "bandwidth_efficiency=" in proc.stdout and "patterns " in proc.stdout


def test_calibrate_command_bad_arguments(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "sim", "calibrate", *args], capture_output=True, text=True, timeout=60)

    bad = run("--topology", "switch:n=4,bandwidth=200Mbps", "--out", str(tmp_path / "nope" / "x.json"))
    assert bad.returncode == 2 and bad.stderr.startswith("collsim: error: --out") and bad.stderr.count("\n") == 1
    bad = run("--topology", "nosuch:n=4", "--out", str(tmp_path / "x.json"))
    assert bad.returncode == 2 and "--topology" in bad.stderr and bad.stderr.count("\n") == 1
    bad = run("--topology", "switch:n=4,bandwidth=200Mbps", "--out", str(tmp_path / "x.json"), "--reps", "0")
    assert bad.returncode == 2 and "--reps" in bad.stderr


def test_read_measured_takes_collsim_json_lines(tmp_path):
    from sim.calibrate import read_measured
    from sim.results import Record, write_jsonl

    recs = [Record("measured", "allreduce", a, 4, s, s // 4, "float32", "sum", t, wrong=0)
            for a, s, t in [("ring", 1024, 30.0), ("tree", 1024, 20.0), ("ring", 1 << 20, 400.0)]]
    write_jsonl(recs, tmp_path / "m.jsonl")
    m = read_measured(tmp_path / "m.jsonl")
    assert (m.collective, m.nranks) == ("allreduce", 4)
    assert m.times == {1024: pytest.approx(20e-6), 1 << 20: pytest.approx(400e-6)}  # the fastest per size
    write_jsonl([*recs, Record("measured", "allreduce", "ring", 8, 1024, 256, "float32", "sum", 9.0)], tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="several collectives or world sizes"):
        read_measured(tmp_path / "x.jsonl")


def test_pattern_probe_is_fitted_through_the_flow_model():
    """Step times made from the flow model's own sharing give back alpha and efficiency; a pattern
    that measures dearer shows in its residual and in the notes."""
    from sim.calibrate import calibration_notes, fit_patterns, pair_info, probe_patterns
    from sim.flow import Network

    G = topologies.from_spec("leaf_spine:leaves=2,spines=1,hosts_per_leaf=3,oversubscription=3,bandwidth=100Mbps")
    patterns = probe_patterns(6)
    net = Network(G, ModelParams(alpha=0.0, gamma=0.0))
    times = {}
    for k, to in enumerate(patterns):
        src = np.array([r for r in range(6) if to[r] >= 0])
        dst = np.array([to[r] for r in src])
        for size in (16384, 262144, 4 << 20):
            t1 = net.compile(src, dst).run(np.zeros(src.size), np.full(src.size, float(size))).max()
            times[(k, size)] = 1e-3 + t1 / 0.8
    fit, by_pattern = fit_patterns(G, patterns, times)
    assert fit.alpha == pytest.approx(1e-3, rel=1e-6) and fit.efficiency == pytest.approx(0.8, rel=1e-6)
    assert max(abs(v) for v in by_pattern.values()) < 1e-9
    # the steps across the oversubscribed uplink share it: the ring pattern's T1 is larger than a rack-local pair's
    router = topologies.Router(G)
    samples = _samples(6e-5, 1e-5, 0.93, {p: pair_info(G, router, *p) for p in probe_pairs(G, router)},
                       [8, 65536, 1 << 20], 0.0, np.random.default_rng(0))
    slower = {key: t * (1.2 if key[0] == 0 else 1.0) for key, t in times.items()}
    params = build_params(samples, [(1 << 16, 1e-6), (1 << 22, 5e-5)], G, router, nranks=6, pattern_times=slower)
    record = params.extra["calibration"]["pattern_fit"]
    assert record["patterns"][0] == [1, 2, 3, 4, 5, 0]
    worst = min(record["mean_residual_by_pattern"].items(), key=lambda kv: kv[1])
    assert worst[0] == "0" and worst[1] < -0.05
    assert any(note.startswith("step patterns cost differently") for note in calibration_notes(params))
