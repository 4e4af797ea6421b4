"""Meta-World's scripted experts, optionally with Gaussian action noise.

The noisy expert is the honest way to get intermediate success rates: a real closed-loop policy
whose competence degrades smoothly with ``noise`` (the std of N(0, noise^2) added to every action
component before the environment clips to [-1, 1]).
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np

from evalsuite.errors import UsageError
from evalsuite.interfaces import PolicyRequirements
from evalsuite.specs import SuiteSpec, TaskSpec
from evalsuite_policies._util import SlotRngs, config_fingerprint


class MetaWorldExpert:
    def __init__(self, task: TaskSpec, suite: SuiteSpec, noise: float = 0.0) -> None:
        if suite.simulator != "metaworld":
            raise UsageError(f"no scripted expert for suite {suite.id!r}; there are experts for Meta-World and "
                             "robomimic (lift, can)")
        noise = float(noise)
        if not np.isfinite(noise) or noise < 0:
            raise UsageError(f"noise must be a finite number >= 0, got {noise!r}")
        from evalsuite_suites.metaworld import expert_for

        self.task_id = task.id
        self.noise = noise
        self._expert = expert_for(task.id)
        self._rngs = SlotRngs()
        self.requirements = PolicyRequirements(obs_shapes={"state": (39,)}, action_dim=4)

    def reset(self, seed: int, slot: int) -> None:
        self._rngs.reset(seed, slot)

    def act(self, observations: dict[str, np.ndarray], slots: np.ndarray) -> np.ndarray:
        from evalsuite_suites.metaworld import quiet_expert_action

        states = observations["state"]
        actions = np.stack([quiet_expert_action(self._expert, s) for s in states]).astype(np.float64)
        if self.noise > 0:
            for row, slot in enumerate(slots):
                actions[row] += self._rngs[int(slot)].normal(0.0, self.noise, size=actions.shape[1])
        return np.clip(actions, -1.0, 1.0)

    def fingerprint(self) -> str:
        return config_fingerprint(
            {"policy": "metaworld-expert", "task": self.task_id, "noise": self.noise,
             "metaworld": version("metaworld")}
        )


def scripted(task: TaskSpec, suite: SuiteSpec, noise: float = 0.0):
    """The suite's own scripted expert: Meta-World's, or evalsuite's for robomimic tasks."""
    if suite.simulator == "robosuite":
        from evalsuite_policies.robosuite_expert import RobosuiteExpert

        return RobosuiteExpert(task, suite, noise=noise)
    return MetaWorldExpert(task, suite, noise=noise)


def noisy_scripted(task: TaskSpec, suite: SuiteSpec, noise: float = 1.0):
    return scripted(task, suite, noise=noise)
