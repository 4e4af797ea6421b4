"""Sequential stopping (evalsuite/sequential.py): each pair's anytime-valid decision, or a
sequential gate's verdicts, with the episodes each task took."""

from __future__ import annotations

from typing import Any

from evalsuite.analyses import AnalysisInput
from evalsuite.results import Results


def compute(inp: AnalysisInput) -> dict[str, Any] | None:
    from evalsuite import sequential

    if not inp.plan.stopping.sequential:
        return None
    assert inp.options is not None, "needs the core analysis's options (analysis.analyze passes them)"
    return sequential.summary(inp.plan, inp.key, inp.all_records, inp.options.max_attempts)


def report(seq: dict[str, Any], results: Results) -> list[str]:
    if seq.get("decision") == "gate":
        lines = ["", f"### Sequential gate (anytime-valid, alpha {seq['alpha']:g} over tasks and looks, "
                 f"margin {seq['margin']:g})", "", "| task | pairs | verdict | episodes |", "|---|---|---|---|"]
        for task, g in seq["gate"].items():
            lines.append(f"| {task} | {g['pairs']} | {g['verdict']} | {seq['tasks'][task]['episodes']} of "
                         f"{seq['max_episodes']} |")
        return lines
    margin = f", margin {seq['margin']:g} for equivalence" if seq.get("margin") else ""
    if seq.get("planned"):
        p0, delta = seq["planned"]["p_baseline"], seq["planned"]["delta"]
        margin += f", bets tuned to the planned {p0:g} vs {p0 + delta:g}"
    lines = ["", f"### Sequential decisions (anytime-valid, alpha {seq['alpha']:g} over all pairs and looks{margin})",
             "", "With early stopping, the McNemar p-values above are descriptive; these decisions are the "
             "valid ones.", "",
             "| task | A | B | A wins | B wins | pairs | log e-value | decision | episodes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for q in seq["pairs"]:
        lines.append(f"| {q['task']} | {q['policy_a']} | {q['policy_b']} | {q['a_wins']} | {q['b_wins']} | "
                     f"{q['pairs']} | {q['log_e']:.2f} | {q['decision']} | "
                     f"{seq['tasks'][q['task']]['episodes']} of {seq['max_episodes']} |")
    return lines


def tags(seq: dict[str, Any]) -> dict[str, str]:
    """MLflow tags: each pair's decision, or each task's gate verdict."""
    out = {f"sequential.{p['task']}.{p['policy_a']}_vs_{p['policy_b']}": p["decision"] for p in seq.get("pairs", [])}
    out.update({f"sequential.{task}.gate": gate["verdict"] for task, gate in seq.get("gate", {}).items()})
    return out
