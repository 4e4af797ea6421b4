"""One evaluation, end to end: plan -> (resume) -> run -> journal -> results -> report -> MLflow.

Everything needed to resume lives in the run folder; running the same request on the same folder
skips the finished trials and runs only the rest, so an interrupted run ends with exactly the
planned episodes and the same ``results.json`` as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from evalsuite import contract, fsio, names, registry, report, sequential, trust
from evalsuite import plan as plan_mod
from evalsuite.analysis import AnalysisOptions, analyze
from evalsuite.errors import UsageError, choices
from evalsuite.interfaces import Policy, check_compatible
from evalsuite.journal import (
    ERROR,
    JOURNAL_FILE,
    POLICY_ERROR,
    EpisodeRecord,
    Journal,
    attempts_so_far,
    finished_trials,
)
from evalsuite.plan import BlindingKey, Plan, PolicyEntry, Trial
from evalsuite.request import EvaluateRequest, Execution
from evalsuite.results import Results
from evalsuite.runlock import RunLock
from evalsuite.runner import Executor, LocalExecutor, RunContext
from evalsuite.runner.envs import env_info
from evalsuite.runner.executor import time_line, time_split
from evalsuite.runner.parallel import threads_limited
from evalsuite.specs import PolicySpec, SuiteSpec, load_entry_point

GROUP_PARAM = "group"  # every policy takes it: checkpoints of one algorithm (training seeds) form a group
LABEL_PARAM = "label"  # every policy takes it: the name the report, MLflow and the console show
ANALYSIS_PARAMS = {GROUP_PARAM, LABEL_PARAM}  # the analysis's parameters, never the policy's


def resolve_policy(entry: PolicyEntry) -> None:
    """Check a requested policy against its spec: known id, known parameter names."""
    spec = registry.policies.get(entry.id)
    unknown = set(entry.params) - set(spec.params) - ({spec.positional} if spec.positional else set()) - ANALYSIS_PARAMS
    if unknown:
        accepted = set(spec.params) | ({spec.positional} if spec.positional else set()) | ANALYSIS_PARAMS
        raise UsageError(f"policy {entry.id!r} has no parameter {sorted(unknown)[0]!r}; "
                         f"accepted: {choices(accepted) or '(none)'}")


def policy_suite(suite: SuiteSpec) -> SuiteSpec:
    """The suite a policy is built for. On an MDP family it is the family's base suite: the family
    changes the world, not the policy's task."""
    return registry.suites.get(suite.base_suite) if suite.base_suite else suite


def build_policy(policy_id: str, params: dict[str, Any], task: str, suite: SuiteSpec) -> Policy:
    """A registered policy for one task: its spec's defaults overridden by ``params``. The caller
    names the files in ``params``: that is the consent to load the pickles among them."""
    spec = registry.policies.get(policy_id)
    with trust.allowing(trust.pickled_files(spec, params)):
        return _build(spec, params, task, policy_suite(suite))


def _build(spec: PolicySpec, params: dict[str, Any], task: str, suite: SuiteSpec) -> Policy:
    params = {k: v for k, v in params.items() if k not in ANALYSIS_PARAMS}  # the analysis's, not the policy's
    policy: Policy = load_entry_point(spec.entry_point)(suite.task(task), suite, **{**spec.params, **params})
    return policy


class PolicyBuilder:
    """Builds each (code, task) policy once from the blinding key. Specs are resolved when it is
    made, so a copy sent to a worker process or a Ray actor builds the same policies without the
    registry (whose runtime registrations the worker never saw). ``trusted``: the pickled files the
    command's own line allowed (evalsuite/trust.py) - never taken from the key."""

    def __init__(self, suite: SuiteSpec, key: Mapping[str, Any], trusted: Sequence[str] = ()) -> None:
        self.suite, self.key, self.trusted = policy_suite(suite), BlindingKey.of(key), tuple(trusted)
        self.specs = {code: registry.policies.get(entry.id) for code, entry in self.key.items()}
        self._cache: dict[tuple[str, str], Policy] = {}

    def __call__(self, code: str, task: str) -> Policy:
        if (code, task) not in self._cache:
            with trust.allowing(self.trusted):
                self._cache[code, task] = _build(self.specs[code], self.key[code].params, task, self.suite)
        return self._cache[code, task]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": {}}  # policies are rebuilt where they run


CORE_PACKAGES = ("evalsuite", "numpy", "scipy", "statsmodels", "mlflow", "torch")


def package_versions(suite: SuiteSpec | None = None) -> dict[str, str]:
    """Python's version and the installed versions of the core's packages and the suite's own."""
    out = {"python": platform.python_version()}
    for name in (*CORE_PACKAGES, *(suite.packages if suite else ())):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def suite_digest(suite: SuiteSpec, tasks: list[str]) -> str:
    """sha256 of what a suite is for these tasks: entry point, options, each task's step limit
    and tags, an MDP family's axes, and the versions of the suite's own simulator packages."""
    import hashlib

    versions = package_versions(suite)
    spec = {"id": suite.id, "entry_point": suite.entry_point, "kwargs": suite.kwargs, "family": suite.family,
            "tasks": [[t, suite.task(t).max_steps, list(suite.task(t).tags)] for t in tasks],
            "simulators": {name: versions.get(name) for name in suite.packages}}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def with_options(suite: SuiteSpec, options: dict[str, Any]) -> SuiteSpec:
    """The suite with extra environment options (e.g. ``obs=pointcloud``): the ones its plugin
    declares (``SuiteSpec.options``); the plugin's entry point validates their values."""
    if not options:
        return suite
    accepted = {o.name for o in suite.options if o.target == "env"} - set(suite.kwargs)
    for name in options:
        if name not in accepted:
            raise UsageError(f"suite {suite.id!r} takes no option {name}; accepted: {choices(accepted) or '(none)'}")
    return dataclasses.replace(suite, kwargs={**suite.kwargs, **options})


@dataclass(frozen=True)
class Prepared:
    """A request resolved against its suite: the tasks, step limits, plan and blinding key it makes,
    checked before anything is written."""

    req: EvaluateRequest
    suite: SuiteSpec
    tasks: list[str]
    max_steps: dict[str, int]
    plan: Plan
    key: BlindingKey


def evaluate(req: EvaluateRequest, log: Callable[[str], None] = print) -> Results:
    """One evaluation in a straight line: prepare the plan, open the run folder (every policy built
    before the plan is written), run the episodes, then the worst-case search and the videos as
    inputs of the one analysis, its report, and MLflow - nothing written is read back."""
    run = prepare(req, log)
    fsio.make_dir(req.out)
    phase = _Phases([name for name, on in (("episodes", True), ("worst-case search", req.search is not None),
                                          ("videos", req.video.mode != "none"), ("analysis and report", True),
                                          ("MLflow", bool(req.tracking.uri))) if on], log)
    # one process per run folder: a second one would run every trial again into the same journal
    with RunLock(req.out, purpose="evaluate", log=log):
        run, resuming, builder, notes = _open(run)
        phase("episodes", f"{len(run.plan.trials)} planned")
        records, info, actions = _execute(run, builder, resuming, log)
        worst_case = None
        if req.search is not None:
            phase("worst-case search")
            worst_case = _worst_cases(req, run.suite, run.tasks[0], req.out, log)
        clips = {}
        if req.video.mode != "none":
            phase("videos")
            clips = _render_videos(run, builder, records, info, log, actions)
        info["ended"] = _now()
        plan_mod.write_json(req.out / names.RUN_INFO, info)
        phase("analysis and report")
        results = _write_results(req.out, run.plan, run.key, records, req.analysis, log, notes=notes,
                                 worst_case=worst_case, clips=clips)
    if req.tracking.uri:  # after the lock is gone, so its file is not uploaded
        from evalsuite import tracking

        phase("MLflow")
        tracking.log_or_explain(req.out, req.tracking.uri, req.tracking.experiment, log=log, results=results,
                                info=info, plan=None if resuming else run.plan)
    return results


def _minutes(seconds: float) -> str:
    """``4m05s``."""
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


class _Phases:
    """``[k/n] phase (note), at 1m05s`` as a run moves from one phase to the next: a long run says
    what it is doing (episodes, worst-case search, videos, analysis, MLflow) and for how long."""

    def __init__(self, names: Sequence[str], log: Callable[[str], None]) -> None:
        self.names, self.log, self.started = list(names), log, time.perf_counter()

    def __call__(self, name: str, note: str = "") -> None:
        elapsed = round(time.perf_counter() - self.started)
        at = _minutes(elapsed) if elapsed >= 60 else f"{elapsed}s"
        self.log(f"[{self.names.index(name) + 1}/{len(self.names)}] {name}" + (f" ({note})" if note else "")
                 + f", at {at}")


def prepare(req: EvaluateRequest, log: Callable[[str], None] = print) -> Prepared:
    """The suite with the request's options, its tasks and step limits, the plan and the key."""
    design = req.design
    suite = with_options(registry.suites.get(req.suite), design.suite_options)
    tasks = suite.select_tasks(list(design.tasks)) if design.tasks else list(suite.default_tasks or suite.task_ids)
    if not design.tasks and suite.default_tasks and len(suite.default_tasks) < len(suite.tasks):
        log(f"suite {suite.id!r}: its default {len(tasks)} of {len(suite.tasks)} tasks ({', '.join(tasks)}); "
            "tasks=all runs every one")
    if not req.policies:
        raise UsageError(f"no policies given and suite {suite.id!r} has no default ones; e.g. policies=[scripted]")
    for entry in req.policies:
        resolve_policy(entry)
    if design.stopping.sequential and design.stopping.decision != "gate" and len(req.policies) < 2:
        raise UsageError("stopping=sequential compares policies: give at least two in policies=[...]")
    caps = design.max_steps if isinstance(design.max_steps, dict) else {t: design.max_steps for t in tasks}
    max_steps = {t: min(suite.task(t).max_steps, caps.get(t) or suite.task(t).max_steps) for t in tasks}
    plan, key = plan_mod.make_plan(suite=suite.id, tasks=tasks, policies=list(req.policies),
                                   episodes=design.episodes or suite.default_episodes, seed=design.seed,
                                   max_steps=max_steps, suite_options=design.suite_options, stopping=design.stopping,
                                   suite_digest=suite_digest(suite, tasks), family=suite.family)
    return Prepared(req, suite, tasks, max_steps, plan, key)


def _open(run: Prepared) -> tuple[Prepared, bool, PolicyBuilder, dict[str, Any]]:
    """The run folder checked (a resume must be the same run; episodes without a plan are refused),
    every policy built and checked against every task, then the plan written: (the run with its
    plan's conventions, resuming, the policies, what they say about themselves)."""
    run_dir, plan, key = run.req.out, run.plan, run.key
    resuming = (run_dir / plan_mod.PLAN_FILE).exists()
    if resuming:
        saved, saved_key = plan_mod.load(run_dir)
        plan_mod.check_resumable(saved, saved_key, plan, key, run_dir)
    elif (run_dir / JOURNAL_FILE).exists() and (run_dir / JOURNAL_FILE).stat().st_size:
        raise UsageError(f"{run_dir} holds episodes ({JOURNAL_FILE}) but no {plan_mod.PLAN_FILE}: they cannot be "
                         f"matched to policies; restore its {plan_mod.PLAN_FILE} and {plan_mod.KEY_FILE}, or use "
                         "another out= folder")
    # the pickles the request's own policies name are the ones it may load (evalsuite/trust.py)
    builder = PolicyBuilder(run.suite, key, [path for entry in run.req.policies
                                             for path in trust.pickled_files(registry.policies.get(entry.id),
                                                                             entry.params)])
    contracts: dict[str, Any] = {"tasks": {}, "policies": {}, "mismatches": []}
    for task in run.tasks:
        _check_task(run, builder, task, contracts)
    plan = dataclasses.replace(plan, contracts=contracts)
    if not resuming:  # a failed start leaves no plan behind, so the corrected command starts afresh
        plan_mod.save(run_dir, plan, key)
    # what policies say about themselves (family, network evaluations per chunk): reported per policy
    notes = {key.label(code): builder(code, run.tasks[0]).requirements.notes for code in plan.codes}
    plan_mod.write_json(run_dir / names.POLICY_NOTES, notes)
    return dataclasses.replace(run, plan=plan), resuming, builder, notes


def _check_task(run: Prepared, builder: PolicyBuilder, task: str, contracts: dict[str, Any]) -> None:
    """Refuse a mismatch on ``task`` before any episode runs: a camera it lacks, more episodes than
    its stored initial states, a policy that does not fit it (shapes, then conventions - recorded in
    ``contracts``, and under contract=warn run anyway)."""
    info = env_info(run.suite, task, run.max_steps[task])
    if run.req.video.mode != "none":
        from evalsuite import video

        video.check_camera(run.suite.id, info.cameras, run.req.video.camera)
    episodes = run.plan.episodes
    if info.n_initial_conditions is not None and episodes > info.n_initial_conditions:
        raise UsageError(f"episodes={episodes}, but task {task!r} has only {info.n_initial_conditions} stored "
                         f"initial states; use episodes<={info.n_initial_conditions}")
    suite_contract = contract.check_fields(info.contract, f"suite {run.suite.id!r}")
    contracts["tasks"][task] = suite_contract
    for code in run.plan.codes:
        label, requirements = run.key.label(code), _built(run, builder, code, task).requirements
        check_compatible(label, requirements, info, task)
        stated = contract.check_fields(requirements.contract, f"policy {label!r}")
        contracts["policies"].setdefault(code, stated)
        found = contract.mismatches(stated, suite_contract)
        contract.enforce(found, label, task, run.req.design.contract)
        contracts["mismatches"] += [{"code": code, "task": task, **m.to_dict()} for m in found]


PROTOCOL = ("requirements", "reset", "act", "fingerprint")  # evalsuite/interfaces.py's Policy


def _built(run: Prepared, builder: PolicyBuilder, code: str, task: str) -> Policy:
    """The policy of ``code`` for ``task``; a factory refusing the task (ValueError, TypeError) or a
    policy lacking part of the protocol is one line naming it, before the plan is written."""
    label = run.key.label(code)
    try:
        policy = builder(code, task)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"policy {label!r} cannot be built for task {task!r}: {type(exc).__name__}: "
                         f"{(str(exc).splitlines() or [''])[0]}") from exc
    missing = [name for name in PROTOCOL if not hasattr(policy, name)]
    if missing:
        raise UsageError(f"policy {label!r} ({type(policy).__name__}) has no {', '.join(missing)}: a policy needs "
                         f"{', '.join(PROTOCOL)} (evalsuite/interfaces.py; `evalsuite check-policy` checks one)")
    return policy


def _execute(run: Prepared, builder: PolicyBuilder, resuming: bool,
             log: Callable[[str], None]) -> tuple[list[EpisodeRecord], dict[str, Any], dict[str, Any]]:
    """Every unfinished trial (or round of them), journaled as it ends; returns every journaled
    attempt, what run_info.json records about the run, and - when videos are asked for - the actions
    each episode took (trial id -> steps x action_dim), so its video replays them without the policy."""
    req, plan, run_dir = run.req, run.plan, run.req.out
    max_attempts = req.analysis.max_attempts
    executor, parallelism = make_executor(req.execution, run.suite, len(plan.trials),
                                          record_actions=req.video.mode != "none")
    started, ran = time.time(), 0
    with threads_limited(parallelism["driver_threads"]), executor, Journal(run_dir / JOURNAL_FILE, plan) as journal:
        _check_fingerprints(journal.records, builder, run_dir)
        done = finished_trials(journal.records, max_attempts)
        if done:
            log(f"resuming {run_dir}: {len(done)}/{len(plan.trials)} trials already finished")
        live = None
        if req.tracking.uri and req.tracking.live:
            from evalsuite.tracking import LiveProgress

            live = LiveProgress.start(run_dir, req.tracking.uri, req.tracking.experiment, log=log,
                                      plan=None if resuming else plan)
        with _Progress(plan, done, max_attempts, req.progress, live, log) as progress:
            def on_record(record: EpisodeRecord) -> None:
                journal.append(record)
                progress.advance(record)
                if record.status == ERROR:  # codes only: whoever watches stays blind
                    log(f"trial {record.trial_id} attempt {record.attempt}: infrastructure error (will retry up to "
                        f"{max_attempts} attempts): {record.reason}")
                elif record.status == POLICY_ERROR:
                    log(f"trial {record.trial_id}: policy error, counted as a failure: {record.reason}")

            rounds = sequential.n_rounds(plan) if plan.stopping.sequential else 1
            for _ in range(rounds * max_attempts):  # bounded: rounds x retries of errors
                todo = _next_trials(plan, journal.records, max_attempts)
                if not todo:
                    break
                attempts = attempts_so_far(journal.records)
                ctx = RunContext(suite=run.suite, max_steps=run.max_steps, make_policy=builder,
                                 attempts={t.trial_id: attempts.get(t.trial_id, 0) + 1 for t in todo},
                                 episode_timeout_s=req.execution.episode_timeout_s)
                executor.run(todo, ctx, on_record)
                ran += len(todo)
            summary = executor.summary()
            spent = summary.pop("time", None)
            parallelism.update(summary)
        records = list(journal.records)
        actions = getattr(executor, "actions", {})
    elapsed = time.time() - started
    split = time_split(spent, elapsed, int(parallelism.get("workers") or 1))
    if split is not None and ran:
        log(time_line(split))
    info = {"started": _now(started), "versions": package_versions(run.suite), "git_commit": git_commit(),
            "host": platform.node(),
            "command": sys.argv, "batch_size": req.execution.batch_size, "parallelism": parallelism,
            "wall_time_s": round(elapsed, 2), "episodes_run": ran,
            "episodes_per_s": round(ran / elapsed, 3) if elapsed > 0 and ran else None, "tags": req.tracking.tags,
            "time": split}
    return records, info, actions


def _now(seconds: float | None = None) -> str:
    """An ISO 8601 time in UTC (run_info.json's ``started``/``ended``; MLflow's run times)."""
    from datetime import datetime

    return datetime.fromtimestamp(time.time() if seconds is None else seconds, tz=UTC).isoformat()


def _check_fingerprints(records: Sequence[EpisodeRecord], builder: PolicyBuilder, run_dir: Path) -> None:
    """A resumed run's journaled episodes were played by the policies the request builds now: a
    checkpoint replaced between the two would mix two policies under one blinding code."""
    seen = {(r.task, r.policy_code): r.policy_fingerprint for r in records if r.policy_fingerprint}
    for (task, code), journaled in sorted(seen.items()):
        now = builder(code, task).fingerprint()
        if now != journaled:
            raise UsageError(f"{run_dir / JOURNAL_FILE}: policy {code} ({builder.key.label(code)}) on {task} played "
                             f"its journaled episodes as {journaled!r} but is {now!r} now (its checkpoint or code "
                             "changed); use another out= folder")


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_executor(ex: Execution, suite: SuiteSpec, trials: int | None = None,
                  record_actions: bool = False) -> tuple[Executor, dict[str, Any]]:
    """The executor and its plan of processes and threads: inference threads x processes never
    exceed ``cpus``; environment workers and episode workers get what their share allows. A suite
    asking for whole-episode workers gets one a core, but no more than its ``trials`` give each two
    batches to run (a worker's start-up - a process importing the simulator - is worth it only then):
    a small plan runs in this process."""
    cpus = ex.cpus or available_cpus()
    if ex.executor == "ray":
        return _ray_executor(ex, cpus)
    from evalsuite.runner.parallel import ProcessExecutor

    workers = ex.workers
    if workers is None and suite.episode_workers and ex.env_workers is None:
        workers = cpus if trials is None else min(cpus, trials // (2 * ex.batch_size))
        workers = workers if workers > 1 else 0  # one worker is this process's work done elsewhere
    if workers:
        threads = max(1, cpus // workers)
        plan = {"driver_threads": 1, "executor": "local-workers", "cpus": cpus, "workers": workers,
                "batch_size": ex.batch_size, "inference_threads_per_worker": threads,
                "environment_threads_per_worker": 1}
        return ProcessExecutor(workers, ex.batch_size, threads, record_actions=record_actions), plan
    env_workers = suite.env_workers if ex.env_workers is None else ex.env_workers
    threads = max(1, cpus - env_workers)  # each environment worker is single-threaded
    plan = {"driver_threads": threads, "executor": "local", "cpus": cpus, "env_workers": env_workers,
            "batch_size": ex.batch_size, "inference_threads": threads}
    return LocalExecutor(batch_size=ex.batch_size, env_workers=env_workers, record_actions=record_actions), plan


def _ray_executor(ex: Execution, cpus: int) -> tuple[Executor, dict[str, Any]]:
    from evalsuite.runner.ray_executor import RayExecutor

    workers = ex.workers or cpus
    plan: dict[str, Any] = {"driver_threads": 1,  # the driver only writes the journal
                            "executor": "ray", "address": ex.ray_address or "local", "workers": workers,
                            "worker_cpus": ex.worker_cpus, "worker_gpus": ex.worker_gpus,
                            "batch_size": ex.batch_size}
    if ex.inference_actors:
        plan.update(inference_actors=ex.inference_actors, inference_cpus=ex.inference_cpus,
                    inference_gpus=ex.inference_gpus, inference_threads_per_server=max(1, int(ex.inference_cpus)))
    else:
        plan["inference_threads_per_worker"] = max(1, int(ex.worker_cpus))
    return RayExecutor(ex.ray_address, workers, ex.batch_size, ex.worker_cpus, ex.worker_gpus,
                       inference_actors=ex.inference_actors, inference_cpus=ex.inference_cpus,
                       inference_gpus=ex.inference_gpus), plan


def _render_videos(run: Prepared, builder: PolicyBuilder, records: list[EpisodeRecord], info: dict[str, Any],
                   log: Callable[[str], None], actions: dict[str, Any]) -> dict[str, str]:
    """Replay the chosen episodes into RUN/videos/ after the run (evaluation never waits for a
    renderer; an episode whose ``actions`` were recorded is replayed from them, without the policy);
    returns the video index for the report. A suite that cannot render, a renderer
    that fails or a damaged old index costs the videos, never the results (one line says why)."""
    from evalsuite import video

    req, run_dir = run.req, run.req.out
    started = time.time()
    try:
        index = video.read_index(run_dir)
        rendered, index = video.render_run(run_dir, run.suite, builder, req.video.mode, camera=req.video.camera,
                                           stride=req.video.stride, max_frames=req.video.frames,
                                           log=log, plan=run.plan,
                                           final=finished_trials(records, req.analysis.max_attempts), index=index,
                                           actions=actions)
    except OSError:
        raise
    except Exception as exc:  # UsageError (a damaged index) included: the results still stand
        log(f"videos skipped: {(str(exc).splitlines() or [''])[0]}")
        return {}
    if rendered:
        info["video_time_s"] = round(time.time() - started, 2)
        log(f"videos: {len(rendered)} episodes replayed and rendered in {info['video_time_s']:.0f} s, in "
            f"{run_dir / 'videos'}")
    return index


def render_saved_run(run_dir: Path, mode: str, trials: Sequence[str], camera: str, size: tuple[int, int],
                     log: Callable[[str], None] = print, trusted: Sequence[str] = (), *, stride: int,
                     max_frames: int) -> dict[str, str]:
    """``evalsuite video RUN``: the run's suite (with its options) and policies, then its videos;
    returns the trials rendered now. A pickled checkpoint named by the folder is loaded only if
    ``trusted`` (the command line) lists it."""
    from evalsuite import video
    from evalsuite.api import Run

    run = Run(run_dir)
    suite = with_options(registry.suites.get(run.plan.suite), run.plan.suite_options)
    builder = PolicyBuilder(suite, run.key, trusted)
    trust.check(builder.specs, run.key, trusted)
    rendered, _ = video.render_run(run_dir, suite, builder, mode, trials, camera, size, log, plan=run.plan,
                                   final=run.final(), index=run.video_index, stride=stride, max_frames=max_frames)
    return rendered


def _worst_cases(req: EvaluateRequest, suite: SuiteSpec, task: str, run_dir: Path,
                 log: Callable[[str], None]) -> dict[str, Any] | None:
    """The suite's worst-case search of every policy (an MDP family's: evalsuite/analyses/family.py
    reads it): label -> what it found; None where the suite's own options turn it off."""
    if not suite.worst_case_search:
        raise UsageError(f"suite {suite.id!r} has no worst-case search")
    search = load_entry_point(suite.worst_case_search)
    found = {}
    for i, entry in enumerate(req.policies):
        max_steps = req.design.max_steps if isinstance(req.design.max_steps, int) else None
        result = search(suite.id, task, entry, run_dir / "worst_case" / f"policy{i}",
                        suite_options=req.design.suite_options, seed=req.design.seed, max_steps=max_steps, log=log,
                        execution=req.execution,  # the searches run as the family run did
                        **(req.search or {}))
        if result is None:
            return None
        found[entry.label] = result
    plan_mod.write_json(run_dir / names.WORST_CASE, found)
    return found


def _next_trials(plan: Plan, records: list[EpisodeRecord], max_attempts: int) -> list[Trial]:
    """Fixed design: every unfinished trial. Sequential: the current round of undecided tasks."""
    if plan.stopping.sequential:
        return sequential.remaining_trials(plan, records, max_attempts)
    done = finished_trials(records, max_attempts)
    return [t for t in plan.trials if t.trial_id not in done]


def rebuild_report(run_dir: Path, overrides: dict[str, Any] | None = None,
                   log: Callable[[str], None] = print) -> Results:
    """``evalsuite report RUN_DIR``: results and report again from the run folder alone (read
    once, through ``api.Run``; the journal is never written)."""
    from evalsuite.api import Run

    run = Run(run_dir)
    options = AnalysisOptions(**{**run.saved_options, **(overrides or {})})
    if not any(r.is_outcome for r in run.records):  # results.json stays as it was
        state = "empty" if run.file(run.JOURNAL).exists() else "missing"
        raise UsageError(f"{run.file(run.JOURNAL)} is {state}: no episode to report; results.json and the report "
                         "are left as they were (restore the journal, or rerun the evaluation)")
    try:
        index = run.video_index
    except UsageError as exc:  # the report still builds, its videos shown as missing
        log(f"videos: {exc}; the report shows no videos")
        index = {}
    return _write_results(run_dir, run.plan, run.key, run.records, options, log, notes=run.policy_notes,
                          worst_case=run.worst_case, clips=index, final=run.final(options.max_attempts),
                          review=run.review)


def _write_results(run_dir: Path, plan: Plan, key: BlindingKey, records: list[EpisodeRecord], options: AnalysisOptions,
                   log: Callable[[str], None], *, notes: Mapping[str, Any], worst_case: dict[str, Any] | None,
                   clips: dict[str, str], final: dict[str, EpisodeRecord] | None = None,
                   review: list[dict[str, Any]] | None = None) -> Results:
    """The one analysis of a run, then results.json, report.md and report.html: every input passed
    in (policy notes, worst cases, the video index, a review's ratings), nothing read back from the folder."""
    results = analyze(plan, key, records, options, notes=notes, worst_case=worst_case, review=review)
    plan_mod.write_json(run_dir / names.RESULTS, results.to_dict())
    final = final if final is not None else finished_trials(records, options.max_attempts)
    gallery = report.video_clips(run_dir, results, clips, final, plan.max_steps) if clips else {}
    _, html_path = report.write(run_dir, results, gallery)
    log(f"results: {run_dir / names.RESULTS}\nreport: {html_path}")
    return results


class _Progress:
    """Progress while a run goes, codes only (whoever watches stays blind): a bar of episodes done /
    planned with rate and ETA, one row per task (up to ``MAX_TASK_ROWS``) with each blinding code's
    count, and - with a tracking backend - the same figures as metrics of a live MLflow run. Where the
    output is not a terminal (a CI log, a file) the bar is a line every ``LINE_S`` seconds instead."""

    MAX_TASK_ROWS = 12
    LINE_S = 30.0

    def __init__(self, plan: Plan, done: dict[str, EpisodeRecord], max_attempts: int, enabled: bool,
                 live: Any = None, log: Callable[[str], None] = print) -> None:
        self.total, self.max_attempts, self.enabled, self.live = len(plan.trials), max_attempts, enabled, live
        self.log, self._said = log, time.perf_counter()
        self.lines = enabled and not sys.stdout.isatty()
        self.planned = {(t.task, t.policy_code): 0 for t in plan.trials}
        for t in plan.trials:
            self.planned[t.task, t.policy_code] += 1
        self.counts = {k: 0 for k in self.planned}
        for r in done.values():
            self.counts[r.task, r.policy_code] = self.counts.get((r.task, r.policy_code), 0) + 1
        self._finished_before = sum(self.counts.values())  # a resumed run's earlier episodes
        self.tasks = list(dict.fromkeys(t.task for t in plan.trials))
        self._bar: Any = None  # a rich.progress.Progress while shown
        self._rows: dict[str, Any] = {}
        self._t0 = time.perf_counter()
        self._n = 0

    def __enter__(self) -> _Progress:
        if self.enabled and not self.lines:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[last]}"))
            self._bar.start()
            self._id = self._bar.add_task("episodes", total=self.total, completed=sum(self.counts.values()),
                                          rate="", last="")
            if len(self.tasks) <= self.MAX_TASK_ROWS:
                for task in self.tasks:
                    planned = sum(v for (t, _), v in self.planned.items() if t == task)
                    done = sum(v for (t, _), v in self.counts.items() if t == task)
                    self._rows[task] = self._bar.add_task(f"  {task}", total=planned, completed=done, rate="",
                                                          last=self._codes(task))
        return self

    def _codes(self, task: str) -> str:
        return " ".join(f"{c} {self.counts[t, c]}/{n}" for (t, c), n in sorted(self.planned.items()) if t == task)

    def advance(self, record: EpisodeRecord) -> None:
        final = record.status != ERROR or record.attempt >= self.max_attempts
        self._n += 1
        if final:
            self.counts[record.task, record.policy_code] = self.counts.get((record.task, record.policy_code), 0) + 1
        rate = self._n / max(1e-9, time.perf_counter() - self._t0)
        if self.live is not None:
            self.live.update(self.counts, self.total, rate)
        if self.lines and time.perf_counter() - self._said >= self.LINE_S:
            self._said = time.perf_counter()
            finished = sum(self.counts.values())
            # finished episodes a second (retried attempts are not progress), this session's only
            done_rate = (finished - self._finished_before) / max(1e-9, self._said - self._t0)
            left = (self.total - finished) / done_rate if done_rate > 0 else 0.0
            self.log(f"episodes: {finished}/{self.total} done, {done_rate:.2f} episodes/s, about "
                     f"{_minutes(left)} to go")
        if self._bar is None:
            return
        self._bar.update(self._id, advance=int(final), rate=f"{rate:.2f} ep/s",
                         last=f"{record.task} [{record.policy_code}] {record.status}")
        if record.task in self._rows:
            self._bar.update(self._rows[record.task], advance=int(final), last=self._codes(record.task))

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self.live is not None:
            self.live.close()
