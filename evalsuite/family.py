"""Family runs: what an evaluation of an MDP family reports, and the worst-case search.

``analyze_family`` turns the episodes of a family run (each carries its MDP index and parameters)
into, per policy: the nominal rate, the family mean with a two-level (Korn-Graubard) interval, the
10th-percentile MDP, one logistic fit of success on all varied axes jointly with MDP-clustered
errors (a curve per axis, the others at mid-range), and, per pair of policies, on how many MDPs the
nominal order is credibly reversed (methods: ``evalsuite/stats/family.py``).

``worst_case`` searches the varied axes for the parameters that minimize a policy's success: the
cross-entropy method over the unit cube of the axes, each candidate run for a few episodes. The
lowest-scoring candidate is optimistic by construction (it won a noisy minimum), so it is re-run
on fresh initial conditions and that figure is the one reported; a plain grid of the same episode
budget goes through the same steps, for comparison.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
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


def worst_case(suite_id: str, task: str, policy, out: Path, *, suite_options: dict[str, Any], seed: int,
               max_steps: int | None, generations: int = 4, population: int = 8, episodes_per_point: int = 4,
               fresh_episodes: int = 40, batch_size: int = 8, log=print) -> dict[str, Any]:
    """CEM search and a same-budget grid for one policy; both winners re-run on fresh initial
    conditions (paired between the two). Each evaluation is an ordinary run folder under ``out``,
    so an interrupted search resumes where it stopped."""
    from evalsuite.harness import EvaluateRequest, evaluate
    from suites.families import design

    from evalsuite import registry
    from suites.families import FAMILIES

    spec = FAMILIES[registry.suites.get(suite_id).kwargs["family"]]
    vary = suite_options.get("vary")
    names = ([v.strip() for v in vary.strip("[]").split(",") if v.strip()] if isinstance(vary, str) else vary) \
        or [a.name for a in spec.axes if not _needs_points(a.name, suite_options)]
    axes = [spec.axis(n) for n in names]
    base_options = {k: v for k, v in suite_options.items() if k in ("obs",)}
    seq = np.random.SeedSequence(seed, spawn_key=(13,))
    seeds = [int(s.generate_state(1)[0]) for s in seq.spawn(generations + 3)]

    def run(points: list[dict[str, float]], folder: str, run_seed: int, per_point: int) -> list[tuple[int, int]]:
        req = EvaluateRequest(suite=suite_id, policies=[policy], out=out / folder, tasks=[task],
                              suite_options={**base_options, "points": json.dumps(points)},
                              episodes=len(points) * per_point, seed=run_seed, max_steps=max_steps,
                              batch_size=batch_size, tracking_uri=None, progress=False)
        evaluate(req, log=lambda *_: None)
        res = json.loads((out / folder / "results.json").read_text())
        cells = {c["mdp"]: c for c in res["family"]["policies"][policy.label]["per_mdp"]}
        return [(cells[i]["k"], cells[i]["n"]) for i in range(len(points))]

    def to_params(u: np.ndarray) -> dict[str, float]:
        return {a.name: a.from_unit(float(x)) for a, x in zip(axes, u)}

    evaluated: list[tuple[dict, int, int]] = []

    def score(pts: np.ndarray, g: int) -> np.ndarray:
        points = [to_params(u) for u in pts]
        kn = run(points, f"cem/gen{g}", seeds[g], episodes_per_point)
        evaluated.extend((p, k, n) for p, (k, n) in zip(points, kn))
        return np.array([k / n for k, n in kn])

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(14,)))
    history = cem_minimize(score, len(axes), generations=generations, population=population, rng=rng)
    budget = generations * population * episodes_per_point
    final_mean = np.array(history[-1]["elite_mean"])
    best = min(evaluated, key=lambda e: (e[1] / e[2], _dist(axes, e[0], final_mean)))

    # the grid of the same budget: levels per axis, range ends included
    levels = max(2, int(np.floor((budget / episodes_per_point) ** (1 / len(axes)) + 1e-9)))
    grid_points = design(spec, "grid", levels ** len(axes), vary=names)[1:]
    level = 0.95

    def summary(params, k_search, n_search, kn_fresh, spent):
        ci = proportion_interval(kn_fresh[0], kn_fresh[1], level=level, method="wilson")
        return {"params": {n: params[n] for n in names}, "search_rate": k_search / n_search,
                "search_episodes": n_search, "fresh_rate": kn_fresh[0] / kn_fresh[1], "fresh_low": ci.low,
                "fresh_high": ci.high, "fresh_episodes": kn_fresh[1], "episodes_spent": spent}

    result = {"policy": policy.label, "axes": names, "level": level}
    if len(grid_points) > budget:  # even the two range ends of every axis do not fit the budget
        fresh = run([best[0]], "fresh", seeds[generations + 1], fresh_episodes)
        result["grid"] = {"skipped": f"a grid with both ends of {len(axes)} axes has {len(grid_points)} MDPs, "
                                     f"more than the search's {budget} episodes"}
    else:
        grid_k = max(1, budget // len(grid_points))
        grid_kn = run(grid_points, "grid", seeds[generations], grid_k)
        g_best = int(np.argmin([k / n for k, n in grid_kn]))
        fresh = run([best[0], grid_points[g_best]], "fresh", seeds[generations + 1], fresh_episodes)
        result["grid"] = {**summary(grid_points[g_best], *grid_kn[g_best], fresh[1], grid_k * len(grid_points)),
                          "levels": levels, "points": len(grid_points), "episodes_per_point": grid_k}
    result["cem"] = {**summary(best[0], best[1], best[2], fresh[0], budget), "generations": generations,
                     "population": population, "episodes_per_point": episodes_per_point, "history": history}
    grid_text = result["grid"].get("skipped") or _fmt(result["grid"])
    log(f"worst case of {policy.label}: CEM {_fmt(result['cem'])}; grid {grid_text}")
    return result


def _needs_points(axis: str, options: dict[str, Any]) -> bool:
    from suites.families import POINTCLOUD_AXES

    return axis in {a.name for a in POINTCLOUD_AXES} and options.get("obs") != "pointcloud"


def _dist(axes, params: dict, unit_mean: np.ndarray) -> float:
    return float(np.linalg.norm([a.to_unit(params[a.name]) - m for a, m in zip(axes, unit_mean)]))


def _fmt(r: dict) -> str:
    params = ", ".join(f"{k}={v:.3g}" for k, v in r["params"].items())
    return (f"{params}: search {100 * r['search_rate']:.0f}%, fresh {100 * r['fresh_rate']:.0f}% "
            f"[{100 * r['fresh_low']:.0f}, {100 * r['fresh_high']:.0f}] ({r['episodes_spent']} + {r['fresh_episodes']} episodes)")

