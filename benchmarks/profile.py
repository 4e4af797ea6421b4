"""Where a run's time goes, and how near it comes to the machine's limit: ``evalsuite evaluate`` with
the defaults of metaworld-smoke and robomimic as a user types it (default episodes, videos and
MLflow on - here a SQLite store in a temporary folder), then per run

- the command's wall time, the episodes' wall time and the videos' (run_info.json), and the videos'
  overhead: the wall time / the wall time without the video phase (goal <= 1.15x);
- the time split from run_info.json (simulator steps, resets, policy inference, the rest; summed
  over the workers, as fractions of workers x the episodes' wall time) and per policy its
  inference time per simulator step;
- the simulator steps (the journal's) and the ratio steps / (cores x the suite's simulator steps
  per second measured alone, in this script, in one process: the same episodes' initial
  conditions, zero actions, the same step counts up to ``--sim-steps``, resets included) - the
  fraction of the machine's limit (goal >= 0.6x), over the command and over the episodes alone.

    python benchmarks/profile.py [--smoke-episodes N] [--robomimic-episodes N] [--sim-steps 2000] [--video sample]
        [--tracking on|off] [--suites metaworld-smoke,robomimic]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from evalsuite import plan as plan_mod
from evalsuite import registry
from evalsuite.journal import read
from evalsuite.runner.envs import build_env

PARTS = {"simulator_s": "simulator", "inference_s": "inference", "reset_s": "resets", "build_s": "env builds",
         "other_s": "other"}


def evaluate(suite: str, episodes: int | None, video: str, tracking: str, out: Path) -> tuple[float, list[str]]:
    """The command's wall time and its console's time line."""
    started = time.perf_counter()
    args = [f"suite={suite}", f"video={video}", f"tracking_uri={tracking}", "progress=false", f"out={out}"]
    done = subprocess.run([sys.executable, "-m", "evalsuite", "evaluate", *args,
                           *([f"episodes={episodes}"] if episodes else [])], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"evalsuite evaluate suite={suite} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return wall, [line for line in done.stdout.splitlines() if line.startswith("time: ")]


def simulator_alone(suite_id: str, out: Path, max_total: int) -> tuple[float, int]:
    """(steps per second, steps measured): the run's episodes replayed with zero actions in this
    process, tasks interleaved, until ``max_total`` steps."""
    suite = registry.suites.get(suite_id)
    plan, _ = plan_mod.load(out)
    by_task: dict[str, list[tuple[int, int, int]]] = {}
    for r in read(out / "episodes.jsonl"):
        if r.steps:
            by_task.setdefault(r.task, []).append((r.ic_seed, r.ic_index, r.steps))
    envs = {task: build_env(suite, task, plan.max_steps[task]) for task in by_task}
    per_task = [[(task, *e) for e in v] for task, v in by_task.items()]
    steps, elapsed = 0, 0.0
    for task, ic_seed, ic_index, n in [e for group in zip(*per_task, strict=False) for e in group]:  # tasks in turn
        env = envs[task]
        action = np.zeros(env.info.action_dim)
        started = time.perf_counter()
        env.reset(ic_seed, ic_index)
        for _ in range(n):
            env.step(action)
        elapsed += time.perf_counter() - started
        steps += n
        if steps >= max_total:
            break
    for env in envs.values():
        env.close()
    return steps / elapsed, steps


def report(suite: str, out: Path, wall: float, console: list[str], max_sim_steps: int) -> None:
    info = json.loads((out / "run_info.json").read_text())
    split, cores = info["time"], info["parallelism"].get("cpus") or os.cpu_count() or 1
    _, key = plan_mod.load(out)
    records = read(out / "episodes.jsonl")
    steps = sum(r.steps for r in records)
    rate, measured = simulator_alone(suite, out, max_sim_steps)
    total = sum(split[k] for k in PARTS) or 1.0
    print(f"\n{suite}: {len(records)} episodes, {info['parallelism'].get('executor')} "
          f"(workers={split['workers']}, cpus={cores})")
    videos = info.get("video_time_s") or 0.0
    print(f"  wall: {wall:.1f} s the command, {split['wall_s']:.1f} s the episodes, {videos:.1f} s the videos "
          f"({len(list((out / 'videos').glob('*.mp4')))} videos): videos x{wall / (wall - videos):.2f} "
          "the wall time without them (goal <= 1.15x)")
    print("  time: " + ", ".join(f"{100 * split[k] / total:.0f}% {name} ({split[k]:.1f} s)" for k, name in PARTS.items())
          + f"  [of {split['workers']} x {split['wall_s']:.1f} s; inside the executors: {split['running_s']:.1f} s]")
    per_code: dict[str, int] = {}
    for r in records:
        per_code[r.policy_code] = per_code.get(r.policy_code, 0) + r.steps
    sim_per_step = split["simulator_s"] / max(1, steps)
    for code, n in sorted(per_code.items()):
        inf = split["inference_s_by_code"].get(code, 0.0)
        print(f"    {key.label(code):<16} {n:>7} steps  inference {inf:7.1f} s = {1e3 * inf / max(1, n):6.2f} ms/step "
              f"({inf / max(1e-9, sim_per_step * n):.2f}x its simulator time)")
    print(f"  simulator alone: {rate:.0f} steps/s in one process ({measured} steps, zero actions, resets included)")
    print(f"  simulator steps: {steps}; {steps / wall:.0f} steps/s over the command = "
          f"{steps / wall / (cores * rate):.2f}x the machine's limit ({cores} x {rate:.0f}; goal >= 0.6x), "
          f"{steps / split['wall_s'] / (cores * rate):.2f}x over the episodes alone")
    print("  console: " + " | ".join(console))  # evaluate's own line: the same split, rounded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke-episodes", type=int, default=None, help="default: the suite's (20)")
    parser.add_argument("--robomimic-episodes", type=int, default=None, help="default: the suite's (40)")
    parser.add_argument("--sim-steps", type=int, default=2000, help="simulator steps measured alone, at most")
    parser.add_argument("--video", default="sample")
    parser.add_argument("--tracking", choices=("on", "off"), default="on", help="on: MLflow, a SQLite store here")
    parser.add_argument("--suites", default="metaworld-smoke,robomimic")
    args = parser.parse_args()
    episodes = {"metaworld-smoke": args.smoke_episodes, "robomimic": args.robomimic_episodes}
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; video={args.video}, "
          f"MLflow {args.tracking}")
    with tempfile.TemporaryDirectory() as tmp:
        tracking = f"sqlite:///{tmp}/mlflow.db" if args.tracking == "on" else "none"
        for suite in args.suites.split(","):
            out = Path(tmp) / suite
            wall, console = evaluate(suite, episodes.get(suite), args.video, tracking, out)
            report(suite, out, wall, console, args.sim_steps)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
