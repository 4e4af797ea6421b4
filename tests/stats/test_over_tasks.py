"""Intervals over tasks: agreement with the one-task intervals, behaviour at 0% and 100%, and
coverage by simulation (fixed seeds, so the numbers are reproducible)."""

import itertools

import numpy as np
import pytest

from evalsuite.stats import over_tasks as ot
from evalsuite.stats.bootstrap import stratified_bootstrap_mean
from evalsuite.stats.intervals import Interval, proportion_interval
from evalsuite.stats.multiple import adjust_pvalues
from evalsuite.stats.paired import newcombe_paired_interval

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

SIMS = 4000


def mean_coverage(rates, n, *, rng, sims=SIMS, level=0.95, sides=False):
    """Share of simulated suites whose interval holds the true mean rate; also the mean width
    (``sides``: also the shares with the truth above the interval and below it)."""
    rates = np.asarray(rates, dtype=float)
    n = np.broadcast_to(n, rates.shape)
    k = rng.binomial(n, rates, size=(sims, rates.size))
    _, low, high = ot.mean_over_tasks_bounds(k, n, level=level)
    truth = rates.mean()
    out = float(np.mean((low <= truth) & (truth <= high))), float(np.mean(high - low))
    return (*out, float(np.mean(high < truth)), float(np.mean(low > truth))) if sides else out


def cells(rate_a, rate_b, correlation):
    """(both, a_only, b_only, neither) probabilities of two Bernoullis with the given correlation,
    clipped to what the margins allow (correlation 1 with unequal rates: nested successes)."""
    both = rate_a * rate_b + correlation * np.sqrt(rate_a * (1 - rate_a) * rate_b * (1 - rate_b))
    both = np.clip(both, max(0.0, rate_a + rate_b - 1), min(rate_a, rate_b))
    return np.array([both, rate_a - both, rate_b - both, 1 - rate_a - rate_b + both])


def paired_coverage(task_cells, n, *, rng, sims=SIMS, level=0.95):
    tables = np.stack([rng.multinomial(n, c, size=sims) for c in task_cells], axis=1)  # (sims, T, 4)
    truth = np.mean([c[1] - c[2] for c in task_cells])
    _, low, high = ot.paired_difference_over_tasks_bounds(tables, level=level)
    return float(np.mean((low <= truth + 1e-12) & (truth - 1e-12 <= high)))


# --- mean over tasks ---------------------------------------------------------------------------

@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (3, 10), (19, 20), (1, 50), (37, 40)])
def test_one_task_is_wilson(k, n):
    ours = ot.mean_over_tasks([k], n)
    wilson = proportion_interval(k, n)
    assert (ours.low, ours.high) == pytest.approx((wilson.low, wilson.high), abs=1e-10)


def test_edges_do_not_collapse_where_the_bootstrap_does():
    boot = stratified_bootstrap_mean([20, 20, 20], [20, 20, 20], rng=np.random.default_rng(0), reps=2000)
    assert boot.low == boot.high == 1.0
    top = ot.mean_over_tasks([20, 20, 20], 20)
    assert isinstance(top, Interval) and top.estimate == 1.0 and top.high == 1.0
    assert 0.9 < top.low < 0.97
    bottom = ot.mean_over_tasks([0, 0, 0], 20)
    assert bottom.low == 0.0 and bottom.high == pytest.approx(1 - top.low)  # mirror image
    mixed = ot.mean_over_tasks([19, 20, 18], [20, 40, 30])
    assert mixed.low < mixed.estimate < mixed.high < 1


def test_batch_and_scalar_agree_and_inputs_are_checked():
    rng = np.random.default_rng(1)
    k = rng.binomial(20, [0.9, 0.5, 0.99, 0.1], size=(5, 4))
    est, low, high = ot.mean_over_tasks_bounds(k, 20)
    for i in range(5):
        one = ot.mean_over_tasks(k[i], 20)
        assert (one.estimate, one.low, one.high) == pytest.approx((est[i], low[i], high[i]))
    with pytest.raises(ValueError):
        ot.mean_over_tasks([3, 11], 10)
    with pytest.raises(ValueError):
        ot.mean_over_tasks([], 10)


def edge_settings():
    """Rate sets near 100% and near 0% (all equal and mixed), crossed with tasks and episodes."""
    for tasks, n in itertools.product((3, 5, 10), (10, 20, 50)):
        for name, rates in [("0.90", [0.90] * tasks), ("0.95", [0.95] * tasks), ("0.97", [0.97] * tasks),
                            ("0.99", [0.99] * tasks), ("0.90-0.99", np.linspace(0.90, 0.99, tasks)),
                            ("0.01", [0.01] * tasks), ("0.05", [0.05] * tasks),
                            ("0.01-0.10", np.linspace(0.01, 0.10, tasks))]:
            yield f"{name} T={tasks} n={n}", rates, n
    for tasks in (3, 5, 10):  # unequal episode counts
        yield f"0.90-0.99 T={tasks} n=10..50", np.linspace(0.90, 0.99, tasks), np.linspace(10, 50, tasks).astype(int)


def test_coverage_holds_near_0_and_100_percent():
    """Two-sided coverage over the edge settings: mean >= 0.94, lowest 0.905. The misses are
    one-sided (simulated, mixed rates too): near 100% the truth is above the interval up to 9.5%
    of the time (nominal 2.5%) and below it at most 3.7%; near 0% the mirror image."""
    rng = np.random.default_rng(2024)
    results = {name: (np.mean(rates), mean_coverage(rates, n, rng=rng, sides=True)) for name, rates, n in edge_settings()}
    coverage = {name: r[0] for name, (_, r) in results.items()}
    worst = min(coverage, key=coverage.get)
    assert np.mean(list(coverage.values())) >= 0.94, coverage
    assert coverage[worst] >= 0.90, (worst, coverage[worst])
    for near_one in (True, False):
        part = [r for mean, r in results.values() if (mean > 0.5) == near_one]
        above, below = (max(r[2] for r in part), max(r[3] for r in part))
        edge_side, other_side = (above, below) if near_one else (below, above)
        assert 0.07 <= edge_side <= 0.10 and other_side <= 0.045, (near_one, above, below)


def exact_one_sided_misses(tasks, n, rates, level=0.95):
    """Exact P(high < p) and P(low > p) for each p in ``rates``, every task at rate p with n
    episodes: all outcomes enumerated, as multisets of the tasks' success counts (the interval
    does not depend on the tasks' order) weighted by their number of orderings."""
    from collections import Counter
    from math import factorial

    from scipy import stats

    ks = np.array(list(itertools.combinations_with_replacement(range(n + 1), tasks)), dtype=float)
    orderings = np.array([factorial(tasks) / np.prod([factorial(c) for c in Counter(row).values()])
                          for row in ks.astype(int)])
    _, low, high = ot.mean_over_tasks_bounds(ks, n, level=level)
    out = {}
    for p in rates:
        w = orderings * np.prod(stats.binom.pmf(ks, n, p), axis=1)
        out[p] = (float(w[high < p].sum()), float(w[low > p].sum()))
    return out


EXACT_GRID = [(3, 10), (3, 20), (3, 50), (5, 10), (5, 20)]


@pytest.mark.parametrize("edge", ["near 100%", "near 0%"])
def test_misses_near_an_edge_fall_on_its_side(edge):
    """Two-sided coverage holds near the edges, but the misses are one-sided: near 100% the upper
    bound falls below the truth, and the lower bound almost never rises above it (near 0% the
    mirror image), as with Wilson's interval for one task. Exact, every task at one rate (0.90-0.99
    or 0.01-0.10), 3-5 tasks x 10-50 episodes, 95%: the edge side misses up to 8.9% (nominal 2.5%;
    5 tasks x 10 episodes at 0.99), the other side at most 3.7% and never at 0.97-0.99."""
    rates = [0.90, 0.95, 0.97, 0.98, 0.99]
    edge_side, other_side = [], []
    for tasks, n in EXACT_GRID:
        misses = exact_one_sided_misses(tasks, n, rates if edge == "near 100%" else [1 - p for p in rates])
        for p, (above, below) in misses.items():  # above: the truth above the interval (high < p)
            edge_miss, other_miss = (above, below) if edge == "near 100%" else (below, above)
            edge_side.append(edge_miss)
            other_side.append(other_miss)
            if min(p, 1 - p) <= 0.03:
                assert other_miss < 1e-3, (tasks, n, p, other_miss)
            assert above + below <= 0.095, (tasks, n, p, above, below)
    assert 0.085 <= max(edge_side) <= 0.092, max(edge_side)
    assert max(other_side) <= 0.04, max(other_side)


def test_misses_are_symmetric_in_the_middle():
    """At 0.5 both sides miss alike and near 2.5% (exact; same grid)."""
    for tasks, n in EXACT_GRID:
        ((above, below),) = exact_one_sided_misses(tasks, n, [0.5]).values()
        assert above == pytest.approx(below, abs=1e-12) and 0.02 <= above <= 0.035, (tasks, n, above)


def test_not_absurdly_conservative_in_the_middle():
    rng = np.random.default_rng(7)
    for tasks, n in itertools.product((3, 10), (10, 50)):
        cover, width = mean_coverage([0.5] * tasks, n, rng=rng)
        assert 0.92 <= cover <= 0.975, (tasks, n, cover)
        wald_width = 2 * 1.96 * np.sqrt(0.25 / n / tasks)
        assert width < 1.1 * wald_width


def test_plain_mover_wilson_would_undercover_here():
    """The reason mean_over_tasks is a score interval: MOVER-Wilson's upper bound is too low near 100%."""
    rng = np.random.default_rng(3)
    rates, n = np.full(10, 0.95), 20
    k = rng.binomial(n, rates, size=(SIMS, 10))
    low_t, high_t = ot.wilson_bounds(k, n)
    _, low, high = ot._mover_sum(k / n, low_t, high_t, 1 / 10)
    mover = np.mean((low <= 0.95) & (high >= 0.95))
    ours, _ = mean_coverage(rates, n, rng=rng)
    assert mover < 0.90 < 0.92 < ours


# --- paired difference over tasks --------------------------------------------------------------

def test_vectorized_newcombe_matches_the_scalar_one():
    rng = np.random.default_rng(4)
    tables = np.concatenate([rng.multinomial(20, [0.7, 0.1, 0.05, 0.15], size=30),
                             [[20, 0, 0, 0], [0, 0, 0, 20], [0, 20, 0, 0], [18, 2, 0, 0], [5, 5, 5, 5]]])
    diff, low, high = ot.newcombe_paired_bounds(*tables.T)
    for i, t in enumerate(tables):
        assert (low[i], high[i]) == pytest.approx(newcombe_paired_interval(*t), abs=1e-12)
        one_task = ot.paired_difference_over_tasks([t])
        assert (one_task.estimate, one_task.low, one_task.high) == pytest.approx((diff[i], low[i], high[i]))


def test_paired_difference_examples():
    same = ot.paired_difference_over_tasks([[20, 0, 0, 0]] * 3)
    assert same.estimate == 0.0 and same.low < 0 < same.high
    better = ot.paired_difference_over_tasks([[10, 8, 0, 2], [12, 6, 1, 1], [5, 9, 0, 6]])
    assert better.estimate == pytest.approx((8 + 5 + 9) / 60) and 0 < better.low < better.estimate < better.high
    with pytest.raises(ValueError, match="num_tasks, 4"):
        ot.paired_difference_over_tasks([[1, 2, 3]])


PAIRED_SETTINGS = {
    "0.97 vs 0.95, nested": (0.97, 0.95, 1.0),
    "0.95 vs 0.95, corr 0.8": (0.95, 0.95, 0.8),
    "0.99 vs 0.90, nested": (0.99, 0.90, 1.0),
    "0.99 vs 0.97, independent": (0.99, 0.97, 0.0),
    "0.95 vs 0.90, independent": (0.95, 0.90, 0.0),
    "0.6 vs 0.5, independent": (0.6, 0.5, 0.0),
    "0.6 vs 0.5, corr 0.7": (0.6, 0.5, 0.7),
}


def test_paired_difference_coverage_near_100_percent_and_with_few_discordant_pairs():
    rng = np.random.default_rng(11)
    coverage = {}
    for (name, (a, b, corr)), tasks, n in itertools.product(PAIRED_SETTINGS.items(), (3, 10), (10, 20, 50)):
        coverage[f"{name} T={tasks} n={n}"] = paired_coverage([cells(a, b, corr)] * tasks, n, rng=rng, sims=2000)
    mixed = [cells(0.97, 0.95, 1.0), cells(0.9, 0.9, 0.5), cells(0.99, 0.93, 0.3), cells(0.95, 0.98, 0.9),
             cells(0.92, 0.96, 0.0)]
    for n in (10, 20, 50):
        coverage[f"mixed T=5 n={n}"] = paired_coverage(mixed, n, rng=rng, sims=2000)
    worst = min(coverage, key=coverage.get)
    assert coverage[worst] >= 0.90, (worst, coverage[worst])
    assert np.mean(list(coverage.values())) >= 0.95


# --- levels that go with multiple-comparison corrections ----------------------------------------

def test_adjusted_level_values():
    assert ot.adjusted_level(0.95, 6, "none") == 0.95
    assert ot.adjusted_level(0.95, 5, "holm") == ot.adjusted_level(0.95, 5, "bonferroni") == pytest.approx(0.99)
    assert ot.adjusted_level(0.95, 10, "bh", selected=4) == pytest.approx(1 - 4 * 0.05 / 10)
    assert ot.adjusted_level(0.95, 10, "bh", selected=10) == pytest.approx(0.95)
    assert ot.adjusted_level(0.95, 10, "bh", selected=0) == 0.95
    with pytest.raises(ValueError, match="selected"):
        ot.adjusted_level(0.95, 10, "bh")
    with pytest.raises(ValueError, match="unknown correction"):
        ot.adjusted_level(0.95, 3, "tukey")


def test_bonferroni_intervals_cover_all_pairwise_differences_jointly():
    """Four policies on the same initial conditions (correlated through a shared difficulty), all
    six paired differences over three tasks: joint coverage >= level at the adjusted level, and
    clearly below it at the plain level."""
    rng = np.random.default_rng(5)
    sims, tasks, n, level = 3000, 3, 30, 0.95
    policy_rates = np.array([[0.55, 0.7, 0.8], [0.5, 0.65, 0.8], [0.6, 0.6, 0.75], [0.45, 0.7, 0.85]])
    difficulty = rng.normal(size=(sims, tasks, n))  # shared by all policies: outcomes correlate
    noise = rng.normal(size=(4, sims, tasks, n))
    from scipy import stats
    threshold = stats.norm.ppf(policy_rates)[:, None, :, None] * np.sqrt(2)
    outcomes = (difficulty + noise) < threshold  # P(success) = policy_rates exactly
    pairs = list(itertools.combinations(range(4), 2))

    def joint(level_used):
        ok = np.ones(sims, dtype=bool)
        for a, b in pairs:
            x, y = outcomes[a], outcomes[b]
            tables = np.stack([(x & y).sum(-1), (x & ~y).sum(-1), (~x & y).sum(-1), (~x & ~y).sum(-1)], axis=-1)
            _, low, high = ot.paired_difference_over_tasks_bounds(tables, level=level_used)
            truth = (policy_rates[a] - policy_rates[b]).mean()
            ok &= (low <= truth) & (truth <= high)
        return ok.mean()

    assert joint(ot.adjusted_level(level, len(pairs), "bonferroni")) >= level
    assert joint(level) < level - 0.05


def test_bh_adjusted_level_controls_the_false_coverage_rate():
    """Benjamini & Yekutieli: intervals at 1 - R q/m for the R BH-selected parameters miss, on
    average over experiments, at most a share q of them; unadjusted ones after selection do not."""
    rng = np.random.default_rng(6)
    m, q, sims = 20, 0.1, 4000
    means = np.r_[np.zeros(15), np.full(5, 2.5)]
    estimates = means + rng.standard_normal((sims, m))
    from scipy import stats
    pvalues = 2 * stats.norm.sf(np.abs(estimates))
    share_adjusted, share_plain = [], []
    for est, p in zip(estimates, pvalues, strict=True):
        selected = adjust_pvalues(p, "bh") <= q
        r = int(selected.sum())
        if r == 0:
            share_adjusted.append(0.0), share_plain.append(0.0)
            continue
        for level, out in ((ot.adjusted_level(1 - q, m, "bh", selected=r), share_adjusted), (1 - q, share_plain)):
            half = stats.norm.ppf(1 - (1 - level) / 2)
            miss = np.abs(est[selected] - means[selected]) > half
            out.append(miss.mean())
    assert np.mean(share_adjusted) <= q
    assert np.mean(share_plain) > q + 0.05
