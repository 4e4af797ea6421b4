"""A third-party suite plugin adds its own command-line option without touching evalsuite/: the
suite declares it, the core reads it from the command line, hands it to the plugin's environment,
records it in the plan, and says where it belongs when it is given to another suite."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evalsuite import registry
from evalsuite.cli import main
from evalsuite.errors import UsageError
from evalsuite.specs import SuiteOption, SuiteSpec, TaskSpec
from tests.conftest import CountdownEnv

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

EVAL = ["policies=[ones]", "episodes=4", "max_steps=14", "tracking_uri=none", "progress=false",
        "video=none"]


class WindyEnv(CountdownEnv):
    """The fake task with a head wind that eats part of every push: a strong one makes it unsolvable."""

    def __init__(self, task_id: str, max_steps: int = 30, wind: float = 0.0) -> None:
        super().__init__(task_id, max_steps)
        self.wind = float(wind)

    def step(self, action):
        return super().step(np.asarray(action) - np.array([self.wind, 0.0]))


def parse_wind(key: str, value: str) -> float:
    """The plugin's own check, run as the command line is read."""
    try:
        wind = float(value)
    except ValueError:
        raise UsageError(f"{key}={value!r} is not a number (metres per second)") from None
    if not 0 <= wind < 1:
        raise UsageError(f"{key}={wind} must be in [0, 1): a wind of 1 or more stops every push")
    return wind


@pytest.fixture
def windy(fake_suite):
    registry.suites.register(SuiteSpec(
        id="windy", entry_point="tests.test_plugin_options:WindyEnv", tasks=(TaskSpec("t1", 30),),
        options=(SuiteOption("wind", "head wind against every push, in [0, 1)", parse="tests.test_plugin_options:parse_wind"),)))


def test_a_plugin_option_reaches_the_environment_and_the_plan(windy, tmp_path, capsys):
    calm, gusty = tmp_path / "calm", tmp_path / "gusty"
    assert main(["evaluate", "suite=windy", *EVAL, f"out={calm}"]) == 0
    assert main(["evaluate", "suite=windy", "wind=0.9", *EVAL, f"out={gusty}"]) == 0
    assert json.loads((gusty / "plan.json").read_text())["suite_options"] == {"wind": 0.9}
    rate = {name: json.loads((folder / "results.json").read_text())["per_task"][0]["rate"]
            for name, folder in (("calm", calm), ("gusty", gusty))}
    assert rate == {"calm": 1.0, "gusty": 0.0}  # the wind reached the environment
    capsys.readouterr()
    assert main(["list"]) == 0
    assert "wind=: head wind against every push" in capsys.readouterr().out
    assert main(["evaluate", "suite=windy", "--help"]) == 0
    assert "  wind " in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["suite=windy", "wind=gale"], "wind='gale' is not a number (metres per second)"),
    (["suite=windy", "wind=1.5"], "wind=1.5 must be in [0, 1)"),
    (["suite=fake", "wind=0.5"], "wind= is an option of suite windy, not of suite 'fake'"),
])
def test_a_plugin_option_is_checked_by_its_plugin_in_one_line(argv, message, windy, tmp_path, capsys):
    assert main(["evaluate", *argv, *EVAL, f"out={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run").exists()  # refused before anything ran
