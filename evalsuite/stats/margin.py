"""Decisions against a margin: regressed, improved, non-inferior, or not enough data to tell.

For d = p_candidate - p_baseline and a margin m > 0, with one-sided confidence bounds L and U
at level 1 - alpha each (a two-sided interval at level 1 - 2 alpha):

- REGRESSED when U < -m: worse by more than the margin (false with probability <= alpha when
  the candidate is in fact within the margin);
- IMPROVED when L > 0: better, with the same error rate;
- NON-INFERIOR when L > -m: not worse than the margin;
- INCONCLUSIVE otherwise: the interval still straddles -m.

The bounds are Newcombe's (method 10): paired when both policies ran on the same initial
conditions, independent otherwise. ``episodes_to_decide`` turns an inconclusive result into the
number of episodes that would decide it with the given power at the observed difference
(normal approximation, the variance per pair or per policy estimated from the data).
Sequentially, the same three hypotheses are tested with the betting e-processes of
``evalsuite.stats.sequential`` so the verdict may be read after every pair.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from evalsuite.stats.intervals import proportion_interval
from evalsuite.stats.paired import newcombe_paired_interval
from evalsuite.stats.sequential import log_wealth_mean

REGRESSED, IMPROVED, NON_INFERIOR, INCONCLUSIVE = "REGRESSED", "IMPROVED", "NON-INFERIOR", "INCONCLUSIVE"
VERDICTS = (REGRESSED, INCONCLUSIVE, NON_INFERIOR, IMPROVED)  # worst first


@dataclass(frozen=True, slots=True)
class MarginDecision:
    verdict: str
    difference: float
    low: float  # one-sided lower bound at level 1 - alpha
    high: float  # one-sided upper bound at level 1 - alpha
    alpha: float
    margin: float
    design: str  # paired | independent
    n_candidate: int
    n_baseline: int
    more_episodes: int | None  # INCONCLUSIVE: extra episodes (pairs, or per policy) to decide; None: cannot say

    def to_dict(self) -> dict:
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


def classify(low: float, high: float, margin: float) -> str:
    if high < -margin:
        return REGRESSED
    if low > 0:
        return IMPROVED
    if low > -margin:
        return NON_INFERIOR
    return INCONCLUSIVE


def episodes_to_decide(difference: float, variance: float, margin: float, *, alpha: float, power: float = 0.8) -> float:
    """Total pairs (or episodes per policy) for a one-sided test at ``alpha`` against -margin to
    reach ``power`` if the true difference is ``difference``; inf when it sits on the margin."""
    distance = abs(difference + margin)
    if distance < 1e-9:
        return math.inf
    z = stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)
    return max(1.0, math.ceil(z * z * max(variance, 1e-3) / distance**2))


def n_gate(p_baseline: float, drop: float, margin: float, *, alpha: float = 0.05, power: float = 0.8,
           discordance: float | None = None) -> int:
    """Pairs for the gate to call a candidate ``drop`` below ``p_baseline`` REGRESSED with ``power``
    (``alpha`` one-sided, per task); ``discordance`` defaults to independent outcomes per pair."""
    if not 0 < p_baseline < 1 or not 0 < p_baseline - drop < 1:
        raise ValueError(f"need 0 < p_baseline - drop < p_baseline < 1, got p_baseline={p_baseline}, drop={drop}")
    if not drop > margin > 0:
        raise ValueError(f"need drop > margin > 0 to detect a regression, got drop={drop}, margin={margin}")
    p_c = p_baseline - drop
    psi = p_baseline * (1 - p_c) + p_c * (1 - p_baseline) if discordance is None else discordance
    if not drop <= psi <= 1:
        raise ValueError(f"discordance must be in [drop, 1] = [{drop}, 1], got {psi}")
    return int(episodes_to_decide(-drop, psi - drop * drop, margin, alpha=alpha, power=power))


def paired_decision(candidate: np.ndarray, baseline: np.ndarray, *, margin: float, alpha: float,
                    power: float = 0.8) -> MarginDecision:
    """Verdict from outcomes (n,) in {0, 1} on the same initial conditions, aligned by position."""
    c = np.asarray(candidate, dtype=bool)
    b = np.asarray(baseline, dtype=bool)
    n = c.size
    both, c_only, b_only = int(np.sum(c & b)), int(np.sum(c & ~b)), int(np.sum(~c & b))
    low, high = newcombe_paired_interval(both, c_only, b_only, n - both - c_only - b_only, level=1 - 2 * alpha)
    diff = (c_only - b_only) / n if n else 0.0
    verdict = classify(low, high, margin) if n else INCONCLUSIVE
    more = None
    if verdict == INCONCLUSIVE:
        psi = (c_only + b_only + 1) / (n + 2)  # discordance, kept off zero
        need = episodes_to_decide(diff, psi - diff * diff, margin, alpha=alpha, power=power)
        more = None if math.isinf(need) else max(1, int(need) - n)
    return MarginDecision(verdict, diff, low, high, alpha, margin, "paired", n, n, more)


def independent_decision(k_candidate: int, n_candidate: int, k_baseline: int, n_baseline: int, *, margin: float,
                         alpha: float, power: float = 0.8) -> MarginDecision:
    """Verdict from success counts of runs on different initial conditions."""
    low, high = newcombe_independent_interval(k_candidate, n_candidate, k_baseline, n_baseline, level=1 - 2 * alpha)
    if n_candidate == 0 or n_baseline == 0:
        return MarginDecision(INCONCLUSIVE, 0.0, low, high, alpha, margin, "independent", n_candidate, n_baseline, None)
    p1, p2 = (k_candidate + 0.5) / (n_candidate + 1), (k_baseline + 0.5) / (n_baseline + 1)
    diff = k_candidate / n_candidate - k_baseline / n_baseline
    verdict = classify(low, high, margin)
    more = None
    if verdict == INCONCLUSIVE:
        need = episodes_to_decide(diff, p1 * (1 - p1) + p2 * (1 - p2), margin, alpha=alpha, power=power)
        more = None if math.isinf(need) else max(1, int(need) - min(n_candidate, n_baseline))
    return MarginDecision(verdict, diff, low, high, alpha, margin, "independent", n_candidate, n_baseline, more)


def sequential_verdict(diffs: np.ndarray, *, margin: float, alpha: float) -> tuple[str, dict[str, float]]:
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
