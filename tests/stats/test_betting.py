"""Betting e-processes on bounded paired scores: level by simulation, power, the tuned bet."""

import math

import numpy as np
import pytest
from scipy.special import betaln
from scipy.stats import norm

from evalsuite.stats import betting, sequential
from evalsuite.stats.betting import PlannedEffect

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

ALPHA = 0.05
SIMS, N = 2000, 300
# the level is <= alpha by Ville's inequality; the simulation may exceed it by Monte-Carlo error only
LIMIT = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / SIMS)


def _zero_inflated(rng, shape, p_zero, a, b):
    return np.where(rng.random(shape) < p_zero, 0.0, rng.beta(a, b, shape))


def _null(name, rng, sims=SIMS, n=N):
    """(scores_a, scores_b) with equal means, often different distributions."""
    shape = (sims, n)
    if name == "unimodal vs bimodal":  # Beta(2, 2) vs half near 0, half near 1: both mean 1/2
        b = np.where(rng.random(shape) < 0.5, rng.uniform(0, 0.2, shape), rng.uniform(0.8, 1, shape))
        return rng.beta(2, 2, shape), b
    if name == "skewed near 0":  # mean 0.1 both: Beta(0.5, 4.5) vs half zeros, half Beta(1, 4)
        return rng.beta(0.5, 4.5, shape), _zero_inflated(rng, shape, 0.5, 1, 4)
    if name == "skewed near 1":
        return 1 - rng.beta(0.5, 4.5, shape), 1 - _zero_inflated(rng, shape, 0.5, 1, 4)
    if name == "ties and zeros":  # 80% of pairs tie (mostly both 0), the rest independent
        tie = rng.random(shape) < 0.8
        shared = np.where(rng.random(shape) < 0.7, 0.0, rng.random(shape))
        return np.where(tie, shared, rng.random(shape)), np.where(tie, shared, rng.random(shape))
    if name == "paired, correlated":  # a shared initial-condition difficulty
        z = rng.standard_normal(shape)
        return norm.cdf(z + 0.5 * rng.standard_normal(shape)), norm.cdf(z + 0.5 * rng.standard_normal(shape))
    if name == "binary, correlated":
        z = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], size=shape)
        return (z[..., 0] < norm.ppf(0.7)).astype(float), (z[..., 1] < norm.ppf(0.7)).astype(float)
    if name == "all discordant":  # d = +-1, a fair coin: every bet is at its riskiest
        a = (rng.random(shape) < 0.5).astype(float)
        return a, 1 - a
    raise ValueError(name)


NULLS = ["unimodal vs bimodal", "skewed near 0", "skewed near 1", "ties and zeros", "paired, correlated",
         "binary, correlated", "all discordant"]
BETS = {
    "plain plug-in": {},
    "plain ONS": {"strategy": "ons"},
    "tuned": {"effect": PlannedEffect(0.1, 0.1)},
    "tuned constant": {"effect": PlannedEffect(0.1, 0.1), "prior_weight": math.inf},
    "tuned one-sided": {"effect": PlannedEffect(0.1, 0.1), "alternative": "greater"},
}


@pytest.mark.parametrize("null", NULLS)
def test_level_when_looking_after_every_episode(null):
    rng = np.random.default_rng(NULLS.index(null))
    d = betting.paired_diffs(*_null(null, rng))
    assert abs(d.mean()) < 0.01  # the simulated null really has equal means
    for bet, kw in BETS.items():
        rate = np.mean(betting.first_rejection(d, alpha=ALPHA, **kw) > 0)
        assert rate <= LIMIT, (null, bet, rate)


def test_level_of_a_shifted_null_and_of_one_inside_it():
    """H0: E[d] <= -0.1 (a non-inferiority margin): on its boundary and strictly inside it."""
    rng = np.random.default_rng(11)
    noise = rng.uniform(-0.5, 0.5, (SIMS, N))
    for mean, bound in ((-0.1, LIMIT), (-0.2, 0.01)):
        rate = np.mean(betting.first_rejection(mean + noise, alpha=ALPHA, alternative="greater", null=-0.1) > 0)
        assert rate <= bound


def test_binary_tuned_level_at_the_planned_discordance():
    rng = np.random.default_rng(3)
    a, b = _null("binary, correlated", rng, n=400)
    effect = PlannedEffect.binary(0.7, 0.1, discordance=0.27)
    for w in (betting.DEFAULT_PRIOR_WEIGHT, math.inf):
        rate = np.mean(betting.discordant_first_rejection(a, b, alpha=ALPHA, effect=effect, prior_weight=w) > 0)
        assert rate <= LIMIT


def _progress_alternative(rng, sims, n, shift=0.15):
    """A paired progress difference: a shared difficulty, A ahead by about ``shift``."""
    z = rng.standard_normal((sims, n))
    a = norm.cdf(z + 0.7 * rng.standard_normal((sims, n)) + 2.5 * shift)
    b = norm.cdf(z + 0.7 * rng.standard_normal((sims, n)))
    return a, b


def test_power_early_stopping_and_direction():
    rng = np.random.default_rng(21)
    a, b = _progress_alternative(rng, 1000, N)
    d = betting.paired_diffs(a, b)
    pilot = PlannedEffect.from_pilot(betting.paired_diffs(*_progress_alternative(np.random.default_rng(99), 20, 500)))
    assert 0.08 < pilot.mean < 0.2
    plain_stops, plain_dir = betting.first_decision(d, alpha=ALPHA)
    tuned_stops, tuned_dir = betting.first_decision(d, alpha=ALPHA, effect=pilot)
    for stops, direction in ((plain_stops, plain_dir), (tuned_stops, tuned_dir)):
        assert np.mean(stops > 0) > 0.95
        assert np.all(direction[stops > 0] == 1)
        assert np.median(stops[stops > 0]) < N / 2  # decided well before the end
    assert tuned_stops[tuned_stops > 0].mean() < plain_stops[plain_stops > 0].mean()  # the plan pays
    _, swapped = betting.first_decision(-d, alpha=ALPHA, effect=pilot)
    assert np.all(swapped[swapped != 0] == -1)


def test_binary_tuned_bet_needs_fewer_pairs_than_the_flat_mixture():
    """At the planned effect 0.80 vs 0.70 (rho 0.5) the bet tuned to it decides sooner than today's
    discordant-pair mixture, on the same pairs."""
    rng = np.random.default_rng(8)
    z = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], size=(2000, 400))
    a, b = z[..., 0] < norm.ppf(0.8), z[..., 1] < norm.ppf(0.7)
    psi = float(np.mean(a != b))
    today = sequential.first_rejection(a, b, alpha=ALPHA)
    tuned = betting.discordant_first_rejection(a, b, alpha=ALPHA, effect=PlannedEffect.binary(0.7, 0.1, psi))
    used = {k: np.where(s > 0, s, 400).mean() for k, s in (("today", today), ("tuned", tuned))}
    assert used["tuned"] < 0.95 * used["today"]
    assert np.mean(tuned > 0) >= np.mean(today > 0)


def test_tuned_plug_in_recovers_when_the_plan_overstates_the_effect():
    """A constant Kelly bet for delta = 0.10 loses money when the true delta is 0.03 (its growth is
    negative below about half the planned effect); the plug-in started at the plan learns the
    smaller effect and still decides."""
    rng = np.random.default_rng(4)
    p10, p01 = 0.15, 0.12
    u = rng.random((200, 6000))
    d = np.where(u < p10, 1.0, np.where(u < p10 + p01, -1.0, 0.0))
    effect = PlannedEffect.binary(0.7, 0.1, discordance=0.27)
    plug_in = np.mean(betting.first_rejection(d, alpha=ALPHA, effect=effect) > 0)
    constant = np.mean(betting.first_rejection(d, alpha=ALPHA, effect=effect, prior_weight=math.inf) > 0)
    assert plug_in > 0.7 and constant < 0.3


def test_binary_tuned_bet_is_the_beta_bayes_factor_of_the_planned_prior():
    """On d in {-1, 0, 1} the plug-in bet with w pseudo-episodes at (delta, psi) is the posterior
    mean of P(A wins | discordant) under Beta(w(psi + delta)/2, w(psi - delta)/2), so its wealth is
    that prior's Bayes factor against 1/2 - the flat-prior mixture of ``sequential`` re-centred."""
    rng = np.random.default_rng(0)
    d = rng.choice([-1.0, 0.0, 1.0], p=[0.1, 0.7, 0.2], size=200)
    effect, w = PlannedEffect(0.1, 0.3), 40.0
    path = betting.log_e_process(d, alternative="greater", effect=effect, prior_weight=w, cap=0.99)
    a0, b0 = w * (0.3 + 0.1) / 2, w * (0.3 - 0.1) / 2
    wins, losses = np.cumsum(d > 0), np.cumsum(d < 0)
    bayes = betaln(a0 + wins, b0 + losses) - betaln(a0, b0) + (wins + losses) * np.log(2)
    np.testing.assert_allclose(path, bayes, atol=1e-9)


def test_bets_are_predictable_and_deterministic():
    rng = np.random.default_rng(1)
    d = betting.paired_diffs(*_null("paired, correlated", rng, sims=3, n=100))
    changed = d.copy()
    changed[:, 60:] = 1.0
    for kw in BETS.values():
        first = betting.log_e_process(d, **kw)
        np.testing.assert_array_equal(first, betting.log_e_process(d, **kw))
        # the path up to episode 60 cannot see what comes after it
        np.testing.assert_array_equal(first[:, :60], betting.log_e_process(changed, **kw)[:, :60])
    same = [betting.first_rejection(betting.paired_diffs(*_null("skewed near 1", np.random.default_rng(7), 200, 100)),
                                    alpha=ALPHA) for _ in range(2)]
    np.testing.assert_array_equal(same[0], same[1])


def test_truncation_keeps_the_wealth_positive():
    worst = -np.ones(50)
    for kw in ({"effect": PlannedEffect(0.5, 0.5), "prior_weight": math.inf, "alternative": "greater"},
               {"alternative": "greater"}, {"strategy": "ons", "alternative": "greater"}):
        path = betting.log_e_process(np.r_[np.ones(20), worst], **kw)
        assert np.all(np.isfinite(path))
        assert np.all(np.diff(path) >= math.log(1 - betting.DEFAULT_CAP) - 1e-12)


def test_no_evidence_no_wealth_and_decide():
    assert betting.log_e_process(np.zeros(10))[-1] == pytest.approx(0.0)
    assert betting.decide([1.0] * 40, [0.2] * 40, alpha=ALPHA) == "A better"
    assert betting.decide([0.2] * 40, [1.0] * 40, alpha=ALPHA) == "B better"
    assert betting.decide([0.6, 0.4], [0.5, 0.5], alpha=ALPHA) == "undecided"
    assert betting.decide([], [], alpha=ALPHA) == "undecided"
    assert betting.first_rejection(np.zeros((3, 0)), alpha=ALPHA).tolist() == [-1, -1, -1]


def test_equivalence_decides_inside_the_margin_and_holds_its_level_on_it():
    rng = np.random.default_rng(12)
    inside = rng.uniform(-0.2, 0.2, (1000, N))
    assert np.mean(betting.equivalence_first(inside, margin=0.1, alpha=ALPHA) > 0) > 0.9
    on_margin = 0.1 + rng.uniform(-0.3, 0.3, (SIMS, N))
    assert np.mean(betting.equivalence_first(on_margin, margin=0.1, alpha=ALPHA) > 0) <= LIMIT


@pytest.mark.parametrize("call", [
    lambda: betting.first_rejection([0.5, 1.5], alpha=ALPHA),
    lambda: betting.first_rejection([0.5, np.nan], alpha=ALPHA),
    lambda: betting.first_rejection([0.5], alpha=1.5),
    lambda: betting.first_rejection([0.5], alpha=ALPHA, cap=1.0),
    lambda: betting.first_rejection([0.5], alpha=ALPHA, strategy="kelly"),
    lambda: betting.first_rejection([0.5], alpha=ALPHA, null=1.0),
    lambda: betting.paired_diffs([0.5, 1.2], [0.5, 0.5]),
    lambda: PlannedEffect(0.3, 0.05),
    lambda: betting.first_rejection([0.5], alpha=ALPHA, strategy="ons", effect=PlannedEffect(0.1, 0.1)),
    lambda: PlannedEffect.binary(0.95, 0.1),
])
def test_rejects_bad_input(call):
    with pytest.raises(ValueError):
        call()
