"""From the journal to results: the only place where blinding codes become policy names.

Records -> per (task, policy) results -> pairwise paired comparisons (Holm across the run)
-> the aggregate over tasks. ``results.json`` holds only what is a function of the plan and the
outcomes (no wall times), so an interrupted-and-resumed run gives the same file as a clean one.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from evalsuite import stats, streams
from evalsuite.journal import ERROR, POLICY_ERROR, EpisodeRecord, finished_trials
from evalsuite.plan import BlindingKey, Plan
from evalsuite.results import (
    AggregateResult,
    AnalysisOptions,
    MeanDifference,
    PairResult,
    Results,
    TaskResult,
    TrialCounts,
    WorstMean,
    WorstPair,
    WorstRate,
)
from evalsuite.stats.letters import letter_display
from evalsuite.stats.over_tasks import adjusted_level, mean_over_tasks, paired_difference_over_tasks
from evalsuite.stats.paired import newcombe_paired_interval

__all__ = ["AnalysisOptions", "analyze"]


def analyze(plan: Plan, key: Mapping[str, Any], records: list[EpisodeRecord], options: AnalysisOptions) -> Results:
    """All statistics of a run (see module docstring); ``Results.to_dict`` is results.json."""
    final = finished_trials(records, options.max_attempts)
    key = BlindingKey.of(key)
    label = key.labels
    codes = sorted(plan.codes, key=lambda c: label[c])  # report order: by name, not by code
    outcome: dict[tuple[str, str, int], bool] = {}
    missing: dict[tuple[str, str], list[int]] = {}  # ic indices lost to infrastructure errors
    policy_errors: dict[tuple[str, str], int] = {}
    steps: dict[tuple[str, str], list[int]] = {}
    fingerprints: dict[tuple[str, str], str] = {}
    for r in final.values():
        fingerprints[r.task, r.policy_code] = r.policy_fingerprint
        if r.status == ERROR:
            missing.setdefault((r.task, r.policy_code), []).append(r.ic_index)
        else:
            outcome[r.task, r.policy_code, r.ic_index] = r.success
            if r.status == POLICY_ERROR:
                policy_errors[r.task, r.policy_code] = policy_errors.get((r.task, r.policy_code), 0) + 1
            steps.setdefault((r.task, r.policy_code), []).append(r.steps)

    per_task: list[TaskResult] = []
    for task in plan.tasks:
        for code in codes:
            results = [v for (t, c, _), v in outcome.items() if t == task and c == code]
            n, k = len(results), int(sum(results))
            ci = stats.proportion_interval(k, n, level=options.level, method=options.interval)
            post = stats.beta_posterior(k, n)
            lost = len(missing.get((task, code), []))
            worst = None
            if lost:
                wci = stats.proportion_interval(k, n + lost, level=options.level, method=options.interval)
                worst = WorstRate(successes=k, n=n + lost, rate=_num(wci.estimate), ci_low=wci.low,
                                  ci_high=wci.high)
            per_task.append(TaskResult(
                task=task, policy=label[code], code=code, n=n, successes=k,
                policy_errors=policy_errors.get((task, code), 0), missing=lost, rate=_num(ci.estimate),
                ci_low=ci.low, ci_high=ci.high, method=options.interval, level=options.level,
                posterior_alpha=post.alpha, posterior_beta=post.beta,
                mean_steps=_num(float(np.mean(steps[task, code]))) if steps.get((task, code)) else None,
                fingerprint=fingerprints.get((task, code), ""), worst_case=worst,
            ))

    def table(task: str, code: str, fill: bool) -> dict[int, bool]:
        """ic index -> outcome of one policy on one task; with ``fill`` the missing ones as failures."""
        got = {i: v for (t, c, i), v in outcome.items() if t == task and c == code}
        return {**{i: False for i in missing.get((task, code), [])}, **got} if fill else got

    raw_pairs = []
    for task in plan.tasks:
        for a, b in itertools.combinations(codes, 2):
            xa, xb = table(task, a, False), table(task, b, False)
            shared = sorted(set(xa) & set(xb))
            cmp = stats.paired_comparison(np.array([xa[i] for i in shared], dtype=bool),
                                          np.array([xb[i] for i in shared], dtype=bool), level=options.level)
            worst = None
            if missing.get((task, a)) or missing.get((task, b)):
                wa, wb = table(task, a, True), table(task, b, True)
                both_ics = sorted(set(wa) & set(wb))
                wc = stats.paired_comparison(np.array([wa[i] for i in both_ics], dtype=bool),
                                             np.array([wb[i] for i in both_ics], dtype=bool), level=options.level)
                worst = WorstPair(n_pairs=wc.n, difference=_num(wc.difference), ci_low=wc.ci_low,
                                  ci_high=wc.ci_high, p_value=wc.p_value)
            raw_pairs.append((task, a, b, cmp, worst))
    adjusted = stats.adjust_pvalues([c.p_value for _, _, _, c, _ in raw_pairs], options.correction)
    alpha = 1 - options.level
    rejected = int(sum(p < alpha for p in adjusted))
    sim_level = adjusted_level(options.level, max(1, len(raw_pairs)), options.correction, selected=rejected)
    pairs = []
    for (task, a, b, c, worst), p_adj in zip(raw_pairs, adjusted, strict=False):
        low, high = newcombe_paired_interval(c.both, c.a_only, c.b_only, c.neither, level=sim_level)
        pairs.append(PairResult(
            task=task, policy_a=label[a], policy_b=label[b], n_pairs=c.n, both=c.both, a_only=c.a_only,
            b_only=c.b_only, neither=c.neither, difference=_num(c.difference), ci_low=c.ci_low, ci_high=c.ci_high,
            level=c.level, p_value=c.p_value, p_adjusted=float(p_adj), correction=options.correction,
            significant=bool(p_adj < alpha and (low > 0 or high < 0)), simultaneous_level=sim_level,
            simultaneous_low=low, simultaneous_high=high, worst_case=worst))

    letters = {}  # per task: policies sharing a letter cannot be told apart (after the correction)
    for task in plan.tasks:
        by_rate = sorted(codes, key=lambda c: -(next(r.rate for r in per_task if r.task == task and r.code == c) or 0))
        better = {(p.policy_a, p.policy_b) if p.difference > 0 else (p.policy_b, p.policy_a)
                  for p in pairs if p.task == task and p.significant}  # (winner, loser)
        letters[task] = letter_display([label[c] for c in by_rate], better)  # past 26 letters: rank ranges

    aggregate: list[AggregateResult] = []
    for code in codes:
        rows = [r for r in per_task if r.code == code and r.n > 0]
        attempted = [r for r in per_task if r.code == code and r.n + r.missing > 0]
        worst = None
        if any(r.missing for r in attempted):  # a task with every trial missing counts too, at 0
            w = mean_over_tasks([r.successes for r in attempted], [r.n + r.missing for r in attempted],
                                level=options.level)
            worst = WorstMean(mean=w.estimate, ci_low=w.low, ci_high=w.high, tasks=len(attempted))
        if not rows:
            continue
        ci = mean_over_tasks([r.successes for r in rows], [r.n for r in rows], level=options.level)
        aggregate.append(AggregateResult(label[code], len(rows), ci.estimate, ci.low, ci.high, ci.level, ci.method,
                                         worst))

    mean_differences: list[MeanDifference] = []  # paired difference of the mean over tasks, for every pair of policies
    if len(plan.tasks) >= 2:
        for a, b in itertools.combinations(codes, 2):
            rows = [p for p in pairs if p.policy_a == label[a] and p.policy_b == label[b] and p.n_pairs > 0]
            if len(rows) != len(plan.tasks):
                continue
            ci = paired_difference_over_tasks([(p.both, p.a_only, p.b_only, p.neither) for p in rows],
                                              level=options.level)
            mean_differences.append(MeanDifference(policy_a=label[a], policy_b=label[b], difference=ci.estimate,
                                                   ci_low=ci.low, ci_high=ci.high, level=ci.level, method=ci.method))

    planned = len(plan.trials)
    extra: dict[str, Any] = {}
    complete_codes = [c for c in codes if all(r.n > 0 for r in per_task if r.code == c)]
    if len(plan.tasks) >= 2 and complete_codes:
        extra["aggregates"] = _aggregates(per_task, plan, [label[c] for c in complete_codes], options)
    if len(plan.tasks) >= 2 and len(codes) >= 2 and len(set(outcome.values())) == 2:  # else nothing to fit
        extra["mixed_model"] = _mixed_model(outcome, plan, codes, label, options.level)
    groups = _groups(outcome, plan, key, codes, options)
    if groups:
        extra["groups"] = groups
    from evalsuite.analyses import AnalysisInput, compute_all

    extra.update(compute_all(AnalysisInput(plan, key, list(final.values()), label, options.level, plan.seed)))
    if plan.stopping.sequential:
        from evalsuite import sequential

        stops = sequential.stop_rounds(plan, records, options.max_attempts)
        planned = sum(1 for t in plan.trials
                      if stops[t.task] is None or sequential.round_of(t, plan) <= stops[t.task])
        extra["sequential"] = sequential.summary(plan, key, records, options.max_attempts)
    return Results(
        suite=plan.suite, tasks=list(plan.tasks), seed=plan.seed, episodes_per_task=plan.episodes, options=options,
        policies={label[c]: {"code": c, **key[c].to_dict()} for c in codes},
        trials=TrialCounts(planned=planned, finished=len(final), policy_errors=sum(policy_errors.values()),
                           missing=sum(len(v) for v in missing.values()), complete=len(final) == planned),
        per_task=per_task, pairwise=pairs, aggregate=aggregate, mean_differences=mean_differences, letters=letters,
        sections=extra,
    )


def _groups(outcome: dict, plan: Plan, key: BlindingKey, codes: list[str], options: AnalysisOptions) -> dict[str, Any]:
    """Algorithms rather than checkpoints: policies given the same ``group=`` (training seeds of one
    algorithm) are summarized together, with intervals from a hierarchical bootstrap over training
    seeds and initial conditions; every pair of groups is compared on the shared initial conditions.
    Policies without a group stand alone. Empty when no policy names a group."""
    from evalsuite.stats import groups as gs

    if not any("group" in key[c].params for c in codes):
        return {}
    members: dict[str, list[str]] = {}
    for c in codes:
        group = key[c].params.get("group")
        members.setdefault(str(group) if group is not None else f"(alone) {key.label(c)}", []).append(c)
    shared = {t: sorted(set.intersection(*({i for (tt, cc, i) in outcome if tt == t and cc == c} for c in codes)))
              for t in plan.tasks}
    episodes = min(len(v) for v in shared.values())
    if episodes == 0:
        return {"note": "no initial condition has an outcome for every policy; no group statistics"}
    arrays = {g: np.array([[[outcome[t, c, i] for i in shared[t][:episodes]] for t in plan.tasks] for c in cs],
                          dtype=float) for g, cs in members.items()}
    reps = min(options.bootstrap_reps, 5000)

    def rng(*k):
        return streams.generator(plan.seed, streams.GROUPS, *k)

    out: dict[str, Any] = {
        "method": gs.METHOD, "level": options.level, "reps": reps, "episodes_per_task": episodes,
        "covers": "training seeds (the group's runs) and initial conditions",
        "groups": {g: {"policies": [key.label(c) for c in members[g]],
                       **gs.group_aggregates(arrays[g], rng=rng(0, i), reps=reps, level=options.level).to_dict()}
                   for i, g in enumerate(members)},
        "comparisons": [],
    }
    names = list(members)
    for i, j in itertools.combinations(range(len(names)), 2):
        x, y = arrays[names[i]], arrays[names[j]]
        diff = gs.group_difference(x, y, metric="mean", rng=rng(1, i, j), reps=reps, level=options.level)
        poi = gs.probability_of_improvement_groups(x, y, rng=rng(2, i, j), reps=reps, level=options.level)
        out["comparisons"].append({"x": names[i], "y": names[j], "mean_difference": diff.interval.to_dict(),
                                   "probability_of_improvement": poi.interval.to_dict()})
    return out


def _mixed_model(outcome: dict, plan: Plan, codes: list[str], label: dict, level: float) -> dict[str, Any]:
    """success ~ policy + (1 | task) over all episodes; effects are log-odds vs the first policy.
    Whether the variational fit converged is recorded (and shown), not hidden."""
    from evalsuite.stats.mixed import fit_policy_effects

    keys = sorted(outcome)
    task_idx = np.array([plan.tasks.index(t) for t, _, _ in keys])
    pol_idx = np.array([codes.index(c) for _, c, _ in keys])
    y = np.array([outcome[k] for k in keys], dtype=float)
    fit = fit_policy_effects(task_idx, pol_idx, y, level=level, n_policies=len(codes),
                             rng=streams.generator(plan.seed, streams.MIXED_MODEL))
    return {"model": "success ~ policy + (1 | task), logit, statsmodels BinomialBayesMixedGLM fit_vb",
            "reference": label[codes[0]], "task_sd_median": fit.task_sd_median, "task_sd_mean": fit.task_sd_mean,
            "converged": fit.converged, "message": fit.message, "fit_warnings": list(fit.fit_warnings),
            "effects": [{"policy": label[codes[e.policy]], "log_odds": e.log_odds, "sd": e.sd, "low": e.low,
                         "high": e.high, "level": e.level} for e in fit.effects]}


def _aggregates(per_task: list[TaskResult], plan: Plan, policies: list[str], options: AnalysisOptions) -> dict:
    """rliable's aggregates of per-task rates (mean, median, IQM, optimality gap), probability of
    improvement between policies, and performance profiles; intervals from resampling episodes."""
    from evalsuite.stats import aggregates as ag

    cell = {(r.policy, r.task): r for r in per_task}
    k = np.array([[cell[p, t].successes for t in plan.tasks] for p in policies])
    n = np.array([[cell[p, t].n for t in plan.tasks] for p in policies])
    rng = streams.generator(plan.seed, streams.AGGREGATES)
    metrics, poi = ag.run_aggregates(k, n, rng=rng, reps=options.bootstrap_reps, level=options.level)
    taus = np.linspace(0, 1, 21)
    return {
        "method": "per-task success rates; stratified bootstrap over each task's episodes (percentile)",
        "level": options.level, "reps": options.bootstrap_reps,
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


def _num(x: float) -> float | None:
    """NaN is not JSON: an undefined rate (n = 0) is written as null."""
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)
