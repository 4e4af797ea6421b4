"""Conformance checks for plugin authors, in the spirit of Gymnasium's ``check_env``:

    from evalsuite.testing import check_policy, check_suite
    check_suite("my-suite")                              # every task of a registered suite
    check_policy("my-policy", "metaworld-smoke", "pick-place", checkpoint="ckpt/")

Each raises ``ConformanceError`` naming what a plugin got wrong, before an evaluation would count it
as policy errors or infrastructure faults. evalsuite's own plugins are held to the same checks
(tests/test_metaworld.py, tests/test_mlp_bc.py). ``suite_problems`` and ``policy_problems`` return
every problem found instead, one line each (``evalsuite check-suite`` / ``check-policy`` print them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuite import registry
from evalsuite.errors import UsageError
from evalsuite.interfaces import EnvInfo, Observation, Policy, TaskEnv, check_compatible


class ConformanceError(AssertionError):
    """A plugin does not keep the contract of evalsuite/interfaces.py."""


class _Problems(list[str]):
    def require(self, condition: bool, what: str) -> bool:
        if not condition:
            self.append(what)
        return condition


def _raised(what: str, exc: Exception) -> str:
    return f"{what} raised {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"


def _raise_first(problems: list[str]) -> None:
    if problems:
        raise ConformanceError("; ".join(problems))


def check_suite(suite_id: str, tasks: list[str] | None = None) -> None:
    """Every task builds, its observations match its declared shapes, and an initial condition is a
    pure function of its seed: the same seed twice gives the same state and observation, another
    seed another state."""
    _raise_first(suite_problems(suite_id, tasks))


def suite_problems(suite_id: str, tasks: list[str] | None = None) -> list[str]:
    """What ``check_suite`` checks, as every problem found (empty: the suite conforms)."""
    suite = registry.suites.get(suite_id)
    problems = _Problems()
    for task in suite.select_tasks(tasks) if tasks else suite.task_ids:
        problems += _task_problems(suite_id, task)
    return problems


def _task_problems(suite_id: str, task: str) -> list[str]:
    from evalsuite.runner.envs import build_env

    suite, where, problems = registry.suites.get(suite_id), f"{suite_id}/{task}", _Problems()
    try:
        env = build_env(suite, task, suite.task(task).max_steps)
    except UsageError:
        raise
    except Exception as exc:  # a plugin's fault, reported as such
        return [_raised(f"{where}: building the environment", exc)]
    try:
        if not problems.require(isinstance(env, TaskEnv), f"{where}: the environment lacks info, reset, step or close"):
            return problems
        obs1, init1 = env.reset(123, 0)
        env.step(np.zeros(env.info.action_dim))
        obs2, init2 = env.reset(123, 0)
        _, init3 = env.reset(124, 1)
        problems.require(init1 == init2, f"{where}: reset(123, 0) twice gave two initial states")
        problems.require(init1 != init3, f"{where}: two seeds gave the same initial state")
        for key, shape in env.info.obs_shapes.items():
            if not problems.require(key in obs1, f"{where}: observation {key!r} is declared but not returned"):
                continue
            problems.require(obs1[key].shape == tuple(shape),
                             f"{where}: observation {key!r} has shape {obs1[key].shape}, declared {shape}")
            problems.require(bool(np.array_equal(obs1[key], obs2[key])),
                             f"{where}: observation {key!r} differs between two resets with one seed")
        if hasattr(env, "reset_to_rand_vecs"):  # Meta-World: a recorded state restores the episode
            env.reset(999, 2)
            restored = env.reset_to_rand_vecs(init1["rand_vecs"])["state"]
            problems.require(bool(np.array_equal(restored, obs1["state"])),
                             f"{where}: the recorded initial state does not restore the observation")
    except Exception as exc:
        problems.append(_raised(f"{where}: the environment", exc))
    finally:
        env.close()
    return problems


def check_policy(policy_id: str, suite_id: str, task: str, **params: Any) -> None:
    """A policy fits its task, answers a batch with finite actions of the declared shape, has a
    fingerprint, and is reproducible: the same episode seed gives the same actions whatever batch
    or slot it runs in."""
    _raise_first(policy_problems(policy_id, suite_id, task, **params))


def policy_problems(policy_id: str, suite_id: str, task: str, **params: Any) -> list[str]:
    """What ``check_policy`` checks, as every problem found (empty: the policy conforms). A problem
    that stops the rest (a policy that does not build, lacks a method or does not fit the task) is
    the last one listed."""
    from evalsuite.harness import build_policy
    from evalsuite.runner.envs import build_env

    suite = registry.suites.get(suite_id)
    env = build_env(suite, task, 50)
    try:
        info = env.info
        obs = [env.reset(s, s)[0] for s in (1, 2, 3)]
    finally:
        env.close()
    name, problems = f"policy {policy_id!r}", _Problems()
    try:
        p1, p2 = build_policy(policy_id, params, task, suite), build_policy(policy_id, params, task, suite)
    except UsageError:
        raise
    except Exception as exc:  # the plugin's fault: a refused task, a bad parameter
        return [_raised(f"{name}: building it for task {task!r}", exc)]
    missing = [m for m in ("requirements", "reset", "act", "fingerprint") if not hasattr(p1, m)]
    for method in missing:
        problems.append(f"{name} has no {method!r} (see evalsuite/interfaces.py)")
    if missing or not problems.require(isinstance(p1, Policy), f"{name} does not implement the Policy protocol"):
        return problems
    try:
        check_compatible(policy_id, p1.requirements, info, task)
    except UsageError as exc:
        return [str(exc)]
    try:
        _act_problems(name, p1, p2, obs, info, problems)
    except Exception as exc:
        problems.append(_raised(f"{name}: reset or act", exc))
    try:
        problems.require(isinstance(p1.fingerprint(), str) and p1.fingerprint() == p2.fingerprint(),
                         f"{name}: fingerprint() must be a string, the same for the same weights and settings")
    except Exception as exc:
        problems.append(_raised(f"{name}: fingerprint()", exc))
    return problems


def _act_problems(name: str, p1: Policy, p2: Policy, obs: list[Observation], info: EnvInfo,
                  problems: _Problems) -> None:
    """A batch of 3 answered with finite actions of the declared shape, and the episode of its
    second row acting the same alone in another slot."""
    steps = p1.requirements.n_obs_steps
    batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}
    if steps > 1:  # the last n observations, here the first one repeated
        batch = {k: np.repeat(v[:, None], steps, axis=1) for k, v in batch.items()}
    for slot in range(3):
        p1.reset(seed=10 + slot, slot=slot)
    p2.reset(seed=11, slot=7)
    a = np.asarray(p1.act(batch, np.arange(3)))
    chunked = p1.requirements.chunked
    expected = "(3, chunk, action_dim)" if chunked else "(3, action_dim)"
    shape_ok = a.ndim == (3 if chunked else 2) and a.shape[0] == 3 and a.shape[-1] == info.action_dim
    if not problems.require(shape_ok, f"{name} returned actions of shape {a.shape} for 3 rows; expected "
                                      f"{expected} with action_dim {info.action_dim}"):
        return
    problems.require(bool(np.all(np.isfinite(a))), f"{name} returned non-finite actions")
    b = np.asarray(p2.act({k: v[1:2] for k, v in batch.items()}, np.array([7])))
    problems.require(b.shape == a[1:2].shape and bool(np.allclose(a[1:2], b, rtol=1e-5, atol=1e-6)),
                     f"{name}: the episode seeded 11 acted differently alone in slot 7 than in a batch of 3 "
                     "(keep per-slot state and seed it in reset)")
