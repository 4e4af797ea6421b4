"""Uniform random actions in [-1, 1]: the floor every real policy must beat."""

from __future__ import annotations

import numpy as np

from evalsuite.interfaces import PolicyRequirements
from evalsuite.specs import SuiteSpec, TaskSpec
from evalsuite_policies._util import SlotRngs, config_fingerprint


class RandomPolicy:
    def __init__(self, task: TaskSpec, suite: SuiteSpec, action_dim: int = 4) -> None:
        self.action_dim = int(action_dim)
        self._rngs = SlotRngs()
        self.requirements = PolicyRequirements(obs_shapes={}, action_dim=self.action_dim)

    def reset(self, seed: int, slot: int) -> None:
        self._rngs.reset(seed, slot)

    def act(self, observations: dict[str, np.ndarray], slots: np.ndarray) -> np.ndarray:
        return np.stack([self._rngs[int(s)].uniform(-1.0, 1.0, self.action_dim) for s in slots])

    def fingerprint(self) -> str:
        return config_fingerprint({"policy": "random", "action_dim": self.action_dim})
