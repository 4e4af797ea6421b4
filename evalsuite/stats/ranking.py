"""Bradley-Terry rankings from pairwise judgments, with intervals that hold when judgments share
episodes and when an item never loses.

The model: item i beats item j with probability ``1 / (1 + exp(-(t_i - t_j)))``; ``t`` are the
log-strengths, fitted by maximum likelihood with choix's iterative Luce spectral ranking
(``choix.ilsr_pairwise_dense``, an exact ML solver; tests check it against a direct
``scipy.optimize`` fit to 1e-6).

Ties count as half a win for each side, and more generally a judgment is a score in [0, 1] for
the first item (1: it won, 0: it lost, 0.5: a tie, 2/3: won two of three repeats). The strengths
then describe the expected score ``P(win) + P(tie) / 2``, whatever the mechanism behind the ties.
Davidson's tie model was not used: it makes ties likeliest between equal strengths through one
tie parameter, while two policies compared on the same initial condition tie whenever both succeed
or both fail - common for two strong policies and for two weak ones alike - so its tie mechanism
does not hold where most of this module's judgments come from.

An item that never loses has no finite maximum-likelihood strength. Every item is therefore given
``prior_ties`` virtual ties (half a win, half a loss each) against one virtual reference item: a
small prior that pulls strengths toward the middle by much less than one real judgment once an
item has a few dozen of them, keeps every estimate finite and joins comparison graphs that the
data leave split. ``prior_ties=0`` is the plain maximum-likelihood fit, refused (ValueError)
where it does not exist.

Intervals are Wald intervals on the centred log-strengths (the mean over items is 0) and on the
differences ``t_i - t_j``; each contrast's variance is the larger of two estimates:
- the model's (the inverse Fisher information of the penalized likelihood): right for independent
  win/loss judgments, and the only one that stays wide for an item that never lost;
- the cluster-robust sandwich (judgments grouped by ``cluster``, e.g. the initial condition they
  were played on): right when one episode enters several judgments (a policy's episode is compared
  with every other policy's on that initial condition) and when ties make the score less variable
  than a win/loss - where the model's variance is far too small (many policies: the scores of one
  initial condition move together) or too large (few policies: ties).
docs/rankings.md gives the coverage measured for each alone and for the larger of the two; a
bootstrap over judgments or clusters was tried too and undercovered (0.91-0.92 at a nominal 0.95
with 40 judgments a pair; no resample sees the loss an item never had).

Pairwise differences are simultaneous (Bonferroni over all pairs): with probability >= ``level``
every decided order is right, so every item's true rank lies within its rank range.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from evalsuite.stats.letters import rank_ranges

FloatArray = NDArray[np.float64]
PRIOR_TIES = 1.0  # virtual ties of every item against the virtual reference item
METHOD = ("Bradley-Terry (ties half a win) by maximum likelihood (choix I-LSR); Wald intervals, {variance}; pairs "
          "Bonferroni-simultaneous")
VARIANCES = ("larger", "model", "robust")  # the default, then each alone (docs/rankings.md compares them)
_TOLERANCE = 1e-12  # choix's stopping rule: the L1 norm of one iteration's change in the log-strengths
_MAX_ITERATIONS = 100_000


@dataclass(frozen=True, slots=True)
class Strength:
    """One item's place: centred log-strength (mean over items 0) with its interval, its rank by
    the estimate (1 = best) and the ranks it can hold given the decided pairs, and its record
    (``score``: the sum of its judgment scores; ``judgments``: how many it took part in)."""

    item: str
    log_strength: float
    low: float
    high: float
    rank: int
    rank_low: int
    rank_high: int
    score: float
    judgments: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PairDifference:
    """``t_first - t_second`` (first ranked above second) with its simultaneous interval;
    ``decided``: the interval excludes 0 (first is stronger). ``judgments`` between the two."""

    first: str
    second: str
    difference: float
    low: float
    high: float
    decided: bool
    judgments: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Ranking:
    strengths: tuple[Strength, ...]  # best first
    pairs: tuple[PairDifference, ...]  # every pair, the better-ranked item first, in rank order
    level: float
    prior_ties: float
    judgments: int
    clusters: int
    method: str = ""  # what was fitted and how the intervals were found (bradley_terry fills it in)

    @property
    def items(self) -> list[str]:
        return [s.item for s in self.strengths]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "level": self.level, "prior_ties": self.prior_ties,
                "judgments": self.judgments, "clusters": self.clusters,
                "strengths": [s.to_dict() for s in self.strengths], "pairs": [p.to_dict() for p in self.pairs]}


def score_matrix(n_items: int, first: ArrayLike, second: ArrayLike, score: ArrayLike) -> FloatArray:
    """``W[i, j]``: the summed scores of i against j (a tie adds 0.5 to both W[i, j] and W[j, i])."""
    a, b, y = _judgments(n_items, first, second, score)
    wins = np.zeros((n_items, n_items))
    np.add.at(wins, (a, b), y)
    np.add.at(wins, (b, a), 1.0 - y)
    return wins


def fit_log_strengths(wins: ArrayLike, *, prior_ties: float = PRIOR_TIES) -> FloatArray:
    """Centred maximum-likelihood log-strengths (shape (n,)) from a score matrix ``wins`` (n, n)
    (``score_matrix``), with ``prior_ties`` virtual ties of each item against a virtual reference."""
    w = np.asarray(wins, dtype=float)
    _check(w, prior_ties)
    t = _fit(w, prior_ties)
    centred: FloatArray = t - t.mean()
    return centred


def _check(w: FloatArray, prior_ties: float) -> None:
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] < 2:
        raise ValueError(f"wins must be a square matrix of at least 2 items, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or np.any(np.diag(w) != 0):
        raise ValueError("wins must be finite, >= 0, with a zero diagonal")
    if prior_ties < 0 or not math.isfinite(prior_ties):
        raise ValueError(f"prior_ties must be >= 0, got {prior_ties}")
    if prior_ties == 0:
        _require_estimable(w)


def _fit(w: FloatArray, prior_ties: float) -> FloatArray:
    """Log-strengths relative to the virtual reference item (at 0); without one, centred."""
    try:
        import choix
    except ImportError:  # pragma: no cover - the console extra installs it
        raise ImportError("Bradley-Terry rankings need choix: pip install 'evalsuite[console]'") from None
    n = w.shape[0]
    if prior_ties > 0:  # the virtual reference item, last
        augmented = np.zeros((n + 1, n + 1))
        augmented[:n, :n] = w
        augmented[:n, n] = augmented[n, :n] = prior_ties / 2
        w = augmented
    try:
        params = choix.ilsr_pairwise_dense(w, max_iter=_MAX_ITERATIONS, tol=_TOLERANCE)
    except RuntimeError as err:  # pragma: no cover - a connected, regularized fit converges
        raise ValueError(f"the Bradley-Terry fit did not converge: {err}") from None
    params = np.asarray(params, dtype=float)
    relative: FloatArray = params[:n] - params[n] if prior_ties > 0 else params - params.mean()
    return relative


def _require_estimable(w: FloatArray) -> None:
    """The maximum-likelihood strengths exist (finite, unique up to a shift) exactly when the graph
    "i scored against j" is strongly connected: every item both won (or tied) and lost (or tied)
    against the others, in every split of the items."""
    count, labels = connected_components(csr_matrix(w > 0), directed=True, connection="strong")
    if count > 1:
        groups = [np.flatnonzero(labels == g).tolist() for g in range(count)]
        raise ValueError(f"no finite maximum-likelihood strengths: the items split into groups {groups} with "
                         "one side never scoring against the other (an item that never loses, or items never "
                         "compared); use prior_ties > 0")


def bradley_terry(items: list[str], first: ArrayLike, second: ArrayLike, score: ArrayLike, *,
                  cluster: ArrayLike | None = None, level: float = 0.95,
                  prior_ties: float = PRIOR_TIES, variance: str = "larger") -> Ranking:
    """Rank ``items`` from judgments k = 0..m-1 (each array shape (m,)): ``first[k]`` and
    ``second[k]`` index ``items``, ``score[k]`` in [0, 1] is the first's score (1 won, 0 lost, 0.5
    tie). ``cluster[k]``: judgments that share an episode or a rater's session share a cluster
    (default: each its own). Every item must take part in a judgment. ``variance``: "larger" (of
    the model's and the cluster-robust, per contrast; the default), or either alone."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if variance not in VARIANCES:
        raise ValueError(f"variance={variance!r}; accepted: {', '.join(VARIANCES)}")
    if len(set(items)) != len(items):
        raise ValueError("items must be distinct")
    n = len(items)
    a, b, y = _judgments(n, first, second, score)
    groups = np.arange(a.size) if cluster is None else np.unique(np.asarray(cluster), return_inverse=True)[1]
    if groups.shape != a.shape:
        raise ValueError(f"cluster must have one entry per judgment ({a.size}), got shape {groups.shape}")
    counts = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    if np.any(counts == 0):
        raise ValueError(f"items without judgments: {[items[i] for i in np.flatnonzero(counts == 0)]}")
    wins = score_matrix(n, a, b, y)
    _check(wins, prior_ties)
    relative = _fit(wins, prior_ties)  # relative to the virtual reference: the model's covariance needs it
    model, robust = _covariances(relative, wins, a, b, y, groups, prior_ties)
    t = relative - relative.mean()

    def contrast_variance(contrast: FloatArray) -> float:
        by_model, by_clusters = float(contrast @ model @ contrast), float(contrast @ robust @ contrast)
        return by_model if variance == "model" else by_clusters if variance == "robust" else max(by_model, by_clusters)

    z = float(stats.norm.ppf(1 - (1 - level) / 2))
    pairs_total = n * (n - 1) // 2
    z_pairs = float(stats.norm.ppf(1 - (1 - level) / (2 * pairs_total)))
    order = sorted(range(n), key=lambda i: (-t[i], items[i]))
    centring = np.eye(n) - 1.0 / n
    pair_judgments = np.zeros((n, n), dtype=int)
    np.add.at(pair_judgments, (a, b), 1)
    pair_judgments += pair_judgments.T
    pairs = []
    for i, j in itertools.combinations(order, 2):
        contrast = np.zeros(n)
        contrast[i], contrast[j] = 1.0, -1.0
        half = z_pairs * math.sqrt(contrast_variance(contrast))
        d = float(t[i] - t[j])
        pairs.append(PairDifference(items[i], items[j], d, d - half, d + half, d - half > 0,
                                    int(pair_judgments[i, j])))
    ranges = rank_ranges([items[i] for i in order], [(p.first, p.second) for p in pairs if p.decided])
    scores = np.bincount(a, weights=y, minlength=n) + np.bincount(b, weights=1.0 - y, minlength=n)
    strengths = []
    for rank, i in enumerate(order, start=1):
        half = z * math.sqrt(contrast_variance(centring[i]))
        strengths.append(Strength(items[i], float(t[i]), float(t[i] - half), float(t[i] + half), rank,
                                  *ranges[items[i]], float(scores[i]), int(counts[i])))
    method = METHOD.format(variance="the larger of the model and the cluster-robust variance" if variance == "larger"
                           else f"the {variance} variance only")
    return Ranking(tuple(strengths), tuple(pairs), level, prior_ties, int(a.size), int(groups.max()) + 1, method)


def _covariances(t: FloatArray, wins: FloatArray, a: NDArray[np.int64], b: NDArray[np.int64], y: FloatArray,
                 groups: NDArray[np.intp], prior_ties: float) -> tuple[FloatArray, FloatArray]:
    """The covariance of the log-strengths ``t`` relative to the virtual reference (at 0): the model's
    (inverse information of the penalized likelihood) and the cluster-robust sandwich. Contrasts
    that sum to zero (centred strengths, differences) do not depend on the reference."""
    n = t.size
    p = 1.0 / (1.0 + np.exp(-(t[:, None] - t[None, :])))
    compared = wins + wins.T
    information = -compared * p * (1 - p)
    np.fill_diagonal(information, 0.0)
    information[np.diag_indices(n)] = -information.sum(axis=1)
    information[np.diag_indices(n)] += prior_ties * _sigmoid(t) * _sigmoid(-t)
    if prior_ties == 0:  # the likelihood fixes differences only: pin the first item for the inverse
        inverse = np.zeros((n, n))
        inverse[1:, 1:] = np.linalg.inv(information[1:, 1:])
    else:
        inverse = np.linalg.inv(information)
    residual = y - _sigmoid(t[a] - t[b])
    clusters = int(groups.max()) + 1
    scores = np.zeros((clusters, n))
    np.add.at(scores, (groups, a), residual)
    np.add.at(scores, (groups, b), -residual)
    meat = scores.T @ scores * (clusters / (clusters - 1) if clusters > 1 else 1.0)
    return inverse, inverse @ meat @ inverse


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)), dtype=float)


def _judgments(n_items: int, first: ArrayLike, second: ArrayLike, score: ArrayLike
               ) -> tuple[NDArray[np.int64], NDArray[np.int64], FloatArray]:
    a = np.asarray(first)
    b = np.asarray(second)
    y = np.asarray(score, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or a.shape != y.shape or a.size == 0:
        raise ValueError(f"first, second and score must be equal-length non-empty 1-d arrays, got {a.shape}, "
                         f"{b.shape}, {y.shape}")
    if not (np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer)):
        raise ValueError("first and second must be integer item indices")
    if np.any(a < 0) or np.any(b < 0) or np.any(a >= n_items) or np.any(b >= n_items) or np.any(a == b):
        raise ValueError(f"first and second must be distinct indices in 0..{n_items - 1}")
    if not np.all(np.isfinite(y)) or np.any(y < 0) or np.any(y > 1):
        raise ValueError("score must be in [0, 1] (1: first won, 0: second won, 0.5: a tie)")
    return a.astype(np.int64), b.astype(np.int64), y
