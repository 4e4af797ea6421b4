"""Statistics over a family of MDPs: two-level means, lower percentiles, response curves, reversals.

Success in a family has two levels of randomness: which MDPs were drawn, and which episodes ran in
each (often only 4-10 per MDP). Every method here treats the MDP, not the episode, as the unit of
replication; the tests check each by simulation against the method it replaced.

* Family mean (``family_mean``): the mean over MDPs of the per-MDP rates, with the Korn & Graubard
  (1998) interval: a Clopper-Pearson interval on an effective number of episodes, N / design
  effect. The design effect is the between-MDP variance of the mean (s^2 / M over the rates) over
  the binomial variance of N independent episodes, floored at 1; a degrees-of-freedom factor
  (t_{N-1} / t_{M-1})^2 then shrinks the effective number for having only M MDPs. A t interval over
  the M rates undercovers at skewed means (0.05-0.1, 0.9-0.95): it is symmetric and collapses when
  most MDPs sit at 0% or 100%; the Clopper-Pearson shape follows the skew and never has zero width.
  It errs on the safe side (coverage 0.95-0.99 in the tests' settings).
* Response curves (``family_curves``): one logistic regression on all varied axes together (each
  scaled to [0, 1] over its range, log for multipliers), fitted to the per-MDP counts, with
  MDP-clustered sandwich errors. The parameters are constant within an MDP, so the cluster
  sandwich with the Kauermann & Carroll (2001) / Bell & McCaffrey (2002) bias reduction (CR2)
  scales each MDP's score by 1 / sqrt(1 - leverage); intervals and p-values use t on M - 1 degrees
  of freedom. Episodes of one MDP share its physics and are not independent: a per-axis fit on
  episodes is too narrow (and, fitted one axis at a time, aims at the wrong slope).
* Rank reversals (``rank_reversal``): per MDP, the posterior probability (uniform priors on each
  policy's rate there) that the two policies are in the opposite order to the nominal one; an MDP
  counts as reversed only when that probability reaches 0.95. The raw count of MDPs whose observed
  rates flip is mostly noise at a few episodes per MDP and is kept only for comparison.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps
from scipy.special import betaln, expit

from evalsuite.stats.intervals import Interval, proportion_interval

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FamilyMean:
    estimate: float
    low: float
    high: float
    method: str
    design_effect: float | None  # variance of the mean over that of N independent episodes (floored at 1)
    effective_episodes: float | None  # N / design_effect, before the degrees-of-freedom factor


def family_mean(k: NDArray[Any], n: NDArray[Any], level: float = 0.95) -> FamilyMean:
    """Mean over MDPs of per-MDP success rates k/n (shape (M,)), Korn-Graubard interval (module doc).

    Every MDP at 0% (or 100%) carries no estimate of the spread; the design effect is taken as 1
    then, so the interval is that of N independent episodes widened for M - 1 degrees of freedom,
    never of zero width. With one MDP the spread over the family is unknown: the interval is [0, 1]."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    m = len(k)
    if m < 2:
        est = float((k / n).mean()) if m else math.nan
        return FamilyMean(est, 0.0, 1.0, "one MDP: the spread over the family is unknown", None, None)
    est, low, high, deff, n_eff = (float(v) for v in korn_graubard(k, n, level))
    return FamilyMean(est, low, high, f"Korn-Graubard over {m} MDPs (design effect {deff:.2f})", deff, n_eff)


def korn_graubard(k: NDArray[Any], n: NDArray[Any], level: float = 0.95) -> tuple[FloatArray, ...]:
    """The computation behind ``family_mean`` over the last axis of k, n (shape (..., M), M >= 2),
    so that simulations run it on many families at once. Returns estimate, low, high, design
    effect and effective number of episodes, each of shape (...)."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    m = k.shape[-1]
    rates = k / n
    total = n.sum(-1)
    est = rates.mean(-1)
    var_mean = rates.var(-1, ddof=1) / m
    binomial_var = est * (1 - est) / total
    with np.errstate(divide="ignore", invalid="ignore"):
        deff = np.where(binomial_var > 0, np.maximum(1.0, var_mean / binomial_var), 1.0)
    n_eff = total / deff
    q = 0.5 + level / 2
    n_df = n_eff * (sps.t.ppf(q, np.maximum(total - 1, 1)) / sps.t.ppf(q, m - 1)) ** 2
    x = est * n_df
    alpha = 1 - level
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(est > 0, sps.beta.ppf(alpha / 2, x, n_df - x + 1), 0.0)
        high = np.where(est < 1, sps.beta.ppf(1 - alpha / 2, x + 1, n_df - x), 1.0)
    return est, low, high, deff, n_eff


def family_percentile(k: NDArray[Any], n: NDArray[Any], q: float = 0.10, level: float = 0.95, reps: int = 2000,
                      rng: np.random.Generator | None = None) -> Interval:
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
    return Interval(est, float(lo), float(hi), level, "two-stage bootstrap", reps)


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


@dataclass(frozen=True, slots=True)
class AxisScale:
    """A varied axis and the scale its slope is read on: [0, 1] over the range, log for multipliers."""
    name: str
    low: float
    high: float
    log: bool = False

    def to_unit(self, values: ArrayLike) -> FloatArray:
        v = np.asarray(values, float)
        if self.log:
            return cast(FloatArray, (np.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low)))
        return cast(FloatArray, (v - self.low) / (self.high - self.low))

    def grid(self, points: int) -> FloatArray:
        if self.log:
            return cast(FloatArray, np.exp(np.linspace(math.log(self.low), math.log(self.high), points)))
        return np.linspace(self.low, self.high, points)


def family_curves(params: NDArray[Any], k: NDArray[Any], n: NDArray[Any], axes: Sequence[AxisScale],
                  level: float = 0.95, points: int = 25) -> list[Curve]:
    """P(success | axes) from one logistic regression on all ``axes`` jointly, with MDP-clustered
    (CR2) errors and t on M - 1 degrees of freedom (module doc). ``params`` (M, A): each MDP's value
    of every axis, in the axes' own units; ``k``, ``n`` (M,): its successes and episodes.

    The curve of an axis holds the other axes at the middle of their ranges (the geometric middle
    for multipliers). Flat outcomes, too few MDPs, collinear axes and perfect separation give a
    note instead of a fit."""
    import statsmodels.api as sm

    params, k, n = np.asarray(params, float).reshape(len(k), -1), np.asarray(k, float), np.asarray(n, float)
    m, dims = params.shape
    grids = [a.grid(points) for a in axes]

    def no_fit(note: str, flat: FamilyMean | None = None) -> list[Curve]:
        p, lo, hi = ([flat.estimate] * points, [flat.low] * points, [flat.high] * points) if flat else ([], [], [])
        return [Curve(a.name, g.tolist(), p, lo, hi, None, None, None, None, note) for a, g in zip(axes, grids, strict=False)]

    if k.sum() in (0, n.sum()):  # nothing to fit: flat at the family mean, with its two-level interval
        return no_fit("every episode had the same outcome", family_mean(k, n, level))
    unit = np.column_stack([a.to_unit(params[:, j]) for j, a in enumerate(axes)])
    design = np.column_stack([np.ones(m), unit])
    n_coef = dims + 1
    if m < n_coef + 2:
        return no_fit(f"{m} MDPs are too few for a logistic fit on {dims} axes with MDP-clustered errors")
    if np.linalg.matrix_rank(design) < n_coef:
        return no_fit("the sampled MDPs do not separate the axes' effects (collinear design)")
    with warnings.catch_warnings():  # separation and near-separation: judged below, from the fit
        warnings.simplefilter("ignore")
        try:
            fit = sm.GLM(np.column_stack([k, n - k]), design, family=sm.families.Binomial()).fit()
            coef = np.asarray(fit.params, float)
            ok = bool(fit.converged) and np.all(np.isfinite(coef)) and np.max(np.abs(design @ coef)) < 15
        except Exception:  # perfect separation in older statsmodels
            ok = False
    if not ok:
        return no_fit("outcomes separate (almost) perfectly along the axes: no logistic fit (see the per-MDP rates)")
    cov = _clustered_cov(design, k, n, coef)
    if not np.all(np.isfinite(cov)):
        return no_fit("the clustered covariance is singular (an MDP has all the leverage)")
    t = sps.t.ppf(0.5 + level / 2, m - 1)
    slope_se = np.sqrt(np.diag(cov))[1:]
    p_values = 2 * sps.t.sf(np.abs(coef[1:]) / slope_se, m - 1)
    jointly = f" on all {dims} axes jointly, the others at mid-range" if dims > 1 else ""
    note = f"logistic fit over {m} MDPs{jointly}; MDP-clustered (CR2) errors, t on {m - 1} df"
    curves = []
    for j, (a, g) in enumerate(zip(axes, grids, strict=False)):
        at = np.full((points, n_coef), 0.5)
        at[:, 0] = 1.0
        at[:, 1 + j] = a.to_unit(g)
        eta = at @ coef
        se = np.sqrt(np.einsum("ij,jk,ik->i", at, cov, at))
        b, s = float(coef[1 + j]), float(slope_se[j])
        curves.append(Curve(a.name, g.tolist(), expit(eta).tolist(), expit(eta - t * se).tolist(),
                            expit(eta + t * se).tolist(), b, b - t * s, b + t * s, float(p_values[j]), note))
    return curves


def _clustered_cov(design: FloatArray, k: FloatArray, n: FloatArray, coef: FloatArray) -> FloatArray:
    """CR2 cluster sandwich for a logistic fit whose rows are whole MDPs (covariates constant within
    each): the episode-level leverage block of an MDP has rank one, so the (I - H)^(-1/2) correction
    reduces to dividing the MDP's score by sqrt(1 - h) with h its row leverage."""
    mu = expit(design @ coef)
    w = n * mu * (1 - mu)
    bread = np.linalg.inv(design.T @ (design * w[:, None]))
    leverage = np.einsum("ij,jk,ik->i", design, bread, design) * w
    score = design * ((k - n * mu) / np.sqrt(np.clip(1 - leverage, 1e-12, None)))[:, None]
    return cast(FloatArray, bread @ (score.T @ score) @ bread)


def logistic_curve(values: NDArray[Any], success: NDArray[Any], low: float, high: float, log_scale: bool = False,
                   level: float = 0.95, points: int = 25, name: str = "") -> Curve:
    """P(success | one covariate) by a logistic regression on independent episodes (statsmodels GLM,
    binomial), with a pointwise delta-method band. For covariates that vary per episode (an
    episode's energy); episodes of an MDP family are not independent: use ``family_curves``. The
    covariate is rescaled to [0, 1] over its range (log for multipliers) so the slope reads as the
    change in log-odds from one end of the range to the other."""
    import statsmodels.api as sm

    scale = AxisScale(name, low, high, log_scale)
    grid = scale.grid(points)
    y = np.asarray(success, float)
    if y.min() == y.max():  # nothing to fit: a flat curve at the observed rate
        ci = proportion_interval(int(y.sum()), len(y), level=level, method="wilson")
        return Curve(name, grid.tolist(), [float(y.mean())] * points, [ci.low] * points, [ci.high] * points,
                     None, None, None, None, "every episode had the same outcome")
    x = sm.add_constant(scale.to_unit(values), has_constant="add")
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
    g = sm.add_constant(scale.to_unit(grid), has_constant="add")
    eta = g @ params
    se = np.sqrt(np.einsum("ij,jk,ik->i", g, cov, g))
    slope_se = math.sqrt(cov[1, 1])
    return Curve(name, grid.tolist(), expit(eta).tolist(), expit(eta - z * se).tolist(), expit(eta + z * se).tolist(),
                 float(params[1]), float(params[1] - z * slope_se), float(params[1] + z * slope_se),
                 float(fit.pvalues[1]), "logistic regression on episodes")


def prob_beta_greater(a_x: ArrayLike, b_x: ArrayLike, a_y: ArrayLike, b_y: ArrayLike) -> FloatArray:
    """P(Y > X) for independent X ~ Beta(a_x, b_x), Y ~ Beta(a_y, b_y), ``a_y`` a positive integer
    (elementwise over arrays). Exact: a finite sum over the integer shape (J. D. Cook 2005, "Exact
    calculation of beta inequalities"), in logs."""
    a_x, b_x, a_y, b_y = np.broadcast_arrays(*(np.asarray(v, float) for v in (a_x, b_x, a_y, b_y)))
    if np.any(a_y != np.round(a_y)) or np.any(a_y < 1):
        raise ValueError("a_y must be a positive integer")
    i = np.arange(int(a_y.max()))[(None,) * a_y.ndim]  # broadcast over a trailing summation axis
    ax, bx, ay, by = (v[..., None] for v in (a_x, b_x, a_y, b_y))
    terms = np.exp(betaln(ax + i, bx + by) - np.log(by + i) - betaln(1 + i, by) - betaln(ax, bx))
    return cast(FloatArray, np.clip(np.where(i < ay, terms, 0.0).sum(-1), 0.0, 1.0))


def rank_reversal(k_a: NDArray[Any], n_a: NDArray[Any], k_b: NDArray[Any], n_b: NDArray[Any], nominal_a: float,
                  nominal_b: float, threshold: float = 0.95) -> dict[str, Any]:
    """How the nominal order of two policies holds across the family's MDPs (arrays of shape (M,):
    successes and episodes of each policy on the MDPs both ran).

    Per MDP, the posterior probability (uniform priors on both rates) that the order is the reverse
    of the nominal one; ``credible_reversals`` counts MDPs where it reaches ``threshold``.
    ``mean_reversal_probability`` is the posterior expected fraction of reversed MDPs under those
    per-MDP uniform priors: with few episodes per MDP it is pulled towards 0.5 whatever the truth
    (0.38 for a constant 15-point gap at 4 episodes), so read it beside the credible count. The
    nominal order is taken as given (it usually rests on many more episodes). ``naive_reversal_rate``: the
    fraction of untied MDPs whose observed rates flip, counting noise as reversals (comparison only)."""
    k_a, n_a, k_b, n_b = (np.asarray(v, int) for v in (k_a, n_a, k_b, n_b))
    m = len(k_a)
    if nominal_a == nominal_b or m == 0:
        return {"nominal_order": "tie" if nominal_a == nominal_b else ("A > B" if nominal_a > nominal_b else "B > A"),
                "mdps_compared": 0, "credible_reversals": None, "credible_reversal_rate": None,
                "mean_reversal_probability": None, "naive_reversal_rate": None, "threshold": threshold}
    (k_hi, n_hi), (k_lo, n_lo) = ((k_a, n_a), (k_b, n_b)) if nominal_a > nominal_b else ((k_b, n_b), (k_a, n_a))
    prob = prob_beta_greater(1 + k_hi, 1 + n_hi - k_hi, 1 + k_lo, 1 + n_lo - k_lo)
    diff = k_hi / n_hi - k_lo / n_lo
    untied = diff != 0
    credible = int(np.sum(prob >= threshold))
    return {"nominal_order": "A > B" if nominal_a > nominal_b else "B > A", "mdps_compared": m,
            "credible_reversals": credible, "credible_reversal_rate": credible / m,
            "mean_reversal_probability": float(prob.mean()),
            "naive_reversal_rate": float(np.mean(diff[untied] < 0)) if untied.any() else None,
            "threshold": threshold}
