"""Comparison reports from ``results.json``: ``report.md`` and a self-contained ``report.html``.

Figures: per-task success with interval bars per policy; Beta posterior violins (the LBM paper's
presentation, here with the correct two-sided tests beside them); a forest plot of the pairwise
paired differences; and performance profiles over tasks. The HTML embeds them as base64 PNG so it can be mailed or attached to a CI run.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def success_figure(results: dict[str, Any]):
    rows = results["per_task"]
    tasks = results["tasks"]
    policies = list(results["policies"])
    width = 0.8 / max(1, len(policies))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks) * max(1, len(policies)) / 2), 3.8))
    for j, pol in enumerate(policies):
        xs, ys, lo, hi = [], [], [], []
        for i, task in enumerate(tasks):
            r = next(r for r in rows if r["task"] == task and r["policy"] == pol)
            if r["rate"] is None:
                continue
            xs.append(i + (j - (len(policies) - 1) / 2) * width)
            ys.append(r["rate"])
            lo.append(r["rate"] - r["ci_low"])
            hi.append(r["ci_high"] - r["rate"])
        ax.bar(xs, ys, width=width * 0.9, label=pol, yerr=[lo, hi], capsize=3)
    level = results["options"]["level"]
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"success rate ({100 * level:g}% {results['options']['interval']} CI)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def forest_figure(results: dict[str, Any]):
    pairs = results["pairwise"]
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(2, len(pairs)) + 1))
    labels = []
    for i, p in enumerate(pairs):
        y = len(pairs) - 1 - i
        color = "tab:red" if p["significant"] else "tab:gray"
        if p["difference"] is not None:
            ax.errorbar(p["difference"], y, xerr=[[p["difference"] - p["ci_low"]], [p["ci_high"] - p["difference"]]],
                        fmt="o", color=color, capsize=3)
        labels.append(f"{p['task']}: {p['policy_a']} - {p['policy_b']}")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(pairs)), labels[::-1], fontsize=8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(f"paired difference A - B (red: significant, {results['options']['correction']})")
    return fig


def violin_figure(results: dict[str, Any]):
    """Per task, each policy's Beta(successes + 1, failures + 1) posterior density drawn as a violin
    (exact densities, no sampling), with the 95% equal-tailed credible interval marked."""
    import numpy as np
    from scipy import stats

    tasks, policies = results["tasks"], list(results["policies"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(4, 0.9 * len(policies)) * len(tasks) / 1.5 + 1, 3.6),
                             sharey=True, squeeze=False)
    grid = np.linspace(0, 1, 401)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, task in zip(axes[0], tasks):
        for j, pol in enumerate(policies):
            r = next(r for r in results["per_task"] if r["task"] == task and r["policy"] == pol)
            dist = stats.beta(r["posterior_alpha"], r["posterior_beta"])
            dens = dist.pdf(grid)
            dens = 0.42 * dens / dens.max()
            ax.fill_betweenx(grid, j - dens, j + dens, color=colors[j % len(colors)], alpha=0.6, lw=0)
            ax.vlines(j, *dist.ppf([0.025, 0.975]), color="black", lw=1)
            ax.plot(j, dist.mean(), "o", color="black", ms=3)
        ax.set_xticks(range(len(policies)), policies, rotation=30, ha="right", fontsize=8)
        ax.set_title(task, fontsize=9)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("success rate (Beta(1,1) posterior)")
    return fig


def profile_figure(results: dict[str, Any]):
    prof = results["aggregates"]["profile"]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for pol, values in prof.items():
        if pol != "taus":
            ax.step(prof["taus"], values, where="post", label=pol)
    ax.set_xlabel("success rate threshold tau")
    ax.set_ylabel("fraction of tasks with rate > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def family_curves_figure(results: dict[str, Any]):
    """Success against each varied axis, per policy: per-MDP rates (dots), logistic fit with its
    band, the nominal value (dashed) and the worst case found (x, re-evaluated rate)."""
    fam = results["family"]
    axes = fam["axes"]
    cols = min(3, max(1, len(axes)))
    rows = max(1, -(-len(axes) // cols))
    fig, grid = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for a_idx, axis in enumerate(axes):
        ax = grid[a_idx // cols][a_idx % cols]
        for p_idx, (pol, entry) in enumerate(fam["policies"].items()):
            color = colors[p_idx % len(colors)]
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
            ax.set_xscale("log")
        ax.set_xlabel(f"{axis['name']} ({axis['unit']})" if axis["unit"] else axis["name"], fontsize=8)
        ax.set_ylim(-0.03, 1.03)
    for extra in range(len(axes), rows * cols):
        grid[extra // cols][extra % cols].axis("off")
    grid[0][0].set_ylabel("success")
    handles, labels = grid[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def family_heatmap_figure(results: dict[str, Any], pair: tuple[str, str] | None = None, bins: int = 4):
    """Mean per-MDP success over a 2-D binning of two axes, per policy (default: the two axes with
    the steepest fitted slopes of the first policy)."""
    fam = results["family"]
    axes = {a["name"]: a for a in fam["axes"]}
    policies = list(fam["policies"])
    if pair is None:
        slopes = {c["axis"]: abs(c["slope"] or 0) for c in fam["policies"][policies[0]].get("curves", [])}
        pair = tuple(sorted(axes, key=lambda n: -slopes.get(n, 0))[:2])
    fig, grid = plt.subplots(1, len(policies), figsize=(3.8 * len(policies), 3.2), squeeze=False)
    for i, pol in enumerate(policies):
        ax = grid[0][i]
        cells = fam["policies"][pol]["per_mdp"]
        edges = []
        for name in pair:
            a = axes[name]
            edges.append(np.geomspace(a["low"], a["high"], bins + 1) if a["log"] else np.linspace(a["low"], a["high"], bins + 1))
        total, count = np.zeros((bins, bins)), np.zeros((bins, bins))
        for c in cells:
            ix = [min(bins - 1, max(0, int(np.searchsorted(e, c["params"][n], side="right") - 1))) for e, n in zip(edges, pair)]
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


def energy_figure(results: dict[str, Any]):
    """Success against the episode's mean chunk energy, per energy-based policy."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, (pol, e) in enumerate(results["energy"].items()):
        color = f"C{i}"
        pts = np.array(e["points"], dtype=float)
        jitter = np.random.default_rng(0).uniform(-0.03, 0.03, len(pts))
        ax.scatter(pts[:, 0], pts[:, 1] + jitter, s=8, alpha=0.4, color=color)
        curve = e.get("curve")
        if curve and curve["p"]:
            ax.plot(curve["x"], curve["p"], color=color, label=pol)
            ax.fill_between(curve["x"], curve["low"], curve["high"], color=color, alpha=0.15)
    ax.set_xlabel("mean energy of the episode's action chunks")
    ax.set_ylabel("success")
    ax.set_ylim(-0.08, 1.08)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


def energy_lines(results: dict[str, Any]) -> list[str]:
    if not results.get("energy"):
        return []
    lines = ["", "## Energy as an uncertainty signal", "",
             "Energy-based policies report the energy of every action chunk they choose. AUROC: the probability "
             "that a failed episode had a higher mean energy than a successful one (0.5: no signal).", "",
             "| policy | episodes | successes | mean energy (success) | mean energy (failure) | AUROC for failure | p | "
             "descent steps |", "|---|---|---|---|---|---|---|---|"]
    for pol, e in results["energy"].items():
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        p = e.get("auroc_p_value")
        lines.append(f"| {pol} | {e['episodes']} | {e['successes']} | {fmt(e['energy_success'])} | "
                     f"{fmt(e['energy_failure'])} | {fmt(e['auroc_failure'])} | {'' if p is None else f'{p:.2g}'} | "
                     f"{e['descent_steps_mean']:.1f} |")
    return lines


def group_lines(results: dict[str, Any]) -> list[str]:
    """Algorithms over their training seeds (policies sharing ``group=``)."""
    g = results.get("groups")
    if not g:
        return []
    if "groups" not in g:
        return ["", "## Algorithms (groups of checkpoints)", "", g.get("note", "")]
    level = f"{100 * g['level']:g}%"
    lines = ["", "## Algorithms (groups of checkpoints)", "",
             f"Each group's runs are its checkpoints (training seeds); the {level} intervals cover {g['covers']} "
             f"({g['method']}, {g['reps']} resamples, {g['episodes_per_task']} shared initial conditions per task). "
             "A group of one run covers initial conditions only; with 3 runs read the intervals as roughly 85% "
             "ones (measured coverage), with 5 or more as ~90%.", "",
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


def family_lines(results: dict[str, Any]) -> list[str]:
    fam = results.get("family")
    if not fam:
        return []

    def iv(e):
        return f"{_pct(e['estimate'])} [{_pct(e['low'])}, {_pct(e['high'])}]" if e else "n/a"

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
        lines.append(f"| {pol} | {nom_s} | {iv(e.get('family_mean'))} | {iv(e.get('p10'))} | {e['mdps']} | {e['episodes']} |")
    curves = [(pol, c) for pol, e in fam["policies"].items() for c in e.get("curves", [])]
    if curves:
        lines += ["", "Success against each axis (one logistic fit on all varied axes, the others at mid-range, "
                  "MDP-clustered CR2 errors with t on MDPs - 1 df; slope = change in log-odds from the low to the "
                  "high end of the range):", "",
                  "| policy | axis | slope | interval | p |", "|---|---|---|---|---|"]
        for pol, c in curves:
            if c["slope"] is None:
                lines.append(f"| {pol} | {c['axis']} | n/a | {c['note']} | |")
            else:
                lines.append(f"| {pol} | {c['axis']} | {c['slope']:.2f} | [{c['slope_low']:.2f}, {c['slope_high']:.2f}] "
                             f"| {c['p_value']:.2g} |")
    if fam["rank_reversals"]:
        lines += ["", "Rank reversals: an MDP counts as reversed when the posterior probability that the nominal "
                  "order flips there is at least 0.95 (Beta(1,1) priors per policy and MDP); the naive count of "
                  "flipped per-MDP rates counts noise and is shown for comparison only.", "",
                  "| A | B | nominal order | credibly reversed MDPs | mean P(reversed) | naive flip rate |",
                  "|---|---|---|---|---|---|"]
        for r in fam["rank_reversals"]:
            if r.get("credible_reversals") is None:
                lines.append(f"| {r['a']} | {r['b']} | {r['nominal_order']} | n/a | | |")
                continue
            lines.append(f"| {r['a']} | {r['b']} | {r['nominal_order']} | {r['credible_reversals']} of "
                         f"{r['mdps_compared']} | {r['mean_reversal_probability']:.2f} | "
                         f"{_pct(r['naive_reversal_rate'])}% |")
    if fam.get("worst_case"):
        lines += ["", "Worst case: the CEM search's lowest-scoring parameters and the worst point of a grid of the "
                  "same episode budget, each re-run on fresh initial conditions (the search's own figure is "
                  "optimistic: it won a noisy minimum).", "",
                  "| policy | method | parameters | search % | fresh % [interval] | episodes |", "|---|---|---|---|---|---|"]
        for pol, w in fam["worst_case"].items():
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


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # room for long policy labels
    plt.close(fig)
    return buf.getvalue()


def _policy_notes(results: dict[str, Any]) -> list[str]:
    """One line per policy that describes itself, e.g. its inference cost in network evaluations."""
    lines = [f"- {label}: " + ", ".join(f"{k} {v}" for k, v in pol["notes"].items())
             for label, pol in results["policies"].items() if pol.get("notes")]
    return ["Policies:", "", *lines, ""] if lines else []


def summary_matrix(results: dict[str, Any]) -> list[str]:
    """Tasks x policies: success % [interval] and the task's group letter; the first thing to read."""
    policies = list(results["policies"])
    cell = {(r["task"], r["policy"]): r for r in results["per_task"]}
    letters = results.get("letters", {})
    lines = ["## Summary", "", "Success % [" + f"{100 * results['options']['level']:g}% "
             + results["options"]["interval"] + " interval] and group letter (same letter: cannot be told apart).", "",
             "| task | " + " | ".join(policies) + " |", "|---" * (len(policies) + 1) + "|"]
    for task in results["tasks"]:
        row = []
        for pol in policies:
            r = cell[task, pol]
            row.append(f"{_pct(r['rate'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}] {letters.get(task, {}).get(pol, '')}")
        lines.append(f"| {task} | " + " | ".join(row) + " |")
    means = {a["policy"]: a for a in results["aggregate"]}
    if len(results["tasks"]) > 1 and means:
        lines.append("| **mean** | " + " | ".join(
            f"{_pct(means[p]['mean'])} [{_pct(means[p]['ci_low'])}, {_pct(means[p]['ci_high'])}]" if p in means else ""
            for p in policies) + " |")
    return lines + [""]


def markdown(results: dict[str, Any], figures: dict[str, str] | None = None) -> str:
    opts = results["options"]
    level = f"{100 * opts['level']:g}%"
    t = results["trials"]
    lines = [
        f"# evalsuite report: {results['suite']}",
        "",
        f"Seed {results['seed']}, {results['episodes_per_task']} initial conditions per task, every policy on every "
        f"initial condition (paired), blind randomized order. Trials: {t['finished']}/{t['planned']} finished; "
        f"{t.get('policy_errors', 0)} policy errors (exceptions, non-finite or wrong-shaped actions, time-outs, "
        f"simulator instability: counted as failures of that policy); {t.get('missing', 0)} missing after every "
        "retry of an infrastructure error (shown with the worst case: counted as failures).",
        "",
        *_policy_notes(results),
        *summary_matrix(results),
        f"## Success per task ({level} {opts['interval']} intervals)",
        "",
        "Policies of a task that share a group letter cannot be told apart (paired tests, "
        f"{opts['correction']} correction).",
        "",
        "| task | policy | successes / n | rate % | CI % | group | policy errors | missing | if missing failed % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    letters = results.get("letters", {})
    for r in results["per_task"]:
        group = letters.get(r["task"], {}).get(r["policy"], "")
        w = r.get("worst_case")
        worst = f"{_pct(w['rate'])} [{_pct(w['ci_low'])}, {_pct(w['ci_high'])}]" if w else ""
        lines.append(f"| {r['task']} | {r['policy']} | {r['successes']} / {r['n']} | {_pct(r['rate'])} | "
                     f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}] | {group} | {r.get('policy_errors', 0)} | "
                     f"{r.get('missing', 0)} | {worst} |")
    pairs = results["pairwise"]
    sim = f"{100 * pairs[0]['simultaneous_level']:.4g}%" if pairs and "simultaneous_level" in pairs[0] else ""
    lines += ["", f"## Paired comparisons (exact McNemar, {opts['correction']} across all {len(pairs)})", "",
              f"CI: Newcombe's paired interval at {level} for one comparison alone. Simultaneous CI: at {sim}, "
              f"adjusted for the {len(pairs)} comparisons to go with the {opts['correction']} correction "
              "(Bonferroni for holm; Benjamini-Yekutieli false-coverage-rate for bh). *significant*: adjusted p "
              "below alpha and the simultaneous interval excludes 0, which is what the letters use.", "",
              "| task | A | B | A only | B only | diff A-B % | CI % | simultaneous CI % | p | p adj. | |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        simult = (f"[{_pct(p['simultaneous_low'])}, {_pct(p['simultaneous_high'])}]"
                  if "simultaneous_low" in p else "")
        worst = p.get("worst_case")
        note = (f" (missing as failures: {_pct(worst['difference'])} [{_pct(worst['ci_low'])}, "
                f"{_pct(worst['ci_high'])}])" if worst else "")
        lines.append(f"| {p['task']} | {p['policy_a']} | {p['policy_b']} | {p['a_only']} | {p['b_only']} | "
                     f"{_pct(p['difference'])}{note} | [{_pct(p['ci_low'])}, {_pct(p['ci_high'])}] | {simult} | "
                     f"{p['p_value']:.3g} | {p['p_adjusted']:.3g} | {'**significant**' if p['significant'] else ''} |")
    method = results["aggregate"][0]["method"] if results["aggregate"] else ""
    lines += ["", f"## Mean success over tasks ({level} {method})", "",
              "| policy | tasks | mean % | CI % | if missing failed % |", "|---|---|---|---|---|"]
    for a in results["aggregate"]:
        w = a.get("worst_case")
        worst = f"{_pct(w['mean'])} [{_pct(w['ci_low'])}, {_pct(w['ci_high'])}]" if w else ""
        lines.append(f"| {a['policy']} | {a['tasks']} | {_pct(a['mean'])} | [{_pct(a['ci_low'])}, "
                     f"{_pct(a['ci_high'])}] | {worst} |")
    if results.get("mean_differences"):
        lines += ["", f"## Paired differences of the mean over tasks ({level}, "
                  f"{results['mean_differences'][0]['method']})", "",
                  "| A | B | mean A - mean B % | CI % |", "|---|---|---|---|"]
        for d in results["mean_differences"]:
            lines.append(f"| {d['policy_a']} | {d['policy_b']} | {_pct(d['difference'])} | "
                         f"[{_pct(d['ci_low'])}, {_pct(d['ci_high'])}] |")
    agg = results.get("aggregates")
    if agg:
        lines += ["", f"## Aggregates over tasks (rliable's definitions, {100 * agg['level']:g}% intervals)", "",
                  f"{agg['method']}, {agg['reps']} resamples.", "",
                  "| policy | mean % | median % | IQM % | optimality gap % |", "|---|---|---|---|---|"]
        by = {(m["policy"], m["metric"]): m for m in agg["metrics"]}
        for pol in dict.fromkeys(m["policy"] for m in agg["metrics"]):
            cells = [f"{_pct(by[pol, k]['estimate'])} [{_pct(by[pol, k]['low'])}, {_pct(by[pol, k]['high'])}]"
                     for k in ("mean", "median", "iqm", "optimality_gap")]
            lines.append(f"| {pol} | " + " | ".join(cells) + " |")
        if agg["probability_of_improvement"]:
            lines += ["", "| X | Y | P(X > Y) | interval |", "|---|---|---|---|"]
            for q in agg["probability_of_improvement"]:
                lines.append(f"| {q['x']} | {q['y']} | {q['estimate']:.2f} | [{q['low']:.2f}, {q['high']:.2f}] |")
    lines += group_lines(results)
    mixed = results.get("mixed_model")
    if mixed:
        sd = mixed.get("task_sd_median", mixed.get("task_sd"))
        converged = mixed.get("converged", True)
        lines += ["", f"## Mixed-effects logistic model ({mixed['model']})", "",
                  f"Log-odds of success against {mixed['reference']}; task random-intercept sd {sd:.2f} (posterior "
                  "median). Separated data (a policy at 0% or 100%) makes these unstable."
                  + ("" if converged else f" **The fit did not converge ({mixed.get('message', '')}): do not "
                     "read these effects.**"), "",
                  "| policy | log-odds vs reference | interval |", "|---|---|---|"]
        for e in mixed["effects"]:
            lines.append(f"| {e['policy']} | {e['log_odds']:.2f} | [{e['low']:.2f}, {e['high']:.2f}] |")
    seq = results.get("sequential")
    if seq and seq.get("decision") == "gate":
        lines += ["", f"## Sequential gate (anytime-valid, alpha {seq['alpha']:g} over tasks and looks, "
                  f"margin {seq['margin']:g})", "", "| task | pairs | verdict | episodes |", "|---|---|---|---|"]
        for task, g in seq["gate"].items():
            lines.append(f"| {task} | {g['pairs']} | {g['verdict']} | {seq['tasks'][task]['episodes']} of "
                         f"{seq['max_episodes']} |")
    elif seq:
        margin = f", margin {seq['margin']:g} for equivalence" if seq.get("margin") else ""
        lines += ["", f"## Sequential decisions (anytime-valid, alpha {seq['alpha']:g} over all pairs and looks{margin})",
                  "", "With early stopping, the McNemar p-values above are descriptive; these decisions are the "
                  "valid ones.", "",
                  "| task | A | B | A wins | B wins | pairs | log e-value | decision | episodes |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in seq["pairs"]:
            lines.append(f"| {p['task']} | {p['policy_a']} | {p['policy_b']} | {p['a_wins']} | {p['b_wins']} | "
                         f"{p['pairs']} | {p['log_e']:.2f} | {p['decision']} | "
                         f"{seq['tasks'][p['task']]['episodes']} of {seq['max_episodes']} |")
    lines += family_lines(results)
    lines += energy_lines(results)
    if figures:
        lines += [""] + [f"![{name}]({path})" for name, path in figures.items()]
    return "\n".join(lines) + "\n"


def write(run_dir: Path, results: dict[str, Any]) -> tuple[Path, Path]:
    """Write the figures, ``report.md`` and ``report.html`` into ``run_dir``."""
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    pngs = {"success per task": _png(success_figure(results)),
            "posterior violins": _png(violin_figure(results))}
    if results["pairwise"]:
        pngs["paired differences"] = _png(forest_figure(results))
    if results.get("aggregates"):
        pngs["performance profiles"] = _png(profile_figure(results))
    if results.get("energy"):
        pngs["success against energy"] = _png(energy_figure(results))
    if results.get("family", {}).get("axes"):
        pngs["family curves"] = _png(family_curves_figure(results))
        if len(results["family"]["axes"]) >= 2:
            pngs["family heatmap"] = _png(family_heatmap_figure(results))
    paths = {}
    for name, data in pngs.items():
        path = fig_dir / (name.replace(" ", "_") + ".png")
        path.write_bytes(data)
        paths[name] = f"figures/{path.name}"
    md = markdown(results, paths)
    (run_dir / "report.md").write_text(md)
    body = _markdown_to_html(markdown(results))
    imgs = "".join(
        f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,{base64.b64encode(d).decode()}">'
        f"<figcaption>{html.escape(n)}</figcaption></figure>" for n, d in pngs.items())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>evalsuite report: "
            f"{html.escape(results['suite'])}</title><style>{_CSS}</style></head><body>{body}{imgs}</body></html>\n")
    (run_dir / "report.html").write_text(page)
    return run_dir / "report.md", run_dir / "report.html"


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:14px}"
        "th{background:#f3f3f3}img{max-width:100%}figcaption{color:#555;font-size:13px}")


def _markdown_to_html(md: str) -> str:
    """Just enough Markdown (headings, paragraphs, tables, bold) for our own reports."""
    out, table = [], []

    def inline(text: str) -> str:
        text = html.escape(text)
        parts = text.split("**")
        return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

    def flush():
        if table:
            head, *body = [row for row in table if not set(row.replace("|", "").strip()) <= {"-"}]
            cells = lambda row: [c.strip() for c in row.strip().strip("|").split("|")]  # noqa: E731
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in cells(head)) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in cells(r)) + "</tr>" for r in body)
                       + "</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    return "\n".join(out)
