import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import power_proportions_2indep, proportion_effectsize

from evalsuite.stats.power import n_independent, n_paired, simulate_paired_power

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


@pytest.mark.parametrize("p1,p2,expected", [(0.7, 0.8, 294), (0.7, 0.9, 62), (0.5, 0.6, 388), (0.8, 0.9, 199)])
def test_independent_reference_values(p1, p2, expected):
    assert n_independent(p1, p2 - p1).n == expected


@pytest.mark.parametrize("p1,p2", [(0.7, 0.8), (0.5, 0.6), (0.8, 0.95), (0.3, 0.1), (0.9, 0.97)])
def test_independent_is_the_smallest_n_with_statsmodels_power(p1, p2):
    """statsmodels' power of the same pooled-variance test: >= 0.8 at our n, < 0.8 at n - 1."""
    n = n_independent(p1, p2 - p1).n
    assert power_proportions_2indep(p2 - p1, p1, n, alpha=0.05).power >= 0.8
    assert power_proportions_2indep(p2 - p1, p1, n - 1, alpha=0.05).power < 0.8


def test_independent_close_to_statsmodels_arcsine_solver():
    ref = NormalIndPower().solve_power(effect_size=proportion_effectsize(0.8, 0.7), alpha=0.05, power=0.8, ratio=1)
    assert n_independent(0.7, 0.1).n == pytest.approx(ref, rel=0.02)


def test_paired_connor_reference_value():
    assert n_paired(0.7, 0.1, discordance=0.2).n == 155  # vs 294 per policy unpaired


def test_paired_needs_fewer_when_outcomes_correlate():
    independent = n_paired(0.7, 0.1)  # discordance under independence = 0.7*0.2 + 0.8*0.3 = 0.38
    assert independent.discordance == pytest.approx(0.38)
    assert n_paired(0.7, 0.1, discordance=0.15).n < independent.n


@pytest.mark.parametrize("psi,delta", [(0.2, 0.1), (0.3, 0.15), (0.12, 0.08)])
def test_paired_power_by_simulation(psi, delta):
    """At the planned n the exact McNemar test reaches about the planned power: Connor's formula is
    for the asymptotic test, and the exact test is a little conservative (~0.76 for 0.8 here)."""
    size = n_paired(0.7, delta, discordance=psi)
    p10, p01 = (psi + delta) / 2, (psi - delta) / 2
    power = simulate_paired_power(size.n, p10, p01, rng=np.random.default_rng(1), reps=20_000)
    assert 0.74 <= power <= 0.86


def test_simulated_size_is_at_most_alpha():
    rejections = simulate_paired_power(150, 0.1, 0.1, rng=np.random.default_rng(2), reps=20_000)
    assert rejections <= 0.05 + 0.005


def test_bad_inputs():
    with pytest.raises(ValueError, match="delta"):
        n_independent(0.95, 0.1)
    with pytest.raises(ValueError, match="discordance"):
        n_paired(0.7, 0.2, discordance=0.1)
