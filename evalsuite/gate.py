"""The CI regression gate: did the candidate policy get worse than the baseline, statistically?

    evalsuite gate candidate=RUN baseline=RUN margin=0.05 alpha=0.05
    evalsuite gate candidate_policy=ID baseline=RUN [sequential=true budget=N]

A run is a run folder, ``mlflow:RUN_ID`` or ``mlflow-tag:KEY=VALUE`` (the latest run carrying that
tag, e.g. one evaluated with ``tags=[role=baseline]``). With ``candidate_policy`` the candidate is
evaluated here with the baseline's suite, tasks, seed and step limits, so it meets the baseline's
own initial conditions and the comparison is paired; sequentially it runs in rounds against the
baseline's recorded outcomes until every task is decided or ``budget`` episodes are spent.

Per task the verdict is one of ``evalsuite.stats.margin``'s (REGRESSED, IMPROVED, NON-INFERIOR,
INCONCLUSIVE), from exact unconditional tests. The overall pass is an intersection-union test
(Berger 1982): NON-INFERIOR overall only when every task is non-inferior at alpha, which keeps the
chance of a false pass <= alpha with no split. REGRESSED and IMPROVED are claims about single
tasks, each tested at alpha / tasks (Bonferroni), so the chance of any false REGRESSED stays <= alpha.
Policy errors are failures of the candidate; trials lost to infrastructure errors are missing, and
the verdict with them counted against the candidate is shown beside. Exit codes: 0 pass,
1 regressed, 3 inconclusive (0 with ``inconclusive=pass``), 2 usage error.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite import fsio, journal
from evalsuite import plan as plan_mod
from evalsuite.errors import UsageError, choices
from evalsuite.journal import ERROR, JOURNAL_FILE, POLICY_ERROR, read
from evalsuite.plan import BlindingKey, Plan, PolicyEntry, Stopping
from evalsuite.results import Results
from evalsuite.stats import margin as mg

EXIT_PASS, EXIT_REGRESSED, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
GATE_FILE, SUMMARY_FILE = "results.json", "summary.md"


@dataclass
class Side:
    """One policy's outcomes in one run folder: task -> ic_index -> (ic_seed, success), policy
    errors included as failures; ``missing``: task -> ic_index -> ic_seed of trials lost to
    infrastructure errors after every retry."""

    run_dir: Path
    plan: Plan
    label: str
    outcomes: dict[str, dict[int, tuple[int, bool]]]
    ref: str = ""
    policy_errors: dict[str, int] = field(default_factory=dict)
    missing: dict[str, dict[int, int]] = field(default_factory=dict)


def load_side(run_dir: Path, label: str | None, role: str) -> Side:
    if not (run_dir / plan_mod.PLAN_FILE).exists():
        raise UsageError(f"{role}={run_dir} is not a run folder (no plan.json)")
    from evalsuite.api import Run

    run = Run(run_dir)  # its journal checked against its plan; its own max_attempts decides which trials are final
    plan, labels = run.plan, {label: code for code, label in run.key.labels.items()}
    if label is None:
        if len(labels) != 1:
            raise UsageError(f"{role} run {run_dir} has {len(labels)} policies; choose one with "
                             f"{role}_label=...; accepted: {choices(labels)}")
        label = next(iter(labels))
    if label not in labels:
        raise UsageError(f"{role}_label={label!r} is not in {run_dir}; accepted: {choices(labels)}")
    outcomes: dict[str, dict[int, tuple[int, bool]]] = {task: {} for task in plan.tasks}
    policy_errors = {task: 0 for task in plan.tasks}
    missing: dict[str, dict[int, int]] = {task: {} for task in plan.tasks}
    for r in run.final().values():
        if r.policy_code != run.key.code(label):
            continue
        if r.status == ERROR:
            missing[r.task][r.ic_index] = r.ic_seed
            continue
        outcomes[r.task][r.ic_index] = (r.ic_seed, r.success)
        policy_errors[r.task] += r.status == POLICY_ERROR
    return Side(run_dir, plan, label, outcomes, str(run_dir), policy_errors, missing)


def resolve_ref(ref: str, role: str, tracking_uri: str | None, experiment: str, scratch: Path) -> Path:
    """A run folder for ``ref``: a path, or an MLflow run whose artifacts are downloaded (never with
    tracking_uri=none, which leaves MLflow untouched)."""
    if not ref.startswith(("mlflow:", "mlflow-tag:")):
        path = Path(ref)
        if not (path / plan_mod.PLAN_FILE).exists():
            raise UsageError(f"{role}={ref!r} is not a run folder (no plan.json); accepted: a run folder, "
                             "mlflow:RUN_ID, mlflow-tag:KEY=VALUE")
        return path
    tag, sep, value = ref.removeprefix("mlflow-tag:").partition("=")
    if ref.startswith("mlflow-tag:") and (not sep or not tag):
        raise UsageError(f"{role}={ref!r}: write mlflow-tag:KEY=VALUE, e.g. mlflow-tag:role=baseline")
    from evalsuite import tracking

    if tracking_uri is None:
        raise UsageError(f"{role}={ref!r} is read from MLflow, but tracking_uri=none turns MLflow off; accepted: "
                         f"a run folder as {role}=, or tracking_uri=default, sqlite:///PATH, http://HOST:PORT")
    uri = tracking.resolve_uri(tracking_uri)
    try:
        tracking._check_reachable(uri)
    except tracking.TrackingUnavailable as exc:
        raise UsageError(f"{role}={ref!r}: {exc}") from None
    if uri.startswith("sqlite") and not (database := tracking._sqlite_path(uri, "tracking_uri")).exists():
        raise UsageError(f"{role}={ref!r}: there is no MLflow database at {database} (reading would only create an "
                         "empty one); accepted: a run folder, or the tracking_uri= the run was logged to")
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    client = tracking.client(uri)
    if ref.startswith("mlflow:"):
        run_id = ref.removeprefix("mlflow:")
    else:
        exp = client.get_experiment_by_name(experiment)
        runs = [] if exp is None else client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`{tag}` = '{value}'", order_by=["attributes.start_time DESC"],
            max_results=1)
        if not runs:
            raise UsageError(f"{role}={ref!r}: no run in MLflow experiment {experiment!r} at {uri} carries tag "
                             f"{tag}={value}")
        run_id = runs[0].info.run_id
    try:
        local = download_artifacts(run_id=run_id, artifact_path="run", dst_path=str(scratch / role),
                                   tracking_uri=uri)
    except MlflowException as exc:
        raise UsageError(f"{role}={ref!r}: MLflow run {run_id} has no evalsuite run folder ({exc.message})") from None
    return Path(local)


@dataclass(frozen=True)
class GateOptions:
    margin: float = 0.05
    alpha: float = 0.05
    inconclusive_passes: bool = False


def compare(candidate: Side, baseline: Side, options: GateOptions,
            sequential: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per-task and overall verdicts of ``candidate`` against ``baseline`` (see module docstring)."""
    tasks = [t for t in baseline.plan.tasks if t in candidate.plan.tasks]
    if not tasks:
        raise UsageError(f"candidate tasks {list(candidate.plan.tasks)} and baseline tasks "
                         f"{list(baseline.plan.tasks)} have none in common")
    alpha_claims = options.alpha / len(tasks)
    rows, tables = [], []  # tables: each task's paired 2x2 counts, for the mean over tasks
    for task in tasks:
        cand, base = candidate.outcomes[task], baseline.outcomes[task]
        decision, shared = _decide(cand, base, options, alpha_claims)
        c, b = np.array([cand[i][1] for i in shared], bool), np.array([base[i][1] for i in shared], bool)
        tables.append((int(np.sum(c & b)), int(np.sum(c & ~b)), int(np.sum(~c & b)), int(np.sum(~c & ~b))))
        row = {"task": task, **decision.to_dict(),
               "candidate_rate": _rate(cand, shared), "baseline_rate": _rate(base, shared),
               "candidate_policy_errors": candidate.policy_errors.get(task, 0),
               "baseline_policy_errors": baseline.policy_errors.get(task, 0),
               "candidate_missing": len(candidate.missing.get(task, {})),
               "baseline_missing": len(baseline.missing.get(task, {})), "worst_case": None}
        if sequential is None and (row["candidate_missing"] or row["baseline_missing"]):
            # the worst case for the candidate: its missing trials failed, the baseline's succeeded
            worst_cand = {**{i: (seed, False) for i, seed in candidate.missing.get(task, {}).items()}, **cand}
            worst_base = {**{i: (seed, True) for i, seed in baseline.missing.get(task, {}).items()}, **base}
            worst, _ = _decide(worst_cand, worst_base, options, alpha_claims)
            row["worst_case"] = {"verdict": worst.verdict, "difference": worst.difference, "low": worst.low,
                                 "high": worst.high}
        if sequential is not None:  # anytime-valid verdict of the sequential run replaces the fixed-n one;
            # fixed-n p-values on data that stopped early are not valid, so they are not shown
            row.update(verdict=sequential[task]["verdict"], method="sequential e-process", p_noninferior=None,
                       p_regressed=None, p_improved=None)
        rows.append(row)
    verdict = mg.overall([r["verdict"] for r in rows])
    result = {
        "kind": "gate", "verdict": verdict, "exit_code": exit_code(verdict, options.inconclusive_passes),
        "margin": options.margin, "alpha": options.alpha, "alpha_per_task": alpha_claims,
        "combination": ("pass: intersection-union test, every task non-inferior at alpha; REGRESSED/IMPROVED: "
                        "each task at alpha / tasks (Bonferroni)") if sequential is None else
                       "sequential: every claim per task by a betting e-process at alpha / tasks, valid at every look",
        "candidate": {"run": candidate.ref, "policy": candidate.label, "suite": candidate.plan.suite,
                      "seed": candidate.plan.seed},
        "baseline": {"run": baseline.ref, "policy": baseline.label, "suite": baseline.plan.suite,
                     "seed": baseline.plan.seed},
        "tasks": rows,
    }
    if len(tasks) > 1 and all(sum(t) > 0 for t in tables):
        from evalsuite.stats.over_tasks import paired_difference_over_tasks

        mean = paired_difference_over_tasks(tables, level=1 - 2 * options.alpha)
        result["mean_difference"] = {"difference": mean.estimate, "low": mean.low, "high": mean.high,
                                     "level": mean.level, "method": mean.method}
    if candidate.plan.suite_digest and baseline.plan.suite_digest and candidate.plan.tasks == baseline.plan.tasks \
            and candidate.plan.suite_digest != baseline.plan.suite_digest:
        result["warning"] = ("the candidate ran under another specification of the suite than the baseline (tasks, "
                             "step limits, options or simulator versions): the comparison mixes benchmarks")
    if any(r["worst_case"] for r in rows):
        result["worst_case_verdict"] = mg.overall([(r["worst_case"] or r)["verdict"] for r in rows])
    return result


def _decide(cand: dict[int, tuple[int, bool]], base: dict[int, tuple[int, bool]], options: GateOptions,
            alpha_claims: float) -> tuple[mg.MarginDecision, list[int]]:
    """Paired on the shared initial conditions (same index and seed), else independent samples."""
    shared = sorted(i for i in cand if i in base and cand[i][0] == base[i][0])
    if shared:
        return mg.paired_decision(np.array([cand[i][1] for i in shared]), np.array([base[i][1] for i in shared]),
                                  margin=options.margin, alpha=options.alpha, alpha_claims=alpha_claims), shared
    return mg.independent_decision(sum(s for _, s in cand.values()), len(cand), sum(s for _, s in base.values()),
                                   len(base), margin=options.margin, alpha=options.alpha,
                                   alpha_claims=alpha_claims), shared


def _rate(outcomes: dict[int, tuple[int, bool]], shared: list[int]) -> float | None:
    values = [outcomes[i][1] for i in shared] if shared else [s for _, s in outcomes.values()]
    return float(np.mean(values)) if values else None


def exit_code(verdict: str, inconclusive_passes: bool) -> int:
    if verdict == mg.REGRESSED:
        return EXIT_REGRESSED
    if verdict == mg.INCONCLUSIVE:
        return EXIT_PASS if inconclusive_passes else EXIT_INCONCLUSIVE
    return EXIT_PASS


def markdown(result: dict[str, Any]) -> str:
    """A pull-request comment: the verdict first, then one row per task."""
    c, b = result["candidate"], result["baseline"]
    sequential = any(r["method"] == "sequential e-process" for r in result["tasks"])
    how = (f"Sequential: every claim per task by a betting e-process at {result['alpha_per_task']:.3g} "
           f"(alpha / {len(result['tasks'])} tasks), valid at every look; p-values are not shown." if sequential else
           f"Pass = every task NON-INFERIOR at alpha {result['alpha']:g} (intersection-union test); REGRESSED / "
           f"IMPROVED per task at {result['alpha_per_task']:.3g} (alpha / {len(result['tasks'])} tasks, "
           "Bonferroni). Exact unconditional tests.")
    lines = [f"## evalsuite gate: **{result['verdict']}**", "",
             f"Candidate `{c['policy']}` against baseline `{b['policy']}` on `{b['suite']}`; margin "
             f"{result['margin'] * 100:g} points. {how} The interval is Newcombe's, descriptive, at "
             f"{100 * (1 - 2 * result['alpha']):g}%.", "",
             "| task | design | baseline | candidate | difference | interval | p not worse | p regressed | verdict "
             "| policy errors (cand / base) | missing (cand / base) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["tasks"]:
        n = r["n_candidate"] if r["design"] == "paired" else f"{r['n_candidate']} vs {r['n_baseline']}"
        verdict = r["verdict"]
        if r.get("worst_case"):
            verdict += f" (missing counted against the candidate: {r['worst_case']['verdict']})"
        lines.append(f"| {r['task']} | {r['design']} ({n}) | {_pct(r['baseline_rate'])} | "
                     f"{_pct(r['candidate_rate'])} | {r['difference'] * 100:+.1f} | "
                     f"[{r['low'] * 100:+.1f}, {r['high'] * 100:+.1f}] | {_p(r.get('p_noninferior'))} | "
                     f"{_p(r.get('p_regressed'))} | {verdict} | {r.get('candidate_policy_errors', 0)} / "
                     f"{r.get('baseline_policy_errors', 0)} | {r.get('candidate_missing', 0)} / "
                     f"{r.get('baseline_missing', 0)} |")
    if result.get("warning"):
        lines += ["", f"**Warning**: {result['warning']}."]
    if result.get("mean_difference"):
        m = result["mean_difference"]
        lines += ["", f"Mean over the {len(result['tasks'])} tasks, candidate - baseline (paired): "
                  f"{m['difference'] * 100:+.1f} points [{m['low'] * 100:+.1f}, {m['high'] * 100:+.1f}] "
                  f"({100 * m['level']:g}%, MOVER over the tasks' Newcombe intervals; descriptive)."]
    lines += ["", "REGRESSED: worse by more than the margin; NON-INFERIOR: not worse than the margin; IMPROVED: "
              "better; INCONCLUSIVE: too few episodes to tell. Policy errors are failures of that policy."]
    if result["verdict"] == mg.INCONCLUSIVE:
        lines += ["", "To decide, do not add episodes and gate again (that inflates the false-pass rate). Size the "
                  "baseline with `evalsuite plan ... margin=` (pairs per task for an equivalent candidate to pass), "
                  "or gate with the anytime-valid `evalsuite gate ... candidate_policy=ID sequential=true "
                  "budget=N`, whose level holds at every look (run after this gate in the same folder it starts "
                  "from these episodes; the two gates together then err at most twice alpha)."]
    if "worst_case_verdict" in result:
        lines += ["", f"With every missing trial counted against the candidate: **{result['worst_case_verdict']}**."]
    return "\n".join(lines) + "\n"


def _p(x: float | None) -> str:
    return "" if x is None else f"{x:.3g}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


@dataclass
class GateRequest:
    baseline: str
    out: Path
    candidate: str | None = None  # a run reference, or None with candidate_policy
    candidate_policy: PolicyEntry | None = None
    suite: str | None = None
    baseline_label: str | None = None
    candidate_label: str | None = None
    options: GateOptions = field(default_factory=GateOptions)
    sequential: bool = False
    budget: int | None = None
    round_size: int = 10
    batch_size: int = 8
    env_workers: int | None = None
    tracking_uri: str | None = "default"
    experiment: str = "evalsuite"
    progress: bool = False


def run_gate(req: GateRequest, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Resolve both runs (evaluating the candidate if asked), decide, write and log the verdicts."""
    if (req.candidate is None) == (req.candidate_policy is None):
        raise UsageError("give exactly one of candidate=RUN and candidate_policy=ID")
    if req.sequential and req.candidate_policy is None:
        raise UsageError("sequential=true evaluates the candidate in rounds: give candidate_policy=ID, not candidate=RUN")
    uri = req.tracking_uri  # None: MLflow untouched, so mlflow: references are refused
    from evalsuite.runlock import RunLock

    req.out.mkdir(parents=True, exist_ok=True)
    with RunLock(req.out, purpose="gate", log=log), tempfile.TemporaryDirectory(prefix="evalsuite-gate-") as scratch:
        baseline = load_side(resolve_ref(req.baseline, "baseline", uri, req.experiment, Path(scratch)),
                             req.baseline_label, "baseline")
        baseline.ref = req.baseline
        if req.suite and req.suite != baseline.plan.suite:
            raise UsageError(f"suite={req.suite!r}, but the baseline ran on {baseline.plan.suite!r}; the candidate "
                             "must meet the baseline's suite (leave suite= out)")
        sequential_verdicts = None
        if req.candidate_policy is not None:
            cand_dir, cand_results = _evaluate_candidate(req, req.candidate_policy, baseline, log)
            candidate = load_side(cand_dir, None, "candidate")
            if req.sequential:
                sequential_verdicts = cand_results.section("sequential")["gate"]
        else:
            assert req.candidate is not None  # exactly one of candidate and candidate_policy, checked above
            candidate = load_side(resolve_ref(req.candidate, "candidate", uri, req.experiment, Path(scratch)),
                                  req.candidate_label, "candidate")
            candidate.ref = req.candidate
        result = compare(candidate, baseline, req.options, sequential_verdicts)
    req.out.mkdir(parents=True, exist_ok=True)
    plan_mod.write_json(req.out / GATE_FILE, result)
    summary = markdown(result)
    fsio.write_text(req.out / SUMMARY_FILE, summary)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as fh:
            fh.write(summary)
    if req.tracking_uri:
        from evalsuite import tracking

        tracking.log_gate_or_explain(req.out, req.tracking_uri, req.experiment, log=log)
    return result


def _reuse_fixed_candidate(fixed: Path, sequential: Path, plan: Plan, key: BlindingKey, budget: int) -> None:
    """A sequential gate after an INCONCLUSIVE fixed one in the same gate folder starts from the
    candidate episodes already run - only when that run is this candidate on these initial
    conditions (same policy, suite, seed, tasks, step limits, options). Its e-processes are valid at
    every look; the fixed look spent its own alpha, so the pair of gates errs at most twice alpha.
    ``plan`` and ``key`` are the sequential run's own: they are written beside the copied episodes,
    so the folder is a run folder whose journal matches its plan."""
    if not (fixed / JOURNAL_FILE).exists() or (sequential / JOURNAL_FILE).exists():
        return
    saved, saved_key = plan_mod.load(fixed)
    same = (not saved.stopping.sequential and saved_key == key
            and all(getattr(saved, f) == getattr(plan, f) for f in ("suite", "seed", "tasks", "max_steps",
                                                                      "suite_options")))
    if not same:
        return
    copied = [r for r in read(fixed / JOURNAL_FILE, plan=saved) if r.ic_index < budget]
    plan_mod.save(sequential, plan, key)
    journal.write(sequential / JOURNAL_FILE, copied)


def _evaluate_candidate(req: GateRequest, policy: PolicyEntry, baseline: Side, log: Callable[[str], Any]
                        ) -> tuple[Path, Results]:
    """The candidate ``policy`` (``req.candidate_policy``) on the baseline's initial conditions (same
    suite, tasks, seed, step limits): its run folder and its results."""
    from evalsuite.harness import evaluate
    from evalsuite.request import EvaluateRequest

    plan = baseline.plan
    if req.sequential:
        budget = req.budget or plan.episodes
        if budget > plan.episodes:
            raise UsageError(f"budget={budget} exceeds the baseline's {plan.episodes} episodes per task; a sequential "
                             f"gate pairs with recorded baseline episodes, so use budget<={plan.episodes}")
        recorded = {task: [baseline.outcomes[task][i][1] if i in baseline.outcomes[task] else None
                           for i in range(budget)] for task in plan.tasks}
        stopping = Stopping("sequential", alpha=req.options.alpha, round_size=req.round_size,
                            margin=req.options.margin, decision="gate", baseline=recorded)
        episodes = budget
    else:
        stopping, episodes = Stopping(), plan.episodes
    out = req.out / ("candidate-sequential" if req.sequential else "candidate")
    if req.sequential:  # the plan the candidate's evaluation makes (its suite digest is checked when it resumes)
        own_plan, key = plan_mod.make_plan(suite=plan.suite, tasks=list(plan.tasks), policies=[policy],
                                           episodes=budget, seed=plan.seed, max_steps=dict(plan.max_steps),
                                           suite_options=dict(plan.suite_options), stopping=stopping,
                                           family=plan.family)
        _reuse_fixed_candidate(req.out / "candidate", out, own_plan, key, budget)
    results = evaluate(EvaluateRequest.of(suite=plan.suite, policies=[policy], out=out, tasks=list(plan.tasks),
                                          suite_options=dict(plan.suite_options), episodes=episodes, seed=plan.seed,
                                          max_steps=dict(plan.max_steps), batch_size=req.batch_size,
                                          env_workers=req.env_workers, stopping=stopping,
                                          tracking_uri=req.tracking_uri, experiment=req.experiment,
                                          tags={"evalsuite.gate_candidate": "true"}, progress=req.progress), log=log)
    return out, results
