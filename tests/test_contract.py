"""The observation/action contract: a policy built for other conventions (the gripper's sign, an
upside-down image, images in 0-1) is refused before episode 1 with one line naming the field and
both values; ``contract=warn`` runs it and records the mismatch in plan.json and the report."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from evalsuite import contract, registry
from evalsuite.commands.options import parse_policy
from evalsuite.errors import UsageError
from evalsuite.harness import evaluate
from evalsuite.interfaces import PolicyRequirements
from evalsuite.request import EvaluateRequest
from evalsuite.specs import PolicySpec

FLIPS = {
    "gripper": {"action.gripper": "+1 opens"},
    "upside-down": {"agentview_image.orientation": "upside-down"},
    "unit-image": {"agentview_image.range": [0.0, 1.0], "agentview_image.dtype": "float32"},
    "as-the-suite": {"action.gripper": "+1 closes", "action.range": (-1.0, 1.0), "state.units": "m"},
}


class FlippedPolicy:
    """Holds still; states the conventions it was (deliberately wrongly) built for."""

    def __init__(self, task, suite, flip: str = "gripper", action_dim: int = 4) -> None:
        self.requirements = PolicyRequirements(obs_shapes={}, action_dim=action_dim, contract=FLIPS[flip])

    def reset(self, seed, slot):
        pass

    def act(self, observations, slots):
        return np.zeros((len(slots), self.requirements.action_dim))

    def fingerprint(self):
        return "flipped"


@pytest.fixture
def flipped():
    registry.policies.register(PolicySpec(id="flipped", entry_point="tests.test_contract:FlippedPolicy",
                                          params={"flip": "gripper", "action_dim": 4}))


def _request(tmp_path, suite: str, policy: str, **options) -> EvaluateRequest:
    return EvaluateRequest.of(suite, [parse_policy(policy)], tmp_path / "run", episodes=1, max_steps=5,
                              tracking_uri=None, video="none", progress=False, **options)


@pytest.mark.unit
def test_only_fields_both_sides_state_are_compared_and_values_as_json_holds_them():
    suite = {"action.gripper": "+1 closes", "action.range": [-1, 1], "img.range": [0, 255]}
    assert contract.mismatches({"action.range": (-1.0, 1.0), "action.control": "joint-position"}, suite) == []
    found = contract.mismatches({"action.gripper": "+1 opens", "img.range": [0, 1]}, suite)
    assert [str(m) for m in found] == ["action.gripper: the policy expects '+1 opens', the suite gives '+1 closes'",
                                       "img.range: the policy expects [0, 1], the suite gives [0, 255]"]
    with pytest.raises(UsageError, match=r"contract field 'action\.grip' is not"):
        contract.check_fields({"action.grip": "+1 opens"}, "policy 'x'")


@pytest.mark.parametrize("flip, field, policy_value, suite_value", [
    ("gripper", "action.gripper", "'+1 opens'", "'+1 closes'"),
])
def test_a_flipped_gripper_is_refused_before_episode_one(tmp_path, flipped, flip, field, policy_value, suite_value):
    with pytest.raises(UsageError) as caught:
        evaluate(_request(tmp_path, "metaworld-smoke", f"flipped:flip={flip}", tasks=("drawer-open",)), log=print)
    message = str(caught.value)
    assert "\n" not in message and f"{field}: the policy expects {policy_value}, the suite gives {suite_value}" in message
    assert not (tmp_path / "run" / "plan.json").exists()


@pytest.mark.parametrize("flip, says", [
    ("upside-down", "agentview_image.orientation: the policy expects 'upside-down', the suite gives 'upright'"),
    ("unit-image", "agentview_image.range: the policy expects [0, 1], the suite gives [0, 255]; "
                   "agentview_image.dtype: the policy expects 'float32', the suite gives 'uint8'"),
])
def test_image_conventions_are_refused_before_episode_one(tmp_path, flipped, flip, says):
    with pytest.raises(UsageError, match="does not match task 'lift'") as caught:
        evaluate(_request(tmp_path, "robomimic-image", f"flipped:flip={flip}:action_dim=7", tasks=("lift",)), log=print)
    assert says in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "run" / "plan.json").exists()


def test_warn_runs_and_records_the_mismatch(tmp_path, flipped):
    evaluate(_request(tmp_path, "metaworld-smoke", "flipped:flip=gripper", tasks=("drawer-open",), contract="warn"),
             log=lambda _: None)
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["contracts"]["mismatches"] == [{"code": "A", "task": "drawer-open", "field": "action.gripper",
                                                "policy": "+1 opens", "suite": "+1 closes"}]
    assert plan["contracts"]["tasks"]["drawer-open"]["action.gripper"] == "+1 closes"
    report = (tmp_path / "run" / "report.md").read_text()
    assert ("**mismatch accepted (contract=warn)**: flipped:flip=gripper on drawer-open: action.gripper: the policy "
            "expects +1 opens, the suite gives +1 closes") in report
    assert "- the suite, every task: state.dtype float64, state.shape [39]" in report


def test_a_policy_that_states_the_suites_conventions_runs(tmp_path, flipped):
    evaluate(_request(tmp_path, "metaworld-smoke", "flipped:flip=as-the-suite", tasks=("drawer-open",)),
             log=lambda _: None)
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["contracts"]["mismatches"] == [] and plan["contracts"]["policies"]["A"]["action.range"] == [-1, 1]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "- flipped:flip=as-the-suite: action.gripper +1 closes, action.range [-1, 1], state.units m" in report
    assert "mismatch accepted" not in report


def test_a_servers_declared_conventions_are_checked(tmp_path):
    """A foreign server whose metadata declares the gripper flipped is refused, one line."""
    from tests.servers import ServedProcess
    from tests.test_remote import SERVER

    server = ServedProcess([sys.executable, str(SERVER), "--mode", "flipped"])
    try:
        with pytest.raises(UsageError, match=r"action\.gripper: the policy expects '\+1 opens'"):
            evaluate(_request(tmp_path, "metaworld-smoke", f"remote:{server.url}", tasks=("drawer-open",)),
                     log=lambda _: None)
    finally:
        server.stop()
