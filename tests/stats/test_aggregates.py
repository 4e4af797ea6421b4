"""Aggregates against their definitions (rliable's), hand cases, and the bootstrap's seeding."""

import numpy as np
import pytest
from scipy import stats

from evalsuite.stats import aggregates as ag

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


@pytest.fixture
def scores():
    return np.random.default_rng(0).random((5, 7))


def test_point_metrics_match_definitions(scores):
    assert ag.mean(scores) == pytest.approx(scores.mean())
    assert ag.median(scores) == pytest.approx(np.median(scores.mean(axis=0)))
    assert ag.iqm(scores) == pytest.approx(stats.trim_mean(scores.reshape(-1), 0.25))
    flat = np.sort(scores.reshape(-1))
    assert ag.iqm(scores) == pytest.approx(flat[int(0.25 * flat.size):flat.size - int(0.25 * flat.size)].mean())
    assert ag.optimality_gap(scores) == pytest.approx(1 - np.minimum(scores, 1).mean())


def test_probability_of_improvement_hand_cases():
    # rliable's hand-computable case: X = {1, 2, 3}... per task, here 1 task
    x = np.array([[0.2], [0.5], [0.9]])
    y = np.array([[0.5], [0.6], [0.95]])
    # pairs where x > y: (0.9>0.5),(0.9>0.6) = 2; ties: (0.5,0.5) = 1 -> (2 + 0.5) / 9
    assert ag.probability_of_improvement(x, y) == pytest.approx(2.5 / 9)
    assert ag.probability_of_improvement(x, x) == pytest.approx(0.5)
    # averaged over tasks; equals Mann-Whitney U / (n_x n_y) per task
    rng = np.random.default_rng(1)
    a, b = rng.random((6, 4)), rng.random((5, 4))
    ref = np.mean([stats.mannwhitneyu(a[:, t], b[:, t]).statistic / 30 for t in range(4)])
    assert ag.probability_of_improvement(a, b) == pytest.approx(ref)


def test_bootstrap_is_seeded_and_stratified(scores):
    a = ag.interval(scores, "iqm", rng=np.random.default_rng(3), reps=2000)
    b = ag.interval(scores, "iqm", rng=np.random.default_rng(3), reps=2000)
    c = ag.interval(scores, "iqm", rng=np.random.default_rng(4), reps=2000)
    assert a == b and (a.low, a.high) != (c.low, c.high)
    assert a.low <= a.estimate <= a.high
    resampled = ag.stratified_resample(scores, rng=np.random.default_rng(0), reps=50)
    for t in range(scores.shape[1]):  # every resampled entry of task t comes from task t's runs
        assert np.isin(resampled[:, :, t], scores[:, t]).all()


def test_interval_chunks_give_the_same_distribution(scores):
    one = ag.interval(scores, "mean", rng=np.random.default_rng(9), reps=20_000, chunk=20_000)
    many = ag.interval(scores, "mean", rng=np.random.default_rng(9), reps=20_000, chunk=3_000)
    assert one.low == pytest.approx(many.low, abs=0.01) and one.high == pytest.approx(many.high, abs=0.01)


def test_performance_profile():
    s = np.array([[0.1, 0.5], [0.9, 0.7]])
    np.testing.assert_allclose(ag.performance_profile(s, np.array([0.0, 0.5, 0.95])), [1.0, 0.5, 0.0])


def test_bad_shape():
    with pytest.raises(ValueError, match="num_runs x num_tasks"):
        ag.interval(np.ones(3), "mean", rng=np.random.default_rng(0))


def test_agree_with_rliable_on_the_same_inputs():
    from rliable import library as rly
    from rliable import metrics as rm

    rng = np.random.default_rng(4)
    x, y = rng.random((10, 6)), rng.random((8, 6)) * 0.9
    assert ag.mean(x) == pytest.approx(rm.aggregate_mean(x))
    assert ag.median(x) == pytest.approx(rm.aggregate_median(x))
    assert ag.iqm(x) == pytest.approx(rm.aggregate_iqm(x))
    assert ag.optimality_gap(x) == pytest.approx(rm.aggregate_optimality_gap(x))
    assert ag.probability_of_improvement(x, y) == pytest.approx(rm.probability_of_improvement(x, y))
    # the same stratified bootstrap: percentile intervals agree up to Monte-Carlo error
    np.random.seed(0)  # rliable draws from numpy's global generator
    _, theirs = rly.get_interval_estimates({"x": x}, lambda s: np.array([rm.aggregate_iqm(s)]), reps=4000)
    ours = ag.interval(x, "iqm", rng=np.random.default_rng(5), reps=4000)
    assert [ours.low, ours.high] == pytest.approx(theirs["x"][:, 0], abs=0.02)


def test_run_aggregates_resample_episodes_within_tasks():
    from evalsuite.stats.bootstrap import stratified_bootstrap_mean

    k, n = np.array([[18, 7, 12, 20]]), np.array([[20, 20, 20, 20]])
    metrics, _ = ag.run_aggregates(k, n, rng=np.random.default_rng(2), reps=3000)
    ref = stratified_bootstrap_mean(k[0], n[0], rng=np.random.default_rng(2), reps=3000)
    (mean,) = metrics["mean"]
    assert (mean.estimate, mean.low, mean.high) == pytest.approx((ref.estimate, ref.low, ref.high))
    (iqm,) = metrics["iqm"]
    assert iqm.estimate == pytest.approx(stats.trim_mean(k[0] / n[0], 0.25))
    assert iqm.low <= iqm.estimate <= iqm.high


def test_run_probability_of_improvement_is_a_fraction_of_tasks_with_ties_half():
    k, n = np.array([[10, 5, 8], [6, 5, 9]]), np.full((2, 3), 10)
    _, poi = ag.run_aggregates(k, n, rng=np.random.default_rng(0), reps=2000)
    assert poi[0, 0, 1] == pytest.approx((1 + 0.5 + 0) / 3)
    assert poi[0, 0, 1] + poi[0, 1, 0] == pytest.approx(1.0)
    assert poi[1, 0, 1] <= poi[0, 0, 1] <= poi[2, 0, 1]
