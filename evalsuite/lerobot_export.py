"""`evalsuite export RUN format=lerobot`: a run's episodes as a LeRobotDataset, written by LeRobot itself.

The journal holds outcomes, not observations or actions, so each finished episode is replayed - alone, in
this process, through the lock-step executor (``batch_size=1``), as ``evalsuite video`` replays one - with
the suite's environment wrapped to record the observation before each step and the action taken. A replay
must end as its journaled episode did (steps and status), else the episode is left out with one line
saying why. The recorded observations travel under the names the remote policy client sends
(``evalsuite.wire.Layout``) and are handed, with per-frame fields, to
``policies/lerobot_bridge/write_dataset.py`` in LeRobot's own environment (``evalsuite.demos``).

What goes where (LeRobot's writer takes, per frame, its declared features plus ``task``; its episode
table has fixed columns and no hook for others):

- frame features: ``observation.*``, ``action``, ``task`` (the instruction), and ``trial_id`` and
  ``policy_code`` (strings), ``success`` (bool) and ``progress`` (float32, only when every exported
  episode has one) - the episode's, repeated on each of its frames, so a training or analysis loop over
  ``dataset[i]`` can split or filter by them without a join;
- ``meta/evalsuite.json``: where the episodes came from and one row per LeRobot episode (index, trial id,
  task, code, initial condition, seeds, status, steps, success, progress), the episodes left out and why;
  the policies' labels and parameters (code -> label) only with ``unblinded=true``.

Blinding: a simulated run is unblinded by its own report, but an export is a file that travels, so it
carries the blinding codes only unless the command line says ``unblinded=true``. A trial run (people and a
robot, ``trial.json``) has no simulator to replay and is refused.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evalsuite.errors import UsageError
from evalsuite.interfaces import EnvInfo, Observation, StepResult, TaskEnv
from evalsuite.journal import EpisodeRecord
from evalsuite.specs import SuiteSpec, load_entry_point

# token -> what the recording environment of one replay writes: "current", the episode being replayed
_TAPES: dict[str, dict[str, Any]] = {}


@dataclasses.dataclass
class Taped:
    """One replayed episode: the observation before each step and the action taken there."""

    obs: list[dict[str, NDArray[Any]]] = dataclasses.field(default_factory=list)
    actions: list[NDArray[Any]] = dataclasses.field(default_factory=list)
    last: dict[str, NDArray[Any]] = dataclasses.field(default_factory=dict)  # after the last step


class TapingEnv:
    """The suite's environment, recording each episode into its tape's ``current``."""

    def __init__(self, env: TaskEnv, tape: dict[str, Any]) -> None:
        self.env, self.tape = env, tape
        self.info: EnvInfo = env.info

    def reset(self, ic_seed: int, ic_index: int) -> tuple[Observation, dict[str, Any]]:
        self.tape.pop("current", None)  # a reset that fails leaves no episode behind
        obs, init = self.env.reset(ic_seed, ic_index)
        self.tape["current"] = Taped(last=_copy(obs))
        return obs, init

    def step(self, action: NDArray[Any]) -> StepResult:
        result = self.env.step(action)  # an exception here: the step is not taken, nor recorded
        taped: Taped = self.tape["current"]
        taped.obs.append(taped.last)
        taped.actions.append(np.array(action, dtype=np.float64, copy=True))
        taped.last = _copy(result.obs)
        return result

    def close(self) -> None:
        self.env.close()


def _copy(obs: Observation) -> dict[str, NDArray[Any]]:
    return {k: np.array(v, copy=True) for k, v in obs.items()}


def taping_env(task_id: str, max_steps: int, *, tape_inner: str, tape_token: str, **kwargs: Any) -> TapingEnv:
    """The suite's own environment, wrapped (an entry point, so the executor builds it as any other)."""
    env = load_entry_point(tape_inner)(task_id, max_steps=max_steps, **kwargs)
    return TapingEnv(env, _TAPES[tape_token])


def replay(suite: SuiteSpec, make_policy: Callable[[str, str], Any], max_steps: dict[str, int],
           records: Sequence[EpisodeRecord]) -> tuple[dict[str, Taped], list[str]]:
    """Run ``records``' trials again, one at a time, recording them; returns trial id -> recording for
    the replays that match their journaled episode (steps and status), and one line for each that does not."""
    from evalsuite.plan import Trial
    from evalsuite.runner import LocalExecutor, RunContext

    order = sorted(records, key=lambda r: (r.task, r.trial_id))  # one task at a time: one environment each
    token = uuid.uuid4().hex
    tape = _TAPES[token] = {}
    again: dict[str, tuple[EpisodeRecord, Taped | None]] = {}
    try:
        wrapped = dataclasses.replace(suite, entry_point="evalsuite.lerobot_export:taping_env", kwargs={
            **suite.kwargs, "tape_inner": suite.entry_point, "tape_token": token})
        trials = [Trial(r.trial_id, r.task, r.ic_index, r.ic_seed, r.policy_seed, r.policy_code) for r in order]
        with LocalExecutor(batch_size=1) as executor:
            executor.run(trials, RunContext(suite=wrapped, max_steps=max_steps, make_policy=make_policy),
                         lambda rec: again.__setitem__(rec.trial_id, (rec, tape.pop("current", None))))
    finally:
        _TAPES.pop(token, None)
    kept, notes = {}, []
    for r in order:
        why = _not_kept(r, *again.get(r.trial_id, (None, None)))
        if why:
            notes.append(f"{r.trial_id}: left out: {why}")
        else:
            kept[r.trial_id] = again[r.trial_id][1]
    return {k: v for k, v in kept.items() if v is not None}, notes


def _not_kept(journaled: EpisodeRecord, record: EpisodeRecord | None, taped: Taped | None) -> str:
    """Why a replayed episode is not exported ("" when it is)."""
    if record is None or taped is None:
        return "it was not replayed"
    if (record.steps, record.status) != (journaled.steps, journaled.status):
        reason = (record.reason.splitlines() or [""])[0]
        return (f"the replay ended {record.status} after {record.steps} steps, the journal says {journaled.status} "
                f"after {journaled.steps}" + (f" ({reason})" if reason else ""))
    if not taped.actions:
        return "it has no step to record"
    return ""


def instruction(suite: SuiteSpec, task: str) -> str:
    """What the remote client sends as ``task``: the task's instruction, else its id in words."""
    return suite.task(task).instruction or task.replace("-", " ")


def chosen(final: dict[str, EpisodeRecord], trials: Sequence[str], run_dir: Path) -> list[EpisodeRecord]:
    """The episodes to export: every finished outcome episode, or the named trials (each one of them)."""
    outcomes = {t: r for t, r in final.items() if r.is_outcome}
    if not trials:
        if not outcomes:
            raise UsageError(f"{run_dir} has no finished episode to export (its journal holds none)")
        return sorted(outcomes.values(), key=lambda r: r.trial_id)
    for t in trials:
        if t not in outcomes:
            raise UsageError(f"trials: {t!r} is not a finished episode of {run_dir}; e.g. "
                             f"{next(iter(sorted(outcomes)), '(none)')}")
    return [outcomes[t] for t in dict.fromkeys(trials)]


def frame_fields(records: Sequence[EpisodeRecord], taped: dict[str, Taped]) -> dict[str, NDArray[Any]]:
    """Per-frame arrays of the exported episodes' own fields (see the module docstring)."""
    lengths = [len(taped[r.trial_id].actions) for r in records]

    def repeated(values: list[Any], dtype: Any) -> NDArray[Any]:
        return np.repeat(np.asarray(values, dtype=dtype), lengths)

    out = {"trial_id": repeated([r.trial_id for r in records], np.str_),
           "policy_code": repeated([r.policy_code for r in records], np.str_),
           "success": repeated([r.success for r in records], np.bool_)}
    if all(r.progress is not None for r in records):
        out["progress"] = repeated([r.progress for r in records], np.float32)
    return out


def episode_rows(records: Sequence[EpisodeRecord], labels: dict[str, str] | None) -> list[dict[str, Any]]:
    """meta/evalsuite.json's row of each LeRobot episode (in dataset order); never a policy's name
    unless ``labels`` (unblinded); never the journal's free text (a failure's reason may name it)."""
    rows = []
    for i, r in enumerate(records):
        row = {"episode_index": i, "trial_id": r.trial_id, "task": r.task, "policy_code": r.policy_code,
               "ic_index": r.ic_index, "ic_seed": str(r.ic_seed), "policy_seed": str(r.policy_seed),
               "attempt": r.attempt, "status": r.status, "success": r.success, "steps": r.steps,
               "progress": r.progress}
        if labels is not None:
            row["policy"] = labels[r.policy_code]
        rows.append(row)
    return rows


def refuse_trial_run(run_dir: Path) -> None:
    from evalsuite.trial import TRIAL_FILE

    if (run_dir / TRIAL_FILE).exists():
        raise UsageError(f"{run_dir} is a trial run: its episodes ran on a robot, with no simulator to replay, so "
                         "there are no observations or actions to export (format=csv|parquet exports its outcomes)")


def export_run(run_dir: Path, out: Path, *, trials: Sequence[str] = (), python: str = "", fps: int | None = None,
               trusted: Sequence[str] = (), unblinded: bool = False,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Replay the chosen episodes of ``run_dir`` and write them to ``out`` as a LeRobotDataset; returns the
    writer's summary with ``left_out`` (one line per episode not exported)."""
    from evalsuite import __version__, demos, registry, trust
    from evalsuite.api import Run
    from evalsuite.harness import PolicyBuilder, with_options

    refuse_trial_run(run_dir)
    if out.exists():
        raise UsageError(f"out={str(out)!r} exists; format=lerobot writes a new dataset folder")
    demos.lerobot_python(python)  # refused before any episode is replayed
    run = Run(run_dir)
    records = chosen(run.final(), trials, run_dir)
    suite = with_options(registry.suites.get(run.plan.suite), run.plan.suite_options)
    default_fps, robot_type = demos.LEROBOT_SIMULATORS.get(suite.simulator, (None, suite.simulator or "unknown"))
    if (fps or default_fps) is None:
        raise UsageError(f"format=lerobot: suite {suite.id!r} has no known control rate; give fps=...")
    builder = PolicyBuilder(suite, run.key, trusted)
    trust.check(builder.specs, run.key, trusted)
    log(f"export: replaying {len(records)} episode{'' if len(records) == 1 else 's'}")
    taped, notes = replay(suite, builder, dict(run.plan.max_steps), records)
    for note in notes:
        log(f"export: {note}")
    kept = [r for r in records if r.trial_id in taped]
    if not kept:
        raise UsageError(f"no episode of {run_dir} replayed as journaled; nothing exported" +
                         (f" ({notes[-1]})" if notes else ""))
    episodes = [demos.Episode({k: np.stack([*(o[k] for o in taped[r.trial_id].obs), taped[r.trial_id].last[k]])
                               for k in taped[r.trial_id].last},
                              np.stack(taped[r.trial_id].actions), np.zeros(0), r.ic_seed) for r in kept]
    shapes = {k: tuple(v.shape[1:]) for k, v in episodes[0].obs.items()}
    labels = run.key.labels if unblinded else None
    info: dict[str, Any] = {
        "source": "evalsuite export", "run": str(run_dir), "suite": suite.id, "suite_options": run.plan.suite_options,
        "seed": run.plan.seed, "evalsuite": __version__, "unblinded": unblinded,
        "episodes": episode_rows(kept, labels), "left_out": notes}
    if unblinded:
        info["policies"] = {code: {"label": entry.label, "id": entry.id, "params": entry.params}
                            for code, entry in run.key.items()}
    summary = demos.write_lerobot_dataset(
        demos.Demos(suite.id, "run", episodes), out, shapes, fps=int(fps or default_fps or 0), robot_type=robot_type,
        instruction=instruction(suite, kept[0].task), info=info, python=python,
        tasks=[instruction(suite, r.task) for r in kept], extra=frame_fields(kept, taped),
        repo_id=f"evalsuite/{suite.id}-{run_dir.resolve().name}")
    return {**summary, "left_out": notes}
