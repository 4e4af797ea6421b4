import numpy as np

from evalsuite.stats.mixed import fit_policy_effects


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
    assert 0.4 < fit.task_sd < 2.5


def test_same_generator_same_bits():
    data = _simulate(np.random.default_rng(2), [0.0, 0.5])
    assert fit_policy_effects(*data, rng=np.random.default_rng(7)) == fit_policy_effects(*data, rng=np.random.default_rng(7))
