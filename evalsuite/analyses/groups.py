"""Algorithms, not checkpoints: policies given the same ``group=`` (the training seeds of one
algorithm) summarized together, and every pair of groups compared on shared initial conditions."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from evalsuite import streams
from evalsuite.analyses import AnalysisInput
from evalsuite.results import Results


def compute(inp: AnalysisInput) -> dict[str, Any] | None:
    """Algorithms rather than checkpoints: policies given the same ``group=`` (training seeds of one
    algorithm) are summarized together, with intervals over training seeds and initial conditions
    (evalsuite/stats/groups.py); every pair of groups is compared on the shared initial conditions.
    Policies without a group stand alone. None when no policy names a group."""
    from evalsuite.stats import groups as gs

    plan, key, codes, options = inp.plan, inp.key, inp.codes, inp.options
    if not any("group" in key[c].params for c in codes):
        return None
    assert options is not None and inp.outcomes is not None, "needs the core analysis's options and outcome cube"
    outcome = inp.outcomes.triples
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

    def rng(*k: int) -> np.random.Generator:
        return streams.generator(inp.seed, streams.GROUPS, *k)

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


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def report(g: dict[str, Any], results: Results) -> list[str]:
    """Algorithms over their training seeds (policies sharing ``group=``)."""
    if "groups" not in g:
        return ["", "### Algorithms (groups of checkpoints)", "", g.get("note", "")]
    level = f"{100 * g['level']:g}%"
    lines = ["", "### Algorithms (groups of checkpoints)", "",
             f"Each group's runs are its checkpoints (training seeds); the {level} intervals cover {g['covers']} "
             f"({g['method']}, {g['reps']} resamples, {g['episodes_per_task']} shared initial conditions per task). "
             "Means and differences of means cover 0.95-1.00 at 3, 5 and 10 runs in simulation (seed spread up to "
             "sd 1 on the logit scale; wider spreads near 0% or 100%: down to 0.90), and are wide with few runs: "
             "the seed spread rests on runs - 1 degrees of freedom. A group of one run covers initial conditions "
             "only. IQM, median, optimality gap and P(X > Y) are bootstrap intervals: with 3 runs read them as "
             "roughly 85% ones (measured for the mean), with 5 or more as ~90%.", "",
             "| group | runs | mean % | IQM % | median % | optimality gap % | policies |", "|---|---|---|---|---|---|---|"]
    for name, grp in g["groups"].items():
        m = grp["metrics"]
        cells = [f"{_pct(m[k]['estimate'])} [{_pct(m[k]['low'])}, {_pct(m[k]['high'])}]"
                 for k in ("mean", "iqm", "median", "optimality_gap")]
        lines.append(f"| {name} | {grp['runs']} | " + " | ".join(cells) + f" | {', '.join(grp['policies'])} |")
    if g["comparisons"]:
        lines += ["", "| X | Y | mean X - mean Y % | P(X > Y) |", "|---|---|---|---|"]
        for c in g["comparisons"]:
            d, q = c["mean_difference"], c["probability_of_improvement"]
            lines.append(f"| {c['x']} | {c['y']} | {_pct(d['estimate'])} [{_pct(d['low'])}, {_pct(d['high'])}] | "
                         f"{q['estimate']:.2f} [{q['low']:.2f}, {q['high']:.2f}] |")
    return lines
