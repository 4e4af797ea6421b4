"""How many episodes: sample sizes for comparing two success rates at a given power.

Independent design (each policy on its own initial conditions): the classic two-proportion
normal-approximation formula with the pooled variance under the null (Fleiss),
    n = [z_{a/2} sqrt(2 pbar qbar) + z_b sqrt(p1 q1 + p2 q2)]^2 / delta^2   per policy.
Paired design (both policies on the same initial conditions, McNemar): Connor (1987),
    n = [z_{a/2} sqrt(psi) + z_b sqrt(psi - delta^2)]^2 / delta^2   pairs,
with psi = p10 + p01 the discordance, the probability that the two outcomes on one initial
condition differ. Pairing pays when outcomes on the same initial condition are correlated, which
makes psi small; under independence psi = p1 q2 + p2 q1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

DESIGNS = ("paired", "independent")


@dataclass(frozen=True, slots=True)
class SampleSize:
    design: str
    n: int  # per policy (independent) or pairs (paired)
    p_baseline: float
    delta: float
    alpha: float
    power: float
    discordance: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(p_baseline: float, delta: float, alpha: float, power: float) -> None:
    if not 0 < p_baseline < 1:
        raise ValueError(f"p_baseline must be in (0, 1), got {p_baseline}")
    if delta == 0 or not 0 < p_baseline + delta < 1:
        raise ValueError(f"delta must be nonzero with p_baseline + delta in (0, 1), got {delta}")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")


def independence_discordance(p1: float, p2: float) -> float:
    """psi when the two outcomes on an initial condition are independent."""
    return p1 * (1 - p2) + p2 * (1 - p1)


def n_independent(p_baseline: float, delta: float, *, alpha: float = 0.05, power: float = 0.8) -> SampleSize:
    """Episodes per policy for a two-sided test of p_baseline vs p_baseline + delta."""
    _check(p_baseline, delta, alpha, power)
    p1, p2 = p_baseline, p_baseline + delta
    pbar = (p1 + p2) / 2
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    n = (za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / delta**2
    return SampleSize("independent", math.ceil(n - 1e-9), p_baseline, delta, alpha, power)


def n_paired(p_baseline: float, delta: float, *, alpha: float = 0.05, power: float = 0.8,
             discordance: float | None = None) -> SampleSize:
    """Pairs for a two-sided McNemar test; ``discordance`` defaults to its value under independence."""
    _check(p_baseline, delta, alpha, power)
    psi = independence_discordance(p_baseline, p_baseline + delta) if discordance is None else discordance
    if not abs(delta) <= psi <= 1:
        raise ValueError(f"discordance must be in [|delta|, 1] = [{abs(delta)}, 1], got {psi}")
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    n = (za * math.sqrt(psi) + zb * math.sqrt(psi - delta**2)) ** 2 / delta**2
    return SampleSize("paired", math.ceil(n - 1e-9), p_baseline, delta, alpha, power, psi)


def simulate_paired_power(n: int, p10: float, p01: float, *, alpha: float = 0.05, reps: int = 10_000,
                          rng: np.random.Generator) -> float:
    """Power of the exact McNemar test with n pairs whose discordant cells have probabilities
    p10 (A succeeds, B fails) and p01; by simulation of the discordant counts."""
    counts = rng.multinomial(n, [p10, p01, 1 - p10 - p01], size=reps)  # (reps, 3)
    b, c = counts[:, 0], counts[:, 1]
    m = b + c
    # exact two-sided binomial p-value of b out of m at 1/2, vectorized
    k = np.minimum(b, c)
    p = np.where(m > 0, np.minimum(1.0, 2 * stats.binom.cdf(k, np.maximum(m, 1), 0.5)), 1.0)
    return float(np.mean(p < alpha))


def discordance_from_pairs(discordant: int, pairs: int) -> float:
    """Estimate psi from a pilot: discordant pairs / all pairs."""
    if pairs <= 0:
        raise ValueError("the pilot has no paired episodes")
    return discordant / pairs
