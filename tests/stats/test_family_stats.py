"""MDP-family statistics checked by simulation against the methods they replaced: the family-mean
interval at skewed means, slopes with MDP-level dispersion, and rank reversals under noise."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.special import expit

from evalsuite.stats import family as fstats

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

DESIGNS = [(16, 4), (20, 5), (8, 10)]  # MDPs x episodes per MDP
MEANS = [0.05, 0.1, 0.5, 0.9, 0.95]
CONCENTRATIONS = [None, 30.0, 8.0, 3.0]  # per-MDP rate ~ Beta(mean c, (1 - mean) c); None: no spread


def _t_interval(k, n, level=0.95):
    """The replaced method: t over the per-MDP rates."""
    rates = k / n
    m = rates.shape[-1]
    half = sps.t.ppf(0.5 + level / 2, m - 1) * rates.std(-1, ddof=1) / math.sqrt(m)
    return rates.mean(-1) - half, rates.mean(-1) + half


def test_family_mean_interval_holds_at_skewed_means_where_the_t_interval_does_not():
    rng = np.random.default_rng(0)
    reps, new, old = 5000, {}, {}
    for m, n in DESIGNS:
        for mean in MEANS:
            for c in CONCENTRATIONS:
                p = np.full((reps, m), mean) if c is None else rng.beta(mean * c, (1 - mean) * c, (reps, m))
                k, nn = rng.binomial(n, p), np.full((reps, m), n)
                _, low, high, _, _ = fstats.korn_graubard(k, nn)
                new[m, n, mean, c] = np.mean((low <= mean) & (mean <= high))
                t_low, t_high = _t_interval(k, nn)
                old[m, n, mean, c] = np.mean((t_low <= mean) & (mean <= t_high))
    cover = np.array(list(new.values()))
    assert cover.mean() >= 0.95 and cover.min() >= 0.92, min(new.items(), key=lambda kv: kv[1])
    assert np.array(list(old.values())).min() < 0.85  # what the t interval did at 0.05/0.95
    assert min(old[16, 4, mean, 3.0] for mean in (0.1, 0.9)) < 0.91 <= min(new[16, 4, mean, 3.0] for mean in (0.1, 0.9))


def test_family_mean_is_not_much_wider_than_t_where_t_is_right():
    """At a central mean with real spread the t interval is calibrated; the new one must not pay
    for its skew-robustness with a much wider interval there."""
    rng = np.random.default_rng(1)
    p = rng.beta(4, 4, (4000, 20))
    k, n = rng.binomial(5, p), np.full((4000, 20), 5)
    _, low, high, _, _ = fstats.korn_graubard(k, n)
    t_low, t_high = _t_interval(k, n)
    assert np.mean(high - low) < 1.1 * np.mean(t_high - t_low)


def test_family_mean_matches_its_vectorized_form_and_handles_no_spread():
    k, n = np.array([0, 1, 0, 2, 0, 0, 4, 0]), np.full(8, 4)
    one = fstats.family_mean(k, n)
    est, low, high, deff, n_eff = fstats.korn_graubard(k[None], n[None])
    assert (one.estimate, one.low, one.high, one.design_effect) == pytest.approx((est[0], low[0], high[0], deff[0]))
    assert one.estimate == pytest.approx(7 / 32) and one.low < one.estimate < one.high and one.design_effect > 2
    zero = fstats.family_mean(np.zeros(16), np.full(16, 4))  # every MDP at 0%: not a zero-width interval
    assert zero.estimate == zero.low == 0.0 and 0.03 < zero.high < 0.1
    full = fstats.family_mean(np.full(16, 4), np.full(16, 4))
    assert full.high == 1.0 and full.low == pytest.approx(1 - zero.high)
    same = fstats.family_mean(np.full(16, 2), np.full(16, 4))  # identical rates: binomial width, not zero
    assert same.design_effect == 1.0 and same.low < 0.4 and same.high > 0.6
    single = fstats.family_mean(np.array([3]), np.array([4]))
    assert (single.low, single.high) == (0.0, 1.0)


# ------------------------------------------------------------------------------------------- slopes

TRUE_INTERCEPT, TRUE_SLOPES = 0.3, np.array([1.5, -2.0])
AXES = [fstats.AxisScale("a", 0.0, 1.0), fstats.AxisScale("b", 0.5, 2.0, log=True)]


def _overdispersed_family(rng, m, n, concentration):
    """Per-MDP success ~ Beta with mean exactly logistic in the unit-scaled axes."""
    unit = rng.uniform(0, 1, (m, 2))
    params = np.column_stack([unit[:, 0], 0.5 * 4.0 ** unit[:, 1]])  # axis b is log-uniform on [0.5, 2]
    mean = expit(TRUE_INTERCEPT + unit @ TRUE_SLOPES)
    k = rng.binomial(n, rng.beta(mean * concentration, (1 - mean) * concentration))
    return params, k, np.full(m, n)


def test_joint_clustered_slopes_cover_and_the_per_axis_episode_fit_does_not():
    rng = np.random.default_rng(2)
    hits_new, hits_old, reps = np.zeros(2), np.zeros(2), 0
    for m, n in [(16, 10), (20, 8), (24, 10)]:
        for _ in range(150):
            params, k, nn = _overdispersed_family(rng, m, n, concentration=5.0)
            curves = fstats.family_curves(params, k, nn, AXES)
            episodes = np.repeat(params, nn, axis=0)
            outcomes = np.concatenate([np.arange(n_i) < k_i for k_i, n_i in zip(k, nn, strict=False)])
            for j, (axis, curve) in enumerate(zip(AXES, curves, strict=False)):
                hits_new[j] += curve.slope_low <= TRUE_SLOPES[j] <= curve.slope_high
                old = fstats.logistic_curve(episodes[:, j], outcomes, axis.low, axis.high, axis.log)
                hits_old[j] += old.slope_low <= TRUE_SLOPES[j] <= old.slope_high
            reps += 1
    new, old = hits_new / reps, hits_old / reps
    assert new.min() >= 0.9, new
    assert old.mean() < new.mean() - 0.1, (old, new)


def test_family_curves_hold_other_axes_at_mid_range_and_note_what_they_cannot_fit():
    rng = np.random.default_rng(3)
    params, k, n = _overdispersed_family(rng, 40, 10, concentration=50.0)
    curve_a, curve_b = fstats.family_curves(params, k, n, AXES)
    # both curves pass through the centre of the design at their own mid-range points
    assert curve_a.p[12] == pytest.approx(curve_b.p[12])
    assert curve_b.x[12] == pytest.approx(1.0)  # geometric middle of [0.5, 2]
    assert curve_a.p[0] < curve_a.p[-1] and curve_b.p[0] > curve_b.p[-1]
    assert "mid-range" in curve_a.note and curve_a.p_value < 0.05
    assert all(lo <= p <= hi for lo, p, hi in zip(curve_a.low, curve_a.p, curve_a.high, strict=False))

    flat = fstats.family_curves(params, np.zeros(40), n, AXES)
    assert flat[0].slope is None and "same outcome" in flat[0].note
    assert flat[0].p[0] == 0.0 and flat[0].high[0] > 0.005  # the family-mean interval, not zero width
    separated = fstats.family_curves(params, np.where(params[:, 0] > 0.5, n, 0), n, AXES)
    assert separated[0].slope is None and "separate" in separated[0].note and separated[0].p == []
    few = fstats.family_curves(params[:3], k[:3], n[:3], AXES)
    assert few[0].slope is None and "too few" in few[0].note


# ------------------------------------------------------------------------------------ rank reversal

def test_posterior_order_probability_is_exact():
    rng = np.random.default_rng(4)
    shapes = [(2, 4, 5, 1), (1, 5, 5, 1), (3.5, 2, 1, 1), (10, 3, 7, 9)]
    exact = fstats.prob_beta_greater(*np.array(shapes).T)
    for (ax, bx, ay, by), p in zip(shapes, exact, strict=False):
        mc = np.mean(rng.beta(ay, by, 400_000) > rng.beta(ax, bx, 400_000))
        assert p == pytest.approx(mc, abs=0.003)


def test_noise_is_not_a_reversal_but_a_real_flip_is():
    rng = np.random.default_rng(5)
    m, reps = 20, 1000
    base = rng.uniform(0.2, 0.7, (reps, m))  # MDPs differ; A is 0.15 better on every one of them
    credible, naive, mean_prob = [], [], []
    for b in base:
        r = fstats.rank_reversal(rng.binomial(4, b + 0.15), np.full(m, 4), rng.binomial(4, b), np.full(m, 4), 0.8, 0.6)
        credible.append(r["credible_reversal_rate"])
        naive.append(r["naive_reversal_rate"])
        mean_prob.append(r["mean_reversal_probability"])
    assert np.mean(credible) <= 0.05 and np.mean(naive) > 0.2 and np.mean(mean_prob) < 0.4

    flipped = np.arange(m) < m // 2  # the order truly reverses on half the MDPs
    found = []
    for _ in range(200):
        k_a = rng.binomial(30, np.where(flipped, 0.3, 0.8))
        k_b = rng.binomial(30, np.where(flipped, 0.8, 0.3))
        r = fstats.rank_reversal(k_a, np.full(m, 30), k_b, np.full(m, 30), 0.8, 0.3)
        assert r["nominal_order"] == "A > B"
        found.append(r["credible_reversal_rate"])
    assert np.mean(found) > 0.45  # nearly all 10 of 20 found
    # the same flip reported from B's side: order and probabilities follow the nominal order
    r = fstats.rank_reversal(k_b, np.full(m, 30), k_a, np.full(m, 30), 0.3, 0.8)
    assert r["nominal_order"] == "B > A" and r["credible_reversals"] == round(found[-1] * m)
    tie = fstats.rank_reversal(k_a, np.full(m, 30), k_b, np.full(m, 30), 0.5, 0.5)
    assert tie["nominal_order"] == "tie" and tie["credible_reversals"] is None


def test_analyze_family_end_to_end_on_synthetic_records():
    """evalsuite/analyses/family.py wiring, without a simulator: keys of the result and the joint fit per policy."""
    from types import SimpleNamespace as NS

    from evalsuite.analyses.family import analyze_family

    axes = (NS(name="mass", kind="physics", low=0.25, high=4.0, nominal=1.0, log=True, unit="x nominal"),
            NS(name="noise", kind="sensing", low=0.0, high=0.02, nominal=0.0, log=False, unit="m"),
            NS(name="delay", kind="actuation", low=0.0, high=3.0, nominal=0.0, log=False, unit="steps"))
    spec = NS(id="toy-family/task", axes=axes, nominal={a.name: a.nominal for a in axes})
    rng = np.random.default_rng(6)
    points = [spec.nominal] + [{"mass": float(0.25 * 16 ** u), "noise": float(v), "delay": 0.0}
                               for u, v in rng.uniform(0, 1, (24, 2)) * [1, 0.02]]
    records = []
    for code, shift in (("p0", 0.0), ("p1", -1.5)):
        for mdp, point in enumerate(points):
            rate = expit(1.5 + shift - 3.0 * point["noise"] / 0.02)
            for ic in range(40 if mdp == 0 else 8):  # the nominal MDP gets more episodes
                records.append(NS(is_outcome=True, policy_code=code, ic_index=ic, success=bool(rng.random() < rate),
                                  init_state={"mdp": mdp, "params": point}))
    fam = analyze_family(spec, 0, records, {"p0": "A", "p1": "B"}, 0.95)
    assert [a["name"] for a in fam["axes"]] == ["mass", "noise"]  # delay never varied
    entry = fam["policies"]["A"]
    assert entry["mdps"] == 24 and entry["family_mean"]["design_effect"] >= 1.0
    assert entry["family_mean"]["low"] < entry["family_mean"]["estimate"] < entry["family_mean"]["high"]
    mass, noise = entry["curves"]
    assert (mass["axis"], noise["axis"]) == ("mass", "noise") and "mid-range" in noise["note"]
    assert noise["slope_high"] < 0 and len(noise["p"]) == len(noise["x"]) == 25
    (rev,) = fam["rank_reversals"]
    assert rev["mdps_compared"] == 24 and rev["credible_reversals"] is not None
    assert 0.0 <= rev["mean_reversal_probability"] <= 1.0 and "reversal_rate" not in rev
