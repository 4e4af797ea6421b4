"""stopping=sequential on the fake task: tasks stop once decided, resume makes the same decisions."""

import dataclasses
import json

from evalsuite.harness import EvaluateRequest, evaluate
from evalsuite.journal import read
from evalsuite.plan import PolicyEntry, Stopping

SEQ = Stopping("sequential", alpha=0.05, round_size=5)


def _request(tmp_path, name, policies, episodes=60):
    return EvaluateRequest.of(suite="fake", policies=policies, out=tmp_path / name, episodes=episodes, max_steps=14,
                           stopping=SEQ, tracking_uri=None, progress=False, batch_size=4)


def test_clear_difference_stops_early_and_equal_policies_run_to_the_cap(fake_suite, tmp_path):
    # ones (speed 1) always succeeds (targets 3..11 <= 14 steps); speed 0.3 never does: decided fast
    results = evaluate(_request(tmp_path, "diff", [PolicyEntry("ones", {}), PolicyEntry("ones", {"speed": 0.3})]),
                       log=lambda *_: None)
    seq = results.section("sequential")
    assert all(t["episodes"] < 60 for t in seq["tasks"].values())
    assert all(p["decision"] == "ones better" for p in seq["pairs"])
    assert results.trials.complete
    n_run = len(read(tmp_path / "diff" / "episodes.jsonl"))
    assert n_run == sum(t["episodes"] for t in seq["tasks"].values()) * 2
    # identical policies: never decided, every planned episode runs
    same = evaluate(_request(tmp_path, "same", [PolicyEntry("ones", {}), PolicyEntry("ones", {"chunk": 2})], 20),
                    log=lambda *_: None)
    assert all(t["stopped_after_round"] is None and t["episodes"] == 20 for t in same.section("sequential")["tasks"].values())
    assert all(p["decision"] == "undecided" for p in same.section("sequential")["pairs"])


def test_resume_mid_run_makes_the_same_decisions(fake_suite, tmp_path):
    policies = [PolicyEntry("ones", {}), PolicyEntry("ones", {"speed": 0.3})]
    full = evaluate(_request(tmp_path, "full", policies), log=lambda *_: None)
    journal = (tmp_path / "full" / "episodes.jsonl").read_text().splitlines()
    (tmp_path / "cut").mkdir()
    for name in ("plan.json", "blinding.json"):
        (tmp_path / "cut" / name).write_text((tmp_path / "full" / name).read_text())
    (tmp_path / "cut" / "episodes.jsonl").write_text("\n".join(journal[: len(journal) // 2]) + "\n")
    resumed = evaluate(_request(tmp_path, "cut", policies), log=lambda *_: None)
    assert json.dumps(resumed.to_dict(), sort_keys=True) == json.dumps(full.to_dict(), sort_keys=True)


def test_sequential_needs_two_policies(fake_suite, tmp_path):
    import pytest

    from evalsuite.errors import UsageError

    with pytest.raises(UsageError, match="at least two"):
        evaluate(_request(tmp_path, "one", [PolicyEntry("ones", {})]), log=lambda *_: None)


def test_sequential_decisions_reach_mlflow(fake_suite, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from evalsuite import tracking

    evaluate(_request(tmp_path, "run", [PolicyEntry("ones", {}), PolicyEntry("ones", {"speed": 0.3})]),
             log=lambda *_: None)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = tracking.log_run(tmp_path / "run", uri)
    tags = MlflowClient(uri).get_run(run_id).data.tags
    decisions = {k: v for k, v in tags.items() if k.startswith("sequential.t1.")}
    assert len(decisions) == 1 and list(decisions.values()) == ["ones better"]


def test_with_a_margin_identical_policies_stop_as_equivalent(fake_suite, tmp_path):
    stopping = dataclasses.replace(SEQ, round_size=10, margin=0.1)
    results = evaluate(EvaluateRequest.of(
        suite="fake", policies=[PolicyEntry("ones", {}), PolicyEntry("ones", {"chunk": 2})], out=tmp_path / "eq",
        episodes=200, max_steps=14, stopping=stopping, tracking_uri=None, progress=False, batch_size=8),
        log=lambda *_: None)
    seq = results.section("sequential")
    assert all(p["decision"] == "equivalent" for p in seq["pairs"])
    assert all(t["episodes"] < 200 for t in seq["tasks"].values())
    assert "margin 0.1 for equivalence" in (tmp_path / "eq" / "report.md").read_text()


def test_progress_decides_where_success_cannot(fake_suite, tmp_path):
    """Within 5 steps neither speed 0.5 nor 0.1 ever reaches a target (3..11): success cannot tell
    them apart, but the faster always gets further - deciding on paired progress picks it early."""
    policies = [PolicyEntry("ones", {"speed": 0.5}), PolicyEntry("ones", {"speed": 0.1})]
    runs = {}
    for metric in ("success", "progress"):
        stopping = dataclasses.replace(SEQ, metric=metric)
        runs[metric] = evaluate(EvaluateRequest.of(suite="fake", policies=policies, out=tmp_path / metric, episodes=30,
                                                max_steps=5, stopping=stopping, tracking_uri=None, progress=False,
                                                batch_size=8), log=lambda *_: None).section("sequential")
    assert all(p["decision"] == "undecided" for p in runs["success"]["pairs"])
    assert all(t["episodes"] == 30 for t in runs["success"]["tasks"].values())
    assert runs["progress"]["metric"] == "progress"
    assert all(p["decision"] == "ones:speed=0.5 better" for p in runs["progress"]["pairs"])
    assert all(t["episodes"] < 30 for t in runs["progress"]["tasks"].values())


def test_bets_tuned_to_the_planned_effect_decide_on_the_journal(fake_suite, tmp_path):
    """planned=(p_baseline, delta): each pair's evidence is the betting e-process tuned to the planned
    effect, recomputed here from the journal's paired outcomes in initial-condition order."""
    import math

    import numpy as np

    from evalsuite.stats.betting import PlannedEffect, log_e_process

    tuned = dataclasses.replace(SEQ, planned=(0.7, 0.2, 0.4))
    policies = [PolicyEntry("ones", {}), PolicyEntry("ones", {"speed": 0.5})]
    results = evaluate(EvaluateRequest.of(suite="fake", policies=policies, out=tmp_path / "tuned", episodes=60,
                                       max_steps=14, stopping=tuned, tracking_uri=None, progress=False, batch_size=4),
                       log=lambda *_: None)
    seq = results.section("sequential")
    assert seq["planned"] == {"p_baseline": 0.7, "delta": 0.2, "discordance": 0.4}
    assert json.loads((tmp_path / "tuned" / "plan.json").read_text())["stopping"]["planned"] == seq["planned"]
    key = json.loads((tmp_path / "tuned" / "blinding.json").read_text())
    code = {entry["label"]: c for c, entry in key.items()}
    records = read(tmp_path / "tuned" / "episodes.jsonl")
    for pair in seq["pairs"]:
        outcome = {(r.policy_code, r.ic_index): r.success for r in records if r.task == pair["task"]}
        a, b = code[pair["policy_a"]], code[pair["policy_b"]]
        shared = sorted(i for (c, i) in outcome if c == a and (b, i) in outcome)
        d = np.array([float(outcome[a, i]) - float(outcome[b, i]) for i in shared])
        expected = float(log_e_process(d, effect=PlannedEffect.binary(0.7, 0.2, 0.4), cap=0.99).max())
        assert pair["log_e"] == expected and pair["pairs"] == len(shared)
        decided = pair["decision"] != "undecided"
        assert decided == (expected >= math.log(len(seq["pairs"]) / 0.05))
    assert any(p["decision"] == "ones better" for p in seq["pairs"])  # speed 0.5 misses the far targets
