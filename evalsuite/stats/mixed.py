"""Mixed-effects logistic regression across tasks: success ~ policy + (1 | task).

Tasks differ in difficulty far more than policies differ from each other; a random intercept per
task absorbs that, and the policy effects are log-odds ratios against a reference policy that use
every episode of every task. Fitted with statsmodels' ``BinomialBayesMixedGLM`` (variational Bayes,
``fit_vb``); intervals are the posterior mean +- z * posterior sd, which variational Bayes tends to
make somewhat narrow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True, slots=True)
class PolicyEffect:
    policy: int  # index into the policies given
    log_odds: float  # vs the reference policy (index 0)
    sd: float
    low: float
    high: float
    level: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class MixedModelResult:
    intercept: float
    effects: list[PolicyEffect]
    task_sd: float  # posterior mean of the random-intercept standard deviation

    def to_dict(self) -> dict:
        return {"intercept": self.intercept, "task_sd": self.task_sd, "effects": [e.to_dict() for e in self.effects]}


def fit_policy_effects(task: np.ndarray, policy: np.ndarray, success: np.ndarray, *, rng: np.random.Generator,
                       level: float = 0.95, n_policies: int | None = None) -> MixedModelResult:
    """Episode-level inputs, each of shape (N,): task index, policy index (0 = reference), outcome."""
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

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
    fit = model.fit_vb(rng=rng)  # without a generator statsmodels draws fresh OS entropy
    z = stats.norm.ppf(0.5 + level / 2)
    effects = [PolicyEffect(j, float(fit.fe_mean[j]), float(fit.fe_sd[j]), float(fit.fe_mean[j] - z * fit.fe_sd[j]),
                            float(fit.fe_mean[j] + z * fit.fe_sd[j]), level) for j in range(1, k)]
    return MixedModelResult(float(fit.fe_mean[0]), effects, float(np.exp(fit.vcp_mean[0])))
