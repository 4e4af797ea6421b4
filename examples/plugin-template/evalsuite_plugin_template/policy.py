"""A proportional controller: action = gain * (goal - hand) + noise, clipped to [-1, 1].

It reads Meta-World's 39-d ``state`` (hand xyz at [0:3], goal xyz at [36:39]), so it runs on the
built-in ``metaworld-smoke`` suite and on this package's toy suite, which uses the same layout.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from evalsuite.interfaces import PolicyRequirements
from evalsuite.specs import SuiteSpec, TaskSpec


class ReachPolicy:
    def __init__(self, task: TaskSpec, suite: SuiteSpec, gain: float = 10.0, noise: float = 0.1) -> None:
        # Parameters arrive as typed on the command line or as the spec's defaults: convert them, and
        # refuse a bad value with ValueError - evalsuite reports it as one line naming the policy.
        self.gain, self.noise = float(gain), float(noise)
        if self.noise < 0:
            raise ValueError(f"noise={noise} must be >= 0")
        # Checked against the task before any episode runs: a mismatch is refused up front.
        self.requirements = PolicyRequirements(obs_shapes={"state": (39,)}, action_dim=4)
        self._rngs: dict[int, np.random.Generator] = {}

    def reset(self, seed: int, slot: int) -> None:
        # One generator per parallel slot, seeded by the episode: an episode's actions then depend
        # only on its seed, not on which episodes share its batch (evalsuite's pairing relies on it).
        self._rngs[slot] = np.random.default_rng(seed)

    def act(self, observations: dict[str, np.ndarray], slots: np.ndarray) -> np.ndarray:
        state = observations["state"]  # (B, 39): one row per parallel episode
        actions = np.zeros((len(slots), 4))
        actions[:, :3] = self.gain * (state[:, 36:39] - state[:, 0:3])
        for row, slot in enumerate(slots):
            actions[row, :3] += self._rngs[int(slot)].normal(0.0, self.noise, 3)
        return np.clip(actions, -1.0, 1.0)  # column 3 (the gripper) stays 0

    def fingerprint(self) -> str:
        # Stored with every episode: it must change whenever the weights or settings do.
        config = {"policy": "template-reach", "gain": self.gain, "noise": self.noise}
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
