"""The cost of serving a policy: dp3 on Meta-World drawer-open in-process against the same dp3
behind `evalsuite serve` on loopback (``policies=[remote:ws://127.0.0.1:P]``), the same plan (seed,
episodes), the same executor settings (lock-step, batch_size, env_workers=0, cpus=1), in one run.

Configurations, by what each gets (cores pinned with taskset where the machine has two):

- in-process, 1 core: one process (simulator + dp3, 1 inference thread) on core 0.
- remote, same 1 core: `evalsuite evaluate ... cpus=1` and `evalsuite serve ... threads=1` both on
  core 0 - two processes, the same total CPU as in-process; the overhead of the protocol itself.
- remote, server on its own core: the evaluator on core 0, the server on core 1 - two cores against
  in-process's one, the setup the protocol is for (simulators here, the policy elsewhere).

(In-process with cpus=2 - two inference threads - is left out: on a machine whose other core is
busy its threads wait on each other, 0.03-0.07 episodes/s against 1.4 with one thread here.)

Each configuration runs ``--repeats`` times, the configurations in turn (a load that drifts hits
them alike), and the best round of each is compared. Prints episodes/s of the execution phase
(run_info.json: workers started, policies built, every episode played; not the report) and the
command's wall time, the ratios remote / in-process (goal >= 0.8x at the same cores), and whether
every episode's status and steps agreed across runs.

    python benchmarks/remote.py [--episodes 12] [--batch-size 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE, TASK, POLICY = "metaworld-smoke", "drawer-open", "dp3"


def pinned(cores: str | None) -> list[str]:
    return ["taskset", "-c", cores] if cores and shutil.which("taskset") else []


class Served:
    """`evalsuite serve` in its own process (on ``cores``), stopped on exit."""

    def __init__(self, cores: str | None) -> None:
        command = [*pinned(cores), sys.executable, "-m", "evalsuite", "serve", f"policy={POLICY}", f"suite={SUITE}",
                   f"task={TASK}", "port=0", "threads=1"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if " at ws://" not in line:
            raise SystemExit(f"evalsuite serve did not start: {line}{self.process.communicate()[0]}")
        self.url = line.split(" at ")[1].split()[0]

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.communicate(timeout=30)


def evaluate(policy: str, out: Path, args: argparse.Namespace, cpus: int, cores: str | None) -> dict:
    """One `evalsuite evaluate` run (on ``cores``): its figures and every episode's outcome."""
    command = [*pinned(cores), sys.executable, "-m", "evalsuite", "evaluate", f"suite={SUITE}", f"tasks=[{TASK}]",
               f"policies=[{policy}]", f"episodes={args.episodes}", "seed=0", f"cpus={cpus}",
               f"batch_size={args.batch_size}", "env_workers=0", "video=none", "tracking_uri=none", "progress=false",
               f"out={out}"]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    info = json.loads((out / "run_info.json").read_text())
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    outcomes = {(r["ic_index"], r["ic_seed"], r["policy_seed"]): (r["status"], r["steps"]) for r in records}
    return {"eps": info["episodes_per_s"], "exec_s": info["wall_time_s"], "wall_s": wall,
            "episodes": info["episodes_run"], "steps": sum(r["steps"] for r in records), "outcomes": outcomes,
            "parallelism": info["parallelism"]}


def remote(args: argparse.Namespace, out: Path, server_cores: str | None, client_cores: str | None) -> dict:
    with Served(server_cores) as server:
        return evaluate(f"remote:{server.url}", out, args, 1, client_cores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=12, help="initial conditions of drawer-open")
    parser.add_argument("--batch-size", type=int, default=4, help="parallel episodes (lock-step), both runs")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the configurations; the best of each shown")
    args = parser.parse_args()
    two = len(os.sched_getaffinity(0)) >= 2 and shutil.which("taskset") is not None
    core0 = "0" if two else None
    configs = {
        "in-process, 1 core": lambda out: evaluate(POLICY, out, args, 1, core0),
        "remote, same 1 core (client + server)": lambda out: remote(args, out, core0, core0),
    }
    if two:
        configs["remote, server on its own core"] = lambda out: remote(args, out, "1", "0")
    print(f"dp3 on {SUITE}/{TASK}, {args.episodes} episodes, seed 0, lock-step batch_size={args.batch_size}, "
          f"env_workers=0; {args.repeats} round(s) over the configurations in turn, the best of each shown; "
          f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
          f"{'' if two else ' (one core available: no pinning, no two-core rows)'}\n")
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeats):
            for i, (name, run) in enumerate(configs.items()):
                runs[name].append(run(Path(tmp) / f"{round_}-{i}"))
    best = {name: max(rs, key=lambda r: r["eps"]) for name, rs in runs.items()}
    print(f"{'configuration':<40} {'episodes/s':>10} {'steps/s':>8} {'execution':>10} {'command':>9}  every round")
    for name, r in best.items():
        rounds = ", ".join(f"{x['eps']:.3f}" for x in runs[name])
        print(f"{name:<40} {r['eps']:>10.3f} {r['steps'] / r['exec_s']:>8.1f} {r['exec_s']:>9.1f}s {r['wall_s']:>8.1f}s"
              f"  {rounds}")
    local = best["in-process, 1 core"]
    print("\nratio remote / in-process (best episodes/s; goal >= 0.8x):")
    print(f"  same 1 core:                 {best['remote, same 1 core (client + server)']['eps'] / local['eps']:.2f}x")
    if two:
        own = best["remote, server on its own core"]["eps"]
        print(f"  server on its own core:      {own / local['eps']:.2f}x (two cores against one)")
    every = [r for rs in runs.values() for r in rs]
    agree = all(r["outcomes"] == local["outcomes"] for r in every)
    successes = sum(status == "success" for status, _ in local["outcomes"].values())
    print(f"\nevery episode's status and steps agreed across all {len(every)} runs: {agree} "
          f"({len(local['outcomes'])} episodes, {successes} successes, {local['steps']} steps each run)")
    if not agree:
        for name, rs in runs.items():
            for r in rs:
                print(f"  {name}: {sorted(r['outcomes'].items())}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
