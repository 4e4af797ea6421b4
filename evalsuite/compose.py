"""``evalsuite compose``: GPC's weight search, done fairly.

The weight of a two-member composition is chosen on one set of initial conditions (every weight of
the grid, and the two members alone as weights 1 and 0, paired on the same episodes) and the
chosen composition is then run on fresh initial conditions together with both members, paired, so
"does the composition beat both members" is answered by paired tests on episodes that played no
part in the choice. (The public GPC code picks the weight on the episodes it reports.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalsuite import fsio
from evalsuite import plan as plan_mod
from evalsuite.errors import UsageError
from evalsuite.harness import evaluate
from evalsuite.plan import PolicyEntry
from evalsuite.request import EvaluateRequest
from evalsuite.select import derived_fresh_seed

COMPOSE_FILE, SUMMARY_FILE = "compose.json", "compose.md"


def member_entry(member: str) -> PolicyEntry:
    family, _, checkpoint = member.partition("@")
    return PolicyEntry(family, {"checkpoint": checkpoint} if checkpoint else {})


def run_compose(base: EvaluateRequest, members: list[str], weights: list[float], *, fresh_episodes: int,
                fresh_seed: int | None = None, gpc_params: dict[str, Any] | None = None,
                log: Callable[[str], Any] = print) -> dict[str, Any]:
    if len(members) != 2:
        raise UsageError(f"members={members}: compose searches the weight between two members")
    if any(not 0 < w < 1 for w in weights):
        raise UsageError(f"weights={weights}: give weights strictly between 0 and 1 (the members alone are "
                         "always run as weights 1 and 0)")
    fresh = derived_fresh_seed(base.design.seed) if fresh_seed is None else fresh_seed
    a, b = (member_entry(m) for m in members)
    composed = {w: PolicyEntry("gpc", {"members": "+".join(members), "w": w, **(gpc_params or {})})
                for w in sorted(weights)}
    candidates = {1.0: a, **{w: composed[w] for w in sorted(weights, reverse=True)}, 0.0: b}
    out = base.out
    selection = evaluate(base.replace(policies=list(candidates.values()), out=out / "selection",
                                      tags={**base.tracking.tags, "evalsuite.compose": "selection"}), log=log)
    agg = {r.policy: r for r in selection.aggregate}
    curve = [{"w": w, "label": e.label, "mean": agg[e.label].mean, "low": agg[e.label].ci_low,
              "high": agg[e.label].ci_high} for w, e in sorted(candidates.items())]
    best_w = max(weights, key=lambda w: (agg[composed[w].label].mean, -abs(w - 0.5)))
    chosen = composed[best_w]
    log(f"compose: chose w={best_w} on the selection episodes; confirming with both members on fresh initial "
        f"conditions (seed {fresh})")
    confirm = evaluate(base.replace(policies=[chosen, a, b], seed=fresh, episodes=fresh_episodes,
                                    out=out / "confirmation",
                                    tags={**base.tracking.tags, "evalsuite.compose": "confirmation"}), log=log)
    tests: list[dict[str, Any]] = []
    for member in (a, b):
        for p, sign in confirm.pairs_of(chosen.label, member.label):
            if p.difference is not None:
                tests.append({"task": p.task, "member": member.label, "difference": sign * p.difference,
                              "low": p.ci_low if sign > 0 else -p.ci_high,
                              "high": p.ci_high if sign > 0 else -p.ci_low,
                              "p_adjusted": p.p_adjusted, "significant": p.significant})
    beats = all(t["significant"] and t["difference"] > 0 for t in tests)
    result = {"kind": "compose", "suite": selection.suite, "tasks": selection.tasks, "members": members,
              "selection_seed": base.design.seed, "fresh_seed": fresh, "curve": curve, "chosen_w": best_w,
              "chosen": chosen.label,
              "fresh": {r.policy: {"mean": r.mean, "low": r.ci_low, "high": r.ci_high} for r in confirm.aggregate},
              "paired_tests": tests, "beats_both_members": beats}
    plan_mod.write_json(out / COMPOSE_FILE, result)
    _figure(result, out / "compose.png")
    fsio.write_text(out / SUMMARY_FILE, markdown(result))
    return result


def _figure(result: dict[str, Any], path: Path) -> None:
    from evalsuite.plotting import subplots

    ws = [c["w"] for c in result["curve"]]
    means = [c["mean"] for c in result["curve"]]
    fig, ax = subplots(figsize=(5, 3.2))
    ax.errorbar(ws, means, yerr=[[m - c["low"] for m, c in zip(means, result["curve"], strict=False)],
                                 [c["high"] - m for m, c in zip(means, result["curve"], strict=False)]],
                fmt="o-", capsize=3, label="selection episodes")
    f = result["fresh"][result["chosen"]]
    ax.errorbar([result["chosen_w"]], [f["mean"]], yerr=[[f["mean"] - f["low"]], [f["high"] - f["mean"]]],
                fmt="s", color="C3", capsize=3, label="chosen, fresh episodes")
    ax.set_xlabel(f"weight of {result['members'][0]} (1 - w on {result['members'][1]})")
    ax.set_ylabel("success (mean over tasks)")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=8)
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# GPC composition of {' and '.join(result['members'])} on {result['suite']}", "",
             f"Weight chosen on the selection initial conditions (seed {result['selection_seed']}): "
             f"**w = {result['chosen_w']:g}**; reported with both members on fresh initial conditions "
             f"(seed {result['fresh_seed']}), paired.", "",
             "| w | policy | selection success % [95% interval] |", "|---|---|---|"]
    for c in result["curve"]:
        lines.append(f"| {c['w']:g} | {c['label']} | {_pct(c['mean'])} [{_pct(c['low'])}, {_pct(c['high'])}] |")
    lines += ["", "| fresh episodes | success % [95% interval] |", "|---|---|"]
    for label, r in result["fresh"].items():
        lines.append(f"| {label} | {_pct(r['mean'])} [{_pct(r['low'])}, {_pct(r['high'])}] |")
    lines += ["", "| task | composition - member | difference % | interval % | p (Holm) | |", "|---|---|---|---|---|---|"]
    for t in result["paired_tests"]:
        lines.append(f"| {t['task']} | - {t['member']} | {100 * t['difference'] + 0.0:+.1f} | [{_pct(t['low'])}, "
                     f"{_pct(t['high'])}] | {t['p_adjusted']:.3g} | {'significant' if t['significant'] else ''} |")
    lines += ["", f"Beats both members (significant paired improvement over each, every task): "
                  f"**{'yes' if result['beats_both_members'] else 'no'}**", "", "![weight curve](compose.png)"]
    return "\n".join(lines) + "\n"
