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
