"""Energy-based policies (EBT-Policy): is the energy of the chosen action chunks a signal of failure?

Policies that report ``energy_mean`` (and ``descent_steps_mean``) in their episode info get, per
policy: the AUROC of the episode's mean chunk energy for failure (Mann-Whitney, with DeLong's
logit interval), success against energy (a logistic fit), and the mean number of descent steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import mannwhitneyu  # noqa: E402

from evalsuite.analyses import AnalysisInput  # noqa: E402
from evalsuite.plotting import subplots
from evalsuite.results import Results  # noqa: E402
from evalsuite.stats.auroc import auroc_interval  # noqa: E402
from evalsuite.stats.family import logistic_curve  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def compute(inp: AnalysisInput) -> dict[str, Any]:
    """Energy-based policies: does a high energy (the policy's own uncertainty) predict failure?
    AUROC of the episode's mean chunk energy for failure (Mann-Whitney), and success vs energy."""
    records, label, level = inp.records, inp.label, inp.level
    out: dict[str, Any] = {}
    tasks = sorted({r.task for r in records})
    for code, task in sorted({(r.policy_code, r.task) for r in records}):
        # per task: energy scales differ between tasks (and training seeds), so they are not pooled
        rows = [r for r in records if r.policy_code == code and r.task == task and r.is_outcome
                and "energy_mean" in r.policy_info]
        if not rows:
            continue
        e = np.array([r.policy_info["energy_mean"] for r in rows])
        y = np.array([r.success for r in rows])
        entry: dict[str, Any] = {"episodes": len(rows), "successes": int(y.sum()),
                                 "descent_steps_mean": float(np.mean([r.policy_info.get("descent_steps_mean", np.nan)
                                                                      for r in rows])),
                                 "stopped_by_gradient": float(np.mean([r.policy_info.get("stopped_by_gradient", np.nan)
                                                                       for r in rows])),
                                 "energy_success": float(e[y].mean()) if y.any() else None,
                                 "energy_failure": float(e[~y].mean()) if (~y).any() else None}
        if y.any() and (~y).any():
            test = mannwhitneyu(e[~y], e[y], alternative="two-sided")
            entry["auroc_failure"] = float(test.statistic / ((~y).sum() * y.sum()))
            entry["auroc_p_value"] = float(test.pvalue)
            if (~y).sum() >= 2 and y.sum() >= 2:
                ci = auroc_interval(e[~y], e[y], level)
                entry["auroc_low"], entry["auroc_high"] = ci.low, ci.high
                steps = np.array([r.policy_info.get("descent_steps_mean", np.nan) for r in rows])
                if np.isfinite(steps).all():  # do episodes that needed longer descents fail more?
                    s_ci = auroc_interval(steps[~y], steps[y], level)
                    entry["steps_auroc_failure"] = s_ci.estimate
                    entry["steps_auroc_low"], entry["steps_auroc_high"] = s_ci.low, s_ci.high
        else:
            entry["auroc_failure"] = None
        if e.max() > e.min():
            curve = logistic_curve(e, y, float(e.min()), float(e.max()), level=level, name="energy")
            entry["curve"] = {"x": curve.x, "p": curve.p, "low": curve.low, "high": curve.high, "slope": curve.slope,
                              "note": curve.note}
        entry["points"] = [[float(a), bool(b)] for a, b in zip(e, y, strict=False)]
        out[label[code] if len(tasks) == 1 else f"{label[code]} ({task})"] = entry
    return out


def report(section: dict[str, Any], results: Results) -> list[str]:
    lines = ["", "## Energy as an uncertainty signal", "",
             "Energy-based policies report the energy of every action chunk they choose, per task (energy scales "
             "differ between tasks and training seeds). AUROC: the probability that a failed episode had a higher "
             "mean energy (or needed more descent steps) than a successful one (0.5: no signal), with DeLong's "
             f"{100 * results.options.level:g}% interval on the logit scale (episodes only).", "",
             "| policy | episodes | successes | mean energy (success) | mean energy (failure) | energy AUROC for "
             "failure | p | descent steps | stopped by gradient | steps AUROC for failure |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for pol, e in section.items():
        p = e.get("auroc_p_value")
        auroc = _fmt(e["auroc_failure"]) + (f" [{e['auroc_low']:.3f}, {e['auroc_high']:.3f}]" if "auroc_low" in e else "")
        steps = (f"{e['steps_auroc_failure']:.3f} [{e['steps_auroc_low']:.3f}, {e['steps_auroc_high']:.3f}]"
                 if "steps_auroc_failure" in e else "n/a")
        stopped = e.get("stopped_by_gradient")
        stopped_text = "n/a" if stopped is None or stopped != stopped else f"{100 * stopped:.0f}%"
        lines.append(f"| {pol} | {e['episodes']} | {e['successes']} | {_fmt(e['energy_success'])} | "
                     f"{_fmt(e['energy_failure'])} | {auroc} | {'' if p is None else f'{p:.2g}'} | "
                     f"{e['descent_steps_mean']:.1f} | {stopped_text} | {steps} |")
    return lines


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def figures(section: dict[str, Any], results: Results) -> dict[str, Any]:
    return {"success against energy": _figure(section)}


def metrics(section: dict[str, Any]) -> dict[str, float]:
    return {f"{pol}/energy_auroc_failure": e["auroc_failure"] for pol, e in section.items()
            if e.get("auroc_failure") is not None}


def _figure(section: dict[str, Any]) -> Figure:
    """Success against the episode's mean chunk energy, per energy-based policy."""
    fig: Figure  # plotting.subplots is typed Any (matplotlib's Figure and Axes)
    fig, ax = subplots(figsize=(5, 3.2))
    for i, (pol, e) in enumerate(section.items()):
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
