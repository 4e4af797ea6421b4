"""The results of a run, typed: what ``analysis.analyze`` returns and every consumer reads.

Report, MLflow, gate, select, compose and the worst-case search use these objects; JSON exists
only at the disk boundary (``Results.to_dict`` writes ``results.json``, ``Results.from_dict``
reads it back, tolerating fields that older versions did not write). The core tables are typed
here; the optional sections (rliable aggregates, the mixed model, algorithm groups, sequential
decisions, and every registered analysis section such as ``family`` or ``progress``) are JSON-ready
mappings kept by id in ``Results.sections``, in the order they are written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from evalsuite import names
from evalsuite.errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    level: float = 0.95
    interval: str = "wilson"
    correction: str = "holm"
    bootstrap_reps: int = 10_000
    max_attempts: int = 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class WorstRate:
    """A task rate with the missing episodes (infrastructure errors) counted as failures."""

    successes: int
    n: int
    rate: float | None
    ci_low: float
    ci_high: float


@dataclass(frozen=True, slots=True)
class WorstPair:
    """A paired comparison with the missing episodes counted as failures."""

    n_pairs: int
    difference: float | None
    ci_low: float
    ci_high: float
    p_value: float


@dataclass(frozen=True, slots=True)
class WorstMean:
    """A mean over tasks with the missing episodes counted as failures."""

    mean: float
    ci_low: float
    ci_high: float
    tasks: int


@dataclass(frozen=True, slots=True, kw_only=True)  # keyword-only: results.json's key order with defaults
class TaskResult:
    task: str
    policy: str
    code: str
    n: int  # outcomes, policy errors included (as failures)
    successes: int
    policy_errors: int = 0  # episodes the policy itself broke: counted as failures
    missing: int = 0  # infrastructure errors left after every retry: not in n
    rate: float | None  # None when n = 0
    ci_low: float
    ci_high: float
    method: str
    level: float
    posterior_alpha: float
    posterior_beta: float
    mean_steps: float | None
    fingerprint: str
    worst_case: WorstRate | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PairResult:
    task: str
    policy_a: str
    policy_b: str
    n_pairs: int
    both: int
    a_only: int
    b_only: int
    neither: int
    difference: float | None
    ci_low: float
    ci_high: float
    level: float
    p_value: float
    p_adjusted: float
    correction: str
    significant: bool  # adjusted p below alpha and the simultaneous interval excludes 0
    simultaneous_level: float | None = None  # of the interval below, adjusted for the comparisons
    simultaneous_low: float | None = None
    simultaneous_high: float | None = None
    worst_case: WorstPair | None = None


@dataclass(frozen=True, slots=True)
class AggregateResult:
    """One policy's mean success over tasks."""

    policy: str
    tasks: int
    mean: float
    ci_low: float
    ci_high: float
    level: float
    method: str
    worst_case: WorstMean | None = None


@dataclass(frozen=True, slots=True)
class MeanDifference:
    """The paired difference of two policies' means over tasks."""

    policy_a: str
    policy_b: str
    difference: float
    ci_low: float
    ci_high: float
    level: float
    method: str


@dataclass(frozen=True, slots=True)
class TrialCounts:
    planned: int
    finished: int
    policy_errors: int = 0
    missing: int = 0
    complete: bool = False


# The key order of results.json (unchanged from the dict-built files), sections after these.
_CORE = ("suite", "tasks", "seed", "episodes_per_task", "options", "policies", "trials", "per_task", "pairwise",
         "aggregate", "mean_differences", "letters")


@dataclass(frozen=True)
class Results:
    """All statistics of one run, made once by ``analysis.analyze`` and never changed after.
    ``policies`` maps each label to its blinding-key entry (code, policy id, parameters, and any
    notes the policy gave about itself)."""

    suite: str
    tasks: list[str]
    seed: int
    episodes_per_task: int
    options: AnalysisOptions
    policies: dict[str, dict[str, Any]]
    trials: TrialCounts
    per_task: list[TaskResult]
    pairwise: list[PairResult]
    aggregate: list[AggregateResult]
    mean_differences: list[MeanDifference] = field(default_factory=list)
    letters: dict[str, dict[str, str]] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)

    def task(self, task: str, policy: str) -> TaskResult:
        """The result of ``policy`` (a label) on ``task``."""
        for r in self.per_task:
            if r.task == task and r.policy == policy:
                return r
        raise KeyError(f"no result for policy {policy!r} on task {task!r}")

    def mean(self, policy: str) -> AggregateResult | None:
        """``policy``'s mean over tasks, or None when it has no outcome."""
        return next((a for a in self.aggregate if a.policy == policy), None)

    def pairs_of(self, a: str, b: str) -> list[tuple[PairResult, int]]:
        """The paired comparisons of policies ``a`` and ``b`` (either order), each with the sign that
        turns its difference into ``a - b``."""
        return [(p, 1 if p.policy_a == a else -1) for p in self.pairwise if {p.policy_a, p.policy_b} == {a, b}]

    def section(self, name: str) -> Any:
        """An optional section (``aggregates``, ``groups``, ``family``, ``progress``, ...) or None."""
        return self.sections.get(name)

    def to_dict(self) -> dict[str, Any]:
        core = {f: getattr(self, f) for f in _CORE}
        core["options"] = self.options.to_dict()
        for name in ("trials", "per_task", "pairwise", "aggregate", "mean_differences"):
            value = core[name]
            core[name] = [asdict(v) for v in value] if isinstance(value, list) else asdict(value)
        return {**core, **self.sections}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = names.RESULTS) -> Results:
        """The inverse of ``to_dict``; a file that is not one raises a one-line UsageError naming it."""
        try:
            return cls(
                suite=data["suite"], tasks=list(data["tasks"]), seed=data["seed"],
                episodes_per_task=data["episodes_per_task"], options=_build(AnalysisOptions, data["options"]),
                policies=dict(data["policies"]), trials=_build(TrialCounts, data["trials"]),
                per_task=[_build(TaskResult, r, worst_case=WorstRate) for r in data["per_task"]],
                pairwise=[_build(PairResult, p, worst_case=WorstPair) for p in data["pairwise"]],
                aggregate=[_build(AggregateResult, a, worst_case=WorstMean) for a in data["aggregate"]],
                mean_differences=[_build(MeanDifference, d) for d in data.get("mean_differences", [])],
                letters=dict(data.get("letters", {})),
                sections={k: v for k, v in data.items() if k not in _CORE},
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise UsageError(f"{source}: not an evalsuite results file ({type(exc).__name__}: {exc}); "
                              "rebuild it with `evalsuite report RUN`") from None


def _build(cls: type[T], data: dict[str, Any], **nested: type) -> T:
    """``cls`` from a JSON object: unknown keys ignored, nested dataclasses built by field name."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in data.items() if k in names}
    for name, kind in nested.items():
        if kwargs.get(name) is not None:
            kwargs[name] = _build(kind, kwargs[name])
    return cls(**kwargs)


RESULTS_FILE = names.RESULTS


def load(run_dir: Path) -> Results:
    """A run folder's results.json, typed; a damaged or foreign file is a one-line UsageError."""
    from evalsuite.plan import read_json

    path = Path(run_dir) / RESULTS_FILE
    return Results.from_dict(read_json(path), str(path))
