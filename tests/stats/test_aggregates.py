"""Aggregates against their definitions (rliable's), hand cases, and the bootstrap's seeding."""

import numpy as np
import pytest
from scipy import stats

from evalsuite.stats import aggregates as ag


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
