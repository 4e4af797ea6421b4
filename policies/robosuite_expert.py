"""Scripted experts for robomimic's lift and can tasks (OSC pose, delta actions, Panda).

A phase machine per parallel slot: move above the object, (lift: turn the gripper to a cube face),
descend, close, lift; (can: carry over the target bin, lower, release). Position actions are a
clipped proportional law on the end-effector error; the controller scales 1.0 to 5 cm a step.
``noise`` adds N(0, noise^2) to every action component, as the Meta-World noisy expert does.
"""

from __future__ import annotations

import numpy as np

from evalsuite.errors import UsageError
from evalsuite.interfaces import PolicyRequirements
from evalsuite.specs import SuiteSpec, TaskSpec
from evalsuite_policies._util import SlotRngs, config_fingerprint

OPEN, CLOSE = -1.0, 1.0
CAN_TARGET = np.array([0.1975, 0.4025, 0.8])  # PickPlaceCan's bin for the can (target_bin_placements[3])


def _yaw(quat_xyzw: np.ndarray) -> float:
    x, y, z, w = quat_xyzw
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def _eef_yaw(quat_xyzw: np.ndarray) -> float:
    """Yaw of the gripper's x axis projected on the table (the gripper points down)."""
    x, y, z, w = quat_xyzw
    r00 = 1 - 2 * (y * y + z * z)
    r10 = 2 * (x * y + w * z)
    return float(np.arctan2(r10, r00))


def _wrap_quarter(angle: float) -> float:
    """Angle difference modulo a quarter turn (a cube looks the same every 90 degrees)."""
    return (angle + np.pi / 4) % (np.pi / 2) - np.pi / 4


def _move(eef: np.ndarray, target: np.ndarray, gain: float = 12.0) -> np.ndarray:
    return np.clip(gain * (target - eef), -1.0, 1.0)


def _close_gripper(s, a: np.ndarray, steps: int = 10) -> None:
    """Hold still with the gripper closing for ``steps`` steps, then lift."""
    a[6] = CLOSE
    s.timer += 1
    if s.timer >= steps:
        s.phase = "lift"


class _Slot:
    def __init__(self) -> None:
        self.phase = "approach"
        self.timer = 0


class RobosuiteExpert:
    def __init__(self, task: TaskSpec, suite: SuiteSpec, noise: float = 0.0) -> None:
        if task.id not in ("lift", "can"):
            raise UsageError(f"the scripted robosuite expert exists for lift and can, not {task.id!r}")
        self.task_id = task.id
        self.noise = float(noise)
        self._slots: dict[int, _Slot] = {}
        self._rngs = SlotRngs()
        self.requirements = PolicyRequirements(
            obs_shapes={"robot0_eef_pos": (3,), "robot0_eef_quat": (4,), "robot0_gripper_qpos": (2,),
                        "object": (10,) if task.id == "lift" else (14,)}, action_dim=7)

    def reset(self, seed: int, slot: int) -> None:
        self._slots[slot] = _Slot()
        self._rngs.reset(seed, slot)

    def act(self, observations: dict[str, np.ndarray], slots: np.ndarray) -> np.ndarray:
        out = np.zeros((len(slots), 7))
        for row, slot in enumerate(slots):
            obs = {k: v[row] for k, v in observations.items()}
            step = self._lift if self.task_id == "lift" else self._can
            out[row] = step(self._slots[int(slot)], obs)
            if self.noise > 0:
                out[row] += self._rngs[int(slot)].normal(0.0, self.noise, size=7)
        return np.clip(out, -1.0, 1.0)

    def _lift(self, s: _Slot, obs) -> np.ndarray:
        eef, cube = obs["robot0_eef_pos"], obs["object"][:3]
        a = np.zeros(7)
        d_yaw = _wrap_quarter(_yaw(obs["object"][3:7]) - _eef_yaw(obs["robot0_eef_quat"]))
        a[5] = np.clip(3.0 * d_yaw, -1, 1)
        above = cube + np.array([0, 0, 0.08])
        if s.phase == "approach":
            a[:3], a[6] = _move(eef, above), OPEN
            if np.linalg.norm(eef - above) < 0.01 and abs(d_yaw) < 0.05:
                s.phase = "descend"
        elif s.phase == "descend":
            target = cube + np.array([0, 0, -0.005])
            a[:3], a[6] = _move(eef, target), OPEN
            if np.linalg.norm(eef - target) < 0.008:
                s.phase, s.timer = "grasp", 0
        elif s.phase == "grasp":
            _close_gripper(s, a)
        else:
            a[5] = 0.0
            a[:3], a[6] = _move(eef, np.array([eef[0], eef[1], 1.05])), CLOSE
        return a

    def _can(self, s: _Slot, obs) -> np.ndarray:
        eef, can = obs["robot0_eef_pos"], obs["object"][7:10]
        a = np.zeros(7)
        if s.phase == "approach":
            above = can + np.array([0, 0, 0.10])
            a[:3], a[6] = _move(eef, above), OPEN
            if np.linalg.norm(eef - above) < 0.01:
                s.phase, s.timer = "descend", 0
        elif s.phase == "descend":
            target = can + np.array([0, 0, 0.0])
            a[:3], a[6] = _move(eef, target), OPEN
            s.timer += 1
            # fingers may touch the bin floor first: grasp once centred and low, or stalled
            if np.linalg.norm(eef - target) < 0.01 or (np.linalg.norm(eef[:2] - target[:2]) < 0.01 and s.timer > 30):
                s.phase, s.timer = "grasp", 0
        elif s.phase == "grasp":
            _close_gripper(s, a)
        elif s.phase == "lift":
            target = np.array([eef[0], eef[1], 1.05])
            a[:3], a[6] = _move(eef, target), CLOSE
            if eef[2] > 1.03:
                s.phase = "carry"
        elif s.phase == "carry":
            target = np.array([CAN_TARGET[0], CAN_TARGET[1], 1.05])
            a[:3], a[6] = _move(eef, target), CLOSE
            if np.linalg.norm(eef[:2] - target[:2]) < 0.015:
                s.phase = "lower"
        elif s.phase == "lower":
            target = np.array([CAN_TARGET[0], CAN_TARGET[1], 0.97])
            a[:3], a[6] = _move(eef, target), CLOSE
            if np.linalg.norm(eef - target) < 0.015:
                s.phase = "release"
        else:
            a[6] = OPEN
        return a

    def fingerprint(self) -> str:
        return config_fingerprint({"policy": "robosuite-expert", "task": self.task_id, "noise": self.noise})


def scripted(task: TaskSpec, suite: SuiteSpec, noise: float = 0.0) -> RobosuiteExpert:
    return RobosuiteExpert(task, suite, noise=noise)
