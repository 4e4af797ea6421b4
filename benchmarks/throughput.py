"""Runner throughput on Meta-World, measured side by side in one run.

Prints episodes/s for:
  * the simulator alone (env.step with fixed actions, the same episodes and step counts) in one
    process, and the machine's limit: N processes x that rate;
  * the runner with the scripted expert: lock-step in-process, lock-step with 2 environment
    workers, whole episodes in 2 worker processes, and Ray with 1 and 2 actors, each as a ratio to
    the machine's limit (goal: >= 0.7x);
  * an inference-dominated policy (the shipped dp3, 10 network evaluations a chunk): lock-step
    batches, whole-episode workers, and Ray environment actors with one policy server batching
    their requests; then the configuration this machine should use for each kind of policy;
  * a torch MLP behavior-cloning policy, batched by the runner vs a sequential
    one-episode-at-a-time loop (the way robomimic and DP3 evaluate) on the same initial conditions
    (goal: batched >= 3x sequential), for MLPs from small (inference ~0.1 ms, the simulator
    dominates) to large (inference of several ms, as with real diffusion policies).

    python benchmarks/throughput.py [--episodes 16] [--tasks drawer-open,pick-place] [--dp3-episodes 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from evalsuite import registry
from evalsuite.demos import collect
from evalsuite.harness import PolicyBuilder
from evalsuite.plan import PolicyEntry, make_plan
from evalsuite.runner import LocalExecutor, RunContext
from evalsuite.runner.envs import build_env
from evalsuite_policies.mlp_bc import MLPBCPolicy, MLPConfig, save, train_bc


def run_executor(suite, plan, key, batch_size, env_workers):
    """Steady-state throughput: policies and environments are built before the clock starts."""
    records = []
    ctx = RunContext(suite=suite, max_steps=plan.max_steps, make_policy=PolicyBuilder(suite, key))
    for code in plan.codes:
        for task in plan.tasks:
            ctx.make_policy(code, task)
    with LocalExecutor(batch_size=batch_size, env_workers=env_workers) as executor:
        executor.warm_up(ctx, plan.tasks)
        t0 = time.perf_counter()
        executor.run(plan.trials, ctx, records.append)
        return records, time.perf_counter() - t0


def run_parallel(suite, plan, key, executor):
    """Whole-episode executors; one episode per task and worker first, so every worker has built
    its environments and policies before the clock starts."""
    ctx = RunContext(suite=suite, max_steps=plan.max_steps, make_policy=PolicyBuilder(suite, key))
    warm = [next(t for t in plan.trials if t.task == task) for task in plan.tasks] * 8
    with executor:
        executor.run(warm, ctx, lambda r: None)
        records = []
        t0 = time.perf_counter()
        executor.run(plan.trials, ctx, records.append)
        return records, time.perf_counter() - t0


def simulator_alone(suite, records):
    envs = {t: build_env(suite, t, 500) for t in {r.task for r in records}}
    action = np.zeros(4)
    t0 = time.perf_counter()
    for r in records:
        env = envs[r.task]
        env.reset(r.ic_seed, r.ic_index)
        for _ in range(r.steps):
            env.step(action)
    return time.perf_counter() - t0


def sequential(suite, plan, policy: MLPBCPolicy):
    """One episode at a time, batch of one per step: the usual evaluation loop."""
    envs = {t: build_env(suite, t, 500) for t in plan.tasks}
    successes = 0
    t0 = time.perf_counter()
    for trial in plan.trials:
        env = envs[trial.task]
        obs, _ = env.reset(trial.ic_seed, trial.ic_index)
        policy.reset(trial.policy_seed, 0)
        for _ in range(plan.max_steps[trial.task]):
            action = policy.act({k: v[None] for k, v in obs.items()}, np.array([0]))[0]
            result = env.step(action)
            obs = result.obs
            if result.success:
                successes += 1
                break
    return time.perf_counter() - t0, successes


def inference_dominated(suite, tasks, episodes, batch_size) -> str:
    """dp3 (10 NFE) under each executor; returns the fastest configuration's name."""
    from evalsuite.runner.parallel import ProcessExecutor

    plan, key = make_plan(suite="metaworld", tasks=tasks, policies=[PolicyEntry("dp3", {})], episodes=episodes,
                          seed=0, max_steps={t: 500 for t in tasks})
    n = len(plan.trials)
    timed = {}
    recs, t = run_executor(suite, plan, key, batch_size, 0)
    timed[f"lock-step batch_size={batch_size}"] = t
    _, timed["workers=2 batch_size=4"] = run_parallel(suite, plan, key, ProcessExecutor(2, batch_size=4, threads=1))
    try:
        from evalsuite.runner.ray_executor import RayExecutor

        for workers in (1, 2):
            executor = RayExecutor(None, workers, batch_size=4, inference_actors=1)
            _, timed[f"executor=ray workers={workers} inference_actors=1 batch_size=4"] = run_parallel(
                suite, plan, key, executor)
    except ImportError:
        pass
    steps = sum(r.steps for r in recs)
    print(f"dp3 (10 NFE), {n} episodes ({steps} steps, {sum(r.success for r in recs)} successes):")
    for name, t in timed.items():
        print(f"  {name:<58} {n / t:>6.2f} episodes/s {steps / t:>7.0f} steps/s")
    return min(timed, key=timed.get)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=16, help="initial conditions per task")
    parser.add_argument("--tasks", default="drawer-open,pick-place")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dp3-episodes", type=int, default=6, help="initial conditions per task for dp3")
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    suite = registry.suites.get("metaworld")
    print(f"torch threads: {torch.get_num_threads()}; tasks: {tasks}; {args.episodes} episodes per task\n")

    plan, key = make_plan(suite="metaworld", tasks=tasks, policies=[PolicyEntry("scripted", {})],
                          episodes=args.episodes, seed=0, max_steps={t: 500 for t in tasks})
    n = len(plan.trials)
    rows = []
    scripted_records, t_scripted = run_executor(suite, plan, key, args.batch_size, 0)
    t_sim = simulator_alone(suite, scripted_records)
    steps = sum(r.steps for r in scripted_records)
    rows.append(("simulator alone (same episodes, fixed actions)", n / t_sim, steps / t_sim))
    rows.append((f"runner, scripted, batch {args.batch_size}, in-process", n / t_scripted, steps / t_scripted))
    _, t_scripted_w = run_executor(suite, plan, key, args.batch_size, 2)
    rows.append((f"runner, scripted, batch {args.batch_size}, 2 env workers", n / t_scripted_w, steps / t_scripted_w))
    from evalsuite.runner.parallel import ProcessExecutor

    timed = {"in-process": (1, t_scripted), "2 env workers": (2, t_scripted_w)}
    _, t = run_parallel(suite, plan, key, ProcessExecutor(2, batch_size=1))
    rows.append(("runner, scripted, 2 worker processes (whole episodes)", n / t, steps / t))
    timed["2 worker processes"] = (2, t)
    try:
        from evalsuite.runner.ray_executor import RayExecutor

        for workers in (1, 2):
            _, t = run_parallel(suite, plan, key, RayExecutor(None, workers, batch_size=1))
            rows.append((f"runner, scripted, Ray, {workers} actor(s)", n / t, steps / t))
            timed[f"Ray {workers} actor(s)"] = (workers, t)
    except ImportError:
        print("(Ray not installed: pip install 'evalsuite[ray]')")
    print(f"{'configuration':<58} {'episodes/s':>10} {'steps/s':>9}")
    for name, eps, sps in rows:
        print(f"{name:<58} {eps:>10.2f} {sps:>9.0f}")
    cores = min(2, __import__("os").cpu_count() or 1)
    print(f"machine's simulator limit: {cores} x {steps / t_sim:.0f} = {cores * steps / t_sim:.0f} steps/s")
    print("ratio to the limit of the processes used (N x one simulator process) and to the machine's:")
    for name, (procs, t) in timed.items():
        print(f"  {name:<22} {t_sim / t / min(procs, cores):.2f}x of {min(procs, cores)} process(es), "
              f"{t_sim / t / cores:.2f}x of the machine  (goal >= 0.7x)")
    print()
    as_keys = {"in-process": "env_workers=0", "2 env workers": "env_workers=2", "2 worker processes": "workers=2",
               "Ray 1 actor(s)": "executor=ray workers=1", "Ray 2 actor(s)": "executor=ray workers=2"}
    cheap = as_keys[min(timed, key=lambda name: timed[name][1])]
    expensive = inference_dominated(suite, tasks, args.dp3_episodes, args.batch_size)
    print(f"suggested on this machine: cheap policies (scripted, small MLPs): {cheap}; "
          f"inference-dominated (dp3): {expensive}\n")

    obs, actions = [], []
    for task in tasks:
        demos = collect("metaworld", task, 10, seed=0)
        o, a = demos.stacked("state")
        obs.append(o)
        actions.append(a)
    obs, actions = np.concatenate(obs), np.concatenate(actions)
    with tempfile.TemporaryDirectory() as tmp:
        for hidden, epochs in (([256, 256], 15), ([1024, 1024, 1024], 15), ([2048, 2048, 2048], 4)):
            cfg = MLPConfig("state", 39, 4, hidden, ",".join(tasks))
            model, _ = train_bc(obs, actions, cfg, seed=0, epochs=epochs)
            path = save(model, cfg, Path(tmp) / "x".join(map(str, hidden)))
            mlp_plan, mlp_key = make_plan(suite="metaworld", tasks=tasks,
                                          policies=[PolicyEntry("mlp-bc", {"path": str(path)})],
                                          episodes=args.episodes, seed=0, max_steps={t: 500 for t in tasks})
            t_seq, seq_succ = sequential(suite, mlp_plan, MLPBCPolicy(path))
            recs, t_batch = run_executor(suite, mlp_plan, mlp_key, args.batch_size, 0)
            recs_w, t_batch_w = run_executor(suite, mlp_plan, mlp_key, args.batch_size, 2)
            m = len(mlp_plan.trials)
            name = f"MLP {'x'.join(map(str, hidden))}"
            print(f"{name}: sequential {m / t_seq:.2f} ep/s ({seq_succ}/{m} successes); "
                  f"batched {args.batch_size} in-process {m / t_batch:.2f} ep/s "
                  f"({sum(r.success for r in recs)}/{m}); batched + 2 env workers {m / t_batch_w:.2f} ep/s "
                  f"({sum(r.success for r in recs_w)}/{m})")
            print(f"  ratio batched / sequential: in-process {t_seq / t_batch:.2f}x, "
                  f"2 env workers {t_seq / t_batch_w:.2f}x  (goal >= 3x)")


if __name__ == "__main__":
    main()
