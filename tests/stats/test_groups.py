"""Group (algorithm) comparisons: rliable's point estimates, the structure of the hierarchical
bootstrap, and its coverage of an algorithm's expected success when training seeds differ."""

import itertools

import numpy as np
import pytest
from scipy.special import expit

from evalsuite.stats import groups as g
from evalsuite.stats.intervals import Interval

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

TASK_LOGITS = np.array([0.5, 1.5, -0.5])
NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(80)


def expected_mean(task_logits, sd):
    """Mean over tasks of E[expit(logit + sd Z)]: the algorithm's success averaged over seeds and ICs."""
    return float(np.mean([WEIGHTS @ expit(m + sd * NODES) / np.sqrt(2 * np.pi) for m in task_logits]))


def simulate(rng, task_logits, seeds, episodes, *, sd_seed, ic_effect):
    """(seeds, tasks, episodes) outcomes: logit = task + seed effect (shared by the seed's tasks) +
    IC difficulty ``ic_effect`` (tasks, episodes), shared by every run that plays those ICs."""
    seed_effect = rng.normal(0.0, sd_seed, size=(seeds, 1, 1))
    p = expit(np.asarray(task_logits)[None, :, None] + seed_effect + ic_effect[None])
    return (rng.random(p.shape) < p).astype(np.int8)


def episodes_only_interval(outcomes, rng, reps, level=0.95):
    """The interval that ignores training seeds: the observed runs kept, ICs resampled."""
    runs, tasks, episodes = outcomes.shape
    picks = rng.integers(0, episodes, size=(reps, tasks, episodes))
    resampled = np.take_along_axis(outcomes[None].astype(float), picks[:, None], axis=3)  # (reps, runs, tasks, eps)
    means = resampled.mean(axis=(1, 2, 3))
    return np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])


@pytest.fixture
def two_groups():
    rng = np.random.default_rng(0)
    ics = rng.normal(0, 1.0, size=(4, 25))
    x = simulate(rng, [0.3, 1.0, -0.2, 2.0], 5, 25, sd_seed=0.7, ic_effect=ics)
    y = simulate(rng, [0.0, 0.8, -0.5, 2.0], 4, 25, sd_seed=0.7, ic_effect=ics)
    return x, y


def test_point_estimates_are_rliables(two_groups):
    from rliable import metrics as rm

    x, y = two_groups
    summary = g.group_aggregates(x, rng=np.random.default_rng(1), reps=200)
    rates = x.mean(axis=2)
    reference = {"iqm": rm.aggregate_iqm, "mean": rm.aggregate_mean, "median": rm.aggregate_median,
                 "optimality_gap": rm.aggregate_optimality_gap}
    assert set(summary.metrics) == set(reference)
    for name, fn in reference.items():
        assert summary.metrics[name].estimate == pytest.approx(fn(rates)), name
        assert isinstance(summary.metrics[name], Interval)
    poi = g.probability_of_improvement_groups(x, y, rng=np.random.default_rng(1), reps=200)
    assert poi.interval.estimate == pytest.approx(rm.probability_of_improvement(rates, y.mean(axis=2)))
    assert 0 <= poi.interval.low <= poi.interval.estimate <= poi.interval.high <= 1
    diff = g.group_difference(x, y, metric="iqm", rng=np.random.default_rng(1), reps=200)
    assert diff.interval.estimate == pytest.approx(rm.aggregate_iqm(rates) - rm.aggregate_iqm(y.mean(axis=2)))
    assert (diff.runs_x, diff.runs_y, diff.tasks, diff.episodes, diff.paired) == (5, 4, 4, 25, True)


def test_runs_are_resampled_whole():
    """A training seed is good or bad on all its tasks at once: resampled rows are original rows,
    never a task-by-task mixture of runs (rliable's task-stratified resampling would mix them)."""
    per_task = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]])
    outcomes = np.repeat(per_task[:, :, None], 10, axis=2).astype(float)  # constant over episodes
    weights = g._ic_weights(np.random.default_rng(0), 500, 3, 10)
    rows = g._resampled_rates(outcomes, weights, np.random.default_rng(1)).reshape(-1, 3)
    matches = np.isclose(rows[:, None, :], per_task[None]).all(axis=2)
    assert matches.any(axis=1).all()
    assert matches.any(axis=0).all()  # and every run gets drawn


def test_initial_conditions_are_resampled_jointly():
    rng = np.random.default_rng(2)
    run = (rng.random((2, 15)) < 0.5).astype(float)
    # within a group: a run and its complement on the same resampled ICs have rates r and 1 - r
    outcomes = np.stack([run, 1 - run])
    weights = g._ic_weights(rng, 300, 2, 15)
    rates = g._resampled_rates(outcomes, weights, rng)  # (reps, 2, tasks)
    r = np.einsum("te,bte->bt", run, weights)[:, None, :]
    assert (np.isclose(rates, r) | np.isclose(rates, 1 - r)).all()
    # across groups: a one-run group against itself differs by exactly 0 when the ICs are shared
    single = run[None].astype(int)
    paired = g.group_difference(single, single, rng=rng, reps=300).interval
    assert paired.low == paired.high == 0.0
    unpaired = g.group_difference(single, single, rng=rng, reps=300, paired=False).interval
    assert unpaired.low < 0 < unpaired.high


def test_bootstrap_interval_covers_better_than_episodes_only():
    """The hierarchical bootstrap (``mean_method="bootstrap"``, and the other metrics' interval):
    seeds differ (logit-normal seed effect, shared by the seed's tasks), ICs differ in difficulty.
    Target: the algorithm's expected mean success over seeds and ICs. Measured at 95% (400 data
    sets each): 3 seeds sd 0.5 ~0.90, 3 seeds sd 1.0 ~0.8, 5 seeds ~0.90-0.93; episodes only
    0.3-0.75. With 3 seeds the percentile bootstrap can hardly reach past the best and worst seed."""
    rng = np.random.default_rng(2024)
    sims, reps, sd_ic = 400, 600, 1.0
    settings = [(3, 0.5, 20), (3, 1.0, 50), (5, 0.5, 50), (5, 1.0, 20)]  # seeds, seed sd, episodes
    hierarchical, episodes_only = {}, {}
    for seeds, sd_seed, episodes in settings:
        truth = expected_mean(TASK_LOGITS, np.hypot(sd_seed, sd_ic))
        hits = np.zeros((sims, 2), dtype=bool)
        for i in range(sims):
            ics = rng.normal(0.0, sd_ic, size=(3, episodes))
            data = simulate(rng, TASK_LOGITS, seeds, episodes, sd_seed=sd_seed, ic_effect=ics)
            ours = g.group_aggregates(data, metrics=("mean",), rng=rng, reps=reps,
                                      mean_method="bootstrap").metrics["mean"]
            low, high = episodes_only_interval(data, rng, reps)
            hits[i] = ours.low <= truth <= ours.high, low <= truth <= high
        hierarchical[(seeds, sd_seed, episodes)], episodes_only[(seeds, sd_seed, episodes)] = hits.mean(axis=0)
    for key in settings:
        assert hierarchical[key] >= episodes_only[key] + 0.15, (key, hierarchical[key], episodes_only[key])
        assert hierarchical[key] >= (0.86 if key[0] >= 5 or key[1] <= 0.5 else 0.74), (key, hierarchical[key])
    assert np.mean(list(hierarchical.values())) >= 0.85


# --- the crossed-variance intervals of the mean and of a difference of means ---------------------

LOGITS = {"~55%": TASK_LOGITS, "~95%": np.array([2.5, 3.0, 3.5]), "~5%": np.array([-3.5, -3.0, -2.5]),
          "~98%": np.array([4.0, 4.5, 5.0])}


def simulate_many(rng, sims, task_logits, seeds, episodes, *, sd_seed, sd_ic, ics=None):
    """(sims, seeds, tasks, episodes) outcomes as ``simulate`` draws them, many data sets at once;
    ``ics`` (sims, 1, tasks, episodes): IC effects to share with another group."""
    if ics is None:
        ics = rng.normal(0.0, sd_ic, size=(sims, 1, len(task_logits), episodes))
    seed_effect = rng.normal(0.0, sd_seed, size=(sims, seeds, 1, 1))
    p = expit(np.asarray(task_logits)[None, None, :, None] + seed_effect + ics)
    return (rng.random(p.shape) < p).astype(np.int8), ics


def mean_coverage(rng, sims, task_logits, seeds, episodes, sd_seed, sd_ic):
    truth = expected_mean(task_logits, np.hypot(sd_seed, sd_ic))
    data, _ = simulate_many(rng, sims, task_logits, seeds, episodes, sd_seed=sd_seed, sd_ic=sd_ic)
    _, low, high = g.group_mean_bounds(data)
    return float(np.mean((low <= truth) & (truth <= high)))


def difference_coverage(rng, sims, logits_x, logits_y, runs_x, runs_y, episodes, sd_seed, sd_ic):
    """Two algorithms on the same ICs (shared difficulty), each with its own seeds."""
    truth = (expected_mean(logits_x, np.hypot(sd_seed, sd_ic)) - expected_mean(logits_y, np.hypot(sd_seed, sd_ic)))
    x, ics = simulate_many(rng, sims, logits_x, runs_x, episodes, sd_seed=sd_seed, sd_ic=sd_ic)
    y, _ = simulate_many(rng, sims, logits_y, runs_y, episodes, sd_seed=sd_seed, sd_ic=sd_ic, ics=ics)
    _, low, high = g.group_difference_bounds(x, y)
    return float(np.mean((low <= truth + 1e-12) & (truth - 1e-12 <= high)))


def test_three_seeds_cover_where_the_bootstrap_did_not():
    """3 seeds, seed sd 1.0 on the logit scale, IC sd 1, 20 episodes: the setting where the
    hierarchical bootstrap covered 0.79. Through the public functions, 600 data sets: the mean's
    interval and the difference's (against a second algorithm on the same ICs) cover >= 0.94."""
    rng = np.random.default_rng(23)
    sims, episodes, sd_seed = 600, 20, 1.0
    truth_x = expected_mean(TASK_LOGITS, np.hypot(sd_seed, 1.0))
    truth = truth_x - expected_mean(TASK_LOGITS - 0.5, np.hypot(sd_seed, 1.0))
    mean_hits = diff_hits = 0
    for _ in range(sims):
        ics = rng.normal(0.0, 1.0, size=(3, episodes))
        x = simulate(rng, TASK_LOGITS, 3, episodes, sd_seed=sd_seed, ic_effect=ics)
        y = simulate(rng, TASK_LOGITS - 0.5, 3, episodes, sd_seed=sd_seed, ic_effect=ics)
        mean = g.group_aggregates(x, metrics=("mean",), rng=rng, reps=300).metrics["mean"]
        diff = g.group_difference(x, y, rng=rng, reps=300).interval
        mean_hits += mean.low <= truth_x <= mean.high
        diff_hits += diff.low <= truth <= diff.high
    assert mean_hits / sims >= 0.94 and diff_hits / sims >= 0.94, (mean_hits / sims, diff_hits / sims)


@pytest.mark.slow
def test_crossed_intervals_cover_at_3_5_and_10_seeds():
    """Coverage at 95%, 2,000 data sets a setting: success near 55%, 95%, 98% and 5%; 3, 5, 10 seeds;
    seed sd 0-1 and IC sd 0.5-2 (logit scale); 10 and 40 episodes; for the difference, a second
    algorithm 0.5 logits worse on the same ICs. Every setting >= 0.94 (measured: see docs/statistics.md)."""
    rng = np.random.default_rng(2025)
    sims = 2000
    mean_cov, diff_cov = {}, {}
    for (name, logits), seeds, sd_seed, sd_ic, episodes in itertools.product(
            LOGITS.items(), (3, 5, 10), (0.0, 0.5, 1.0), (0.5, 1.0, 2.0), (10, 40)):
        key = (name, seeds, sd_seed, sd_ic, episodes)
        mean_cov[key] = mean_coverage(rng, sims, logits, seeds, episodes, sd_seed, sd_ic)
        diff_cov[key] = difference_coverage(rng, sims, logits, logits - 0.5, seeds, seeds, episodes, sd_seed, sd_ic)
    for cov in (mean_cov, diff_cov):
        for seeds in (3, 5, 10):
            part = {k: v for k, v in cov.items() if k[1] == seeds}
            worst = min(part, key=part.get)
            print(f"{'mean' if cov is mean_cov else 'difference'} {seeds} seeds: lowest {part[worst]:.3f} {worst}, "
                  f"mean {np.mean(list(part.values())):.3f}")
            assert part[worst] >= 0.94, (worst, part[worst])


@pytest.mark.slow
def test_crossed_intervals_with_very_different_seeds():
    """Seed sd 1.5 and 2 (seeds of one algorithm from ~20% to ~90% success): near 5% and 95% the
    seeds' rates are skewed and 5-10 of them rarely show the tail, so the mean's interval falls
    short there (measured 0.89-0.96, see docs/statistics.md); never below 0.85. Unequal runs (5 vs 3) too."""
    rng = np.random.default_rng(2026)
    sims = 2000
    mean_cov, diff_cov = {}, {}
    for (name, logits), seeds, sd_seed, sd_ic in itertools.product(LOGITS.items(), (3, 5, 10), (1.5, 2.0),
                                                                  (0.5, 1.0)):
        key = (name, seeds, sd_seed, sd_ic)
        mean_cov[key] = mean_coverage(rng, sims, logits, seeds, 20, sd_seed, sd_ic)
        diff_cov[key] = difference_coverage(rng, sims, logits, logits - 0.5, seeds, seeds, 20, sd_seed, sd_ic)
    for name, logits in LOGITS.items():
        diff_cov[(name, "5 vs 3")] = difference_coverage(rng, sims, logits, logits - 0.5, 5, 3, 20, 1.0, 1.0)
    for label, cov in (("mean", mean_cov), ("difference", diff_cov)):
        worst = min(cov, key=cov.get)
        print(f"{label}: lowest {cov[worst]:.3f} {worst}, mean {np.mean(list(cov.values())):.3f}")
    assert min(mean_cov.values()) >= 0.85 and np.mean(list(mean_cov.values())) >= 0.94
    assert min(diff_cov.values()) >= 0.94


def test_vectorized_bounds_match_the_public_functions(two_groups):
    x, y = two_groups
    rng = np.random.default_rng(0)
    mean = g.group_aggregates(x, metrics=("mean",), rng=rng).metrics["mean"]
    assert (mean.estimate, mean.low, mean.high) == pytest.approx(tuple(map(float, g.group_mean_bounds(x))))
    assert mean.method == g.MEAN_METHOD and mean.low < mean.estimate < mean.high
    for paired in (True, False):
        diff = g.group_difference(x, y, rng=rng, paired=paired).interval
        expected = g.group_difference_bounds(x, y, paired=paired)
        assert (diff.estimate, diff.low, diff.high) == pytest.approx(tuple(map(float, expected)))
        assert diff.method == g.DIFFERENCE_METHOD and diff.low < diff.estimate < diff.high
    both = g.group_mean_bounds(np.stack([x, x[::-1]]))  # a batch of two data sets
    assert both[1][0] == pytest.approx(both[1][1]) and both[1][0] == pytest.approx(mean.low)


def test_crossed_variance_is_the_two_way_anova():
    """One task: the unbiased variance of the grand mean of a seeds x ICs table is
    (MS_seeds + MS_ICs - MS_residual) / (R E); the parts add up to it."""
    rng = np.random.default_rng(4)
    y = (rng.random((4, 1, 12)) < 0.6).astype(float)
    table = y[:, 0, :]
    r, e = table.shape
    grand = table.mean()
    ms_seeds = e * np.sum((table.mean(axis=1) - grand) ** 2) / (r - 1)
    ms_ics = r * np.sum((table.mean(axis=0) - grand) ** 2) / (e - 1)
    resid = table - table.mean(axis=1, keepdims=True) - table.mean(axis=0, keepdims=True) + grand
    ms_res = np.sum(resid**2) / ((r - 1) * (e - 1))
    seeds, ics, interaction = g._variance_parts(y)
    assert seeds == pytest.approx(ms_seeds / (r * e)) and ics == pytest.approx(ms_ics / (r * e))
    assert interaction == pytest.approx(ms_res / (r * e))
    assert seeds + ics - interaction == pytest.approx((ms_seeds + ms_ics - ms_res) / (r * e))


def test_groups_at_the_boundary_and_one_run():
    """All runs at 100%: the mean's interval is no point (Korn-Graubard: Clopper-Pearson on the
    episodes shrunk for 2 df), and the difference of two such groups is no point either; one run
    against itself differs by exactly 0 on shared ICs; one run covers ICs only."""
    ones = np.ones((3, 2, 50))
    mean = g.group_aggregates(ones, metrics=("mean",), rng=np.random.default_rng(0)).metrics["mean"]
    assert mean.estimate == 1.0 == mean.high and 0.9 < mean.low < 0.97
    diff = g.group_difference(ones, ones, rng=np.random.default_rng(0)).interval
    assert diff.estimate == 0.0 and -0.1 < diff.low < 0 < diff.high < 0.1
    zeros_vs_ones = g.group_difference(ones, 0 * ones, rng=np.random.default_rng(0)).interval
    assert zeros_vs_ones.estimate == 1.0 == zeros_vs_ones.high and 0.85 < zeros_vs_ones.low < 1.0
    rng = np.random.default_rng(1)
    x = (rng.random((3, 2, 30)) < 0.5).astype(int)
    same = g.group_difference(x[:1], x[:1], rng=rng).interval  # one run against itself, on shared ICs
    assert same.low == same.high == 0.0
    one = g.group_aggregates(x[:1], metrics=("mean",), rng=rng).metrics["mean"]
    assert one.method == g.ONE_RUN_METHOD
    k, n = int(x[0].sum()), x[0].size  # ICs only: no wider than Clopper-Pearson on its 60 episodes
    from evalsuite.stats.intervals import proportion_interval
    cp = proportion_interval(k, n, method="clopper-pearson")
    assert cp.low - 1e-9 <= one.low < one.high <= cp.high + 1e-9
    with pytest.raises(ValueError, match="mean_method"):
        g.group_aggregates(x, rng=rng, mean_method="t")


def test_the_other_metrics_keep_their_resamples():
    """The mean no longer comes from the bootstrap, but the draws behind IQM, median and the
    optimality gap are the ones they were (the same seed gives the same intervals as before)."""
    rng = np.random.default_rng(5)
    x = (rng.random((3, 3, 20)) < 0.6).astype(int)
    crossed = g.group_aggregates(x, rng=np.random.default_rng(9), reps=500)
    booted = g.group_aggregates(x, rng=np.random.default_rng(9), reps=500, mean_method="bootstrap")
    for m in ("iqm", "median", "optimality_gap"):
        assert crossed.metrics[m] == booted.metrics[m]
    assert booted.metrics["mean"].method == g.BOOTSTRAP_METHOD != crossed.metrics["mean"].method


def test_shared_initial_conditions_narrow_the_difference():
    """When IC difficulty drives outcomes (both groups fail the same hard ICs), resampling ICs
    jointly cancels it from the difference; with independent ICs the groups' outcomes do not
    correlate and pairing changes little."""
    rng = np.random.default_rng(3)
    ratios = {}
    for sd_ic in (2.5, 0.0):
        widths = []
        for _ in range(20):
            ics = rng.normal(0.0, sd_ic, size=(3, 40))
            x = simulate(rng, TASK_LOGITS + 0.4, 5, 40, sd_seed=0.2, ic_effect=ics)
            y = simulate(rng, TASK_LOGITS, 5, 40, sd_seed=0.2, ic_effect=ics)
            joint = g.group_difference(x, y, rng=rng, reps=500).interval
            apart = g.group_difference(x, y, rng=rng, reps=500, paired=False).interval
            widths.append((joint.high - joint.low) / (apart.high - apart.low))
        ratios[sd_ic] = float(np.mean(widths))
    assert ratios[2.5] < 0.8
    assert 0.85 < ratios[0.0] < 1.15


def test_same_rng_seed_same_result(two_groups):
    x, y = two_groups
    for fn in (lambda r: g.group_aggregates(x, rng=r, reps=300),
               lambda r: g.probability_of_improvement_groups(x, y, rng=r, reps=300),
               lambda r: g.group_difference(x, y, metric="median", rng=r, reps=300)):
        assert fn(np.random.default_rng(7)) == fn(np.random.default_rng(7))
        assert fn(np.random.default_rng(7)) != fn(np.random.default_rng(8))
    a = g.group_aggregates(x, rng=np.random.default_rng(7), reps=300)
    assert a.to_dict()["metrics"]["iqm"]["method"] == g.BOOTSTRAP_METHOD
    assert a.to_dict()["metrics"]["mean"]["method"] == g.MEAN_METHOD


def test_chunking_does_not_change_the_distribution(two_groups, monkeypatch):
    x, _ = two_groups
    whole = g.group_aggregates(x, metrics=("mean",), rng=np.random.default_rng(9), reps=4000).metrics["mean"]
    monkeypatch.setattr(g, "_CHUNK_ELEMENTS", 3 * 100 * 4)
    chunked = g.group_aggregates(x, metrics=("mean",), rng=np.random.default_rng(9), reps=4000).metrics["mean"]
    assert (chunked.low, chunked.high) == pytest.approx((whole.low, whole.high), abs=0.015)


def test_inputs_are_checked(two_groups):
    x, y = two_groups
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="runs, tasks, episodes"):
        g.group_aggregates(x[0], rng=rng)
    with pytest.raises(ValueError, match="0/1"):
        g.group_aggregates(x * 2, rng=rng)
    with pytest.raises(ValueError, match="unknown metric"):
        g.group_aggregates(x, metrics=("max",), rng=rng)
    with pytest.raises(ValueError, match="same tasks"):
        g.group_difference(x, y[:, :2], rng=rng)
    with pytest.raises(ValueError, match="paired=False"):
        g.group_difference(x, y[:, :, :20], rng=rng)
    unpaired = g.group_difference(x, y[:, :, :20], rng=rng, reps=200, paired=False)
    assert unpaired.paired is False


def test_groups_at_100_percent_keep_ties_and_do_not_collapse():
    """Every run of both groups succeeds everywhere: P(X > Y) is 0.5 with 0.5 inside its interval
    (resampled rates used to lose exact ties to rounding), and the group's interval is no point."""
    import numpy as np

    from evalsuite.stats.groups import group_aggregates, probability_of_improvement_groups

    ones = np.ones((3, 2, 50))
    poi = probability_of_improvement_groups(ones, ones, rng=np.random.default_rng(0), reps=500).interval
    assert poi.estimate == 0.5 and poi.low <= 0.5 <= poi.high
    summary = group_aggregates(ones, rng=np.random.default_rng(0), reps=500, mean_method="bootstrap")
    mean, gap = summary.metrics["mean"], summary.metrics["optimality_gap"]
    assert mean.estimate == 1.0 and 0.97 < mean.low < 1.0 == mean.high
    assert gap.estimate == 0.0 and gap.low == 0.0 < gap.high < 0.03
