"""The two small interfaces everything else is written against: a task environment and a policy.

A policy sees a *batch*: one row per parallel episode. ``slots`` says which parallel episode each
row belongs to, so a policy with per-episode state (noise generator, observation history) keeps
it per slot; ``reset(seed, slot)`` starts a new episode in a slot with the episode's own seed,
which makes an episode's outcome independent of which other episodes it was batched with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from numpy.typing import NDArray

from evalsuite.errors import UsageError

Observation = dict[str, NDArray[Any]]


class InfrastructureError(Exception):
    """Raise this from a policy or environment plugin to declare a fault of the machinery, not of
    the policy (a model server unreachable, a file system error): the episode is retried up to
    ``max_attempts`` instead of counting as a failure. Any other exception from a policy's
    ``reset``/``act`` is the policy's failure."""


@dataclass(frozen=True, slots=True)
class EnvInfo:
    """What a task environment provides: observation shapes by key, action size, step limit."""

    obs_shapes: dict[str, tuple[int, ...]]
    action_dim: int
    max_steps: int
    n_initial_conditions: int | None = None  # a finite set (a dataset's stored states), else None
    # Cameras the environment renders from with ``render(camera, width, height) -> (H, W, 3) uint8``
    # (offscreen OpenGL); none: its episodes get no videos.
    cameras: tuple[str, ...] = ()
    # Conventions beyond shapes (evalsuite/contract.py): "<key>.dtype", "<key>.range",
    # "<image key>.orientation", "action.gripper", "action.control", "action.rotation", ...
    contract: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepResult:
    obs: Observation
    reward: float
    success: bool
    # Task progress, from the simulator's own state (optional): each declared milestone and whether
    # its condition holds now (e.g. {"reached": True, "grasped": False}), and a progress score in
    # [0, 1] now. The runner keeps the first step each milestone held and the episode's best score.
    milestones: dict[str, bool] = field(default_factory=dict)
    progress: float | None = None


@runtime_checkable
class TaskEnv(Protocol):
    """One environment of one task. Initial conditions come only from ``reset``."""

    info: EnvInfo

    def reset(self, ic_seed: int, ic_index: int) -> tuple[Observation, dict[str, Any]]:
        """Start the episode of initial condition number ``ic_index`` with seed ``ic_seed``; returns
        the observation and the JSON-serializable data needed to reproduce the initial state.
        Seeded suites use the seed; suites replaying a dataset's initial states use the index."""
        ...

    def step(self, action: NDArray[Any]) -> StepResult: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PolicyRequirements:
    """What a policy needs, checked against the environment before any episode runs.

    ``obs_shapes`` maps each observation key the policy reads to its shape (``None`` = any).
    A chunked policy returns ``(batch, chunk, action_dim)`` and the harness executes the chunk.
    """

    obs_shapes: dict[str, tuple[int, ...] | None]
    action_dim: int
    chunked: bool = False
    notes: dict[str, Any] = field(default_factory=dict)
    n_obs_steps: int = 1  # > 1: act() gets the last n observations, each key shaped (B, n, *shape)
    # True: the policy has ``episode_info(slot) -> dict`` (JSON-serializable diagnostics of the
    # episode that just ended in ``slot``, e.g. energies), kept with the episode's record.
    episode_info: bool = False
    # The conventions the policy assumes (evalsuite/contract.py), checked against the suite's before
    # episode 1: e.g. {"action.gripper": "+1 closes", "agentview_image.range": [0, 255]}
    contract: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    requirements: PolicyRequirements

    def reset(self, seed: int, slot: int) -> None:
        """A new episode starts in parallel slot ``slot``; ``seed`` seeds its randomness."""
        ...

    def act(self, observations: Observation, slots: NDArray[Any]) -> NDArray[Any]:
        """Actions ``(B, action_dim)`` (or chunks ``(B, H, action_dim)``) for a batch of B rows."""
        ...

    def fingerprint(self) -> str:
        """A hash of the weights and configuration, stored with every episode."""
        ...


def check_compatible(policy_label: str, req: PolicyRequirements, env: EnvInfo, task_id: str) -> None:
    """Refuse a policy/environment mismatch with one clear line, before any episode runs."""
    for key, shape in req.obs_shapes.items():
        if key not in env.obs_shapes:
            raise UsageError(
                f"policy {policy_label!r} needs observation {key!r}, which task {task_id!r} does not "
                f"provide; provided: {', '.join(sorted(env.obs_shapes))}"
            )
        if shape is not None and tuple(shape) != tuple(env.obs_shapes[key]):
            raise UsageError(
                f"policy {policy_label!r} expects observation {key!r} of shape {tuple(shape)}, task "
                f"{task_id!r} gives {tuple(env.obs_shapes[key])}"
            )
    if req.action_dim != env.action_dim:
        raise UsageError(
            f"policy {policy_label!r} outputs {req.action_dim}-d actions, task {task_id!r} takes "
            f"{env.action_dim}-d actions"
        )
