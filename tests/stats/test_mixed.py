import math
import warnings

import numpy as np
import pytest

from evalsuite.stats.mixed import fit_policy_effects

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


def _simulate(rng, effects, tasks=10, n=40, task_sd=1.0):
    task_eff = rng.normal(0, task_sd, tasks)
    t = np.repeat(np.arange(tasks), len(effects) * n)
    p = np.tile(np.repeat(np.arange(len(effects)), n), tasks)
    logit = 0.3 + task_eff[t] + np.asarray(effects)[p]
    return t, p, rng.random(t.size) < 1 / (1 + np.exp(-logit))


def test_recovers_policy_effects_by_simulation():
    rng = np.random.default_rng(0)
    truth = [0.0, 0.7, -0.4]
    hits, errors = 0, []
    for _ in range(20):
        fit = fit_policy_effects(*_simulate(rng, truth), rng=np.random.default_rng(0))
        for e in fit.effects:
            hits += e.low <= truth[e.policy] <= e.high
            errors.append(e.log_odds - truth[e.policy])
    assert abs(np.mean(errors)) < 0.1  # unbiased enough
    assert hits / 40 >= 0.8  # variational intervals run a little narrow


def test_no_policy_difference_gives_intervals_around_zero():
    fit = fit_policy_effects(*_simulate(np.random.default_rng(1), [0.0, 0.0], tasks=12, n=60), rng=np.random.default_rng(0))
    (effect,) = fit.effects
    assert effect.low < 0 < effect.high
    assert 0.4 < fit.task_sd_median < 2.5


def test_same_generator_same_bits():
    data = _simulate(np.random.default_rng(2), [0.0, 0.5])
    assert fit_policy_effects(*data, rng=np.random.default_rng(7)) == fit_policy_effects(*data, rng=np.random.default_rng(7))


def test_convergence_is_reported_not_hidden():
    data = _simulate(np.random.default_rng(3), [0.0, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may escape the fit: it is recorded on the result
        good = fit_policy_effects(*data, rng=np.random.default_rng(0))
        stopped = fit_policy_effects(*data, rng=np.random.default_rng(0), max_iterations=2)
    assert good.converged and "success" in good.message and good.to_dict()["converged"] is True
    assert not stopped.converged and "iterations" in stopped.message
    assert any("did not converge" in w for w in stopped.fit_warnings)


def test_task_sd_is_the_lognormal_posterior_median_and_mean():
    """statsmodels fits a Gaussian q to the log of the sd: exp(its mean) is the median, not the mean."""
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    t, p, y = _simulate(np.random.default_rng(4), [0.0, 0.5], tasks=8)
    fit = fit_policy_effects(t, p, y, rng=np.random.default_rng(0))
    exog = np.column_stack([np.ones(len(y)), (p == 1).astype(float)])
    vc = np.column_stack([(t == j).astype(float) for j in range(8)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = BinomialBayesMixedGLM(y.astype(float), exog, vc, np.zeros(8, dtype=int), vcp_p=1.0, fe_p=2.0
                                    ).fit_vb(rng=np.random.default_rng(0))
    m, s = ref.vcp_mean[0], ref.vcp_sd[0]
    assert fit.task_sd_median == math.exp(m) and fit.task_sd_mean == math.exp(m + s * s / 2)
    assert fit.task_sd_mean > fit.task_sd_median
