"""Statistics for measurements on a noisy machine: medians with intervals, paired ratios, adaptive loops.

A timing sample on a shared machine is a draw from a skewed, heavy-tailed distribution (a
descheduled rank adds milliseconds, nothing makes a call faster than the hardware), so collsim
reports **medians** with **distribution-free** 95% confidence intervals, never means with a
standard deviation.

Median
    :func:`median_ci`: the interval ``[x(k), x(n+1-k)]`` between two order statistics of the ``n``
    sorted samples, with ``k`` the largest rank for which ``2 * P(B <= k - 1) <= 1 - confidence``,
    ``B ~ Binomial(n, 1/2)``. It covers the population median with probability at least
    ``confidence`` for any continuous distribution of independent samples (no normality, no
    bootstrap); the exact coverage is reported. Below 6 samples no pair of order statistics reaches
    95% (``[min, max]`` covers ``1 - 2 / 2^n``), and the interval is ``(-inf, inf)``.
Paired ratio
    :func:`ratio_ci`: ours and the reference measured side by side, sample ``i`` of each in the
    same round (interleaved, so a slow phase of the machine hits both); the statistic is the
    median of the ``n`` per-round ratios ``ours_i / reference_i``, with the same order-statistic
    interval over those ratios. Pairing removes the machine's drift that unpaired medians keep.
Geometric mean of medians
    :func:`geomean_ci`: a summary over sizes (``exp(mean(log median_s))``); its interval is a
    percentile bootstrap (every group resampled with replacement, ``resamples`` times, from a
    fixed seed, so the same data always gives the same interval).
Adaptive loop
    :func:`sample_until`: draw samples until every interval of interest lies within ``±rel`` of
    its estimate (at least ``min_samples``) or ``max_samples`` are drawn; the result says whether
    the bound was hit. Stopping depends only on the samples, so processes that see the same samples
    (the slowest rank's times, reduced to every rank) stop together.
Targets
    :func:`verdict`: ``"met"`` when the whole interval is at or below the target, ``"missed"``
    when it is wholly above, ``"undecided"`` when it straddles the target.

The conditions of a measurement go with its numbers: :func:`machine_info` (cores, CPU model,
load average, Python) and :func:`pin_plan` / :func:`pin_process` (cores of its own for each rank
where there are enough; threads started afterwards inherit the affinity).

>>> ci = median_ci([5.0, 1.0, 4.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 10.0])
>>> ci.estimate, ci.low, ci.high, round(ci.coverage, 4)
(5.5, 2.0, 9.0, 0.9785)
>>> r = ratio_ci([2.0, 4.0, 6.0, 8.0, 10.0, 12.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
>>> r.format(), r.within(0.05), verdict(r, 2.0)
('2.000 [2.000, 2.000]', True, 'met')
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = [
    "Interval",
    "Sampled",
    "median_ci",
    "ratio_ci",
    "geomean_ci",
    "order_statistic_ranks",
    "verdict",
    "verdict_all",
    "sample_until",
    "calls_per_sample",
    "calibrate_calls",
    "Rounds",
    "interleaved_rounds",
    "machine_info",
    "best_by_size",
    "load_average",
    "pin_plan",
    "pin_process",
    "thread_affinity",
    "awake_cores",
]

#: Bootstrap resamples for :func:`geomean_ci` (percentile interval; enough for two decimals).
RESAMPLES = 4000


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval.

    Attributes
    ----------
    estimate, low, high : float
        The statistic and the interval's ends (``low`` may be ``-inf`` and ``high`` ``inf`` when
        there are too few samples for the confidence asked).
    n : int
        Samples behind it (for :func:`geomean_ci`, the smallest group).
    confidence : float
        The confidence asked for (0.95).
    coverage : float
        The exact coverage of an order-statistic interval (at least ``confidence``); ``nan`` for a
        bootstrap interval.
    method : str
        ``"order statistics"`` or ``"bootstrap"``.
    """

    estimate: float
    low: float
    high: float
    n: int
    confidence: float
    coverage: float
    method: str

    @property
    def rel_halfwidth(self) -> float:
        """The larger distance from the estimate to an end, relative to the estimate (``inf`` if unbounded)."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.estimate == 0:
            return math.inf
        return max(self.estimate - self.low, self.high - self.estimate) / abs(self.estimate)

    def within(self, rel: float) -> bool:
        """Whether both ends lie within ``±rel`` of the estimate (``rel=0.05``: ±5%)."""
        return self.rel_halfwidth <= rel

    def format(self, digits: int = 3) -> str:
        """``"1.020 [0.980, 1.050]"``."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def as_dict(self, prefix: str) -> dict[str, float]:
        """``{prefix: estimate, prefix_lo: low, prefix_hi: high}`` (for CSV and JSON rows)."""
        return {prefix: self.estimate, f"{prefix}_lo": self.low, f"{prefix}_hi": self.high}


def _check_confidence(confidence: float) -> None:
    if not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")


def _values(samples: Iterable[float], name: str) -> list[float]:
    values = [float(x) for x in samples]
    if not values:
        raise ValueError(f"{name} must hold at least one sample")
    if not all(math.isfinite(x) for x in values):
        raise ValueError(f"{name} must be finite numbers, got {[x for x in values if not math.isfinite(x)][:3]}")
    return values


def order_statistic_ranks(n: int, confidence: float = 0.95) -> tuple[int, int, float] | None:
    """1-based ranks ``(k, n + 1 - k)`` of the order statistics bounding the median, and their coverage.

    ``k`` is the largest rank with ``2 * P(B <= k - 1) <= 1 - confidence``, ``B ~ Binomial(n, 1/2)``;
    the coverage is ``1 - 2 * P(B <= k - 1)``, computed exactly. None when even ``[min, max]``
    falls short (``n < 6`` at 95%).

    >>> order_statistic_ranks(10), order_statistic_ranks(5)
    ((2, 9, 0.978515625), None)
    >>> order_statistic_ranks(100)[:2]
    (40, 61)
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    _check_confidence(confidence)
    alpha = Fraction(1 - confidence).limit_denominator(1 << 20)
    total = 1 << n
    limit = alpha.numerator * total  # 2 * tail / total <= alpha, in integers
    tail, term = 0, 1  # sum of C(n, i) for i < k; C(n, k)
    k = 0
    while k + 1 <= (n + 1) // 2:
        nxt = tail + term
        if 2 * nxt * alpha.denominator > limit:
            break
        tail, term, k = nxt, term * (n - k) // (k + 1), k + 1
    if k == 0:
        return None
    return k, n + 1 - k, float(1 - Fraction(2 * tail, total))


def median_ci(samples: Iterable[float], confidence: float = 0.95) -> Interval:
    """The median of ``samples`` with its distribution-free confidence interval (order statistics).

    Parameters
    ----------
    samples : iterable of float
        Independent draws; finite.
    confidence : float
        Probability, in (0, 1), that the interval covers the population median (at least).

    Returns
    -------
    Interval
        ``method="order statistics"``; ``(-inf, inf)`` when there are too few samples.

    Raises
    ------
    ValueError
        No samples, a non-finite sample, or ``confidence`` outside (0, 1).
    """
    values = sorted(_values(samples, "samples"))
    n = len(values)
    ranks = order_statistic_ranks(n, confidence)
    est = statistics.median(values)
    if ranks is None:
        return Interval(est, -math.inf, math.inf, n, confidence, 1.0, "order statistics")
    lo, hi, coverage = ranks
    return Interval(est, values[lo - 1], values[hi - 1], n, confidence, coverage, "order statistics")


def ratio_ci(numerators: Sequence[float], denominators: Sequence[float], confidence: float = 0.95) -> Interval:
    """Median of the paired ratios ``numerators[i] / denominators[i]`` with its interval (:func:`median_ci`).

    Sample ``i`` of both must come from the same round of an interleaved measurement.

    Raises
    ------
    ValueError
        Lengths differ, a denominator is not positive, or as :func:`median_ci`.
    """
    num, den = _values(numerators, "numerators"), _values(denominators, "denominators")
    if len(num) != len(den):
        raise ValueError(f"numerators and denominators must be paired: {len(num)} and {len(den)} samples")
    if min(den) <= 0:
        raise ValueError(f"denominators must be positive, got {min(den)}")
    return median_ci([a / b for a, b in zip(num, den, strict=True)], confidence)


def geomean_ci(groups: Sequence[Sequence[float]], confidence: float = 0.95, *, resamples: int = RESAMPLES,
               seed: int = 0) -> Interval:
    """Geometric mean of the groups' medians, with a percentile-bootstrap interval from a fixed seed.

    Each resample draws every group's samples with replacement, takes each group's median and the
    geometric mean of those; the interval holds the central ``confidence`` of the ``resamples``
    results. Typical use: one group per message size, the paired ratios of that size.

    Raises
    ------
    ValueError
        No groups, an empty group, a sample that is not positive and finite, ``resamples < 100``,
        or ``confidence`` outside (0, 1).
    """
    import numpy as np

    _check_confidence(confidence)
    if not groups:
        raise ValueError("groups must hold at least one group of samples")
    if not isinstance(resamples, int) or resamples < 100:
        raise ValueError(f"resamples must be an integer >= 100, got {resamples!r}")
    logs = []
    for i, group in enumerate(groups):
        values = _values(group, f"groups[{i}]")
        if min(values) <= 0:
            raise ValueError(f"groups[{i}] must be positive (a geometric mean of ratios), got {min(values)}")
        logs.append(np.log(np.asarray(values)))
    estimate = math.exp(float(np.mean([np.median(x) for x in logs])))
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for x in logs:
        picks = rng.integers(0, len(x), size=(resamples, len(x)))
        total += np.median(x[picks], axis=1)
    means = np.exp(total / len(logs))
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(estimate, float(low), float(high), min(len(x) for x in logs), confidence, math.nan, "bootstrap")


def verdict(interval: Interval, target: float) -> str:
    """``"met"`` (the whole interval <= ``target``), ``"missed"`` (wholly above) or ``"undecided"``."""
    if interval.high <= target:
        return "met"
    if interval.low > target:
        return "missed"
    return "undecided"


def verdict_all(intervals: Iterable[Interval], target: float) -> tuple[str, Interval]:
    """One verdict for "every one of these <= ``target``", and the interval with the highest estimate.

    ``"missed"`` if any is missed, ``"met"`` if all are met, else ``"undecided"``.

    >>> ivs = [Interval(0.9, 0.8, 0.95, 10, 0.95, 0.98, "order statistics"),
    ...        Interval(0.97, 0.93, 1.02, 10, 0.95, 0.98, "order statistics")]
    >>> verdict_all(ivs, 1.0)[0], verdict_all(ivs[:1], 1.0)[0], verdict_all(ivs, 0.9)[0]
    ('undecided', 'met', 'missed')
    """
    ivs = list(intervals)
    if not ivs:
        raise ValueError("intervals must hold at least one Interval")
    found = {verdict(iv, target) for iv in ivs}
    overall = "missed" if "missed" in found else "met" if found == {"met"} else "undecided"
    return overall, max(ivs, key=lambda iv: iv.estimate)


@dataclass(frozen=True)
class Sampled:
    """What :func:`sample_until` drew.

    Attributes
    ----------
    samples : list
        Every sample, in order.
    intervals : dict
        The intervals after the last sample (keyed as the ``intervals`` callable returned them;
        a single Interval is keyed ``None``).
    bound_hit : bool
        ``max_samples`` were drawn and some interval was still wider than ``±rel``.
    """

    samples: list
    intervals: dict
    bound_hit: bool


def _as_dict(got: Interval | Mapping[Any, Interval]) -> dict:
    if isinstance(got, Interval):
        return {None: got}
    return dict(got)


def sample_until(draw: Callable[[], Any], intervals: Callable[[list], Interval | Mapping[Any, Interval]], *,
                 rel: float = 0.05, min_samples: int = 6, max_samples: int = 50) -> Sampled:
    """Call ``draw()`` until every interval is within ``±rel`` of its estimate, or ``max_samples`` times.

    Parameters
    ----------
    draw : callable
        Takes no argument, returns one sample (any object: a time, a dict of times of one round).
    intervals : callable
        Maps the samples so far to an :class:`Interval` or a mapping of them (e.g. one ratio per
        algorithm); all must be within ``±rel`` to stop.
    rel : float
        Relative half-width to reach (0.05: the interval within ±5% of the estimate).
    min_samples, max_samples : int
        Draw at least / at most this many (``1 <= min_samples <= max_samples``).

    Returns
    -------
    Sampled
        The samples, the last intervals, and whether the bound was hit.

    >>> import itertools
    >>> values = itertools.cycle([1.0, 1.01, 0.99])
    >>> got = sample_until(lambda: next(values), median_ci, rel=0.05, min_samples=6, max_samples=20)
    >>> len(got.samples), got.bound_hit
    (6, False)
    >>> wild = itertools.cycle([1.0, 3.0])
    >>> got = sample_until(lambda: next(wild), median_ci, rel=0.05, min_samples=6, max_samples=10)
    >>> len(got.samples), got.bound_hit
    (10, True)
    """
    if not isinstance(rel, (int, float)) or not rel > 0:
        raise ValueError(f"rel must be a positive fraction (0.05 for ±5%), got {rel!r}")
    if not (isinstance(min_samples, int) and isinstance(max_samples, int) and 1 <= min_samples <= max_samples):
        raise ValueError(f"need integers 1 <= min_samples <= max_samples, got {min_samples!r} and {max_samples!r}")
    samples: list = []
    while True:
        samples.append(draw())
        if len(samples) < min_samples:
            continue
        got = _as_dict(intervals(samples))
        precise = all(iv.within(rel) for iv in got.values())
        if precise or len(samples) >= max_samples:
            return Sampled(samples, got, not precise)


def calls_per_sample(seconds_per_call: float, target_seconds: float, most: int = 100_000) -> int:
    """Back-to-back calls so that one sample lasts at least ``target_seconds`` (as nccl-tests' ``-n``).

    >>> calls_per_sample(0.001, 0.02), calls_per_sample(0.5, 0.02), calls_per_sample(0.0, 0.02, most=64)
    (20, 1, 64)
    """
    if not target_seconds > 0 or most < 1:
        raise ValueError(f"need target_seconds > 0 and most >= 1, got {target_seconds!r} and {most!r}")
    if seconds_per_call <= 0:
        return most
    return int(min(most, max(1, math.ceil(target_seconds / seconds_per_call))))


def calibrate_calls(time_batch: Callable[[int], float], target_seconds: float, most: int = 100_000,
                    tries: int = 3) -> int:
    """Calls per sample for samples of at least ``target_seconds``, from timing batches of calls.

    ``time_batch(m)`` runs ``m`` back-to-back calls and returns their seconds (in a multi-process
    benchmark: the slowest rank's, the same on every rank, so every rank takes the same path). The
    batch size doubles until a batch lasts a quarter of the target; then ``tries`` batches of that
    size are timed and the fastest time per call sets the count (a batch slowed down by the
    scheduler does not shrink the samples).

    >>> calibrate_calls(lambda m: m * 1e-3, 0.02)
    20
    >>> slow_once = iter([1.0])
    >>> calibrate_calls(lambda m: next(slow_once, m * 1e-4), 0.02)   # the first batch was descheduled
    200
    """
    if not target_seconds > 0 or most < 1 or tries < 1:
        raise ValueError(f"need target_seconds > 0, most >= 1, tries >= 1; got {target_seconds!r}, {most!r}, {tries!r}")
    m = 1
    while True:
        seconds = time_batch(m)
        if seconds >= target_seconds / 4 or m >= most:
            break
        m = min(most, 2 * m)
    best = min([seconds / m] + [time_batch(m) / m for _ in range(tries)])
    return calls_per_sample(best, target_seconds, most)


@dataclass(frozen=True)
class Rounds:
    """What :func:`interleaved_rounds` measured.

    Attributes
    ----------
    calls : int
        Back-to-back calls per sample.
    samples : list of dict
        Per round, seconds per call of every name (the slowest rank's).
    ratios : dict
        Per name other than the reference: the median per-round ratio to the reference, with its interval.
    bound_hit : bool
        The rounds stopped at the bound with some interval still wider than asked.
    """

    calls: int
    samples: list[dict[str, float]]
    ratios: dict[str, Interval]
    bound_hit: bool


def interleaved_rounds(time_calls: Callable[[str, int], float], names: Sequence[str], reference: str,
                       slowest: Callable[[list[float]], list[float]], *, sample_seconds: float = 0.02,
                       rel: float = 0.05, min_rounds: int = 10, max_rounds: int = 60,
                       most_calls: int = 100_000) -> Rounds:
    """Time ``names`` side by side in rounds until every ratio to ``reference`` is within ``±rel``.

    The calls per sample come from :func:`calibrate_calls` on ``reference``. A round times every
    name once, starting one name further along each round (so none is always first), and reduces
    the round's times with ``slowest``; :func:`sample_until` decides when to stop on the per-round
    ratios (:func:`ratio_ci`).

    Parameters
    ----------
    time_calls : callable
        ``time_calls(name, k)``: synchronize (a barrier), run ``name`` ``k`` times back to back,
        return this process's seconds for them.
    names : sequence of str
        Everything to time, ``reference`` among them.
    reference : str
        The denominator of the ratios (native).
    slowest : callable
        Maps this process's list of times to the list every process agrees on (an all-reduce with
        MAX across ranks; the identity in one process). Stopping depends only on its results, so
        every rank stops in the same round.
    sample_seconds, rel, min_rounds, max_rounds, most_calls
        A sample's least duration; the precision to reach; the rounds at least and at most (the
        bound); the most calls per sample.

    Returns
    -------
    Rounds
    """
    names = list(names)
    if reference not in names:
        raise ValueError(f"reference {reference!r} must be one of names {names}")
    others = [n for n in names if n != reference]
    if not others:
        raise ValueError("names must hold something besides the reference")
    k = calibrate_calls(lambda m: slowest([time_calls(reference, m)])[0], sample_seconds, most_calls)
    samples: list[dict[str, float]] = []

    def draw() -> dict[str, float]:
        shift = len(samples) % len(names)
        mine = {name: time_calls(name, k) / k for name in names[shift:] + names[:shift]}
        got = dict(zip(names, slowest([mine[n] for n in names]), strict=True))
        samples.append(got)
        return got

    def intervals(drawn: list[dict[str, float]]) -> dict[str, Interval]:
        base = [s[reference] for s in drawn]
        return {n: ratio_ci([s[n] for s in drawn], base) for n in others}

    result = sample_until(draw, intervals, rel=rel, min_samples=min_rounds, max_samples=max_rounds)
    return Rounds(k, samples, result.intervals, result.bound_hit)


# ---------------------------------------------------------------------------------------------
# the conditions of a measurement


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _usable_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def best_by_size(records: Iterable[Mapping[str, Any]], ratio: str,
                 skip: Sequence[str] = ("native", "auto")) -> dict[int, list[tuple[int, str]]]:
    """Per world size, the algorithm with the lowest median ratio at each size: ``{nranks: [(size, name), ...]}``.

    ``records`` hold ``nranks``, ``size``, ``algorithm`` and the ratio under the key ``ratio``; the
    algorithms in ``skip`` do not compete (native is the reference, ``auto`` picks among the others).
    For :func:`collectives.tuning.table_from_best`.

    >>> best_by_size([{"nranks": 2, "size": 8, "algorithm": "ring", "r": 1.2},
    ...               {"nranks": 2, "size": 8, "algorithm": "tree", "r": 0.9}], "r")
    {2: [(8, 'tree')]}
    """
    lowest: dict[tuple[int, int], tuple[float, str]] = {}
    for rec in records:
        if rec["algorithm"] in skip:
            continue
        key = (int(rec["nranks"]), int(rec["size"]))
        if key not in lowest or rec[ratio] < lowest[key][0]:
            lowest[key] = (float(rec[ratio]), rec["algorithm"])
    out: dict[int, list[tuple[int, str]]] = {}
    for (nranks, size), (_, name) in sorted(lowest.items()):
        out.setdefault(nranks, []).append((size, name))
    return out


def machine_info(**versions: str) -> dict[str, Any]:
    """The machine a measurement ran on: cores, CPU model, load average now, OS, Python, and ``versions``.

    >>> info = machine_info(torch="2.13.0")
    >>> sorted(info)
    ['cores', 'cpu_model', 'load_average', 'os', 'python', 'usable_cores', 'versions']
    """
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(_usable_cores()),
        "cpu_model": _cpu_model(),
        "load_average": load_average(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": dict(versions),
    }


def pin_plan(nranks: int, pin: bool = True, cores_per_rank: int = 1) -> tuple[list[list[int]] | None, str]:
    """Cores of its own for every rank, ``cores_per_rank`` each, if this process may use that many; and a
    sentence saying what was done. Rank ``r`` gets the ``r``-th block of ``cores_per_rank`` usable cores.

    ``cores_per_rank`` is how many of a rank's threads run at once. A Gloo rank has two: its own and
    Gloo's I/O loop, which hands every message over. Squeezed onto one core, each hand-off waits for
    the other thread to be switched out: on a 2-core VM at p = 2, native Gloo's 4 KiB allreduce took
    2.2 ms with a core per rank against 1.0 ms unpinned (``benchmarks/runtime_vs_native.py``,
    ``--cores-per-rank 1`` against the default). So where the cores are too few the ranks are not
    pinned at all, and the sentence says why.

    >>> cores, text = pin_plan(1)
    >>> len(cores), len(cores[0]), text.startswith("pinned")
    (1, 1, True)
    >>> pin_plan(1, pin=False)
    (None, 'not pinned: turned off (--no-pin)')
    """
    if not isinstance(nranks, int) or nranks < 1:
        raise ValueError(f"nranks must be a positive integer, got {nranks!r}")
    if not isinstance(cores_per_rank, int) or cores_per_rank < 1:
        raise ValueError(f"cores_per_rank must be a positive integer, got {cores_per_rank!r}")
    cores = _usable_cores()
    if not pin:
        return None, "not pinned: turned off (--no-pin)"
    if not hasattr(os, "sched_setaffinity"):
        return None, "not pinned: this platform has no sched_setaffinity"
    need = nranks * cores_per_rank
    if len(cores) < need:
        each = f" ({cores_per_rank} per rank: the threads of a rank that run at once)" if cores_per_rank > 1 else ""
        return None, f"not pinned: {nranks} ranks need {need} cores{each}, only {len(cores)} usable ({_ranges(cores)})"
    blocks = [cores[r * cores_per_rank:(r + 1) * cores_per_rank] for r in range(nranks)]
    if cores_per_rank == 1:
        return blocks, f"pinned: rank r on core {_ranges([b[0] for b in blocks])}[r] with all its threads"
    shown = "[" + ",".join(_ranges(b) for b in blocks) + "]"
    return blocks, f"pinned: rank r on cores {shown}[r] with all its threads"


def _ranges(cores: Sequence[int]) -> str:
    return "[" + ",".join(str(c) for c in cores) + "]"


@contextlib.contextmanager
def awake_cores(cores: Sequence[int] | None = None) -> Iterator[str]:
    """Keep ``cores`` (None: every core this process may use) from halting while the block runs: one
    idle-priority busy loop on each.

    A rank that waits for a message blocks, and its core, with nothing else to run, halts. On bare
    metal a halted core wakes in microseconds; a virtual machine's halted vCPU waits for the
    hypervisor to run it again, which can take half a millisecond, several times per collective.
    A ``SCHED_IDLE`` loop runs only when nothing else on its core wants to (the kernel preempts it
    at once for any other thread), so the ranks keep their cores, and the cores never halt. Yields
    a sentence for the report; Linux only (elsewhere it does nothing and says so). Every loop is
    killed on exit, also on error.
    """
    if not hasattr(os, "SCHED_IDLE") or not hasattr(os, "sched_setaffinity"):
        yield "cores not kept awake: this platform has no SCHED_IDLE"
        return
    cores = _usable_cores() if cores is None else list(cores)
    code = ("import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])}); "
            "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True: pass")
    procs = []
    try:
        for c in cores:
            procs.append(subprocess.Popen([sys.executable, "-c", code, str(c)], stdin=subprocess.DEVNULL))
        yield f"cores {_ranges(cores)} kept awake by an idle-priority (SCHED_IDLE) busy loop each"
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def pin_process(cores: int | Sequence[int] | None) -> None:
    """Restrict this process to ``cores`` (a core or several; None: leave it); call before starting threads,
    they inherit it."""
    if cores is not None:
        os.sched_setaffinity(0, {cores} if isinstance(cores, int) else set(cores))


def thread_affinity() -> dict[str, int | list[int]]:
    """This process's threads and the cores they may run on (Linux; ``{}`` elsewhere).

    Returns ``{"threads": n, "cores": sorted union of the threads' allowed cores}``: after
    :func:`pin_process` and the start of a transport's threads, one core means all of them stayed pinned.
    """
    base = "/proc/self/task"
    try:
        tids = os.listdir(base)
    except OSError:
        return {}
    cores: set[int] = set()
    for tid in tids:
        try:
            cores |= os.sched_getaffinity(int(tid))
        except OSError:  # the thread ended meanwhile
            continue
    return {"threads": len(tids), "cores": sorted(cores)}
