"""Where episodes execute: the one seam between the plan and the machines.

An executor takes trials and reports one ``EpisodeRecord`` per finished attempt through a
callback; plan, journal and statistics never see how. ``LocalExecutor`` runs K episodes in
lock-step on this machine, batching policy inference across them; a distributed executor (Ray)
implements the same ``run`` and plugs in here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
from numpy.typing import NDArray

from evalsuite.interfaces import InfrastructureError, Observation, Policy, StepResult
from evalsuite.journal import ERROR, FAILURE, POLICY_ERROR, SUCCESS, EpisodeRecord
from evalsuite.plan import Trial
from evalsuite.runner.envs import EpisodeError, InProcessEnvs, SubprocessEnvs, _reason
from evalsuite.specs import SuiteSpec

PolicyFactory = Callable[[str, str], Policy]  # (policy code, task id) -> policy
# The episode time limit charges a policy only for its own inference time; an episode whose wall-clock
# time (simulator, other policies, a loaded machine) exceeds this multiple of it is an infrastructure fault.
WALL_CLOCK_FACTOR = 4
# Where an executor's time went (seconds, summed over its workers): environment steps, resets (the
# environment's and the policy's), environments built at first use (in-process pools; in environment
# workers a build is part of the first reset), policy calls (also per blinding code: "inference_s:CODE"),
# and all of its ``run`` calls (the rest is the harness's own work).
TIME_PARTS = ("simulator_s", "reset_s", "build_s", "inference_s")


def no_time() -> dict[str, float]:
    return dict.fromkeys((*TIME_PARTS, "running_s"), 0.0)


def add_time(total: dict[str, float], part: dict[str, float]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v


def time_split(spent: dict[str, float] | None, wall_s: float, workers: int) -> dict[str, Any] | None:
    """run_info.json's ``time``: the parts summed over ``workers``, and ``other_s``, the rest of
    ``workers`` x ``wall_s`` (the harness's loop, start-up, journal, idle workers); None if unmeasured."""
    if spent is None:
        return None
    parts = {k: round(spent.get(k, 0.0), 3) for k in TIME_PARTS}
    return {**parts, "other_s": round(max(0.0, workers * wall_s - sum(parts.values())), 3),
            "running_s": round(spent.get("running_s", 0.0), 3), "wall_s": round(wall_s, 3), "workers": workers,
            "inference_s_by_code": {k.split(":", 1)[1]: round(v, 3) for k, v in sorted(spent.items())
                                    if k.startswith("inference_s:")}}


def time_line(split: dict[str, Any]) -> str:
    """``time: 62% simulator, 25% inference, 8% resets, 1% building environments, 4% other`` (of
    workers x wall time)."""
    total = sum(split[k] for k in (*TIME_PARTS, "other_s")) or 1.0
    names = {"simulator_s": "simulator", "inference_s": "inference", "reset_s": "resets",
             "build_s": "building environments", "other_s": "other"}
    shares = ", ".join(f"{100 * split[k] / total:.0f}% {name}" for k, name in names.items())
    over = f" (over {split['workers']} workers)" if split["workers"] > 1 else ""
    return f"time: {shares}{over}"


def batches(trials: Sequence[Trial], size: int, together: int = 1) -> list[list[Trial]]:
    """``trials`` in batches of at most ``size`` that share a policy and a task: started together, a
    batch's episodes are served by one policy call a step (and a chunked policy's stay in step),
    where the plan's random order would give batches of about one. Each (task, policy) group is cut,
    in plan order, into batches; the groups take turns (in the order they first come in the plan),
    ``together`` batches a turn - so a run stopped early has covered the policies about equally, and
    ``together`` workers sharing a policy server get the same policy at once (one call serves them
    all). Outcomes do not depend on the order: an episode is fixed by its trial's seeds."""
    groups: dict[tuple[str, str], list[Trial]] = {}
    for t in trials:
        groups.setdefault((t.task, t.policy_code), []).append(t)
    pieces = [(rank // together, g, rank, members[i:i + size]) for g, members in enumerate(groups.values())
              for rank, i in enumerate(range(0, len(members), size))]
    pieces.sort(key=lambda piece: piece[:3])
    return [piece for *_, piece in pieces]


@dataclass
class RunContext:
    """Everything an executor needs besides the trials (kept picklable but for ``make_policy``)."""

    suite: SuiteSpec
    max_steps: dict[str, int]
    make_policy: PolicyFactory  # memoized by the caller: one instance per (code, task)
    attempts: dict[str, int] = field(default_factory=dict)  # trial id -> attempt number to run
    episode_timeout_s: float = 600.0


class EpisodeInfoPolicy(Protocol):
    """A policy declaring ``requirements.episode_info``: it reports on the episode that just ended."""

    def episode_info(self, slot: int) -> dict[str, Any]: ...


class _Finish(Protocol):
    """Ends the episode in a slot with a status and a reason, reporting its record."""

    def __call__(self, slot: int, status: str, reason: str = "", /) -> None: ...


class Executor(Protocol):
    """Runs trials and hands each finished attempt to ``on_record``; used as a context manager
    (``close`` ends its workers, environments or Ray actors)."""

    def run(self, trials: Sequence[Trial], ctx: RunContext, on_record: Callable[[EpisodeRecord], None]) -> None: ...

    def summary(self) -> dict[str, Any]:
        """What the run's ``run_info.json`` should add about how it ran (e.g. inference batching)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass
class _Slot:
    trial: Trial
    attempt: int
    policy: Policy
    fingerprint: str
    started: float
    init_state: dict[str, Any] = field(default_factory=dict)
    obs: Observation = field(default_factory=dict)  # the environment's last observation (set by its reset)
    steps: int = 0
    ret: float = 0.0
    queue: deque[NDArray[Any]] = field(default_factory=deque)
    history: deque[Observation] = field(default_factory=deque)  # the last n_obs_steps observations
    policy_time: float = 0.0  # seconds spent in the policy's calls for this episode
    milestones: dict[str, int | None] = field(default_factory=dict)  # first step each held
    progress: float | None = None  # best so far
    last_milestones: dict[str, bool] = field(default_factory=dict)  # the last step's flags (held at the end)
    taken: list[NDArray[Any]] = field(default_factory=list)  # the actions stepped, when the executor records them


class LocalExecutor:
    """K parallel episodes; one policy call per (policy, task) group per step.

    Action chunks are queued per slot and executed step by step; a slot asks its policy again only
    when its queue is empty. Episodes end independently (success, step limit, error, timeout) and
    their slot takes the next trial at once. Environments are built up front (``warm_up``), one
    per (slot, task), and kept across ``run`` calls (retry rounds) until ``close``.
    """

    def __init__(self, batch_size: int = 8, env_workers: int = 0, record_actions: bool = False,
                 in_order: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.env_workers = env_workers
        # trial id -> the actions its last attempt stepped (steps x action_dim), kept when asked: videos
        # replay them without calling the policy again (evalsuite/video.py)
        self.record_actions = record_actions
        self.actions: dict[str, NDArray[Any]] = {}
        # True: the trials start in the order given, not in batches (a replay pairs each with its video file)
        self.in_order = in_order
        self._envs: InProcessEnvs | SubprocessEnvs | None = None
        self.times = no_time()  # summed over every ``run``

    def warm_up(self, ctx: RunContext, tasks: Sequence[str]) -> None:
        self._pool(ctx).warm([(slot, task) for task in tasks for slot in range(self.batch_size)])

    def _pool(self, ctx: RunContext) -> InProcessEnvs | SubprocessEnvs:
        if self._envs is None:
            self._envs = (SubprocessEnvs(ctx.suite, ctx.max_steps, self.env_workers) if self.env_workers > 0
                          else InProcessEnvs(ctx.suite, ctx.max_steps))
        return self._envs

    def summary(self) -> dict[str, Any]:
        return {"time": dict(self.times)}

    def close(self) -> None:
        if self._envs is not None:
            self._envs.close()
            self._envs = None

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, trials: Sequence[Trial], ctx: RunContext, on_record: Callable[[EpisodeRecord], None]) -> None:
        run_started = time.perf_counter()
        envs = self._pool(ctx)
        pending = deque(trials if self.in_order else [t for batch in batches(trials, self.batch_size) for t in batch])
        slots: dict[int, _Slot] = {}

        def finish(slot: int, status: str, reason: str = "") -> None:
            s = slots.pop(slot)
            if self.record_actions:
                self.actions[s.trial.trial_id] = np.asarray(s.taken)
            try:
                info = (cast(EpisodeInfoPolicy, s.policy).episode_info(slot) if s.policy.requirements.episode_info
                        else {})
            except Exception as exc:  # diagnostics never cost an outcome
                info = {"error": _reason(exc)}
            on_record(EpisodeRecord(
                trial_id=s.trial.trial_id, task=s.trial.task, policy_code=s.trial.policy_code,
                ic_index=s.trial.ic_index, ic_seed=s.trial.ic_seed, policy_seed=s.trial.policy_seed,
                attempt=s.attempt, status=status, success=status == SUCCESS, steps=s.steps,
                episode_return=round(s.ret, 6), reason=reason,
                wall_time_s=round(time.perf_counter() - s.started, 4),
                policy_fingerprint=s.fingerprint, init_state=s.init_state, policy_info=info,
                milestones=s.milestones,
                progress=1.0 if status == SUCCESS and s.progress is not None else s.progress,
                held_at_end=[name for name, held in s.last_milestones.items() if held] if s.milestones else None,
            ))

        try:
            while pending or slots:
                self._fill(pending, slots, envs, ctx, finish)
                actions = self._act(slots, finish)
                stepped = time.perf_counter()
                results = envs.step(actions)
                self.times["simulator_s"] += time.perf_counter() - stepped
                for slot, result in results.items():
                    s = slots[slot]
                    if isinstance(result, EpisodeError):
                        finish(slot, POLICY_ERROR if result.policy_fault else ERROR, str(result))
                        continue
                    s.steps += 1
                    s.ret += result.reward
                    s.obs = result.obs
                    _track_progress(s, result)
                    s.history.append(result.obs)
                    if result.success:
                        finish(slot, SUCCESS)
                    elif s.steps >= ctx.max_steps[s.trial.task]:
                        finish(slot, FAILURE, "step limit")
                    elif s.policy_time > ctx.episode_timeout_s:
                        finish(slot, POLICY_ERROR, f"policy over its time limit of {ctx.episode_timeout_s:g} s "
                                                   "for an episode")
                    elif time.perf_counter() - s.started > WALL_CLOCK_FACTOR * ctx.episode_timeout_s:
                        finish(slot, ERROR, f"episode still running after {WALL_CLOCK_FACTOR} x "
                                            f"{ctx.episode_timeout_s:g} s of wall-clock time (simulator or machine)")
        except BaseException:
            self.close()  # environments may be mid-episode; start clean next time
            raise
        finally:
            self.times["running_s"] += time.perf_counter() - run_started

    def _fill(self, pending: deque[Trial], slots: dict[int, _Slot], envs: InProcessEnvs | SubprocessEnvs,
              ctx: RunContext, finish: _Finish) -> None:
        free = [k for k in range(self.batch_size) if k not in slots]
        requests: dict[int, tuple[str, int, int]] = {}
        for k in free:
            if not pending:
                break
            trial = pending.popleft()
            policy = ctx.make_policy(trial.policy_code, trial.task)
            slots[k] = _Slot(trial, ctx.attempts.get(trial.trial_id, 1), policy, policy.fingerprint(),
                             time.perf_counter())
            requests[k] = (trial.task, trial.ic_seed, trial.ic_index)
        started, built = time.perf_counter(), envs.build_s
        results = envs.reset(requests) if requests else {}
        for k, result in results.items():
            if isinstance(result, EpisodeError):
                finish(k, ERROR, str(result))
                continue
            slots[k].obs, slots[k].init_state = result
            n_obs = slots[k].policy.requirements.n_obs_steps
            slots[k].history = deque([slots[k].obs] * n_obs, maxlen=n_obs)  # padded with the first frame
            try:
                slots[k].policy.reset(slots[k].trial.policy_seed, k)
            except Exception as exc:
                finish(k, *_fault(exc, "policy reset failed"))
        built = envs.build_s - built
        self.times["build_s"] += built
        self.times["reset_s"] += time.perf_counter() - started - built

    def _act(self, slots: dict[int, _Slot], finish: _Finish) -> dict[int, NDArray[Any]]:
        groups: dict[tuple[str, str], list[int]] = {}
        for k, s in slots.items():
            if not s.queue:
                groups.setdefault((s.trial.policy_code, s.trial.task), []).append(k)
        for members in groups.values():
            policy = slots[members[0]].policy
            try:
                self._infer(policy, members, slots, finish)
            except Exception as exc:
                if len(members) == 1:
                    finish(members[0], *_fault(exc, "policy error"))
                    continue
                # one episode must not fail its batch-mates: ask again one slot at a time
                for k in members:
                    try:
                        self._infer(policy, [k], slots, finish)
                    except Exception as alone:
                        finish(k, *_fault(alone, "policy error"))
        actions = {k: s.queue.popleft() for k, s in slots.items()}
        if self.record_actions:
            for k, action in actions.items():
                slots[k].taken.append(action)
        return actions

    def _infer(self, policy: Policy, members: list[int], slots: dict[int, _Slot], finish: _Finish) -> None:
        """One batched policy call for ``members``; fills their action queues or ends them with a
        policy error. Raises what the policy raised."""
        req = policy.requirements
        keys = req.obs_shapes.keys() or slots[members[0]].obs.keys()
        if req.n_obs_steps > 1:
            batch = {key: np.stack([np.stack([o[key] for o in slots[k].history]) for k in members]) for key in keys}
        else:
            batch = {key: np.stack([slots[k].obs[key] for k in members]) for key in keys}
        started = time.perf_counter()
        out = np.asarray(policy.act(batch, np.asarray(members)), dtype=np.float64)
        spent = time.perf_counter() - started
        self.times["inference_s"] += spent
        by_code = f"inference_s:{slots[members[0]].trial.policy_code}"  # a call serves one (code, task) group
        self.times[by_code] = self.times.get(by_code, 0.0) + spent
        for k in members:  # each episode is charged the time of the calls that served it
            slots[k].policy_time += spent
        expected = (len(members), req.action_dim) if not req.chunked else (len(members), None, req.action_dim)
        if out.ndim != len(expected) or out.size == 0 or any(e is not None and e != o
                                                             for e, o in zip(expected, out.shape, strict=False)):
            for k in members:
                finish(k, POLICY_ERROR, f"policy returned actions of shape {out.shape}, expected {expected}")
            return
        for row, k in enumerate(members):
            if not np.all(np.isfinite(out[row])):
                finish(k, POLICY_ERROR, "non-finite action")
            else:
                slots[k].queue.extend(out[row] if req.chunked else out[row][None])


def _track_progress(s: _Slot, result: StepResult) -> None:
    """The first step at which each milestone held, and the best progress score so far."""
    for name, held in result.milestones.items():
        if held and s.milestones.get(name) is None:
            s.milestones[name] = s.steps
        s.milestones.setdefault(name, None)
    s.last_milestones = result.milestones
    if result.progress is not None:
        s.progress = max(s.progress or 0.0, float(result.progress))


def _fault(exc: Exception, what: str) -> tuple[str, str]:
    """(status, reason) for an exception raised by a policy: its own failure, unless it declared an
    infrastructure fault or ran out of memory (which depends on the batch size, a harness setting).
    The policy's source location is left out of the reason: file names would unblind the journal."""
    if isinstance(exc, InfrastructureError | MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        during = "policy reset" if "reset" in what else "policy call"  # ``what`` names the policy's own failure
        return ERROR, f"infrastructure error ({during}): {_reason(exc, where=False)}"
    return POLICY_ERROR, f"{what}: {_reason(exc, where=False)}"
