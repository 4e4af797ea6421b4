"""Expert demonstrations from a suite's own environments, and the files training code reads.

Demonstration initial conditions come from their own seed namespace, disjoint from the ones
evaluation plans draw, so a policy is never evaluated on the initial conditions it was trained on.
Only successful episodes are kept.

Writers: robomimic's HDF5 layout for robosuite tasks (``data/demo_i/{obs, next_obs, actions,
states, rewards, dones}``, ``model_file`` and ``num_samples`` per demo, ``env_args`` and ``total``
on ``data``), so robomimic's own dataset classes and training read it; and DP3's field layout
(``data/{full_state, action}``, ``meta/episode_ends``) in HDF5 for Meta-World.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evalsuite import fsio, registry, streams
from evalsuite.harness import build_policy, with_options
from evalsuite.interfaces import Policy, TaskEnv
from evalsuite.plan import stable_hash32
from evalsuite.runner.envs import build_env


@dataclass
class Episode:
    obs: dict[str, NDArray[Any]]  # key -> (T + 1, ...): the last row is the observation after the last action
    actions: NDArray[Any]  # (T, A)
    rewards: NDArray[Any]  # (T,)
    ic_seed: int
    states: NDArray[Any] | None = None  # (T, S) simulator states before each action, where the env exposes them
    model_xml: str | None = None


@dataclass
class Demos:
    """Successful expert episodes of one task."""

    suite: str
    task: str
    episodes: list[Episode] = field(default_factory=list)
    attempted: int = 0
    env_args: dict[str, Any] | None = None

    def stacked(self, key: str) -> tuple[NDArray[Any], NDArray[Any]]:
        """(observations (N, ...), actions (N, A)) over all steps of all episodes."""
        return (np.concatenate([e.obs[key][:-1] for e in self.episodes]),
                np.concatenate([e.actions for e in self.episodes]))

    @property
    def actions(self) -> list[NDArray[Any]]:
        return [e.actions for e in self.episodes]


def demo_seed(seed: int, task: str, index: int) -> int:
    state = streams.sequence(seed, streams.DEMOS, stable_hash32(task), index).generate_state(2)
    return int(state[0]) << 32 | int(state[1])


def collect(suite_id: str, task: str, n: int, *, seed: int, expert: str = "scripted",
            max_attempts: int | None = None, suite_options: dict[str, Any] | None = None) -> Demos:
    """Run ``expert`` until ``n`` successful episodes (at most ``max_attempts``, default 2n) are kept.
    ``suite_options``: environment options, e.g. ``{"obs": "pointcloud"}``."""
    suite = with_options(registry.suites.get(suite_id), suite_options or {})
    policy = build_policy(expert, {}, task, suite)
    env = build_env(suite, task, suite.task(task).max_steps)
    demos = Demos(suite_id, task, env_args=env.env_args() if hasattr(env, "env_args") else None)
    try:
        for i in range(max_attempts or 2 * n):
            if len(demos.episodes) >= n:
                break
            episode = _record(env, policy, demo_seed(seed, task, i), i)
            demos.attempted = i + 1
            if episode is not None:
                demos.episodes.append(episode)
    finally:
        env.close()
    return demos


def _record(env: TaskEnv, policy: Policy, ic_seed: int, index: int) -> Episode | None:
    """One expert episode; kept (returned) only when it succeeds. Environments that expose their
    simulator (``sim_state()``, ``model_xml()``) have its states and model recorded too."""
    obs, _ = env.reset(ic_seed, index)
    policy.reset(ic_seed, 0)
    has_state = hasattr(env, "sim_state")
    xml = env.model_xml() if hasattr(env, "model_xml") else None
    traj: dict[str, list[NDArray[Any]]] = {k: [v] for k, v in obs.items()}
    actions: list[NDArray[Any]] = []
    rewards: list[float] = []
    states: list[NDArray[Any]] = []
    for _ in range(env.info.max_steps):
        if hasattr(env, "sim_state"):
            states.append(env.sim_state())
        action = policy.act({k: v[None] for k, v in obs.items()}, np.array([0]))[0]
        result = env.step(action)
        obs = result.obs
        actions.append(action)
        rewards.append(result.reward)
        for k, v in obs.items():
            traj[k].append(v)
        if result.success:
            return Episode({k: np.stack(v) for k, v in traj.items()}, np.stack(actions), np.array(rewards), ic_seed,
                           np.stack(states) if has_state else None, xml)
    return None


def write_robomimic_hdf5(demos: Demos, path: Path) -> Path:
    """robomimic's dataset layout (see module docstring)."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    total = 0
    with fsio.atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        for i, ep in enumerate(demos.episodes):
            g = data.create_group(f"demo_{i}")
            steps = len(ep.actions)
            for key, values in ep.obs.items():
                g.create_dataset(f"obs/{key}", data=values[:-1])
                g.create_dataset(f"next_obs/{key}", data=values[1:])
            g.create_dataset("actions", data=ep.actions)
            g.create_dataset("states", data=ep.states)
            g.create_dataset("rewards", data=ep.rewards)
            dones = np.zeros(steps, dtype=np.int64)
            dones[-1] = 1  # episodes end on success
            g.create_dataset("dones", data=dones)
            g.attrs["num_samples"] = steps
            g.attrs["model_file"] = ep.model_xml
            g.attrs["ic_seed"] = str(ep.ic_seed)
            total += steps
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps(demos.env_args)
        names = [f"demo_{i}" for i in range(len(demos.episodes))]
        n_valid = max(1, len(names) // 10) if len(names) > 1 else 0
        f.create_dataset("mask/train", data=np.array(names[n_valid:], dtype="S"))
        f.create_dataset("mask/valid", data=np.array(names[:n_valid], dtype="S"))
    return path


def write_dp3_hdf5(demos: Demos, path: Path, obs_key: str = "state") -> Path:
    """DP3's fields for Meta-World: ``data/full_state`` (39-d), ``data/action``, ``meta/episode_ends``,
    and with point-cloud observations ``data/point_cloud`` (N, 512, 3) and ``data/state`` (agent_pos)."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    obs, actions = demos.stacked(obs_key)
    with fsio.atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("data/full_state", data=obs.astype(np.float32))
        if "point_cloud" in demos.episodes[0].obs:
            f.create_dataset("data/point_cloud", data=demos.stacked("point_cloud")[0].astype(np.float32),
                             compression="gzip")
            f.create_dataset("data/state", data=demos.stacked("agent_pos")[0].astype(np.float32))
        f.create_dataset("data/action", data=actions.astype(np.float32))
        f.create_dataset("meta/episode_ends", data=np.cumsum([len(e.actions) for e in demos.episodes]))
        f.attrs["suite"], f.attrs["task"] = demos.suite, demos.task
    return path
