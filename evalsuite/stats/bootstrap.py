"""Stratified bootstrap over tasks, vectorized.

Resampling a task's n binary episode outcomes with replacement gives a success count distributed
exactly Binomial(n, k/n); drawing those counts directly is the same bootstrap with no per-episode
arrays, so 50,000 resamples of a 50-task suite take milliseconds.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from evalsuite.stats.intervals import Interval


def stratified_bootstrap_mean(
    successes: ArrayLike, n: ArrayLike, *, rng: np.random.Generator, reps: int = 10_000, level: float = 0.95
) -> Interval:
    """Mean over tasks of per-task success rates, episodes resampled within each task.

    ``successes`` and ``n``: shape (num_tasks,), with n > 0.
    """
    k = np.asarray(successes, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    if k.shape != n.shape or k.ndim != 1 or k.size == 0:
        raise ValueError(f"successes and n must be equal-length 1-d arrays, got {k.shape} and {n.shape}")
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= successes <= n and n > 0 for every task")
    rates = k / n
    draws = rng.binomial(n, rates, size=(reps, k.size)) / n  # (reps, num_tasks)
    means = draws.mean(axis=1)
    q = (1 - level) / 2
    low, high = np.quantile(means, [q, 1 - q])
    return Interval(float(rates.mean()), float(low), float(high), level, "stratified bootstrap (percentile)", reps)
