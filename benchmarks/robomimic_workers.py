"""robosuite is the bottleneck on robomimic's tasks: steps/s of the runner with the scripted expert
with environments in-process, in 1 worker process and in 2, on the same episodes, side by side.

    python benchmarks/robomimic_workers.py [--episodes 8]
"""

from __future__ import annotations

import argparse
import time

from evalsuite import registry
from evalsuite.harness import PolicyBuilder
from evalsuite.plan import PolicyEntry, make_plan
from evalsuite.runner import LocalExecutor, RunContext


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    suite = registry.suites.get("robomimic")
    print(f"{'task':<6} {'environments':<16} {'episodes/s':>10} {'steps/s':>8} {'vs in-process':>14}")
    for task in ("lift", "can"):
        plan, key = make_plan(suite="robomimic", tasks=[task], policies=[PolicyEntry("scripted", {})],
                              episodes=args.episodes, seed=0, max_steps={task: 400})
        base = None
        for workers in (0, 1, 2):
            ctx = RunContext(suite=suite, max_steps=plan.max_steps, make_policy=PolicyBuilder(suite, key))
            records = []
            with LocalExecutor(batch_size=args.batch_size, env_workers=workers) as executor:
                executor.warm_up(ctx, [task])
                t0 = time.perf_counter()
                executor.run(plan.trials, ctx, records.append)
                elapsed = time.perf_counter() - t0
            steps = sum(r.steps for r in records)
            base = base or elapsed
            name = "in-process" if workers == 0 else f"{workers} worker" + ("s" if workers > 1 else "")
            print(f"{task:<6} {name:<16} {len(records) / elapsed:>10.2f} {steps / elapsed:>8.0f} "
                  f"{base / elapsed:>13.2f}x")
    print("(episodes include robosuite's hard reset, ~0.7 s, which reloads the model as robomimic does)")


if __name__ == "__main__":
    main()
