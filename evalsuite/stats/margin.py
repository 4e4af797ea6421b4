"""Decisions against a margin: regressed, improved, non-inferior, or not enough data to tell.

For d = p_candidate - p_baseline and a margin m > 0, three one-sided tests per task:

- REGRESSED: reject H0 d >= -m (worse by more than the margin), level ``alpha_claims``;
- IMPROVED: reject H0 d <= 0 (better), level ``alpha_claims``, only together with NON-INFERIOR;
- NON-INFERIOR: reject H0 d <= -m (not worse than the margin), level ``alpha``;
- INCONCLUSIVE otherwise.

Over several tasks the gate passes only when every task is non-inferior, an intersection-union
test (Berger 1982): each task's non-inferiority test at ``alpha`` keeps the chance of a false pass
<= alpha without any split. REGRESSED and IMPROVED are claims about *some* task, a union, so the
caller splits their level over the tasks (Bonferroni, ``alpha_claims = alpha / tasks``).

Each test is exact and unconditional (Barnard 1947; Suissa & Shuster 1985): the sample space is
ordered by a score statistic for H0 d = d0 and the p-value is the supremum, over the whole range
of the nuisance parameter (no Berger & Boos confidence-set restriction), of the null probability
of a statistic at least as extreme.
Only the boundary d = d0 needs searching: the statistics are monotone (more candidate wins, fewer
baseline wins give a larger statistic), so moving d further into the null only shrinks the tail.

- Paired (same initial conditions): n10 = candidate-only and n01 = baseline-only successes of n
  pairs, trinomial with d = p10 - p01; the nuisance is the discordance psi = p10 + p01 in
  [|d0|, 1]; the ordering is Tango's (1998) score statistic (restricted MLE of p01 in closed form).
- Independent (different seeds): k_c / n_c against k_b / n_b; the nuisance is p_b; the ordering
  is the Farrington-Manning (1990) score statistic (Miettinen-Nurminen's differs by a constant
  factor, so it orders the sample space identically).

The supremum is taken over nodes evenly spaced in Fisher-Rao arc length of the nuisance (both
endpoints included; a null probability moves by at most 1/2 per unit of that length on the
arcsine-root scale), then refined by a bounded Brent search around the largest local maxima; the
tests check the resulting size by enumeration on a different grid. A
tail probability is summed row by row: the discordant total (paired) or the baseline count
(independent) is binomial in the nuisance and, within a row, the statistic is monotone in the
candidate's count, so a tail is a binomial tail per row (O(n) incomplete-beta calls per nuisance
value, not O(n^2) table cells). Up to ``EXACT_MAX_N`` pairs (or episodes per policy) the tests
are exact; beyond it the same score statistics are referred to the normal distribution, and
``MarginDecision.method`` says so.

``gate_power``, ``n_gate`` and ``n_gate_pass`` plan with the exact test (power by enumeration).
Exact power saw-tooths in n, so they return the smallest n whose power reaches the target with
the 8 n just below it all falling short; a few larger n may fall short again.

Sequentially, the same three hypotheses are tested with the betting e-processes of
``evalsuite.stats.sequential`` so the verdict may be read after every pair.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats
from scipy.special import betainc, gammaln, xlog1py, xlogy

from evalsuite.stats.intervals import proportion_interval
from evalsuite.stats.paired import newcombe_paired_interval
from evalsuite.stats.sequential import log_wealth_mean

FloatArray = NDArray[np.float64]

REGRESSED, IMPROVED, NON_INFERIOR, INCONCLUSIVE = "REGRESSED", "IMPROVED", "NON-INFERIOR", "INCONCLUSIVE"
VERDICTS = (REGRESSED, INCONCLUSIVE, NON_INFERIOR, IMPROVED)  # worst first

EXACT_MAX_N = 2000  # exact tests up to this many pairs (or episodes per policy); asymptotic beyond
PAIRED_EXACT = "exact unconditional, Tango score ordering"
INDEPENDENT_EXACT = "exact unconditional, Farrington-Manning score ordering"
PAIRED_ASYMPTOTIC = f"asymptotic Tango score test (n > {EXACT_MAX_N})"
INDEPENDENT_ASYMPTOTIC = f"asymptotic Farrington-Manning score test (n > {EXACT_MAX_N})"

_ARC_STEP = 0.2  # Fisher-Rao arc length between nuisance nodes
_MIN_NODES = 64
_REFINED_MAXIMA = 5  # local maxima of the node grid refined by Brent's method
_NEGLIGIBLE_ROW = 1e-18  # rows this improbable are left out of a tail sum (at most ~1e-15 in all)
_UPPER, _LOWER = "upper", "lower"


@dataclass(frozen=True, slots=True)
class MarginDecision:
    verdict: str
    difference: float
    low: float  # descriptive two-sided Newcombe interval at level 1 - 2 alpha
    high: float
    alpha: float  # level of the NON-INFERIOR test
    alpha_claims: float  # level of the REGRESSED and IMPROVED tests
    margin: float
    design: str  # paired | independent
    n_candidate: int
    n_baseline: int
    p_noninferior: float  # H0: d <= -margin
    p_regressed: float  # H0: d >= -margin
    p_improved: float  # H0: d <= 0
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def newcombe_independent_interval(k1: int, n1: int, k2: int, n2: int, *, level: float = 0.95) -> tuple[float, float]:
    """Newcombe (1998) hybrid score interval for p1 - p2 from independent samples (his method 10)."""
    if n1 == 0 or n2 == 0:
        return -1.0, 1.0
    p1, p2 = k1 / n1, k2 / n2
    w1, w2 = proportion_interval(k1, n1, level=level), proportion_interval(k2, n2, level=level)
    low = p1 - p2 - math.sqrt((p1 - w1.low) ** 2 + (w2.high - p2) ** 2)
    high = p1 - p2 + math.sqrt((w1.high - p1) ** 2 + (p2 - w2.low) ** 2)
    return max(-1.0, low), min(1.0, high)


# --- score statistics -------------------------------------------------------------------------

def _ratio(num: FloatArray, var: FloatArray) -> FloatArray:
    """num / sqrt(var), 0 where the restricted variance vanishes (then num is 0 too)."""
    positive = var > 0
    return np.where(positive, num / np.sqrt(np.where(positive, var, 1.0)), 0.0)


def tango_statistic(n10: ArrayLike, n01: ArrayLike, n: int, d0: float) -> FloatArray:
    """Tango's score statistic for H0 p10 - p01 = d0 from paired counts (any matching shapes).

    Setting the derivative of the trinomial log-likelihood in p01 (with p10 = p01 + d0) to zero
    and clearing denominators gives 2n x^2 - beta x - gamma = 0 with
    beta = n10 (1 + d0) + n01 (1 - d0) - 2 n d0 and gamma = n01 d0 (1 - d0); the polynomial is
    >= 0 at the lower end of the feasible range and <= 0 at the upper end, so the MLE is the
    larger root. Var(n10 - n01) = n (p10 + p01 - d0^2) = n (2 p01 + d0 - d0^2) there.
    """
    b, c = np.asarray(n10, dtype=float), np.asarray(n01, dtype=float)
    beta = b * (1 + d0) + c * (1 - d0) - 2 * n * d0
    gamma = c * d0 * (1 - d0)
    p01 = (beta + np.sqrt(np.maximum(beta * beta + 8 * n * gamma, 0.0))) / (4 * n)
    p01 = np.clip(p01, max(0.0, -d0), (1 - d0) / 2)
    return _ratio(b - c - n * d0, n * (2 * p01 + d0 - d0 * d0))


def farrington_manning_statistic(k1: ArrayLike, n1: int, k2: ArrayLike, n2: int, d0: float) -> FloatArray:
    """Farrington-Manning score statistic for H0 p1 - p2 = d0 from independent counts.

    With x = p2 and p1 = x + d0 the score equation, cleared of denominators, is the cubic
    N x^3 + (d0 (n1 + 2 n2) - N - K) x^2 + (K - d0 (N + 2 k2) + n2 d0^2) x + k2 d0 (1 - d0) = 0
    (N = n1 + n2, K = k1 + k2). It is >= 0 at the lower end of the feasible range and <= 0 at
    the upper end and its leading coefficient is positive, so its three roots are real and the
    MLE is the middle one, taken from the trigonometric solution.
    """
    k1, k2 = np.asarray(k1, dtype=float), np.asarray(k2, dtype=float)
    total = n1 + n2
    a = (d0 * (n1 + 2 * n2) - total - (k1 + k2)) / total
    b = ((k1 + k2) - d0 * (total + 2 * k2) + n2 * d0 * d0) / total
    c = k2 * d0 * (1 - d0) / total
    p = b - a * a / 3  # depressed cubic t^3 + p t + q, x = t - a / 3
    q = 2 * a**3 / 27 - a * b / 3 + c
    r = np.sqrt(np.maximum(-p / 3, 0.0))
    cos_arg = np.where(r > 0, -q / (2 * np.where(r > 0, r, 1.0) ** 3), 0.0)
    angle = np.arccos(np.clip(cos_arg, -1.0, 1.0))
    p2 = np.clip(2 * r * np.cos(angle / 3 - 2 * np.pi / 3) - a / 3, max(0.0, -d0), min(1.0, 1 - d0))
    p1 = p2 + d0
    return _ratio(k1 / n1 - k2 / n2 - d0, p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)


# --- exact unconditional engine ---------------------------------------------------------------

@dataclass(eq=False)
class _SampleSpace:
    """The sample space of one design under H0 d = d0, laid out in rows.

    Row r ~ Binomial(rows_n, theta) for the nuisance theta; within row r the column is
    Binomial(trials[r], within(theta)). ``stat`` (rows, cols) holds the ordering statistic,
    non-decreasing along each row, +inf off the sample space.
    """

    stat: FloatArray
    trials: NDArray[np.int_]
    rows_n: int
    lo: float
    hi: float
    d0: float
    paired: bool
    candidate_n: int = 0  # independent design: candidate episodes (the within-row trials)
    _nodes: tuple[FloatArray, FloatArray, FloatArray, FloatArray] | None = field(default=None, repr=False)
    _levels: FloatArray | None = field(default=None, repr=False)
    _critical: dict[tuple[str, float], float] = field(default_factory=dict, repr=False)

    def within(self, theta: FloatArray) -> FloatArray:
        if self.paired:  # P(candidate-only | discordant) = p10 / psi
            safe = np.where(theta > 0, theta, 1.0)
            return np.clip(np.where(theta > 0, (theta + self.d0) / (2 * safe), 0.5), 0.0, 1.0)
        return np.clip(theta + self.d0, 0.0, 1.0)

    def _information(self, theta: FloatArray) -> FloatArray:
        """Fisher information about theta (interior points only)."""
        if self.paired:
            p10, p01 = (theta + self.d0) / 2, (theta - self.d0) / 2
            return cast(FloatArray, self.rows_n * (0.25 / p10 + 0.25 / p01 + 1 / (1 - theta)))
        p1 = theta + self.d0
        return cast(FloatArray, self.candidate_n / (p1 * (1 - p1)) + self.rows_n / (theta * (1 - theta)))

    def _theta(self, u: FloatArray) -> FloatArray:
        return self.lo + (self.hi - self.lo) * np.sin(u) ** 2

    def nodes(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Nuisance nodes evenly spaced in arc length (angle u, theta, row weights, within rates)."""
        if self._nodes is None:
            fine = 4096
            du = (np.pi / 2) / fine
            mid = (np.arange(fine) + 0.5) * du  # theta = lo + (hi - lo) sin^2 u removes the endpoint singularities
            speed = np.sqrt(self._information(self._theta(mid))) * (self.hi - self.lo) * np.sin(2 * mid)
            arc = np.concatenate([[0.0], np.cumsum(speed) * du])
            count = max(_MIN_NODES, math.ceil(arc[-1] / _ARC_STEP)) + 1
            u = np.interp(np.linspace(0.0, arc[-1], count), arc, np.arange(fine + 1) * du)
            u[0], u[-1] = 0.0, np.pi / 2
            theta = self._theta(u)
            self._nodes = (u, theta, self.row_weights(theta), self.within(theta))
        return self._nodes

    def row_weights(self, rate: FloatArray) -> FloatArray:
        """(len(rate), rows) binomial probabilities of the rows."""
        rows = np.arange(self.rows_n + 1)
        log_comb = gammaln(self.rows_n + 1) - gammaln(rows + 1) - gammaln(self.rows_n - rows + 1)
        rate = np.asarray(rate, dtype=float)[:, None]
        return cast(FloatArray, np.exp(log_comb + xlogy(rows, rate) + xlog1py(self.rows_n - rows, -rate)))

    def counts(self, t: float, tail: str) -> NDArray[np.int_]:
        """Per row, the cells strictly below t (upper tail) or at most t (lower tail)."""
        return cast(NDArray[np.int_], (self.stat < t).sum(axis=1) if tail == _UPPER else (self.stat <= t).sum(axis=1))

    def tail_prob(self, counts: NDArray[np.int_], tail: str, weights: FloatArray, within: FloatArray) -> FloatArray:
        """P(stat >= t) (upper) or P(stat <= t) (lower) for each (row weights, within rate) given."""
        shape = weights.shape
        trials = np.broadcast_to(self.trials, shape)
        if tail == _UPPER:  # P(Binomial(trials, pi) >= k), k = counts
            k = np.broadcast_to(counts, shape)
            cond = (k <= 0).astype(float)
            mid = (k >= 1) & (k <= trials) & (weights > _NEGLIGIBLE_ROW)
            a, b, x = k[mid], trials[mid] - k[mid] + 1, np.broadcast_to(within[:, None], shape)[mid]
        else:  # P(Binomial(trials, pi) <= k), k = counts - 1, as an upper tail of the complement
            k = np.broadcast_to(counts - 1, shape)
            cond = (k >= trials).astype(float)
            mid = (k >= 0) & (k < trials) & (weights > _NEGLIGIBLE_ROW)
            a, b, x = trials[mid] - k[mid], k[mid] + 1, 1 - np.broadcast_to(within[:, None], shape)[mid]
        cond[mid] = betainc(a, b, x)
        return cast(FloatArray, (weights * cond).sum(axis=1))

    def null_prob(self, counts: NDArray[np.int_], tail: str, u: float) -> float:
        theta = self._theta(np.array([u]))
        return float(self.tail_prob(counts, tail, self.row_weights(theta), self.within(theta))[0])

    def p_value(self, t: float, tail: str, *, known_above: float = 1.0) -> float:
        """sup over the nuisance of the null probability of a statistic at least as extreme as t
        (a grid maximum above ``known_above`` is returned unrefined: it settles a comparison)."""
        counts = self.counts(t, tail)
        u, _, weights, within = self.nodes()
        grid = self.tail_prob(counts, tail, weights, within)
        best = float(grid.max())
        if best > known_above or best >= 1.0 - 1e-12 or best <= 0.0:
            return min(1.0, best)
        padded = np.concatenate([[-1.0], grid, [-1.0]])
        peaks = np.flatnonzero((grid >= padded[:-2]) & (grid >= padded[2:]))
        for k in peaks[np.argsort(grid[peaks])[::-1][:_REFINED_MAXIMA]]:
            left, right = u[max(k - 1, 0)], u[min(k + 1, u.size - 1)]
            found = optimize.minimize_scalar(lambda x: -self.null_prob(counts, tail, x), bounds=(left, right),
                                             method="bounded", options={"xatol": 1e-6 * (right - left)})
            best = max(best, -float(found.fun))
        return min(1.0, best)

    def levels(self) -> FloatArray:
        if self._levels is None:
            self._levels = np.unique(self.stat[np.isfinite(self.stat)])
        return self._levels

    def critical(self, tail: str, alpha: float) -> float:
        """Rejection threshold at level alpha: reject when stat >= it (upper) or <= it (lower);
        +inf (upper) or -inf (lower) when no outcome is extreme enough."""
        key = (tail, alpha)
        if key not in self._critical:
            levels = self.levels()

            def at_level(level: float) -> bool:
                return self.p_value(level, tail, known_above=alpha) <= alpha

            if tail == _UPPER:  # smallest level whose p-value is <= alpha (p falls as the level rises)
                lo, hi = -1, levels.size - 1
                if not at_level(levels[hi]):
                    self._critical[key] = math.inf
                    return math.inf
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    lo, hi = (lo, mid) if at_level(levels[mid]) else (mid, hi)
                self._critical[key] = float(levels[hi])
            else:  # largest level whose p-value is <= alpha
                lo, hi = 0, levels.size
                if not at_level(levels[lo]):
                    self._critical[key] = -math.inf
                    return -math.inf
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    lo, hi = (mid, hi) if at_level(levels[mid]) else (lo, mid)
                self._critical[key] = float(levels[lo])
        return self._critical[key]


@lru_cache(maxsize=6)
def _paired_space(n: int, d0: float) -> _SampleSpace:
    """Rows: discordant pairs s = n10 + n01 ~ Bin(n, psi); columns: n10 | s ~ Bin(s, p10 / psi)."""
    s = np.arange(n + 1)[:, None]
    n10 = np.arange(n + 1)[None, :]
    valid = n10 <= s
    stat = np.where(valid, tango_statistic(n10, np.where(valid, s - n10, 0), n, d0), np.inf)
    stat = np.maximum.accumulate(stat, axis=1)  # monotone rows, needed by the row-wise tails (a no-op for Tango)
    return _SampleSpace(stat, np.arange(n + 1), n, abs(d0), 1.0, d0, paired=True)


@lru_cache(maxsize=6)
def _independent_space(n_c: int, n_b: int, d0: float) -> _SampleSpace:
    """Rows: baseline successes ~ Bin(n_b, p_b); columns: candidate successes ~ Bin(n_c, p_b + d0)."""
    k_b = np.arange(n_b + 1)[:, None]
    k_c = np.arange(n_c + 1)[None, :]
    stat = np.maximum.accumulate(farrington_manning_statistic(k_c, n_c, k_b, n_b, d0), axis=1)
    return _SampleSpace(stat, np.full(n_b + 1, n_c), n_b, max(0.0, -d0), min(1.0, 1 - d0), d0, paired=False,
                        candidate_n=n_c)


# --- decisions --------------------------------------------------------------------------------

def _check_levels(margin: float, alpha: float, alpha_claims: float | None) -> float:
    if not 0 < margin < 1:
        raise ValueError(f"margin must be in (0, 1), got {margin}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    alpha_claims = alpha if alpha_claims is None else alpha_claims
    if not 0 < alpha_claims < 0.5:
        raise ValueError(f"alpha_claims must be in (0, 0.5), got {alpha_claims}")
    return alpha_claims


def _verdict(p_noninferior: float, p_regressed: float, p_improved: float, alpha: float, alpha_claims: float) -> str:
    if p_regressed <= alpha_claims:
        return REGRESSED
    if p_noninferior <= alpha:
        return IMPROVED if p_improved <= alpha_claims else NON_INFERIOR
    return INCONCLUSIVE


def paired_p_values(n10: int, n01: int, n: int, *, margin: float) -> tuple[float, float, float, str]:
    """(p_noninferior, p_regressed, p_improved, method) for n10 candidate-only and n01
    baseline-only successes among n pairs."""
    if not (n10 >= 0 and n01 >= 0 and n10 + n01 <= n):
        raise ValueError(f"need 0 <= n10, n01 and n10 + n01 <= n, got n10={n10}, n01={n01}, n={n}")
    if n == 0:
        return 1.0, 1.0, 1.0, PAIRED_EXACT
    if n > EXACT_MAX_N:
        t_margin = float(tango_statistic(n10, n01, n, -margin))
        t_zero = float(tango_statistic(n10, n01, n, 0.0))
        norm = stats.norm
        return float(norm.sf(t_margin)), float(norm.cdf(t_margin)), float(norm.sf(t_zero)), PAIRED_ASYMPTOTIC
    at_margin, at_zero = _paired_space(n, -margin), _paired_space(n, 0.0)
    row, col = n10 + n01, n10
    return (at_margin.p_value(at_margin.stat[row, col], _UPPER), at_margin.p_value(at_margin.stat[row, col], _LOWER),
            at_zero.p_value(at_zero.stat[row, col], _UPPER), PAIRED_EXACT)


def paired_decision(candidate: NDArray[Any], baseline: NDArray[Any], *, margin: float, alpha: float,
                    alpha_claims: float | None = None) -> MarginDecision:
    """Verdict from outcomes (n,) in {0, 1} on the same initial conditions, aligned by position."""
    alpha_claims = _check_levels(margin, alpha, alpha_claims)
    c = np.asarray(candidate, dtype=bool)
    b = np.asarray(baseline, dtype=bool)
    if c.shape != b.shape or c.ndim != 1:
        raise ValueError(f"candidate and baseline must be 1-d of the same length, got shapes {c.shape} and {b.shape}")
    n = c.size
    both, c_only, b_only = int(np.sum(c & b)), int(np.sum(c & ~b)), int(np.sum(~c & b))
    low, high = newcombe_paired_interval(both, c_only, b_only, n - both - c_only - b_only, level=1 - 2 * alpha)
    p_ni, p_reg, p_imp, method = paired_p_values(c_only, b_only, n, margin=margin)
    verdict = _verdict(p_ni, p_reg, p_imp, alpha, alpha_claims) if n else INCONCLUSIVE
    diff = (c_only - b_only) / n if n else 0.0
    return MarginDecision(verdict, diff, low, high, alpha, alpha_claims, margin, "paired", n, n, p_ni, p_reg, p_imp,
                          method)


def independent_p_values(k_c: int, n_c: int, k_b: int, n_b: int, *, margin: float) -> tuple[float, float, float, str]:
    """(p_noninferior, p_regressed, p_improved, method) for k_c / n_c against k_b / n_b."""
    if not (0 <= k_c <= n_c and 0 <= k_b <= n_b):
        raise ValueError(f"need 0 <= successes <= episodes, got k_c={k_c}, n_c={n_c}, k_b={k_b}, n_b={n_b}")
    if n_c == 0 or n_b == 0:
        return 1.0, 1.0, 1.0, INDEPENDENT_EXACT
    if max(n_c, n_b) > EXACT_MAX_N:
        t_margin = float(farrington_manning_statistic(k_c, n_c, k_b, n_b, -margin))
        t_zero = float(farrington_manning_statistic(k_c, n_c, k_b, n_b, 0.0))
        norm = stats.norm
        return float(norm.sf(t_margin)), float(norm.cdf(t_margin)), float(norm.sf(t_zero)), INDEPENDENT_ASYMPTOTIC
    at_margin, at_zero = _independent_space(n_c, n_b, -margin), _independent_space(n_c, n_b, 0.0)
    return (at_margin.p_value(at_margin.stat[k_b, k_c], _UPPER), at_margin.p_value(at_margin.stat[k_b, k_c], _LOWER),
            at_zero.p_value(at_zero.stat[k_b, k_c], _UPPER), INDEPENDENT_EXACT)


def independent_decision(k_candidate: int, n_candidate: int, k_baseline: int, n_baseline: int, *, margin: float,
                         alpha: float, alpha_claims: float | None = None) -> MarginDecision:
    """Verdict from success counts of runs on different initial conditions."""
    alpha_claims = _check_levels(margin, alpha, alpha_claims)
    low, high = newcombe_independent_interval(k_candidate, n_candidate, k_baseline, n_baseline, level=1 - 2 * alpha)
    p_ni, p_reg, p_imp, method = independent_p_values(k_candidate, n_candidate, k_baseline, n_baseline, margin=margin)
    if n_candidate == 0 or n_baseline == 0:
        return MarginDecision(INCONCLUSIVE, 0.0, low, high, alpha, alpha_claims, margin, "independent", n_candidate,
                              n_baseline, p_ni, p_reg, p_imp, method)
    diff = k_candidate / n_candidate - k_baseline / n_baseline
    return MarginDecision(_verdict(p_ni, p_reg, p_imp, alpha, alpha_claims), diff, low, high, alpha, alpha_claims,
                          margin, "independent", n_candidate, n_baseline, p_ni, p_reg, p_imp, method)


def _verdict_grid(at_margin: _SampleSpace, at_zero: _SampleSpace, alpha: float, alpha_claims: float
                  ) -> NDArray[np.str_]:
    """Verdict of every cell of a sample space, from the critical values of the three tests."""
    regressed = at_margin.stat <= at_margin.critical(_LOWER, alpha_claims)
    passes = at_margin.stat >= at_margin.critical(_UPPER, alpha)
    improved = at_zero.stat >= at_zero.critical(_UPPER, alpha_claims)
    grid = np.where(regressed, REGRESSED, np.where(passes, np.where(improved, IMPROVED, NON_INFERIOR), INCONCLUSIVE))
    return np.where(np.isfinite(at_margin.stat), grid, "")


def paired_verdict_table(n: int, *, margin: float, alpha: float, alpha_claims: float | None = None) -> NDArray[np.str_]:
    """(n + 1, n + 1) verdicts indexed [n10, n01]; '' where n10 + n01 > n. What ``paired_decision``
    returns for every possible outcome, for enumerating error rates and power."""
    alpha_claims = _check_levels(margin, alpha, alpha_claims)
    _check_exact_n(n)
    by_row = _verdict_grid(_paired_space(n, -margin), _paired_space(n, 0.0), alpha, alpha_claims)  # [s, n10]
    n10, n01 = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    s = n10 + n01
    return np.where(s <= n, by_row[np.minimum(s, n), n10], "")


def independent_verdict_table(n_c: int, n_b: int, *, margin: float, alpha: float,
                              alpha_claims: float | None = None) -> NDArray[np.str_]:
    """(n_c + 1, n_b + 1) verdicts indexed [k_c, k_b], as ``independent_decision`` returns them."""
    alpha_claims = _check_levels(margin, alpha, alpha_claims)
    _check_exact_n(n_c)
    _check_exact_n(n_b)
    return _verdict_grid(_independent_space(n_c, n_b, -margin), _independent_space(n_c, n_b, 0.0), alpha,
                         alpha_claims).T


# --- planning ---------------------------------------------------------------------------------

_CLAIMS = ("regressed", "non-inferior")


def _check_exact_n(n: int) -> None:
    if not 1 <= n <= EXACT_MAX_N:
        raise ValueError(f"n must be in [1, {EXACT_MAX_N}] for the exact test, got {n}")


def gate_power(n: int, p10: float, p01: float, *, margin: float, alpha: float, claim: str) -> float:
    """Exact probability that n pairs with cell rates p10 (candidate only) and p01 (baseline only)
    give the claim: "regressed" (REGRESSED test at ``alpha``) or "non-inferior" (a passing
    verdict, NON-INFERIOR or IMPROVED, from the non-inferiority test at ``alpha``; the REGRESSED
    region is disjoint from it whenever both levels are below 1/2)."""
    if claim not in _CLAIMS:
        raise ValueError(f"claim must be one of {', '.join(_CLAIMS)}, got {claim!r}")
    _check_levels(margin, alpha, None)
    _check_exact_n(n)
    if not (p10 >= 0 and p01 >= 0 and p10 + p01 <= 1):
        raise ValueError(f"need p10, p01 >= 0 and p10 + p01 <= 1, got p10={p10}, p01={p01}")
    space = _paired_space(n, -margin)
    tail = _LOWER if claim == "regressed" else _UPPER
    threshold = space.critical(tail, alpha)
    if not math.isfinite(threshold):
        return 0.0
    psi = np.array([p10 + p01])
    within = np.array([p10 / psi[0] if psi[0] > 0 else 0.5])
    return float(min(1.0, space.tail_prob(space.counts(threshold, tail), tail, space.row_weights(psi), within)[0]))


def _smallest_n(power_at: Callable[[int], float], target: float, start: float, *, look_below: int = 8) -> int:
    """Smallest n with power_at(n) >= target whose ``look_below`` predecessors all fall short,
    searched from a normal-approximation ``start``: gallop to a bracket, bisect, then scan down."""
    cache: dict[int, float] = {}

    def ok(n: int) -> bool:
        if n not in cache:
            cache[n] = power_at(n)
        return cache[n] >= target

    n = int(min(max(math.ceil(start), 1), EXACT_MAX_N))
    if ok(n):
        hi, lo = n, n
        while lo > 1 and ok(lo):
            hi, lo = lo, max(1, int(lo / 1.15))
        if ok(lo):
            return lo  # lo == 1
    else:
        lo, hi = n, n
        while not ok(hi):
            if hi == EXACT_MAX_N:
                raise ValueError(f"more than {EXACT_MAX_N} pairs per task would be needed (power "
                                 f"{cache[hi]:.3f} < {target} at {EXACT_MAX_N}); widen the margin or the drop")
            lo, hi = hi, min(EXACT_MAX_N, math.ceil(hi * 1.15) + 1)
    while hi - lo > 1:  # ok(hi), not ok(lo)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    best, misses, n = hi, 0, hi - 1
    while n >= 1 and misses < look_below:
        if ok(n):
            best, misses = n, 0
        else:
            misses += 1
        n -= 1
    return best


def _check_power(alpha: float, power: float) -> None:
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")


def _z_start(alpha: float, power: float, var_null: float, var_true: float, distance: float) -> float:
    """Normal-approximation n for a one-sided score test: where the exact search starts."""
    z_null = stats.norm.ppf(1 - alpha) * math.sqrt(max(var_null, 1e-4))
    z_power = stats.norm.ppf(power) * math.sqrt(max(var_true, 0.0))
    return float(((z_null + z_power) / distance) ** 2)


def n_gate(p_baseline: float, drop: float, margin: float, *, alpha: float, power: float = 0.8,
           discordance: float | None = None) -> int:
    """Pairs per task for the exact gate to call a candidate ``drop`` below ``p_baseline``
    REGRESSED with probability >= ``power`` (REGRESSED test at ``alpha``: pass the per-task
    level, alpha / tasks). ``discordance`` defaults to independent outcomes within a pair."""
    if not 0 < p_baseline <= 1:
        raise ValueError(f"p_baseline must be in (0, 1], got {p_baseline}")
    if not p_baseline - drop >= 0:
        raise ValueError(f"need p_baseline - drop >= 0, got p_baseline={p_baseline}, drop={drop}")
    if not 0 < margin < drop:
        raise ValueError(f"need drop > margin > 0 to detect a regression, got drop={drop}, margin={margin}")
    _check_power(alpha, power)
    p_c = p_baseline - drop
    psi = p_baseline * (1 - p_c) + p_c * (1 - p_baseline) if discordance is None else discordance
    most = min(p_baseline + p_c, 2 - p_baseline - p_c)
    if not drop - 1e-12 <= psi <= most + 1e-12:
        raise ValueError(f"discordance must be in [drop, min(p_b + p_c, 2 - p_b - p_c)] = [{drop:g}, {most:g}] "
                         f"for rates {p_baseline:g} and {p_c:g}, got {psi:g}")
    psi = min(max(psi, drop), most)
    p10, p01 = max(0.0, (psi - drop) / 2), min(1.0, (psi + drop) / 2)  # rounding at psi = drop
    start = _z_start(alpha, power, psi - margin**2, psi - drop**2, drop - margin)
    return _smallest_n(lambda n: gate_power(n, p10, p01, margin=margin, alpha=alpha, claim="regressed"), power, start)


def n_gate_pass(p_baseline: float, margin: float, *, alpha: float, power: float = 0.8,
                discordance: float | None = None) -> int:
    """Pairs per task for an equivalent candidate (same rate as ``p_baseline``) to pass
    (NON-INFERIOR or IMPROVED) with probability >= ``power``, non-inferiority test at ``alpha``.
    ``discordance`` defaults to independent outcomes, 2 p (1 - p); 0 is allowed (a deterministic
    policy against itself: then every pair agrees and power is 0 or 1)."""
    if not 0 <= p_baseline <= 1:
        raise ValueError(f"p_baseline must be in [0, 1], got {p_baseline}")
    if not 0 < margin < 1:
        raise ValueError(f"margin must be in (0, 1), got {margin}")
    _check_power(alpha, power)
    psi = 2 * p_baseline * (1 - p_baseline) if discordance is None else discordance
    most = min(2 * p_baseline, 2 - 2 * p_baseline)
    if not 0 <= psi <= most + 1e-12:
        raise ValueError(f"discordance must be in [0, min(2p, 2 - 2p)] = [0, {most:g}] for rate {p_baseline:g}, "
                         f"got {psi:g}")
    psi = min(psi, most)
    start = _z_start(alpha, power, psi + margin - margin**2, psi, margin)
    return _smallest_n(lambda n: gate_power(n, psi / 2, psi / 2, margin=margin, alpha=alpha, claim="non-inferior"),
                       power, start)


# --- sequential and overall -------------------------------------------------------------------

def sequential_verdict(diffs: NDArray[Any], *, margin: float, alpha: float) -> tuple[str, dict[str, float]]:
    """Anytime-valid verdict after the paired differences ``diffs`` (n,) in {-1, 0, 1} seen so far
    (candidate - baseline, in a fixed order). Each hypothesis is tested at ``alpha``; the verdict is
    the first one whose running maximum wealth crossed 1/alpha (REGRESSED before NON-INFERIOR).
    Returns the verdict and the maximum log wealth of each test."""
    d = np.asarray(diffs, dtype=float)
    tests = {REGRESSED: (-margin, "less"), NON_INFERIOR: (-margin, "greater"), IMPROVED: (0.0, "greater")}
    best = {name: float(log_wealth_mean(d, null, alternative=alt).max()) if d.size else 0.0
            for name, (null, alt) in tests.items()}
    threshold = math.log(1 / alpha)
    if best[REGRESSED] >= threshold:
        return REGRESSED, best
    if best[NON_INFERIOR] >= threshold:
        return (IMPROVED if best[IMPROVED] >= threshold else NON_INFERIOR), best
    return INCONCLUSIVE, best


def overall(verdicts: list[str]) -> str:
    """One verdict for several tasks: any REGRESSED, else any INCONCLUSIVE; IMPROVED only when
    every task is non-inferior and at least one improved."""
    if not verdicts:
        return INCONCLUSIVE
    if REGRESSED in verdicts:
        return REGRESSED
    if INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    return IMPROVED if IMPROVED in verdicts else NON_INFERIOR
