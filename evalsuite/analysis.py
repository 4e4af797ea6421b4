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

from evalsuite import stats
from evalsuite.journal import EpisodeRecord
from evalsuite.outcomes import Outcomes
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


def analyze(plan: Plan, key: Mapping[str, Any], records: list[EpisodeRecord], options: AnalysisOptions,
            notes: Mapping[str, Mapping[str, Any]] | None = None, worst_case: dict[str, Any] | None = None,
            review: list[dict[str, Any]] | None = None) -> Results:
    """All statistics of a run (see module docstring); ``Results.to_dict`` is results.json.
    ``notes``: what each policy said about itself (label -> notes); ``worst_case``: an MDP family's
    worst-case search; ``review``: a video review's ratings - inputs of the analysis, never patched
    into the results afterwards."""
    key = BlindingKey.of(key)
    label = key.labels
    codes = key.report_order()  # the user's order (by name for folders that do not record it), never by code
    outcomes = Outcomes(plan.tasks, codes, records, options.max_attempts)
    per_task = _per_task(plan, label, codes, outcomes, options)
    pairs = _pairs(plan, label, codes, outcomes, options)
    from evalsuite.analyses import AnalysisInput, compute_all

    sections = compute_all(AnalysisInput(plan, key, list(outcomes.final.values()), label, options.level, plan.seed,
                                         options=options, codes=codes, outcomes=outcomes, per_task=per_task,
                                         all_records=records, worst_case=worst_case, review=review))
    said = notes or {}
    planned = _planned(plan, records, options)
    return Results(
        suite=plan.suite, tasks=list(plan.tasks), seed=plan.seed, episodes_per_task=plan.episodes, options=options,
        policies={label[c]: {"code": c, **key[c].to_dict(), **({"notes": dict(said[label[c]])} if said.get(label[c])
                                                                 else {})} for c in codes},
        trials=TrialCounts(planned=planned, finished=len(outcomes.final), policy_errors=outcomes.policy_errors,
                           missing=outcomes.missing, complete=len(outcomes.final) == planned),
        per_task=per_task, pairwise=pairs, aggregate=_aggregate(label, codes, per_task, options),
        mean_differences=_mean_differences(plan, label, codes, pairs, options),
        letters=_letters(plan, label, codes, per_task, pairs), sections=sections,
    )


def _per_task(plan: Plan, label: dict[str, str], codes: list[str], outcomes: Outcomes,
              options: AnalysisOptions) -> list[TaskResult]:
    """Each policy's success rate on each task, with its interval and posterior; with missing
    episodes, also the rate counting them as failures."""
    rows = []
    for task in plan.tasks:
        for code in codes:
            cell = outcomes.cell(task, code)
            n, k = len(cell.outcomes), int(sum(cell.outcomes.values()))
            ci = stats.proportion_interval(k, n, level=options.level, method=options.interval)
            post = stats.beta_posterior(k, n)
            worst = None
            if cell.missing:
                wci = stats.proportion_interval(k, n + len(cell.missing), level=options.level, method=options.interval)
                worst = WorstRate(successes=k, n=n + len(cell.missing), rate=_num(wci.estimate), ci_low=wci.low,
                                  ci_high=wci.high)
            rows.append(TaskResult(
                task=task, policy=label[code], code=code, n=n, successes=k, policy_errors=cell.policy_errors,
                missing=len(cell.missing), rate=_num(ci.estimate), ci_low=ci.low, ci_high=ci.high,
                method=options.interval, level=options.level, posterior_alpha=post.alpha, posterior_beta=post.beta,
                mean_steps=_num(float(np.mean(cell.steps))) if cell.steps else None,
                fingerprint=cell.fingerprint, worst_case=worst,
            ))
    return rows


def _pairs(plan: Plan, label: dict[str, str], codes: list[str], outcomes: Outcomes,
           options: AnalysisOptions) -> list[PairResult]:
    """Every pair of policies on every task, paired on shared initial conditions: exact McNemar,
    corrected across the run, with simultaneous intervals to go with the correction."""
    raw = []
    for task in plan.tasks:
        for a, b in itertools.combinations(codes, 2):
            cmp = _paired(outcomes.table(task, a), outcomes.table(task, b), options.level)
            worst = None
            if outcomes.cell(task, a).missing or outcomes.cell(task, b).missing:
                wc = _paired(outcomes.table(task, a, missing_as_failures=True),
                             outcomes.table(task, b, missing_as_failures=True), options.level)
                worst = WorstPair(n_pairs=wc.n, difference=_num(wc.difference), ci_low=wc.ci_low,
                                  ci_high=wc.ci_high, p_value=wc.p_value)
            raw.append((task, a, b, cmp, worst))
    adjusted = stats.adjust_pvalues([c.p_value for _, _, _, c, _ in raw], options.correction)
    alpha = 1 - options.level
    rejected = int(sum(p < alpha for p in adjusted))
    sim_level = adjusted_level(options.level, max(1, len(raw)), options.correction, selected=rejected)
    pairs = []
    for (task, a, b, c, worst), p_adj in zip(raw, adjusted, strict=True):
        low, high = newcombe_paired_interval(c.both, c.a_only, c.b_only, c.neither, level=sim_level)
        pairs.append(PairResult(
            task=task, policy_a=label[a], policy_b=label[b], n_pairs=c.n, both=c.both, a_only=c.a_only,
            b_only=c.b_only, neither=c.neither, difference=_num(c.difference), ci_low=c.ci_low, ci_high=c.ci_high,
            level=c.level, p_value=c.p_value, p_adjusted=float(p_adj), correction=options.correction,
            significant=bool(p_adj < alpha and (low > 0 or high < 0)), simultaneous_level=sim_level,
            simultaneous_low=low, simultaneous_high=high, worst_case=worst))
    return pairs


def _paired(xa: dict[int, bool], xb: dict[int, bool], level: float) -> Any:
    shared = sorted(set(xa) & set(xb))
    return stats.paired_comparison(np.array([xa[i] for i in shared], dtype=bool),
                                   np.array([xb[i] for i in shared], dtype=bool), level=level)


def _letters(plan: Plan, label: dict[str, str], codes: list[str], per_task: list[TaskResult],
             pairs: list[PairResult]) -> dict[str, dict[str, str]]:
    """Per task: policies sharing a letter cannot be told apart (after the correction); past 26
    letters, rank ranges."""
    rate = {(r.task, r.code): r.rate or 0.0 for r in per_task}
    letters = {}
    for task in plan.tasks:
        by_rate = sorted(codes, key=lambda c: -rate[task, c])  # noqa: B023 (used at once, inside the loop)
        better = {(p.policy_a, p.policy_b) if (p.difference or 0.0) > 0 else (p.policy_b, p.policy_a)
                  for p in pairs if p.task == task and p.significant}  # (winner, loser)
        letters[task] = letter_display([label[c] for c in by_rate], better)
    return letters


def _aggregate(label: dict[str, str], codes: list[str], per_task: list[TaskResult],
               options: AnalysisOptions) -> list[AggregateResult]:
    """Each policy's mean success over tasks, with missing episodes also counted as failures."""
    aggregate = []
    for code in codes:
        rows = [r for r in per_task if r.code == code and r.n > 0]
        attempted = [r for r in per_task if r.code == code and r.n + r.missing > 0]
        worst = None
        if any(r.missing for r in attempted):  # a task with every trial missing counts too, at 0
            w = mean_over_tasks([r.successes for r in attempted], [r.n + r.missing for r in attempted],
                                level=options.level)
            worst = WorstMean(mean=w.estimate, ci_low=w.low, ci_high=w.high, tasks=len(attempted))
        if rows:
            ci = mean_over_tasks([r.successes for r in rows], [r.n for r in rows], level=options.level)
            aggregate.append(AggregateResult(label[code], len(rows), ci.estimate, ci.low, ci.high, ci.level,
                                             ci.method, worst))
    return aggregate


def _mean_differences(plan: Plan, label: dict[str, str], codes: list[str], pairs: list[PairResult],
                      options: AnalysisOptions) -> list[MeanDifference]:
    """The paired difference of the mean over tasks, for every pair of policies with every task."""
    out: list[MeanDifference] = []
    if len(plan.tasks) < 2:
        return out
    for a, b in itertools.combinations(codes, 2):
        rows = [p for p in pairs if p.policy_a == label[a] and p.policy_b == label[b] and p.n_pairs > 0]
        if len(rows) != len(plan.tasks):
            continue
        ci = paired_difference_over_tasks([(p.both, p.a_only, p.b_only, p.neither) for p in rows],
                                          level=options.level)
        out.append(MeanDifference(policy_a=label[a], policy_b=label[b], difference=ci.estimate,
                                  ci_low=ci.low, ci_high=ci.high, level=ci.level, method=ci.method))
    return out


def _planned(plan: Plan, records: list[EpisodeRecord], options: AnalysisOptions) -> int:
    """Trials planned: all of them, or with sequential stopping those of the rounds each task ran."""
    if not plan.stopping.sequential:
        return len(plan.trials)
    from evalsuite import sequential

    stops = sequential.stop_rounds(plan, records, options.max_attempts)
    return sum(1 for t in plan.trials if (stop := stops[t.task]) is None or sequential.round_of(t, plan) <= stop)


def _num(x: float) -> float | None:
    """NaN is not JSON: an undefined rate (n = 0) is written as null."""
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)
