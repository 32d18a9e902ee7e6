"""sim.stats: order-statistic intervals hold their coverage on known distributions, pairing removes
drift, the bootstrap is reproducible, the adaptive loop stops when it should and says when it did not."""

from __future__ import annotations

import math
import multiprocessing as mp
import threading

import numpy as np
import pytest
from scipy import stats as sps

from sim.stats import (
    Interval,
    awake_cores,
    calibrate_calls,
    calls_per_sample,
    geomean_ci,
    interleaved_rounds,
    machine_info,
    median_ci,
    order_statistic_ranks,
    pin_plan,
    pin_process,
    ratio_ci,
    sample_until,
    thread_affinity,
    verdict,
    verdict_all,
)

# ---------------------------------------------------------------------------------------------
# order statistics


@pytest.mark.parametrize(("n", "ranks"), [(6, (1, 6)), (10, (2, 9)), (20, (6, 15)), (100, (40, 61))])
def test_ranks_match_the_published_table(n, ranks):
    """95% ranks for the median as tabulated (e.g. Conover, Practical Nonparametric Statistics)."""
    assert order_statistic_ranks(n)[:2] == ranks


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
@pytest.mark.parametrize("n", [1, 2, 5, 6, 7, 9, 13, 31, 64, 97])
def test_ranks_are_the_widest_that_keep_coverage(n, confidence):
    """Against scipy's binomial: coverage >= confidence, and one rank further in would fall short."""
    got = order_statistic_ranks(n, confidence)
    alpha = 1 - confidence
    if got is None:
        assert 2 * sps.binom.cdf(0, n, 0.5) > alpha
        return
    k, upper, coverage = got
    assert upper == n + 1 - k
    assert coverage == pytest.approx(1 - 2 * sps.binom.cdf(k - 1, n, 0.5), rel=1e-12)
    assert coverage >= confidence
    if k + 1 <= n + 1 - (k + 1):
        assert 1 - 2 * sps.binom.cdf(k, n, 0.5) < confidence


def test_too_few_samples_give_an_unbounded_interval():
    ci = median_ci([3.0, 1.0, 2.0, 5.0, 4.0])
    assert ci.estimate == 3.0
    assert (ci.low, ci.high) == (-math.inf, math.inf)
    assert not ci.within(0.5)
    assert verdict(ci, 10.0) == "undecided"


DISTRIBUTIONS = {
    # name: (sampler, true median)
    "exponential": (lambda rng, size: rng.exponential(2.0, size), 2.0 * math.log(2)),
    "lognormal": (lambda rng, size: rng.lognormal(0.3, 0.8, size), math.exp(0.3)),
    "uniform": (lambda rng, size: rng.uniform(1.0, 3.0, size), 2.0),
    "pareto": (lambda rng, size: 1.0 + rng.pareto(1.5, size), 2 ** (1 / 1.5)),
}


@pytest.mark.parametrize("n", [6, 11, 40])
@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_coverage_of_the_true_median(dist, n):
    """For a continuous distribution the coverage is exact: the empirical rate must agree with it."""
    sample, median = DISTRIBUTIONS[dist]
    rng = np.random.default_rng(1234 + n)
    trials = 2000
    draws = sample(rng, (trials, n))
    hits = 0
    for row in draws:
        ci = median_ci(row)
        hits += ci.low <= median <= ci.high
    coverage = order_statistic_ranks(n)[2]
    sigma = math.sqrt(coverage * (1 - coverage) / trials)
    assert abs(hits / trials - coverage) < 4.5 * sigma, (hits / trials, coverage)


def test_interval_narrows_as_samples_grow():
    rng = np.random.default_rng(7)
    widths = [median_ci(rng.lognormal(0, 0.3, n)).rel_halfwidth for n in (10, 100, 1000)]
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 0.05


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [math.inf]])
def test_median_ci_rejects_bad_samples(bad):
    with pytest.raises(ValueError, match="samples"):
        median_ci(bad)


@pytest.mark.parametrize("confidence", [0, 1, 1.5, -0.1])
def test_confidence_must_be_inside_0_1(confidence):
    with pytest.raises(ValueError, match="confidence"):
        median_ci([1.0] * 10, confidence)


# ---------------------------------------------------------------------------------------------
# paired ratios


def test_pairing_removes_the_machines_drift():
    """Both sides slowed alike by a drifting machine (x1 .. x4): the paired ratio stays precise."""
    rng = np.random.default_rng(42)
    n = 40
    drift = rng.uniform(1.0, 4.0, n)
    native = drift * rng.lognormal(0, 0.01, n)
    ours = 1.3 * drift * rng.lognormal(0, 0.01, n)
    paired = ratio_ci(ours, native)
    assert paired.low <= 1.3 <= paired.high
    assert paired.within(0.05)
    unpaired = median_ci(ours).estimate / median_ci(native).estimate
    assert not median_ci(ours).within(0.05)  # the times themselves are not precise
    assert abs(unpaired - 1.3) > abs(paired.estimate - 1.3)


@pytest.mark.parametrize("n", [7, 25])
def test_ratio_coverage_of_a_known_ratio(n):
    rng = np.random.default_rng(99 + n)
    trials, hits = 1500, 0
    for _ in range(trials):
        native = rng.exponential(1.0, n) + 1.0
        ours = native * rng.lognormal(math.log(0.9), 0.2, n)  # ratio's median is 0.9
        ci = ratio_ci(ours, native)
        hits += ci.low <= 0.9 <= ci.high
    coverage = order_statistic_ranks(n)[2]
    assert abs(hits / trials - coverage) < 4.5 * math.sqrt(coverage * (1 - coverage) / trials)


def test_ratio_ci_checks_its_pairs():
    with pytest.raises(ValueError, match="paired"):
        ratio_ci([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        ratio_ci([1.0, 2.0], [1.0, 0.0])


# ---------------------------------------------------------------------------------------------
# geometric mean, verdicts


def test_geomean_estimate_is_the_geomean_of_medians_and_reproducible():
    groups = [[1.0, 2.0, 3.0], [4.0, 4.0, 5.0, 6.0, 100.0], [0.5]]
    ci = geomean_ci(groups, resamples=500)
    assert ci.estimate == pytest.approx((2.0 * 5.0 * 0.5) ** (1 / 3))
    assert ci.low <= ci.estimate <= ci.high
    assert ci == geomean_ci(groups, resamples=500)  # fixed seed
    assert ci.method == "bootstrap" and ci.n == 1


def test_geomean_interval_covers_a_known_value():
    """Groups lognormal around known medians: the bootstrap interval covers their geomean most of the time."""
    rng = np.random.default_rng(5)
    medians = np.array([0.8, 1.0, 1.2, 1.5, 0.9])
    truth = math.exp(np.mean(np.log(medians)))
    trials, hits = 100, 0
    for t in range(trials):
        groups = [m * rng.lognormal(0, 0.3, 30) for m in medians]
        ci = geomean_ci(groups, resamples=400, seed=t)
        hits += ci.low <= truth <= ci.high
    assert 0.85 <= hits / trials <= 1.0


@pytest.mark.parametrize("groups", [[], [[]], [[1.0, -1.0]], [[1.0, math.inf]]])
def test_geomean_rejects_bad_groups(groups):
    with pytest.raises(ValueError, match="group"):
        geomean_ci(groups)


@pytest.mark.parametrize(("low", "high", "expected"), [(0.9, 0.99, "met"), (0.9, 1.0, "met"), (1.01, 1.2, "missed"),
                                                       (0.95, 1.05, "undecided")])
def test_verdict(low, high, expected):
    assert verdict(Interval(1.0, low, high, 10, 0.95, 0.97, "order statistics"), 1.0) == expected


def test_verdict_all_names_the_worst():
    ivs = [Interval(e, e - 0.02, e + 0.02, 10, 0.95, 0.97, "order statistics") for e in (0.9, 0.97, 0.95)]
    assert verdict_all(ivs, 1.0) == ("met", ivs[1])
    assert verdict_all(ivs, 0.96)[0] == "undecided"
    assert verdict_all(ivs, 0.8)[0] == "missed"
    with pytest.raises(ValueError, match="at least one"):
        verdict_all([], 1.0)


# ---------------------------------------------------------------------------------------------
# the adaptive loop


def _draws(rng, spread):
    return lambda: float(rng.lognormal(0, spread))


def test_loop_stops_once_precise():
    rng = np.random.default_rng(3)
    got = sample_until(_draws(rng, 0.01), median_ci, rel=0.05, min_samples=8, max_samples=100)
    assert len(got.samples) == 8 and not got.bound_hit
    assert got.intervals[None].within(0.05)


def test_loop_keeps_going_until_precise_then_stops():
    rng = np.random.default_rng(4)
    got = sample_until(_draws(rng, 0.15), median_ci, rel=0.05, min_samples=6, max_samples=2000)
    n = len(got.samples)
    assert 6 < n < 2000 and not got.bound_hit
    assert median_ci(got.samples).within(0.05)
    assert not median_ci(got.samples[:-1]).within(0.05)  # it stopped at the first precise point


def test_loop_reports_the_bound():
    rng = np.random.default_rng(5)
    got = sample_until(_draws(rng, 1.0), median_ci, rel=0.01, min_samples=6, max_samples=15)
    assert len(got.samples) == 15 and got.bound_hit
    assert not got.intervals[None].within(0.01)


def test_loop_waits_for_every_interval():
    """Two ratios: the noisy one decides when to stop."""
    rng = np.random.default_rng(6)

    def draw():
        native = float(rng.uniform(1, 3))
        return {"native": native, "quiet": 2 * native, "noisy": native * float(rng.lognormal(0, 0.1))}

    def intervals(samples):
        base = [s["native"] for s in samples]
        return {a: ratio_ci([s[a] for s in samples], base) for a in ("quiet", "noisy")}

    got = sample_until(draw, intervals, rel=0.05, min_samples=6, max_samples=500)
    assert len(got.samples) > 6 and not got.bound_hit
    assert set(got.intervals) == {"quiet", "noisy"}
    assert got.intervals["quiet"].within(0.05) and got.intervals["noisy"].within(0.05)


@pytest.mark.parametrize(("kwargs", "match"), [({"rel": 0}, "rel"), ({"min_samples": 0}, "min_samples"),
                                               ({"min_samples": 9, "max_samples": 8}, "min_samples")])
def test_loop_checks_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_until(lambda: 1.0, median_ci, **kwargs)


@pytest.mark.parametrize(("once", "target", "expected"), [(1e-3, 0.02, 20), (3e-3, 0.02, 7), (0.5, 0.02, 1),
                                                          (1e-9, 0.02, 100_000)])
def test_calls_per_sample(once, target, expected):
    assert calls_per_sample(once, target) == expected


def test_calibration_reaches_the_target_and_ignores_a_slow_batch():
    asked = []

    def batch(m):
        asked.append(m)
        return 10.0 if len(asked) == 6 else m * 2e-4  # the first batch at the final size is descheduled

    assert calibrate_calls(batch, 0.02) == 100
    assert asked[:6] == [1, 2, 4, 8, 16, 32]  # doubled until a batch lasts a quarter of the target
    assert calibrate_calls(lambda m: 0.0, 0.02, most=64) == 64


class _FakeMachine:
    """Native takes 1 ms per call, ``slow`` 1.2 ms; every round the whole machine drifts (x1 .. x3)."""

    def __init__(self, noise: float, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.noise = noise
        self.order: list[str] = []
        self.drift = 1.0

    def time_calls(self, name, k):
        if name == "native" and len(self.order) % 3 == 0:
            self.drift = float(self.rng.uniform(1, 3))
        self.order.append(name)
        base = {"native": 1e-3, "slow": 1.2e-3, "same": 1e-3}[name]
        return k * base * self.drift * float(self.rng.lognormal(0, self.noise))


def test_interleaved_rounds_measure_the_ratio_through_drift():
    machine = _FakeMachine(noise=0.01)
    got = interleaved_rounds(machine.time_calls, ["native", "slow", "same"], "native", lambda v: v,
                             sample_seconds=0.02, min_rounds=8, max_rounds=40)
    assert 7 <= got.calls <= 20  # from native's fastest batch: 1 to 3 ms per call, samples >= 20 ms
    assert not got.bound_hit and len(got.samples) == 8
    assert set(got.ratios) == {"slow", "same"}
    assert got.ratios["slow"].low <= 1.2 <= got.ratios["slow"].high and got.ratios["slow"].within(0.05)
    rounds = machine.order[-3 * 8:]
    firsts = [rounds[3 * i] for i in range(8)]
    assert firsts[:3] == ["native", "slow", "same"]  # each round starts one name further along


def test_interleaved_rounds_report_the_bound():
    machine = _FakeMachine(noise=0.5, seed=1)
    got = interleaved_rounds(machine.time_calls, ["native", "slow"], "native", lambda v: v, min_rounds=6,
                             max_rounds=9)
    assert len(got.samples) == 9 and got.bound_hit and not got.ratios["slow"].within(0.05)


@pytest.mark.parametrize(("names", "reference"), [(["a", "b"], "native"), (["native"], "native")])
def test_interleaved_rounds_check_names(names, reference):
    with pytest.raises(ValueError, match="reference|besides"):
        interleaved_rounds(lambda n, k: 1.0, names, reference, lambda v: v)


# ---------------------------------------------------------------------------------------------
# the machine


def test_machine_info_and_pin_plan():
    info = machine_info(torch="x")
    assert info["cores"] >= 1 and info["usable_cores"] >= 1 and info["versions"] == {"torch": "x"}
    cores, text = pin_plan(info["usable_cores"] + 1)
    assert cores is None and "not pinned" in text and str(info["usable_cores"] + 1) in text
    cores, text = pin_plan(1)
    assert len(cores) == 1 and text.startswith("pinned")
    with pytest.raises(ValueError, match="nranks"):
        pin_plan(0)
    with pytest.raises(ValueError, match="cores_per_rank"):
        pin_plan(1, cores_per_rank=0)


def test_pin_plan_gives_each_rank_cores_of_its_own_or_none():
    usable = machine_info()["usable_cores"]
    cores, text = pin_plan(1, cores_per_rank=usable)
    assert len(cores) == 1 and len(cores[0]) == usable and text.startswith("pinned")
    if usable >= 2:
        cores, _ = pin_plan(2)
        assert cores[0] != cores[1] and len(cores[0]) == len(cores[1]) == 1
    cores, text = pin_plan(usable, cores_per_rank=2)  # a block of two for every rank: one core short at least
    assert cores is None
    assert f"{usable} ranks need {2 * usable} cores (2 per rank" in text


def _pinned_child(core, queue):
    pin_process(core)
    started = threading.Event()
    stop = threading.Event()

    def idle():
        started.set()
        stop.wait()

    thread = threading.Thread(target=idle)
    thread.start()
    started.wait()
    queue.put(thread_affinity())
    stop.set()
    thread.join()


def test_threads_started_after_pinning_inherit_the_core():
    cores, _ = pin_plan(1)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_pinned_child, args=(cores[0], queue))
    proc.start()
    got = queue.get(timeout=60)
    proc.join(60)
    assert got["threads"] >= 2 and got["cores"] == cores[0]


def _children_of_this_process() -> list[int]:
    import os

    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                out.append(int(pid))
    return out


@pytest.mark.skipif(not hasattr(__import__("os"), "SCHED_IDLE"), reason="needs Linux's SCHED_IDLE")
def test_awake_cores_runs_one_idle_priority_loop_per_core_and_stops_them_also_on_error():
    import os
    import time

    before = set(_children_of_this_process())
    with pytest.raises(RuntimeError, match="inside"):
        with awake_cores([0]) as text:
            assert "kept awake" in text
            deadline = time.monotonic() + 10
            while True:  # the loop sets its own policy right after it starts
                loops = set(_children_of_this_process()) - before
                if loops and all(os.sched_getscheduler(pid) == os.SCHED_IDLE for pid in loops):
                    break
                assert time.monotonic() < deadline, "no idle-priority loop started"
                time.sleep(0.05)
            assert len(loops) == 1
            assert all(os.sched_getaffinity(pid) == {0} for pid in loops)
            raise RuntimeError("inside")
    assert not set(_children_of_this_process()) - before
