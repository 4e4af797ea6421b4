"""Coverage of the intervals of evalsuite.stats.ranking, .agreement and .simreal by simulation.

    python benchmarks/coverage_rankings.py [REPETITIONS]   (default 2000; docs/rankings.md quotes it)

Each scenario draws data from a known truth many times (seeded) and counts how often the 95%
interval holds the truth. tests/stats/ runs the same scenarios at fewer repetitions.

Scenarios:
- bt-independent: 4 items, log-strengths 0, 0.4, 0.8, 3.5 (the last wins 94-97% of its games and
  often never loses), 10 win/loss judgments per pair, each its own cluster (human pairwise review).
- bt-paired-K: K policies on shared initial conditions with random difficulty (logit sd 1); every
  pair judged on every condition (1: only the first succeeded, 0: only the second, 0.5: a tie);
  clusters are the conditions (evalsuite leaderboard). The truth solves the model on the expected
  scores 0.5 + (p_i - p_j) / 2.
- kappa / alpha: two raters (Cohen), five (Fleiss, Krippendorff) labelling 60 items, each rater
  right with a known probability; the truth is the population value of the statistic.
- simreal: 6 policies, 50 episodes each in simulation and on the robot; truth: the statistics of
  the true success rates.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evalsuite.stats import agreement, simreal
from evalsuite.stats.ranking import bradley_terry, fit_log_strengths

FloatArray = NDArray[np.float64]


def _sigmoid(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


# ---------------------------------------------------------------- Bradley-Terry

def independent_judgments(rng: np.random.Generator, theta: FloatArray, per_pair: int
                          ) -> tuple[NDArray[np.int64], NDArray[np.int64], FloatArray]:
    pairs = [(i, j) for i in range(theta.size) for j in range(i + 1, theta.size)]
    first = np.repeat([p[0] for p in pairs], per_pair)
    second = np.repeat([p[1] for p in pairs], per_pair)
    score = (rng.random(first.size) < _sigmoid(theta[first] - theta[second])).astype(float)
    return first, second, score


def paired_episodes(rng: np.random.Generator, logits: FloatArray, conditions: int, difficulty_sd: float = 1.0
                    ) -> tuple[NDArray[np.int64], NDArray[np.int64], FloatArray, NDArray[np.int64]]:
    k = logits.size
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    difficulty = rng.normal(0.0, difficulty_sd, conditions)
    success = rng.random((conditions, k)) < _sigmoid(logits[None, :] + difficulty[:, None])
    cluster = np.repeat(np.arange(conditions), len(pairs))
    first = np.tile([p[0] for p in pairs], conditions)
    second = np.tile([p[1] for p in pairs], conditions)
    a, b = success[cluster, first], success[cluster, second]
    return first, second, np.where(a == b, 0.5, a.astype(float)), cluster


def paired_truth(logits: FloatArray, difficulty_sd: float = 1.0) -> FloatArray:
    """The centred log-strengths the paired design estimates: the model solved on the expected
    scores E[y_ij] = 0.5 + (p_i - p_j) / 2 (p: success rates averaged over conditions)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    rates = (_sigmoid(logits[:, None] + difficulty_sd * nodes[None, :]) * weights).sum(axis=1) / weights.sum()
    expected = 0.5 + (rates[:, None] - rates[None, :]) / 2
    np.fill_diagonal(expected, 0.0)
    return fit_log_strengths(expected * 1e6, prior_ties=0)


def bt_coverage(reps: int, draw: Callable[[np.random.Generator], tuple[Any, ...]], truth: FloatArray,
                seed: int, dominant: int | None = None, variance: str = "larger") -> dict[str, float]:
    """Pointwise coverage of the centred strengths, joint coverage of the order (every decided pair
    right, so every true rank in its range) and, for ``dominant``, its coverage when it never lost."""
    rng = np.random.default_rng(seed)
    items = [f"p{i}" for i in range(truth.size)]
    true_rank = {items[i]: int(r) for i, r in zip(np.argsort(-truth), range(1, truth.size + 1), strict=True)}
    hits = order = never = never_hits = 0
    for _ in range(reps):
        first, second, score, *cluster = draw(rng)
        ranking = bradley_terry(items, first, second, score, cluster=cluster[0] if cluster else None,
                                variance=variance)
        by_item = {s.item: s for s in ranking.strengths}
        hits += sum(by_item[it].low <= truth[i] <= by_item[it].high for i, it in enumerate(items))
        right = all(truth[items.index(p.first)] > truth[items.index(p.second)] for p in ranking.pairs if p.decided)
        order += right
        if right:  # every decided order right: every true rank lies in its range
            assert all(s.rank_low <= true_rank[s.item] <= s.rank_high for s in ranking.strengths)
        if dominant is not None:
            lost = np.any((first == dominant) & (score == 0)) or np.any((second == dominant) & (score == 1))
            if not lost:
                s = by_item[items[dominant]]
                never += 1
                never_hits += s.low <= truth[dominant] <= s.high
    out = {"strengths": hits / (reps * truth.size), "order": order / reps}
    if dominant is not None:
        out["never_lost"] = float(never)
        out["never_lost_covered"] = never_hits / never if never else float("nan")
    return out


# ---------------------------------------------------------------- agreement

def _raters(rng: np.random.Generator, items: int, raters: int, accuracy: float, categories: int = 3
            ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """True categories (uniform) and each rater's label: right with ``accuracy``, else uniform over the rest."""
    truth = rng.integers(0, categories, items)
    wrong = (truth[:, None] + rng.integers(1, categories, (items, raters))) % categories
    labels = np.where(rng.random((items, raters)) < accuracy, truth[:, None], wrong)
    return truth, labels


def _population_kappa(accuracy: float, categories: int = 3) -> float:
    """Two such raters: agreement a^2 + (1-a)^2/(c-1); chance 1/c (uniform margins)."""
    observed = accuracy ** 2 + (1 - accuracy) ** 2 / (categories - 1)
    chance = 1 / categories
    return (observed - chance) / (1 - chance)


def agreement_coverage(reps: int, seed: int, items: int = 60, accuracy: float = 0.8) -> dict[str, float]:
    """Cohen (2 raters), Fleiss and Krippendorff nominal (5 raters): their population values all
    equal the pairwise kappa above (uniform margins, exchangeable raters, large n)."""
    rng = np.random.default_rng(seed)
    truth = _population_kappa(accuracy)
    hits = {"cohen": 0, "fleiss": 0, "krippendorff": 0}
    for _ in range(reps):
        _, labels = _raters(rng, items, 5, accuracy)
        inner = np.random.default_rng(int(rng.integers(2**32)))
        c = agreement.cohen_kappa(labels[:, 0], labels[:, 1], rng=inner, reps=1000)
        f = agreement.fleiss_kappa(agreement.category_counts(labels)[0], rng=inner, reps=1000)
        k = agreement.krippendorff_alpha(labels.T.astype(float), rng=inner, reps=1000)
        hits["cohen"] += c.low <= truth <= c.high
        hits["fleiss"] += f.low <= truth <= f.high
        # alpha's small-sample correction ((n-1)/n) makes it a hair above Fleiss; the population value is the same
        hits["krippendorff"] += k.low <= truth <= k.high
    return {k: v / reps for k, v in hits.items()}


# ---------------------------------------------------------------- sim vs real

def simreal_coverage(reps: int, seed: int, episodes: int = 50) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    sim = np.array([0.2, 0.35, 0.5, 0.6, 0.75, 0.9])
    real = np.array([0.1, 0.3, 0.25, 0.55, 0.6, 0.8])
    true_mmrv, true_rho = simreal.mmrv(sim, real), simreal.spearman(sim, real)
    # Pearson's Fisher z interval is for a population of policies: drawn here as bivariate normal
    hits = {"mmrv": 0, "spearman": 0, "pearson_fisher_z": 0}
    n = np.full(sim.size, episodes)
    for _ in range(reps):
        result = simreal.sim_real_agreement([f"p{i}" for i in range(sim.size)], rng.binomial(n, sim), n,
                                            rng.binomial(n, real), n, rng=rng, reps=2000)
        hits["mmrv"] += result.mmrv.low <= true_mmrv <= result.mmrv.high
        hits["spearman"] += result.spearman.low <= true_rho <= result.spearman.high
        x = rng.multivariate_normal([0, 0], [[1, 0.7], [0.7, 1]], size=8)
        p = simreal.pearson_interval(x[:, 0], x[:, 1])
        hits["pearson_fisher_z"] += p.low <= 0.7 <= p.high
    return {k: v / reps for k, v in hits.items()}


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    theta = np.array([0.0, 0.4, 0.8, 3.5])
    rows: list[tuple[str, dict[str, float], float]] = []

    def timed(name: str, fn: Callable[[], dict[str, float]]) -> None:
        t0 = time.perf_counter()
        rows.append((name, fn(), time.perf_counter() - t0))
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1][1].items()) + f" ({rows[-1][2]:.0f} s)",
              flush=True)

    for variance in ("larger", "model", "robust"):
        timed(f"bt-independent ({variance})", lambda v=variance: bt_coverage(
            reps, lambda r: independent_judgments(r, theta, 10), theta - theta.mean(), seed=1, dominant=3, variance=v))
        for k in (4, 10):
            logits = np.linspace(-1.0, 1.0, k)
            logits[-1] = 4.0  # a near-perfect policy (98% success): it rarely or never loses a pair
            timed(f"bt-paired-{k} ({variance})", lambda logits=logits, v=variance: bt_coverage(
                reps, lambda r: paired_episodes(r, logits, 30), paired_truth(logits), seed=2,
                dominant=logits.size - 1, variance=v))
    timed("agreement", lambda: agreement_coverage(max(reps // 4, 1), seed=3))
    timed("simreal", lambda: simreal_coverage(reps, seed=4))


if __name__ == "__main__":
    main()
