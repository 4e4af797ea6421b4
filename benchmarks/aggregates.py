"""Aggregate intervals at 50,000 stratified-bootstrap resamples: evalsuite against rliable.

Same inputs (10 runs x 20 tasks of success rates), same four metrics (mean, median, IQM,
optimality gap), each with a 95% percentile interval. Prints both times and the ratio, measured
side by side in one process; rliable's resampling is a Python loop over resamples, ours one index
array per chunk.
"""

from __future__ import annotations

import time

import numpy as np
from rliable import library as rly
from rliable import metrics as rm

from evalsuite.stats import aggregates as ag

REPS = 50_000
METRICS = ("mean", "median", "iqm", "optimality_gap")


def main() -> None:
    scores = np.random.default_rng(0).beta(4, 2, size=(10, 20))
    t0 = time.perf_counter()
    ours = {m: ag.interval(scores, m, rng=np.random.default_rng(1), reps=REPS) for m in METRICS}
    t_ours = time.perf_counter() - t0

    np.random.seed(1)
    fn = lambda s: np.array([rm.aggregate_mean(s), rm.aggregate_median(s), rm.aggregate_iqm(s),  # noqa: E731
                             rm.aggregate_optimality_gap(s)])
    t0 = time.perf_counter()
    _, theirs = rly.get_interval_estimates({"p": scores}, fn, reps=REPS)
    t_theirs = time.perf_counter() - t0

    print(f"aggregate intervals, {REPS} resamples, scores {scores.shape}, metrics {', '.join(METRICS)}")
    for i, m in enumerate(METRICS):
        print(f"  {m:<15} evalsuite [{ours[m].low:.4f}, {ours[m].high:.4f}]   "
              f"rliable [{theirs['p'][0, i]:.4f}, {theirs['p'][1, i]:.4f}]")
    print(f"  time: evalsuite {t_ours:.2f} s, rliable {t_theirs:.2f} s, ratio rliable/evalsuite "
          f"{t_theirs / t_ours:.1f}x")


if __name__ == "__main__":
    main()
