"""rliable's aggregates over tasks (Agarwal et al. 2021): mean, median, IQM and optimality gap of
the per-task success rates, the probability of improvement between policies, and performance
profiles; intervals from a stratified bootstrap over each task's episodes."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuite import streams
from evalsuite.analyses import AnalysisInput
from evalsuite.plotting import subplots
from evalsuite.results import Results

METRICS = ("mean", "median", "iqm", "optimality_gap")


def compute(inp: AnalysisInput) -> dict[str, Any] | None:
    """Over two or more tasks, for the policies with an outcome on every task."""
    from evalsuite.stats import aggregates as ag

    complete = [c for c in inp.codes if all(r.n > 0 for r in inp.per_task if r.code == c)]
    if len(inp.plan.tasks) < 2 or not complete:
        return None
    policies = [inp.label[c] for c in complete]
    cell = {(r.policy, r.task): r for r in inp.per_task}
    k = np.array([[cell[p, t].successes for t in inp.plan.tasks] for p in policies])
    n = np.array([[cell[p, t].n for t in inp.plan.tasks] for p in policies])
    assert inp.options is not None, "needs the core analysis's options (analysis.analyze passes them)"
    reps = inp.options.bootstrap_reps
    metrics, poi = ag.run_aggregates(k, n, rng=streams.generator(inp.seed, streams.AGGREGATES), reps=reps,
                                     level=inp.level)
    taus = np.linspace(0, 1, 21)
    return {
        "method": "per-task success rates; stratified bootstrap over each task's episodes (percentile)",
        "level": inp.level, "reps": reps,
        "metrics": [{"policy": p, "metric": m, "estimate": v[i].estimate, "low": v[i].low, "high": v[i].high}
                    for m, v in metrics.items() for i, p in enumerate(policies)],
        "probability_of_improvement": [
            {"x": policies[i], "y": policies[j], "estimate": float(poi[0, i, j]), "low": float(poi[1, i, j]),
             "high": float(poi[2, i, j])}
            for i in range(len(policies)) for j in range(len(policies)) if i < j],
        "profile": {"taus": [float(t) for t in taus],
                    **{p: [float(v) for v in ag.performance_profile(k[i:i + 1] / n[i:i + 1], taus)]
                       for i, p in enumerate(policies)}},
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def report(section: dict[str, Any], results: Results) -> list[str]:
    lines = ["", f"### Aggregates over tasks (rliable's definitions, {100 * section['level']:g}% intervals)", "",
             f"{section['method']}, {section['reps']} resamples.", "",
             "| policy | mean % | median % | IQM % | optimality gap % |", "|---|---|---|---|---|"]
    by = {(m["policy"], m["metric"]): m for m in section["metrics"]}
    for pol in dict.fromkeys(m["policy"] for m in section["metrics"]):
        cells = [f"{_pct(by[pol, k]['estimate'])} [{_pct(by[pol, k]['low'])}, {_pct(by[pol, k]['high'])}]"
                 for k in METRICS]
        lines.append(f"| {pol} | " + " | ".join(cells) + " |")
    if section["probability_of_improvement"]:
        lines += ["", "| X | Y | P(X > Y) | interval |", "|---|---|---|---|"]
        for q in section["probability_of_improvement"]:
            lines.append(f"| {q['x']} | {q['y']} | {q['estimate']:.2f} | [{q['low']:.2f}, {q['high']:.2f}] |")
    return lines


def figures(section: dict[str, Any], results: Results) -> dict[str, Any]:
    """Performance profiles: the fraction of tasks on which each policy's rate exceeds tau."""
    prof = section["profile"]
    fig, ax = subplots(figsize=(5, 3.4))
    for pol, values in prof.items():
        if pol != "taus":
            ax.step(prof["taus"], values, where="post", label=pol)
    ax.set_xlabel("success rate threshold tau")
    ax.set_ylabel("fraction of tasks with rate > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return {"performance profiles": fig}


def metrics(section: dict[str, Any]) -> dict[str, float]:
    out = {}
    for m in section.get("metrics", []):
        out[f"{m['policy']}/{m['metric']}"] = m["estimate"]
        out[f"{m['policy']}/{m['metric']}_ci_low"] = m["low"]
        out[f"{m['policy']}/{m['metric']}_ci_high"] = m["high"]
    return out
