"""Conformance checks for plugin authors, in the spirit of Gymnasium's ``check_env``:

    from evalsuite.testing import check_policy, check_suite
    check_suite("my-suite")                              # every task of a registered suite
    check_policy("my-policy", "metaworld-smoke", "pick-place", checkpoint="ckpt/")

Each raises ``ConformanceError`` naming what a plugin got wrong, before an evaluation would count it
as policy errors or infrastructure faults. evalsuite's own plugins are held to the same checks
(tests/test_metaworld.py, tests/test_mlp_bc.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuite import registry
from evalsuite.interfaces import Policy, TaskEnv, check_compatible


class ConformanceError(AssertionError):
    """A plugin does not keep the contract of evalsuite/interfaces.py."""


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise ConformanceError(what)


def check_suite(suite_id: str, tasks: list[str] | None = None) -> None:
    """Every task builds, its observations match its declared shapes, and an initial condition is a
    pure function of its seed: the same seed twice gives the same state and observation, another
    seed another state."""
    from evalsuite.runner.envs import build_env

    suite = registry.suites.get(suite_id)
    for task in tasks or suite.task_ids:
        env = build_env(suite, task, suite.task(task).max_steps)
        try:
            _require(isinstance(env, TaskEnv), f"{suite_id}/{task}: the environment lacks info, reset, step or close")
            obs1, init1 = env.reset(123, 0)
            env.step(np.zeros(env.info.action_dim))
            obs2, init2 = env.reset(123, 0)
            _, init3 = env.reset(124, 1)
            _require(init1 == init2, f"{suite_id}/{task}: reset(123, 0) twice gave two initial states")
            _require(init1 != init3, f"{suite_id}/{task}: two seeds gave the same initial state")
            for key, shape in env.info.obs_shapes.items():
                _require(key in obs1, f"{suite_id}/{task}: observation {key!r} is declared but not returned")
                _require(obs1[key].shape == tuple(shape),
                         f"{suite_id}/{task}: observation {key!r} has shape {obs1[key].shape}, declared {shape}")
                _require(bool(np.array_equal(obs1[key], obs2[key])),
                         f"{suite_id}/{task}: observation {key!r} differs between two resets with one seed")
            if hasattr(env, "reset_to_rand_vecs"):  # Meta-World: a recorded state restores the episode
                env.reset(999, 2)
                restored = env.reset_to_rand_vecs(init1["rand_vecs"])["state"]
                _require(bool(np.array_equal(restored, obs1["state"])),
                         f"{suite_id}/{task}: the recorded initial state does not restore the observation")
        finally:
            env.close()


def check_policy(policy_id: str, suite_id: str, task: str, **params: Any) -> None:
    """A policy fits its task, answers a batch with finite actions of the declared shape, has a
    fingerprint, and is reproducible: the same episode seed gives the same actions whatever batch
    or slot it runs in."""
    from evalsuite.harness import build_policy
    from evalsuite.runner.envs import build_env

    suite = registry.suites.get(suite_id)
    env = build_env(suite, task, 50)
    try:
        info = env.info
        obs = [env.reset(s, s)[0] for s in (1, 2, 3)]
    finally:
        env.close()
    p1, p2 = build_policy(policy_id, params, task, suite), build_policy(policy_id, params, task, suite)
    for name in ("requirements", "reset", "act", "fingerprint"):
        _require(hasattr(p1, name), f"policy {policy_id!r} has no {name!r} (see evalsuite/interfaces.py)")
    _require(isinstance(p1, Policy), f"policy {policy_id!r} does not implement the Policy protocol")
    check_compatible(policy_id, p1.requirements, info, task)
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
    _require(shape_ok, f"policy {policy_id!r} returned actions of shape {a.shape} for 3 rows; expected {expected} "
                       f"with action_dim {info.action_dim}")
    _require(bool(np.all(np.isfinite(a))), f"policy {policy_id!r} returned non-finite actions")
    b = np.asarray(p2.act({k: v[1:2] for k, v in batch.items()}, np.array([7])))
    _require(bool(np.allclose(a[1:2], b, rtol=1e-5, atol=1e-6)),
             f"policy {policy_id!r}: the episode seeded 11 acted differently alone in slot 7 than in a batch of 3 "
             "(keep per-slot state and seed it in reset)")
    _require(isinstance(p1.fingerprint(), str) and p1.fingerprint() == p2.fingerprint(),
             f"policy {policy_id!r}: fingerprint() must be a string, the same for the same weights and settings")
