"""Sequential early stopping of a run: paired episodes in rounds, a task stops once decided.

With ``stopping=sequential``, the plan's initial conditions (up to ``max_episodes`` per task) are
run in rounds of ``round_size``. After each round, every pair of policies on a task is tested with
the anytime-valid e-process of ``evalsuite.stats.sequential`` at level alpha / m, m = all pairs of
the run (Bonferroni: the error is controlled over every pair and every look). A task whose pairs
are all decided runs no further rounds. Decisions are a function of the journal's completed
rounds only, so a resumed run makes exactly the same decisions as an uninterrupted one.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from evalsuite.journal import EpisodeRecord, finished_trials
from evalsuite.plan import Plan, Trial
from evalsuite.stats.sequential import log_e_value


def round_of(trial: Trial, plan: Plan) -> int:
    return trial.ic_index // plan.stopping["round_size"]


def n_rounds(plan: Plan) -> int:
    return math.ceil(plan.episodes / plan.stopping["round_size"])


def pair_states(plan: Plan, records: list[EpisodeRecord], max_attempts: int, through_round: int) -> dict:
    """(task, code_a, code_b) -> {"a_wins", "b_wins", "pairs", "log_e", "winner"} on rounds <= through_round;
    winner is a code, or None while undecided."""
    rs = plan.stopping["round_size"]
    outcome = {(r.task, r.policy_code, r.ic_index): r.success
               for r in finished_trials(records, max_attempts).values()
               if r.is_outcome and r.ic_index // rs <= through_round}
    pairs = list(itertools.combinations(sorted(plan.codes), 2))
    threshold = math.log(len(plan.tasks) * len(pairs) / plan.stopping["alpha"])
    states = {}
    for task in plan.tasks:
        for a, b in pairs:
            shared = [i for (t, c, i) in outcome if t == task and c == a and (task, b, i) in outcome]
            a_wins = sum(outcome[task, a, i] and not outcome[task, b, i] for i in shared)
            b_wins = sum(outcome[task, b, i] and not outcome[task, a, i] for i in shared)
            log_e = float(log_e_value(a_wins, b_wins))
            winner = None if log_e < threshold else (a if a_wins > b_wins else b)
            states[task, a, b] = {"a_wins": a_wins, "b_wins": b_wins, "pairs": len(shared), "log_e": log_e,
                                  "winner": winner}
    return states


def stop_rounds(plan: Plan, records: list[EpisodeRecord], max_attempts: int) -> dict[str, int | None]:
    """task -> the last round it runs (decided after it), or None while undecided."""
    stops: dict[str, int | None] = {task: None for task in plan.tasks}
    done = finished_trials(records, max_attempts)
    for r in range(n_rounds(plan)):
        round_trials = [t for t in plan.trials if round_of(t, plan) == r and stops[t.task] is None]
        if any(t.trial_id not in done for t in round_trials):
            break  # decisions use completed rounds only
        states = pair_states(plan, records, max_attempts, r)
        for task in plan.tasks:
            if stops[task] is None and all(s["winner"] for (t, *_), s in states.items() if t == task):
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


def summary(plan: Plan, key: dict[str, dict], records: list[EpisodeRecord], max_attempts: int) -> dict[str, Any]:
    """What results.json reports about the sequential design (names unblinded here, in analysis)."""
    stops = stop_rounds(plan, records, max_attempts)
    states = pair_states(plan, records, max_attempts, n_rounds(plan))
    label = {c: v["label"] for c, v in key.items()}
    rs = plan.stopping["round_size"]
    return {
        "alpha": plan.stopping["alpha"], "round_size": rs, "max_episodes": plan.episodes,
        "tasks": {task: {"stopped_after_round": stops[task],
                         "episodes": (stops[task] + 1) * rs if stops[task] is not None else plan.episodes}
                  for task in plan.tasks},
        "pairs": [{"task": t, "policy_a": label[a], "policy_b": label[b],
                   **{k: v for k, v in s.items() if k != "winner"},
                   "decision": f"{label[s['winner']]} better" if s["winner"] else "undecided"}
                  for (t, a, b), s in states.items()],
    }
