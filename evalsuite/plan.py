"""The trial plan: every (task, initial condition, policy) episode, fixed before any episode runs.

Seeds. The initial condition ``i`` of task ``t`` under root seed ``s`` is seeded by
``SeedSequence(s, spawn_key=(0, h(t), i))`` - a pure function of (s, t, i), so the same task gets
the same initial conditions whatever other tasks or episode counts a run has (runs with the same
seed stay paired). The execution order and the blinding codes come from their own spawn keys.

Blinding. Policies appear in the plan and the journal only under codes (``A``, ``B``, ...),
assigned in a seeded random order; the code -> policy key is a separate file (``blinding.json``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite import fsio, names, streams
from evalsuite.errors import UsageError

PLAN_FILE, KEY_FILE = names.PLAN, names.KEY
PLAN_VERSION = 1


def stable_hash32(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def ic_seeds(root_seed: int, task_id: str, index: int) -> tuple[int, int]:
    """(environment seed, policy seed) of initial condition ``index`` of ``task_id``."""
    state = streams.sequence(root_seed, streams.INITIAL_CONDITIONS, stable_hash32(task_id), index).generate_state(4)
    env_seed = int(state[0]) << 32 | int(state[1])
    policy_seed = int(state[2]) << 32 | int(state[3])
    return env_seed, policy_seed


def blinding_codes(n: int) -> list[str]:
    letters = string.ascii_uppercase
    return [letters[i] if n <= 26 else f"P{i + 1:02d}" for i in range(n)]


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """A policy as the user asked for it: registry id plus parameter overrides."""

    id: str
    params: dict[str, Any]

    @property
    def label(self) -> str:
        """The name shown for this policy: ``label=`` when given (``dp3:steps=4:label=dp3-fast``), else
        its id and parameters; never a line break or an escape code."""
        if "label" in self.params:
            return fsio.one_line(str(self.params["label"]))
        extra = ":".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return fsio.one_line(f"{self.id}:{extra}" if extra else self.id)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """The policy behind one blinding code: registry id, parameters, label, in a combined run
    folder the run folder it came from, and its place in the user's list (``order``; folders made
    before it was recorded have none and are shown in label order)."""

    id: str
    params: dict[str, Any]
    label: str
    run: str | None = None
    order: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "params": self.params, "label": self.label}
        if self.run is not None:
            data["run"] = self.run
        if self.order is not None:
            data["order"] = self.order
        return data


class BlindingKey(Mapping[str, KeyEntry]):
    """blinding.json, typed: code -> KeyEntry, in code order. The only way from codes to names
    (``label(code)``) and back (``code(label)``)."""

    def __init__(self, entries: Mapping[str, KeyEntry]) -> None:
        self._entries = dict(sorted(entries.items()))

    def __getitem__(self, code: str) -> KeyEntry:
        return self._entries[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"BlindingKey({self._entries!r})"

    def label(self, code: str) -> str:
        return self._entries[code].label

    def code(self, label: str) -> str:
        for code, entry in self._entries.items():
            if entry.label == label:
                return code
        raise KeyError(label)

    @property
    def labels(self) -> dict[str, str]:
        """code -> label."""
        return {code: entry.label for code, entry in self._entries.items()}

    def report_order(self) -> list[str]:
        """The codes in the order the user listed the policies (so "A - B" is the first minus the
        second), or by label for a key that does not record it."""
        orders = [entry.order for entry in self._entries.values()]
        if all(o is not None for o in orders):
            return sorted(self._entries, key=lambda c: self._entries[c].order or 0)
        return sorted(self._entries, key=lambda c: self._entries[c].label)

    def without_order(self) -> BlindingKey:
        """The same policies without their listing order (what a resume compares)."""
        return BlindingKey({c: dataclasses.replace(e, order=None) for c, e in self._entries.items()})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {code: entry.to_dict() for code, entry in self._entries.items()}

    @classmethod
    def of(cls, key: Mapping[str, Any]) -> BlindingKey:
        """A key from blinding.json's mapping (code -> {"id", "params", "label"[, "run"]}), or itself."""
        if isinstance(key, BlindingKey):
            return key
        return cls({code: entry if isinstance(entry, KeyEntry) else
                    KeyEntry(entry["id"], entry["params"], entry["label"], entry.get("run"), entry.get("order"))
                    for code, entry in key.items()})


@dataclass(frozen=True, slots=True)
class Trial:
    trial_id: str
    task: str
    ic_index: int
    ic_seed: int
    policy_seed: int
    policy_code: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Stopping:
    """When a run stops taking episodes (evalsuite/sequential.py). ``fixed``: every planned trial.
    ``sequential``: rounds of ``round_size`` initial conditions until every pair of policies is
    decided at ``alpha`` (``decision="compare"``), or - for the gate - until the candidate is
    decided against the ``baseline`` outcomes recorded per task and initial condition."""

    rule: str = "fixed"  # fixed | sequential
    alpha: float = 0.05
    round_size: int = 10
    margin: float | None = None  # compare: also stop once |difference| < margin; gate: the margin
    decision: str = "compare"  # compare | gate
    metric: str = "success"  # compare: success | progress (paired progress scores, betting e-processes)
    baseline: dict[str, list[bool | None]] | None = None  # gate: the baseline's outcome per initial condition
    # compare, metric=success: (p_baseline, delta[, discordance]) the run was planned for; the
    # e-processes bet near its Kelly bet from the first pair (valid at any effect; faster at the planned one)
    planned: tuple[float, ...] | None = None

    @property
    def sequential(self) -> bool:
        return self.rule == "sequential"

    def to_dict(self) -> dict[str, Any]:
        """As plan.json has always held it: only what the rule uses."""
        if not self.sequential:
            return {"rule": self.rule}
        out: dict[str, Any] = {"rule": self.rule, "alpha": self.alpha, "round_size": self.round_size}
        if self.margin is not None:
            out["margin"] = self.margin
        if self.metric != "success":
            out["metric"] = self.metric
        if self.planned is not None:
            out["planned"] = dict(zip(("p_baseline", "delta", "discordance"), self.planned, strict=False))
        if self.decision != "compare":
            out.update(decision=self.decision, baseline=self.baseline)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Stopping:
        d = d or {}
        return cls(rule=d.get("rule", "fixed"), alpha=d.get("alpha", 0.05), round_size=d.get("round_size", 10),
                   margin=d.get("margin"), decision=d.get("decision", "compare"), baseline=d.get("baseline"),
                   metric=d.get("metric", "success"),
                   planned=tuple(d["planned"][k] for k in ("p_baseline", "delta", "discordance") if k in d["planned"])
                   if d.get("planned") else None)

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.to_dict().items() if k != "baseline")


@dataclass(frozen=True, slots=True)
class Plan:
    suite: str
    tasks: tuple[str, ...]
    episodes: int
    seed: int
    max_steps: dict[str, int]
    codes: tuple[str, ...]
    trials: tuple[Trial, ...]  # in execution order
    key_digest: str  # sha256 of the blinding key: a changed policy set is caught without unblinding
    suite_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. init_states
    stopping: Stopping = Stopping()
    # sha256 of what the suite is (tasks, step limits, options, entry point, simulator versions):
    # a run resumed under another specification would mix two benchmarks in one journal
    suite_digest: str = ""
    family: dict[str, Any] | None = None  # an MDP family's axes (SuiteSpec.family), for the analysis
    # the observation/action conventions (evalsuite/contract.py): each task's, each policy code's, and
    # the mismatches a contract=warn run accepted; None in folders made before contracts
    contracts: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "suite": self.suite,
            "suite_digest": self.suite_digest,
            **({"family": self.family} if self.family else {}),
            "tasks": list(self.tasks),
            "episodes": self.episodes,
            "seed": self.seed,
            "max_steps": self.max_steps,
            "codes": list(self.codes),
            "key_digest": self.key_digest,
            "suite_options": self.suite_options,
            "stopping": self.stopping.to_dict(),
            **({"contracts": self.contracts} if self.contracts is not None else {}),
            "trials": [t.to_dict() for t in self.trials],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(
            suite=d["suite"], tasks=tuple(d["tasks"]), episodes=d["episodes"], seed=d["seed"],
            max_steps=dict(d["max_steps"]), codes=tuple(d["codes"]),
            trials=tuple(Trial(**t) for t in d["trials"]), key_digest=d["key_digest"],
            suite_options=d.get("suite_options", {}), stopping=Stopping.from_dict(d.get("stopping")),
            suite_digest=d.get("suite_digest", ""), family=d.get("family"), contracts=d.get("contracts"),
        )


MAX_TRIALS = 10_000_000  # a plan holds every trial in memory and in plan.json


def key_digest(key: BlindingKey) -> str:
    return hashlib.sha256(json.dumps(key.to_dict(), sort_keys=True).encode()).hexdigest()


def make_plan(
    *, suite: str, tasks: list[str], policies: list[PolicyEntry], episodes: int, seed: int,
    max_steps: dict[str, int], suite_options: dict[str, Any] | None = None,
    stopping: Stopping = Stopping(), suite_digest: str = "", family: dict[str, Any] | None = None,
) -> tuple[Plan, BlindingKey]:
    """Build the plan and its blinding key."""
    if episodes < 1:
        raise UsageError(f"episodes must be >= 1, got {episodes}")
    if len(tasks) * episodes * len(policies) > MAX_TRIALS:
        raise UsageError(f"{len(tasks)} tasks x {episodes} episodes x {len(policies)} policies is more trials than a "
                         f"plan holds ({MAX_TRIALS:,}); use fewer episodes")
    labels = [p.label for p in policies]
    if len(set(labels)) != len(labels):
        raise UsageError(f"the same policy is listed twice: {labels}")
    codes = blinding_codes(len(policies))
    assignment = streams.generator(seed, streams.BLINDING).permutation(len(policies))
    key = BlindingKey({codes[int(slot)]: KeyEntry(p.id, p.params, p.label, order=i)
                       for i, (p, slot) in enumerate(zip(policies, assignment, strict=True))})
    trials = []
    for task in tasks:
        for i in range(episodes):
            env_seed, policy_seed = ic_seeds(seed, task, i)
            for code in codes:
                trials.append(Trial(f"{task}/{i:05d}/{code}", task, i, env_seed, policy_seed, code))
    order = streams.generator(seed, streams.TRIAL_ORDER).permutation(len(trials))
    plan = Plan(
        suite=suite, tasks=tuple(tasks), episodes=episodes, seed=seed, max_steps=dict(max_steps),
        codes=tuple(codes), trials=tuple(trials[int(j)] for j in order), key_digest=key_digest(key),
        suite_options=dict(suite_options or {}), stopping=stopping,
        suite_digest=suite_digest, family=family,
    )
    return plan, key


def write_json(path: Path, data: Any) -> None:
    """Write atomically (a unique temporary file + rename, never through a link): a crash never
    leaves half a plan, and a link planted in a received folder is refused (evalsuite/fsio.py)."""
    fsio.write_json(path, data, root=path.parent)


def save(run_dir: Path, plan: Plan, key: BlindingKey) -> None:
    fsio.make_dir(run_dir)
    write_json(run_dir / KEY_FILE, key.to_dict())
    write_json(run_dir / PLAN_FILE, plan.to_dict())


def load(run_dir: Path) -> tuple[Plan, BlindingKey]:
    """The plan and blinding key of a run folder; a missing, damaged or foreign file is one line
    naming it."""
    plan_path, key_path = run_dir / PLAN_FILE, run_dir / KEY_FILE
    try:
        plan_data, key = read_json(plan_path), read_json(key_path)
        plan = Plan.from_dict(plan_data)
    except FileNotFoundError as exc:
        raise UsageError(f"{run_dir} is not a run folder (missing {Path(exc.filename).name})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{plan_path}: not an evalsuite plan ({type(exc).__name__}: {exc}); the run folder is "
                         "damaged - restore plan.json or start a new out= folder") from None
    if not isinstance(key, dict) or not all(isinstance(v, dict) and {"id", "params", "label"} <= set(v)
                                            and isinstance(v["label"], str) and isinstance(v["params"], dict)
                                            for v in key.values()) or set(key) != set(plan.codes):
        raise UsageError(f"{key_path}: not the blinding key of this plan (codes {', '.join(plan.codes)}); the run "
                         "folder is damaged - restore blinding.json or start a new out= folder")
    # a received folder's labels reach Markdown, CSV and log lines: never as line breaks or escape codes
    return plan, BlindingKey({code: KeyEntry(str(entry["id"]), entry["params"], fsio.one_line(entry["label"]),
                                             entry.get("run"), _order(entry.get("order")))
                              for code, entry in key.items()})


def _order(value: Any) -> int | None:
    """A key entry's listing order, if it is a plain integer (a received folder may hold anything)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_json(path: Path) -> Any:
    """JSON from a run-folder file, or a one-line UsageError naming the file and line. A run
    folder's own files are never links (one planted in a received folder is refused)."""
    if path.is_symlink():
        raise UsageError(f"{path} is a symbolic link; evalsuite never reads or writes a run folder's files through "
                         "a link - remove it and rerun")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); the file is damaged") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file; the file is damaged") from None


def check_resumable(saved: Plan, saved_key: BlindingKey, new: Plan, new_key: BlindingKey, run_dir: Path) -> None:
    """Refuse to resume a run folder with a different plan, naming what differs."""
    for name in ("suite", "tasks", "episodes", "seed", "max_steps", "suite_options", "stopping"):
        old_value, new_value = getattr(saved, name), getattr(new, name)
        if old_value != new_value:
            raise UsageError(
                f"{run_dir} holds a run with {name}={_show(old_value)}, not {_show(new_value)}; "
                "use another out= folder or the original settings to resume"
            )
    if saved.suite_digest and new.suite_digest and saved.suite_digest != new.suite_digest:
        raise UsageError(
            f"{run_dir} was run under another specification of suite {new.suite!r} (digest "
            f"{saved.suite_digest[:12]}, now {new.suite_digest[:12]}: its tasks, step limits, options or simulator "
            "versions changed); use another out= folder"
        )
    if saved_key.without_order() != new_key.without_order():  # folders from before the order was kept resume
        raise UsageError(
            f"{run_dir} holds a run with other policies ({', '.join(saved_key.labels.values())}); "
            "use another out= folder or the original policies to resume"
        )
    if saved.trials != new.trials:
        raise UsageError(f"{run_dir}: the saved plan differs from the one these settings make; use another out= folder")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)
