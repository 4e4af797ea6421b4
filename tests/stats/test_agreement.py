import math

import numpy as np
import pytest

from benchmarks.coverage_rankings import agreement_coverage
from evalsuite.stats.agreement import (
    category_counts,
    cohen_kappa,
    detector_agreement,
    fleiss_kappa,
    krippendorff_alpha,
)

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

NAN = math.nan


def rng(seed=0):
    return np.random.default_rng(seed)


def test_cohen_kappa_by_hand():
    """50 items, two raters: both yes 20, A yes B no 5, A no B yes 10, both no 15.
    Observed agreement (20 + 15) / 50 = 0.7; A says yes 25/50, B 30/50, so chance agreement
    0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4."""
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    k = cohen_kappa(a, b, rng=rng())
    assert k.estimate == pytest.approx(0.4, abs=1e-12)
    assert 0.1 < k.low < 0.4 < k.high < 0.7 and k.reps == 2000 and "items" in k.method
    assert cohen_kappa(a, b, rng=rng(5)) == cohen_kappa(a, b, rng=rng(5))  # seeded: the same bits


def test_cohen_kappa_edges():
    assert cohen_kappa([1, 2, 3, 1], [1, 2, 3, 1], rng=rng()).estimate == pytest.approx(1.0)
    # chance agreement 1: both raters used one category for everything - undefined, not 1
    assert math.isnan(cohen_kappa([1, 1, 1], [1, 1, 1], rng=rng()).estimate)
    # systematic disagreement on two categories: -1
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0], rng=rng()).estimate == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="equal-length"):
        cohen_kappa([1, 2], [1], rng=rng())


FLEISS_TABLE = np.array([  # Fleiss (1971) as in Wikipedia's worked example: 10 items, 14 raters, 5 categories
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])


def test_fleiss_kappa_by_hand():
    """Sum over items of sum_j n_ij^2: 196 + 60 + 70 + 94 + 74 + 98 + 58 + 46 + 66 + 66 = 828, so
    the mean agreement is (828 - 10 * 14) / (10 * 14 * 13) = 688 / 1820 = 0.378022. Category totals
    20, 28, 39, 21, 32 of 140 ratings: chance agreement (20^2 + 28^2 + 39^2 + 21^2 + 32^2) / 140^2
    = 4170 / 19600 = 0.212755. kappa = (0.378022 - 0.212755) / (1 - 0.212755) = 0.209930."""
    k = fleiss_kappa(FLEISS_TABLE, rng=rng())
    assert k.estimate == pytest.approx((688 / 1820 - 4170 / 19600) / (1 - 4170 / 19600), abs=1e-12)
    assert k.estimate == pytest.approx(0.20993, abs=1e-5)
    assert k.low < k.estimate < k.high


def test_fleiss_from_labels_and_two_raters_close_to_cohen():
    labels = np.array([[0, 0], [1, 1], [2, 2], [0, 1], [1, 1], [2, 0], [0, 0], [1, 2]])
    counts, categories = category_counts(labels)
    assert categories == [0, 1, 2] and counts.sum(axis=1).tolist() == [2] * 8
    f = fleiss_kappa(counts, rng=rng()).estimate
    c = cohen_kappa(labels[:, 0], labels[:, 1], rng=rng()).estimate
    assert f == pytest.approx(c, abs=0.05)  # Scott's pi vs Cohen: equal margins make them close
    with pytest.raises(ValueError, match="same number of ratings"):
        fleiss_kappa(np.array([[2, 0], [1, 0]]), rng=rng())


KRIPPENDORFF = np.array([  # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers x 12 units
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN]])


def test_krippendorff_alpha_nominal_by_hand():
    """Unit 12 has one value: not pairable. Each unit adds its ordered pairs of values from
    different observers, weighted 1/(m_u - 1):
    u1 {1,1,1}: o11 += 6/2 = 3; u2 {2,2,3,2}: o22 += 6/3 = 2, o23 = o32 += 3/3 = 1; u3, u4 {3 x4}:
    o33 += 4 each; u5, u9 {2 x4}: o22 += 4 each; u6 {1,2,3,4}: every off-diagonal pair of 1..4
    += 1/3; u7 {4 x4}: o44 += 4; u8 {1,1,2,1}: o11 += 2, o12 = o21 += 1; u10 {5,5,5}: o55 += 3;
    u11 {1,1}: o11 += 2.
    Diagonal: o11 = 7, o22 = 10, o33 = 8, o44 = 4, o55 = 3 (sum 32); marginals n_1..5 = 9, 13,
    10, 5, 3, n = 40. Observed disagreement mass 40 - 32 = 8; expected sum_{c != k} n_c n_k
    = 40^2 - (81 + 169 + 100 + 25 + 9) = 1216. alpha = 1 - (n - 1) * 8 / 1216 = 1 - 312/1216
    = 0.743421. (The paper's ordinal and interval values, 0.815 and 0.849, checked too.)"""
    nominal = krippendorff_alpha(KRIPPENDORFF, rng=rng())
    assert nominal.estimate == pytest.approx(1 - 312 / 1216, abs=1e-12)
    assert krippendorff_alpha(KRIPPENDORFF, level_of_measurement="ordinal", rng=rng()).estimate == pytest.approx(
        0.8153875, abs=1e-6)
    assert krippendorff_alpha(KRIPPENDORFF, level_of_measurement="interval", rng=rng()).estimate == pytest.approx(
        0.8491071, abs=1e-6)
    assert nominal.low < nominal.estimate <= nominal.high and "units" in nominal.method


def test_ordinal_alpha_charges_near_misses_less_than_nominal():
    """Milestones 0..3: raters who disagree by one milestone agree more ordinally than nominally;
    a disagreement by three costs more ordinally."""
    near = np.array([[0, 1, 2, 3, 0, 1, 2, 3], [1, 1, 2, 2, 0, 1, 3, 3]], dtype=float)
    far = np.array([[0, 1, 2, 3, 0, 1, 2, 3], [3, 1, 2, 0, 0, 1, 2, 3]], dtype=float)
    n_near = krippendorff_alpha(near, rng=rng(), reps=10).estimate
    o_near = krippendorff_alpha(near, level_of_measurement="ordinal", rng=rng(), reps=10).estimate
    n_far = krippendorff_alpha(far, rng=rng(), reps=10).estimate
    o_far = krippendorff_alpha(far, level_of_measurement="ordinal", rng=rng(), reps=10).estimate
    assert o_near > n_near and o_far < n_far
    assert krippendorff_alpha(np.array([[1, 2, 3], [1, 2, 3]], dtype=float), rng=rng()).estimate == 1.0
    with pytest.raises(ValueError, match="level_of_measurement"):
        krippendorff_alpha(near, level_of_measurement="ratio", rng=rng())
    with pytest.raises(ValueError, match="no unit"):
        krippendorff_alpha(np.array([[1, NAN], [NAN, 2]]), rng=rng())


def test_intervals_cover_the_population_value():
    """5 raters label 60 items into 3 categories, each right 80% of the time; 150 seeded datasets.
    The population kappa (and alpha) is 0.7; each bootstrap interval holds it about 95% of the time."""
    cov = agreement_coverage(150, seed=21)
    for name, rate in cov.items():
        assert 0.89 <= rate <= 0.995, (name, rate)


def test_detector_against_the_raters_majority_by_hand():
    """8 items, 3 raters. Majorities: 1 1 1 0 0 0 1 0 (item 8 has only one yes and one no: split).
    Detector: 1 1 0 0 1 0 1 1. Against the 7 decided items: TP items 1, 2, 7 (3); FN item 3 (1);
    TN items 4, 6 (2); FP item 5 (1); item 8 left out. Sensitivity 3/4, specificity 2/3, each with
    its Wilson interval."""
    ratings = np.array([[1, 1, 0], [1, 1, 1], [1, 0, 1], [0, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, NAN], [1, 0, NAN]])
    detector = np.array([1, 1, 0, 0, 1, 0, 1, 1])
    d = detector_agreement(detector, ratings)
    assert (d.true_positive, d.false_negative, d.true_negative, d.false_positive, d.split) == (3, 1, 2, 1, 1)
    assert d.sensitivity.estimate == 0.75 and d.specificity.estimate == pytest.approx(2 / 3)
    assert d.sensitivity.method == "wilson" and 0.3 < d.sensitivity.low < 0.75 < d.sensitivity.high < 1.0
    assert d.to_dict()["sensitivity"]["estimate"] == 0.75
    with pytest.raises(ValueError, match="0/1"):
        detector_agreement(np.array([2]), np.array([[1]]))
