"""`evalsuite agreement sim=RUN real=RUN`: does the simulation rank policies as the robot does?

Per-policy success in each run folder (every final episode of the policy, over all the folder's
tasks; policies matched by label), then Pearson's r with its Fisher z interval, Spearman's rho and
SimplerEnv's MMRV with bootstrap intervals over episodes (evalsuite.stats.simreal), and a scatter
figure. Writes agreement.md, agreement.json and agreement.png into ``out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evalsuite import fsio
from evalsuite.commands.leaderboard import _refuse_blind_trial, label_cell
from evalsuite.commands.options import Option, default_out, folder, integer, number, parse
from evalsuite.errors import UsageError
from evalsuite.stats.intervals import wilson_bounds

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from evalsuite.stats.simreal import SimReal

OPTIONS = (
    Option("sim", "run folder of the policies in simulation", parse=folder),
    Option("real", "run folder of the same policies (same labels) on the robot", parse=folder),
    Option("out", "folder for agreement.md, .json and .png (default: reports/agreement-<hash of the two folders>)",
           parse=folder),
    Option("level", "confidence level of the intervals", "0.95", number(0.0, 1.0)),
    Option("bootstrap_reps", "bootstrap resamples of the episodes", "10000", integer(100, 1_000_000)),
    Option("seed", "seed of the bootstrap", "0", integer(0)),
)
USAGE = "usage: evalsuite agreement sim=RUN real=RUN [out=DIR]"
MD, JSON, PNG = "agreement.md", "agreement.json", "agreement.png"


def success_counts(path: Path) -> dict[str, tuple[int, int]]:
    """label -> (successes, episodes) over the folder's final episodes."""
    from evalsuite.api import open_run

    _refuse_blind_trial(path)
    frame = open_run(path).episodes()
    counts: dict[str, tuple[int, int]] = {}
    for label, success in zip(frame["policy"], frame["success"], strict=True):
        k, n = counts.get(str(label), (0, 0))
        counts[str(label)] = (k + bool(success), n + 1)
    return counts


def compare(sim: dict[str, tuple[int, int]], real: dict[str, tuple[int, int]], *, rng: np.random.Generator,
            level: float = 0.95, reps: int = 10_000) -> SimReal:
    """The statistics over the policies both folders have (UsageError below 2)."""
    from evalsuite.stats.simreal import sim_real_agreement

    shared = sorted(set(sim) & set(real))
    if len(shared) < 2:
        raise UsageError(f"the two run folders share {len(shared)} policy label(s) ({', '.join(shared) or 'none'}); "
                         f"agreement needs at least 2 (simulation: {', '.join(sorted(sim))}; robot: "
                         f"{', '.join(sorted(real))})")
    return sim_real_agreement(shared, np.array([sim[p][0] for p in shared]), np.array([sim[p][1] for p in shared]),
                              np.array([real[p][0] for p in shared]), np.array([real[p][1] for p in shared]),
                              rng=rng, level=level, reps=reps)


def markdown(result: SimReal, sim_path: Path, real_path: Path, only_sim: list[str], only_real: list[str]) -> list[str]:
    level = f"{100 * result.pearson.level:g}%"

    def iv(x: float, low: float, high: float, digits: int = 2) -> str:
        return f"{x:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"

    lines = ["# evalsuite agreement: simulation vs robot", "",
             f"Simulation: {label_cell(str(sim_path))}; robot: {label_cell(str(real_path))}; "
             f"{len(result.policies)} policies in both.", "",
             f"| statistic | value [{level} interval] | interval |", "|---|---|---|",
             f"| Pearson r | {iv(result.pearson.estimate, result.pearson.low, result.pearson.high)} | "
             f"{result.pearson.method}, over policies |",
             f"| Spearman rho | {iv(result.spearman.estimate, result.spearman.low, result.spearman.high)} | "
             f"{result.spearman.method}, {result.spearman.reps} resamples |",
             f"| MMRV | {iv(result.mmrv.estimate, result.mmrv.low, result.mmrv.high, 3)} | "
             f"{result.mmrv.method}, {result.mmrv.reps} resamples |", "",
             "MMRV (SimplerEnv's mean maximum rank violation): for each policy, the largest real success gap to a "
             "policy the simulation orders the other way; averaged over policies. 0: every pair ordered alike; "
             "lower is better. Noise alone makes it positive.", "",
             f"| # | policy | simulation % [{level} Wilson] | robot % [{level} Wilson] |", "|---|---|---|---|"]
    for i, p in enumerate(result.policies):
        cells = []
        for rate, n in ((result.sim_rate[i], result.sim_episodes[i]), (result.real_rate[i], result.real_episodes[i])):
            low, high = (float(b) for b in wilson_bounds(round(rate * n), n, level=result.pearson.level))
            cells.append(f"{100 * rate:.1f} [{100 * low:.1f}, {100 * high:.1f}] ({n})")
        lines.append(f"| {i + 1} | {label_cell(p)} | {cells[0]} | {cells[1]} |")
    if only_sim or only_real:
        lines += ["", "Not compared (in one folder only): "
                  + ", ".join([f"{label_cell(p)} (simulation)" for p in only_sim]
                              + [f"{label_cell(p)} (robot)" for p in only_real]) + "."]
    return lines


def figure(result: SimReal) -> Figure:
    from evalsuite.plotting import subplots

    fig: Figure
    fig, ax = subplots(figsize=(5.5, 5))
    level = result.pearson.level
    for i in range(len(result.policies)):
        xs, xn = result.sim_rate[i], result.sim_episodes[i]
        ys, yn = result.real_rate[i], result.real_episodes[i]
        xl, xh = (float(b) for b in wilson_bounds(round(xs * xn), xn, level=level))
        yl, yh = (float(b) for b in wilson_bounds(round(ys * yn), yn, level=level))
        ax.errorbar(xs, ys, xerr=[[xs - xl], [xh - xs]], yerr=[[ys - yl], [yh - ys]], fmt="o", color=f"C{i % 10}",
                    capsize=2, lw=1)
        ax.annotate(str(i + 1), (xs, ys), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("success in simulation")
    ax.set_ylabel("success on the robot")
    ax.set_title(f"r = {result.pearson.estimate:.2f}, rho = {result.spearman.estimate:.2f}, "
                 f"MMRV = {result.mmrv.estimate:.3f} (policies numbered as in agreement.md)", fontsize=9)
    return fig


def run(args: list[str]) -> int:
    """Compare per-policy success in two run folders; exit 2 on bad input."""
    from evalsuite import names
    from evalsuite.report import _png

    v = parse(args, OPTIONS)
    for key in ("sim", "real"):
        if key not in v:
            raise UsageError(f"missing {key}=RUN; {USAGE}")
        if not (v[key] / names.PLAN).exists():
            raise UsageError(f"{key}={v[key]} is not a run folder (no plan.json)")
    sim_path, real_path = v["sim"], v["real"]
    sim, real = success_counts(sim_path), success_counts(real_path)
    result = compare(sim, real, rng=np.random.default_rng(v["seed"]), level=v["level"], reps=v["bootstrap_reps"])
    out = v["out"] if "out" in v else default_out(
        {"sim": str(sim_path.resolve()), "real": str(real_path.resolve())}, prefix="agreement")
    out = fsio.make_dir(out)
    lines = markdown(result, sim_path, real_path, sorted(set(sim) - set(real)), sorted(set(real) - set(sim)))
    fsio.write_text(out / MD, "\n".join(lines + ["", f"![sim vs real]({PNG})"]) + "\n")
    fsio.write_bytes(out / PNG, _png(figure(result)))
    fsio.write_json(out / JSON, {"sim": str(sim_path), "real": str(real_path), **result.to_dict(), "seed": v["seed"]})
    print("\n".join(lines))
    print(f"agreement: {out / MD}, {out / PNG}")
    return 0

