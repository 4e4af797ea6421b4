import numpy as np
import pytest

from evalsuite.stats import stratified_bootstrap_mean

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


def test_same_seed_same_bits_and_different_seed_differs():
    k, n = [3, 10, 17], [20, 20, 20]
    a = stratified_bootstrap_mean(k, n, rng=np.random.default_rng(5), reps=2000)
    b = stratified_bootstrap_mean(k, n, rng=np.random.default_rng(5), reps=2000)
    c = stratified_bootstrap_mean(k, n, rng=np.random.default_rng(6), reps=2000)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)


def test_agrees_with_naive_episode_resampling():
    """Binomial draws are the episode bootstrap: quantiles agree with resampling outcome arrays."""
    rng = np.random.default_rng(0)
    k, n = np.array([4, 11, 18, 9]), np.array([20, 25, 20, 30])
    fast = stratified_bootstrap_mean(k, n, rng=rng, reps=20_000)
    outcomes = [np.r_[np.ones(ki), np.zeros(ni - ki)] for ki, ni in zip(k, n, strict=False)]
    naive = np.mean([[rng.choice(o, size=o.size).mean() for o in outcomes] for _ in range(4000)], axis=1)
    lo, hi = np.quantile(naive, [0.025, 0.975])
    assert fast.estimate == pytest.approx(np.mean(k / n))
    assert fast.low == pytest.approx(lo, abs=0.015)
    assert fast.high == pytest.approx(hi, abs=0.015)


def test_coverage_of_mean_over_tasks():
    rng = np.random.default_rng(1)
    p = np.array([0.2, 0.5, 0.7, 0.9, 0.6])
    n = np.full(5, 40)
    hits = 0
    for _ in range(400):
        k = rng.binomial(n, p)
        ci = stratified_bootstrap_mean(k, n, rng=rng, reps=2000)
        hits += ci.low <= p.mean() <= ci.high
    assert 0.90 <= hits / 400 <= 0.99


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        stratified_bootstrap_mean([1, 2], [3], rng=np.random.default_rng(0))
    with pytest.raises(ValueError):
        stratified_bootstrap_mean([4], [3], rng=np.random.default_rng(0))
