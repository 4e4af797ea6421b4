"""Margin verdicts: Newcombe bounds against statsmodels; error rates and power by simulation."""

import math

import numpy as np
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep

from evalsuite.stats import margin as mg
from evalsuite.stats.sequential import log_wealth_mean


@pytest.mark.parametrize("k1,n1,k2,n2", [(5, 20, 12, 20), (0, 10, 10, 10), (30, 40, 25, 50), (7, 7, 0, 9), (3, 3, 3, 3)])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_independent_interval_matches_statsmodels(k1, n1, k2, n2, level):
    ours = mg.newcombe_independent_interval(k1, n1, k2, n2, level=level)
    theirs = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=1 - level)
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_classify_and_overall_hand_cases():
    assert mg.classify(-0.3, -0.1, 0.05) == mg.REGRESSED
    assert mg.classify(0.01, 0.2, 0.05) == mg.IMPROVED
    assert mg.classify(-0.04, 0.2, 0.05) == mg.NON_INFERIOR
    assert mg.classify(-0.2, 0.2, 0.05) == mg.INCONCLUSIVE
    assert mg.overall([mg.NON_INFERIOR, mg.REGRESSED, mg.INCONCLUSIVE]) == mg.REGRESSED
    assert mg.overall([mg.NON_INFERIOR, mg.INCONCLUSIVE]) == mg.INCONCLUSIVE
    assert mg.overall([mg.NON_INFERIOR, mg.IMPROVED]) == mg.IMPROVED
    assert mg.overall([mg.NON_INFERIOR, mg.NON_INFERIOR]) == mg.NON_INFERIOR


def _paired(rng, p_base, p_cand, p_both, n, reps):
    """(reps, n) candidate and baseline outcomes with P(both succeed) = p_both (sets the correlation)."""
    probs = [p_both, p_cand - p_both, p_base - p_both, 1 - p_cand - p_base + p_both]
    cell = rng.choice(4, size=(reps, n), p=probs)
    return (cell == 0) | (cell == 1), (cell == 0) | (cell == 2)


def _verdicts(cand, base, **kw):
    return [mg.paired_decision(c, b, **kw).verdict for c, b in zip(cand, base)]


@pytest.mark.parametrize("p,p_both,n", [(0.8, 0.64, 40), (0.8, 0.75, 60), (0.5, 0.4, 100), (0.95, 0.93, 30)])
def test_false_regressed_rate_is_at_most_alpha_when_candidate_equals_baseline(p, p_both, n):
    rng = np.random.default_rng(7)
    cand, base = _paired(rng, p, p, p_both, n, 2000)
    verdicts = _verdicts(cand, base, margin=0.05, alpha=0.05)
    assert verdicts.count(mg.REGRESSED) / len(verdicts) <= 0.05


def test_false_regressed_rate_at_the_margin_itself_is_at_most_alpha():
    # the hardest null: exactly margin worse; REGRESSED must still be rare (<= alpha, up to 2 SE)
    rng = np.random.default_rng(8)
    cand, base = _paired(rng, 0.8, 0.75, 0.65, 150, 3000)
    rate = _verdicts(cand, base, margin=0.05, alpha=0.05).count(mg.REGRESSED) / 3000
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 3000)


def test_a_15_point_drop_is_caught_with_the_planned_power_at_the_planned_n():
    n = mg.n_gate(0.8, 0.15, 0.05, alpha=0.05, power=0.8)
    assert 200 < n < 300  # 240 under independence (normal approximation)
    rng = np.random.default_rng(9)
    cand, base = _paired(rng, 0.8, 0.65, 0.8 * 0.65, n, 2000)
    power = _verdicts(cand, base, margin=0.05, alpha=0.05).count(mg.REGRESSED) / 2000
    assert power >= 0.8 - 0.03
    # and at a third of the planned episodes it is not (the plan is not wildly conservative)
    short = _verdicts(cand[:, : n // 3], base[:, : n // 3], margin=0.05, alpha=0.05).count(mg.REGRESSED) / 2000
    assert short < 0.6


def test_inconclusive_says_how_many_more_pairs_and_they_decide():
    rng = np.random.default_rng(10)
    cand, base = _paired(rng, 0.9, 0.9, 0.85, 400, 1)
    first = mg.paired_decision(cand[0, :30], base[0, :30], margin=0.05, alpha=0.05)
    assert first.verdict == mg.INCONCLUSIVE and first.more_episodes > 0
    later = mg.paired_decision(cand[0, : 30 + first.more_episodes], base[0, : 30 + first.more_episodes],
                               margin=0.05, alpha=0.05)
    assert later.verdict in (mg.NON_INFERIOR, mg.IMPROVED)


@pytest.mark.parametrize("null,alternative,p10,p01", [
    (-0.05, "greater", 0.10, 0.15),  # non-inferiority test exactly at the margin
    (-0.05, "less", 0.10, 0.15),  # regression test exactly at the margin
    (0.0, "greater", 0.2, 0.2),
])
def test_betting_e_process_keeps_its_level_when_looking_after_every_pair(null, alternative, p10, p01):
    rng = np.random.default_rng(11)
    u = rng.random((10_000, 300))
    diffs = np.where(u < p10, 1, np.where(u < p10 + p01, -1, 0))
    crossed = (log_wealth_mean(diffs, null, alternative=alternative).max(axis=-1) >= math.log(20)).mean()
    assert crossed <= 0.05


def test_sequential_verdicts_find_regression_and_non_inferiority():
    rng = np.random.default_rng(12)
    worse = np.where(rng.random(200) < 0.35, -1, 0)  # candidate loses 35% of pairs
    assert mg.sequential_verdict(worse, margin=0.05, alpha=0.05)[0] == mg.REGRESSED
    assert mg.sequential_verdict(np.zeros(200), margin=0.05, alpha=0.05)[0] == mg.NON_INFERIOR
    assert mg.sequential_verdict(np.zeros(10), margin=0.05, alpha=0.05)[0] == mg.INCONCLUSIVE
    better = np.where(rng.random(200) < 0.4, 1, 0)
    assert mg.sequential_verdict(better, margin=0.05, alpha=0.05)[0] == mg.IMPROVED


def test_bad_plans_are_refused():
    with pytest.raises(ValueError, match="drop > margin"):
        mg.n_gate(0.8, 0.03, 0.05)
    with pytest.raises(ValueError, match="p_baseline"):
        mg.n_gate(0.1, 0.15, 0.05)
