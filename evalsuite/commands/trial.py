"""`evalsuite trial`: a blind randomized trial of a task evalsuite does not simulate (a real robot's)."""

from __future__ import annotations

from pathlib import Path

from evalsuite.commands.options import Option, folder, integer, number, one_of, parse, parse_list
from evalsuite.errors import UsageError

OPTIONS = (
    Option("task", "the task file (TOML): task, instruction, [[initial_conditions]] text/photo, milestones, "
                   "failure_tags"),
    Option("policies", "[NAME:key=value,...]: each policy's name (hidden until unblinding) and the values run_cmd "
                       "reads, e.g. [a:checkpoint=/ckpt/a.pt,b:checkpoint=/ckpt/b.pt]", parse=parse_list),
    Option("mode", "command (run_cmd starts and stops each trial from the console) | router (the robot dials the "
                   "console's ws://HOST:PORT/robot and is forwarded to the trial's policy server, NAME:server=ws://...) | "
                   "manual (the operator runs the robot; a second person must choose the policy)", "command"),
    Option("run_cmd", "command: the command that runs one trial, with {seed}, {trial}, {ic} and the policies' "
                      "values, e.g. \"python rollout.py --ckpt {checkpoint} --seed {seed}\""),
    Option("repeats", "each initial condition this many times per policy", "1", integer(1, 1000)),
    Option("seed", "root seed of the order and the codes", "0", integer(0)),
    Option("stopping", "fixed | sequential (the console stops offering trials once every pair is decided, with "
                       "anytime-valid tests: see evaluate's stopping=sequential)", "fixed", one_of("fixed", "sequential")),
    Option("alpha", "stopping=sequential: error rate of the decisions, over all pairs and looks", "0.05",
           number(0.0, 1.0)),
    Option("round_size", "stopping=sequential: blocks (initial conditions) per round", "5", integer(1, 1000)),
    Option("out", "the run folder to create", parse=folder),
)


def run(args: list[str]) -> int:
    """Create the run folder; `evalsuite operator RUN` then serves its console."""
    from evalsuite import trial

    v = parse(args, OPTIONS)
    for key in ("task", "policies", "out"):
        if key not in v:
            raise UsageError(f"missing {key}=...; usage: evalsuite trial task=FILE.toml policies=[a:k=v,b:k=v] "
                             "run_cmd=\"...\" out=RUN")
    policies = [trial.parse_trial_policy(p) for p in v["policies"]]
    labels = [p.label for p in policies]
    if len(set(labels)) != len(labels):
        raise UsageError(f"the same policy name is listed twice: {labels}")
    from evalsuite.plan import Stopping

    stopping = (Stopping("sequential", alpha=v["alpha"], round_size=v["round_size"]) if v["stopping"] == "sequential"
                else trial.FIXED)
    plan = trial.create(v["out"], Path(v["task"]), policies, v["mode"], v.get("run_cmd", ""), v["repeats"], v["seed"],
                        stopping)
    print(f"{v['out']}: {len(plan.trials)} trials in {plan.episodes} blocks, codes {', '.join(plan.codes)}; "
          f"next: evalsuite operator {v['out']}")
    return 0
