"""LeRobot's mistakes that need no LeRobot environment: each is one line naming the bad value, before
anything starts (the runs themselves are in test_lerobot.py, slow)."""

from __future__ import annotations

import pytest

from evalsuite import registry
from evalsuite.cli import main
from evalsuite.demos import lerobot_python
from evalsuite.errors import UsageError

pytestmark = pytest.mark.unit


def test_a_missing_lerobot_environment_says_how_to_build_it(monkeypatch, tmp_path):
    with pytest.raises(UsageError, match="python= .*/nope/bin/python does not exist; build it with `nox -s lerobot_env`"):
        lerobot_python(str(tmp_path / "nope" / "bin" / "python"))
    monkeypatch.setenv("EVALSUITE_LEROBOT_PYTHON", str(tmp_path / "gone"))
    with pytest.raises(UsageError, match=r"\$EVALSUITE_LEROBOT_PYTHON .*gone does not exist"):
        lerobot_python()


def test_a_folder_that_is_not_a_lerobot_policy_is_named(tmp_path):
    from evalsuite_policies.lerobot import pretrained_folder

    suite = registry.suites.get("metaworld-smoke")
    (tmp_path / "config.json").write_text("{}")  # no weights beside it
    with pytest.raises(UsageError, match="is not a LeRobot pretrained policy folder"):
        pretrained_folder(str(tmp_path), suite.task("drawer-open"), suite)


def test_a_bare_lerobot_names_the_tasks_with_a_shipped_checkpoint():
    from evalsuite_policies.lerobot import pretrained_folder

    suite = registry.suites.get("metaworld-smoke")
    assert pretrained_folder("", suite.task("drawer-open"), suite).name == "drawer-open"
    with pytest.raises(UsageError, match="no checkpoint is shipped for task 'coffee-push' .*shipped: drawer-open"):
        pretrained_folder("", suite.task("coffee-push"), suite)


@pytest.mark.parametrize("args,fragment", [
    (["format=parquet"], "format='parquet'; accepted: hdf5, lerobot"),
    (["format=lerobot", "out=demos.hdf5"], "format=lerobot writes a folder, not an HDF5 file"),
    (["format=lerobot", "out=.", "python=/x"], "out='.' exists; format=lerobot writes a new dataset folder"),
    (["format=lerobot", "out=new", "python=/nonexistent/python"], "no LeRobot environment: python= /nonexistent/python"),
    (["out=d.hdf5", "python=/x"], "python= is for format=lerobot"),
])
def test_demos_format_lerobot_usage_errors(args, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["demos", "suite=metaworld-smoke", "task=drawer-open", "n=1"]
    if not any(a.startswith("out=") for a in args):
        args = [*args, "out=x"]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------ evalsuite export RUN format=lerobot

FAKE_RUN = ["evaluate", "suite=fake", "policies=[ones,ones:speed=0.5]", "episodes=2", "max_steps=14",
            "tracking_uri=none", "progress=false", "video=none"]


@pytest.fixture
def fake_run(fake_suite, tmp_path):
    folder = tmp_path / "run"
    assert main([*FAKE_RUN, f"out={folder}"]) == 0
    return folder


@pytest.mark.parametrize("damage,args,fragment", [
    ("journal", ["python={python}"], "has no finished episode to export (its journal holds none)"),
    ("", ["python=/nonexistent/python"], "no LeRobot environment: python= /nonexistent/python"),
    ("", ["python={python}", "trials=[t1/00009/A]"], "trials: 't1/00009/A' is not a finished episode"),
    ("", ["python={python}", "out={run}"], "exists; format=lerobot writes a new dataset folder"),
    ("trial", ["python={python}"], "is a trial run: its episodes ran on a robot"),
])
def test_export_format_lerobot_usage_errors(damage, args, fragment, fake_run, capsys):
    import sys

    if damage == "journal":
        (fake_run / "episodes.jsonl").write_text("")
    elif damage == "trial":
        (fake_run / "trial.json").write_text("{}")
    args = [a.format(python=sys.executable, run=fake_run) for a in args]
    capsys.readouterr()
    assert main(["export", str(fake_run), "format=lerobot", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1, err
    assert not (fake_run / "lerobot").exists()


def test_export_table_refuses_lerobot_keys(fake_run, capsys):
    assert main(["export", str(fake_run), "format=csv", "unblinded=true"]) == 2
    assert "unblinded= is for format=lerobot; this writes a table" in capsys.readouterr().err


def test_the_replay_records_each_journaled_step_and_leaves_out_one_that_differs(fake_run, fake_suite):
    """What format=lerobot hands LeRobot's writer: a frame per journaled step, the policy's actions."""
    import dataclasses

    import numpy as np

    from evalsuite.api import Run
    from evalsuite.harness import PolicyBuilder
    from evalsuite.lerobot_export import episode_rows, frame_fields, replay

    run = Run(fake_run)
    records = sorted(run.final().values(), key=lambda r: r.trial_id)
    builder = PolicyBuilder(fake_suite, run.key)
    taped, notes = replay(fake_suite, builder, dict(run.plan.max_steps), records)
    assert notes == [] and set(taped) == {r.trial_id for r in records}
    for r in records:
        speed = 1.0 if run.key.label(r.policy_code) == "ones" else 0.5
        t = taped[r.trial_id]
        assert len(t.actions) == len(t.obs) == r.steps
        assert np.allclose(np.stack(t.actions), [[speed, 0.0]] * r.steps)
        assert np.allclose([o["state"][1] for o in t.obs], speed * np.arange(r.steps))  # the state before each step
    fields = frame_fields(records, taped)
    assert len(fields["trial_id"]) == sum(r.steps for r in records)
    assert set(fields["policy_code"]) == set(run.key) and "ones" not in set(fields["policy_code"])
    assert list(fields["success"]) == [r.success for r in records for _ in range(r.steps)]
    blind, named = episode_rows(records, None), episode_rows(records, run.key.labels)
    assert not any("policy" in row or "reason" in row for row in blind)
    assert [row["policy"] for row in named] == [run.key.label(r.policy_code) for r in records]
    changed = dataclasses.replace(records[0], steps=records[0].steps + 1)
    taped, notes = replay(fake_suite, builder, dict(run.plan.max_steps), [changed])
    assert taped == {} and len(notes) == 1 and "left out: the replay ended" in notes[0]
