"""AUROC with DeLong's logit interval: exact values on small samples, coverage by simulation
(including an AUROC near 1 and small, unbalanced samples)."""

import numpy as np
import pytest
from scipy.stats import norm

from evalsuite.stats.auroc import auroc_interval

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


def test_known_values_and_ties():
    assert auroc_interval([3, 4], [1, 2]).estimate == 1.0
    assert auroc_interval([1, 2], [3, 4]).estimate == 0.0
    assert auroc_interval([1, 2], [1, 2]).estimate == 0.5  # ties count a half
    assert auroc_interval([2, 3, 5], [1, 4]).estimate == pytest.approx(4 / 6)
    ci = auroc_interval([3, 4, 5], [1, 2, 2.5])  # complete separation: no collapse to [1, 1]
    assert 0 < ci.low < ci.high < 1
    with pytest.raises(ValueError, match="at least 2"):
        auroc_interval([1], [2, 3])


@pytest.mark.parametrize("shift,m,n", [(0.0, 30, 30), (1.0, 40, 15), (2.5, 50, 50), (1.0, 12, 60), (3.5, 20, 20), (2.0, 8, 8)])
def test_coverage_by_simulation(shift, m, n):
    """Normal scores shifted by ``shift``: the true AUROC is Phi(shift / sqrt 2). 2,000 replications:
    coverage of the 95% interval within 3 standard errors of 0.95 or above (never far below)."""
    rng = np.random.default_rng(7)
    truth = norm.cdf(shift / np.sqrt(2))
    reps = 2000
    hits = 0
    for _ in range(reps):
        ci = auroc_interval(rng.normal(shift, 1, m), rng.normal(0, 1, n))
        hits += ci.low <= truth <= ci.high
    coverage = hits / reps
    se = np.sqrt(0.95 * 0.05 / reps)
    assert coverage >= 0.95 - 3 * se - 0.01, coverage  # DeLong is slightly liberal in small samples
    assert coverage <= 0.99, coverage  # and not uselessly wide


def test_hanley_mcneil_floor_only_at_complete_separation():
    """The docstring's rule: AUROC exactly 1 takes Hanley & McNeil's variance at 1 - 1/(2mn); one
    discordant pair (AUROC 35/36) takes DeLong's own, though Hanley & McNeil's is larger there."""
    def logit_interval(auc, variance, m, n):
        half = norm.ppf(0.975) * np.sqrt(variance) / (auc * (1 - auc))
        centre = np.log(auc / (1 - auc))
        return tuple(1 / (1 + np.exp(-v)) for v in (centre - half, centre + half))

    def hanley_mcneil(a, m, n):
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        return (a * (1 - a) + (m - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (m * n)

    m = n = 6
    pos, neg = np.arange(10.0, 16.0), np.arange(0.0, 6.0)  # separated
    ci = auroc_interval(pos, neg)
    inside = 1 - 0.5 / (m * n)
    assert ci.estimate == 1.0
    assert (ci.low, ci.high) == pytest.approx(logit_interval(inside, hanley_mcneil(inside, m, n), m, n))
    pos[0] = 4.5  # one pair out of order (below the negative 5)
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    delong = psi.mean(axis=1).var(ddof=1) / m + psi.mean(axis=0).var(ddof=1) / n
    ci = auroc_interval(pos, neg)
    assert ci.estimate == pytest.approx(35 / 36) and delong < hanley_mcneil(35 / 36, m, n)
    assert (ci.low, ci.high) == pytest.approx(logit_interval(35 / 36, delong, m, n))
