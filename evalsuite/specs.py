"""Frozen, JSON-serializable specs for suites, tasks and policies.

A spec names an entry point as ``"module:attr"`` that is imported only when the thing is built,
so listing every registered suite or policy never imports a simulator or torch.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any

from evalsuite.errors import UsageError, choices


def load_entry_point(entry_point: str) -> Any:
    """Import ``module:attr`` lazily; a broken entry point is an error naming it."""
    module_name, _, attr = entry_point.partition(":")
    if not module_name or not attr:
        raise ValueError(f"entry point {entry_point!r} is not of the form 'module:attr'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a plugin that fails to import: one line naming it, not its traceback
        reason = (str(exc).splitlines() or [""])[0]
        raise UsageError(f"cannot import {module_name!r} for entry point {entry_point!r}: "
                         f"{type(exc).__name__}: {reason}") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise UsageError(f"entry point {entry_point!r}: module has no attribute {attr!r}") from exc


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task of a suite: its id, episode step limit, tags (e.g. difficulty) and the instruction a
    person would give (what language-conditioned and remote policies receive as ``task``)."""

    id: str
    max_steps: int
    tags: tuple[str, ...] = ()
    instruction: str = ""


@dataclass(frozen=True, slots=True)
class SuiteOption:
    """A ``key=value`` option a suite plugin takes on the command line, declared with the suite
    (Gymnasium's model: the plugin validates its own keyword arguments). Values reach the plugin as
    typed: ``env`` options as keyword arguments of its environment entry point (recorded in the
    plan: they define the episodes), ``search`` options as keyword arguments of its worst-case search."""

    name: str
    help: str
    default: str | None = None  # as typed on the command line; None: absent unless given
    target: str = "env"  # env | search
    # "module:function" (key, text) -> value: checks (and types) the value as the command line is read,
    # before anything runs; none: the text as typed, checked by the entry point that gets it
    parse: str = ""


@dataclass(frozen=True, slots=True)
class SuiteSpec:
    """A benchmark suite: a set of tasks built by one environment entry point.

    ``default_tasks`` and ``default_policies`` are what a bare ``evaluate suite=ID`` runs.

    ``entry_point`` is a callable ``(task_id, **kwargs) -> TaskEnv``; ``kwargs`` are fixed options
    of the suite (e.g. observation mode). ``env_workers`` is the default number of environment
    subprocesses (0 = step environments in the main process, right when the policy is the cost);
    ``episode_workers`` instead runs whole episodes in one worker process per core by default
    (right when the simulator and its resets are the cost, as on robosuite).
    """

    id: str
    entry_point: str
    tasks: tuple[TaskSpec, ...]
    description: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    default_episodes: int = 20
    env_workers: int = 0
    episode_workers: bool = False
    simulator: str = ""  # e.g. "metaworld", "robosuite": what policies may ask instead of parsing entry points
    base_suite: str = ""  # an MDP family's suite: policies are built for its base suite's task
    # an MDP family's axes as data ({"id", "axes": [{"name", "low", "high", "log", "nominal"}, ...]}),
    # recorded in every plan so a run folder is analysed without the suite's plugin
    family: dict[str, Any] | None = None
    worst_case_search: str = ""  # an MDP family's search entry point, (suite, task, policy, out, ...) -> dict
    default_tasks: tuple[str, ...] = ()  # empty: all tasks
    default_policies: tuple[str, ...] = ()  # what `evaluate` runs when no policies= is given
    options: tuple[SuiteOption, ...] = ()  # the suite's own command-line options (see SuiteOption)
    packages: tuple[str, ...] = ()  # the simulator's packages: their versions are part of what the suite is
    demos_format: str = "dp3"  # how `evalsuite demos` writes its demos: dp3 (DP3's fields) | robomimic

    def task(self, task_id: str) -> TaskSpec:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise UsageError(f"unknown task {task_id!r} in suite {self.id!r}; accepted: {choices(self.task_ids)}")

    @property
    def task_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tasks)

    def select_tasks(self, names: list[str]) -> list[str]:
        """Task ids for ``names``: task ids, ``all``, or tags naming a group (Meta-World's
        ``easy``, ``medium``, ``hard``, ``very-hard``), in the suite's order, without repeats."""
        tags = {tag for t in self.tasks for tag in t.tags}
        chosen: list[str] = []
        for name in names:
            if name == "all":
                group = list(self.task_ids)
            elif name in tags and name not in self.task_ids:
                group = [t.id for t in self.tasks if name in t.tags]
            else:
                group = [self.task(name).id] if name in self.task_ids else []
                if not group:
                    raise UsageError(f"unknown task {name!r} in suite {self.id!r}; accepted: all, "
                                     f"{choices(tags) + ', ' if tags else ''}{choices(self.task_ids)}")
            chosen += [t for t in group if t not in chosen]
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A policy plugin: ``entry_point`` is ``(task: TaskSpec, suite: SuiteSpec, **params) -> Policy``.

    ``params`` are the defaults a user may override (``noisy-scripted:noise=0.3``);
    ``positional`` names the parameter a bare argument fills (``robomimic:path/to/model.pth``).
    """

    id: str
    entry_point: str
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    positional: str | None = None
    # the parameter naming a file the plugin unpickles, "name" or "name*.suffix" (only values ending
    # so): such a file is loaded only with the consent of the command's own line (evalsuite/trust.py)
    pickled: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AnalysisSpec:
    """A section that an analysis adds to ``results.json`` (under ``id``), the report and MLflow.

    Each field is a ``module:function`` entry point, loaded only when used:
    ``compute(AnalysisInput) -> dict | None`` (None: nothing to add for this run; the dict must be
    JSON-serializable), ``report(section, results) -> list[str]`` (markdown lines; ``results`` is the run's typed
    ``evalsuite.results.Results``),
    ``figures(section, results) -> dict[str, matplotlib Figure]``,
    ``metrics(section) -> dict[str, float]`` (MLflow metric name -> value) and
    ``tags(section) -> dict[str, str]`` (MLflow tags, e.g. decisions). ``order`` places the
    section among the others in results.json and in its part of the report: ``part`` "sections"
    (after the summary and videos) or "detail" (the statistical detail at the end).
    """

    id: str
    compute: str
    report: str = ""
    figures: str = ""
    metrics: str = ""
    order: int = 100
    tags: str = ""
    part: str = "sections"
