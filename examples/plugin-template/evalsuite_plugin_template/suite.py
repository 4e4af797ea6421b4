"""A toy task without a simulator: a point "hand" moves by its action and must reach a goal.

Observations follow Meta-World's 39-d layout (hand at [0:3], goal at [36:39], zeros elsewhere) and
its action scale (1 cm per unit), so a Meta-World policy can be tried here first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuite.errors import UsageError
from evalsuite.interfaces import EnvInfo, StepResult

STEP = 0.01  # metres per unit of action, as in Meta-World
GOAL_DISTANCE = {"reach-near": (0.05, 0.15), "reach-far": (0.2, 0.4)}  # metres, per task


def parse_tolerance(key: str, value: str) -> float:
    """The suite option's check, run as the command line is read: a bad value is one line."""
    try:
        tolerance = float(value)
    except ValueError:
        raise UsageError(f"{key}={value!r} is not a number (metres)") from None
    if not 0 < tolerance < 0.5:
        raise UsageError(f"{key}={tolerance} must be in (0, 0.5) metres")
    return tolerance


class ReachEnv:
    def __init__(self, task_id: str, max_steps: int = 100, tolerance: float = 0.05) -> None:
        if task_id not in GOAL_DISTANCE:
            raise ValueError(f"unknown task {task_id!r}")
        self.task_id, self.tolerance = task_id, float(tolerance)
        self.info = EnvInfo(obs_shapes={"state": (39,)}, action_dim=4, max_steps=max_steps)
        self.hand = self.goal = np.zeros(3)
        self.start_distance = 1.0

    def reset(self, ic_seed: int, ic_index: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # The initial condition is a pure function of the seed (a fresh generator, no global state):
        # every policy meets the same episodes, which is what makes the comparison paired.
        rng = np.random.default_rng(ic_seed)
        self.hand = rng.uniform(-0.2, 0.2, 3)
        direction = rng.normal(size=3)
        distance = rng.uniform(*GOAL_DISTANCE[self.task_id])
        self.goal = self.hand + distance * direction / np.linalg.norm(direction)
        self.start_distance = distance
        # Returned data is recorded with the episode: enough to reproduce its initial state.
        return self._observe(), {"hand": self.hand.tolist(), "goal": self.goal.tolist()}

    def step(self, action: np.ndarray) -> StepResult:
        self.hand = self.hand + STEP * np.clip(np.asarray(action, dtype=float)[:3], -1.0, 1.0)
        distance = float(np.linalg.norm(self.goal - self.hand))
        return StepResult(obs=self._observe(), reward=-distance, success=distance < self.tolerance,
                          milestones={"halfway": distance < self.start_distance / 2},
                          progress=float(np.clip(1 - distance / self.start_distance, 0.0, 1.0)))

    def close(self) -> None:
        pass  # a simulator would free its resources here

    def _observe(self) -> dict[str, np.ndarray]:
        state = np.zeros(39)
        state[0:3], state[36:39] = self.hand, self.goal
        return {"state": state}
