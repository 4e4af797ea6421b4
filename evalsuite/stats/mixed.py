"""Mixed-effects logistic regression across tasks: success ~ policy + (1 | task).

Tasks differ in difficulty far more than policies differ from each other; a random intercept per
task absorbs that, and the policy effects are log-odds ratios against a reference policy that use
every episode of every task. Fitted with statsmodels' ``BinomialBayesMixedGLM`` (variational Bayes,
``fit_vb``); intervals are the posterior mean +- z * posterior sd, which variational Bayes tends to
make somewhat narrow.

The variational posterior of the task-intercept standard deviation is lognormal (statsmodels fits
a Gaussian to its log), so it is reported by its median exp(m) and its mean exp(m + s^2 / 2).
``fit_vb`` signals an optimizer that stopped early only by a warning (and scipy's result object):
both are captured here and returned as ``converged`` / ``message``, so callers need not silence
warnings to keep a report clean, nor lose the information by doing so.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats


@dataclass(frozen=True, slots=True)
class PolicyEffect:
    policy: int  # index into the policies given
    log_odds: float  # vs the reference policy (index 0)
    sd: float
    low: float
    high: float
    level: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class MixedModelResult:
    intercept: float
    effects: list[PolicyEffect]
    task_sd_median: float  # posterior median of the random-intercept sd: exp(posterior mean of its log)
    task_sd_mean: float  # posterior mean of that sd under the lognormal variational posterior
    converged: bool  # the optimizer reported success and statsmodels raised no convergence warning
    message: str  # the optimizer's message
    fit_warnings: tuple[str, ...] = ()  # every warning the fit raised, as text

    def to_dict(self) -> dict[str, Any]:
        return {"intercept": self.intercept, "task_sd_median": self.task_sd_median, "task_sd_mean": self.task_sd_mean,
                "converged": self.converged, "message": self.message, "fit_warnings": list(self.fit_warnings),
                "effects": [e.to_dict() for e in self.effects]}


def fit_policy_effects(task: NDArray[Any], policy: NDArray[Any], success: NDArray[Any], *, rng: np.random.Generator,
                       level: float = 0.95, n_policies: int | None = None,
                       max_iterations: int | None = None) -> MixedModelResult:
    """Episode-level inputs, each of shape (N,): task index, policy index (0 = reference), outcome.
    ``max_iterations`` caps the optimizer (scipy's BFGS default otherwise)."""
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    task = np.asarray(task, dtype=int)
    policy = np.asarray(policy, dtype=int)
    y = np.asarray(success, dtype=float)
    if not task.shape == policy.shape == y.shape or task.ndim != 1:
        raise ValueError("task, policy and success must be 1-d arrays of equal length")
    k = n_policies or int(policy.max()) + 1
    tasks = np.unique(task)
    exog = np.column_stack([np.ones(len(y))] + [(policy == j).astype(float) for j in range(1, k)])
    exog_vc = np.column_stack([(task == t).astype(float) for t in tasks])
    model = BinomialBayesMixedGLM(y, exog, exog_vc, np.zeros(len(tasks), dtype=int), vcp_p=1.0, fe_p=2.0)
    options = None if max_iterations is None else {"maxiter": int(max_iterations)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit_vb(rng=rng, minim_opts=options)  # without a generator statsmodels draws fresh OS entropy
    optimizer = fit.optim_retvals
    stopped_early = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    converged = bool(getattr(optimizer, "success", not stopped_early)) and not stopped_early
    message = str(getattr(optimizer, "message", "VB fitting did not converge" if stopped_early else ""))
    z = stats.norm.ppf(0.5 + level / 2)
    effects = [PolicyEffect(j, float(fit.fe_mean[j]), float(fit.fe_sd[j]), float(fit.fe_mean[j] - z * fit.fe_sd[j]),
                            float(fit.fe_mean[j] + z * fit.fe_sd[j]), level) for j in range(1, k)]
    log_sd_mean, log_sd_sd = float(fit.vcp_mean[0]), float(fit.vcp_sd[0])
    return MixedModelResult(float(fit.fe_mean[0]), effects, math.exp(log_sd_mean),
                            math.exp(log_sd_mean + log_sd_sd ** 2 / 2), converged, message,
                            tuple(f"{w.category.__name__}: {w.message}" for w in caught))
