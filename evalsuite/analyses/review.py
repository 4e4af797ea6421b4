"""A blinded video review (``evalsuite review RUN``) in the run's report: how far the raters agree
on success (Cohen's kappa for two raters, Fleiss' for more on the episodes every one scored,
Krippendorff's alpha on every rating, and alpha on the furthest milestone, ordinal), how the
automatic success detector (the journal's ``success``) agrees with the raters' majority
(sensitivity and specificity), and a Bradley-Terry ranking of the policies, by label, from the
raters' side-by-side judgments. The statistics are evalsuite.stats.agreement's and
evalsuite.stats.ranking's; the ratings come in through ``AnalysisInput.review`` (read from
review.jsonl by ``api.Run.review``). Runs without a review get no section."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evalsuite import fsio
from evalsuite.analyses import AnalysisInput
from evalsuite.journal import EpisodeRecord
from evalsuite.results import Results
from evalsuite.stats import agreement, ranking

SEED_STREAM = 0x5EE1  # the section's bootstrap draws from its own stream of the run's seed
SCORE_OF = {"left": 1.0, "right": 0.0, "tie": 0.5}  # the left episode's score in a judgment


def compute(inp: AnalysisInput) -> dict[str, Any] | None:
    if not inp.review:
        return None
    final = {r.trial_id: r for r in inp.records}
    scores = [r for r in inp.review if r["action"] == "score" and r["trials"][0] in final]
    comparisons = [r for r in inp.review if r["action"] == "compare" and all(t in final for t in r["trials"])]
    raters = sorted({str(r["rater"]) for r in inp.review})
    rng = np.random.default_rng([inp.seed, SEED_STREAM])
    section: dict[str, Any] = {
        "raters": {name: {"scored": sum(r["rater"] == name for r in scores),
                          "compared": sum(r["rater"] == name for r in comparisons)} for name in raters},
        "episodes": len({r["trials"][0] for r in scores}), "pairs": len({r["item"] for r in comparisons}),
        "judgments": len(comparisons), "level": inp.level,
    }
    if scores:
        section.update(_agreement(scores, final, inp.level, rng))
    if comparisons:
        section["ranking"] = _ranking(comparisons, final, inp, inp.level)
    cleaned: dict[str, Any] = _json(section)
    return cleaned


def _matrix(scores: list[dict[str, Any]], field: str) -> tuple[list[str], list[str], np.ndarray[Any, Any]]:
    """Episodes x raters of ``field`` (NaN where a rater did not score the episode)."""
    episodes = sorted({r["trials"][0] for r in scores})
    raters = sorted({r["rater"] for r in scores})
    m = np.full((len(episodes), len(raters)), np.nan)
    row, col = {e: i for i, e in enumerate(episodes)}, {n: j for j, n in enumerate(raters)}
    for r in scores:
        m[row[r["trials"][0]], col[r["rater"]]] = float(r[field])
    return episodes, raters, m


def _agreement(scores: list[dict[str, Any]], final: dict[str, EpisodeRecord], level: float,
               rng: np.random.Generator) -> dict[str, Any]:
    episodes, raters, success = _matrix(scores, "success")
    out: dict[str, Any] = {}
    complete = success[~np.isnan(success).any(axis=1)]  # the episodes every rater scored
    if len(raters) == 2 and complete.shape[0] >= 2:
        out["kappa"] = {**agreement.cohen_kappa(complete[:, 0], complete[:, 1], rng=rng, level=level).to_dict(),
                        "statistic": "Cohen", "episodes": int(complete.shape[0])}
    elif len(raters) > 2 and complete.shape[0] >= 2:
        counts, _ = agreement.category_counts(complete)
        out["kappa"] = {**agreement.fleiss_kappa(counts, rng=rng, level=level).to_dict(), "statistic": "Fleiss",
                        "episodes": int(complete.shape[0])}
    if len(raters) >= 2 and (np.sum(~np.isnan(success), axis=1) >= 2).any():
        out["alpha_success"] = agreement.krippendorff_alpha(success.T, rng=rng, level=level).to_dict()
        _, _, furthest = _matrix(scores, "furthest")
        if len(np.unique(furthest[~np.isnan(furthest)])) > 1:
            out["alpha_milestone"] = agreement.krippendorff_alpha(furthest.T, level_of_measurement="ordinal",
                                                                  rng=rng, level=level).to_dict()
    detector = np.array([int(final[e].success) for e in episodes])
    out["detector"] = agreement.detector_agreement(detector, success, level=level).to_dict()
    return out


def _ranking(comparisons: list[dict[str, Any]], final: dict[str, EpisodeRecord], inp: AnalysisInput,
             level: float) -> dict[str, Any]:
    """Bradley-Terry strengths of the policies (by label) from every judgment, clustered by the
    initial condition the two episodes shared (its episodes enter several judgments)."""
    codes = [c for c in (inp.codes or sorted(inp.label)) if any(
        final[t].policy_code == c for r in comparisons for t in r["trials"])]
    index = {c: i for i, c in enumerate(codes)}
    left = [index[final[r["trials"][0]].policy_code] for r in comparisons]
    right = [index[final[r["trials"][1]].policy_code] for r in comparisons]
    clusters = [f"{r['task']}/{final[r['trials'][0]].ic_index}" for r in comparisons]
    if len(codes) < 2:
        return {}
    result = ranking.bradley_terry([inp.label[c] for c in codes], np.array(left), np.array(right),
                                   np.array([SCORE_OF[r["choice"]] for r in comparisons]), cluster=np.array(clusters),
                                   level=level)
    return result.to_dict()


def _json(value: Any) -> Any:
    """NaN (an undefined statistic) as null: NaN is not JSON."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _interval(stat: dict[str, Any]) -> str:
    return f"{_fmt(stat['estimate'])} [{_fmt(stat['low'])}, {_fmt(stat['high'])}]"


def report(section: dict[str, Any], results: Results) -> list[str]:
    level = f"{section['level']:.0%}"
    who = ", ".join(f"{fsio.one_line(name)} ({n['scored']} scored, {n['compared']} compared)"
                    for name, n in section["raters"].items())
    lines = ["## Blinded video review", "",
             f"Raters watched the episodes' videos under review codes (no policy name, code or trial id) in a random "
             f"order (`evalsuite review`): {section['episodes']} episodes scored, {section['pairs']} same-start pairs "
             f"compared side by side ({section['judgments']} judgments). Raters: {who}. Intervals at {level}.", ""]
    if "kappa" in section:
        k = section["kappa"]
        lines.append(f"- Agreement on success, {k['statistic']}'s kappa over the {k['episodes']} episodes every rater "
                     f"scored: {_interval(k)} (bootstrap over episodes)")
    if "alpha_success" in section:
        lines.append(f"- Krippendorff's alpha on success (every rating): {_interval(section['alpha_success'])}")
    if "alpha_milestone" in section:
        lines.append(f"- Krippendorff's alpha on the furthest milestone (ordinal): "
                     f"{_interval(section['alpha_milestone'])}")
    if "detector" in section:
        d = section["detector"]
        lines += [f"- The automatic success detector against the raters' majority: sensitivity "
                  f"{_interval(d['sensitivity'])} ({d['true_positive']}/{d['true_positive'] + d['false_negative']}), "
                  f"specificity {_interval(d['specificity'])} ({d['true_negative']}/"
                  f"{d['true_negative'] + d['false_positive']}); {d['split']} episode(s) whose raters split evenly "
                  "left out"]
    lines.append("")
    lines += _ranking_lines(section.get("ranking") or {})
    return lines


def _ranking_lines(r: dict[str, Any]) -> list[str]:
    if not r:
        return []
    lines = [f"Bradley-Terry ranking from the side-by-side judgments (a tie is half a win; {r['judgments']} judgments "
             f"on {r['clusters']} initial conditions): {r['method']}.", "",
             "| rank | policy | log-strength | interval | rank range | score / judgments |", "|---|---|---|---|---|---|"]
    for s in r["strengths"]:
        lines.append(f"| {s['rank']} | {fsio.one_line(s['item'])} | {s['log_strength']:+.2f} | "
                     f"[{s['low']:+.2f}, {s['high']:+.2f}] | {s['rank_low']}-{s['rank_high']} | "
                     f"{s['score']:g} / {s['judgments']} |")
    decided = [f"{fsio.one_line(p['first'])} > {fsio.one_line(p['second'])}" for p in r["pairs"] if p["decided"]]
    lines += ["", "Decided orders (simultaneous intervals excluding 0): " + (", ".join(decided) or "none") + ".", ""]
    return lines


def metrics(section: dict[str, Any]) -> dict[str, float]:
    out = {}
    for name, stat in (("kappa_success", section.get("kappa")), ("alpha_success", section.get("alpha_success")),
                       ("detector_sensitivity", (section.get("detector") or {}).get("sensitivity")),
                       ("detector_specificity", (section.get("detector") or {}).get("specificity"))):
        if stat and stat.get("estimate") is not None:
            out[f"review/{name}"] = float(stat["estimate"])
    for s in (section.get("ranking") or {}).get("strengths", []):
        out[f"{s['item']}/review_bt_log_strength"] = float(s["log_strength"])
    return out
