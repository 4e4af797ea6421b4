"""Task progress: how far episodes got, not only whether they succeeded.

Suites that report milestones (``StepResult.milestones``, e.g. Meta-World: reached, moved, halfway;
robosuite: reached, grasped, ...) and a progress score in [0, 1] get, per task and policy: the
rate of every milestone with its Wilson interval, the mean progress with a Wilson score interval
at the mean (a score in [0, 1] with mean p has at most the variance p(1 - p) of a success, so the
interval is no narrower than a success rate's; on scores that are all 0 or 1 it is Wilson's
interval itself, with Wilson's coverage - exact at n = 10: 0.914 at p = 0.05, 0.904 at worst over
p = 0.01-0.99, 0.955 on average; unlike a bootstrap it does not collapse when every episode scores
the same), and, per pair of policies on the same initial conditions, the paired difference of
progress with an exact sign-flip permutation test (all 2^n sign patterns up to n = 16 non-zero
differences; 20,000 seeded random patterns beyond).

Failures are sorted into failure modes (``failure_category``, definitions in docs/guide/report.md): policy
error, simulator unstable, reached no milestone, lost a milestone it had reached (e.g. grasped
then dropped), near the goal at the step limit (the task's last milestone still holding), stalled
after a milestone (it still holds, the episode ran out of steps). Each mode gets its rate among
all episodes of a task and policy with a Wilson interval, example trial ids, and, between every two
policies on the same initial conditions, the paired difference of its rate (exact McNemar test on
the mode's indicator, Newcombe's interval, Holm across the section's tests).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evalsuite import streams
from evalsuite.analyses import AnalysisInput
from evalsuite.journal import EpisodeRecord
from evalsuite.results import Results
from evalsuite.stats.intervals import proportion_interval, wilson_bounds
from evalsuite.stats.multiple import adjust_pvalues
from evalsuite.stats.over_tasks import mean_over_tasks
from evalsuite.stats.paired import paired_comparison

EXACT_UP_TO = 16  # non-zero paired differences enumerated exactly (2^16 sign patterns)
RANDOM_FLIPS = 20_000
EXAMPLES = 3  # trial ids kept per failure category


def sign_flip_p_value(differences: NDArray[np.float64], rng: np.random.Generator) -> tuple[float, str]:
    """Two-sided p-value of mean difference 0 under exchangeable signs (the paired permutation test).
    Exact over all sign patterns of the non-zero differences up to EXACT_UP_TO of them."""
    d = differences[differences != 0]
    if d.size == 0:
        return 1.0, "exact sign-flip"
    observed = abs(d.sum())
    if d.size <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        sums = np.abs(signs @ d)
        return float(np.mean(sums >= observed - 1e-12)), "exact sign-flip"
    signs = rng.choice((1.0, -1.0), size=(RANDOM_FLIPS, d.size))
    sums = np.abs(signs @ d)
    return float((1 + np.sum(sums >= observed - 1e-12)) / (RANDOM_FLIPS + 1)), f"sign-flip ({RANDOM_FLIPS} random)"


def progress_interval(progress: NDArray[np.float64], level: float) -> tuple[float, float]:
    """Wilson's interval at the summed scores: conservative for scores spread inside [0, 1], exactly
    Wilson's (and its coverage, below nominal at some p) for 0/1 scores - see the module doc."""
    low, high = wilson_bounds(progress.sum(), len(progress), level=level)
    return float(low), float(high)


POLICY_ERROR = "policy error"
UNSTABLE = "simulator unstable"
# Reasons the runner gives when the simulator breaks on the policy's action (and older journals' one).
_SIMULATOR_REASONS = ("simulator unstable", "simulator failed", "simulator error:")
NO_MILESTONE = "reached no milestone"
NEAR_GOAL = "near the goal at the step limit"


def failure_category(record: EpisodeRecord, max_steps: int | None = None) -> str:
    """A failed episode's failure mode, from how it ended and its milestones (in the suite's order).

    ``lost '<m>'``: the furthest milestone it reached no longer held at the end (a dropped grasp);
    ``near the goal at the step limit``: the task's last milestone still held when the steps ran
    out; ``stalled after '<m>'``: the furthest milestone still held at the end. Journals written
    before milestones' end states were recorded give ``stopped after '<m>'``."""
    if record.status == "policy_error":
        return UNSTABLE if record.reason.startswith(_SIMULATOR_REASONS) else POLICY_ERROR
    order = list(record.milestones)
    reached = [name for name in order if record.milestones[name] is not None]
    if not reached:
        return NO_MILESTONE
    furthest = reached[-1]
    held = getattr(record, "held_at_end", None)
    if held is None:
        return f"stopped after '{furthest}'"
    if furthest not in held:
        return f"lost '{furthest}'"
    if furthest == order[-1] and (max_steps is None or record.steps >= max_steps):
        return NEAR_GOAL
    return f"stalled after '{furthest}'"


def compute(inp: AnalysisInput) -> dict[str, Any] | None:
    with_progress = {r.task for r in inp.records if r.progress is not None}
    if not with_progress:
        return None
    # An episode that ended before its first step (a policy that raised at once, a reset that
    # failed) has no progress recorded: it got nowhere, and it counts.
    records = [r if r.progress is not None else dataclasses.replace(r, progress=0.0)
               for r in inp.records if r.is_outcome and r.task in with_progress]
    rng = streams.generator(inp.seed, streams.PROGRESS)
    level = inp.level
    cells: dict[tuple[str, str], list[Any]] = {}
    for r in records:
        cells.setdefault((r.task, r.policy_code), []).append(r)
    mode = {r.trial_id: failure_category(r, inp.plan.max_steps.get(r.task)) for r in records if not r.success}
    per_cell = []
    for (task, code), rows in sorted(cells.items(), key=lambda kv: (kv[0][0], inp.label[kv[0][1]])):
        # in ascending order: sums of floats do not depend on the order the episodes finished in
        progress = np.sort(np.array([r.progress for r in rows], dtype=float))
        low, high = progress_interval(progress, level)
        names = list(dict.fromkeys(name for r in rows for name in r.milestones))
        milestones = {}
        for name in names:
            k = sum(1 for r in rows if r.milestones.get(name) is not None)
            ci = proportion_interval(k, len(rows), level=level, method="wilson")
            milestones[name] = {"k": k, "n": len(rows), "rate": k / len(rows), "low": ci.low, "high": ci.high}
        failures: dict[str, list[str]] = {}
        for r in rows:
            if not r.success:
                failures.setdefault(mode[r.trial_id], []).append(r.trial_id)
        per_cell.append({
            "task": task, "policy": inp.label[code], "episodes": len(rows),
            "progress": {"mean": float(progress.mean()), "low": float(low), "high": float(high),
                         "method": "Wilson score at the mean (conservative for scores in [0, 1])"},
            "milestones": milestones,
            "failures": {c: _mode_rate(len(ids), len(rows), sorted(ids)[:EXAMPLES], level)
                         for c, ids in sorted(failures.items(), key=lambda kv: (-len(kv[1]), kv[0]))},
        })
    pairs = []
    codes = sorted({code for _, code in cells}, key=lambda c: inp.label[c])  # A and B in name order
    for task in sorted({t for t, _ in cells}):
        for a, b in itertools.combinations(codes, 2):
            by_ic = {side: {r.ic_index: r.progress for r in cells.get((task, side), [])} for side in (a, b)}
            shared = sorted(set(by_ic[a]) & set(by_ic[b]))
            if not shared:
                continue
            d = np.array([by_ic[a][i] - by_ic[b][i] for i in shared])
            p, method = sign_flip_p_value(d, rng)
            pairs.append({"task": task, "policy_a": inp.label[a], "policy_b": inp.label[b], "pairs": len(shared),
                          "difference": float(d.mean()), "p_value": p, "method": method})
    out = {"level": level, "per_task": per_cell, "paired": pairs,
           "failure_pairs": _failure_pairs(cells, codes, inp.label, mode, level)}
    tasks = sorted({t for t, _ in cells})
    if len(tasks) >= 2:
        out["over_tasks"] = _over_tasks(cells, codes, tasks, inp.label, level)
    return out


def _over_tasks(cells: dict[tuple[str, str], list[Any]], codes: list[str], tasks: list[str], label: dict[str, str],
                level: float) -> list[dict[str, Any]]:
    """Each policy's mean over tasks of its mean progress, with the score interval of the mean over
    tasks (``stats.over_tasks``) given each task's summed progress as its "successes": for one task
    that is the Wilson interval at the mean used above, and by the same variance bound it is
    conservative for scores in [0, 1]."""
    rows = []
    for code in codes:
        if not all(cells.get((t, code)) for t in tasks):
            continue
        sums = [sum(sorted(r.progress for r in cells[t, code])) for t in tasks]  # order-free, as above
        n = [len(cells[t, code]) for t in tasks]
        ci = mean_over_tasks(sums, n, level=level)
        rows.append({"policy": label[code], "tasks": len(tasks), "mean": ci.estimate, "low": ci.low,
                     "high": ci.high})
    return rows


def _mode_rate(k: int, n: int, examples: list[str], level: float) -> dict[str, Any]:
    ci = proportion_interval(k, n, level=level, method="wilson")
    return {"count": k, "episodes": n, "rate": k / n, "low": ci.low, "high": ci.high, "examples": examples}


def _failure_pairs(cells: dict[tuple[str, str], list[Any]], codes: list[str], label: dict[str, str],
                   mode_of: dict[str, str], level: float) -> list[dict[str, Any]]:
    """Per task, pair of policies and failure mode seen in either: the paired difference of the
    mode's rate on the shared initial conditions (exact McNemar, Newcombe), Holm-adjusted."""
    rows: list[dict[str, Any]] = []
    for task in sorted({t for t, _ in cells}):
        for a, b in itertools.combinations(codes, 2):
            mode = {side: {r.ic_index: mode_of.get(r.trial_id) for r in cells.get((task, side), [])}
                    for side in (a, b)}
            shared = sorted(set(mode[a]) & set(mode[b]))
            for category in sorted({m for side in (a, b) for i in shared if (m := mode[side][i]) is not None}):
                x = np.array([mode[a][i] == category for i in shared])
                y = np.array([mode[b][i] == category for i in shared])
                c = paired_comparison(x, y, level=level)
                rows.append({"task": task, "policy_a": label[a], "policy_b": label[b], "failure": category,
                             "pairs": len(shared), "a_count": int(x.sum()), "b_count": int(y.sum()),
                             "difference": float(c.difference), "low": c.ci_low, "high": c.ci_high,
                             "p_value": c.p_value})
    for row, p in zip(rows, adjust_pvalues([r["p_value"] for r in rows], "holm") if rows else [], strict=False):
        row["p_holm"] = float(p)
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def report(section: dict[str, Any], results: Results) -> list[str]:
    lines = ["", "## Task progress", "",
             f"Progress in [0, 1]: the furthest milestone an episode reached as a share of the task's stages "
             f"(success = 1). Mean progress with a {100 * section['level']:g}% Wilson score interval (conservative "
             "for scores in [0, 1]); "
             "milestone rates with Wilson intervals (episodes only).", "",
             "| task | policy | episodes | mean progress | milestones (rate %) |", "|---|---|---|---|---|"]
    for c in section["per_task"]:
        p = c["progress"]
        stones = "; ".join(f"{name} {_pct(m['rate'])} [{_pct(m['low'])}, {_pct(m['high'])}]"
                           for name, m in c["milestones"].items())
        lines.append(f"| {c['task']} | {c['policy']} | {c['episodes']} | {p['mean']:.3f} [{p['low']:.3f}, "
                     f"{p['high']:.3f}] | {stones} |")
    if section.get("over_tasks"):
        lines += ["", "Mean progress over tasks (score interval of the mean over tasks, conservative for scores):",
                  "", "| policy | tasks | mean progress |", "|---|---|---|"]
        for m in section["over_tasks"]:
            lines.append(f"| {m['policy']} | {m['tasks']} | {m['mean']:.3f} [{m['low']:.3f}, {m['high']:.3f}] |")
    if section["paired"]:
        lines += ["", "Paired differences of progress on the same initial conditions (sign-flip permutation test):",
                  "", "| task | A | B | pairs | mean A - B | p | method |", "|---|---|---|---|---|---|---|"]
        for q in section["paired"]:
            lines.append(f"| {q['task']} | {q['policy_a']} | {q['policy_b']} | {q['pairs']} | {q['difference']:+.3f} "
                         f"| {q['p_value']:.3g} | {q['method']} |")
    rows = [(c["task"], c["policy"], cat, f) for c in section["per_task"] for cat, f in c["failures"].items()]
    if rows:
        lines += ["", "### Failure modes", "",
                  "How the failures failed (definitions in the README): each mode's share of all the episodes of a "
                  f"task and policy with a {100 * section['level']:g}% Wilson interval; examples are trial ids "
                  "(their videos, where rendered, are captioned with the mode).", "",
                  "| task | policy | failure mode | episodes | rate % | examples |", "|---|---|---|---|---|---|"]
        for task, policy, cat, f in rows:
            share = (f"{_pct(f['rate'])} [{_pct(f['low'])}, {_pct(f['high'])}]" if "rate" in f else "")
            count = f"{f['count']} / {f['episodes']}" if "episodes" in f else str(f["count"])
            lines.append(f"| {task} | {policy} | {cat} | {count} | {share} | {', '.join(f['examples'])} |")
    if section.get("failure_pairs"):
        lines += ["", "Paired differences of each failure mode's rate on the same initial conditions (exact McNemar, "
                  "Newcombe interval, Holm across these tests):", "",
                  "| task | A | B | failure mode | A | B | A - B % | interval % | p (Holm) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for q in section["failure_pairs"]:
            lines.append(f"| {q['task']} | {q['policy_a']} | {q['policy_b']} | {q['failure']} | {q['a_count']} | "
                         f"{q['b_count']} | {100 * q['difference']:+.1f} | [{_pct(q['low'])}, {_pct(q['high'])}] | "
                         f"{q['p_holm']:.3g}{' **significant**' if q['p_holm'] < 1 - section['level'] else ''} |")
    return lines


def metrics(section: dict[str, Any]) -> dict[str, float]:
    out = {}
    for c in section["per_task"]:
        out[f"{c['policy']}/{c['task']}/progress"] = c["progress"]["mean"]
        for name, m in c["milestones"].items():
            out[f"{c['policy']}/{c['task']}/milestone/{name}"] = m["rate"]
        for mode, f in c["failures"].items():
            if "rate" in f:
                out[f"{c['policy']}/{c['task']}/failure/{mode}"] = f["rate"]
    for m in section.get("over_tasks", []):
        out[f"{m['policy']}/progress_mean_over_tasks"] = m["mean"]
    return out
