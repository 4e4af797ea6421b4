"""Slow studies (`nox -s tests_slow`): larger simulations and a full-suite run on the simulator."""

import numpy as np
import pytest

from evalsuite.harness import EvaluateRequest, evaluate
from evalsuite.plan import PolicyEntry
from evalsuite.stats import paired_comparison, proportion_interval

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", ["wilson", "jeffreys", "clopper-pearson"])
def test_interval_coverage_over_a_wide_grid(method):
    """n in 10..500, p in 0.02..0.98: mean coverage near nominal; exact method never below it."""
    rng = np.random.default_rng(99)
    coverages = []
    for n in (10, 20, 50, 100, 200, 500):
        table = [proportion_interval(k, n, method=method) for k in range(n + 1)]
        lows, highs = np.array([c.low for c in table]), np.array([c.high for c in table])
        for p in np.linspace(0.02, 0.98, 49):
            k = rng.binomial(n, p, size=50_000)
            coverages.append(np.mean((lows[k] <= p) & (p <= highs[k])))
    coverages = np.array(coverages)
    if method == "clopper-pearson":
        assert coverages.min() >= 0.945
    else:
        assert 0.94 <= coverages.mean() <= 0.965


def test_paired_interval_and_mcnemar_error_rates_many_settings():
    from scipy.stats import norm

    rng = np.random.default_rng(5)
    for n in (20, 50, 100):
        for p_a, p_b in ((0.5, 0.5), (0.9, 0.9), (0.8, 0.7), (0.95, 0.8)):
            for rho in (0.0, 0.4, 0.8):
                z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=(3000, n))
                a, b = z[..., 0] < norm.ppf(p_a), z[..., 1] < norm.ppf(p_b)
                cmps = [paired_comparison(a[i], b[i]) for i in range(3000)]
                coverage = np.mean([c.ci_low <= p_a - p_b <= c.ci_high for c in cmps])
                assert coverage >= 0.92, (n, p_a, p_b, rho, coverage)
                if p_a == p_b:
                    assert np.mean([c.p_value < 0.05 for c in cmps]) <= 0.06


def test_scripted_expert_on_all_50_metaworld_tasks(tmp_path):
    """Meta-World's experts are near-perfect: >= 95% on average, >= 7/10 on every task (on seed 0's
    initial conditions: soccer 8/10 here; basketball 7/10 elsewhere)."""
    req = EvaluateRequest.of(suite="metaworld", policies=[PolicyEntry("scripted", {})], out=tmp_path / "run",
                          episodes=10, batch_size=16, tracking_uri=None, progress=False)
    results = evaluate(req, log=lambda *_: None)
    per_task = {r.task: r.successes for r in results.per_task}
    assert min(per_task.values()) >= 7, per_task
    assert results.aggregate[0].mean >= 0.95
    assert results.trials.policy_errors == 0
