import numpy as np
import pytest
from scipy.optimize import minimize

from benchmarks.coverage_rankings import bt_coverage, independent_judgments, paired_episodes, paired_truth
from evalsuite.stats.ranking import bradley_terry, fit_log_strengths, score_matrix

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


def direct_fit(wins, prior_ties):
    """Maximum likelihood written out: minimise -sum_ij W_ij log sigmoid(t_i - t_j), with
    ``prior_ties`` half-wins each way against a reference fixed at 0 (prior_ties=0: item 0 fixed)."""
    n = wins.shape[0]

    def unpack(x):
        return x if prior_ties > 0 else np.concatenate([[0.0], x])

    def objective(x):
        t = unpack(x)
        d = t[:, None] - t[None, :]
        value = np.sum(wins * np.logaddexp(0.0, -d))
        value += prior_ties / 2 * np.sum(np.logaddexp(0.0, -t) + np.logaddexp(0.0, t))
        p = 1 / (1 + np.exp(-d))
        grad = -np.sum(wins * (1 - p), axis=1) + np.sum(wins.T * (1 - p.T), axis=1)  # d/dt_i
        grad += prior_ties / 2 * (2 / (1 + np.exp(-t)) - 1)
        return value, (grad if prior_ties > 0 else grad[1:])

    x0 = np.zeros(n if prior_ties > 0 else n - 1)
    result = minimize(objective, x0, jac=True, method="BFGS", options={"gtol": 1e-11, "maxiter": 10_000})
    t = unpack(result.x)
    return t - t.mean()


@pytest.mark.parametrize("prior_ties", [0.0, 1.0, 3.0])
def test_choix_fit_is_the_maximum_likelihood_fit(prior_ties):
    rng = np.random.default_rng(0)
    theta = np.array([-0.5, 0.0, 0.3, 1.2, 0.9])
    first, second, score = independent_judgments(rng, theta, 12)
    score[::7] = 0.5  # some ties, half a win each
    wins = score_matrix(5, first, second, score)
    ours = fit_log_strengths(wins, prior_ties=prior_ties)
    np.testing.assert_allclose(ours, direct_fit(wins, prior_ties), atol=1e-6)
    assert abs(ours.sum()) < 1e-9


def test_an_item_that_never_loses_gets_a_finite_wide_estimate_with_the_prior_and_is_refused_without():
    rng = np.random.default_rng(1)
    first, second, score = independent_judgments(rng, np.array([0.0, 0.4, 0.8, 1.0]), 10)
    score[second == 3] = 0.0  # item 3 wins every one of its 30 judgments
    wins = score_matrix(4, first, second, score)
    with pytest.raises(ValueError, match="never loses"):
        fit_log_strengths(wins, prior_ties=0)
    fitted = fit_log_strengths(wins)
    np.testing.assert_allclose(fitted, direct_fit(wins, 1.0), atol=1e-6)
    ranking = bradley_terry(list("abcd"), first, second, score)
    top = ranking.strengths[0]
    assert top.item == "d" and top.rank_low == 1 and top.score == 30.0
    assert 2.0 < top.log_strength < 5.0  # finite; the prior's pull
    others = ranking.strengths[1:]
    assert top.high - top.low > 1.5 * max(s.high - s.low for s in others)  # less known than the rest


def test_ties_count_half_and_the_record_adds_up():
    # a beats b twice, b beats a once, one tie: a scores 2.5 of 4
    ranking = bradley_terry(["a", "b"], [0, 0, 1, 0], [1, 1, 0, 1], [1.0, 1.0, 1.0, 0.5], prior_ties=0)
    a, b = ranking.strengths
    assert (a.item, a.score, b.score, a.judgments) == ("a", 2.5, 1.5, 4)
    # two items: p = 2.5/4 exactly, so t_a - t_b = logit(0.625)
    assert ranking.pairs[0].difference == pytest.approx(np.log(2.5 / 1.5), abs=1e-9)
    assert ranking.to_dict()["strengths"][0]["item"] == "a"


def test_strengths_are_recovered_and_the_order_decided_with_plenty_of_data():
    rng = np.random.default_rng(2)
    theta = np.array([0.0, 1.0, 2.0])
    first, second, score = independent_judgments(rng, theta, 400)
    ranking = bradley_terry(["x", "y", "z"], first, second, score)
    assert ranking.items == ["z", "y", "x"]
    assert all(p.decided for p in ranking.pairs)
    assert [(s.rank_low, s.rank_high) for s in ranking.strengths] == [(1, 1), (2, 2), (3, 3)]
    for s, true in zip(ranking.strengths, [1.0, 0.0, -1.0], strict=True):
        assert s.low < true < s.high and s.high - s.low < 0.5


def test_coverage_of_independent_judgments_with_a_dominant_item():
    """4 items (log-strengths 0, .4, .8, 3.5), 10 win/loss judgments a pair, 400 seeded datasets:
    the 95% intervals hold the true centred strengths about 95% of the time, the dominant item's
    too when it never lost (the prior's virtual ties keep its interval wide), and the decided
    orders are all right in >= 95% of datasets."""
    theta = np.array([0.0, 0.4, 0.8, 3.5])
    cov = bt_coverage(400, lambda r: independent_judgments(r, theta, 10), theta - theta.mean(), seed=11, dominant=3)
    assert 0.93 <= cov["strengths"] <= 0.995
    assert cov["never_lost"] >= 50 and cov["never_lost_covered"] >= 0.9
    assert cov["order"] >= 0.95


def test_coverage_of_paired_episodes_shared_by_many_judgments():
    """10 policies on 30 shared initial conditions, every pair judged on each (ties common): a
    policy's episode enters 9 judgments, so the model's variance alone is far too small (about
    0.84 coverage); the cluster-robust one holds about 0.95."""
    logits = np.linspace(-1.0, 1.0, 10)
    logits[-1] = 4.0
    cov = bt_coverage(300, lambda r: paired_episodes(r, logits, 30), paired_truth(logits), seed=12, dominant=9)
    assert 0.92 <= cov["strengths"] <= 0.985
    assert cov["order"] >= 0.95
    assert cov["never_lost"] >= 30 and cov["never_lost_covered"] >= 0.85


def test_clusters_widen_intervals_when_judgments_share_an_outcome():
    """The same judgments, grouped by the episode they share, give wider intervals than taken as independent."""
    rng = np.random.default_rng(3)
    logits = np.linspace(-1, 1, 8)
    first, second, score, cluster = paired_episodes(rng, logits, 40)
    items = [f"p{i}" for i in range(8)]
    grouped = bradley_terry(items, first, second, score, cluster=cluster)
    alone = bradley_terry(items, first, second, score)
    width = {s.item: s.high - s.low for s in grouped.strengths}
    assert all(width[s.item] > 1.1 * (s.high - s.low) for s in alone.strengths)
    assert grouped.clusters == 40 and alone.clusters == first.size


@pytest.mark.parametrize("bad, message", [
    (dict(first=[0, 0], second=[1, 0], score=[1, 1]), "distinct indices"),
    (dict(first=[0], second=[2], score=[1]), "distinct indices"),
    (dict(first=[0], second=[1], score=[1.5]), "score must be in"),
    (dict(first=[0.0], second=[1.0], score=[1]), "integer"),
    (dict(first=[0], second=[1], score=[1], cluster=[0, 1]), "one entry per judgment"),
    (dict(first=[0], second=[1], score=[1], level=1.0), "level"),
])
def test_bad_input_is_one_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        bradley_terry(["a", "b"], **bad)


def test_items_without_judgments_are_named():
    with pytest.raises(ValueError, match=r"without judgments: \['c'\]"):
        bradley_terry(["a", "b", "c"], [0], [1], [1.0])
