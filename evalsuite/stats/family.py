"""Statistics over a family of MDPs: two-level means, lower percentiles, response curves, reversals.

Success in a family has two levels of randomness: which MDPs were drawn, and which episodes ran in
each. The mean over MDPs of the per-MDP rates has a variance that the between-MDP spread of those
rates estimates with both levels in it (each rate's own binomial noise adds to the family's
spread), so a t interval on the M per-MDP rates covers the family mean; a pooled binomial interval
would ignore the MDP level and be too narrow whenever MDPs differ (checked by simulation in the
tests).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from evalsuite.stats.intervals import proportion_interval


@dataclass(frozen=True, slots=True)
class Estimate:
    estimate: float
    low: float
    high: float
    method: str


def family_mean(k: np.ndarray, n: np.ndarray, level: float = 0.95) -> Estimate:
    """Mean over MDPs of per-MDP success rates k/n, with a t interval over MDPs (see module doc).
    When every MDP has the same rate the spread is zero; the pooled Wilson interval is used then."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    rates = k / n
    m = len(rates)
    est = float(rates.mean())
    se = float(rates.std(ddof=1) / math.sqrt(m)) if m > 1 else 0.0
    if se == 0.0:
        ci = proportion_interval(int(k.sum()), int(n.sum()), level=level, method="wilson")
        return Estimate(est, ci.low, ci.high, "pooled wilson (no spread between MDPs)")
    half = sps.t.ppf(0.5 + level / 2, m - 1) * se
    return Estimate(est, max(0.0, est - half), min(1.0, est + half), f"t over {m} MDPs")


def family_percentile(k: np.ndarray, n: np.ndarray, q: float = 0.10, level: float = 0.95, reps: int = 2000,
                      rng: np.random.Generator | None = None) -> Estimate:
    """The q-quantile of per-MDP success over the family; interval by a two-stage bootstrap (MDPs
    resampled, then each resampled MDP's episodes). With few episodes per MDP the per-MDP rates are
    noisy and their low quantile is biased downwards: read it as a conservative figure."""
    rng = rng or np.random.default_rng(0)
    k, n = np.asarray(k, float), np.asarray(n, int)
    rates = k / n
    est = float(np.quantile(rates, q))
    idx = rng.integers(0, len(rates), (reps, len(rates)))
    boot_rates = rng.binomial(n[idx], rates[idx]) / n[idx]
    qs = np.quantile(boot_rates, q, axis=1)
    lo, hi = np.quantile(qs, [0.5 - level / 2, 0.5 + level / 2])
    return Estimate(est, float(lo), float(hi), f"two-stage bootstrap ({reps})")


@dataclass(frozen=True, slots=True)
class Curve:
    axis: str
    x: list[float]  # grid of axis values
    p: list[float]
    low: list[float]
    high: list[float]
    slope: float | None  # log-odds per unit of the fitted scale (per range, i.e. from low to high end)
    slope_low: float | None
    slope_high: float | None
    p_value: float | None
    note: str


def logistic_curve(values: np.ndarray, success: np.ndarray, low: float, high: float, log_scale: bool = False,
                   level: float = 0.95, points: int = 25, name: str = "") -> Curve:
    """P(success | axis value) by a logistic regression on the episodes (statsmodels GLM, binomial),
    with a pointwise delta-method band. The axis is rescaled to [0, 1] over its range (log for
    multipliers) so the slope reads as the change in log-odds from one end of the range to the other."""
    import statsmodels.api as sm

    def unit(v):
        v = np.asarray(v, float)
        return (np.log(v) - math.log(low)) / (math.log(high) - math.log(low)) if log_scale else (v - low) / (high - low)

    grid = (np.exp(np.linspace(math.log(low), math.log(high), points)) if log_scale
            else np.linspace(low, high, points))
    y = np.asarray(success, float)
    if y.min() == y.max():  # nothing to fit: a flat curve at the observed rate
        ci = proportion_interval(int(y.sum()), len(y), level=level, method="wilson")
        return Curve(name, grid.tolist(), [float(y.mean())] * points, [ci.low] * points, [ci.high] * points,
                     None, None, None, None, "every episode had the same outcome")
    x = sm.add_constant(unit(values), has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = sm.GLM(y, x, family=sm.families.Binomial()).fit()
            params, cov = np.asarray(fit.params), np.asarray(fit.cov_params())
            ok = np.all(np.isfinite(params)) and np.all(np.isfinite(cov)) and abs(params[1]) < 50
        except Exception:  # perfect separation
            ok = False
    if not ok:
        return Curve(name, grid.tolist(), [], [], [], None, None, None, None,
                     "outcomes separate perfectly along this axis: no logistic fit (see the per-MDP rates)")
    z = sps.norm.ppf(0.5 + level / 2)
    g = sm.add_constant(unit(grid), has_constant="add")
    eta = g @ params
    se = np.sqrt(np.einsum("ij,jk,ik->i", g, cov, g))
    from scipy.special import expit
    slope_se = math.sqrt(cov[1, 1])
    return Curve(name, grid.tolist(), expit(eta).tolist(), expit(eta - z * se).tolist(), expit(eta + z * se).tolist(),
                 float(params[1]), float(params[1] - z * slope_se), float(params[1] + z * slope_se),
                 float(fit.pvalues[1]), "logistic regression on episodes")


def rank_reversal(rates_a: np.ndarray, rates_b: np.ndarray, nominal_a: float, nominal_b: float) -> dict:
    """How often the order of two policies at the nominal MDP is reversed across the family's MDPs
    (ties at an MDP are not counted either way)."""
    if nominal_a == nominal_b:
        return {"nominal_order": "tie", "reversal_rate": None, "mdps_compared": 0}
    sign = 1 if nominal_a > nominal_b else -1
    diff = sign * (np.asarray(rates_a) - np.asarray(rates_b))
    untied = diff != 0
    return {"nominal_order": "A > B" if sign > 0 else "B > A",
            "reversal_rate": float(np.mean(diff[untied] < 0)) if untied.any() else None,
            "mdps_compared": int(untied.sum())}
