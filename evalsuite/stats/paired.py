"""Two policies on the same initial conditions: paired binary outcomes.

With outcomes x_i, y_i in {0, 1} on shared initial conditions i = 1..n, the 2x2 table
(both, a_only, b_only, neither) carries all the information. The test is McNemar's exact test -
a two-sided binomial test of a_only among the discordant pairs - and the interval for the
difference of rates is Newcombe's (1998) method 10, built from the two Wilson intervals and the
correlation of the pairs, which keeps good coverage at the small n and extreme rates of robot
evaluation where the Wald interval fails.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from evalsuite.stats.intervals import wilson_bounds

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PairedComparison:
    n: int
    both: int
    a_only: int
    b_only: int
    neither: int
    difference: float  # rate(a) - rate(b)
    ci_low: float
    ci_high: float
    level: float
    p_value: float  # exact McNemar, two-sided

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts."""
    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(a_only, discordant, 0.5, alternative="two-sided").pvalue)


def newcombe_paired_bounds(both: ArrayLike, a_only: ArrayLike, b_only: ArrayLike, neither: ArrayLike, *,
                           level: float = 0.95) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(difference, low, high) of Newcombe's (1998) method 10 for p_a - p_b, vectorized over the
    cells' common shape (every table at least one pair)."""
    both, a_only, b_only, neither = (np.asarray(c, dtype=float) for c in (both, a_only, b_only, neither))
    n = both + a_only + b_only + neither
    if np.any(n <= 0):
        raise ValueError("every table needs at least one pair")
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    l1, u1 = wilson_bounds(both + a_only, n, level=level)
    l2, u2 = wilson_bounds(both + b_only, n, level=level)
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    # Newcombe's phi: a positive association is shrunk by n/2 (and floored at 0), a negative kept.
    cross = both * neither - a_only * b_only
    cross = np.where(cross > n / 2, cross - n / 2, np.minimum(cross, 0.0))
    phi = np.divide(cross, np.sqrt(margins), out=np.zeros_like(cross), where=margins > 0)
    d1, up1, d2, up2 = p1 - l1, u1 - p1, p2 - l2, u2 - p2
    diff = p1 - p2
    lower = diff - np.sqrt(np.maximum(0.0, d1 * d1 - 2 * phi * d1 * up2 + up2 * up2))
    upper = diff + np.sqrt(np.maximum(0.0, up1 * up1 - 2 * phi * up1 * d2 + d2 * d2))
    return diff, np.maximum(-1.0, lower), np.minimum(1.0, upper)


def newcombe_paired_interval(both: int, a_only: int, b_only: int, neither: int, *, level: float = 0.95) -> tuple[float, float]:
    """Newcombe (1998) method 10 interval for p_a - p_b from a paired 2x2 table."""
    if both + a_only + b_only + neither == 0:
        return -1.0, 1.0
    _, low, high = newcombe_paired_bounds(both, a_only, b_only, neither, level=level)
    return float(low), float(high)


def paired_comparison(a: NDArray[Any], b: NDArray[Any], *, level: float = 0.95) -> PairedComparison:
    """Compare outcomes ``a`` and ``b``, each of shape (n,) in {0, 1}, paired by position."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-d of the same length, got shapes {a.shape} and {b.shape}")
    both = int(np.sum(a & b))
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(~a & b))
    neither = int(np.sum(~a & ~b))
    n = a.size
    low, high = newcombe_paired_interval(both, a_only, b_only, neither, level=level)
    diff = (a_only - b_only) / n if n else math.nan
    return PairedComparison(n, both, a_only, b_only, neither, diff, low, high, level, mcnemar_exact(a_only, b_only))
