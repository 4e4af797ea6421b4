"""Family runs: what an evaluation of an MDP family reports, and the worst-case search.

``analyze_family`` turns the episodes of a family run (each carries its MDP index and parameters)
into, per policy: the nominal rate, the family mean with a two-level (Korn-Graubard) interval, the
10th-percentile MDP, one logistic fit of success on all varied axes jointly with MDP-clustered
errors (a curve per axis, the others at mid-range), and, per pair of policies, on how many MDPs the
nominal order is credibly reversed (methods: ``evalsuite/stats/family.py``).

The worst-case search (``evalsuite_suites.families.worst_case``, the family suite's own: it needs the
family's axes to turn unit-cube points into MDPs) searches the varied axes for the parameters that minimize a policy's success: the
cross-entropy method over the unit cube of the axes, each candidate run for a few episodes. The
lowest-scoring candidate is optimistic by construction (it won a noisy minimum), so it is re-run
on fresh initial conditions and that figure is the one reported; a plain grid of the same episode
budget goes through the same steps, for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.stats import family as fstats
from evalsuite.stats.intervals import proportion_interval

WORST_CASE_FILE = "worst_case.json"


@dataclass(frozen=True)
class AxisDescription:
    name: str
    low: float
    high: float
    log: bool
    nominal: float
    kind: str = ""
    unit: str = ""


@dataclass(frozen=True)
class FamilyDescription:
    """An MDP family as the analysis needs it: recorded in the plan from ``SuiteSpec.family``, so
    a run folder is analysed without the suite's plugin."""

    id: str
    axes: tuple[AxisDescription, ...]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FamilyDescription:
        return cls(d["id"], tuple(AxisDescription(a["name"], float(a["low"]), float(a["high"]), bool(a["log"]),
                                                  float(a["nominal"]), a.get("kind", ""), a.get("unit", ""))
                                  for a in d["axes"]))

    @property
    def nominal(self) -> dict[str, float]:
        return {a.name: a.nominal for a in self.axes}


def family_of(plan) -> FamilyDescription | None:
    """The family a run evaluated, from its plan; plans written before families were recorded there
    fall back to the installed suite's description (None when it is not installed)."""
    if plan.family:
        return FamilyDescription.from_dict(plan.family)
    from evalsuite import registry
    from evalsuite.errors import UsageError

    try:
        described = registry.suites.get(plan.suite).family
    except UsageError:
        return None
    return FamilyDescription.from_dict(described) if described else None


def mdp_table(records, label: dict[str, str]) -> dict[str, dict[int, dict]]:
    """policy -> MDP index -> {params, k, n, outcomes (ic_index -> success)} from final records."""
    out: dict[str, dict[int, dict]] = {}
    for r in records:
        if not r.is_outcome or "mdp" not in r.init_state:
            continue
        cell = out.setdefault(label[r.policy_code], {}).setdefault(
            int(r.init_state["mdp"]), {"params": r.init_state["params"], "k": 0, "n": 0, "outcomes": {}})
        cell["k"] += int(r.success)
        cell["n"] += 1
        cell["outcomes"][r.ic_index] = bool(r.success)
    return out


def analyze_family(spec, plan_seed: int, records, label: dict[str, str], level: float) -> dict[str, Any]:
    table = mdp_table(records, label)
    nominal = spec.nominal
    all_params = [c["params"] for cells in table.values() for c in cells.values()]
    varied = [a for a in spec.axes if len({p[a.name] for p in all_params}) > 1]
    policies: dict[str, Any] = {}
    rng = np.random.default_rng(np.random.SeedSequence(plan_seed, spawn_key=(12,)))
    for policy, cells in sorted(table.items()):
        nominal_ids = [i for i, c in cells.items() if c["params"] == nominal]
        sampled = sorted(i for i in cells if i not in nominal_ids)
        entry: dict[str, Any] = {"mdps": len(sampled), "episodes": sum(c["n"] for c in cells.values())}
        if nominal_ids:
            k, n = sum(cells[i]["k"] for i in nominal_ids), sum(cells[i]["n"] for i in nominal_ids)
            ci = proportion_interval(k, n, level=level, method="wilson")
            entry["nominal"] = {"k": k, "n": n, "rate": k / n, "low": ci.low, "high": ci.high}
        if sampled:
            k = np.array([cells[i]["k"] for i in sampled])
            n = np.array([cells[i]["n"] for i in sampled])
            entry["family_mean"] = vars_of(fstats.family_mean(k, n, level))
            entry["p10"] = vars_of(fstats.family_percentile(k, n, 0.10, level, rng=rng))
            worst = sampled[int(np.argmin(k / n))]
            entry["worst_sampled"] = {"mdp": worst, "rate": cells[worst]["k"] / cells[worst]["n"],
                                      "params": cells[worst]["params"]}
            if varied:
                params = np.array([[cells[i]["params"][a.name] for a in varied] for i in sampled], dtype=float)
                scales = [fstats.AxisScale(a.name, a.low, a.high, a.log) for a in varied]
                entry["curves"] = [vars_of(c) for c in fstats.family_curves(params, k, n, scales, level)]
            else:
                entry["curves"] = []
        entry["per_mdp"] = [{"mdp": i, "k": c["k"], "n": c["n"], "params": c["params"]} for i, c in sorted(cells.items())]
        policies[policy] = entry
    reversals = []
    names = sorted(table)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            na, nb = policies[a].get("nominal"), policies[b].get("nominal")
            shared = sorted(set(table[a]) & set(table[b]) - {m for m in table[a] if table[a][m]["params"] == nominal})
            if not (na and nb and shared):
                continue
            (ka, n_a), (kb, n_b) = (np.array([[table[p][m]["k"], table[p][m]["n"]] for m in shared]).T for p in (a, b))
            reversals.append({"a": a, "b": b, **fstats.rank_reversal(ka, n_a, kb, n_b, na["rate"], nb["rate"])})
    return {"family": spec.id, "level": level,
            "axes": [{"name": a.name, "kind": a.kind, "low": a.low, "high": a.high, "nominal": a.nominal,
                      "log": a.log, "unit": a.unit} for a in varied],
            "policies": policies, "rank_reversals": reversals}


def vars_of(obj) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


# ------------------------------------------------------------------------------------ worst case

def cem_minimize(score, dims: int, *, generations: int = 4, population: int = 8, elite_frac: float = 0.25,
                 rng: np.random.Generator, init_std: float = 0.35, min_std: float = 0.05) -> list[dict]:
    """Cross-entropy minimization of a noisy ``score(points (P, d) in [0,1]^d) -> (P,)``.

    Each generation samples a Gaussian clipped to the unit cube, keeps the lowest-scoring
    ``elite_frac`` (ties broken at random), and refits mean and spread to them (spread floored at
    ``min_std`` so a noisy early minimum cannot freeze the search). Returns every generation."""
    mean, std = np.full(dims, 0.5), np.full(dims, init_std)
    n_elite = max(2, int(round(elite_frac * population)))
    history = []
    for g in range(generations):
        pts = np.clip(mean + std * rng.standard_normal((population, dims)), 0.0, 1.0)
        scores = np.asarray(score(pts, g), dtype=float)
        order = np.lexsort((rng.random(population), scores))
        elite = pts[order[:n_elite]]
        mean, std, previous = elite.mean(0), np.maximum(elite.std(0), min_std), (mean, std)
        history.append({"generation": g, "mean": previous[0].tolist(), "std": previous[1].tolist(),
                        "points": pts.tolist(), "scores": scores.tolist(), "elite_mean": mean.tolist()})
    return history
