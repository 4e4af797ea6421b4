"""Anytime-valid paired tests on bounded scores by betting (Waudby-Smith & Ramdas, 2024).

Each initial condition gives a paired difference d_i = score_A - score_B in [-1, 1]: a progress
score in [0, 1] per episode, or a success in {0, 1} (then d_i is in {-1, 0, 1} and only discordant
pairs move the wealth). To test H0: E[d_i | past] = null, a gambler starts with wealth 1 and stakes
a fraction lambda_i of it on the next difference,

    K_n = prod_{i <= n} (1 + lambda_i (d_i - null)),

with lambda_i chosen from d_1..d_{i-1} only (predictable) and capped so every factor stays positive.
Under H0 each factor has conditional mean 1, so K_n is a nonnegative (super)martingale and Ville's
inequality gives P(sup_n K_n >= 1/alpha) <= alpha: the evaluator may look after every episode and
stop at the first n with K_n >= 1/alpha, with no assumption on the score's distribution (skew,
ties, point masses at 0 and 1 are all fine). Two-sided tests average the wealth of a bet on A and
a bet on B (a mixture, itself a martingale), which is never worse than splitting alpha.

The bet decides how fast the wealth grows when H0 is false; its log-growth E[log(1 + lambda d)] is
largest at the Kelly bet, about lambda* = E[d] / E[d^2]. Two strategies:

- plain (``effect=None``): the predictable plug-in lambda_i = mean / second moment of the past
  differences (the aGRAPA bet of Waudby-Smith & Ramdas), or online Newton step (``strategy="ons"``,
  Cutkosky & Orabona); valid and reasonable for any sequence, but it has to learn the effect first.
- tuned (``effect=PlannedEffect(...)``): the same plug-in started from ``prior_weight``
  pseudo-episodes at the effect the evaluation was planned for, so it bets near the planned Kelly
  bet from the first episode and still adapts if the effect is not the planned one
  (``prior_weight=inf``: the constant Kelly bet, best at the planned effect, fragile away from it).
  For binary outcomes this is the Bayes factor of a Beta prior on P(A wins | discordant) centred on
  the planned value, where ``evalsuite.stats.sequential`` centres a flat prior on 1/2.

Every strategy is valid whatever the planned effect was; planning only changes the power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

Alternative = Literal["two-sided", "greater", "less"]
Strategy = Literal["plugin", "ons"]

ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")
STRATEGIES: tuple[str, ...] = ("plugin", "ons")
DEFAULT_CAP = 0.75  # the worst single difference costs at most 75% of the wealth
DEFAULT_PRIOR_WEIGHT = 200.0  # pseudo-episodes behind a planned effect: near the constant Kelly bet
# at the planned effect, yet it follows the data within a few hundred episodes when the plan is off


@dataclass(frozen=True, slots=True)
class PlannedEffect:
    """The alternative an evaluation was planned for, as moments of d = score_A - score_B.

    ``mean`` is E[d] (two-sided tests bet its size both ways; one-sided tests use its sign), and
    ``second_moment`` is E[d^2] = Var(d) + E[d]^2, what sets the Kelly bet mean / second_moment.
    """

    mean: float
    second_moment: float

    def __post_init__(self) -> None:
        if not -1 < self.mean < 1:
            raise ValueError(f"planned mean difference must be in (-1, 1), got {self.mean}")
        if not self.mean**2 <= self.second_moment <= 1 or self.second_moment <= 0:
            raise ValueError(f"second moment must be in [mean^2, 1] and > 0, got {self.second_moment}")

    @classmethod
    def binary(cls, p_baseline: float, delta: float, discordance: float | None = None) -> PlannedEffect:
        """Success rates p_baseline (B) and p_baseline + delta (A); d is in {-1, 0, 1}, so
        E[d^2] is the discordance psi (default: independent outcomes, as in ``power.n_paired``)."""
        p_a = p_baseline + delta
        if not 0 < p_baseline < 1 or not 0 < p_a < 1:
            raise ValueError(f"success rates must be in (0, 1), got {p_baseline} and {p_a}")
        psi = p_baseline * (1 - p_a) + p_a * (1 - p_baseline) if discordance is None else discordance
        return cls(delta, psi)

    @classmethod
    def from_mean_sd(cls, mean: float, sd: float) -> PlannedEffect:
        """A planned mean difference of scores and the standard deviation of the differences."""
        return cls(mean, sd**2 + mean**2)

    @classmethod
    def from_pilot(cls, diffs: ArrayLike) -> PlannedEffect:
        """Moments of paired differences from a pilot (or a simulation of the planned model)."""
        d = np.asarray(diffs, dtype=float).ravel()
        if d.size == 0 or not np.all((d >= -1) & (d <= 1)):
            raise ValueError("a pilot needs at least one paired difference, all in [-1, 1]")
        return cls(float(d.mean()), max(float(np.mean(d * d)), 1e-12))

    @property
    def kelly(self) -> float:
        """lambda* = E[d] / E[d^2]: exact for d in {-1, 0, 1}, second-order otherwise."""
        return self.mean / self.second_moment


def paired_diffs(scores_a: ArrayLike, scores_b: ArrayLike) -> NDArray[np.float64]:
    """d = score_A - score_B for scores in [0, 1] (progress or success), paired by position."""
    a = np.asarray(scores_a, dtype=float)
    b = np.asarray(scores_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same shape, got {a.shape} and {b.shape}")
    if not (np.all((a >= 0) & (a <= 1)) and np.all((b >= 0) & (b <= 1))):
        raise ValueError("scores must lie in [0, 1] (NaN is not a score)")
    return cast(NDArray[np.float64], a - b)


def _check(diffs: ArrayLike, null: float, alternative: str, strategy: str, cap: float, prior_weight: float,
           effect: PlannedEffect | None) -> NDArray[np.float64]:
    d = np.asarray(diffs, dtype=float)
    if d.ndim == 0:
        raise ValueError("diffs must have an episode axis (the last one)")
    if not np.all((d >= -1) & (d <= 1)):
        raise ValueError("paired differences must lie in [-1, 1] (NaN is not a difference)")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not -1 < null < 1:
        raise ValueError(f"null must be in (-1, 1), got {null}")
    if not 0 < cap < 1:
        raise ValueError(f"cap must be in (0, 1), got {cap}")
    if not prior_weight > 0:
        raise ValueError(f"prior_weight must be > 0 (inf: a constant bet), got {prior_weight}")
    if strategy == "ons" and effect is not None:
        raise ValueError("strategy='ons' learns its bet from the data alone: give no planned effect")
    return cast(NDArray[np.float64], d)


def _side(d: NDArray[np.float64], sign: float, null: float, *, strategy: str, cap: float,
          prior_mean: float, prior_m2: float, prior_weight: float) -> NDArray[np.float64]:
    """Running log wealth of one bet that E[sign (d - null)] > 0, lambda in [0, cap / worst loss].

    x = sign (d - null) >= -(1 + sign null), so lambda <= cap / (1 + sign null) keeps every factor
    1 + lambda x >= 1 - cap > 0. ``prior_*`` are the planned mean and E[x^2], worth
    ``prior_weight`` pseudo-episodes (plug-in only).
    """
    x = sign * (d - null)
    limit = cap / (1 + sign * null)
    lead = x.shape[:-1]
    out = np.empty(x.shape)
    running = np.zeros(lead)
    if strategy == "ons":
        lam = np.zeros(lead)
        curvature = np.ones(lead)
        step = 2 / (2 - math.log(3))
        for i in range(x.shape[-1]):
            xi = x[..., i]
            running = running + np.log1p(lam * xi)
            out[..., i] = running
            grad = xi / (1 + lam * xi)  # derivative of log(1 + lam x) in lam
            curvature = curvature + grad * grad
            lam = np.clip(lam + step * grad / curvature, 0.0, limit)
        return out
    if math.isinf(prior_weight):  # the constant Kelly bet of the plan
        lam_const = min(max(prior_mean / prior_m2, 0.0), limit)
        return cast(NDArray[np.float64], np.cumsum(np.log1p(lam_const * x), axis=-1))
    s1 = np.full(lead, prior_weight * prior_mean)
    s2 = np.full(lead, prior_weight * prior_m2)
    for i in range(x.shape[-1]):
        xi = x[..., i]
        lam = np.clip(s1 / s2, 0.0, limit)  # (pseudo + past) mean / second moment
        running = running + np.log1p(lam * xi)
        out[..., i] = running
        s1 = s1 + xi
        s2 = s2 + xi * xi
    return out


def _paths(diffs: ArrayLike, alternative: str, null: float, effect: PlannedEffect | None, prior_weight: float,
           strategy: str, cap: float) -> dict[float, NDArray[np.float64]]:
    """Log wealth of the bet on A (+1) and/or on B (-1) that the alternative calls for."""
    d = _check(diffs, null, alternative, strategy, cap, prior_weight, effect)
    sides = {"greater": (1.0,), "less": (-1.0,), "two-sided": (1.0, -1.0)}[alternative]
    paths = {}
    for s in sides:
        if effect is None:  # one pseudo-episode at no effect: no bet until the data lean one way
            prior_mean, prior_m2, weight = 0.0, 0.25, 1.0
        else:
            # the planned E[d] behind this side: its size, pointing this way, when two-sided
            mean_d = s * abs(effect.mean) if alternative == "two-sided" else effect.mean
            prior_mean = s * (mean_d - null)  # planned E[x], x = s (d - null)
            prior_m2 = max(effect.second_moment - 2 * mean_d * null + null**2, 1e-12)  # E[(d - null)^2]
            weight = prior_weight
        paths[s] = _side(d, s, null, strategy=strategy, cap=cap, prior_mean=prior_mean, prior_m2=prior_m2,
                         prior_weight=weight)
    return paths


def log_e_process(diffs: ArrayLike, *, alternative: Alternative = "two-sided", null: float = 0.0,
                  effect: PlannedEffect | None = None, prior_weight: float = DEFAULT_PRIOR_WEIGHT,
                  strategy: Strategy = "plugin", cap: float = DEFAULT_CAP) -> NDArray[np.float64]:
    """Running log e-value of H0: E[d] = null (two-sided), <= null ("greater") or >= null ("less").

    ``diffs`` is (..., n) with the episodes on the last axis; returns the (..., n) path. Two-sided:
    log((K+ + K-) / 2), the mixture of the bets on A and on B. ``prior_weight`` is how many
    pseudo-episodes the planned ``effect`` is worth (inf: its constant Kelly bet); ONS takes no plan.
    """
    paths = _paths(diffs, alternative, null, effect, prior_weight, strategy, cap)
    if len(paths) == 1:
        return next(iter(paths.values()))
    return cast(NDArray[np.float64], np.logaddexp(paths[1.0], paths[-1.0]) - math.log(2))


def first_decision(diffs: ArrayLike, *, alpha: float, alternative: Alternative = "two-sided",
                   null: float = 0.0, effect: PlannedEffect | None = None,
                   prior_weight: float = DEFAULT_PRIOR_WEIGHT, strategy: Strategy = "plugin",
                   cap: float = DEFAULT_CAP) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(episodes used, direction) at the first look with e-value >= 1/alpha; (-1, 0) if none.

    Direction is +1 when A is better (E[d] > null), -1 when B is. Stopping there is anytime-valid:
    P(any decision | H0) <= alpha however often one looks.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    paths = _paths(diffs, alternative, null, effect, prior_weight, strategy, cap)
    if len(paths) == 2:
        up, down = paths[1.0], paths[-1.0]
        log_e = np.logaddexp(up, down) - math.log(2)
        lean = np.where(up >= down, 1, -1)
    else:
        (sign, log_e), = paths.items()
        lean = np.full(log_e.shape, int(sign))
    reject = log_e >= math.log(1 / alpha)
    if reject.shape[-1] == 0:  # no episodes yet
        return np.full(reject.shape[:-1], -1, dtype=np.intp), np.zeros(reject.shape[:-1], dtype=np.intp)
    hit = reject.any(axis=-1)
    first = np.argmax(reject, axis=-1)
    direction = np.take_along_axis(lean, first[..., None], axis=-1)[..., 0]
    return np.where(hit, first + 1, -1).astype(np.intp), np.where(hit, direction, 0).astype(np.intp)


def first_rejection(diffs: ArrayLike, *, alpha: float, alternative: Alternative = "two-sided",
                    null: float = 0.0, effect: PlannedEffect | None = None,
                    prior_weight: float = DEFAULT_PRIOR_WEIGHT, strategy: Strategy = "plugin",
                    cap: float = DEFAULT_CAP) -> NDArray[np.intp]:
    """Episodes used at the first look with e-value >= 1/alpha, or -1 (see ``first_decision``)."""
    return first_decision(diffs, alpha=alpha, alternative=alternative, null=null, effect=effect,
                          prior_weight=prior_weight, strategy=strategy, cap=cap)[0]


def decide(scores_a: ArrayLike, scores_b: ArrayLike, *, alpha: float, effect: PlannedEffect | None = None,
           prior_weight: float = DEFAULT_PRIOR_WEIGHT, strategy: Strategy = "plugin",
           cap: float = DEFAULT_CAP) -> str:
    """'A better', 'B better' or 'undecided' after the paired episodes so far (two-sided; a
    decision, once reached at some look, stands)."""
    d = paired_diffs(scores_a, scores_b)
    if d.size == 0:
        return "undecided"
    _, direction = first_decision(d, alpha=alpha, effect=effect, prior_weight=prior_weight,
                                  strategy=strategy, cap=cap)
    return {1: "A better", -1: "B better"}.get(int(direction), "undecided")


def discordant_first_rejection(a_outcomes: ArrayLike, b_outcomes: ArrayLike, *, alpha: float,
                               effect: PlannedEffect | None = None,
                               prior_weight: float = DEFAULT_PRIOR_WEIGHT) -> NDArray[np.intp]:
    """Binary successes (..., n): the same test on d in {-1, 0, 1}; concordant pairs bet nothing.

    With ``effect=PlannedEffect.binary(p_b, delta, psi)`` it bets about (p10 - p01) / psi on each
    discordant pair, the likelihood ratio of the planned P(A wins | discordant) against 1/2,
    instead of the flat-prior mixture of ``evalsuite.stats.sequential``.
    """
    a = np.asarray(a_outcomes)
    b = np.asarray(b_outcomes)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need the same shape, got {a.shape} and {b.shape}")
    d = a.astype(bool).astype(float) - b.astype(bool).astype(float)
    # a cap of 0.99 lets the plug-in reach the binary Kelly bet (p10 - p01) / psi even for large effects
    cap = DEFAULT_CAP if effect is None else 0.99
    return first_rejection(d, alpha=alpha, effect=effect, prior_weight=prior_weight, cap=cap)


def equivalence_first(diffs: ArrayLike, *, margin: float, alpha: float, effect: PlannedEffect | None = None,
                      prior_weight: float = DEFAULT_PRIOR_WEIGHT, cap: float = DEFAULT_CAP) -> NDArray[np.intp]:
    """Episodes used when |E[d]| < margin is shown (both H0: E[d] <= -margin and H0: E[d] >= margin
    rejected, each at alpha: an intersection-union test), or -1. ``effect`` is the planned E[d]
    (e.g. 0 with its E[d^2]), not its size."""
    if not 0 < margin < 1:
        raise ValueError(f"margin must be in (0, 1), got {margin}")
    threshold = math.log(1 / alpha)
    above = log_e_process(diffs, alternative="greater", null=-margin, effect=effect, prior_weight=prior_weight,
                          cap=cap) >= threshold
    below = log_e_process(diffs, alternative="less", null=margin, effect=effect, prior_weight=prior_weight,
                          cap=cap) >= threshold
    both = np.maximum.accumulate(above, axis=-1) & np.maximum.accumulate(below, axis=-1)
    first = np.argmax(both, axis=-1) + 1
    return np.where(both.any(axis=-1), first, -1).astype(np.intp)
