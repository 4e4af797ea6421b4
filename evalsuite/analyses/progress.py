"""Task progress: how far episodes got, not only whether they succeeded.

Suites that report milestones (``StepResult.milestones``, e.g. Meta-World: reached, moved, halfway;
robosuite: reached, grasped, ...) and a progress score in [0, 1] get, per task and policy: the
rate of every milestone with its Wilson interval, the mean progress with a Wilson score interval
at the mean (a score in [0, 1] with mean p has at most the variance p(1 - p) of a success, so the
interval is conservative, and unlike a bootstrap it does not collapse when every episode scores
the same), and, per pair of policies on the same initial conditions, the paired difference of
progress with an exact sign-flip permutation test (all 2^n sign patterns up to n = 16 non-zero
differences; 20,000 seeded random patterns beyond). Failures are sorted into a taxonomy by the
furthest milestone they reached (or by their policy error), with example trial ids.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from evalsuite.analyses import AnalysisInput
from evalsuite.stats.intervals import proportion_interval, wilson_bounds

EXACT_UP_TO = 16  # non-zero paired differences enumerated exactly (2^16 sign patterns)
RANDOM_FLIPS = 20_000
EXAMPLES = 3  # trial ids kept per failure category


def sign_flip_p_value(differences: np.ndarray, rng: np.random.Generator) -> tuple[float, str]:
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


def progress_interval(progress: np.ndarray, level: float) -> tuple[float, float]:
    low, high = wilson_bounds(progress.sum(), len(progress), level=level)
    return float(low), float(high)


def failure_category(record: Any) -> str:
    """A failed episode's category: its policy error, or the furthest milestone it reached."""
    if record.status == "policy_error":
        return "policy error"
    reached = [name for name, step in record.milestones.items() if step is not None]
    order = list(record.milestones)  # in the suite's order
    if not reached:
        return "reached no milestone"
    return f"stopped after '{max(reached, key=order.index)}'"


def compute(inp: AnalysisInput) -> dict[str, Any] | None:
    records = [r for r in inp.records if r.is_outcome and r.progress is not None]
    if not records:
        return None
    rng = np.random.default_rng(np.random.SeedSequence(inp.seed, spawn_key=(21,)))
    level = inp.level
    cells: dict[tuple[str, str], list[Any]] = {}
    for r in records:
        cells.setdefault((r.task, r.policy_code), []).append(r)
    per_cell = []
    for (task, code), rows in sorted(cells.items(), key=lambda kv: (kv[0][0], inp.label[kv[0][1]])):
        progress = np.array([r.progress for r in rows], dtype=float)
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
                failures.setdefault(failure_category(r), []).append(r.trial_id)
        per_cell.append({
            "task": task, "policy": inp.label[code], "episodes": len(rows),
            "progress": {"mean": float(progress.mean()), "low": float(low), "high": float(high),
                         "method": "Wilson score at the mean (conservative for scores in [0, 1])"},
            "milestones": milestones,
            "failures": {c: {"count": len(ids), "examples": sorted(ids)[:EXAMPLES]}
                         for c, ids in sorted(failures.items(), key=lambda kv: -len(kv[1]))},
        })
    pairs = []
    codes = sorted({code for _, code in cells})
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
    return {"level": level, "per_task": per_cell, "paired": pairs}


def report(section: dict[str, Any], results: dict[str, Any]) -> list[str]:
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = ["", "## Task progress", "",
             f"Progress in [0, 1]: the furthest milestone an episode reached as a share of the task's stages "
             f"(success = 1). Mean progress with a {100 * section['level']:g}% Wilson score interval (conservative "
             "for scores in [0, 1]); "
             "milestone rates with Wilson intervals (episodes only).", "",
             "| task | policy | episodes | mean progress | milestones (rate %) |", "|---|---|---|---|---|"]
    for c in section["per_task"]:
        p = c["progress"]
        stones = "; ".join(f"{name} {pct(m['rate'])} [{pct(m['low'])}, {pct(m['high'])}]"
                           for name, m in c["milestones"].items())
        lines.append(f"| {c['task']} | {c['policy']} | {c['episodes']} | {p['mean']:.3f} [{p['low']:.3f}, "
                     f"{p['high']:.3f}] | {stones} |")
    if section["paired"]:
        lines += ["", "Paired differences of progress on the same initial conditions (sign-flip permutation test):",
                  "", "| task | A | B | pairs | mean A - B | p | method |", "|---|---|---|---|---|---|---|"]
        for q in section["paired"]:
            lines.append(f"| {q['task']} | {q['policy_a']} | {q['policy_b']} | {q['pairs']} | {q['difference']:+.3f} "
                         f"| {q['p_value']:.3g} | {q['method']} |")
    rows = [(c["task"], c["policy"], cat, f) for c in section["per_task"] for cat, f in c["failures"].items()]
    if rows:
        lines += ["", "How the failures failed (furthest milestone reached; examples are trial ids):", "",
                  "| task | policy | failure | count | examples |", "|---|---|---|---|---|"]
        for task, policy, cat, f in rows:
            lines.append(f"| {task} | {policy} | {cat} | {f['count']} | {', '.join(f['examples'])} |")
    return lines


def metrics(section: dict[str, Any]) -> dict[str, float]:
    out = {}
    for c in section["per_task"]:
        out[f"{c['policy']}/{c['task']}/progress"] = c["progress"]["mean"]
        for name, m in c["milestones"].items():
            out[f"{c['policy']}/{c['task']}/milestone/{name}"] = m["rate"]
    return out
