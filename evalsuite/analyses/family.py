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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from evalsuite import names, streams
from evalsuite.results import Results
from evalsuite.stats import family as fstats
from evalsuite.stats.intervals import proportion_interval

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from evalsuite.analyses import AnalysisInput
    from evalsuite.journal import EpisodeRecord
    from evalsuite.plan import Plan

WORST_CASE_FILE = names.WORST_CASE


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


def family_of(plan: Plan) -> FamilyDescription | None:
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


def mdp_table(records: Iterable[EpisodeRecord], label: dict[str, str]) -> dict[str, dict[int, dict[str, Any]]]:
    """policy -> MDP index -> {params, k, n, outcomes (ic_index -> success)} from final records."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for r in records:
        if not r.is_outcome or "mdp" not in r.init_state:
            continue
        cell = out.setdefault(label[r.policy_code], {}).setdefault(
            int(r.init_state["mdp"]), {"params": r.init_state["params"], "k": 0, "n": 0, "outcomes": {}})
        cell["k"] += int(r.success)
        cell["n"] += 1
        cell["outcomes"][r.ic_index] = bool(r.success)
    return out


def compute(inp: AnalysisInput) -> dict[str, Any] | None:
    spec = family_of(inp.plan)
    if spec is None:
        return None
    section = analyze_family(spec, inp.plan.seed, inp.records, inp.label, inp.level)
    if inp.worst_case is not None:  # the search ran beside the episodes (evalsuite_suites.families.worst_case)
        section["worst_case"] = inp.worst_case
    return section


def analyze_family(spec: FamilyDescription, plan_seed: int, records: Iterable[EpisodeRecord], label: dict[str, str],
                   level: float) -> dict[str, Any]:
    table = mdp_table(records, label)
    nominal = spec.nominal
    all_params = [c["params"] for cells in table.values() for c in cells.values()]
    varied = [a for a in spec.axes if len({p[a.name] for p in all_params}) > 1]
    policies: dict[str, Any] = {}
    rng = streams.generator(plan_seed, streams.FAMILY_ANALYSIS)
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


def vars_of(obj: Any) -> dict[str, Any]:
    """A ``stats.family`` result as a JSON-ready mapping (its ``to_dict``, else its slots)."""
    if hasattr(obj, "to_dict"):
        d: dict[str, Any] = obj.to_dict()
        return d
    return {name: getattr(obj, name) for name in obj.__slots__}


# ------------------------------------------------------------------------------------ worst case

def cem_minimize(score: Callable[[NDArray[np.float64], int], ArrayLike], dims: int, *, generations: int = 4,
                 population: int = 8, elite_frac: float = 0.25, rng: np.random.Generator, init_std: float = 0.35,
                 min_std: float = 0.05) -> list[dict[str, Any]]:
    """Cross-entropy minimization of a noisy ``score(points (P, d) in [0,1]^d) -> (P,)``.

    Each generation samples a Gaussian clipped to the unit cube, keeps the lowest-scoring
    ``elite_frac`` (ties broken at random), and refits mean and spread to them (spread floored at
    ``min_std`` so a noisy early minimum cannot freeze the search). Returns every generation."""
    mean, std = np.full(dims, 0.5), np.full(dims, init_std)
    n_elite = max(2, int(round(elite_frac * population)))
    history: list[dict[str, Any]] = []
    for g in range(generations):
        pts = np.clip(mean + std * rng.standard_normal((population, dims)), 0.0, 1.0)
        scores = np.asarray(score(pts, g), dtype=float)
        order = np.lexsort((rng.random(population), scores))
        elite = pts[order[:n_elite]]
        mean, std, previous = elite.mean(0), np.maximum(elite.std(0), min_std), (mean, std)
        history.append({"generation": g, "mean": previous[0].tolist(), "std": previous[1].tolist(),
                        "points": pts.tolist(), "scores": scores.tolist(), "elite_mean": mean.tolist()})
    return history


# ---------------------------------------------------------------- report, figures, MLflow

def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _interval(e: dict[str, Any] | None) -> str:
    return f"{_pct(e['estimate'])} [{_pct(e['low'])}, {_pct(e['high'])}]" if e else "n/a"


def report(section: dict[str, Any], results: Results) -> list[str]:
    fam = section
    lines = ["", f"## MDP family {fam['family']}", "",
             "Varied axes: " + (", ".join(f"{a['name']} {a['low']:g}..{a['high']:g} (nominal {a['nominal']:g})"
                                         for a in fam["axes"]) or "none") + ".", "",
             "Family mean: mean over the sampled MDPs of their success rates, Korn-Graubard interval (Clopper-Pearson "
             "at the effective number of episodes given the design effect of the MDP level, t on MDPs - 1 df: "
             "both levels, MDPs and episodes). P10: the 10th-percentile MDP (two-stage bootstrap; noisy per-MDP rates bias it "
             "low).", "",
             "| policy | nominal % | family mean % | P10 % | MDPs | episodes |", "|---|---|---|---|---|---|"]
    for pol, e in fam["policies"].items():
        nom = e.get("nominal")
        nom_s = f"{_pct(nom['rate'])} [{_pct(nom['low'])}, {_pct(nom['high'])}] ({nom['k']}/{nom['n']})" if nom else "n/a"
        lines.append(f"| {pol} | {nom_s} | {_interval(e.get('family_mean'))} | {_interval(e.get('p10'))} | "
                     f"{e['mdps']} | {e['episodes']} |")
    curves = [(pol, c) for pol, e in fam["policies"].items() for c in e.get("curves", [])]
    if curves:
        lines += _curve_lines(curves)
    if fam["rank_reversals"]:
        lines += _reversal_lines(fam["rank_reversals"])
    if fam.get("worst_case"):
        lines += _worst_case_lines(fam["worst_case"])
    return lines


def _curve_lines(curves: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The joint logistic fit's slope per policy and axis."""
    lines = ["", "Success against each axis (one logistic fit on all varied axes, the others at mid-range, "
             "MDP-clustered CR2 errors with t on MDPs - 1 df; slope = change in log-odds from the low to the "
             "high end of the range):", "",
             "| policy | axis | slope | interval | p |", "|---|---|---|---|---|"]
    for pol, c in curves:
        if c["slope"] is None:
            lines.append(f"| {pol} | {c['axis']} | n/a | {c['note']} | |")
        else:
            lines.append(f"| {pol} | {c['axis']} | {c['slope']:.2f} | [{c['slope_low']:.2f}, {c['slope_high']:.2f}] "
                         f"| {c['p_value']:.2g} |")
    return lines


def _reversal_lines(reversals: list[dict[str, Any]]) -> list[str]:
    """Per pair of policies: the MDPs on which the nominal order is credibly reversed."""
    lines = ["", "Rank reversals: an MDP counts as reversed when the posterior probability that the nominal "
             "order flips there is at least 0.95 (Beta(1,1) priors per policy and MDP); the naive count of "
             "flipped per-MDP rates counts noise and is shown for comparison only.", "",
             "| A | B | nominal order | credibly reversed MDPs | mean P(reversed) | naive flip rate |",
             "|---|---|---|---|---|---|"]
    for r in reversals:
        if r.get("credible_reversals") is None:
            lines.append(f"| {r['a']} | {r['b']} | {r['nominal_order']} | n/a | | |")
            continue
        lines.append(f"| {r['a']} | {r['b']} | {r['nominal_order']} | {r['credible_reversals']} of "
                     f"{r['mdps_compared']} | {r['mean_reversal_probability']:.2f} | "
                     f"{_pct(r['naive_reversal_rate'])}% |")
    return lines


def _worst_case_lines(worst_case: dict[str, Any]) -> list[str]:
    """Per policy: the CEM search's and the grid's worst parameters, re-run on fresh initial conditions."""
    lines = ["", "Worst case: the CEM search's lowest-scoring parameters and the worst point of a grid of the "
             "same episode budget, each re-run on fresh initial conditions (the search's own figure is "
             "optimistic: it won a noisy minimum).", "",
             "| policy | method | parameters | search % | fresh % [interval] | episodes |", "|---|---|---|---|---|---|"]
    for pol, w in worst_case.items():
        for method in ("cem", "grid"):
            r = w[method]
            if "skipped" in r:
                lines.append(f"| {pol} | {method} | skipped: {r['skipped']} | | | |")
                continue
            params = ", ".join(f"{k}={v:.3g}" for k, v in r["params"].items())
            lines.append(f"| {pol} | {method} | {params} | {_pct(r['search_rate'])} | {_pct(r['fresh_rate'])} "
                         f"[{_pct(r['fresh_low'])}, {_pct(r['fresh_high'])}] | {r['episodes_spent']} + "
                         f"{r['fresh_episodes']} |")
    return lines


def figures(section: dict[str, Any], results: Results) -> dict[str, Any]:
    if not section.get("axes"):
        return {}
    out = {"family curves": _curves_figure(section)}
    if len(section["axes"]) >= 2:
        out["family heatmap"] = _heatmap_figure(section)
    return out


def _curves_figure(fam: dict[str, Any]) -> Figure:
    """Success against each varied axis, per policy: per-MDP rates (dots), logistic fit with its
    band, the nominal value (dashed) and the worst case found (x, re-evaluated rate)."""
    from evalsuite.plotting import colors, subplots

    axes = fam["axes"]
    cols = min(3, max(1, len(axes)))
    rows = max(1, -(-len(axes) // cols))
    fig: Figure  # plotting.subplots is typed Any (matplotlib's Figure and Axes)
    fig, grid = subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    palette = colors()
    for a_idx, axis in enumerate(axes):
        ax = grid[a_idx // cols][a_idx % cols]
        for p_idx, (pol, entry) in enumerate(fam["policies"].items()):
            color = palette[p_idx % len(palette)]
            pts = [(c["params"][axis["name"]], c["k"] / c["n"]) for c in entry["per_mdp"]]
            ax.scatter([x for x, _ in pts], [y for _, y in pts], s=10, color=color, alpha=0.5)
            curve = next((c for c in entry.get("curves", []) if c["axis"] == axis["name"]), None)
            if curve and curve["p"]:
                ax.plot(curve["x"], curve["p"], color=color, label=pol)
                ax.fill_between(curve["x"], curve["low"], curve["high"], color=color, alpha=0.15)
            worst = fam.get("worst_case", {}).get(pol, {}).get("cem")
            if worst and axis["name"] in worst["params"]:
                ax.scatter([worst["params"][axis["name"]]], [worst["fresh_rate"]], marker="x", s=60, color=color)
        ax.axvline(axis["nominal"], ls="--", color="gray", lw=0.8)
        if axis["log"]:
            _readable_log_axis(ax, axis["low"], axis["high"])
        ax.set_xlabel(f"{axis['name']} ({axis['unit']})" if axis["unit"] else axis["name"], fontsize=8)
        ax.set_ylim(-0.03, 1.03)
    for extra in range(len(axes), rows * cols):
        grid[extra // cols][extra % cols].axis("off")
    grid[0][0].set_ylabel("success")
    handles, labels = grid[0][0].get_legend_handles_labels()
    fig.tight_layout()
    if handles:  # above the panels, never over one
        fig.legend(handles, labels, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles))
    return fig


def _readable_log_axis(ax: Axes, low: float, high: float, most: int = 5) -> None:
    """A log axis labelled at a few round values (1, 2, 5 x 10^k) and the range's ends, in plain numbers: matplotlib's
    default labels every minor tick of a short log range in 10^x notation, and they overlap."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log")
    decades = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    nice = [m * 10.0 ** k for k in decades for m in (1, 2, 5) if low <= m * 10.0 ** k <= high]
    nice += [end for end in (low, high) if all(abs(np.log10(end / t)) > 0.15 for t in nice)]  # the range's ends
    nice = sorted(nice if len(nice) >= 2 else {low, high, *nice})
    if len(nice) > most:
        nice = [nice[i] for i in np.unique(np.linspace(0, len(nice) - 1, most).round().astype(int))]
    ax.xaxis.set_major_locator(FixedLocator(nice))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _heatmap_figure(fam: dict[str, Any], pair: tuple[str, str] | None = None, bins: int = 4) -> Figure:
    """Mean per-MDP success over a 2-D binning of two axes, per policy (default: the two axes with
    the steepest fitted slopes of the first policy)."""
    from evalsuite.plotting import subplots

    axes = {a["name"]: a for a in fam["axes"]}
    policies = list(fam["policies"])
    if pair is None:
        slopes = {c["axis"]: abs(c["slope"] or 0) for c in fam["policies"][policies[0]].get("curves", [])}
        pair = tuple(sorted(axes, key=lambda n: -slopes.get(n, 0))[:2])
    fig: Figure  # plotting.subplots is typed Any (matplotlib's Figure and Axes)
    fig, grid = subplots(1, len(policies), figsize=(3.8 * len(policies), 3.2), squeeze=False)
    for i, pol in enumerate(policies):
        ax = grid[0][i]
        cells = fam["policies"][pol]["per_mdp"]
        edges = []
        for name in pair:
            a = axes[name]
            edges.append(np.geomspace(a["low"], a["high"], bins + 1) if a["log"] else np.linspace(a["low"], a["high"], bins + 1))
        total, count = np.zeros((bins, bins)), np.zeros((bins, bins))
        for c in cells:
            ix = [min(bins - 1, max(0, int(np.searchsorted(e, c["params"][n], side="right") - 1))) for e, n in zip(edges, pair, strict=False)]
            total[ix[1], ix[0]] += c["k"] / c["n"]
            count[ix[1], ix[0]] += 1
        with np.errstate(invalid="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        im = ax.imshow(mean, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(bins), [f"{v:.2g}" for v in edges[0][:-1]], fontsize=7)
        ax.set_yticks(range(bins), [f"{v:.2g}" for v in edges[1][:-1]], fontsize=7)
        ax.set_xlabel(pair[0], fontsize=8)
        ax.set_ylabel(pair[1], fontsize=8)
        ax.set_title(pol, fontsize=8)
    fig.colorbar(im, ax=grid[0].tolist(), label="success")
    return fig


def metrics(family: dict[str, Any]) -> dict[str, float]:
    """An MDP family's figures per policy: nominal, family mean (+ interval), P10, worst cases."""
    out: dict[str, float] = {}
    for pol, e in (family or {}).get("policies", {}).items():
        if e.get("nominal"):
            out[(f"{pol}/family_nominal")] = e["nominal"]["rate"]
        for name in ("family_mean", "p10"):
            if e.get(name):
                out[(f"{pol}/{name}")] = e[name]["estimate"]
                out[(f"{pol}/{name}_ci_low")] = e[name]["low"]
                out[(f"{pol}/{name}_ci_high")] = e[name]["high"]
    for pol, w in (family or {}).get("worst_case", {}).items():
        for method in ("cem", "grid"):
            if "skipped" in w[method]:
                continue
            out[(f"{pol}/worst_{method}_fresh")] = w[method]["fresh_rate"]
            for axis, value in w[method]["params"].items():
                out[(f"{pol}/worst_{method}/{axis}")] = value
    return out
