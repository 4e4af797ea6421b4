"""Anytime-valid paired comparison: an e-process over the discordant pairs.

On initial conditions where exactly one of two policies succeeds, let theta be the probability
that it is A. Equal success rates mean theta = 1/2 (McNemar's null). The Beta(a0, a0)-mixture
likelihood ratio against theta = 1/2,

    E_n = B(a0 + b, a0 + c) / B(a0, a0) / 2^-(b + c),

with b (c) the discordant pairs won by A (B) so far, is a nonnegative martingale with mean 1
under the null, so by Ville's inequality P(sup_n E_n >= 1/alpha) <= alpha: the evaluator may look
after every pair and stop as soon as E_n >= 1/alpha without inflating the error, unlike a fixed-n
test applied repeatedly. Concordant pairs cost episodes but carry no evidence about the difference.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln


def log_e_value(a_wins: ArrayLike, b_wins: ArrayLike, *, prior: float = 1.0) -> NDArray[np.float64]:
    """log E for discordant counts (any matching shapes)."""
    b = np.asarray(a_wins, dtype=float)
    c = np.asarray(b_wins, dtype=float)
    return cast(NDArray[np.float64], betaln(prior + b, prior + c) - betaln(prior, prior) + (b + c) * np.log(2.0))


def decide(a_wins: int, b_wins: int, *, alpha: float, prior: float = 1.0) -> str:
    """'A better', 'B better', or 'undecided' at this look."""
    if log_e_value(a_wins, b_wins, prior=prior) >= np.log(1 / alpha):
        return "A better" if a_wins > b_wins else "B better"
    return "undecided"


def first_rejection(a_outcomes: NDArray[Any], b_outcomes: NDArray[Any], *, alpha: float,
                    prior: float = 1.0) -> NDArray[np.intp]:
    """Index (pairs used) of the first look with E >= 1/alpha, or -1; outcomes are (sims, n) in {0, 1}."""
    a = np.asarray(a_outcomes, dtype=bool)
    b = np.asarray(b_outcomes, dtype=bool)
    wins_a = np.cumsum(a & ~b, axis=-1)
    wins_b = np.cumsum(~a & b, axis=-1)
    reject = log_e_value(wins_a, wins_b, prior=prior) >= np.log(1 / alpha)
    first = np.argmax(reject, axis=-1) + 1
    return np.where(reject.any(axis=-1), first, -1)


def log_wealth_mean(diffs: NDArray[Any], null: float, *, alternative: str) -> NDArray[np.float64]:
    """Running log wealth of a betting e-process for the mean of paired differences in [-1, 1].

    ``diffs`` is (..., n), D_i = outcome_A - outcome_B. Against H0: E[D] <= null
    (``alternative="greater"``) the wealth is prod_i (1 + lambda_i (D_i - null)); against
    H0: E[D] >= null (``"less"``) the sign flips. lambda_i is chosen from D_1..D_{i-1} only
    (aGRAPA of Waudby-Smith & Ramdas, 2023) and capped so every factor stays positive, so under H0
    the wealth is a nonnegative supermartingale and P(sup wealth >= 1/alpha) <= alpha at any
    stopping time. Unlike the discordant-pair mixture above, this tests a shifted null, which a
    margin needs (non-inferiority, equivalence). Returns the (..., n) path of log wealth.
    """
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    if not -1 < null < 1:
        raise ValueError(f"null must be in (-1, 1), got {null}")
    sign = 1.0 if alternative == "greater" else -1.0
    x = sign * (np.asarray(diffs, dtype=float) - null)  # H0: E[x] <= 0, x in [-1 - sign*null, 1 - sign*null]
    cap = 0.5 / (1 + sign * null)  # keeps 1 + lambda x >= 1/2 at the worst x
    n = x.shape[-1]
    log_wealth = np.zeros(x.shape)
    total = np.zeros(x.shape[:-1])
    sq = np.full(x.shape[:-1], 0.25)
    mu = np.zeros(x.shape[:-1])
    running = np.zeros(x.shape[:-1])
    for i in range(n):
        var = sq / (i + 1)
        lam = np.clip(mu / (var + mu * mu), 0.0, cap)
        running = running + np.log1p(lam * x[..., i])
        log_wealth[..., i] = running
        total = total + x[..., i]
        sq = sq + (x[..., i] - mu) ** 2
        mu = total / (i + 2)  # shrunk towards 0 (no bet) by one pseudo-observation
    return log_wealth
