"""Comparison reports from a run's typed results: ``report.md`` and a self-contained ``report.html``.

Both read in the order a person asks their questions: the comparison that was asked for (a
headline, then tasks x policies), the rollout videos, the analysis sections (task progress,
milestones and failure modes, MDP families, energy), and last the statistical detail. Figures:
per-task success with interval bars; Beta posterior violins (the LBM paper's presentation, with
the correct two-sided tests beside them); a forest plot of the paired differences; performance
profiles over tasks. The HTML embeds the figures as base64 PNG (it can be mailed or attached to a
CI run) and links the videos in ``videos/``. Markdown becomes HTML through markdown-it-py
(CommonMark with tables) with raw HTML off, so a user-supplied string (an instruction, a label)
renders as text, never as markup.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite import fsio, names
from evalsuite.plotting import colors, subplots
from evalsuite.results import Results

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def success_figure(results: Results) -> Figure:
    tasks = results.tasks
    policies = list(results.policies)
    width = 0.8 / max(1, len(policies))
    fig: Figure  # plotting.subplots is typed Any (matplotlib's Figure and Axes)
    fig, ax = subplots(figsize=(max(6, 1.6 * len(tasks) * max(1, len(policies)) / 2), 3.8))
    for j, pol in enumerate(policies):
        xs, ys, lo, hi = [], [], [], []
        for i, task in enumerate(tasks):
            r = results.task(task, pol)
            if r.rate is None:
                continue
            xs.append(i + (j - (len(policies) - 1) / 2) * width)
            ys.append(r.rate)
            lo.append(r.rate - r.ci_low)
            hi.append(r.ci_high - r.rate)
        bars = ax.bar(xs, ys, width=width * 0.9, label=pol, yerr=[lo, hi], capsize=3)
        for x, y, bar in zip(xs, ys, bars.patches, strict=True):
            if y == 0:  # a 0% bar has no height: mark it, so "never succeeded" is seen, not missed
                ax.plot([x - width * 0.45, x + width * 0.45], [0.006, 0.006], color=bar.get_facecolor(), lw=3,
                        solid_capstyle="butt", gid="zero-bar")
                ax.annotate("0%", (x, 0.012), ha="center", va="bottom", fontsize=7)
    level = results.options.level
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"success rate ({100 * level:g}% {results.options.interval} CI)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def forest_figure(results: Results) -> Figure:
    pairs = results.pairwise
    fig: Figure  # plotting.subplots is typed Any (matplotlib's Figure and Axes)
    fig, ax = subplots(figsize=(7, 0.45 * max(2, len(pairs)) + 1))
    labels = []
    for i, p in enumerate(pairs):
        y = len(pairs) - 1 - i
        color = "tab:red" if p.significant else "tab:gray"
        if p.difference is not None:
            ax.errorbar(p.difference, y, xerr=[[p.difference - p.ci_low], [p.ci_high - p.difference]],
                        fmt="o", color=color, capsize=3)
        labels.append(f"{p.task}: {p.policy_a} - {p.policy_b}")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(pairs)), labels[::-1], fontsize=8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(f"paired difference A - B (red: significant, {results.options.correction})")
    return fig


def violin_figure(results: Results) -> Figure:
    """Per task, each policy's Beta(successes + 1, failures + 1) posterior density drawn as a violin
    (exact densities, no sampling), with the 95% equal-tailed credible interval marked."""
    import numpy as np
    from scipy import stats

    tasks, policies = results.tasks, list(results.policies)
    fig: Figure  # plotting.subplots is typed Any (matplotlib's Figure and Axes)
    fig, axes = subplots(1, len(tasks), figsize=(max(4, 0.9 * len(policies)) * len(tasks) / 1.5 + 1, 3.6),
                         sharey=True, squeeze=False)
    grid = np.linspace(0, 1, 401)
    palette = colors()
    for ax, task in zip(axes[0], tasks, strict=False):
        for j, pol in enumerate(policies):
            r = results.task(task, pol)
            dist = stats.beta(r.posterior_alpha, r.posterior_beta)
            dens = dist.pdf(grid)
            dens = 0.42 * dens / dens.max()
            ax.fill_betweenx(grid, j - dens, j + dens, color=palette[j % len(palette)], alpha=0.6, lw=0)
            ax.vlines(j, *dist.ppf([0.025, 0.975]), color="black", lw=1)
            ax.plot(j, dist.mean(), "o", color="black", ms=3)
        ax.set_xticks(range(len(policies)), policies, rotation=30, ha="right", fontsize=8)
        ax.set_title(task, fontsize=9)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("success rate (Beta(1,1) posterior)")
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # room for long policy labels
    return buf.getvalue()


def _policy_notes(results: Results) -> list[str]:
    """One line per policy that describes itself, e.g. its inference cost in network evaluations."""
    lines = [f"- {label}: " + fsio.one_line(", ".join(f"{k} {v}" for k, v in pol["notes"].items()))
             for label, pol in results.policies.items() if pol.get("notes")]
    return ["Policies:", "", *lines, ""] if lines else []


def _points(x: float | None) -> str:
    """A difference of rates in percentage points, with its sign."""
    return "n/a" if x is None else f"{100 * x:+.1f}"


def _verdict(low: float | None, high: float | None, a: str, b: str) -> str:
    if low is not None and low > 0:
        return f"**{a} is better**"
    if high is not None and high < 0:
        return f"**{b} is better**"
    return "no difference shown at this level (the interval includes 0)"


def headline(results: Results) -> list[str]:
    """The comparison that was asked for, in words: a gate's verdicts, algorithms against each
    other, two policies against each other, or a ranking of several."""
    level = f"{100 * results.options.level:g}%"
    policies = list(results.policies)
    seq, groups = results.section("sequential"), results.section("groups")
    lines: list[str] = []
    if seq and seq.get("decision") == "gate":
        verdicts = "; ".join(f"{task}: **{g['verdict']}**" for task, g in seq["gate"].items())
        lines.append(f"Sequential regression gate of {', '.join(policies)} (alpha {seq['alpha']:g}, margin "
                     f"{seq['margin']:g}): {verdicts}.")
    elif groups and groups.get("comparisons"):
        lines += _groups_headline(groups["comparisons"], level)
    elif len(policies) == 2:
        lines += _two_policies_headline(results, level)
    elif len(policies) > 2:
        lines += _ranking_headline(results, policies)
    elif policies:
        means = results.aggregate
        if means and len(results.tasks) > 1:
            m = means[0]
            lines.append(f"{m.policy}: mean success {_pct(m.mean)}% [{_pct(m.ci_low)}, {_pct(m.ci_high)}] over "
                         f"{m.tasks} tasks ({level}).")
    if seq and seq.get("decision") != "gate" and seq.get("pairs"):
        lines += ["", "Sequential decisions (anytime-valid; these, not the p-values, are the valid tests): "
                  + "; ".join(f"{q['task']} {q['policy_a']} vs {q['policy_b']}: {q['decision']}" for q in seq["pairs"])
                  + "."]
    return lines + [""] if lines else []


def _groups_headline(comparisons: list[dict[str, Any]], level: str) -> list[str]:
    """Algorithms (groups of training seeds) against each other: each pair's difference of means."""
    lines = []
    for c in comparisons:
        d = c["mean_difference"]
        lines.append(f"- **{c['x']} vs {c['y']}** (algorithms over their training seeds): mean {c['x']} - "
                     f"{c['y']} = {_points(d['estimate'])} points [{_points(d['low'])}, {_points(d['high'])}] "
                     f"({level}; covers training seeds and initial conditions): "
                     f"{_verdict(d['low'], d['high'], c['x'], c['y'])}.")
    return lines


def _two_policies_headline(results: Results, level: str) -> list[str]:
    """Two policies: the difference of their means over tasks, then each task's paired comparison."""
    lines = []
    if results.mean_differences:
        d = results.mean_differences[0]
        lines.append(f"**{d.policy_a} vs {d.policy_b}** over {len(results.tasks)} tasks: mean {d.policy_a} - "
                     f"{d.policy_b} = {_points(d.difference)} points [{_points(d.ci_low)}, {_points(d.ci_high)}] "
                     f"({level} {d.method}; initial conditions only): "
                     f"{_verdict(d.ci_low, d.ci_high, d.policy_a, d.policy_b)}.")
        lines.append("")
    for p in results.pairwise:
        ra, rb = results.task(p.task, p.policy_a), results.task(p.task, p.policy_b)
        lines.append(f"- {p.task}: {p.policy_a} {_pct(ra.rate)}% vs {p.policy_b} {_pct(rb.rate)}%, difference "
                     f"{_points(p.difference)} points [{_points(p.ci_low)}, {_points(p.ci_high)}] ({level} "
                     f"paired, {p.n_pairs} pairs), exact McNemar p = {p.p_value:.3g}"
                     + (f" ({p.correction}: {p.p_adjusted:.3g})" if len(results.pairwise) > 1 else "")
                     + (": " + _verdict(p.simultaneous_low, p.simultaneous_high, p.policy_a, p.policy_b)
                        if p.significant else ": no difference shown"))
    return lines


def _ranking_headline(results: Results, policies: list[str]) -> list[str]:
    """Three or more policies: a ranking (by the mean over tasks, or on the one task), and how many
    paired comparisons are significant."""
    lines = []
    if len(results.tasks) > 1:
        complete = sorted((x for x in results.aggregate if x.tasks == len(results.tasks)), key=lambda x: -x.mean)
        left_out = [p for p in policies if p not in {x.policy for x in complete}]
        if complete:
            lines.append("Ranked by mean success over tasks: " + "; ".join(
                f"{x.policy} {_pct(x.mean)}% [{_pct(x.ci_low)}, {_pct(x.ci_high)}]" for x in complete) + "."
                + (f" Not ranked (no outcome on some task): {', '.join(left_out)}." if left_out else ""))
    else:
        task = results.tasks[0]
        ranked_rows = sorted((results.task(task, p) for p in policies), key=lambda r: -(r.rate or 0))
        lines.append(f"Ranked on {task}: " + "; ".join(
            f"{r.policy} {_pct(r.rate)}% [{_pct(r.ci_low)}, {_pct(r.ci_high)}]" for r in ranked_rows) + ".")
    significant = [p for p in results.pairwise if p.significant]
    lines.append("")
    lines.append(f"{len(significant)} of {len(results.pairwise)} paired comparisons significant "
                 f"({results.options.correction} correction); the letters below group the policies that "
                 "cannot be told apart.")
    return lines


def summary_matrix(results: Results) -> list[str]:
    """Tasks x policies: success % [interval] and the task's group letter."""
    policies = list(results.policies)
    letters = results.letters
    lines = ["Success % [" + f"{100 * results.options.level:g}% " + results.options.interval
             + " interval] and group letter (same letter: cannot be told apart; a task that would need over 26 "
             "letters shows each policy's rank range instead, the ranks the significant comparisons leave it).", "",
             "| task | " + " | ".join(policies) + " |", "|---" * (len(policies) + 1) + "|"]
    for task in results.tasks:
        row = []
        for pol in policies:
            r = results.task(task, pol)
            row.append(f"{_pct(r.rate)} [{_pct(r.ci_low)}, {_pct(r.ci_high)}] {letters.get(task, {}).get(pol, '')}")
        lines.append(f"| {task} | " + " | ".join(row) + " |")
    if len(results.tasks) > 1 and results.aggregate:
        means = {a.policy: a for a in results.aggregate}
        lines.append("| **mean** | " + " | ".join(
            f"{_pct(means[p].mean)} [{_pct(means[p].ci_low)}, {_pct(means[p].ci_high)}]" if p in means else ""
            for p in policies) + " |")
    return lines + [""]


def introduction(results: Results) -> list[str]:
    t = results.trials
    return [f"# evalsuite report: {results.suite}", "",
            f"Seed {results.seed}, {results.episodes_per_task} initial conditions per task, every policy on every "
            f"initial condition (paired), blind randomized order. Trials: {t.finished}/{t.planned} finished; "
            f"{t.policy_errors} policy errors (exceptions, non-finite or wrong-shaped actions, time-outs, "
            f"simulator instability: counted as failures of that policy); {t.missing} missing after every "
            "retry of an infrastructure error (shown with the worst case: counted as failures).", ""]


def summary_lines(results: Results) -> list[str]:
    return ["## Summary", "", *headline(results), *_policy_notes(results), *summary_matrix(results)]


def section_lines(results: Results) -> list[tuple[str, list[str]]]:
    """(section id, markdown lines) of every analysis section present in this run."""
    from evalsuite import analyses

    return [(spec.id, render(results.section(spec.id), results))
            for spec, render in analyses.present(results, "report", where="sections")]


def detail_lines(results: Results) -> list[str]:
    """The statistical detail: every table behind the summary, then the detail sections."""
    from evalsuite import analyses

    opts = results.options
    level = f"{100 * opts.level:g}%"
    lines = ["", "## Statistical detail", "",
             f"### Success per task ({level} {opts.interval} intervals)", "",
             "Policies of a task that share a group letter cannot be told apart (past 26 letters: each policy's "
             "rank range, from the significant comparisons; paired tests, "
             f"{opts.correction} correction).", "",
             "| task | policy | successes / n | rate % | CI % | group | policy errors | missing | if missing failed % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results.per_task:
        group = results.letters.get(r.task, {}).get(r.policy, "")
        w = r.worst_case
        worst = f"{_pct(w.rate)} [{_pct(w.ci_low)}, {_pct(w.ci_high)}]" if w else ""
        lines.append(f"| {r.task} | {r.policy} | {r.successes} / {r.n} | {_pct(r.rate)} | "
                     f"[{_pct(r.ci_low)}, {_pct(r.ci_high)}] | {group} | {r.policy_errors} | {r.missing} | {worst} |")
    pairs = results.pairwise
    sim_level = pairs[0].simultaneous_level if pairs else None
    sim = f"{100 * sim_level:.4g}%" if sim_level is not None else ""
    lines += ["", f"### Paired comparisons (exact McNemar, {opts.correction} across all {len(pairs)})", "",
              f"CI: Newcombe's paired interval at {level} for one comparison alone. Simultaneous CI: at {sim}, "
              f"adjusted for the {len(pairs)} comparisons to go with the {opts.correction} correction "
              "(Bonferroni for holm; Benjamini-Yekutieli false-coverage-rate for bh). *significant*: adjusted p "
              "below alpha and the simultaneous interval excludes 0, which is what the letters use.", "",
              "| task | A | B | A only | B only | diff A-B % | CI % | simultaneous CI % | p | p adj. | |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        simult = (f"[{_pct(p.simultaneous_low)}, {_pct(p.simultaneous_high)}]"
                  if p.simultaneous_low is not None else "")
        wp = p.worst_case
        note = (f" (missing as failures: {_pct(wp.difference)} [{_pct(wp.ci_low)}, {_pct(wp.ci_high)}])"
                if wp else "")
        lines.append(f"| {p.task} | {p.policy_a} | {p.policy_b} | {p.a_only} | {p.b_only} | "
                     f"{_pct(p.difference)}{note} | [{_pct(p.ci_low)}, {_pct(p.ci_high)}] | {simult} | "
                     f"{p.p_value:.3g} | {p.p_adjusted:.3g} | {'**significant**' if p.significant else ''} |")
    method = results.aggregate[0].method if results.aggregate else ""
    lines += ["", f"### Mean success over tasks ({level} {method})", "",
              "| policy | tasks | mean % | CI % | if missing failed % |", "|---|---|---|---|---|"]
    for a in results.aggregate:
        wm = a.worst_case
        worst = f"{_pct(wm.mean)} [{_pct(wm.ci_low)}, {_pct(wm.ci_high)}]" if wm else ""
        lines.append(f"| {a.policy} | {a.tasks} | {_pct(a.mean)} | [{_pct(a.ci_low)}, {_pct(a.ci_high)}] | {worst} |")
    if results.mean_differences:
        lines += ["", f"### Paired differences of the mean over tasks ({level}, "
                  f"{results.mean_differences[0].method})", "",
                  "| A | B | mean A - mean B % | CI % |", "|---|---|---|---|"]
        for d in results.mean_differences:
            lines.append(f"| {d.policy_a} | {d.policy_b} | {_pct(d.difference)} | [{_pct(d.ci_low)}, {_pct(d.ci_high)}] |")
    for spec, render in analyses.present(results, "report", where="detail"):  # aggregates, groups, mixed, ...
        lines += render(results.section(spec.id), results)
    return lines


# One clip: (trial id, outcome in words, video path, poster path), relative to the run folder.
Clip = tuple[str, str, str, str]


def video_clips(run_dir: Path, results: Results, index: dict[str, str], final: dict[str, Any],
                max_steps: dict[str, int]) -> dict[tuple[str, str], list[Clip]]:
    """(task, policy) -> the clips of the video ``index`` (trial id -> file in RUN/videos/), each
    captioned with its outcome (and, for a failure with task progress, its failure mode) from the
    run's ``final`` records; a file absent or damaged is shown as missing."""
    from evalsuite import video
    from evalsuite.analyses.progress import failure_category

    labels = {entry["code"]: label for label, entry in results.policies.items()}
    out: dict[tuple[str, str], list[Clip]] = {}
    for trial, name in sorted(index.items()):
        r = final.get(trial)
        if r is None or r.policy_code not in labels:
            continue
        outcome = r.status.replace("_", " ")
        if not r.success and (r.milestones or r.status == "policy_error"):
            outcome = f"failure: {failure_category(r, max_steps.get(r.task))}"
        # a video absent, empty or not where the index says: "" (shown as missing, not linked)
        out.setdefault((r.task, labels[r.policy_code]), []).append(
            (trial, outcome, *video.clip_files(run_dir, trial, name)))
    return out


def _gallery(videos: dict[tuple[str, str], list[Clip]]) -> str:
    """Rollout videos per task and policy: the last frame as poster, playing inline."""
    if not videos:
        return ""
    cells = []
    for (task, policy), rows in videos.items():
        clips = "".join(('<figure><video controls preload="metadata" width="256"'
                         + (f' poster="{html.escape(poster)}"' if poster else "")
                         + f' src="{html.escape(path)}"></video>' if path else "<figure><p>video missing</p>")
                        + f"<figcaption>{html.escape(trial)}: {html.escape(outcome)}</figcaption></figure>"
                        for trial, outcome, path, poster in rows)
        cells.append(f"<h3>{html.escape(task)} - {html.escape(policy)}</h3><div class='gallery'>{clips}</div>")
    return "<h2>Rollout videos</h2>" + "".join(cells)


def _figures(results: Results) -> dict[str, dict[str, bytes]]:
    """PNG figures by the part of the report they belong to: summary, detail, or a section id."""
    parts: dict[str, dict[str, bytes]] = {
        "summary": {"success per task": _png(success_figure(results)),
                    "posterior violins": _png(violin_figure(results))},
        "detail": {}}
    if results.pairwise:
        parts["detail"]["paired differences"] = _png(forest_figure(results))
    from evalsuite import analyses

    for spec, draw in analyses.present(results, "figures"):
        drawn = {name: _png(fig) for name, fig in draw(results.section(spec.id), results).items()}
        target = "detail" if spec.part == "detail" else spec.id  # a detail section's figures join the detail's
        parts[target] = {**parts.get(target, {}), **drawn}
    return parts


def write(run_dir: Path, results: Results, videos: dict[tuple[str, str], list[Clip]] | None = None) -> tuple[Path, Path]:
    """Write the figures, ``report.md`` and ``report.html`` into ``run_dir``; ``videos``: the
    gallery (``video_clips``), none by default."""
    fig_dir = fsio.make_dir(run_dir / names.FIGURES, root=run_dir)
    parts = _figures(results)
    for figures in parts.values():
        for name, data in figures.items():
            fsio.write_bytes(fig_dir / _figure_file(name), data, root=run_dir)
    videos = videos or {}
    sections = section_lines(results)

    def md_figures(part: str) -> list[str]:
        return [""] + [f"![{name}](figures/{_figure_file(name)})" for name in parts.get(part, {})] + [""]

    links = ["", "## Rollout videos", ""] + [
        f"- {task}, {policy}: " + ", ".join(f"[{trial} ({outcome})]({path})" if path else
                                            f"{trial} ({outcome}; video missing)" for trial, outcome, path, _ in rows)
        for (task, policy), rows in videos.items()] if videos else []
    md = [*introduction(results), *summary_lines(results), *md_figures("summary"), *links]
    for section_id, lines in sections:
        md += lines + md_figures(section_id)
    md += detail_lines(results) + md_figures("detail")
    fsio.write_text(run_dir / names.REPORT_MD, "\n".join(md) + "\n")

    body = [_to_html(introduction(results) + summary_lines(results)), _html_figures(parts["summary"]),
            _gallery(videos)]
    for section_id, lines in sections:
        body += [_to_html(lines), _html_figures(parts.get(section_id, {}))]
    body += [_to_html(detail_lines(results)), _html_figures(parts["detail"])]
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
            f"<title>evalsuite report: "
            f"{html.escape(results.suite)}</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")
    fsio.write_text(run_dir / names.REPORT_HTML, page)
    return run_dir / names.REPORT_MD, run_dir / names.REPORT_HTML


def _figure_file(name: str) -> str:
    return name.replace(" ", "_") + ".png"


def _html_figures(figures: dict[str, bytes]) -> str:
    return "".join(f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,{base64.b64encode(d).decode()}">'
                   f"<figcaption>{html.escape(n)}</figcaption></figure>" for n, d in figures.items())


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:14px}"
        "th{background:#f3f3f3}img{max-width:100%}figcaption{color:#555;font-size:13px}"
        ".gallery{display:flex;flex-wrap:wrap;gap:8px}.gallery figure{margin:0}")


def _to_html(lines: list[str]) -> str:
    """Markdown lines as HTML (CommonMark and tables; raw HTML in the text is escaped, not obeyed)."""
    from markdown_it import MarkdownIt

    rendered: str = MarkdownIt("commonmark", {"html": False}).enable("table").render("\n".join(lines) + "\n")
    return rendered  # markdown-it types render as Any (a renderer may be swapped); its HTML renderer gives str
