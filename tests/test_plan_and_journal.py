import json
from collections import Counter

import pytest

from evalsuite import journal as jn
from evalsuite import plan as pm
from evalsuite.errors import UsageError
from evalsuite.plan import PolicyEntry

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

POLICIES = [PolicyEntry("scripted", {}), PolicyEntry("noisy-scripted", {"noise": 0.5}), PolicyEntry("random", {})]


def _plan(**kw):
    args = dict(suite="s", tasks=["a", "b"], policies=POLICIES, episodes=5, seed=0, max_steps={"a": 10, "b": 10})
    args.update(kw)
    return pm.make_plan(**args)


def test_paired_design_every_policy_meets_every_initial_condition():
    plan, key = _plan()
    assert len(plan.trials) == 2 * 5 * 3
    by_ic = {}
    for t in plan.trials:
        by_ic.setdefault((t.task, t.ic_index), set()).add((t.policy_code, t.ic_seed, t.policy_seed))
    for entries in by_ic.values():
        assert {c for c, _, _ in entries} == set(plan.codes)
        assert len({(s, p) for _, s, p in entries}) == 1  # same initial condition and seed for all
    assert len({t.ic_seed for t in plan.trials}) == 10


def test_same_seed_same_plan_other_seed_other_plan():
    assert _plan()[0] == _plan()[0]
    other, _ = _plan(seed=1)
    assert [t.ic_seed for t in other.trials] != [t.ic_seed for t in _plan()[0].trials]


def test_order_is_randomized_not_grouped():
    plan, _ = _plan(episodes=20)
    codes = [t.policy_code for t in plan.trials]
    runs = sum(1 for x, y in zip(codes, codes[1:], strict=False) if x != y)
    assert runs > len(codes) / 3  # grouped order would switch only twice
    assert Counter(codes) == {c: 40 for c in plan.codes}


def test_initial_conditions_do_not_depend_on_other_tasks_or_episode_count():
    small, _ = _plan(tasks=["b"], episodes=3)
    big, _ = _plan(tasks=["a", "b"], episodes=8)
    seeds = lambda p: {(t.task, t.ic_index): t.ic_seed for t in p.trials}  # noqa: E731
    assert all(seeds(big)[k] == v for k, v in seeds(small).items())


def test_blinding_codes_hide_names(tmp_path):
    plan, key = _plan()
    pm.save(tmp_path, plan, key)
    text = (tmp_path / pm.PLAN_FILE).read_text()
    for p in POLICIES:
        assert p.id not in text
    assert {v["label"] for v in json.loads((tmp_path / pm.KEY_FILE).read_text()).values()} == {p.label for p in POLICIES}
    # the assignment of codes is shuffled by the seed, not the listing order
    assignments = {tuple(v.id for _, v in sorted(_plan(seed=s)[1].items())) for s in range(8)}
    assert len(assignments) > 1


def test_resume_with_other_plan_is_refused(tmp_path):
    plan, key = _plan()
    for changed, match in [(dict(seed=3), "seed=0, not 3"), (dict(episodes=6), "episodes=5, not 6"),
                           (dict(tasks=["a"]), "tasks="),
                           (dict(policies=POLICIES[:2]), "other policies")]:
        new, new_key = _plan(**changed)
        with pytest.raises(UsageError, match=match):
            pm.check_resumable(plan, key, new, new_key, tmp_path)
    pm.check_resumable(plan, key, *_plan(), tmp_path)


def test_duplicate_policy_and_zero_episodes_refused():
    with pytest.raises(UsageError, match="twice"):
        _plan(policies=[POLICIES[0], POLICIES[0]])
    with pytest.raises(UsageError, match="episodes"):
        _plan(episodes=0)


def _record(trial_id, status, attempt=1):
    return jn.EpisodeRecord(trial_id, "a", "A", 0, 1, 2, attempt, status, status == "success", 3, 1.0, "", 0.1, "f")


def test_journal_appends_and_repairs_torn_line(tmp_path):
    path = tmp_path / jn.JOURNAL_FILE
    with jn.Journal(path) as j:
        j.append(_record("x", "success"))
        j.append(_record("y", "failure"))
    with open(path, "ab") as fh:
        fh.write(b'{"trial_id": "z", "ta')  # a kill in the middle of a write
    assert [r.trial_id for r in jn.read(path)] == ["x", "y"]
    with jn.Journal(path) as j:
        assert [r.trial_id for r in j.records] == ["x", "y"]
        j.append(_record("z", "success"))
    assert [r.trial_id for r in jn.read(path)] == ["x", "y", "z"]


def test_finished_trials_counts_errors_until_attempts_are_spent():
    records = [_record("x", "error", 1), _record("y", "error", 1), _record("y", "success", 2),
               _record("w", "error", 1), _record("w", "error", 2), _record("w", "error", 3)]
    done = jn.finished_trials(records, max_attempts=3)
    assert set(done) == {"y", "w"}
    assert done["y"].status == "success" and done["w"].status == "error"


def test_resuming_under_another_suite_specification_is_refused(fake_suite, tmp_path, capsys):
    """The plan carries a digest of the suite (tasks, step limits, options, simulator versions)."""
    import dataclasses

    from evalsuite import registry
    from evalsuite.cli import main

    args = ["evaluate", "suite=fake", "policies=[ones]", "episodes=2", "max_steps=14", "tracking_uri=none",
            "progress=false", f"out={tmp_path / 'run'}"]
    assert main(args) == 0
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert len(plan["suite_digest"]) == 64
    changed = dataclasses.replace(fake_suite, kwargs={"fail_on": 99})  # same id, another environment
    registry.suites._specs["fake"] = changed  # the fixture restores the registry afterwards
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "under another specification of suite 'fake'" in err and len(err.splitlines()) == 1
