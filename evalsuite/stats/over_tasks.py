"""Intervals for the mean over tasks of success rates, and for a paired difference of such means.

Why not the episode bootstrap: it redraws each task's episodes at the observed rate, so a task at
20/20 only ever redraws 20/20 - at 100% everywhere the interval is the point [1, 1], and at true
rates 0.90-0.97 with n = 20 it covers about 86% instead of 95%.

The mean over tasks uses the score interval: the Rao score (Lagrange multiplier) test of
H0: mean = theta, inverted - the construction that gives Wilson's interval for one task, so it
keeps Wilson's behaviour at 0 and 1. The paired difference uses MOVER (method of variance
estimates recovery; Zou & Donner 2008, Newcombe 2011) over the tasks' Newcombe intervals; see
each function for why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from evalsuite.stats.intervals import Interval, wilson_bounds  # noqa: F401  (re-exported for simulations)
from evalsuite.stats.paired import newcombe_paired_bounds

FloatArray = NDArray[np.float64]

CORRECTION_LEVELS = ("holm", "bonferroni", "bh", "none")


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(stats.norm.ppf(1 - (1 - level) / 2))


def _mover_sum(estimates: FloatArray, lows: FloatArray, highs: FloatArray, weights: float | FloatArray
               ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MOVER for sum_t w_t theta_t (w_t >= 0) over the last axis."""
    theta = np.sum(weights * estimates, axis=-1)
    down = np.sqrt(np.sum((weights * (estimates - lows)) ** 2, axis=-1))
    up = np.sqrt(np.sum((weights * (highs - estimates)) ** 2, axis=-1))
    return theta, theta - down, theta + up


def _constrained_rates(multiplier: FloatArray, k: FloatArray, n: FloatArray) -> FloatArray:
    """Per-task rates maximizing the likelihood subject to a mean over tasks, from the Lagrange
    multiplier a (per task): the root in [0, 1] of a p^2 - (a + n) p + k = 0, the stationarity
    k/p - (n - k)/(1 - p) = a. a = 0 gives k/n; a > 0 pulls rates down, a < 0 up."""
    a = multiplier
    root = np.sqrt(np.maximum((a + n) ** 2 - 4 * a * k, 0.0))  # >= (a - n)^2 >= 0 but for rounding
    with np.errstate(divide="ignore", invalid="ignore"):
        # The cancellation-free form where a + n > 0; else (only a < -n) the other form, also stable.
        p = np.where(a + n > 0, 2 * k / ((a + n) + root), ((a + n) - root) / (2 * np.where(a == 0, 1.0, a)))
    return np.clip(p, 0.0, 1.0)


def mean_over_tasks_bounds(successes: ArrayLike, n: ArrayLike, *, level: float = 0.95, iterations: int = 48
                           ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(estimate, low, high) of the equally weighted mean over the last axis (tasks), for any
    leading batch shape; ``mean_over_tasks`` is the scalar face, this one serves simulations.

    Each bound solves score(theta) = z^2 by bisection on log|a| (a: the Lagrange multiplier of the
    constraint), vectorized over the batch.
    """
    k, n = np.broadcast_arrays(np.asarray(successes, dtype=float), np.asarray(n, dtype=float))
    z2 = _z(level) ** 2
    tasks = k.shape[-1]
    theta_hat = (k / n).mean(axis=-1)

    def constrained(log_multiplier: FloatArray, sign: int) -> tuple[FloatArray, FloatArray]:
        lam = sign * np.exp(log_multiplier)[..., None]  # multiplier of sum_t p_t / T; per task lam / T
        p = _constrained_rates(lam / tasks, k, n)
        # Score statistic sum_t (k_t - n_t p_t)^2 / (n_t p_t (1 - p_t)) = lam^2 Var(mean) at p.
        score = (lam[..., 0] ** 2) * np.sum(p * (1 - p) / n, axis=-1) / tasks**2
        return p.mean(axis=-1), score

    bounds = []
    for sign, limit in ((+1, 0.0), (-1, 1.0)):
        lo = np.full(theta_hat.shape, math.log(1e-3))
        hi = np.full(theta_hat.shape, math.log(1e12))
        for _ in range(iterations):
            mid = (lo + hi) / 2
            beyond = constrained(mid, sign)[1] > z2
            hi, lo = np.where(beyond, mid, hi), np.where(beyond, lo, mid)
        theta, score = constrained(hi, sign)
        # If the score never reaches z^2 (every task at 0% for the lower bound, or at 100% for the
        # upper one), every theta up to the edge is accepted.
        bounds.append(np.where(score > z2, theta, limit))
    low, high = bounds
    return theta_hat, np.minimum(low, theta_hat), np.maximum(high, theta_hat)


def mean_over_tasks(successes: ArrayLike, n: ArrayLike, *, level: float = 0.95) -> Interval:
    """Interval for the mean over tasks of the per-task success rates, tasks independent.

    ``successes`` and ``n``: shape (num_tasks,) (``n`` may be a scalar), 0 <= successes <= n, n > 0.

    Score interval (one task: exactly Wilson's). Why not MOVER over per-task Wilson intervals, the
    usual recipe: MOVER takes each task's variance from the distance to that task's own bound, and
    near 100% the upper Wilson bound sits close to 1 where the variance is small, while the mean's
    bound needs the variance at rates only a little above the estimates. Its upper bound is then too
    low, and the more tasks, the worse: by simulation at 95%, true rates 0.95 on 10 tasks with 20
    episodes, MOVER-Wilson covers 0.87; MOVER-Clopper-Pearson 0.93 there but 0.88-0.90 on 20-50
    tasks at 0.95-0.99. The score interval moves all tasks' rates jointly to the constrained
    maximum-likelihood point and covers 0.90-0.98 in every setting tried (rates 0.01-0.10,
    0.90-0.99 and 0.5; 3-50 tasks; 10-50 episodes), 0.95 on average, with no continuity correction;
    at 0.5 its width is that of the normal interval.

    Near the edges its misses are one-sided, as Wilson's are for one task: near 100% the truth
    lies above the interval, up to 8.9% of the time (exact: 5 tasks x 10 episodes, all at 0.99;
    9.5% simulated with mixed rates) against 2.5% nominal, and at 0.97-0.99 practically never below
    it; near 0% the mirror image. Read the upper bound near 100% (the lower near 0%) as a ~91%
    one-sided bound (tests: ``test_misses_near_an_edge_fall_on_its_side``).
    """
    k = np.atleast_1d(np.asarray(successes))
    n = np.broadcast_to(np.asarray(n), k.shape)
    if k.ndim != 1 or k.size == 0:
        raise ValueError(f"successes must be a non-empty 1-d array, got shape {k.shape}")
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= successes <= n and n > 0 for every task")
    theta, low, high = mean_over_tasks_bounds(k, n, level=level)
    return Interval(float(theta), float(low), float(high), level, "score")


def paired_difference_over_tasks_bounds(tables: ArrayLike, *, level: float = 0.95
                                        ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(difference, low, high) for ``tables`` of shape (..., num_tasks, 4), cells (both, a_only,
    b_only, neither): MOVER over the tasks' Newcombe intervals, equal weights."""
    t = np.asarray(tables)
    diff, low, high = newcombe_paired_bounds(t[..., 0], t[..., 1], t[..., 2], t[..., 3], level=level)
    theta, lower, upper = _mover_sum(diff, low, high, 1.0 / t.shape[-2])
    return theta, np.maximum(-1.0, lower), np.minimum(1.0, upper)


def paired_difference_over_tasks(tables: Sequence[Sequence[int]], *, level: float = 0.95) -> Interval:
    """Interval for mean-over-tasks success of A minus that of B, outcomes paired within each task.

    ``tables``: one (both, a_only, b_only, neither) count table per task, shape (num_tasks, 4).
    Within a task the pairing (same initial conditions) is handled by Newcombe's method 10, which
    uses the correlation of the pairs; tasks are independent, so MOVER combines their intervals:
    for theta = sum_t c_t theta_t (c_t = 1/T) with interval (l_t, u_t) around each estimate e_t,

        L = theta_hat - sqrt(sum_t c_t^2 (e_t - l_t)^2),   U = theta_hat + sqrt(sum_t c_t^2 (u_t - e_t)^2).

    By simulation (tests) it covers 0.92-0.95 for independent outcomes at middling rates, and near
    100% or with few discordant pairs it is conservative (0.97-1.00), as Newcombe's interval for one
    task is there: at 0.97 vs 0.95 with nested successes, 3 tasks of 20 pairs, it is about 2.7 times
    as wide as the estimate's 95% normal range.
    """
    t = np.asarray(tables)
    if t.ndim != 2 or t.shape[1] != 4 or t.shape[0] == 0:
        raise ValueError(f"tables must be (num_tasks, 4) counts (both, a_only, b_only, neither), got shape {t.shape}")
    if np.any(t < 0):
        raise ValueError("counts must be non-negative")
    theta, low, high = paired_difference_over_tasks_bounds(t, level=level)
    return Interval(float(theta), float(low), float(high), level, "mover-newcombe-paired")


def adjusted_level(level: float, m: int, correction: str, selected: int | None = None) -> float:
    """Confidence level for the intervals that accompany ``m`` corrected pairwise tests.

    - "holm", "bonferroni": Bonferroni's 1 - (1 - level)/m; all m intervals then cover jointly with
      probability >= level. The intervals compatible with Holm's step-down decisions (Strassburger &
      Bretz 2008) say little beyond the decisions themselves, so Holm gets Bonferroni's.
    - "bh": Benjamini & Yekutieli's (2005) FCR-adjusted level 1 - R(1 - level)/m, where R =
      ``selected`` is the number of BH rejections at q = 1 - level. Their procedure builds intervals
      for the R selected comparisons only, and then the expected share of selected intervals that
      miss (the false coverage-statement rate) is <= q. With R = 0 nothing is selected and the FCR
      is 0 by the paper's convention (V/R := 0), so no adjustment applies: the plain level is
      returned, and such intervals are marginal, with no simultaneous claim.
    - "none": the plain level.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    if correction not in CORRECTION_LEVELS:
        raise ValueError(f"unknown correction {correction!r}; accepted: {', '.join(CORRECTION_LEVELS)}")
    if correction == "none":
        return level
    if correction in ("holm", "bonferroni"):
        return 1 - (1 - level) / m
    if selected is None:
        raise ValueError('correction "bh" needs selected= (the number of BH rejections)')
    if not 0 <= selected <= m:
        raise ValueError(f"selected must be in [0, m={m}], got {selected}")
    return level if selected == 0 else 1 - selected * (1 - level) / m
