"""Checkpoint selection without selection bias: choose on one set of initial conditions, report on fresh ones.

Picking the best of K checkpoints on the episodes one then reports (the DP3/MP1 "top-5"
protocol, robomimic's best-rollout checkpoint) reports the maximum of K noisy estimates, which is
biased upward even when every checkpoint is equally good. ``select`` runs the K candidates on
the selection initial conditions (seed ``seed``, paired), picks the one with the highest mean
success over tasks, and evaluates only that one on fresh initial conditions (root seed
``fresh_seed``, by default derived from ``seed``; a different root seed gives different initial
conditions). The report shows the naive estimate (the winner's selection score) beside the honest
one (its fresh score, with an interval) and the difference: the optimism of the naive protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evalsuite import fsio, streams
from evalsuite import plan as plan_mod
from evalsuite.errors import UsageError
from evalsuite.harness import evaluate
from evalsuite.request import EvaluateRequest

SELECT_FILE, SUMMARY_FILE = "select.json", "select.md"


def derived_fresh_seed(seed: int) -> int:
    """A root seed for the confirmation run, fixed by ``seed`` and never equal to it."""
    fresh = int(streams.sequence(seed, streams.SELECT_FRESH).generate_state(1)[0])
    return fresh if fresh != seed else fresh + 1


def run_select(base: EvaluateRequest, fresh_seed: int | None = None,
               log: Callable[[str], Any] = print) -> dict[str, Any]:
    """``base`` names the candidates (policies), suite, tasks, episodes and the selection seed."""
    if len(base.policies) < 2:
        raise UsageError("select chooses among candidates: give at least two in policies=[...]")
    fresh = derived_fresh_seed(base.design.seed) if fresh_seed is None else fresh_seed
    if fresh == base.design.seed:
        raise UsageError(f"fresh_seed={fresh} equals seed; the confirmation must use other initial conditions")
    out = base.out
    selection = evaluate(base.replace(out=out / "selection",
                                      tags={**base.tracking.tags, "evalsuite.select": "selection"}), log=log)
    means = {a.policy: a.mean for a in selection.aggregate}
    order = [p.label for p in base.policies]
    chosen_label = max(order, key=lambda label: (means.get(label, -1.0), -order.index(label)))
    chosen = next(p for p in base.policies if p.label == chosen_label)
    log(f"select: chose {chosen_label} ({means[chosen_label]:.3f} on the selection episodes); "
        f"confirming on fresh initial conditions (seed {fresh})")
    confirm = evaluate(base.replace(policies=[chosen], seed=fresh, out=out / "confirmation",
                                    tags={**base.tracking.tags, "evalsuite.select": "confirmation"}), log=log)
    honest = confirm.aggregate[0]
    naive = selection.mean(chosen_label)
    assert naive is not None  # it was chosen for its mean
    per_task = []
    for task in confirm.tasks:
        s, c = selection.task(task, chosen_label), confirm.task(task, chosen_label)
        per_task.append({"task": task, "naive": s.rate, "honest": c.rate, "honest_low": c.ci_low,
                         "honest_high": c.ci_high, "n_selection": s.n, "n_fresh": c.n})
    result = {
        "kind": "select", "suite": selection.suite, "tasks": selection.tasks, "candidates": order,
        "selection_seed": base.design.seed, "fresh_seed": fresh, "chosen": chosen_label,
        "selection_means": means,
        "naive": {"mean": naive.mean, "low": naive.ci_low, "high": naive.ci_high},
        "honest": {"mean": honest.mean, "low": honest.ci_low, "high": honest.ci_high, "level": honest.level},
        "optimism": naive.mean - honest.mean,
        "per_task": per_task,
    }
    plan_mod.write_json(out / SELECT_FILE, result)
    fsio.write_text(out / SUMMARY_FILE, markdown(result))
    return result


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown(result: dict[str, Any]) -> str:
    h = result["honest"]
    lines = [f"# Checkpoint selection on {result['suite']}", "",
             f"Chosen: **{result['chosen']}** among {len(result['candidates'])} candidates (highest mean success on "
             f"the selection initial conditions, seed {result['selection_seed']}); reported on fresh initial "
             f"conditions (seed {result['fresh_seed']}).", "",
             f"- naive estimate (best of {len(result['candidates'])} on the episodes it was chosen on): "
             f"{_pct(result['naive']['mean'])}",
             f"- honest estimate (fresh episodes): {_pct(h['mean'])} [{_pct(h['low'])}, {_pct(h['high'])}] "
             f"({100 * h['level']:g}%)",
             f"- the naive protocol was {100 * result['optimism']:+.1f} points above the honest estimate", "",
             "| candidate | selection mean |", "|---|---|"]
    for label, mean in sorted(result["selection_means"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {label}{' (chosen)' if label == result['chosen'] else ''} | {_pct(mean)} |")
    lines += ["", "| task | naive | honest | honest interval |", "|---|---|---|---|"]
    for r in result["per_task"]:
        lines.append(f"| {r['task']} | {_pct(r['naive'])} | {_pct(r['honest'])} | "
                     f"[{_pct(r['honest_low'])}, {_pct(r['honest_high'])}] |")
    return "\n".join(lines) + "\n"
