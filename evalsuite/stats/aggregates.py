"""Aggregates over tasks, as rliable defines them, with a seeded, vectorized stratified bootstrap.

``scores`` is (num_runs x num_tasks): one row per independent run (seed or checkpoint), one
column per task, each entry a success rate of that run on that task. (An IQM over raw 0/1 episode
outcomes is degenerate; feed per-run rates.)

- mean: mean of all entries; median: median over tasks of per-task means;
- IQM: the 25%-trimmed mean of all entries (``scipy.stats.trim_mean``);
- optimality gap: gamma - mean(min(score, gamma)), gamma = 1 for success rates;
- probability of improvement P(X > Y): per task, the Mann-Whitney U of X's runs against Y's over
  n_x n_y (ties count one half), averaged over tasks.

The bootstrap resamples runs with replacement within each task (stratified by task), all resamples
at once as one index array - unlike rliable, whose ``random_state`` argument is ignored, the same
``rng`` state gives the same bits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from evalsuite.stats.intervals import Interval

FloatArray = NDArray[np.float64]
Metric = Callable[[FloatArray], FloatArray]  # (..., num_runs, num_tasks) -> (...)


def mean(scores: FloatArray) -> FloatArray:
    return cast(FloatArray, scores.mean(axis=(-2, -1)))


def median(scores: FloatArray) -> FloatArray:
    return cast(FloatArray, np.median(scores.mean(axis=-2), axis=-1))


def iqm(scores: FloatArray) -> FloatArray:
    flat = scores.reshape(*scores.shape[:-2], -1)
    return cast(FloatArray, stats.trim_mean(flat, 0.25, axis=-1))


def optimality_gap(scores: FloatArray, gamma: float = 1.0) -> FloatArray:
    return cast(FloatArray, gamma - np.minimum(scores, gamma).mean(axis=(-2, -1)))


METRICS: dict[str, Metric] = {"mean": mean, "median": median, "iqm": iqm, "optimality_gap": optimality_gap}
METHOD = "stratified bootstrap over runs within tasks (percentile)"
EPISODE_METHOD = "bootstrap over each task's episodes (percentile)"


def probability_of_improvement(x: FloatArray, y: FloatArray) -> FloatArray:
    """P(X > Y) from x (..., n_x, num_tasks) and y (..., n_y, num_tasks)."""
    greater = (x[..., :, None, :] > y[..., None, :, :]).mean(axis=(-3, -2))
    ties = (x[..., :, None, :] == y[..., None, :, :]).mean(axis=(-3, -2))
    return cast(FloatArray, (greater + 0.5 * ties).mean(axis=-1))


def _check(scores: ArrayLike) -> FloatArray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[0] < 1 or scores.shape[1] < 1:
        raise ValueError(f"scores must be (num_runs x num_tasks), got shape {scores.shape}")
    return scores


def stratified_resample(scores: FloatArray, *, rng: np.random.Generator, reps: int) -> FloatArray:
    """(reps, num_runs, num_tasks): runs drawn with replacement independently within each task."""
    runs, tasks = scores.shape
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    return np.take_along_axis(scores[None], idx, axis=1)


def interval(scores: ArrayLike, metric: str, *, rng: np.random.Generator, reps: int = 50_000, level: float = 0.95,
             chunk: int = 5_000) -> Interval:
    """Percentile stratified-bootstrap interval of one metric (chunked to bound memory)."""
    scores = _check(scores)
    fn = METRICS[metric]
    values = np.concatenate([fn(stratified_resample(scores, rng=rng, reps=min(chunk, reps - start)))
                             for start in range(0, reps, chunk)])
    q = (1 - level) / 2
    low, high = np.quantile(values, [q, 1 - q])
    return Interval(float(fn(scores)), float(low), float(high), level, f"{metric}: {METHOD}", reps)


def performance_profile(scores: ArrayLike, taus: ArrayLike) -> FloatArray:
    """Fraction of (run, task) scores above each threshold tau: (len(taus),)."""
    scores = _check(scores)
    return cast(FloatArray, (scores.reshape(-1)[None, :] > np.asarray(taus)[:, None]).mean(axis=1))


def episode_resample(successes: ArrayLike, n: ArrayLike, *, rng: np.random.Generator, reps: int) -> FloatArray:
    """(reps, policies, tasks) success rates from resampling each cell's episodes with replacement
    (a binomial draw at the observed rate: the stratified bootstrap when each policy has one run
    and the strata are its tasks). ``successes`` and ``n`` are (policies, tasks), n > 0."""
    successes, n = np.asarray(successes), np.asarray(n)
    return cast(FloatArray, rng.binomial(n, successes / n, size=(reps, *n.shape)) / n)


def run_aggregates(successes: ArrayLike, n: ArrayLike, *, rng: np.random.Generator, reps: int = 10_000,
                   level: float = 0.95) -> tuple[dict[str, list[Interval]], FloatArray]:
    """Per policy, every metric of its per-task rates with an episode-bootstrap interval; and the
    (policies x policies) matrix of P(row > column) with intervals as (3, P, P): estimate, low, high.
    One run per policy: IQM and friends are taken over tasks."""
    rates = np.asarray(successes) / np.asarray(n)
    draws = episode_resample(successes, n, rng=rng, reps=reps)  # (reps, P, T)
    q = (1 - level) / 2
    out: dict[str, list[Interval]] = {}
    for metric, fn in METRICS.items():
        values = fn(draws[:, :, None, :])  # (reps, P): one "run" per policy
        lows, highs = np.quantile(values, [q, 1 - q], axis=0)
        points = fn(rates[:, None, :])
        out[metric] = [Interval(float(points[p]), float(lows[p]), float(highs[p]), level, f"{metric}: {EPISODE_METHOD}",
                                reps)
                       for p in range(rates.shape[0])]
    P = rates.shape[0]
    poi = np.full((3, P, P), np.nan)
    for i in range(P):
        for j in range(P):
            if i != j:
                values = probability_of_improvement(draws[:, i, None, :], draws[:, j, None, :])
                poi[0, i, j] = probability_of_improvement(rates[i, None, :], rates[j, None, :])
                poi[1:, i, j] = np.quantile(values, [q, 1 - q])
    return out, poi
