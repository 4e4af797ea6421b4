import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from evalsuite.stats import adjust_pvalues, paired_comparison
from evalsuite.stats.paired import mcnemar_exact, newcombe_paired_interval

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


def test_mcnemar_matches_statsmodels():
    for b in range(0, 25):
        for c in range(0, 25):
            ref = mcnemar(np.array([[10, b], [c, 7]]), exact=True).pvalue
            assert mcnemar_exact(b, c) == pytest.approx(ref, abs=1e-9)


def test_paired_table_counts():
    a = np.array([1, 1, 0, 0, 1, 1, 0, 1], bool)
    b = np.array([1, 0, 1, 0, 0, 1, 0, 0], bool)
    cmp = paired_comparison(a, b)
    assert (cmp.both, cmp.a_only, cmp.b_only, cmp.neither, cmp.n) == (2, 3, 1, 2, 8)
    assert cmp.difference == pytest.approx(2 / 8)
    assert cmp.ci_low <= cmp.difference <= cmp.ci_high


def test_newcombe_interval_hand_computed():
    """(a, b, c, d) = (12, 9, 2, 1): p1 = 21/24, p2 = 14/24, phi = -6 / sqrt(21*3*14*10); the bounds
    are diff -/+ the square-and-add distances of the two Wilson intervals."""
    from evalsuite.stats import proportion_interval

    w1, w2 = proportion_interval(21, 24), proportion_interval(14, 24)
    p1, p2 = 21 / 24, 14 / 24
    phi = -6 / np.sqrt(21 * 3 * 14 * 10)
    low = (p1 - p2) - np.sqrt((p1 - w1.low) ** 2 - 2 * phi * (p1 - w1.low) * (w2.high - p2) + (w2.high - p2) ** 2)
    high = (p1 - p2) + np.sqrt((w1.high - p1) ** 2 - 2 * phi * (w1.high - p1) * (p2 - w2.low) + (p2 - w2.low) ** 2)
    assert newcombe_paired_interval(12, 9, 2, 1) == pytest.approx((low, high), abs=1e-12)
    # no discordant pairs and everything succeeded: the interval still has width (n = 10)
    low0, high0 = newcombe_paired_interval(10, 0, 0, 0)
    assert low0 < 0 < high0


@pytest.mark.parametrize("p_a,p_b,rho", [(0.7, 0.7, 0.5), (0.8, 0.6, 0.3), (0.9, 0.85, 0.6), (0.5, 0.4, 0.0)])
def test_paired_interval_coverage_by_simulation(p_a, p_b, rho):
    """Correlated pairs from a Gaussian copula; the 95% interval covers the true difference ~95%."""
    rng = np.random.default_rng(7)
    from scipy.stats import norm

    n, sims = 40, 4000
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=(sims, n))
    a = z[..., 0] < norm.ppf(p_a)
    b = z[..., 1] < norm.ppf(p_b)
    covered = []
    for i in range(sims):
        cmp = paired_comparison(a[i], b[i])
        covered.append(cmp.ci_low <= p_a - p_b <= cmp.ci_high)
    assert 0.93 <= np.mean(covered) <= 0.985


def test_mcnemar_type_one_error_by_simulation():
    """Equal marginal rates: the exact test rejects at most alpha of the time."""
    rng = np.random.default_rng(11)
    n, sims = 50, 4000
    shared = rng.random((sims, n)) < 0.6
    a = np.where(rng.random((sims, n)) < 0.3, rng.random((sims, n)) < 0.6, shared)
    b = np.where(rng.random((sims, n)) < 0.3, rng.random((sims, n)) < 0.6, shared)
    rejections = np.mean([paired_comparison(a[i], b[i]).p_value < 0.05 for i in range(sims)])
    assert rejections <= 0.05 + 0.01


@pytest.mark.parametrize("ours,theirs", [("holm", "holm"), ("bh", "fdr_bh")])
def test_corrections_match_statsmodels(ours, theirs):
    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 17):
        p = rng.random(m) ** 3
        np.testing.assert_allclose(adjust_pvalues(p, ours), multipletests(p, method=theirs)[1], atol=1e-12)


def test_correction_rejects_unknown_method():
    with pytest.raises(ValueError, match="bonferoni"):
        adjust_pvalues([0.1], "bonferoni")
