"""The runner on a fake task (tests/conftest.py): batching, chunks, per-episode ends, errors, retries."""

import dataclasses
import json

import pytest

from evalsuite import registry
from evalsuite.analysis import AnalysisOptions
from evalsuite.harness import EvaluateRequest, evaluate
from evalsuite.journal import read
from evalsuite.plan import PolicyEntry, make_plan
from evalsuite.runner import LocalExecutor, RunContext
from evalsuite.specs import SuiteSpec, TaskSpec
from tests.conftest import CountdownEnv, OnesPolicy

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


def _run(suite, policies, tmp_path, **kw):
    req = EvaluateRequest.of(suite=suite.id, policies=policies, out=tmp_path / "run", tracking_uri=None, progress=False,
                          **kw)
    results = evaluate(req, log=lambda *_: None)
    return results, read(tmp_path / "run" / "episodes.jsonl")


def _trials_and_ctx(suite, policy_factory, episodes=6, max_steps=30):
    plan, key = make_plan(suite=suite.id, tasks=["t1"], policies=[PolicyEntry("ones", {})], episodes=episodes,
                          seed=0, max_steps={"t1": max_steps})
    return plan.trials, RunContext(suite=suite, max_steps={"t1": max_steps}, make_policy=policy_factory)


def test_batched_policy_calls_and_independent_episode_ends(fake_suite):
    policy = OnesPolicy(None, None)
    trials, ctx = _trials_and_ctx(fake_suite, lambda code, task: policy, episodes=12)
    records = []
    LocalExecutor(batch_size=4).run(trials, ctx, records.append)
    assert len(records) == 12 and all(r.status == "success" for r in records)
    # each episode takes exactly `target` steps, and episodes of different length shared batches
    for r in records:
        assert r.steps == r.init_state["target"]
    assert max(policy.batch_sizes) == 4
    assert policy.calls < sum(r.steps for r in records)


def test_action_chunks_execute_step_by_step(fake_suite):
    chunked = OnesPolicy(None, None, chunk=4)
    trials, ctx = _trials_and_ctx(fake_suite, lambda code, task: chunked, episodes=8)
    records = []
    LocalExecutor(batch_size=3).run(trials, ctx, records.append)
    assert all(r.status == "success" and r.steps == r.init_state["target"] for r in records)
    # about one call per 4 steps per episode instead of one per step
    assert sum(chunked.batch_sizes) <= sum(-(-r.steps // 4) for r in records) + 8


class _Diagnosing(OnesPolicy):
    """Reports the number of calls its episode's slot received - only if it declares so."""

    def __init__(self, declared: bool) -> None:
        super().__init__(None, None)
        self.requirements = dataclasses.replace(self.requirements, episode_info=declared)
        self.per_slot: dict[int, int] = {}

    def reset(self, seed, slot):
        self.per_slot[slot] = 0

    def act(self, observations, slots):
        for s in slots:
            self.per_slot[int(s)] += 1
        return super().act(observations, slots)

    def episode_info(self, slot):
        return {"calls": self.per_slot[slot]}


@pytest.mark.parametrize("declared", [True, False])
def test_episode_info_is_asked_for_only_when_the_policy_declares_it(fake_suite, declared):
    policy = _Diagnosing(declared)
    trials, ctx = _trials_and_ctx(fake_suite, lambda code, task: policy, episodes=6)
    records = []
    LocalExecutor(batch_size=3).run(trials, ctx, records.append)
    assert [r.policy_info for r in records] == [{"calls": r.steps} if declared else {} for r in records]


def test_step_limit_gives_failure(fake_suite):
    slow = OnesPolicy(None, None, speed=0.25)
    trials, ctx = _trials_and_ctx(fake_suite, lambda code, task: slow, episodes=6, max_steps=20)
    records = []
    LocalExecutor(batch_size=2).run(trials, ctx, records.append)
    for r in records:
        expected = "success" if r.init_state["target"] * 4 <= 20 else "failure"
        assert r.status == expected
        assert r.steps == (r.init_state["target"] * 4 if expected == "success" else 20)


def test_non_finite_actions_are_policy_failures_never_retried(fake_suite, tmp_path):
    results, records = _run(fake_suite, [PolicyEntry("ones", {"nan_after": 0})], tmp_path, episodes=3,
                            options=AnalysisOptions(max_attempts=2))
    assert {r.status for r in records} == {"policy_error"}
    assert {r.reason for r in records} == {"non-finite action"}
    assert len(records) == 2 * 3  # 2 tasks x 3 episodes, each run once: a policy error is an outcome
    row = results.per_task[0]
    assert (row.n, row.successes, row.policy_errors, row.missing, row.rate) == (3, 0, 3, 0, 0.0)
    assert results.trials.policy_errors == 6 and results.trials.complete


def _register_env(suite_id, **kwargs):
    registry.suites.all()
    registry.policies.all()
    from evalsuite.specs import PolicySpec

    CountdownEnv.reset_calls.clear()
    suite = registry.suites.register(SuiteSpec(id=suite_id, entry_point="tests.conftest:CountdownEnv",
                                               tasks=(TaskSpec("t1", 30),), kwargs=kwargs))
    registry.policies.register(PolicySpec(id="ones", entry_point="tests.conftest:OnesPolicy",
                                          params={"speed": 1.0, "chunk": 0, "nan_after": -1}))
    return suite


def test_a_simulator_failing_on_the_policys_action_is_the_policys_failure(tmp_path):
    suite = _register_env("crashy", fail_on=2)
    results, records = _run(suite, [PolicyEntry("ones", {})], tmp_path, episodes=2,
                            options=AnalysisOptions(max_attempts=3))
    assert len(records) == 2 and all(r.status == "policy_error" and "simulated simulator crash" in r.reason
                                     for r in records)
    assert results.per_task[0].n == 2 and results.per_task[0].rate == 0.0


def test_a_simulator_made_unstable_by_the_policy_is_the_policys_failure(tmp_path):
    suite = _register_env("unstable", unstable_above=0.9)
    results, records = _run(suite, [PolicyEntry("ones", {})], tmp_path, episodes=2)
    assert all(r.status == "policy_error" and "unstable" in r.reason for r in records) and len(records) == 2


def test_infrastructure_errors_are_retried_and_a_lucky_retry_counts(tmp_path):
    suite = _register_env("flaky", flaky_resets=1)  # every initial condition fails its first reset
    results, records = _run(suite, [PolicyEntry("ones", {})], tmp_path, episodes=3,
                            options=AnalysisOptions(max_attempts=3))
    assert sorted((r.attempt, r.status) for r in records) == [(1, "error")] * 3 + [(2, "success")] * 3
    row = results.per_task[0]
    assert (row.n, row.successes, row.missing, row.worst_case) == (3, 3, 0, None)


def test_persistent_infrastructure_errors_are_missing_and_shown_as_worst_case(tmp_path):
    suite = _register_env("broken", infra_fail_on=2)  # a plugin declaring an infrastructure fault
    results, records = _run(suite, [PolicyEntry("ones", {})], tmp_path, episodes=2,
                            options=AnalysisOptions(max_attempts=3))
    assert len(records) == 6 and all(r.status == "error" and "InfrastructureError" in r.reason for r in records)
    assert sorted(r.attempt for r in records) == [1, 1, 2, 2, 3, 3]
    row = results.per_task[0]
    assert (row.n, row.missing, row.rate) == (0, 2, None)
    assert row.worst_case.n == 2 and row.worst_case.rate == 0.0 and row.worst_case.ci_high < 0.9
    assert results.trials.missing == 2
    report = (tmp_path / "run" / "report.md").read_text()
    assert "2 missing after every retry" in report


def test_a_policy_can_declare_an_infrastructure_fault(fake_suite):
    from evalsuite.interfaces import InfrastructureError

    class ServerDown(OnesPolicy):
        def act(self, observations, slots):
            raise InfrastructureError("policy server unreachable")

    class Crashes(OnesPolicy):
        def act(self, observations, slots):
            raise ValueError("bug in the policy")

    for cls, status in ((ServerDown, "error"), (Crashes, "policy_error")):
        trials, ctx = _trials_and_ctx(fake_suite, lambda code, task, cls=cls: cls(None, None), episodes=2)
        records = []
        LocalExecutor(batch_size=2).run(trials, ctx, records.append)
        assert [r.status for r in records] == [status, status]


def test_an_episode_over_its_time_is_a_policy_failure(fake_suite):
    slow = OnesPolicy(None, None, speed=0.1)
    trials, ctx = _trials_and_ctx(fake_suite, lambda code, task: slow, episodes=2)
    ctx.episode_timeout_s = 0.0
    records = []
    LocalExecutor(batch_size=2).run(trials, ctx, records.append)
    assert all(r.status == "policy_error" and not r.success and "time limit" in r.reason for r in records)


def test_wrong_action_shape_is_a_policy_failure(fake_suite):
    class Bad(OnesPolicy):
        def act(self, observations, slots):
            return super().act(observations, slots)[:, :1]

    trials, ctx = _trials_and_ctx(fake_suite, lambda code, task: Bad(None, None), episodes=2)
    records = []
    LocalExecutor(batch_size=2).run(trials, ctx, records.append)
    assert all(r.status == "policy_error" and "shape" in r.reason for r in records)


def test_worker_death_is_an_infrastructure_error(fake_suite):
    import os
    import signal

    from evalsuite.runner.envs import SubprocessEnvs

    envs = SubprocessEnvs(fake_suite, {"t1": 30}, 1)
    try:
        envs.warm([(0, "t1")])
        assert not isinstance(envs.reset({0: ("t1", 1, 0)})[0], Exception)
        os.kill(envs._workers[0][0].pid, signal.SIGKILL)
        result = envs.step({0: [1.0, 0.0]})[0]
        assert isinstance(result, Exception) and not result.policy_fault and "worker died" in str(result)
    finally:
        envs.close()


@pytest.mark.parametrize("batch_size,env_workers", [(1, 0), (5, 0), (4, 2)])
def test_outcomes_do_not_depend_on_batching_or_workers(fake_suite, tmp_path, batch_size, env_workers):
    results, records = _run(fake_suite, [PolicyEntry("ones", {"speed": 0.6}), PolicyEntry("ones", {})], tmp_path,
                            episodes=5, batch_size=batch_size, env_workers=env_workers, max_steps=14)
    reference, _ = _run(fake_suite, [PolicyEntry("ones", {"speed": 0.6}), PolicyEntry("ones", {})],
                        tmp_path / "ref", episodes=5, batch_size=3, max_steps=14)
    assert json.dumps(results.to_dict(), sort_keys=True) == json.dumps(reference.to_dict(), sort_keys=True)


def test_incompatible_policy_is_refused_before_any_episode(fake_suite, tmp_path):
    from evalsuite.errors import UsageError

    with pytest.raises(UsageError, match="policy 'random' outputs 4-d actions, task 't1' takes 2-d"):
        _run(fake_suite, [PolicyEntry("random", {})], tmp_path, episodes=1)
    assert not (tmp_path / "run" / "episodes.jsonl").exists()


def test_check_compatible_messages():
    from evalsuite.errors import UsageError
    from evalsuite.interfaces import PolicyRequirements, check_compatible

    env = CountdownEnv("t").info
    with pytest.raises(UsageError, match="needs observation 'image'"):
        check_compatible("p", PolicyRequirements({"image": None}, 2), env, "t")
    with pytest.raises(UsageError, match=r"shape \(3,\), task 't' gives \(2,\)"):
        check_compatible("p", PolicyRequirements({"state": (3,)}, 2), env, "t")
    with pytest.raises(UsageError, match="outputs 7-d actions"):
        check_compatible("p", PolicyRequirements({"state": (2,)}, 7), env, "t")


def test_policies_with_history_get_the_last_n_observations(fake_suite):
    """n_obs_steps=2: every call sees (B, 2, ...) = (previous step, current step), the first frame
    repeated at an episode's start; chunks still execute step by step."""
    from evalsuite.interfaces import PolicyRequirements

    seen = []

    class TwoFrames(OnesPolicy):
        def __init__(self, *a, **k):
            super().__init__(*a, chunk=3, **k)
            self.requirements = PolicyRequirements({"state": (2,)}, 2, chunked=True, n_obs_steps=2)

        def act(self, observations, slots):
            seen.append(observations["state"].copy())
            return super().act(observations, slots)

    policy = TwoFrames(None, None)
    trials, ctx = _trials_and_ctx(fake_suite, lambda code, task: policy, episodes=1)
    records = []
    LocalExecutor(batch_size=1).run(trials, ctx, records.append)
    assert records[0].success and records[0].steps > 3
    assert seen[0].shape == (1, 2, 2)
    assert seen[0][0, 0, 1] == seen[0][0, 1, 1] == 0  # the reset observation, repeated
    # each later call comes 3 executed steps on: its frames are the two latest steps (running sums k-1, k)
    for i, frames in enumerate(seen[1:], start=1):
        assert frames[0, 0, 1] == 3 * i - 1 and frames[0, 1, 1] == 3 * i


def test_one_episode_raising_does_not_fail_its_batch_mates(fake_suite):
    class RaisesForSlotOne(OnesPolicy):
        def act(self, observations, slots):
            if 1 in slots:
                raise ValueError("cannot handle this episode")
            return super().act(observations, slots)

    policy = RaisesForSlotOne(None, None)
    trials, ctx = _trials_and_ctx(fake_suite, lambda code, task: policy, episodes=3)
    records = []
    LocalExecutor(batch_size=3).run(trials, ctx, records.append)
    statuses = sorted(r.status for r in records)
    assert statuses.count("policy_error") >= 1 and statuses.count("success") >= 2  # only slot 1's episodes
    failed = [r for r in records if r.status == "policy_error"]
    assert all(r.reason.removeprefix("policy error: ") == "ValueError: cannot handle this episode" for r in failed)


def test_old_journals_read_their_policy_errors_as_failures(tmp_path):
    import dataclasses

    from evalsuite.journal import EpisodeRecord

    base = EpisodeRecord("t1/00000/A", "t1", "A", 0, 1, 2, 1, "error", False, 3, 0.0, "non-finite action", 0.1, "f")
    lines = [base, dataclasses.replace(base, trial_id="t1/00001/A", ic_index=1, reason="reset failed: OSError: x")]
    (tmp_path / "episodes.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in lines))
    assert [r.status for r in read(tmp_path / "episodes.jsonl")] == ["policy_error", "error"]


def test_run_info_says_where_the_time_went(fake_suite, tmp_path):
    """Simulator, resets and inference, summed in the executor; the rest of the wall time is 'other'.
    One episode a call (batch 1, no chunks): every step costs the policy at least its compute_s."""
    compute_s = 0.002
    _, records = _run(fake_suite, [PolicyEntry("ones", {"compute_s": compute_s})], tmp_path, episodes=3, batch_size=1,
                      env_workers=0, max_steps=14)
    split = json.loads((tmp_path / "run" / "run_info.json").read_text())["time"]
    parts = ("simulator_s", "reset_s", "build_s", "inference_s", "other_s")
    assert all(split[k] >= 0 for k in (*parts, "running_s", "wall_s")) and split["workers"] == 1
    assert sum(split[k] for k in parts) <= split["wall_s"] * split["workers"] + 1e-2  # rounded to ms
    assert split["running_s"] <= split["wall_s"] + 1e-3
    assert split["inference_s"] >= sum(r.steps for r in records) * compute_s
    assert sum(split["inference_s_by_code"].values()) == pytest.approx(split["inference_s"], abs=2e-3)


def test_batches_share_a_policy_and_task_keep_every_trial_and_take_turns():
    """A plan's random order gives batches of about one; cut into batches, each shares a policy and a
    task (one call a step serves it), every trial appears once, plan order is kept within a group,
    and the groups take turns: the k-th batch of every group comes before any group's (k+1)-th - or,
    ``together`` batches a turn, for workers sharing a policy server."""
    import random

    from evalsuite.plan import Trial
    from evalsuite.runner.executor import batches

    rng = random.Random(3)
    trials = [Trial(f"{task}/{i:05d}/{code}", task, i, i, i, code) for task in ("a", "b") for code in "ABCD"
              for i in range(10)]
    rng.shuffle(trials)
    position = {t.trial_id: i for i, t in enumerate(trials)}
    for together in (1, 2):
        cut = batches(trials, 4, together)
        assert sorted(t.trial_id for b in cut for t in b) == sorted(t.trial_id for t in trials)
        assert all(len({(t.task, t.policy_code) for t in b}) == 1 and 1 <= len(b) <= 4 for b in cut)
        rank, turns = {}, []
        for b in cut:
            key = (b[0].task, b[0].policy_code)
            turns.append(rank.get(key, 0) // together)
            rank[key] = rank.get(key, 0) + 1
        assert turns == sorted(turns) and sorted(rank.values()) == [3] * 8  # 10 trials: 4 + 4 + 2
        for key in rank:  # within a group, plan order
            members = [position[t.trial_id] for b in cut for t in b if (t.task, t.policy_code) == key]
            assert members == sorted(members)


def test_a_run_says_its_phases_and_without_a_terminal_prints_progress_lines(fake_suite, tmp_path, monkeypatch):
    """Outside a terminal (a CI log) the progress bar is a line of episodes done / planned, rate and
    time to go; every phase is announced with the time so far, in order."""
    from evalsuite import harness

    monkeypatch.setattr(harness._Progress, "LINE_S", 0.0)  # a line for every episode
    lines = []
    req = EvaluateRequest.of(suite=fake_suite.id, policies=[PolicyEntry("ones", {})], out=tmp_path / "run",
                             tracking_uri=None, progress=True, episodes=3)
    evaluate(req, log=lines.append)
    phases = [line.split(",")[0] for line in lines if line.startswith("[")]
    assert phases == ["[1/2] episodes (6 planned)", "[2/2] analysis and report"]
    counted = [line for line in lines if line.startswith("episodes: ")]
    assert counted[-1].startswith("episodes: 6/6 done,") and "episodes/s, about 0m00s to go" in counted[-1]
    assert [int(line.split()[1].split("/")[0]) for line in counted] == list(range(1, 7))
