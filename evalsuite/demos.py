"""Expert demonstrations from a suite's own environments, for training the built-in policies.

Demonstration initial conditions come from their own seed namespace, disjoint from the ones
evaluation plans draw, so a policy is never evaluated on the initial conditions it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalsuite import registry
from evalsuite.plan import stable_hash32
from evalsuite.runner.envs import build_env
from evalsuite.specs import load_entry_point


@dataclass
class Demos:
    """Successful expert episodes: per episode, observations (T, D) and actions (T, A)."""

    obs: list[dict[str, np.ndarray]]
    actions: list[np.ndarray]
    ic_seeds: list[int]
    attempted: int

    def stacked(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([o[key] for o in self.obs]), np.concatenate(self.actions)


def demo_seed(seed: int, task: str, index: int) -> int:
    state = np.random.SeedSequence(seed, spawn_key=(4, stable_hash32(task), index)).generate_state(2)
    return int(state[0]) << 32 | int(state[1])


def collect(suite_id: str, task: str, n: int, *, seed: int, expert: str = "scripted",
            max_attempts: int | None = None) -> Demos:
    """Run ``expert`` until ``n`` successful episodes (at most ``max_attempts``, default 2n) are kept."""
    suite = registry.suites.get(suite_id)
    spec = registry.policies.get(expert)
    policy = load_entry_point(spec.entry_point)(suite.task(task), suite, **spec.params)
    env = build_env(suite, task, suite.task(task).max_steps)
    demos = Demos([], [], [], 0)
    try:
        for i in range(max_attempts or 2 * n):
            if len(demos.actions) >= n:
                break
            ic = demo_seed(seed, task, i)
            obs, _ = env.reset(ic, i)
            policy.reset(ic, 0)
            keys = list(obs)
            traj = {k: [] for k in keys}
            acts = []
            for _ in range(env.info.max_steps):
                action = policy.act({k: v[None] for k, v in obs.items()}, np.array([0]))[0]
                for k in keys:
                    traj[k].append(obs[k])
                acts.append(action)
                result = env.step(action)
                obs = result.obs
                if result.success:
                    demos.obs.append({k: np.stack(v) for k, v in traj.items()})
                    demos.actions.append(np.stack(acts))
                    demos.ic_seeds.append(ic)
                    break
            demos.attempted = i + 1
    finally:
        env.close()
    return demos
