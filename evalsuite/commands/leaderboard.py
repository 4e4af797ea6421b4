"""`evalsuite leaderboard RUN [RUN ...]`: policies across run folders ranked by Bradley-Terry.

Two policies are compared where they met the same initial condition: the same suite, task and
environment seed (``ic_seed``), in one run folder or in two (evalsuite derives the seeds from the
root seed, task and index, so runs with the same root seed share them). On each shared condition
the pair gets one judgment: 1 when only the first succeeded, 0 when only the second, 0.5 when both
or neither did (a policy with episodes in several folders contributes its success rate there, so
the judgment is ``0.5 + (rate_a - rate_b) / 2``). The judgments of one condition share its
episodes, so they form one cluster for the intervals (evalsuite.stats.ranking). A policy is the
same policy in every folder where it has the same label.

Writes leaderboard.md, a self-contained leaderboard.html (a figure embedded, every label escaped)
and leaderboard.json into ``out``; logs the strengths to MLflow when ``tracking_uri`` is given.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evalsuite import fsio
from evalsuite.commands.options import Option, default_out, folder, non_negative, number, parse, tracking_uri
from evalsuite.errors import UsageError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from evalsuite.stats.ranking import Ranking

OPTIONS = (
    Option("out", "folder for leaderboard.md, .html and .json (default: reports/leaderboard-<hash of the run folders>)",
           parse=folder),
    Option("level", "confidence level of the intervals", "0.95", number(0.0, 1.0)),
    Option("prior_ties", "virtual ties of every policy against a reference policy (keeps a policy that never "
           "loses finite; 0: plain maximum likelihood, refused when a policy never loses)", "1", non_negative),
    Option("tracking_uri", "MLflow backend to log the strengths to: none | default | sqlite:///PATH | "
           "http://HOST:PORT", "none", tracking_uri),
    Option("experiment", "MLflow experiment name", "evalsuite"),
)
USAGE = "usage: evalsuite leaderboard RUN [RUN ...] [out=DIR] [tracking_uri=URI]"
MD, HTML, JSON = "leaderboard.md", "leaderboard.html", "leaderboard.json"


@dataclass
class PolicyRecord:
    """What the folders hold of one policy: its episodes and successes, where they came from."""

    episodes: int = 0
    successes: int = 0
    runs: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)


@dataclass
class Judgments:
    """Pairwise judgments from shared initial conditions: ``first``/``second`` index ``policies``,
    ``score`` the first's, ``cluster`` the condition (index into ``conditions``)."""

    policies: list[str]
    first: list[int]
    second: list[int]
    score: list[float]
    cluster: list[int]
    conditions: list[tuple[str, str, int]]  # (suite, task, ic_seed)
    records: dict[str, PolicyRecord]

    def per_task(self) -> dict[str, tuple[int, int]]:
        """suite/task -> (shared initial conditions, judgments)."""
        conditions: dict[str, set[int]] = defaultdict(set)
        counts: dict[str, int] = defaultdict(int)
        for c in self.cluster:
            suite, task, _ = self.conditions[c]
            conditions[f"{suite}/{task}"].add(c)
            counts[f"{suite}/{task}"] += 1
        return {t: (len(conditions[t]), counts[t]) for t in sorted(conditions)}


def judgments_from_runs(folders: list[Path]) -> Judgments:
    """Every run folder's final episodes, paired on shared initial conditions (see the module)."""
    from evalsuite.api import open_run

    outcomes: dict[tuple[str, str, int], dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    records: dict[str, PolicyRecord] = defaultdict(PolicyRecord)
    for path in folders:
        _refuse_blind_trial(path)
        run = open_run(path)
        frame = run.episodes()
        for task, label, seed, success in zip(frame["task"], frame["policy"], frame["ic_seed"], frame["success"],
                                              strict=True):
            outcomes[(run.plan.suite, str(task), int(seed))][str(label)].append(bool(success))
            record = records[str(label)]
            record.episodes += 1
            record.successes += bool(success)
            record.runs.add(str(path))
            record.tasks.add(f"{run.plan.suite}/{task}")
    names = sorted(records)
    index = {name: i for i, name in enumerate(names)}
    out = Judgments(names, [], [], [], [], [], dict(records))
    for condition in sorted(outcomes):
        present = sorted(outcomes[condition].items())
        if len(present) < 2:
            continue
        out.conditions.append(condition)
        rates = {label: sum(v) / len(v) for label, v in present}
        for i, (a, _) in enumerate(present):
            for b, _ in present[i + 1:]:
                out.first.append(index[a])
                out.second.append(index[b])
                out.score.append(0.5 + (rates[a] - rates[b]) / 2)
                out.cluster.append(len(out.conditions) - 1)
    return out


def _refuse_blind_trial(path: Path) -> None:
    """A trial with people in the loop stays blind until `evalsuite unblind`: its labels are not shown here."""
    from evalsuite.trial import TRIAL_FILE

    trial = path / TRIAL_FILE
    if trial.exists():
        try:
            unblinded = bool(json.loads(trial.read_text()).get("unblinded"))
        except (OSError, ValueError, AttributeError):
            unblinded = False
        if not unblinded:
            raise UsageError(f"{path} is a blind trial: `evalsuite unblind {path}` first, then rank it")


def comparable(judgments: Judgments) -> tuple[list[str], list[str]]:
    """(the largest group of policies linked by shared initial conditions, everyone else)."""
    parent = list(range(len(judgments.policies)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(judgments.first, judgments.second, strict=True):
        parent[root(a)] = root(b)
    groups: dict[int, list[str]] = defaultdict(list)
    for i, name in enumerate(judgments.policies):
        groups[root(i)].append(name)
    linked = sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
    largest = linked[0] if linked else []
    return largest, [p for p in judgments.policies if p not in largest]


def rank(judgments: Judgments, *, level: float = 0.95, prior_ties: float = 1.0) -> tuple[Ranking, list[str]]:
    """The Bradley-Terry ranking of the largest comparable group, and the policies left out."""
    from evalsuite.stats.ranking import bradley_terry

    ranked, left_out = comparable(judgments)
    if len(ranked) < 2:
        raise UsageError(f"fewer than 2 policies share initial conditions (same suite, task and ic_seed) in these "
                         f"run folders (policies: {', '.join(judgments.policies) or 'none'}); nothing to rank")
    keep = {judgments.policies.index(p): i for i, p in enumerate(ranked)}
    rows = [k for k, a in enumerate(judgments.first) if a in keep]
    try:
        ranking = bradley_terry(ranked, np.array([keep[judgments.first[k]] for k in rows], dtype=np.int64),
                                np.array([keep[judgments.second[k]] for k in rows], dtype=np.int64),
                                np.array([judgments.score[k] for k in rows]),
                                cluster=np.array([judgments.cluster[k] for k in rows]), level=level,
                                prior_ties=prior_ties)
    except ValueError as err:  # prior_ties=0 with a policy that never loses
        raise UsageError(str(err)) from None
    except ImportError as err:  # a core install without the console extra
        raise UsageError(str(err)) from None
    return ranking, left_out


# ---------------------------------------------------------------- the page

def label_cell(label: str) -> str:
    """A policy label as a Markdown table cell: a code span (shown as typed, never markup), its
    pipes escaped (else they end the cell)."""
    text = label.replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown(ranking: Ranking, judgments: Judgments, left_out: list[str], folders: list[Path]) -> list[str]:
    level = f"{100 * ranking.level:g}%"
    lines = ["# evalsuite leaderboard", "",
             f"{len(ranking.strengths)} policies from {len(folders)} run folders, ranked by a Bradley-Terry model "
             f"on {ranking.judgments} paired judgments over {ranking.clusters} shared initial conditions. A judgment: "
             "1 when only the first policy succeeded on the condition, 0 when only the second, 0.5 when both or "
             "neither did; strength differences are log-odds of winning such a judgment (ties half a win).", "",
             f"| rank | policy | log-strength [{level} interval] | rank range | judgments | score | success % "
             "(episodes) |", "|---|---|---|---|---|---|---|"]
    for s in ranking.strengths:
        rec = judgments.records[s.item]
        ranks = f"{s.rank_low}" if s.rank_low == s.rank_high else f"{s.rank_low}-{s.rank_high}"
        lines.append(f"| {s.rank} | {label_cell(s.item)} | {s.log_strength:+.2f} [{s.low:+.2f}, {s.high:+.2f}] | "
                     f"{ranks} | {s.judgments} | {s.score:g} | {100 * rec.successes / rec.episodes:.1f} "
                     f"({rec.episodes}) |")
    decided = [p for p in ranking.pairs if p.decided]
    lines += ["", "Log-strengths are centred (their mean is 0). The rank range holds every rank the decided pairs "
              f"leave a policy: pairs are compared with simultaneous {level} intervals (Bonferroni over all "
              f"{len(ranking.pairs)} pairs), so with probability >= {level} every decided order is right and "
              "every true rank lies in its range.", "", "## Adjacent policies", "",
              f"| higher | lower | difference [{level} simultaneous interval] | judgments | decided |",
              "|---|---|---|---|---|"]
    order = ranking.items
    by_pair = {(p.first, p.second): p for p in ranking.pairs}
    for a, b in zip(order, order[1:], strict=False):
        p = by_pair[(a, b)]
        lines.append(f"| {label_cell(a)} | {label_cell(b)} | {p.difference:+.2f} [{p.low:+.2f}, {p.high:+.2f}] | "
                     f"{p.judgments} | {'yes' if p.decided else 'no'} |")
    lines += ["", f"{len(decided)} of {len(ranking.pairs)} pairs decided.", "", "## Data", "",
              "| task | shared initial conditions | judgments |", "|---|---|---|"]
    lines += [f"| {label_cell(task)} | {n_conditions} | {n_judgments} |"
              for task, (n_conditions, n_judgments) in judgments.per_task().items()]
    lines += ["", "Run folders: " + ", ".join(label_cell(str(f)) for f in folders) + "."]
    if left_out:
        lines += ["", "Not ranked (no initial condition shared with the ranked policies): "
                  + ", ".join(label_cell(p) for p in left_out) + "."]
    lines += ["", f"Method: {ranking.method}; {ranking.prior_ties:g} virtual ties per policy against a reference "
              "policy (see docs/rankings.md)."]
    return lines


def short(label: str, width: int = 48) -> str:
    """A label for a figure: the middle elided when long (checkpoint paths differ at their ends)."""
    if len(label) <= width:
        return label
    keep = width - 3
    return label[: keep // 2] + "..." + label[len(label) - (keep - keep // 2):]


def figure(ranking: Ranking) -> Figure:
    from evalsuite.plotting import subplots

    n = len(ranking.strengths)
    fig: Figure
    fig, ax = subplots(figsize=(7, 0.45 * n + 1.2))
    ys = np.arange(n)[::-1]
    for y, s in zip(ys, ranking.strengths, strict=True):
        ax.plot([s.low, s.high], [y, y], color="black", lw=1.5)
        ax.plot(s.log_strength, y, "o", color="C0")
    ax.axvline(0.0, color="#999", lw=0.8, ls="--")
    ax.set_yticks(ys, [short(s.item) for s in ranking.strengths], fontsize=8)
    ax.set_xlabel(f"log-strength (centred), {100 * ranking.level:g}% interval")
    return fig


def write(out: Path, ranking: Ranking, judgments: Judgments, left_out: list[str], folders: list[Path]) -> None:
    from evalsuite.report import _CSS, _html_figures, _png, _to_html

    out = fsio.make_dir(out)
    lines = markdown(ranking, judgments, left_out, folders)
    fsio.write_text(out / MD, "\n".join(lines) + "\n")
    png = _png(figure(ranking))
    fsio.write_bytes(out / "leaderboard.png", png)
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
            f"<title>evalsuite leaderboard: {html.escape(', '.join(ranking.items[:3]))}</title>"
            f"<style>{_CSS}</style></head><body>{_to_html(lines)}"
            f"{_html_figures({'log-strengths': png})}</body></html>\n")
    fsio.write_text(out / HTML, page)
    data = {**ranking.to_dict(), "runs": [str(f) for f in folders], "not_ranked": left_out,
            "policies": {p: {"episodes": r.episodes, "successes": r.successes, "runs": sorted(r.runs),
                             "tasks": sorted(r.tasks)} for p, r in judgments.records.items()},
            "tasks": {t: {"conditions": c, "judgments": j} for t, (c, j) in judgments.per_task().items()}}
    fsio.write_json(out / JSON, data)


def log_to_mlflow(out: Path, ranking: Ranking, uri: str, experiment: str) -> str:
    """One MLflow run: each policy's strength, interval and rank as metrics, the folder as artifacts."""
    import mlflow

    from evalsuite.tracking import _check_reachable, _experiment_id, _metric_key, client, resolve_uri

    uri = resolve_uri(uri)
    _check_reachable(uri)
    exp_id = _experiment_id(client(uri), experiment, uri)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"leaderboard ({len(ranking.strengths)} policies)") as run:
        mlflow.set_tags({"evalsuite.kind": "leaderboard"})
        mlflow.log_params({"level": ranking.level, "prior_ties": ranking.prior_ties, "judgments": ranking.judgments,
                           "conditions": ranking.clusters})
        metrics: dict[str, float] = {}
        for s in ranking.strengths:
            key = _metric_key(s.item)
            metrics.update({f"strength/{key}": s.log_strength, f"strength_low/{key}": s.low,
                            f"strength_high/{key}": s.high, f"rank/{key}": float(s.rank)})
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(out), artifact_path="leaderboard")
        return str(run.info.run_id)  # RunInfo.run_id is untyped


def run(args: list[str]) -> int:
    """Rank the policies of the run folders; exit 2 on bad input (a folder that is not a run, fewer
    than 2 policies sharing initial conditions)."""
    from evalsuite import names
    from evalsuite.tracking import BadBackend, TrackingUnavailable

    paths = [Path(a) for a in args if "=" not in a]
    v = parse([a for a in args if "=" in a], OPTIONS)
    if not paths:
        raise UsageError(f"no run folder given; {USAGE}")
    for path in paths:
        if not (path / names.PLAN).exists():
            raise UsageError(f"{path} is not a run folder (no plan.json)")
    if len({p.resolve() for p in paths}) != len(paths):
        raise UsageError("a run folder is given twice")
    judgments = judgments_from_runs(paths)
    ranking, left_out = rank(judgments, level=v["level"], prior_ties=v["prior_ties"])
    out = v["out"] if "out" in v else default_out({"runs": sorted(str(p.resolve()) for p in paths)},
                                                  prefix="leaderboard")
    write(out, ranking, judgments, left_out, paths)
    print("\n".join(markdown(ranking, judgments, left_out, paths)))
    print(f"leaderboard: {out / MD}, {out / HTML}")
    if v["tracking_uri"] is not None:
        try:
            run_id = log_to_mlflow(out, ranking, v["tracking_uri"], v["experiment"])
        except (TrackingUnavailable, BadBackend) as exc:
            print(f"MLflow: {exc}. The leaderboard is in {out}.")
        except UsageError:
            raise
        except Exception as exc:  # MLflow failed midway; the files are written
            print(f"MLflow: logging failed ({type(exc).__name__}: {fsio.one_line(exc)[:300]}). "
                  f"The leaderboard is in {out}.")
        else:
            print(f"MLflow: leaderboard run {run_id}")
    return 0
