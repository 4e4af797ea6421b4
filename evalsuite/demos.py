"""Expert demonstrations from a suite's own environments, and the files training code reads.

Demonstration initial conditions come from their own seed namespace, disjoint from the ones
evaluation plans draw, so a policy is never evaluated on the initial conditions it was trained on.
Only successful episodes are kept.

Writers: robomimic's HDF5 layout for robosuite tasks (``data/demo_i/{obs, next_obs, actions,
states, rewards, dones}``, ``model_file`` and ``num_samples`` per demo, ``env_args`` and ``total``
on ``data``), so robomimic's own dataset classes and training read it; and DP3's field layout
(``data/{full_state, action}``, ``meta/episode_ends``) in HDF5 for Meta-World; and a LeRobotDataset
(``format=lerobot``), written by LeRobot itself in its own environment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evalsuite import fsio, registry, streams
from evalsuite.errors import UsageError
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


# LeRobot: lerobot >= 0.5 needs Python >= 3.12, numpy >= 2 and torch < 2.12, none of which evalsuite's
# environment can have (numpy < 2 for robosuite's mink, torch 2.13), so LeRobot runs in its own environment
# (`nox -s lerobot_env`: .nox/lerobot) and is handed the demos in a plain .npz file (docs/lerobot.md).
LEROBOT_PYTHON_VARIABLE = "EVALSUITE_LEROBOT_PYTHON"
# what a LeRobotDataset records about each simulator: its control rate (Meta-World's render_fps) and its robot
LEROBOT_SIMULATORS = {"metaworld": (80, "sawyer"), "robosuite": (20, "panda")}


def lerobot_python(python: str = "") -> Path:
    """The LeRobot environment's interpreter: ``python``, else $EVALSUITE_LEROBOT_PYTHON, else the source
    checkout's .nox/lerobot; missing is one line saying how to build it."""
    source = "python=" if python else f"${LEROBOT_PYTHON_VARIABLE}" if os.environ.get(LEROBOT_PYTHON_VARIABLE) else ""
    candidate = Path(python or os.environ.get(LEROBOT_PYTHON_VARIABLE, "")
                     or Path(__file__).resolve().parents[1] / ".nox" / "lerobot" / "bin" / "python")
    if not candidate.is_file():
        where = f"{source} {candidate}" if source else f"{candidate} (the default)"
        raise UsageError(f"no LeRobot environment: {where} does not exist; build it with `nox -s lerobot_env` in "
                         f"evalsuite's source checkout, or give python=/path/to/env/bin/python with lerobot installed")
    return candidate


def lerobot_bridge(script: str) -> Path:
    """A script of policies/lerobot_bridge/ (run by the LeRobot environment's Python, never imported here)."""
    spec = importlib.util.find_spec("evalsuite_policies")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if (Path(folder) / "lerobot_bridge" / script).is_file():
            return Path(folder) / "lerobot_bridge" / script
    raise UsageError(f"lerobot_bridge/{script} is not installed beside evalsuite_policies ({', '.join(folders)})")


def write_lerobot_npz(demos: Demos, path: Path, obs_shapes: dict[str, tuple[int, ...]], *, fps: int,
                      robot_type: str, instruction: str, info: dict[str, Any], tasks: Sequence[str] = (),
                      extra: Mapping[str, NDArray[Any]] | None = None) -> Path:
    """The hand-over file for policies/lerobot_bridge/write_dataset.py: each step's observation under the
    names the remote policy client sends (evalsuite.wire.Layout, so a policy trained on it is served
    the same), its action, episode ends, and a JSON ``meta``. A state-only suite also asks for the state
    as ``observation.environment_state`` (ACT and Diffusion need an image or an environment state).
    ``tasks``: each episode's instruction where they differ (else ``instruction`` for all); ``extra``:
    further per-frame fields (name -> (N,) array of str, bool or float32), written as features of shape (1,)."""
    from evalsuite.wire import STATE, Layout

    layout = Layout.of(obs_shapes)
    if layout.other:
        raise UsageError(f"format=lerobot: observations {', '.join(layout.other)} have no LeRobot feature "
                         "(only state vectors and uint8 H x W x 3 camera images travel)")
    steps = [layout.encode({k: v[t] for k, v in ep.obs.items()}, instruction)
             for ep in demos.episodes for t in range(len(ep.actions))]
    arrays = {name: np.stack([s[name] for s in steps]) for name in steps[0] if name != "task"}
    arrays["action"] = np.concatenate(demos.actions).astype(np.float32)
    if tasks:
        arrays["task"] = np.repeat(np.asarray(list(tasks), dtype=np.str_), [len(a) for a in demos.actions])
    extra = dict(extra or {})
    arrays.update(extra)
    names = {STATE: [f"{key}_{i}" if size > 1 else key for key, size in layout.state for i in range(size)],
             "action": [f"action_{i}" for i in range(arrays["action"].shape[1])]}
    meta = {"fps": fps, "task": instruction, "robot_type": robot_type, "names": names,
            "environment_state": not layout.images, "info": info,
            "extra": {name: "string" if v.dtype.kind == "U" else str(v.dtype) for name, v in extra.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with fsio.atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, meta=np.array(json.dumps(meta)), episode_ends=np.cumsum([len(a) for a in demos.actions]),
                 **arrays)
    return path


def write_lerobot_dataset(demos: Demos, out: Path, obs_shapes: dict[str, tuple[int, ...]], *, fps: int,
                          robot_type: str, instruction: str, info: dict[str, Any], python: str = "",
                          tasks: Sequence[str] = (), extra: Mapping[str, NDArray[Any]] | None = None,
                          repo_id: str = "") -> dict[str, Any]:
    """``out`` written as a LeRobotDataset by LeRobot's own writer in the LeRobot environment; returns the
    writer's summary (episodes, frames, codebase_version). ``tasks``, ``extra``: as ``write_lerobot_npz``."""
    interpreter, script = lerobot_python(python), lerobot_bridge("write_dataset.py")
    with tempfile.TemporaryDirectory(prefix="evalsuite-lerobot-") as tmp:
        npz = write_lerobot_npz(demos, Path(tmp) / "demos.npz", obs_shapes, fps=fps, robot_type=robot_type,
                                instruction=instruction, info=info, tasks=tasks, extra=extra)
        done = subprocess.run([str(interpreter), str(script), str(npz), str(out), "--repo-id",
                               repo_id or f"evalsuite/{demos.suite}-{demos.task}"], capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["(no message)"]
        raise UsageError(f"format=lerobot: LeRobot's writer ({interpreter}) failed: {lines[-1][:300]}")
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary
