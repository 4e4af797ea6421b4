"""robosuite is the bottleneck on robomimic's tasks: the runner with the scripted expert against the
simulator alone, on the same episodes, side by side in one run.

Rows: the simulator alone in one process (resets included: the limit of one core), lock-step with
environments in-process and in 2 environment workers, and whole episodes in 2 worker processes;
each as a ratio to the machine's limit (cores x the one-process simulator rate; goal >= 0.7x).

    python benchmarks/robomimic_workers.py [--episodes 8]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from evalsuite import registry
from evalsuite.harness import PolicyBuilder
from evalsuite.plan import PolicyEntry, make_plan
from evalsuite.runner import LocalExecutor, RunContext
from evalsuite.runner.envs import build_env
from evalsuite.runner.parallel import ProcessExecutor


def simulator_alone(suite, task, records) -> float:
    env = build_env(suite, task, 400)
    action = np.zeros(env.info.action_dim)
    t0 = time.perf_counter()
    for r in records:
        env.reset(r.ic_seed, r.ic_index)
        for _ in range(r.steps):
            env.step(action)
    env.close()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    suite = registry.suites.get("robomimic")
    cores = min(2, os.cpu_count() or 1)
    print(f"{'task':<6} {'configuration':<28} {'episodes/s':>10} {'steps/s':>8} {'vs machine limit':>17}")
    for task in ("lift", "can"):
        plan, key = make_plan(suite="robomimic", tasks=[task], policies=[PolicyEntry("scripted", {})],
                              episodes=args.episodes, seed=0, max_steps={task: 400})
        rows = []
        for name, make in (("lock-step, in-process", lambda: LocalExecutor(args.batch_size, 0)),
                           ("lock-step, 2 env workers", lambda: LocalExecutor(args.batch_size, 2)),
                           ("2 whole-episode workers", lambda: ProcessExecutor(2, batch_size=4))):
            ctx = RunContext(suite=suite, max_steps=plan.max_steps, make_policy=PolicyBuilder(suite, key))
            records = []
            with make() as executor:
                if isinstance(executor, LocalExecutor):
                    executor.warm_up(ctx, [task])
                else:  # enough chunks that every worker builds its environment and policy first
                    executor.run(list(plan.trials[:1]) * 16, ctx, lambda r: None)
                t0 = time.perf_counter()
                executor.run(plan.trials, ctx, records.append)
                rows.append((name, records, time.perf_counter() - t0))
        t_sim = simulator_alone(suite, task, rows[0][1])
        steps = sum(r.steps for r in rows[0][1])
        limit = cores * steps / t_sim
        print(f"{task:<6} {'simulator alone, 1 process':<28} {len(rows[0][1]) / t_sim:>10.2f} {steps / t_sim:>8.0f} "
              f"{'(limit ' + format(limit, '.0f') + ' steps/s)':>17}")
        for name, records, elapsed in rows:
            s = sum(r.steps for r in records)
            print(f"{task:<6} {name:<28} {len(records) / elapsed:>10.2f} {s / elapsed:>8.0f} "
                  f"{s / elapsed / limit:>16.2f}x")
    print("(episodes include robosuite's hard reset, as robomimic does; compiled models are cached per model text)")


if __name__ == "__main__":
    main()
