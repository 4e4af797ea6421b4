"""Compare algorithms, not checkpoints: a group is one algorithm's runs (one per training seed).

Input per group: ``outcomes`` of shape (runs, tasks, episodes), 0/1, where episode j of task t is
the same initial condition (IC) in every run of every group. The data are crossed, not nested:
a run's quality (training seed) and an IC's difficulty both move many outcomes at once. An
interval for the algorithm - what a new training seed would give on new ICs - must carry both.

The mean and the difference of two groups' means (the default, ``mean_method="crossed"``) take the
variance of a crossed two-way design: seeds (the spread of the runs' rates averaged over tasks),
ICs (per task, the spread of the IC-wise success over runs) and their interaction, and use t on
runs - 1 degrees of freedom: with 3 seeds the seed variance rests on 2, whatever the episode count.

* Mean of one group: the Korn & Graubard (1998) interval, as ``stats.family`` uses for MDPs -
  Clopper-Pearson on the effective number of episodes (N over the design effect, floored at 1),
  shrunk by (t_{N-1} / t_{runs-1})^2 - with the seed and IC parts added as they come (the
  interaction counted in both, as the pigeonhole bootstrap does). Its shape follows the skew near
  0% and 100% and it never has zero width; with the unbiased variance instead it covered 0.92 at
  seeds with logit sd 1 near 0 or 1.
* Difference of two groups' means: mean X - mean Y +- t sqrt(variance), the variance unbiased
  (ANOVA components truncated at 0), the IC part taken on the IC-wise difference when the ICs are
  shared (so their difficulty cancels). Where every outcome of each group is alike (all at 100%,
  say) nothing is left to estimate a variance from: MOVER over the two groups' own intervals.
* One run: nothing measures the seed spread; its interval covers ICs only (no shrinking for
  degrees of freedom), and in a difference it adds no seed variance.

Coverage at 95%, measured (``tests/stats/test_groups.py``, 3 tasks, logit-normal seed effect shared
by a seed's tasks, IC difficulty sd 0.5-2, success near 5%, 55%, 95% and 98%): 0.95-1.00 at 3, 5
and 10 seeds with seed sd <= 1 (the mean at 10 seeds lowest), 0.90 at worst with seed sd 2 near
the edges; conservative with few seeds, the honest width: at 3 seeds 2-2.5 times the bootstrap's.
The percentile hierarchical bootstrap it replaced covered 0.79-0.98 at 3 seeds (0.79 at seed sd
1.0): it cannot reach past the best and the worst seed. It stays as ``mean_method="bootstrap"``
and for the other metrics.

The hierarchical bootstrap (IQM, median, optimality gap, P(X > Y); the mean on request) resamples
both factors independently, each with replacement: whole runs (a seed is good or bad on all tasks
at once, so runs are not split by task as in rliable's task-stratified bootstrap), and IC indices
within each task, the same indices for every run - and, when two groups are compared, for both
groups, so the pairing on shared ICs carries over. This is Owen's (2007) pigeonhole bootstrap for
crossed data. With 3 seeds read its intervals as ~85% ones (measured for the mean).

Point estimates are rliable's metrics on the (runs x tasks) matrix of observed success rates.
All resamples are drawn as arrays from the given ``rng``: the same seed gives the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from evalsuite.stats import aggregates
from evalsuite.stats.intervals import Interval, wilson_bounds

FloatArray = NDArray[np.float64]

BOOTSTRAP_METHOD = "hierarchical bootstrap: runs, then initial conditions (percentile)"
MEAN_METHOD = "Korn-Graubard, t on runs - 1 df, crossed seeds x initial conditions variance"
DIFFERENCE_METHOD = "t on runs - 1 df, crossed seeds x initial conditions variance"
ONE_RUN_METHOD = "one run: initial conditions only"
METHOD = ("means: Korn-Graubard, differences of means: t, both on runs - 1 df with the crossed seeds x initial "
          f"conditions variance; other metrics: {BOOTSTRAP_METHOD}")
MEAN_METHODS = ("crossed", "bootstrap")
_CHUNK_ELEMENTS = 4_000_000  # bound on the largest per-chunk array


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """Aggregate metrics of one algorithm over its runs, each with its hierarchical interval."""

    runs: int
    tasks: int
    episodes: int
    reps: int
    metrics: dict[str, Interval]

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "tasks": self.tasks, "episodes": self.episodes, "reps": self.reps,
                "metrics": {name: iv.to_dict() for name, iv in self.metrics.items()}}


@dataclass(frozen=True, slots=True)
class GroupComparison:
    """Group X against group Y: ``statistic`` is "probability_of_improvement" or "<metric> difference"."""

    statistic: str
    runs_x: int
    runs_y: int
    tasks: int
    episodes: int
    reps: int
    paired: bool
    interval: Interval

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_group(outcomes: ArrayLike, name: str = "outcomes") -> FloatArray:
    arr = np.asarray(outcomes)
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(f"{name} must be (runs, tasks, episodes) with every size >= 1, got shape {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold 0/1 episode outcomes")
    return arr.astype(float)


def _check_pair(x: ArrayLike, y: ArrayLike, paired: bool) -> tuple[FloatArray, FloatArray]:
    x, y = _check_group(x, "x"), _check_group(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must cover the same tasks, got {x.shape[1]} and {y.shape[1]}")
    if paired and x.shape[2] != y.shape[2]:
        raise ValueError("paired groups share their initial conditions, so need the same number of episodes; "
                         f"got {x.shape[2]} and {y.shape[2]} (pass paired=False if they were not shared)")
    return x, y


def _ic_weights(rng: np.random.Generator, reps: int, tasks: int, episodes: int) -> FloatArray:
    """(reps, tasks, episodes): how often each IC is drawn when a task's episodes are resampled
    with replacement, divided by the episode count (each task's weights sum to 1)."""
    picks = rng.integers(0, episodes, size=(reps, tasks, episodes))
    offsets = (np.arange(reps * tasks) * episodes).reshape(reps, tasks, 1)
    counts = np.bincount((picks + offsets).ravel(), minlength=reps * tasks * episodes)
    return counts.reshape(reps, tasks, episodes) / episodes


def _resampled_rates(outcomes: FloatArray, weights: FloatArray, rng: np.random.Generator) -> FloatArray:
    """(reps, runs, tasks) success rates: every run's rates under the resampled ICs, then runs
    drawn with replacement (whole runs, all tasks together)."""
    runs = outcomes.shape[0]
    # (tasks, runs, episodes) @ (tasks, episodes, reps) -> (tasks, runs, reps)
    per_run = np.matmul(outcomes.transpose(1, 0, 2), weights.transpose(1, 2, 0)).transpose(2, 1, 0)
    picked = rng.integers(0, runs, size=(weights.shape[0], runs))
    # rounded: rates are counts / episodes, and exact ties (e.g. 1.0 against 1.0) must stay ties
    return np.round(np.take_along_axis(per_run, picked[:, :, None], axis=1), 12)


def _chunks(reps: int, per_rep: int) -> Iterator[int]:
    size = max(1, min(reps, _CHUNK_ELEMENTS // max(1, per_rep)))
    for start in range(0, reps, size):
        yield min(size, reps - start)


def _percentile(values: FloatArray, level: float) -> tuple[float, float]:
    q = (1 - level) / 2
    low, high = np.quantile(values, [q, 1 - q])
    return float(low), float(high)


def _check_options(reps: int, level: float) -> None:
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _variance_parts(y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Parts of the variance of the grand mean of ``y`` (..., runs, tasks, episodes), crossed
    design: seeds (variance of the runs' task-averaged rates / runs), initial conditions (per task,
    variance of the IC-wise means over runs / episodes) and the run x IC interaction (residual
    mean square / (runs episodes)), the last two averaged over tasks as the mean does (/ tasks^2).
    The first two each hold the interaction once more; a part with no degrees of freedom is 0."""
    runs, tasks, episodes = y.shape[-3:]
    zero = np.zeros(y.shape[:-3])
    columns = y.mean(axis=-3)  # (..., tasks, episodes)
    seeds = y.mean(axis=(-2, -1)).var(axis=-1, ddof=1) / runs if runs > 1 else zero
    ics = columns.var(axis=-1, ddof=1).sum(axis=-1) / (episodes * tasks**2) if episodes > 1 else zero
    if runs > 1 and episodes > 1:
        residual = y - y.mean(axis=-1, keepdims=True) - (columns - columns.mean(axis=-1, keepdims=True))[..., None, :, :]
        interaction = (residual**2).sum(axis=(-3, -1)).sum(axis=-1) / (
            (runs - 1) * (episodes - 1) * runs * episodes * tasks**2)
    else:
        interaction = zero
    return seeds, ics, interaction


def _korn_graubard(estimate: FloatArray, variance: FloatArray, n: int, df: float, level: float
                   ) -> tuple[FloatArray, FloatArray]:
    """Clopper-Pearson on n / design effect episodes (floored at 1), shrunk by (t_{n-1} / t_df)^2."""
    binomial = estimate * (1 - estimate) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = np.where(binomial > 0, np.maximum(1.0, variance / binomial), 1.0)
    q = 0.5 + level / 2
    n_df = n / effect * (sps.t.ppf(q, max(n - 1, 1)) / sps.t.ppf(q, df)) ** 2
    x = estimate * n_df
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(estimate > 0, sps.beta.ppf((1 - level) / 2, x, n_df - x + 1), 0.0)
        high = np.where(estimate < 1, sps.beta.ppf(q, x + 1, n_df - x), 1.0)
    return low, high


def group_mean_bounds(outcomes: ArrayLike, level: float = 0.95) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(estimate, low, high) of the group mean for ``outcomes`` (..., runs, tasks, episodes): the
    Korn-Graubard interval with the crossed variance (module doc); vectorized for simulations."""
    y = np.asarray(outcomes, dtype=float)
    runs = y.shape[-3]
    n = int(np.prod(y.shape[-3:]))
    estimate = y.mean(axis=(-3, -2, -1))
    seeds, ics, _ = _variance_parts(y)
    low, high = _korn_graubard(estimate, seeds + ics, n, runs - 1 if runs > 1 else n - 1, level)
    return estimate, low, high


def group_difference_bounds(x: ArrayLike, y: ArrayLike, level: float = 0.95, paired: bool = True
                            ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(difference, low, high) of mean X - mean Y for (..., runs, tasks, episodes) outcomes: t on
    the fewer runs - 1 df with the unbiased crossed variance (module doc); vectorized."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    tasks = x.shape[-2]
    seeds_x, ics_x, inter_x = _variance_parts(x)
    seeds_y, ics_y, inter_y = _variance_parts(y)
    if paired:  # the ICs' difficulty cancels in the IC-wise difference
        episodes = x.shape[-1]
        diff = x.mean(axis=-3) - y.mean(axis=-3)
        ic_part = (np.maximum(diff.var(axis=-1, ddof=1).sum(axis=-1) / (episodes * tasks**2) - inter_x - inter_y, 0)
                   if episodes > 1 else np.zeros(diff.shape[:-2]))
    else:
        ic_part = np.maximum(ics_x - inter_x, 0) + np.maximum(ics_y - inter_y, 0)
    variance = np.maximum(seeds_x - inter_x, 0) + np.maximum(seeds_y - inter_y, 0) + ic_part + inter_x + inter_y
    runs = [r - 1 for r in (x.shape[-3], y.shape[-3]) if r > 1]
    df = min(runs) if runs else max(1, tasks * (min(x.shape[-1], y.shape[-1]) - 1))
    estimate = x.mean(axis=(-3, -2, -1)) - y.mean(axis=(-3, -2, -1))
    half = sps.t.ppf(0.5 + level / 2, df) * np.sqrt(variance)
    # Every outcome of each group alike (e.g. all at 100%): no variance to estimate, and a point
    # would claim the difference exactly; MOVER over the groups' own intervals, which never collapse.
    ex, lx, hx = group_mean_bounds(x, level)
    ey, ly, hy = group_mean_bounds(y, level)
    constant = _constant(x) & _constant(y)
    low = np.where(constant, estimate - np.hypot(ex - lx, hy - ey), estimate - half)
    high = np.where(constant, estimate + np.hypot(hx - ex, ey - ly), estimate + half)
    return estimate, np.maximum(low, -1.0), np.minimum(high, 1.0)


def _constant(y: FloatArray) -> NDArray[np.bool_]:
    return np.asarray(y.min(axis=(-3, -2, -1)) == y.max(axis=(-3, -2, -1)))


def group_aggregates(outcomes: ArrayLike, *, metrics: Sequence[str] = ("iqm", "mean", "median", "optimality_gap"),
                     rng: np.random.Generator, reps: int = 2000, level: float = 0.95,
                     mean_method: str = "crossed") -> GroupSummary:
    """rliable's aggregate metrics of one group: the mean with the crossed-variance interval (or,
    ``mean_method="bootstrap"``, the hierarchical bootstrap's), the others with the bootstrap's.

    ``outcomes``: (runs, tasks, episodes) 0/1. Every bootstrapped metric uses the same resamples.
    """
    data = _check_group(outcomes)
    _check_options(reps, level)
    unknown = [m for m in metrics if m not in aggregates.METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; accepted: {', '.join(aggregates.METRICS)}")
    _check_mean_method(mean_method)
    runs, tasks, episodes = data.shape
    rates = data.mean(axis=2)
    intervals: dict[str, Interval] = {}
    booted = [m for m in metrics if not (m == "mean" and mean_method == "crossed")]
    draws: dict[str, list[FloatArray]] = {m: [] for m in booted}
    for size in _chunks(reps, tasks * max(episodes, runs)) if booted else ():
        resampled = _resampled_rates(data, _ic_weights(rng, size, tasks, episodes), rng)
        for m in booted:
            draws[m].append(aggregates.METRICS[m](resampled))
    for m in metrics:
        if m in booted:
            intervals[m] = _not_collapsed(Interval(float(aggregates.METRICS[m](rates)), *_percentile(
                np.concatenate(draws[m]), level), level, BOOTSTRAP_METHOD), data, gap=m == "optimality_gap")
        else:
            estimate, low, high = group_mean_bounds(data, level)
            intervals[m] = Interval(float(estimate), float(low), float(high), level,
                                    MEAN_METHOD if runs > 1 else ONE_RUN_METHOD)
    return GroupSummary(runs, tasks, episodes, reps, intervals)


def _check_mean_method(mean_method: str) -> None:
    if mean_method not in MEAN_METHODS:
        raise ValueError(f"unknown mean_method {mean_method!r}; accepted: {', '.join(MEAN_METHODS)}")


def _not_collapsed(interval: Interval, data: FloatArray, gap: bool = False) -> Interval:
    """Every run at 0% or 100% on every task makes every resample the same: a percentile interval
    of one point, which no true rate below 100% would be inside. There the interval is the Wilson
    interval of all the group's episodes pooled (it covers initial conditions; runs that agree
    completely leave nothing to estimate their spread from)."""
    if interval.low < interval.high or not (np.all(data == 0) or np.all(data == 1)):
        return interval
    low, high = wilson_bounds(data.sum(), data.size, level=interval.level)
    if gap:  # the optimality gap is 1 - the rate here
        low, high = 1 - high, 1 - low
    return Interval(interval.estimate, float(low), float(high), interval.level,
                    "Wilson on pooled episodes (every run at the boundary: the bootstrap has one value)")


def _compare(x: ArrayLike, y: ArrayLike, statistic: Callable[[FloatArray, FloatArray], FloatArray], name: str, *,
             rng: np.random.Generator, reps: int, level: float, paired: bool) -> GroupComparison:
    """Bootstrap ``statistic(rates_x, rates_y)`` (both (..., runs, tasks)) with runs drawn per
    group and ICs drawn once for both groups when ``paired``, per group otherwise."""
    x, y = _check_pair(x, y, paired)
    _check_options(reps, level)
    tasks = x.shape[1]
    values: list[FloatArray] = []
    per_rep = tasks * max(x.shape[2], y.shape[2], x.shape[0] * y.shape[0])
    for size in _chunks(reps, per_rep):
        weights_x = _ic_weights(rng, size, tasks, x.shape[2])
        weights_y = weights_x if paired else _ic_weights(rng, size, tasks, y.shape[2])
        values.append(statistic(_resampled_rates(x, weights_x, rng), _resampled_rates(y, weights_y, rng)))
    estimate = float(statistic(x.mean(axis=2), y.mean(axis=2)))
    interval = Interval(estimate, *_percentile(np.concatenate(values), level), level, BOOTSTRAP_METHOD)
    return GroupComparison(name, x.shape[0], y.shape[0], tasks, x.shape[2], reps, paired, interval)


def probability_of_improvement_groups(x: ArrayLike, y: ArrayLike, *, rng: np.random.Generator, reps: int = 2000,
                                      level: float = 0.95, paired: bool = True) -> GroupComparison:
    """rliable's P(X > Y) between two groups' (runs x tasks) rate matrices, hierarchical interval.

    ``x``, ``y``: (runs, tasks, episodes) 0/1 on the same ICs (``paired=False`` if they were not).
    """
    return _compare(x, y, aggregates.probability_of_improvement, "probability_of_improvement",
                    rng=rng, reps=reps, level=level, paired=paired)


def group_difference(x: ArrayLike, y: ArrayLike, *, metric: str = "mean", rng: np.random.Generator, reps: int = 2000,
                     level: float = 0.95, paired: bool = True, mean_method: str = "crossed") -> GroupComparison:
    """metric(X) - metric(Y) between two groups, with an interval that carries training-seed
    variance and the pairing on shared ICs: for the mean, t with the crossed variance (module doc;
    ``mean_method="bootstrap"`` for the bootstrap's), else the hierarchical bootstrap (runs
    resampled per group, ICs jointly)."""
    if metric not in aggregates.METRICS:
        raise ValueError(f"unknown metric {metric!r}; accepted: {', '.join(aggregates.METRICS)}")
    _check_mean_method(mean_method)
    if metric == "mean" and mean_method == "crossed":
        a, b = _check_pair(x, y, paired)
        _check_options(reps, level)
        estimate, low, high = group_difference_bounds(a, b, level, paired)
        method = DIFFERENCE_METHOD if max(a.shape[0], b.shape[0]) > 1 else ONE_RUN_METHOD
        return GroupComparison("mean difference", a.shape[0], b.shape[0], a.shape[1], a.shape[2], 0, paired,
                               Interval(float(estimate), float(low), float(high), level, method))
    fn = aggregates.METRICS[metric]
    return _compare(x, y, lambda a, b: fn(a) - fn(b), f"{metric} difference",
                    rng=rng, reps=reps, level=level, paired=paired)
