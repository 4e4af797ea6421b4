"""Does a simulator rank policies as the real world does? Per-policy success rates in both, compared.

- Pearson's r of the success rates, with the Fisher z interval: ``atanh(r) +- z / sqrt(n - 3)``
  over the n policies, taken as a sample of policies (bivariate-normal theory; at n <= 3 the
  interval is the whole [-1, 1]).
- Spearman's rho, with a percentile bootstrap over episodes: the policies are the ones compared,
  what is uncertain is each success rate, so each policy's episodes are resampled within each
  world (a bootstrap over 3-8 policies would repeat policies within a resample and tie their
  ranks: it says little).
- MMRV, SimplerEnv's mean maximum rank violation (Li et al., 2024): for every policy, the largest
  real-world success gap to a policy the simulator orders the other way; then the mean over
  policies. 0 when the simulator orders every pair as the real world does; a violation costs as
  much as the real gap it gets wrong. Pairs are compared with strict ``>`` in both worlds
  (SimplerEnv's convention: a pair the simulator ties but the real world separates is a violation
  for the policy that is better in the real world). Its interval: the same bootstrap over
  episodes. MMRV is biased upward by noise (a violation needs only one flipped pair), which the
  percentile interval inherits: docs/rankings.md says how it covers.

Resampling a policy's n outcomes with replacement gives a success count distributed exactly
Binomial(n, k/n), so the bootstrap draws counts directly (as evalsuite.stats.bootstrap does).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from evalsuite.stats.intervals import Interval

FloatArray = NDArray[np.float64]
DEFAULT_REPS = 10_000


def mmrv(sim: ArrayLike, real: ArrayLike) -> float:
    """Mean maximum rank violation of success rates ``sim`` and ``real`` (shape (policies,))."""
    s, r = _rates(sim, real)
    return float(_mmrv_rows(s[None], r[None])[0])


def _mmrv_rows(sim: FloatArray, real: FloatArray) -> FloatArray:
    """MMRV of each row (shape (m, policies) each)."""
    flipped = (sim[:, :, None] > sim[:, None, :]) != (real[:, :, None] > real[:, None, :])
    gaps = np.abs(real[:, :, None] - real[:, None, :])
    return np.asarray(np.where(flipped, gaps, 0.0).max(axis=2).mean(axis=1), dtype=float)


def pearson_interval(x: ArrayLike, y: ArrayLike, *, level: float = 0.95) -> Interval:
    """Pearson's r with the Fisher z interval; NaN when either side is constant."""
    a, b = _rates(x, y)
    n = a.size
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return Interval(math.nan, -1.0, 1.0, level, "Fisher z")
    r = float(np.clip(np.corrcoef(a, b)[0, 1], -1.0, 1.0))
    if n <= 3:
        return Interval(r, -1.0, 1.0, level, "Fisher z (n <= 3: no interval)")
    z = float(stats.norm.ppf(1 - (1 - level) / 2))
    center = math.atanh(r) if abs(r) < 1 else math.copysign(math.inf, r)
    half = z / math.sqrt(n - 3)
    return Interval(r, math.tanh(center - half), math.tanh(center + half), level, "Fisher z")


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rho (average ranks for ties); NaN when either side is constant."""
    a, b = _rates(x, y)
    return float(_spearman_rows(a[None], b[None])[0])


def _spearman_rows(x: FloatArray, y: FloatArray) -> FloatArray:
    rx, ry = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    denominator = np.sqrt(np.sum(rx * rx, axis=1) * np.sum(ry * ry, axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(denominator > 0, np.sum(rx * ry, axis=1) / denominator, np.nan), dtype=float)


@dataclass(frozen=True, slots=True)
class SimReal:
    """Per-policy success in both worlds (``policies`` in input order) and the three statistics."""

    policies: tuple[str, ...]
    sim_rate: tuple[float, ...]
    real_rate: tuple[float, ...]
    sim_episodes: tuple[int, ...]
    real_episodes: tuple[int, ...]
    pearson: Interval
    spearman: Interval
    mmrv: Interval

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("pearson", "spearman", "mmrv"):
            data[key] = getattr(self, key).to_dict()
        data["policies"] = [
            {"policy": p, "sim_rate": s, "real_rate": r, "sim_episodes": ns, "real_episodes": nr}
            for p, s, r, ns, nr in zip(self.policies, self.sim_rate, self.real_rate, self.sim_episodes,
                                       self.real_episodes, strict=True)]
        for key in ("sim_rate", "real_rate", "sim_episodes", "real_episodes"):
            del data[key]
        return data


def sim_real_agreement(policies: list[str], sim_successes: ArrayLike, sim_episodes: ArrayLike,
                       real_successes: ArrayLike, real_episodes: ArrayLike, *, rng: np.random.Generator,
                       level: float = 0.95, reps: int = DEFAULT_REPS) -> SimReal:
    """Success counts and episode counts per policy (shape (policies,) each, episodes > 0) in
    simulation and on the robot; Pearson (Fisher z), Spearman and MMRV (bootstrap over episodes)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    ks, ns = _counts(sim_successes, sim_episodes, "sim")
    kr, nr = _counts(real_successes, real_episodes, "real")
    if not len(policies) == ks.size == kr.size or len(set(policies)) != len(policies) or ks.size < 2:
        raise ValueError("need >= 2 distinct policies, with one count each in sim and real")
    ps, pr = ks / ns, kr / nr
    draws_s = rng.binomial(ns, ps, size=(reps, ps.size)) / ns
    draws_r = rng.binomial(nr, pr, size=(reps, pr.size)) / nr
    q = (1 - level) / 2
    method = "bootstrap over episodes (percentile)"

    def interval(estimate: float, draws: FloatArray) -> Interval:
        finite = draws[np.isfinite(draws)]
        if finite.size == 0 or not math.isfinite(estimate):
            return Interval(estimate, math.nan, math.nan, level, method, int(finite.size))
        low, high = np.quantile(finite, [q, 1 - q])
        return Interval(estimate, float(low), float(high), level, method, int(finite.size))

    return SimReal(
        tuple(policies), tuple(float(x) for x in ps), tuple(float(x) for x in pr),
        tuple(int(x) for x in ns), tuple(int(x) for x in nr),
        pearson_interval(ps, pr, level=level),
        interval(spearman(ps, pr), _spearman_rows(draws_s, draws_r)),
        interval(mmrv(ps, pr), _mmrv_rows(draws_s, draws_r)))


def _rates(x: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two equal-length 1-d arrays of >= 2 policies, got {a.shape}, {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("success rates must be finite")
    return a, b


def _counts(successes: ArrayLike, episodes: ArrayLike, world: str) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    k, n = np.asarray(successes), np.asarray(episodes)
    if k.ndim != 1 or k.shape != n.shape or not (np.issubdtype(k.dtype, np.integer) and np.issubdtype(n.dtype, np.integer)):
        raise ValueError(f"{world}: successes and episodes must be equal-length 1-d integer arrays")
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError(f"{world}: need 0 <= successes <= episodes and episodes > 0 for every policy")
    return k.astype(np.int64), n.astype(np.int64)
