"""The regression gate end to end: on the fake task (fast, every path) and on Meta-World (real)."""

import json

import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.harness import EvaluateRequest, evaluate
from evalsuite.plan import PolicyEntry


def _run(tmp_path, name, params, *, seed=0, episodes=40, suite="fake", tasks=None, policy="ones", **kw):
    evaluate(EvaluateRequest.of(suite=suite, policies=[PolicyEntry(policy, params)], out=tmp_path / name, tasks=tasks,
                             episodes=episodes, seed=seed, max_steps=14 if suite == "fake" else None,
                             tracking_uri=None, progress=False, **kw), log=lambda *_: None)
    return str(tmp_path / name)


def _gate(tmp_path, *args):
    code = main(["gate", *args, "tracking_uri=none", f"out={tmp_path / 'gate'}"])
    return code, json.loads((tmp_path / "gate" / "results.json").read_text())


def test_regression_is_caught_and_the_same_policy_passes(fake_suite, tmp_path, capsys):
    base = _run(tmp_path, "base", {}, episodes=80)
    slow = _run(tmp_path, "slow", {"speed": 0.5}, episodes=80)  # fails whenever the target is > 7
    code, result = _gate(tmp_path, f"baseline={base}", f"candidate={slow}")
    assert code == 1 and result["verdict"] == "REGRESSED"
    assert all(r["design"] == "paired" and r["n_candidate"] == 80 for r in result["tasks"])
    assert result["alpha_per_task"] == pytest.approx(0.025)  # REGRESSED per task; the pass is an IUT at alpha
    assert "intersection-union" in result["combination"]
    out = capsys.readouterr().out
    assert "## evalsuite gate: **REGRESSED**" in out and "| t1 | paired (80) |" in out
    mean = result["mean_difference"]  # the paired difference of the mean over both tasks
    assert mean["high"] < 0 and mean["low"] <= mean["difference"] <= mean["high"] and "Mean over the 2 tasks" in out
    same = _run(tmp_path, "same", {"chunk": 2}, episodes=80)  # same behaviour, another parameter
    code, result = _gate(tmp_path, f"baseline={base}", f"candidate={same}")
    assert code == 0 and result["verdict"] == "NON-INFERIOR"


def test_candidate_evaluated_on_the_baselines_initial_conditions(fake_suite, tmp_path):
    base = _run(tmp_path, "base", {}, seed=5, episodes=30)
    code, result = _gate(tmp_path, f"baseline={base}", "candidate_policy=ones:speed=0.5")
    assert code == 1
    plan = json.loads((tmp_path / "gate" / "candidate" / "plan.json").read_text())
    assert plan["seed"] == 5 and plan["episodes"] == 30  # the baseline's plan, so the pairs line up
    assert all(r["design"] == "paired" and r["n_candidate"] == 30 for r in result["tasks"])


def test_different_seeds_compare_as_independent_samples_and_few_episodes_are_inconclusive(fake_suite, tmp_path):
    base = _run(tmp_path, "base", {}, seed=0, episodes=10)
    other = _run(tmp_path, "other", {}, seed=1, episodes=10)
    code, result = _gate(tmp_path, f"baseline={base}", f"candidate={other}")
    assert code == 3 and result["verdict"] == "INCONCLUSIVE"
    assert all(r["design"] == "independent" and "more_episodes" not in r for r in result["tasks"])
    summary = (tmp_path / "gate" / "summary.md").read_text()
    assert "sequential=true" in summary and "do not add episodes and gate again" in summary
    code, _ = _gate(tmp_path, f"baseline={base}", f"candidate={other}", "inconclusive=pass")
    assert code == 0


def test_sequential_gate_stops_early_on_a_clear_regression(fake_suite, tmp_path):
    base = _run(tmp_path, "base", {}, episodes=100)
    code, result = _gate(tmp_path, f"baseline={base}", "candidate_policy=ones:speed=0.3", "sequential=true",
                         "round_size=5")
    assert code == 1 and all(r["method"] == "sequential e-process" for r in result["tasks"])
    seq = json.loads((tmp_path / "gate" / "candidate-sequential" / "results.json").read_text())["sequential"]
    assert all(t["episodes"] < 100 for t in seq["tasks"].values())  # decided before the budget
    assert all(g["verdict"] == "REGRESSED" for g in seq["gate"].values())


def test_a_sequential_gate_continues_from_the_fixed_gates_candidate_episodes(fake_suite, tmp_path):
    base = _run(tmp_path, "base", {}, episodes=60)
    _gate(tmp_path, f"baseline={base}", "candidate_policy=ones:chunk=2")
    fixed = (tmp_path / "gate" / "candidate" / "episodes.jsonl").read_text().splitlines()
    _gate(tmp_path, f"baseline={base}", "candidate_policy=ones:chunk=2", "sequential=true", "round_size=10")
    seq_dir = tmp_path / "gate" / "candidate-sequential"
    sequential = (seq_dir / "episodes.jsonl").read_text().splitlines()
    assert sequential[:len(fixed)] == fixed  # the episodes already run are read, not run again
    assert json.loads((seq_dir / "run_info.json").read_text())["episodes_run"] == 0
    # another candidate in the same gate folder does not inherit those episodes
    other = tmp_path / "other"
    _gate(other, f"baseline={base}", "candidate_policy=ones:chunk=2")
    _gate(other, f"baseline={base}", "candidate_policy=ones:speed=0.5", "sequential=true", "round_size=10")
    assert json.loads((other / "gate" / "candidate-sequential" / "run_info.json").read_text())["episodes_run"] > 0


def test_summary_goes_to_the_github_step_summary(fake_suite, tmp_path, monkeypatch):
    base = _run(tmp_path, "base", {}, episodes=10)
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    _gate(tmp_path, f"baseline={base}", f"candidate={base}")
    assert summary.read_text().startswith("## evalsuite gate: **")


def test_baseline_found_by_mlflow_tag_and_verdicts_logged_as_tags(fake_suite, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    evaluate(EvaluateRequest.of(suite="fake", policies=[PolicyEntry("ones", {})], out=tmp_path / "base", episodes=60,
                             max_steps=14, tracking_uri=uri, tags={"role": "baseline"}, progress=False),
             log=lambda *_: None)
    code = main(["gate", "baseline=mlflow-tag:role=baseline", "candidate_policy=ones:speed=0.5", f"tracking_uri={uri}",
                 f"out={tmp_path / 'gate'}"])
    assert code == 1
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("evalsuite")
    (gate_run,) = client.search_runs([exp.experiment_id], filter_string="tags.`evalsuite.kind` = 'gate'")
    assert gate_run.data.tags["evalsuite.gate.verdict"] == "REGRESSED"
    assert gate_run.data.tags["evalsuite.gate.t1"] == "REGRESSED"


@pytest.mark.parametrize("args,fragment", [
    (["candidate=x"], "missing baseline=RUN"),
    (["baseline=/nope", "candidate=/nope"], "baseline='/nope' is not a run folder"),
    (["baseline=B", "candidate=B", "candidate_policy=scripted"], "exactly one of candidate=RUN and candidate_policy"),
    (["baseline=B", "candidate=B", "margin=5"], "margin='5' must be in (0.0, 1.0)"),
    (["baseline=B", "candidate=B", "inconclusive=maybe"], "inconclusive='maybe'; accepted: fail, pass"),
    (["baseline=B", "candidate=B", "budget=10"], "budget= applies to sequential=true only"),
    (["baseline=B", "candidate=B", "sequential=true"], "sequential=true evaluates the candidate in rounds"),
    (["baseline=B", "candidate_policy=ones", "sequential=true", "budget=500"], "budget=500 exceeds the baseline's 10"),
    (["baseline=B", "candidate_policy=ones", "suite=metaworld"], "suite='metaworld', but the baseline ran on 'fake'"),
    (["baseline=mlflow-tag:role", "candidate=B"], "write mlflow-tag:KEY=VALUE"),
])
def test_gate_usage_errors(fake_suite, tmp_path, capsys, args, fragment):
    base = _run(tmp_path, "base", {}, episodes=10)
    args = [a.replace("=B", f"={base}") for a in args]
    assert main(["gate", *args, "tracking_uri=none", f"out={tmp_path / 'gate'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1


def test_metaworld_expert_against_noisy_expert_and_against_itself(tmp_path):
    """Real simulator: the noisy expert (noise=1.0) regresses; another seed's expert run does not."""
    common = dict(suite="metaworld-smoke", tasks=["pick-place"], policy="scripted", episodes=20)
    base = _run(tmp_path, "base", {}, seed=0, **common)
    code, result = _gate(tmp_path, f"baseline={base}", "candidate_policy=noisy-scripted")
    assert code == 1 and result["verdict"] == "REGRESSED"
    again = _run(tmp_path, "again", {}, seed=1, **common)
    code, result = _gate(tmp_path, f"baseline={base}", f"candidate={again}")
    assert result["verdict"] in ("NON-INFERIOR", "INCONCLUSIVE") and code in (0, 3)


class NaNSometimesExpert:
    """A plugin policy as a user would write one: Meta-World's expert, except that on about 10% of
    episodes (chosen by the episode's seed) it emits NaN actions after 20 steps."""

    def __init__(self, task, suite, rate: float = 0.1):
        from evalsuite_policies.metaworld_expert import MetaWorldExpert

        self.expert, self.rate = MetaWorldExpert(task, suite), float(rate)
        self.requirements = self.expert.requirements
        self.broken, self.steps = {}, {}

    def reset(self, seed, slot):
        self.expert.reset(seed, slot)
        self.broken[slot] = np.random.default_rng([seed, 99]).random() < self.rate
        self.steps[slot] = 0

    def act(self, observations, slots):
        actions = self.expert.act(observations, slots)
        for row, slot in enumerate(slots):
            self.steps[int(slot)] += 1
            if self.broken[int(slot)] and self.steps[int(slot)] > 20:
                actions[row] = np.nan
        return actions

    def fingerprint(self):
        return f"nan-expert-{self.rate}"


def test_a_candidate_emitting_nan_on_some_episodes_fails_them_and_does_not_pass_the_gate(tmp_path, capsys):
    """The review's scenario through the real CLI: policy errors are failures, and the gate against the
    shipped 120-initial-condition expert baseline does not answer NON-INFERIOR."""
    from evalsuite import registry
    from evalsuite.specs import PolicySpec
    from tests.conftest import REPO

    registry.policies.all()
    registry.policies.register(PolicySpec(id="nan-expert", entry_point="tests.test_gate:NaNSometimesExpert",
                                          params={"rate": 0.1}))
    run = tmp_path / "run"
    assert main(["evaluate", "video=none", "suite=metaworld-smoke", "tasks=[pick-place]", "policies=[nan-expert]", "episodes=30",
                 f"out={run}", "tracking_uri=none", "progress=false"]) == 0
    results = json.loads((run / "results.json").read_text())
    row = results["per_task"][0]
    assert row["n"] == 30 and row["policy_errors"] >= 1 and row["successes"] == 30 - row["policy_errors"]
    assert f"{row['policy_errors']} policy errors counted as failures" in capsys.readouterr().out
    records = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 30  # never retried
    code, result = _gate(tmp_path, f"baseline={REPO / 'reports/baselines/metaworld-smoke-scripted'}",
                         "candidate_policy=nan-expert", "progress=false")
    assert result["verdict"] != "NON-INFERIOR" and code != 0
    assert sum(r["candidate_policy_errors"] for r in result["tasks"]) >= 10
    summary = (tmp_path / "gate" / "summary.md").read_text()
    assert "policy errors (cand / base)" in summary
