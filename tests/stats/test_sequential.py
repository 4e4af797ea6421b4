import numpy as np
import pytest
from scipy.stats import norm

from evalsuite.stats.sequential import decide, first_rejection, log_e_value

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


def _pairs(rng, sims, n, p_a, p_b, rho):
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=(sims, n))
    return z[..., 0] < norm.ppf(p_a), z[..., 1] < norm.ppf(p_b)


@pytest.mark.parametrize("p,rho", [(0.5, 0.0), (0.8, 0.5), (0.9, 0.3), (0.3, 0.7)])
def test_false_decisions_stay_below_alpha_when_looking_after_every_pair(p, rho):
    rng = np.random.default_rng(int(p * 100) + int(rho * 10))
    a, b = _pairs(rng, 10_000, 300, p, p, rho)
    rate = np.mean(first_rejection(a, b, alpha=0.05) > 0)
    assert rate <= 0.05


def test_naive_repeated_mcnemar_would_not():
    """Why anytime-valid: a fixed-n test checked after every 10 pairs rejects far more than alpha."""
    from scipy.stats import binomtest

    rng = np.random.default_rng(0)
    a, b = _pairs(rng, 400, 300, 0.6, 0.6, 0.0)
    false = 0
    for i in range(400):
        for n in range(10, 301, 10):
            wa, wb = int(np.sum(a[i, :n] & ~b[i, :n])), int(np.sum(~a[i, :n] & b[i, :n]))
            if wa + wb and binomtest(wa, wa + wb).pvalue < 0.05:
                false += 1
                break
    assert false / 400 > 0.1


def test_detects_a_real_difference_and_direction():
    rng = np.random.default_rng(5)
    a, b = _pairs(rng, 2000, 400, 0.85, 0.65, 0.5)
    stops = first_rejection(a, b, alpha=0.05)
    assert np.mean(stops > 0) > 0.9
    assert decide(30, 5, alpha=0.05) == "A better" and decide(5, 30, alpha=0.05) == "B better"
    assert decide(3, 1, alpha=0.05) == "undecided"


def test_e_value_is_one_before_any_evidence():
    assert log_e_value(0, 0) == pytest.approx(0.0)
