"""Task progress: milestones recorded by the runner from the simulator's state, and the progress
section's statistics - exact sign-flip p-values, milestone rates, the failure taxonomy."""

import dataclasses
import itertools

import numpy as np
import pytest

from evalsuite.analyses import AnalysisInput
from evalsuite.analyses.progress import compute, failure_category, sign_flip_p_value
from evalsuite.journal import EpisodeRecord
from evalsuite.plan import PolicyEntry, make_plan
from evalsuite.stats.intervals import proportion_interval


def test_sign_flip_p_value_is_exact_by_enumeration():
    rng = np.random.default_rng(0)
    assert sign_flip_p_value(np.array([0.5, 0.25, 0.75, 1.0, 0.5]), rng)[0] == pytest.approx(2 / 32)
    assert sign_flip_p_value(np.zeros(6), rng)[0] == 1.0
    d = np.array([0.3, -0.1, 0.2, 0.0, 0.4, -0.2, 0.1])
    nonzero = d[d != 0]
    sums = [abs(np.dot(s, nonzero)) for s in itertools.product((1, -1), repeat=nonzero.size)]
    assert sign_flip_p_value(d, rng) == (pytest.approx(np.mean(np.array(sums) >= abs(nonzero.sum()) - 1e-12)),
                                         "exact sign-flip")


def test_sign_flip_level_by_simulation_with_many_ties():
    """Under exchangeable signs (equal policies) the test rejects at most alpha of the time, here with
    skewed, tied progress scores (most episodes at 1 or 0), exact and random-pattern regimes."""
    rng = np.random.default_rng(1)
    for n in (12, 40):
        rejections = 0
        reps = 400
        for _ in range(reps):
            a = rng.choice([0.0, 0.25, 0.5, 1.0], p=[0.2, 0.1, 0.1, 0.6], size=n)
            b = rng.choice([0.0, 0.25, 0.5, 1.0], p=[0.2, 0.1, 0.1, 0.6], size=n)
            rejections += sign_flip_p_value(a - b, rng)[0] <= 0.05
        assert rejections / reps <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)


def _record(trial, task, code, ic, status, progress, milestones, held=None, reason="", steps=10):
    return EpisodeRecord(trial_id=trial, task=task, policy_code=code, ic_index=ic, ic_seed=ic, policy_seed=ic,
                         attempt=1, status=status, success=status == "success", steps=steps, episode_return=0.0,
                         reason=reason, wall_time_s=0.0, policy_fingerprint="", milestones=milestones,
                         progress=progress, held_at_end=held)


def test_milestone_rates_failure_modes_and_paired_progress():
    plan, key = make_plan(suite="fake", tasks=["t1"], policies=[PolicyEntry("a", {}), PolicyEntry("b", {})],
                          episodes=4, seed=0, max_steps={"t1": 10})
    label = key.labels
    a, b = sorted(label)
    none = {"reached": None, "moved": None}
    records = [
        _record("1a", "t1", a, 0, "success", 1.0, {"reached": 2, "moved": 5}, ["reached", "moved"]),
        _record("2a", "t1", a, 1, "failure", 0.33, {"reached": 3, "moved": None}, ["reached"]),
        _record("3a", "t1", a, 2, "failure", 0.67, {"reached": 3, "moved": 6}, ["reached"]),  # moved, then lost it
        # raised at its first act: no step, so no progress or milestones recorded - it still counts
        _record("4a", "t1", a, 3, "policy_error", None, {}, None, reason="policy error: ValueError: bug", steps=0),
        _record("1b", "t1", b, 0, "failure", 0.0, none, []),
        _record("2b", "t1", b, 1, "policy_error", 0.0, none, [],
                reason="simulator unstable after the policy's action: non-finite 'qpos'"),
        _record("3b", "t1", b, 2, "failure", 0.67, {"reached": 4, "moved": 7}, ["reached", "moved"]),
        _record("4b", "t1", b, 3, "failure", 0.0, none, []),
    ]
    section = compute(AnalysisInput(plan, key, records, label, 0.95, 0))
    cell_a = next(c for c in section["per_task"] if c["policy"] == label[a])
    assert cell_a["milestones"]["reached"]["k"] == 3 and cell_a["milestones"]["moved"]["k"] == 2
    assert cell_a["progress"]["mean"] == pytest.approx((1 + 0.33 + 0.67 + 0) / 4)
    one_in_four = proportion_interval(1, 4, level=0.95, method="wilson")
    assert cell_a["failures"] == {
        mode: {"count": 1, "episodes": 4, "rate": 0.25, "low": one_in_four.low, "high": one_in_four.high,
               "examples": [trial]}
        for mode, trial in (("lost 'moved'", "3a"), ("policy error", "4a"), ("stalled after 'reached'", "2a"))}
    cell_b = next(c for c in section["per_task"] if c["policy"] == label[b])
    assert {m: f["count"] for m, f in cell_b["failures"].items()} == {
        "reached no milestone": 2, "near the goal at the step limit": 1, "simulator unstable": 1}
    (pair,) = section["paired"]  # A and B in name order
    sign = 1 if pair["policy_a"] == label[a] else -1
    assert pair["pairs"] == 4 and pair["difference"] == pytest.approx(sign * (1 + 0.33 + 0.0 + 0) / 4)
    assert pair["p_value"] == pytest.approx(2 / 4)  # 2 non-zero differences, both positive: exact 2/4
    by_mode = {q["failure"]: q for q in section["failure_pairs"]}
    assert set(by_mode) == set(cell_a["failures"]) | set(cell_b["failures"])
    none_pair = by_mode["reached no milestone"]  # b on initial conditions 0 and 3, a on none
    counts = {none_pair["policy_a"]: none_pair["a_count"], none_pair["policy_b"]: none_pair["b_count"]}
    assert counts == {label[a]: 0, label[b]: 2}
    assert none_pair["difference"] == (none_pair["a_count"] - none_pair["b_count"]) / 4
    assert none_pair["p_value"] == pytest.approx(0.5)  # exact McNemar: 2 discordant pairs, both one way
    d = none_pair["difference"]
    assert none_pair["low"] < min(d, 0) and max(d, 0) < none_pair["high"]  # 2 pairs: 0 stays inside
    assert all(q["p_holm"] >= q["p_value"] for q in section["failure_pairs"])
    assert cell_a["episodes"] == 4
    failed_sim = dataclasses.replace(records[3], reason="simulator failed after the policy's action: MujocoError")
    assert failure_category(failed_sim) == "simulator unstable"
    # journals from before the end state was recorded keep the old reading
    assert failure_category(dataclasses.replace(records[2], held_at_end=None)) == "stopped after 'moved'"
    # the last milestone holding before the step limit is near the goal only at the step limit
    assert failure_category(dataclasses.replace(records[6], steps=7), max_steps=10) == "stalled after 'moved'"
    assert failure_category(records[6], max_steps=10) == "near the goal at the step limit"


def test_the_runner_records_milestones_from_the_simulator(tmp_path):
    """Meta-World's expert on pick-place: each milestone held at a first step, in order, before success."""
    from evalsuite import registry
    from evalsuite.harness import PolicyBuilder
    from evalsuite.runner import LocalExecutor, RunContext

    suite = registry.suites.get("metaworld-smoke")
    plan, key = make_plan(suite="metaworld-smoke", tasks=["pick-place"], policies=[PolicyEntry("scripted", {})],
                          episodes=2, seed=0, max_steps={"pick-place": 200})
    records = []
    with LocalExecutor(batch_size=2) as executor:
        executor.run(plan.trials, RunContext(suite=suite, max_steps=plan.max_steps,
                                             make_policy=PolicyBuilder(suite, key)), records.append)
    for r in records:
        assert r.success and r.progress == 1.0
        steps = [r.milestones[m] for m in ("reached", "moved", "halfway")]
        assert all(s is not None for s in steps) and steps == sorted(steps) and steps[-1] < r.steps
        assert "halfway" in r.held_at_end  # the object stands at the goal when the episode ends


@pytest.mark.parametrize("values,probs", [([0.0, 0.5, 1.0], [0.1, 0.1, 0.8]), ([0.0, 0.25, 1.0], [0.7, 0.25, 0.05]),
                                          ([0.2, 0.4, 0.6, 0.8], [0.25, 0.25, 0.25, 0.25])])
def test_mean_progress_interval_covers_and_never_collapses(values, probs):
    from evalsuite.analyses.progress import progress_interval

    rng = np.random.default_rng(3)
    truth = float(np.dot(values, probs))
    for n in (10, 40):
        hits = sum(lo <= truth <= hi for lo, hi in (progress_interval(rng.choice(values, p=probs, size=n), 0.95)
                                                     for _ in range(2000)))
        assert hits / 2000 >= 0.94
    low, high = progress_interval(np.full(8, 0.5), 0.95)
    assert low < 0.5 < high  # every episode alike: still an interval


def test_mean_progress_interval_on_0_1_scores_has_wilsons_exact_coverage():
    """Progress that is only ever 0 or 1 (progress = success): the interval is Wilson's, so its
    coverage is Wilson's, not >= 0.94 everywhere. Exact over every outcome at n = 10: 0.914 at
    p = 0.05, 0.904 at its worst over p = 0.01-0.99 (p = 0.01), 0.955 on average."""
    from scipy import stats

    from evalsuite.analyses.progress import progress_interval

    n = 10
    bounds = np.array([progress_interval(np.r_[np.ones(k), np.zeros(n - k)], 0.95) for k in range(n + 1)])
    wilson = [proportion_interval(k, n, level=0.95, method="wilson") for k in range(n + 1)]
    assert np.allclose(bounds, [(w.low, w.high) for w in wilson], rtol=0, atol=1e-12)
    ps = np.round(np.arange(0.01, 1.0, 0.01), 2)
    inside = (bounds[:, :1] <= ps) & (ps <= bounds[:, 1:])  # (k, p)
    coverage = (stats.binom.pmf(np.arange(n + 1)[:, None], n, ps) * inside).sum(axis=0)
    assert coverage[ps == 0.05][0] == pytest.approx(0.914, abs=5e-4)
    assert coverage.min() == pytest.approx(0.904, abs=5e-4) and ps[coverage.argmin()] == 0.01
    assert coverage.mean() == pytest.approx(0.955, abs=5e-4)


@pytest.mark.parametrize("values,probs", [([0.0, 0.5, 1.0], [0.05, 0.05, 0.9]), ([0.0, 0.25, 1.0], [0.7, 0.25, 0.05]),
                                          ([0.2, 0.4, 0.6, 0.8], [0.25, 0.25, 0.25, 0.25])])
def test_mean_progress_over_tasks_covers(values, probs):
    """The over-tasks interval of the progress section, by simulation: 4 tasks of 20 episodes with
    skewed, tied scores (one task shifted), coverage of the true mean over tasks at 95%."""
    from evalsuite.stats.over_tasks import mean_over_tasks

    rng = np.random.default_rng(5)
    shifted = np.clip(np.array(values) - 0.1, 0, 1)
    dists = [np.array(values)] * 3 + [shifted]
    truth = float(np.mean([np.dot(v, probs) for v in dists]))
    hits = 0
    for _ in range(1000):
        draws = [rng.choice(v, p=probs, size=20) for v in dists]
        ci = mean_over_tasks([d.sum() for d in draws], [20] * 4, level=0.95)
        hits += ci.low <= truth <= ci.high
    assert hits / 1000 >= 0.93


def test_the_section_reports_mean_progress_over_tasks():
    plan, key = make_plan(suite="fake", tasks=["t1", "t2"], policies=[PolicyEntry("a", {})], episodes=2, seed=0,
                          max_steps={"t1": 10, "t2": 10})
    (code,) = key
    records = [_record(f"{t}{i}", t, code, i, "failure", p, {"reached": None}, [])
               for t, ps in (("t1", (0.2, 0.4)), ("t2", (0.6, 1.0))) for i, p in enumerate(ps)]
    (row,) = compute(AnalysisInput(plan, key, records, {code: "a"}, 0.95, 0))["over_tasks"]
    assert row["mean"] == pytest.approx((0.3 + 0.8) / 2) and row["low"] < row["mean"] < row["high"]
