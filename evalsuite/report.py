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
    from evalsuite import analyses

    for spec, section_lines in analyses.present(results, "report"):
        lines += section_lines(results[spec.id], results)
    if figures:
        lines += [""] + [f"![{name}]({path})" for name, path in figures.items()]
    return "\n".join(lines) + "\n"


def _videos(run_dir: Path, results: dict[str, Any]) -> dict[tuple[str, str], list[tuple[str, str, str, str]]]:
    """(task, policy) -> [(trial id, outcome, video, poster)] of the episodes rendered into RUN/videos/."""
    index_path = run_dir / "videos" / "index.json"
    if not index_path.exists():
        return {}
    import json

    from evalsuite.journal import JOURNAL_FILE, finished_trials, read

    index = json.loads(index_path.read_text())
    final = finished_trials(read(run_dir / JOURNAL_FILE), results["options"]["max_attempts"])
    labels = {entry["code"]: label for label, entry in results["policies"].items()}
    out: dict[tuple[str, str], list[tuple[str, str, str, str]]] = {}
    for trial, name in sorted(index.items()):
        r = final.get(trial)
        if r is None or r.policy_code not in labels:
            continue
        out.setdefault((r.task, labels[r.policy_code]), []).append(
            (trial, r.status.replace("_", " "), f"videos/{name}", f"videos/{name.removesuffix('.mp4')}.png"))
    return out


def _gallery(videos: dict[tuple[str, str], list[tuple[str, str, str, str]]]) -> str:
    """Rollout videos per task and policy: the last frame as poster, playing inline."""
    if not videos:
        return ""
    cells = []
    for (task, policy), rows in videos.items():
        clips = "".join(f'<figure><video controls preload="none" width="256" poster="{html.escape(poster)}" '
                        f'src="{html.escape(path)}"></video><figcaption>{html.escape(trial)}: {html.escape(outcome)}'
                        f"</figcaption></figure>" for trial, outcome, path, poster in rows)
        cells.append(f"<h3>{html.escape(task)} - {html.escape(policy)}</h3><div class='gallery'>{clips}</div>")
    return "<h2>Videos</h2>" + "".join(cells)


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
    from evalsuite import analyses

    for spec, draw in analyses.present(results, "figures"):
        pngs.update({name: _png(fig) for name, fig in draw(results[spec.id], results).items()})
    paths = {}
    for name, data in pngs.items():
        path = fig_dir / (name.replace(" ", "_") + ".png")
        path.write_bytes(data)
        paths[name] = f"figures/{path.name}"
    videos = _videos(run_dir, results)
    links = "".join(f"- {task}, {policy}: " + ", ".join(f"[{trial} ({outcome})]({path})" for trial, outcome, path, _ in rows)
                    + "\n" for (task, policy), rows in videos.items())
    (run_dir / "report.md").write_text(markdown(results, paths) + (f"\n## Videos\n\n{links}" if links else ""))
    body = _markdown_to_html(markdown(results))
    imgs = "".join(
        f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,{base64.b64encode(d).decode()}">'
        f"<figcaption>{html.escape(n)}</figcaption></figure>" for n, d in pngs.items())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>evalsuite report: "
            f"{html.escape(results['suite'])}</title><style>{_CSS}</style></head><body>{body}{imgs}"
            f"{_gallery(videos)}</body></html>\n")
    (run_dir / "report.html").write_text(page)
    return run_dir / "report.md", run_dir / "report.html"


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:14px}"
        "th{background:#f3f3f3}img{max-width:100%}figcaption{color:#555;font-size:13px}"
        ".gallery{display:flex;flex-wrap:wrap;gap:8px}.gallery figure{margin:0}")


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
