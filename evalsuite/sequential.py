"""Sequential early stopping of a run: paired episodes in rounds, a task stops once decided.

With ``stopping=sequential``, the plan's initial conditions (up to ``max_episodes`` per task) are
run in rounds of ``round_size``. After each round every task is checked; a decided task runs no
further rounds. Two kinds of decision (``Stopping.decision``):

- ``compare`` (default): every pair of policies on a task is tested with the anytime-valid
  discordant-pair e-process of ``evalsuite.stats.sequential`` at level alpha / m, m = all pairs
  of the run (Bonferroni: the error is controlled over every pair and every look). With
  ``planned=(p_baseline, delta)`` (the effect ``evalsuite plan`` was given) the discordant pairs
  are bet on instead with the betting e-process of ``evalsuite.stats.betting`` tuned to that
  effect: as valid at any effect, and it decides sooner at the planned one. With
  ``metric=progress`` the pair is tested on its paired progress scores instead (differences in
  [-1, 1]; the two-sided plug-in betting e-process of ``evalsuite.stats.betting``, decided once
  its running maximum reaches m / alpha - Ville's inequality makes that valid at any look);
  episodes of a suite without progress scores count their success (1 or 0). A pair is
  decided when one policy is better or - with a ``margin`` - when both one-sided betting
  e-processes show |difference| < margin (equivalent; an intersection-union test, each side at
  alpha / m). A task stops when all its pairs are decided.
- ``gate``: one candidate policy against a baseline's recorded outcomes on the same initial
  conditions (``Stopping.baseline``: task -> outcome per initial condition, stored in the plan
  so a resumed gate decides the same way); a task stops once its margin verdict
  (``evalsuite.stats.margin.sequential_verdict`` at alpha / tasks) is no longer INCONCLUSIVE.

Decisions are a function of the journal's completed rounds only, so a resumed run makes exactly
the same decisions as an uninterrupted one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evalsuite.journal import EpisodeRecord, finished_trials
from evalsuite.plan import BlindingKey, Plan, Trial
from evalsuite.stats.betting import PlannedEffect, first_decision, log_e_process
from evalsuite.stats.margin import INCONCLUSIVE, sequential_verdict
from evalsuite.stats.sequential import log_e_value, log_wealth_mean


def round_of(trial: Trial, plan: Plan) -> int:
    return trial.ic_index // plan.stopping.round_size


def n_rounds(plan: Plan) -> int:
    return math.ceil(plan.episodes / plan.stopping.round_size)


Outcomes = dict[tuple[str, str, int], float]  # (task, code, initial condition) -> success (a bool) or progress
PairStates = dict[tuple[str, str, str], dict[str, Any]]  # (task, code_a, code_b) -> the pair's state


def _outcomes(plan: Plan, records: list[EpisodeRecord], max_attempts: int, through_round: int) -> Outcomes:
    """(task, code, initial condition) -> the score the stopping rule compares: success, or the
    progress score with ``metric=progress``."""
    rs = plan.stopping.round_size
    progress = plan.stopping.metric == "progress"
    return {(r.task, r.policy_code, r.ic_index): (float(r.success) if r.progress is None else r.progress)
            if progress else r.success
            for r in finished_trials(records, max_attempts).values()
            if r.is_outcome and r.ic_index // rs <= through_round}


def pair_states(plan: Plan, records: list[EpisodeRecord], max_attempts: int, through_round: int) -> PairStates:
    """(task, code_a, code_b) -> {"a_wins", "b_wins", "pairs", "log_e", "winner", "equivalent"} on
    rounds <= through_round; winner is a code, or None while undecided."""
    outcome = _outcomes(plan, records, max_attempts, through_round)
    pairs = list(itertools.combinations(sorted(plan.codes), 2))
    threshold = math.log(len(plan.tasks) * len(pairs) / plan.stopping.alpha)
    margin = plan.stopping.margin
    states: PairStates = {}
    for task in plan.tasks:
        for a, b in pairs:
            shared = sorted(i for (t, c, i) in outcome if t == task and c == a and (task, b, i) in outcome)
            diffs = np.array([float(outcome[task, a, i]) - float(outcome[task, b, i]) for i in shared])
            a_wins, b_wins = int(np.sum(diffs > 0)), int(np.sum(diffs < 0))
            if plan.stopping.metric == "progress" or plan.stopping.planned:
                bet = _bet(plan)
                log_e = float(log_e_process(diffs, **bet).max()) if diffs.size else 0.0
                _, direction = first_decision(diffs, alpha=math.exp(-threshold), **bet)
                winner = None if direction == 0 else (a if direction > 0 else b)
            else:
                log_e = float(log_e_value(a_wins, b_wins))
                winner = None if log_e < threshold else (a if a_wins > b_wins else b)
            state = {"a_wins": a_wins, "b_wins": b_wins, "pairs": len(shared), "log_e": log_e, "winner": winner}
            if margin:
                lower = _max_log_wealth(diffs, -margin, "greater")  # evidence that d > -margin
                upper = _max_log_wealth(diffs, margin, "less")  # evidence that d < margin
                state.update(log_e_above_minus_margin=lower, log_e_below_margin=upper,
                             equivalent=winner is None and min(lower, upper) >= threshold)
            states[task, a, b] = state
    return states


def _bet(plan: Plan) -> dict[str, Any]:
    """The betting e-process's settings: plain for progress scores; for successes, tuned to the
    planned effect (a cap of 0.99 lets it reach the binary Kelly bet, as in the benchmark)."""
    if plan.stopping.metric == "progress" or plan.stopping.planned is None:
        return {}
    return {"effect": PlannedEffect.binary(*plan.stopping.planned), "cap": 0.99}


def _max_log_wealth(diffs: NDArray[Any], null: float, alternative: str) -> float:
    return float(log_wealth_mean(diffs, null, alternative=alternative).max()) if diffs.size else 0.0


def gate_states(plan: Plan, records: list[EpisodeRecord], max_attempts: int,
                through_round: int) -> dict[str, dict[str, Any]]:
    """task -> {"verdict", "pairs", "log_e"} of the single candidate against the stored baseline."""
    outcome = _outcomes(plan, records, max_attempts, through_round)
    (code,) = plan.codes
    alpha = plan.stopping.alpha / len(plan.tasks)
    recorded, margin = plan.stopping.baseline, plan.stopping.margin
    if recorded is None or margin is None:  # a gate's plan holds both (evalsuite/gate.py)
        raise ValueError("a sequential gate's plan needs the baseline's outcomes and a margin (stopping.baseline, "
                         "stopping.margin)")
    states: dict[str, dict[str, Any]] = {}
    for task in plan.tasks:
        baseline = {i: success for i, success in enumerate(recorded[task]) if success is not None}
        shared = sorted(i for (t, c, i) in outcome if t == task and i in baseline)
        diffs = np.array([int(outcome[task, code, i]) - int(baseline[i]) for i in shared], dtype=float)
        verdict, log_e = sequential_verdict(diffs, margin=margin, alpha=alpha)
        states[task] = {"verdict": verdict, "pairs": len(shared), "log_e": log_e}
    return states


def _decided(plan: Plan, records: list[EpisodeRecord], max_attempts: int, through_round: int) -> set[str]:
    if plan.stopping.decision == "gate":
        verdicts = gate_states(plan, records, max_attempts, through_round)
        return {task for task, s in verdicts.items() if s["verdict"] != INCONCLUSIVE}
    states = pair_states(plan, records, max_attempts, through_round)
    return {task for task in plan.tasks
            if all(s["winner"] or s.get("equivalent") for (t, _, _), s in states.items() if t == task)}


def stop_rounds(plan: Plan, records: list[EpisodeRecord], max_attempts: int) -> dict[str, int | None]:
    """task -> the last round it runs (decided after it), or None while undecided."""
    stops: dict[str, int | None] = {task: None for task in plan.tasks}
    done = finished_trials(records, max_attempts)
    for r in range(n_rounds(plan)):
        round_trials = [t for t in plan.trials if round_of(t, plan) == r and stops[t.task] is None]
        if any(t.trial_id not in done for t in round_trials):
            break  # decisions use completed rounds only
        for task in _decided(plan, records, max_attempts, r):
            if stops[task] is None:
                stops[task] = r
    return stops


def remaining_trials(plan: Plan, records: list[EpisodeRecord], max_attempts: int) -> list[Trial]:
    """The trials of the earliest round not yet complete, for tasks still undecided."""
    stops = stop_rounds(plan, records, max_attempts)
    done = finished_trials(records, max_attempts)
    for r in range(n_rounds(plan)):
        todo = [t for t in plan.trials if round_of(t, plan) == r and stops[t.task] is None
                and t.trial_id not in done]
        if todo:
            return todo
    return []


def _episodes_run(plan: Plan, stopped_after_round: int | None) -> int:
    """The episodes per policy a task ran: through its last round, or all of them while undecided."""
    if stopped_after_round is None:
        return plan.episodes
    return min(plan.episodes, (stopped_after_round + 1) * plan.stopping.round_size)


def summary(plan: Plan, key: Mapping[str, Any], records: list[EpisodeRecord], max_attempts: int) -> dict[str, Any]:
    """What results.json reports about the sequential design (names unblinded here, in analysis)."""
    stops = stop_rounds(plan, records, max_attempts)
    label = BlindingKey.of(key).labels
    rs = plan.stopping.round_size
    out: dict[str, Any] = {
        "decision": plan.stopping.decision, "metric": plan.stopping.metric, "alpha": plan.stopping.alpha,
        **({"planned": plan.stopping.to_dict()["planned"]} if plan.stopping.planned else {}),
        "margin": plan.stopping.margin, "round_size": rs, "max_episodes": plan.episodes,
        "tasks": {task: {"stopped_after_round": stops[task], "episodes": _episodes_run(plan, stops[task])}
                  for task in plan.tasks},
    }
    if out["decision"] == "gate":
        out["gate"] = gate_states(plan, records, max_attempts, n_rounds(plan))
        return out
    states = pair_states(plan, records, max_attempts, n_rounds(plan))
    out["pairs"] = [{"task": t, "policy_a": label[a], "policy_b": label[b],
                     **{k: v for k, v in s.items() if k not in ("winner", "equivalent")},
                     "decision": (f"{label[s['winner']]} better" if s["winner"]
                                  else "equivalent" if s.get("equivalent") else "undecided")}
                    for (t, a, b), s in states.items()]
    return out
