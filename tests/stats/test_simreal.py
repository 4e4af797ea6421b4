import math

import numpy as np
import pytest

from evalsuite.stats.simreal import mmrv, pearson_interval, sim_real_agreement, spearman

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

SIM = [0.9, 0.6, 0.5, 0.2]
REAL = [0.8, 0.4, 0.6, 0.1]


def test_mmrv_by_hand():
    """Policies 1-4. The simulator orders 2 above 3 (0.6 > 0.5), the robot 3 above 2 (0.6 > 0.4):
    the only flipped pair, a real gap of 0.2. Each policy's largest violation: 0, 0.2, 0.2, 0;
    MMRV = 0.4 / 4 = 0.1."""
    assert mmrv(SIM, REAL) == pytest.approx(0.1, abs=1e-12)
    assert mmrv(REAL, REAL) == 0.0
    # Every pair flipped: (1, 2) real gap 0.5, (1, 3) 0.2, (2, 3) 0.3. Each policy's largest:
    # p1 max(0.5, 0.2) = 0.5, p2 max(0.5, 0.3) = 0.5, p3 max(0.2, 0.3) = 0.3; MMRV = 1.3 / 3.
    assert mmrv([0.1, 0.5, 0.3], [0.9, 0.4, 0.7]) == pytest.approx(1.3 / 3, abs=1e-12)


def test_mmrv_ties_follow_simplerenv():
    """A pair the simulator ties (0.5, 0.5) but the robot separates (0.7 > 0.3): "sim_i > sim_j" is
    false for both orders, "real_i > real_j" true for policy 1 only - a violation of 0.4 charged to
    policy 1; MMRV = (0.4 + 0) / 2 = 0.2. A robot tie costs nothing (its gap is 0)."""
    assert mmrv([0.5, 0.5], [0.7, 0.3]) == pytest.approx(0.2)
    assert mmrv([0.7, 0.3], [0.5, 0.5]) == 0.0


def test_correlations_by_hand():
    """Deviations from the means (0.55, 0.475): sim .35 .05 -.05 -.35, real .325 -.075 .125 -.375.
    Cross products sum to .11375 - .00375 - .00625 + .13125 = .235; squares .25 and .2675;
    r = .235 / sqrt(.25 * .2675) = 0.908739. Ranks: sim 4 3 2 1, real 4 2 3 1, d^2 sums to 2:
    rho = 1 - 6 * 2 / (4 * 15) = 0.8. Fisher z at n = 4: atanh(r) +- 1.959964 / sqrt(1)."""
    p = pearson_interval(SIM, REAL)
    assert p.estimate == pytest.approx(0.235 / math.sqrt(0.25 * 0.2675), abs=1e-12)
    z = math.atanh(p.estimate)
    assert (p.low, p.high) == pytest.approx((math.tanh(z - 1.959964), math.tanh(z + 1.959964)), abs=1e-6)
    assert spearman(SIM, REAL) == pytest.approx(0.8, abs=1e-12)
    three = pearson_interval(SIM[:3], REAL[:3])
    assert (three.low, three.high) == (-1.0, 1.0) and "n <= 3" in three.method
    assert math.isnan(pearson_interval([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]).estimate)
    assert math.isnan(spearman([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]))


def test_agreement_bundle_and_its_bootstrap_over_episodes():
    n = np.array([50, 50, 50, 50])
    sim_k = (np.array(SIM) * 50).astype(int)
    real_k = (np.array(REAL) * 50).astype(int)
    result = sim_real_agreement(list("abcd"), sim_k, n, real_k, n, rng=np.random.default_rng(0), reps=4000)
    assert result.mmrv.estimate == pytest.approx(0.1) and result.spearman.estimate == pytest.approx(0.8)
    assert result.mmrv.low <= 0.1 <= result.mmrv.high and result.mmrv.reps == 4000
    assert -1 <= result.spearman.low <= 0.8 <= result.spearman.high <= 1
    assert result.sim_rate == tuple(SIM) and result.real_episodes == (50,) * 4
    again = sim_real_agreement(list("abcd"), sim_k, n, real_k, n, rng=np.random.default_rng(0), reps=4000)
    assert again == result  # seeded
    # more episodes: the same rates, a narrower interval
    big = sim_real_agreement(list("abcd"), sim_k * 20, n * 20, real_k * 20, n * 20, rng=np.random.default_rng(0))
    assert big.mmrv.high - big.mmrv.low < result.mmrv.high - result.mmrv.low
    assert big.to_dict()["policies"][0] == {"policy": "a", "sim_rate": 0.9, "real_rate": 0.8, "sim_episodes": 1000,
                                            "real_episodes": 1000}
    with pytest.raises(ValueError, match="distinct policies"):
        sim_real_agreement(["a"], [1], [2], [1], [2], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="successes <= episodes"):
        sim_real_agreement(["a", "b"], [3, 1], [2, 2], [1, 1], [2, 2], rng=np.random.default_rng(0))
