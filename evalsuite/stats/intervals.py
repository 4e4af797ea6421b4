"""Confidence intervals for one success rate.

Wilson is the default: near 0 and 1, where good policies live, the Wald interval (statsmodels'
default) collapses to zero width and undercovers badly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

INTERVAL_METHODS = ("wilson", "clopper-pearson", "jeffreys")


@dataclass(frozen=True, slots=True)
class Interval:
    """Every interval evalsuite computes: an estimate, its bounds at ``level``, how they were found
    (``method``) and, for resampling methods, the number of resamples."""

    estimate: float
    low: float
    high: float
    level: float
    method: str
    reps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "reps" or v is not None}


def _check(successes: int, n: int, level: float) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def proportion_interval(successes: int, n: int, *, level: float = 0.95, method: str = "wilson") -> Interval:
    """Two-sided interval for a binomial rate from ``successes`` out of ``n``.

    ``n == 0`` gives the uninformative [0, 1] with estimate NaN.
    """
    _check(successes, n, level)
    if method not in INTERVAL_METHODS:
        raise ValueError(f"unknown interval method {method!r}; accepted: {', '.join(INTERVAL_METHODS)}")
    if n == 0:
        return Interval(math.nan, 0.0, 1.0, level, method)
    p = successes / n
    alpha = 1 - level
    if method == "wilson":
        low, high = (float(b) for b in wilson_bounds(successes, n, level=level))
    elif method == "clopper-pearson":
        low = stats.beta.ppf(alpha / 2, successes, n - successes + 1) if successes > 0 else 0.0
        high = stats.beta.ppf(1 - alpha / 2, successes + 1, n - successes) if successes < n else 1.0
    else:  # jeffreys, with the usual boundary convention (Brown, Cai & DasGupta 2001)
        a, b = successes + 0.5, n - successes + 0.5
        low = stats.beta.ppf(alpha / 2, a, b) if successes > 0 else 0.0
        high = stats.beta.ppf(1 - alpha / 2, a, b) if successes < n else 1.0
    # Rounding can put a bound a hair past the estimate at k = 0 or k = n; the interval holds it.
    return Interval(p, max(0.0, min(float(low), p)), min(1.0, max(float(high), p)), level, method)


def wilson_bounds(successes: ArrayLike, n: ArrayLike, *, level: float = 0.95
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Wilson score bounds, vectorized over any shape (n > 0), each held on its side of k/n."""
    k, n = np.asarray(successes, dtype=float), np.asarray(n, dtype=float)
    z = float(stats.norm.ppf(1 - (1 - level) / 2))
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(np.minimum(center - half, p), 0.0, 1.0), np.clip(np.maximum(center + half, p), 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class BetaPosterior:
    """Beta(successes + a0, failures + b0): the posterior of the rate under a Beta(a0, b0) prior."""

    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Equal-tailed credible interval."""
        q = (1 - level) / 2
        return float(stats.beta.ppf(q, self.alpha, self.beta)), float(stats.beta.ppf(1 - q, self.alpha, self.beta))

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta, "mean": self.mean}


def beta_posterior(successes: int, n: int, *, prior: tuple[float, float] = (1.0, 1.0)) -> BetaPosterior:
    _check(successes, n, 0.5)
    return BetaPosterior(successes + prior[0], n - successes + prior[1])
