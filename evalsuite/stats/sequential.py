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

import numpy as np
from scipy.special import betaln


def log_e_value(a_wins, b_wins, *, prior: float = 1.0) -> np.ndarray:
    """log E for discordant counts (any matching shapes)."""
    b = np.asarray(a_wins, dtype=float)
    c = np.asarray(b_wins, dtype=float)
    return betaln(prior + b, prior + c) - betaln(prior, prior) + (b + c) * np.log(2.0)


def decide(a_wins: int, b_wins: int, *, alpha: float, prior: float = 1.0) -> str:
    """'A better', 'B better', or 'undecided' at this look."""
    if log_e_value(a_wins, b_wins, prior=prior) >= np.log(1 / alpha):
        return "A better" if a_wins > b_wins else "B better"
    return "undecided"


def first_rejection(a_outcomes: np.ndarray, b_outcomes: np.ndarray, *, alpha: float, prior: float = 1.0) -> np.ndarray:
    """Index (pairs used) of the first look with E >= 1/alpha, or -1; outcomes are (sims, n) in {0, 1}."""
    a = np.asarray(a_outcomes, dtype=bool)
    b = np.asarray(b_outcomes, dtype=bool)
    wins_a = np.cumsum(a & ~b, axis=-1)
    wins_b = np.cumsum(~a & b, axis=-1)
    reject = log_e_value(wins_a, wins_b, prior=prior) >= np.log(1 / alpha)
    first = np.argmax(reject, axis=-1) + 1
    return np.where(reject.any(axis=-1), first, -1)
