"""Margin verdicts: exact sizes at the margin by enumeration, hand-computed p-values, power
against Monte Carlo, planning, and the sequential e-processes."""

import itertools
import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import gammaln, xlogy
from statsmodels.stats.proportion import confint_proportions_2indep

from evalsuite.stats import margin as mg
from evalsuite.stats.paired import newcombe_paired_interval
from evalsuite.stats.sequential import log_wealth_mean

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

PASSING = (mg.NON_INFERIOR, mg.IMPROVED)


@pytest.mark.parametrize("k1,n1,k2,n2", [(5, 20, 12, 20), (0, 10, 10, 10), (30, 40, 25, 50), (7, 7, 0, 9), (3, 3, 3, 3)])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_independent_interval_matches_statsmodels(k1, n1, k2, n2, level):
    ours = mg.newcombe_independent_interval(k1, n1, k2, n2, level=level)
    theirs = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=1 - level)
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_overall_hand_cases():
    assert mg.overall([mg.NON_INFERIOR, mg.REGRESSED, mg.INCONCLUSIVE]) == mg.REGRESSED
    assert mg.overall([mg.NON_INFERIOR, mg.INCONCLUSIVE]) == mg.INCONCLUSIVE
    assert mg.overall([mg.NON_INFERIOR, mg.IMPROVED]) == mg.IMPROVED
    assert mg.overall([mg.NON_INFERIOR, mg.NON_INFERIOR]) == mg.NON_INFERIOR
    assert mg.overall([]) == mg.INCONCLUSIVE


# --- the statistics, against a numerical maximum likelihood written here ---------------------

def _tango_by_search(b, c, n, d0):
    """Tango's statistic with the restricted MLE found numerically (no closed form)."""
    def nll(p01):
        return -(xlogy(b, p01 + d0) + xlogy(c, p01) + xlogy(n - b - c, 1 - 2 * p01 - d0))
    lo, hi = max(0.0, -d0), (1 - d0) / 2
    p01 = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13}).x
    var = n * (2 * p01 + d0 - d0 * d0)
    return 0.0 if var <= 1e-15 else (b - c - n * d0) / math.sqrt(var)


def _fm_by_search(k1, n1, k2, n2, d0):
    def nll(p2):
        p1 = p2 + d0
        return -(xlogy(k1, p1) + xlogy(n1 - k1, 1 - p1) + xlogy(k2, p2) + xlogy(n2 - k2, 1 - p2))
    lo, hi = max(0.0, -d0), min(1.0, 1 - d0)
    p2 = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13}).x
    p1 = p2 + d0
    var = p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2
    return 0.0 if var <= 1e-15 else (k1 / n1 - k2 / n2 - d0) / math.sqrt(var)


def test_closed_form_restricted_mles_match_numerical_maximisation():
    rng = np.random.default_rng(1)
    for _ in range(40):
        n = int(rng.integers(5, 150))
        b, c = rng.multinomial(n, [0.15, 0.15, 0.7])[:2]
        d0 = float(rng.choice([-0.05, -0.1, -0.3, 0.0, 0.2]))
        assert float(mg.tango_statistic(b, c, n, d0)) == pytest.approx(_tango_by_search(b, c, n, d0), abs=1e-5)
        n1, n2 = int(rng.integers(3, 80)), int(rng.integers(3, 80))
        k1, k2 = int(rng.integers(0, n1 + 1)), int(rng.integers(0, n2 + 1))
        assert float(mg.farrington_manning_statistic(k1, n1, k2, n2, d0)) == pytest.approx(
            _fm_by_search(k1, n1, k2, n2, d0), abs=1e-5)


@pytest.mark.parametrize("d0", [-0.05, -0.1, 0.0])
def test_statistics_rise_with_candidate_wins_and_fall_with_baseline_wins(d0):
    # what makes the boundary d = d0 the worst case of each composite null, and the row-wise tails valid
    for n in (30, 200):
        b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        t = np.where(b + c <= n, mg.tango_statistic(b, c, n, d0), np.nan)
        assert np.nanmin(np.diff(t, axis=0)) >= -1e-12 and np.nanmax(np.diff(t, axis=1)) <= 1e-12
    k1, k2 = np.meshgrid(np.arange(41), np.arange(61), indexing="ij")
    t = mg.farrington_manning_statistic(k1, 40, k2, 60, d0)
    assert np.diff(t, axis=0).min() >= -1e-12 and np.diff(t, axis=1).max() <= 1e-12


# --- p-values by hand: tiny n, every outcome sequence enumerated ------------------------------

@pytest.mark.parametrize("margin", [0.05, 0.2])
def test_paired_p_values_match_brute_force_enumeration_at_n_3(margin):
    n = 3
    sequences = [(seq.count("10"), seq.count("01")) for seq in itertools.product(("10", "01", "same"), repeat=n)]
    counts = np.array(sequences)

    def p_value(b, c, d0, upper):
        t = np.array([_tango_by_search(x, y, n, d0) for x, y in counts])
        t_obs = _tango_by_search(b, c, n, d0)
        extreme = t >= t_obs - 1e-9 if upper else t <= t_obs + 1e-9
        psi = np.linspace(abs(d0), 1, 100_001)
        p10, p01 = (psi + d0) / 2, (psi - d0) / 2
        prob = np.zeros_like(psi)
        for x, y in counts[extreme]:
            prob += np.exp(xlogy(x, p10) + xlogy(y, p01) + xlogy(n - x - y, 1 - psi))
        return prob.max()

    for b in range(n + 1):
        for c in range(n + 1 - b):
            ours = mg.paired_p_values(b, c, n, margin=margin)
            expected = (p_value(b, c, -margin, True), p_value(b, c, -margin, False), p_value(b, c, 0.0, True))
            assert ours[:3] == pytest.approx(expected, abs=1e-7), (b, c)


def test_independent_p_values_match_brute_force_enumeration():
    n_c, n_b, margin = 2, 3, 0.1
    outcomes = [(sum(o[:n_c]), sum(o[n_c:])) for o in itertools.product((0, 1), repeat=n_c + n_b)]
    counts = np.array(outcomes)

    def p_value(k_c, k_b, d0, upper):
        t = np.array([_fm_by_search(x, n_c, y, n_b, d0) for x, y in counts])
        t_obs = _fm_by_search(k_c, n_c, k_b, n_b, d0)
        extreme = t >= t_obs - 1e-9 if upper else t <= t_obs + 1e-9
        p_b = np.linspace(max(0.0, -d0), min(1.0, 1 - d0), 100_001)
        p_c = p_b + d0
        prob = np.zeros_like(p_b)
        for x, y in counts[extreme]:
            prob += np.exp(xlogy(x, p_c) + xlogy(n_c - x, 1 - p_c) + xlogy(y, p_b) + xlogy(n_b - y, 1 - p_b))
        return prob.max()

    for k_c in range(n_c + 1):
        for k_b in range(n_b + 1):
            ours = mg.independent_p_values(k_c, n_c, k_b, n_b, margin=margin)
            expected = (p_value(k_c, k_b, -margin, True), p_value(k_c, k_b, -margin, False),
                        p_value(k_c, k_b, 0.0, True))
            assert ours[:3] == pytest.approx(expected, abs=1e-7), (k_c, k_b)


# --- exact size at the margin, by enumeration of the whole sample space -----------------------

def _trinomial(n, p10, p01):
    """(n + 1, n + 1) probabilities of (n10, n01), zero off the simplex."""
    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    rest = np.maximum(n - b - c, 0)
    log_p = (gammaln(n + 1) - gammaln(b + 1) - gammaln(c + 1) - gammaln(rest + 1)
             + xlogy(b, p10) + xlogy(c, p01) + xlogy(rest, 1 - p10 - p01))
    return np.where(b + c <= n, np.exp(log_p), 0.0)


def _discordance_grid(p_baseline, margin, points=17):
    """Feasible discordance at d = -margin: the 2x2 table with margins p_b and p_c = p_b - margin
    needs p11 = (p_b + p_c - psi) / 2 >= 0 and p00 = 1 - (p_b + p_c + psi) / 2 >= 0."""
    p_c = p_baseline - margin
    return np.linspace(margin, min(p_baseline + p_c, 2 - p_baseline - p_c), points)


BASELINE_RATES = (0.5, 0.55, 0.7, 0.8, 0.9, 0.95, 0.99)


@pytest.mark.parametrize("margin,alpha,alpha_claims", [(0.05, 0.05, 0.05 / 3), (0.05, 0.05 / 3, 0.05 / 3),
                                                       (0.1, 0.05, 0.05), (0.1, 0.05 / 3, 0.05 / 3)])
def test_paired_gate_keeps_its_levels_at_the_margin_everywhere_on_the_grid(margin, alpha, alpha_claims):
    worst_pass, worst_regressed = 0.0, 0.0
    for n in (20, 30, 45, 60, 90, 120, 160, 200):
        table = mg.paired_verdict_table(n, margin=margin, alpha=alpha, alpha_claims=alpha_claims)
        passes, regressed = np.isin(table, PASSING), table == mg.REGRESSED
        for p_baseline in BASELINE_RATES:
            for psi in _discordance_grid(p_baseline, margin):
                prob = _trinomial(n, (psi - margin) / 2, (psi + margin) / 2)
                worst_pass = max(worst_pass, prob[passes].sum() / alpha)
                worst_regressed = max(worst_regressed, prob[regressed].sum() / alpha_claims)
    assert worst_pass <= 1 + 1e-9 and worst_regressed <= 1 + 1e-9
    assert worst_pass > 0.8  # and not by being uselessly conservative


def _old_newcombe_pass_probability(n, p_baseline, psi, margin, alpha):
    """P(one-sided Newcombe lower bound at level 1 - alpha > -margin) at d = -margin, by
    enumerating the full 2x2 multinomial (the interval needs both concordant cells)."""
    p10, p01 = (psi - margin) / 2, (psi + margin) / 2
    p11 = p_baseline - p01
    probs = np.array([p11, p10, p01, 1 - p11 - p10 - p01])
    total = 0.0
    for n10 in range(n + 1 if p10 > 0 else 1):
        for n01 in range(n - n10 + 1):
            n11 = np.arange(n - n10 - n01 + 1)
            cells = np.stack([n11, np.full_like(n11, n10), np.full_like(n11, n01), n - n10 - n01 - n11])
            log_p = gammaln(n + 1) - gammaln(cells + 1).sum(0) + xlogy(cells, probs[:, None]).sum(0)
            for k, lp in zip(n11, log_p, strict=False):
                if lp > -30:
                    low, _ = newcombe_paired_interval(int(k), n10, n01, n - n10 - n01 - int(k), level=1 - 2 * alpha)
                    total += math.exp(lp) * (low > -margin)
    return total


@pytest.mark.parametrize("n,p_baseline,psi,alpha,old_at_least", [
    (120, 0.55, 0.05, 0.05 / 3, 3.4),  # the review's point: 3.45x
    (60, 0.55, 0.07, 0.05, 1.4),  # 1.45x at alpha 0.05
    (45, 0.5, 0.05, 0.05 / 3, 4.9),  # the worst of the size grid: 5.0x (2.0x at alpha 0.05)
])
def test_the_old_newcombe_rule_exceeds_alpha_where_the_exact_test_does_not(n, p_baseline, psi, alpha, old_at_least):
    margin = 0.05
    old = _old_newcombe_pass_probability(n, p_baseline, psi, margin, alpha)
    assert old > old_at_least * alpha
    table = mg.paired_verdict_table(n, margin=margin, alpha=alpha)
    new = _trinomial(n, (psi - margin) / 2, (psi + margin) / 2)[np.isin(table, PASSING)].sum()
    assert new <= alpha


@pytest.mark.parametrize("margin", [0.05, 0.1])
def test_independent_gate_keeps_its_levels_at_the_margin(margin):
    alpha = 0.05
    for n_c, n_b in ((20, 20), (50, 50), (100, 100), (30, 60)):
        table = mg.independent_verdict_table(n_c, n_b, margin=margin, alpha=alpha)
        passes, regressed = np.isin(table, PASSING), table == mg.REGRESSED
        k_c, k_b = np.arange(n_c + 1), np.arange(n_b + 1)
        for p_b in np.linspace(margin, 1, 41):
            p_c = p_b - margin
            binom = lambda k, n, p: np.exp(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)  # noqa: E731
                                           + xlogy(k, p) + xlogy(n - k, 1 - p))
            prob = np.outer(binom(k_c, n_c, p_c), binom(k_b, n_b, p_b))
            assert prob[passes].sum() <= alpha * (1 + 1e-9), (n_c, n_b, p_b)
            assert prob[regressed].sum() <= alpha * (1 + 1e-9), (n_c, n_b, p_b)


# --- decisions --------------------------------------------------------------------------------

def _pairs(n11, n10, n01, n00):
    cand = np.array([1] * n11 + [1] * n10 + [0] * n01 + [0] * n00)
    base = np.array([1] * n11 + [0] * n10 + [1] * n01 + [0] * n00)
    return cand, base


def test_decisions_agree_with_the_verdict_tables():
    rng = np.random.default_rng(5)
    n = 60
    table = mg.paired_verdict_table(n, margin=0.05, alpha=0.05, alpha_claims=0.05 / 3)
    for _ in range(25):
        n10, n01, n11 = rng.multinomial(n, [0.1, 0.2, 0.5])[:3]
        d = mg.paired_decision(*_pairs(n11, n10, n01, n - n10 - n01 - n11), margin=0.05, alpha=0.05,
                               alpha_claims=0.05 / 3)
        assert d.verdict == table[n10, n01]
    table = mg.independent_verdict_table(40, 30, margin=0.1, alpha=0.05)
    for k_c, k_b in rng.integers(0, 31, size=(15, 2)):
        assert mg.independent_decision(int(k_c), 40, int(k_b), 30, margin=0.1, alpha=0.05).verdict == table[k_c, k_b]


def test_clear_cases():
    d = mg.paired_decision(*_pairs(60, 40, 0, 0), margin=0.05, alpha=0.05)
    assert d.verdict == mg.IMPROVED and d.difference == pytest.approx(0.4) and d.low > 0
    d = mg.paired_decision(*_pairs(50, 2, 40, 8), margin=0.05, alpha=0.05)
    assert d.verdict == mg.REGRESSED and d.p_regressed < 1e-6 and d.high < 0
    d = mg.paired_decision(np.ones(120), np.ones(120), margin=0.05, alpha=0.05)
    assert d.verdict == mg.NON_INFERIOR and d.p_noninferior <= 0.05 and d.method == mg.PAIRED_EXACT
    assert mg.paired_decision(np.ones(30), np.ones(30), margin=0.05, alpha=0.05).verdict == mg.INCONCLUSIVE
    assert mg.paired_decision(np.ones(0), np.ones(0), margin=0.05, alpha=0.05).verdict == mg.INCONCLUSIVE
    assert mg.independent_decision(95, 100, 60, 100, margin=0.05, alpha=0.05).verdict == mg.IMPROVED
    assert mg.independent_decision(40, 100, 80, 100, margin=0.05, alpha=0.05).verdict == mg.REGRESSED
    assert mg.independent_decision(5, 10, 5, 10, margin=0.05, alpha=0.05).verdict == mg.INCONCLUSIVE
    assert mg.independent_decision(0, 0, 5, 10, margin=0.05, alpha=0.05).verdict == mg.INCONCLUSIVE
    assert "asymptotic" in mg.paired_decision(np.ones(2500), np.ones(2500), margin=0.05, alpha=0.05).method
    assert set(mg.MarginDecision.__dataclass_fields__) >= {"p_noninferior", "p_regressed", "p_improved", "alpha_claims"}


def test_all_concordant_pairs_pass_from_the_first_n_with_0_95_to_the_n_below_alpha():
    # sup over psi of P(no discordant pair) is (1 - margin)^n at psi = margin: 59 pairs at 0.05
    need = math.ceil(math.log(0.05) / math.log(0.95))
    assert mg.paired_decision(np.ones(need), np.ones(need), margin=0.05, alpha=0.05).verdict == mg.NON_INFERIOR
    assert mg.paired_decision(np.ones(need - 1), np.ones(need - 1), margin=0.05, alpha=0.05).verdict == mg.INCONCLUSIVE
    assert mg.n_gate_pass(1.0, 0.05, alpha=0.05, discordance=0.0) == need


def test_p_values_move_the_right_way():
    n = 80
    p = np.array([mg.paired_p_values(3, c, n, margin=0.05)[:3] for c in range(0, 25)])
    assert np.all(np.diff(p[:, 0]) >= -1e-12)  # more baseline-only wins: weaker non-inferiority
    assert np.all(np.diff(p[:, 1]) <= 1e-12)  # ... and stronger evidence of regression
    assert np.all(np.diff(p[:, 2]) >= -1e-12)
    assert np.all(p[:, 0] <= p[:, 2] + 1e-12)  # non-inferiority is the easier claim than improvement


def test_bad_arguments_are_refused_with_the_accepted_range():
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 0.5\), got 0.6"):
        mg.paired_decision(np.ones(5), np.ones(5), margin=0.05, alpha=0.6)
    with pytest.raises(ValueError, match="margin must be in"):
        mg.independent_decision(1, 5, 1, 5, margin=0.0, alpha=0.05)
    with pytest.raises(ValueError, match="same length"):
        mg.paired_decision(np.ones(5), np.ones(4), margin=0.05, alpha=0.05)
    with pytest.raises(ValueError, match="drop > margin"):
        mg.n_gate(0.8, 0.03, 0.05, alpha=0.05)
    with pytest.raises(ValueError, match="p_baseline - drop"):
        mg.n_gate(0.1, 0.15, 0.05, alpha=0.05)
    with pytest.raises(ValueError, match=r"discordance must be in \[0, min\(2p, 2 - 2p\)\] = \[0, 0.4\]"):
        mg.n_gate_pass(0.8, 0.05, alpha=0.05, discordance=0.5)
    with pytest.raises(ValueError, match="claim must be one of"):
        mg.gate_power(50, 0.1, 0.1, margin=0.05, alpha=0.05, claim="improved")
    with pytest.raises(ValueError, match="power must be in"):
        mg.n_gate(0.8, 0.15, 0.05, alpha=0.05, power=1.0)


# --- planning ---------------------------------------------------------------------------------

@pytest.mark.parametrize("claim,p10,p01", [("regressed", 0.05, 0.2), ("non-inferior", 0.1, 0.1)])
def test_gate_power_matches_monte_carlo(claim, p10, p01):
    n, sims = 150, 20_000
    power = mg.gate_power(n, p10, p01, margin=0.05, alpha=0.05, claim=claim)
    table = mg.paired_verdict_table(n, margin=0.05, alpha=0.05)
    counts = np.random.default_rng(6).multinomial(n, [p10, p01, 1 - p10 - p01], size=sims)
    verdicts = table[counts[:, 0], counts[:, 1]]
    rate = np.mean(verdicts == mg.REGRESSED) if claim == "regressed" else np.mean(np.isin(verdicts, PASSING))
    assert abs(rate - power) <= 3 * math.sqrt(power * (1 - power) / sims)
    assert 0.3 < power < 0.99


def test_planned_n_reaches_the_power_and_one_pair_fewer_does_not():
    n = mg.n_gate(0.8, 0.15, 0.05, alpha=0.05)  # independent pairs: p10 = 0.65 * 0.2, p01 = 0.8 * 0.35
    assert 200 < n < 320
    power = [mg.gate_power(k, 0.13, 0.28, margin=0.05, alpha=0.05, claim="regressed") for k in (n, n - 1)]
    assert power[0] >= 0.8 > power[1]
    n = mg.n_gate_pass(0.9, 0.1, alpha=0.05)
    power = [mg.gate_power(k, 0.09, 0.09, margin=0.1, alpha=0.05, claim="non-inferior") for k in (n, n - 1)]
    assert power[0] >= 0.8 > power[1]


# --- sequential -------------------------------------------------------------------------------

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


def test_n_gate_from_a_perfect_baseline_with_the_least_discordance():
    # psi == drop puts p10 at a rounding error below 0; it must plan, not raise
    n = mg.n_gate(1.0, 0.1, 0.05, alpha=0.05 / 3, power=0.8, discordance=0.1)
    assert mg.gate_power(n, 0.0, 0.1, margin=0.05, alpha=0.05 / 3, claim="regressed") >= 0.8
