"""A stand-in for a real robot in the operator-console test: runs one Meta-World drawer-open episode
with an evalsuite policy (the hidden key's value) and writes what "happened" for the operator to
read: success and the furthest milestone reached. The console starts it from run_cmd."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

MILESTONES = ("reached", "moved", "halfway")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policy", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--ic", type=int, required=True)
    parser.add_argument("--trial", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()

    from evalsuite import registry
    from evalsuite.harness import build_policy
    from evalsuite.runner.envs import build_env

    suite = registry.suites.get("metaworld-smoke")
    policy = build_policy(args.policy, {}, "drawer-open", suite)
    env = build_env(suite, "drawer-open", args.steps)
    obs, _ = env.reset(1000 + args.ic, args.ic)
    policy.reset(args.seed % 2**32, 0)
    success, reached = False, set()
    for _ in range(args.steps):
        action = np.asarray(policy.act({k: v[None] for k, v in obs.items()}, np.array([0])))[0]
        result = env.step(action)
        obs, success = result.obs, result.success
        reached |= {m for m, held in result.milestones.items() if held}
        if success:
            break
    furthest = max((i for i, m in enumerate(MILESTONES) if m in reached), default=-1)
    out = Path(args.out) / (args.trial.replace("/", "_") + ".json")
    out.write_text(json.dumps({"success": bool(success), "furthest": furthest}))


if __name__ == "__main__":
    main()
