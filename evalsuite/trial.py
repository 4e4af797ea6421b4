"""Trials with a person in the loop (``evalsuite trial``): a run folder for a task evalsuite does not
simulate - a real robot's - planned, blocked, randomized and blinded as a simulated run is.

The task file (TOML) names the task, its initial conditions (a text each and an optional reference
photo), the milestones an operator can mark and the failure tags::

    task = "mug-to-plate"
    instruction = "put the mug on the plate"
    milestones = ["reached", "grasped", "lifted", "placed"]
    failure_tags = ["missed grasp", "dropped", "collision", "timeout"]
    [[initial_conditions]]
    text = "mug upright on the left mark, handle towards the robot"
    photo = "photos/left.jpg"

The plan is blocked: each initial condition is one block in which every policy runs once, in a
random order within the block (the operator sets the scene up once per block), under blinding
codes. Outcomes go to the same journal as simulated episodes, so the analysis, report, MLflow and
gate are the simulated runs' own.

How a trial's policy runs (``mode``): ``command`` - a command template the operator never sees,
filled from the hidden key (``{seed}``, ``{trial}``, ``{ic}`` and every parameter a policy was
given, e.g. ``{checkpoint}``), started and stopped from the console; ``router`` - the robot's
computer connects to the console's one websocket address (``/robot``) and is forwarded to the
hidden policy's server (``NAME:server=ws://...``, openpi's protocol) for the trial started;
``manual`` - the operator runs
the robot however they like and records the outcome (blinding then rests on a second person
choosing the policy: the report says so).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import string
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite import fsio, names, streams
from evalsuite import plan as plan_mod
from evalsuite.errors import UsageError
from evalsuite.plan import BlindingKey, KeyEntry, Plan, PolicyEntry, Stopping, Trial

TRIAL_FILE = "trial.json"  # the task file as read, the mode and (in the key's company) the command
ROBOT = "robot"  # the policy id of every real-robot policy: what it is lives in its parameters
MODES = ("command", "router", "manual")
FIXED = Stopping()  # every planned trial (sequential stopping is the console's: it stops offering trials)
MAX_STEPS = 1  # a real trial has no step limit the runner enforces; the plan's field needs a number


@dataclass(frozen=True)
class InitialCondition:
    text: str
    photo: str = ""  # a file beside the task file, copied into the run folder


@dataclass(frozen=True)
class TrialTask:
    task: str
    initial_conditions: tuple[InitialCondition, ...]
    instruction: str = ""
    milestones: tuple[str, ...] = ()
    failure_tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "instruction": self.instruction, "milestones": list(self.milestones),
                "failure_tags": list(self.failure_tags),
                "initial_conditions": [{"text": ic.text, "photo": ic.photo} for ic in self.initial_conditions]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialTask:
        return cls(d["task"], tuple(InitialCondition(ic["text"], ic.get("photo", "")) for ic in d["initial_conditions"]),
                   d.get("instruction", ""), tuple(d.get("milestones", ())), tuple(d.get("failure_tags", ())))


def _strings(data: dict[str, Any], key: str, path: Path) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise UsageError(f"{path}: {key} must be a list of non-empty strings, e.g. {key} = [\"a\", \"b\"]")
    if len(set(value)) != len(value):
        raise UsageError(f"{path}: {key} lists {sorted(v for v in value if value.count(v) > 1)[0]!r} twice")
    return tuple(fsio.one_line(v) for v in value)


def read_task(path: Path) -> TrialTask:
    """The task file, checked: one line naming the problem for anything else."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"task file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"task file {path} is not valid TOML: {(str(exc).splitlines() or [''])[0]}") from None
    task = data.get("task")
    if not isinstance(task, str) or not task.strip() or "/" in task:
        raise UsageError(f"{path}: task must be a name without '/', e.g. task = \"mug-to-plate\"")
    ics = data.get("initial_conditions")
    if not isinstance(ics, list) or not ics or not all(isinstance(ic, dict) and isinstance(ic.get("text"), str)
                                                          for ic in ics):
        raise UsageError(f"{path}: give at least one [[initial_conditions]] with text = \"...\"")
    conditions = []
    for number, ic in enumerate(ics, 1):
        photo = ic.get("photo", "")
        if photo and not (path.parent / photo).is_file():
            raise UsageError(f"{path}: initial condition {number}'s photo {photo!r} is not a file beside the task file")
        conditions.append(InitialCondition(fsio.one_line(ic["text"]), str(photo)))
    return TrialTask(fsio.one_line(task), tuple(conditions), fsio.one_line(str(data.get("instruction", ""))),
                     _strings(data, "milestones", path), _strings(data, "failure_tags", path))


def parse_trial_policy(text: str) -> PolicyEntry:
    """``NAME[:key=value...]``: a name the report shows after unblinding and the values the command
    template reads (``expert:checkpoint=/ckpt/a.pt``) or the router forwards to (``a:server=ws://gpu:8000``)."""
    name, _, rest = text.partition(":")
    parts = re.split(r":(?=[A-Za-z_][A-Za-z0-9_]*=)", rest) if rest else []  # a value keeps its colons (ws://h:p)
    if not name or any(c in name for c in "{}"):
        raise UsageError(f"policy {text!r}: give NAME[:key=value...], e.g. expert:checkpoint=/ckpt/a.pt")
    params: dict[str, Any] = {"label": name}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"policy {text!r}: {part!r} is not key=value")
        params[key] = value
    return PolicyEntry(ROBOT, params)


def check_command(template: str, policies: list[PolicyEntry]) -> None:
    """Every field the template names is given for every policy (``{seed}``, ``{trial}``, ``{ic}``
    always are), so no trial fails on a missing value at the robot."""
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    for entry in policies:
        missing = sorted(fields - {"seed", "trial", "ic"} - set(entry.params))
        if missing:
            raise UsageError(f"run_cmd names {{{missing[0]}}}, which policy {entry.label!r} does not give; "
                             f"e.g. {entry.label}:{missing[0]}=...")


def command_for(template: str, entry: KeyEntry, trial: Trial) -> str:
    return template.format(**{**entry.params, "seed": trial.policy_seed, "trial": trial.trial_id,
                              "ic": trial.ic_index})


def make_blocked_plan(task: TrialTask, policies: list[PolicyEntry], repeats: int, seed: int,
                      stopping: Stopping = FIXED, mode: str = "command") -> tuple[Plan, BlindingKey]:
    """Every policy once per initial condition (x ``repeats``), blocks in the task file's order,
    the policies' order random within each block; codes assigned at random."""
    n_ics = len(task.initial_conditions) * repeats
    plan, key = plan_mod.make_plan(suite=f"trial:{task.task}", tasks=[task.task], policies=policies, episodes=n_ics,
                                   seed=seed, max_steps={task.task: MAX_STEPS}, stopping=stopping,
                                   suite_options={"mode": mode})  # in plan.json and the report
    rng = streams.generator(seed, streams.TRIAL_ORDER)
    by_block: dict[int, list[Trial]] = {}
    for t in plan.trials:
        by_block.setdefault(t.ic_index, []).append(t)
    ordered = []
    for block in sorted(by_block):
        trials = sorted(by_block[block], key=lambda t: t.policy_code)
        ordered += [trials[int(j)] for j in rng.permutation(len(trials))]
    return dataclasses.replace(plan, trials=tuple(ordered)), key


def create(out: Path, task_path: Path, policies: list[PolicyEntry], mode: str, run_cmd: str, repeats: int,
           seed: int, stopping: Stopping = FIXED) -> Plan:
    """The run folder: plan, key, the task (photos copied in) and how trials run."""
    if mode not in MODES:
        raise UsageError(f"mode={mode!r}; accepted: {', '.join(MODES)}")
    if (mode == "command") != bool(run_cmd):
        raise UsageError("mode=command needs run_cmd=\"...\" (the command that runs one trial); router and manual "
                         "take none")
    if mode == "router":
        lacking = [p.label for p in policies if not str(p.params.get("server", "")).startswith(("ws://", "wss://"))]
        if lacking:
            raise UsageError(f"mode=router: policy {lacking[0]!r} names no policy server; e.g. "
                             f"{lacking[0]}:server=ws://gpu-box:8000")
    if len(policies) < 2:
        raise UsageError("a trial compares policies: give at least two in policies=[...]")
    if (out / names.PLAN).exists():
        raise UsageError(f"{out} already holds a run (plan.json); use another out= folder")
    task = read_task(task_path)
    if run_cmd:
        check_command(run_cmd, policies)
    plan, key = make_blocked_plan(task, policies, repeats, seed, stopping, mode)
    fsio.make_dir(out)
    photos = []
    for number, ic in enumerate(task.initial_conditions):
        if ic.photo:
            data = (task_path.parent / ic.photo).read_bytes()
            name = f"ic-{number:03d}{Path(ic.photo).suffix.lower()}"
            fsio.make_dir(out / "photos")
            fsio.write_bytes(out / "photos" / name, data, root=out)
            photos.append(InitialCondition(ic.text, name))
        else:
            photos.append(InitialCondition(ic.text))
    stored = TrialTask(task.task, tuple(photos), task.instruction, task.milestones, task.failure_tags)
    plan_mod.save(out, plan, key)
    # the command stays with the key's secrets: never sent to a browser (evalsuite/console.py)
    plan_mod.write_json(out / TRIAL_FILE, {"task": stored.to_dict(), "mode": mode, "run_cmd": run_cmd,
                                           "repeats": repeats, "unblinded": False})
    return plan


def fingerprint(entry: KeyEntry) -> str:
    """What a trial's record names its policy by: a hash of the hidden key entry, never its values."""
    return "robot-" + hashlib.sha256(json.dumps(entry.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
