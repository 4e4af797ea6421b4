"""Agreement between raters, and between an automatic success detector and the raters.

- Cohen's kappa (two raters, nominal categories) and Fleiss' kappa (a fixed number of raters per
  item, any raters): chance-corrected agreement, ``(observed - chance) / (1 - chance)``.
- Krippendorff's alpha: any number of raters, missing ratings allowed, with a distance for
  nominal, ordinal (e.g. the furthest milestone reached) or interval values;
  ``1 - observed disagreement / expected disagreement`` over the coincidence matrix (Krippendorff,
  "Computing Krippendorff's Alpha-Reliability", 2011).
- A detector against the raters' majority: sensitivity (the detector says success where most
  raters did) and specificity, each a Wilson interval; items whose raters split evenly are left
  out and counted.

Every interval of a kappa or alpha is a percentile bootstrap over items (units): the items are
what was sampled, and resampling whole items keeps each item's ratings together (Krippendorff's
own bootstrap resamples pairs of values instead). A resample on which the statistic is undefined
(every rating in one category: no disagreement is possible) is dropped and counted in ``reps``.
Random functions take a keyword-only ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from evalsuite.stats.intervals import Interval, proportion_interval

FloatArray = NDArray[np.float64]
LEVELS = ("nominal", "ordinal", "interval")
DEFAULT_REPS = 2000


def _percentile(estimate: float, draws: FloatArray, level: float, method: str) -> Interval:
    finite = draws[np.isfinite(draws)]
    if not math.isfinite(estimate) or finite.size == 0:
        return Interval(estimate, math.nan, math.nan, level, method, int(finite.size))
    q = (1 - level) / 2
    low, high = np.quantile(finite, [q, 1 - q])
    return Interval(estimate, float(low), float(high), level, method, int(finite.size))


def _check_level(level: float, reps: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")


def _codes(*columns: ArrayLike) -> tuple[list[NDArray[np.int64]], list[Any]]:
    """Each column's values as codes into their sorted union of categories."""
    arrays = [np.asarray(c) for c in columns]
    categories, inverse = np.unique(np.concatenate(arrays), return_inverse=True)
    out, start = [], 0
    for a in arrays:
        out.append(inverse[start:start + a.size].astype(np.int64))
        start += a.size
    return out, categories.tolist()


# ---------------------------------------------------------------- Cohen's kappa

def cohen_kappa(first: ArrayLike, second: ArrayLike, *, rng: np.random.Generator, level: float = 0.95,
                reps: int = DEFAULT_REPS) -> Interval:
    """Two raters' labels of the same items (shape (n,) each, any category values); NaN estimate
    when chance agreement is 1 (both raters used one and the same category throughout)."""
    _check_level(level, reps)
    a, b = np.asarray(first), np.asarray(second)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise ValueError(f"first and second must be equal-length 1-d arrays of >= 2 items, got {a.shape}, {b.shape}")
    (ca, cb), categories = _codes(a, b)
    k = len(categories)
    pair = ca * k + cb
    estimate = float(_kappa_from_tables(np.bincount(pair, minlength=k * k).reshape(1, k, k))[0])
    draws = np.empty(reps)
    chunk = max(1, 2_000_000 // a.size)
    for start in range(0, reps, chunk):
        m = min(chunk, reps - start)
        idx = rng.integers(0, a.size, size=(m, a.size))
        flat = (np.arange(m)[:, None] * k * k + pair[idx]).ravel()
        tables = np.bincount(flat, minlength=m * k * k).reshape(m, k, k)
        draws[start:start + m] = _kappa_from_tables(tables)
    return _percentile(estimate, draws, level, "bootstrap over items (percentile)")


def _kappa_from_tables(tables: NDArray[np.int64]) -> FloatArray:
    """Cohen's kappa of each (k, k) contingency table in ``tables`` (shape (m, k, k))."""
    n = tables.sum(axis=(1, 2)).astype(float)
    observed = np.trace(tables, axis1=1, axis2=2) / n
    chance = np.sum(tables.sum(axis=2) * tables.sum(axis=1), axis=1) / (n * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(chance < 1, (observed - chance) / (1 - chance), np.nan)


# ---------------------------------------------------------------- Fleiss' kappa

def category_counts(ratings: ArrayLike) -> tuple[NDArray[np.int64], list[Any]]:
    """Items x raters labels -> (items x categories counts, the categories in column order)."""
    r = np.asarray(ratings)
    if r.ndim != 2:
        raise ValueError(f"ratings must be items x raters, got shape {r.shape}")
    categories, inverse = np.unique(r, return_inverse=True)
    codes = inverse.reshape(r.shape)
    counts = np.stack([(codes == j).sum(axis=1) for j in range(len(categories))], axis=1)
    return counts.astype(np.int64), categories.tolist()


def fleiss_kappa(counts: ArrayLike, *, rng: np.random.Generator, level: float = 0.95,
                 reps: int = DEFAULT_REPS) -> Interval:
    """``counts[i, j]``: raters who put item i in category j (items x categories), the same number
    of raters (>= 2) for every item (``category_counts`` makes it from items x raters labels)."""
    _check_level(level, reps)
    c = np.asarray(counts)
    if c.ndim != 2 or c.shape[0] < 2 or not np.issubdtype(c.dtype, np.integer) or np.any(c < 0):
        raise ValueError(f"counts must be an items x categories array of counts >= 0 for >= 2 items, got {c.shape}")
    raters = c.sum(axis=1)
    if np.any(raters != raters[0]) or raters[0] < 2:
        raise ValueError("every item needs the same number of ratings, at least 2 (else use krippendorff_alpha)")
    n = int(raters[0])
    agreement = (np.sum(c * c, axis=1) - n) / (n * (n - 1))  # P_i: agreeing rater pairs of item i
    shares = c / n

    def kappa(weights: FloatArray) -> FloatArray:  # weights: (m, items), each row summing to 1
        mean_agreement = weights @ agreement
        p = weights @ shares  # (m, categories): each category's share of all ratings
        chance = np.sum(p * p, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(chance < 1, (mean_agreement - chance) / (1 - chance), np.nan)

    items = c.shape[0]
    estimate = float(kappa(np.full((1, items), 1.0 / items))[0])
    draws = np.concatenate([kappa(_resample_weights(rng, items, m))
                            for m in _chunks(reps, items)])
    return _percentile(estimate, draws, level, "bootstrap over items (percentile)")


def _chunks(reps: int, items: int) -> list[int]:
    size = max(1, 4_000_000 // max(items, 1))
    return [min(size, reps - s) for s in range(0, reps, size)]


def _resample_weights(rng: np.random.Generator, items: int, m: int) -> FloatArray:
    """``m`` bootstrap resamples of ``items`` items as weights (times drawn / items), shape (m, items)."""
    drawn = rng.multinomial(items, np.full(items, 1.0 / items), size=m)
    return np.asarray(drawn / items, dtype=float)


# ---------------------------------------------------------------- Krippendorff's alpha

def krippendorff_alpha(data: ArrayLike, *, level_of_measurement: str = "nominal", rng: np.random.Generator,
                       level: float = 0.95, reps: int = DEFAULT_REPS) -> Interval:
    """``data``: raters x units (float; NaN where a rater did not rate a unit). Units with fewer
    than two ratings are not pairable and do not count. ``level_of_measurement``: nominal (any
    difference disagrees fully), ordinal (differences by how many ratings lie between two values:
    ranks of milestones) or interval (squared differences of the values)."""
    _check_level(level, reps)
    if level_of_measurement not in LEVELS:
        raise ValueError(f"level_of_measurement={level_of_measurement!r}; accepted: {', '.join(LEVELS)}")
    units, values = _unit_coincidences(data)
    if units.shape[0] < 1:
        raise ValueError("no unit has two or more ratings: nothing to agree on")
    estimate = float(_alpha(units.sum(axis=0)[None], values, level_of_measurement)[0])
    draws = np.concatenate([
        _alpha(np.einsum("ru,uck->rck", _resample_weights(rng, units.shape[0], m) * units.shape[0], units),
               values, level_of_measurement)
        for m in _chunks(reps, units.shape[0] * len(values) ** 2)])
    return _percentile(estimate, draws, level, "bootstrap over units (percentile)")


def _unit_coincidences(data: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Each pairable unit's coincidence matrix (units x values x values: ordered pairs of its
    values from different raters, each weighted 1 / (ratings in the unit - 1)) and the values."""
    d = np.asarray(data, dtype=float)
    if d.ndim != 2:
        raise ValueError(f"data must be raters x units, got shape {d.shape}")
    if np.any(np.isinf(d)):
        raise ValueError("data must be finite or NaN (missing)")
    values = np.unique(d[~np.isnan(d)])
    matrices = []
    for column in d.T:
        rated = column[~np.isnan(column)]
        if rated.size < 2:
            continue
        counts = np.array([np.sum(rated == v) for v in values], dtype=float)
        pairs = np.outer(counts, counts) - np.diag(counts)  # ordered pairs of different raters
        matrices.append(pairs / (rated.size - 1))
    return np.asarray(matrices, dtype=float).reshape(-1, values.size, values.size), values


def _alpha(coincidences: FloatArray, values: FloatArray, level_of_measurement: str) -> FloatArray:
    """Alpha of each coincidence matrix (shape (m, k, k))."""
    marginals = coincidences.sum(axis=2)  # (m, k)
    n = marginals.sum(axis=1)  # pairable values
    delta = _distances(marginals, values, level_of_measurement)  # (m, k, k)
    observed = np.sum(coincidences * delta, axis=(1, 2))
    expected = np.sum(marginals[:, :, None] * marginals[:, None, :] * delta, axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 1 - (n - 1) * observed / expected, np.nan)


def _distances(marginals: FloatArray, values: FloatArray, level_of_measurement: str) -> FloatArray:
    m, k = marginals.shape
    if level_of_measurement == "nominal":
        return np.broadcast_to(1.0 - np.eye(k), (m, k, k))
    if level_of_measurement == "interval":
        return np.broadcast_to((values[:, None] - values[None, :]) ** 2, (m, k, k))
    # ordinal: (sum of the marginals from c to k, less half of the two ends' own)^2
    cumulative = np.cumsum(marginals, axis=1)  # (m, k)
    low = np.minimum.outer(np.arange(k), np.arange(k))
    high = np.maximum.outer(np.arange(k), np.arange(k))
    before = np.where(low > 0, cumulative[:, np.maximum(low - 1, 0)], 0.0)
    between = cumulative[:, high] - before  # sum of n_g for g in [low, high]
    ends = (marginals[:, low] + marginals[:, high]) / 2
    return np.asarray(np.where(low == high, 0.0, (between - ends) ** 2), dtype=float)


# ---------------------------------------------------------------- a detector against the raters

@dataclass(frozen=True, slots=True)
class DetectorAgreement:
    """The detector against the raters' majority: true/false positives and negatives, the items
    left out because their raters split evenly, sensitivity and specificity with Wilson intervals."""

    true_positive: int
    false_negative: int
    true_negative: int
    false_positive: int
    split: int
    sensitivity: Interval
    specificity: Interval

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sensitivity"], data["specificity"] = self.sensitivity.to_dict(), self.specificity.to_dict()
        return data


def detector_agreement(detector: ArrayLike, ratings: ArrayLike, *, level: float = 0.95) -> DetectorAgreement:
    """``detector``: shape (items,), the automatic success flags; ``ratings``: items x raters, 1 success,
    0 failure, NaN not rated. An item's reference is its raters' majority (a tie, or no rating:
    left out)."""
    det = np.asarray(detector)
    r = np.asarray(ratings, dtype=float)
    if r.ndim == 1:
        r = r[:, None]
    if det.ndim != 1 or r.ndim != 2 or r.shape[0] != det.size:
        raise ValueError(f"detector (items,) and ratings (items, raters) must agree, got {det.shape}, {r.shape}")
    if not np.all(np.isin(det, (0, 1))) or not np.all(np.isin(r[~np.isnan(r)], (0.0, 1.0))):
        raise ValueError("detector and ratings must be 0/1 (ratings NaN where not rated)")
    yes = np.nansum(r, axis=1)
    no = np.sum(r == 0, axis=1)
    reference = np.where(yes > no, 1, np.where(no > yes, 0, -1))
    d = det.astype(bool)
    tp = int(np.sum(d & (reference == 1)))
    fn = int(np.sum(~d & (reference == 1)))
    tn = int(np.sum(~d & (reference == 0)))
    fp = int(np.sum(d & (reference == 0)))
    return DetectorAgreement(tp, fn, tn, fp, int(np.sum(reference == -1)),
                             proportion_interval(tp, tp + fn, level=level),
                             proportion_interval(tn, tn + fp, level=level))

