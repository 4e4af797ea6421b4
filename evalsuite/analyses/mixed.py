"""A mixed-effects logistic model over all episodes: success ~ policy + (1 | task), effects as
log-odds against the first policy. Whether the variational fit converged is recorded and shown."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuite import streams
from evalsuite.analyses import AnalysisInput
from evalsuite.results import Results


def compute(inp: AnalysisInput) -> dict[str, Any] | None:
    """Over two or more tasks and policies, when outcomes differ (else there is nothing to fit)."""
    from evalsuite.stats.mixed import fit_policy_effects

    assert inp.outcomes is not None, "needs the outcome cube (analysis.analyze passes it)"
    outcome = inp.outcomes.triples
    codes, tasks = inp.codes, list(inp.plan.tasks)
    if len(tasks) < 2 or len(codes) < 2 or len(set(outcome.values())) != 2:
        return None
    keys = sorted(outcome)
    task_idx = np.array([tasks.index(t) for t, _, _ in keys])
    pol_idx = np.array([codes.index(c) for _, c, _ in keys])
    y = np.array([outcome[k] for k in keys], dtype=float)
    fit = fit_policy_effects(task_idx, pol_idx, y, level=inp.level, n_policies=len(codes),
                             rng=streams.generator(inp.seed, streams.MIXED_MODEL))
    return {"model": "success ~ policy + (1 | task), logit, statsmodels BinomialBayesMixedGLM fit_vb",
            "reference": inp.label[codes[0]], "task_sd_median": fit.task_sd_median, "task_sd_mean": fit.task_sd_mean,
            "converged": fit.converged, "message": fit.message, "fit_warnings": list(fit.fit_warnings),
            "effects": [{"policy": inp.label[codes[e.policy]], "log_odds": e.log_odds, "sd": e.sd, "low": e.low,
                         "high": e.high, "level": e.level} for e in fit.effects]}


def report(section: dict[str, Any], results: Results) -> list[str]:
    sd = section.get("task_sd_median", section.get("task_sd"))
    converged = section.get("converged", True)
    lines = ["", f"### Mixed-effects logistic model ({section['model']})", "",
             f"Log-odds of success against {section['reference']}; task random-intercept sd {sd:.2f} (posterior "
             "median). Separated data (a policy at 0% or 100%) makes these unstable."
             + ("" if converged else f" **The fit did not converge ({section.get('message', '')}): do not "
                "read these effects.**"), "",
             "| policy | log-odds vs reference | interval |", "|---|---|---|"]
    for e in section["effects"]:
        lines.append(f"| {e['policy']} | {e['log_odds']:.2f} | [{e['low']:.2f}, {e['high']:.2f}] |")
    return lines


def metrics(section: dict[str, Any]) -> dict[str, float]:
    return {f"mixed/{e['policy']}/log_odds": e["log_odds"] for e in section.get("effects", [])}
