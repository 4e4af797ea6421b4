import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from statsmodels.stats.proportion import proportion_confint

from evalsuite.stats import beta_posterior, proportion_interval

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

SM_METHOD = {"wilson": "wilson", "clopper-pearson": "beta", "jeffreys": "jeffreys"}


@pytest.mark.parametrize("method", list(SM_METHOD))
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_matches_statsmodels(method, level):
    for n in (1, 2, 5, 10, 20, 50, 137):
        for k in range(n + 1):
            if method == "jeffreys" and k in (0, n):
                continue  # ours uses the boundary convention (bound = 0 or 1); see test below
            ours = proportion_interval(k, n, level=level, method=method)
            low, high = proportion_confint(k, n, alpha=1 - level, method=SM_METHOD[method])
            assert ours.low == pytest.approx(low, abs=1e-9), (k, n)
            assert ours.high == pytest.approx(high, abs=1e-9), (k, n)


def test_jeffreys_boundary_convention():
    """Brown, Cai & DasGupta (2001): at k = 0 the lower bound is 0 (and at k = n the upper is 1);
    the other bound equals statsmodels' Jeffreys bound."""
    ci0, cin = proportion_interval(0, 12, method="jeffreys"), proportion_interval(12, 12, method="jeffreys")
    assert ci0.low == 0.0 and cin.high == 1.0
    assert ci0.high == pytest.approx(proportion_confint(0, 12, method="jeffreys")[1], abs=1e-9)
    assert cin.low == pytest.approx(proportion_confint(12, 12, method="jeffreys")[0], abs=1e-9)


@pytest.mark.parametrize("k,n,low,high", [(25, 50, 0.366, 0.634), (45, 50, 0.786, 0.957), (50, 50, 0.929, 1.0),
                                          (9, 10, 0.596, 0.982)])
def test_wilson_reference_values(k, n, low, high):
    ci = proportion_interval(k, n)
    assert (round(ci.low, 3), round(ci.high, 3)) == (low, high)


@given(st.integers(0, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.sampled_from(list(SM_METHOD)), st.floats(0.5, 0.999))
def test_interval_contains_estimate_and_stays_in_unit(kn, method, level):
    k, n = kn
    ci = proportion_interval(k, n, level=level, method=method)
    assert 0.0 <= ci.low <= ci.high <= 1.0
    if n:
        assert ci.low <= k / n <= ci.high


def _coverage(method, n, p, rng, sims=20_000):
    table = [proportion_interval(k, n, method=method) for k in range(n + 1)]
    lows = np.array([c.low for c in table])
    highs = np.array([c.high for c in table])
    k = rng.binomial(n, p, size=sims)
    return np.mean((lows[k] <= p) & (p <= highs[k]))


@pytest.mark.parametrize("n", [20, 50, 200])
def test_coverage_by_simulation(n):
    """Nominal 95%: Wilson near 95% on average over p; Clopper-Pearson never below it."""
    rng = np.random.default_rng(123)
    ps = np.linspace(0.05, 0.95, 19)
    wilson = np.array([_coverage("wilson", n, p, rng) for p in ps])
    cp = np.array([_coverage("clopper-pearson", n, p, rng) for p in ps])
    jeffreys = np.array([_coverage("jeffreys", n, p, rng) for p in ps])
    assert 0.935 <= wilson.mean() <= 0.965
    assert 0.935 <= jeffreys.mean() <= 0.965
    assert cp.min() >= 0.94  # exact: >= 95% up to simulation noise (sd ~0.0015)
    assert wilson.min() >= 0.88


def test_wald_would_fail_where_wilson_holds():
    """Why Wilson: at p = 0.95, n = 20 the Wald interval covers far less than 95%."""
    rng = np.random.default_rng(0)
    k = rng.binomial(20, 0.95, size=20_000)
    lo, hi = proportion_confint(k, 20, method="normal")
    wald = np.mean((lo <= 0.95) & (hi >= 0.95))
    assert wald < 0.9 < _coverage("wilson", 20, 0.95, rng)


def test_bad_arguments():
    with pytest.raises(ValueError, match="successes"):
        proportion_interval(5, 3)
    with pytest.raises(ValueError, match="level"):
        proportion_interval(1, 3, level=1.5)
    with pytest.raises(ValueError, match="wald"):
        proportion_interval(1, 3, method="wald")


def test_empty_is_uninformative():
    ci = proportion_interval(0, 0)
    assert (ci.low, ci.high) == (0.0, 1.0) and np.isnan(ci.estimate)


def test_beta_posterior():
    post = beta_posterior(7, 10)
    assert (post.alpha, post.beta) == (8.0, 4.0)
    assert post.mean == pytest.approx(8 / 12)
    low, high = post.interval(0.95)
    assert low < post.mean < high


def _exact_coverage(method, n, ps):
    from scipy import stats

    table = [proportion_interval(k, n, method=method) for k in range(n + 1)]
    lows, highs = np.array([c.low for c in table]), np.array([c.high for c in table])
    k = np.arange(n + 1)
    return np.array([np.sum(stats.binom.pmf(k, n, p) * ((lows <= p) & (p <= highs))) for p in ps])


@pytest.mark.parametrize("n", [10, 20, 50, 200])
def test_exact_coverage_over_a_grid_of_rates(n):
    """Exact (binomial-sum) coverage over p = 0.01..0.99: Wilson and Jeffreys average within one
    point of 95%; Clopper-Pearson is never below 95% (it is conservative: 96-98% on average).
    Worst cases are stated in docs/statistics.md."""
    ps = np.linspace(0.01, 0.99, 99)
    for method in ("wilson", "jeffreys"):
        assert abs(_exact_coverage(method, n, ps).mean() - 0.95) <= 0.01, method
    assert _exact_coverage("clopper-pearson", n, ps).min() >= 0.95
