"""What ``evaluate`` is asked to do, in parts: the design (what is measured), the execution (how it
runs: lock-step, worker processes or Ray), the analysis options, MLflow tracking and videos.

Each part is a frozen dataclass whose fields carry their command-line key, help and parser name
(``option``): ``evalsuite evaluate`` parses them, ``--help`` and the docs' key tables print them,
and the command builds the part from them - one declaration each. ``EvaluateRequest.of`` takes the same
settings as flat keywords (a notebook's or a test's shorthand) and sorts them into their parts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.errors import UsageError
from evalsuite.plan import PolicyEntry, Stopping
from evalsuite.results import AnalysisOptions
from evalsuite.video import MAX_FRAMES, STRIDE


def option(default: Any, help: str, parse: str = "text", *, key: str = "", text: str | None = None,
           ray_only: bool = False, factory: Callable[[], Any] | None = None) -> Any:
    """A field that is also a command-line option: ``key`` (default: the field's name), ``help``, the
    name of the parser of its text (the command layer's, evalsuite/commands/evaluate.py), and the
    default as typed (``text``; None: absent unless given)."""
    metadata = {"help": help, "parse": parse, "key": key, "text": text, "ray_only": ray_only}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def option_key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata["key"] or f.name)


@dataclass(frozen=True)
class Execution:
    """How the episodes run: lock-step batches in this process, whole-episode worker processes, or
    Ray actors (with optional policy servers); never what they measure."""

    batch_size: int = option(8, "parallel episodes", "count", text="8")
    env_workers: int | None = option(None, "environment subprocesses stepped in lock-step (0: in-process; default: "
                                     "the suite's)", "zero_or_count")
    workers: int | None = option(None, "whole-episode workers: processes here, or Ray actors with executor=ray "
                                 "(0: lock-step)", "zero_or_count")
    executor: str = option("local", "local | ray", "executor", text="local")
    cpus: int | None = option(None, "cores evalsuite may use: inference threads x processes stay within (default: "
                              "all)", "cpus")
    ray_address: str | None = option(None, "executor=ray: auto | HOST:PORT of a running cluster (default: start Ray "
                                     "on this machine)", "text", ray_only=True)
    worker_cpus: float = option(1.0, "executor=ray: CPUs per actor", "positive", text="1", ray_only=True)
    worker_gpus: float = option(0.0, "executor=ray: GPUs per actor", "non_negative", text="0", ray_only=True)
    inference_actors: int = option(0, "executor=ray: policy servers that batch the requests of all actors (0: "
                                   "policies in the actors)", "zero_or_count", text="0", ray_only=True)
    inference_cpus: float = option(1.0, "executor=ray: CPUs per policy server", "positive", text="1",
                                   ray_only=True)
    inference_gpus: float = option(0.0, "executor=ray: GPUs per policy server", "non_negative", text="0",
                                   ray_only=True)
    episode_timeout_s: float = option(600.0, "seconds of policy inference per episode before it counts as a policy "
                                      "error", "positive", key="timeout", text="600")

    def __post_init__(self) -> None:
        if self.executor not in ("local", "ray"):
            raise UsageError(f"executor={self.executor!r}; accepted: local, ray")
        if self.executor != "ray":
            given = [f.name for f in dataclasses.fields(self)
                     if f.metadata.get("ray_only") and getattr(self, f.name) != f.default]
            if given:
                raise UsageError(f"{given[0]}= applies to executor=ray only")
        if self.workers and self.env_workers:
            raise UsageError("give workers= (whole episodes per process) or env_workers= (lock-step), not both")


@dataclass(frozen=True)
class Tracking:
    """MLflow: where the run is logged (None: nowhere), under which experiment and tags, and
    whether progress is shown there while the run goes."""

    uri: str | None = option("default", "default (sqlite in the working directory) | none | sqlite:///PATH | "
                             "http://HOST:PORT", "tracking_uri", key="tracking_uri", text="default")
    experiment: str = option("evalsuite", "MLflow experiment name", "text", text="evalsuite")
    tags: dict[str, str] = option(None, "[key=value,...] MLflow tags of the run (a gate finds it by "
                                  "baseline=mlflow-tag:key=value)", "tags", factory=dict)
    live: bool = True  # progress metrics to an MLflow run while the run goes (replaced at the end)


@dataclass(frozen=True)
class Video:
    """Episodes replayed into mp4 after the run (never while it runs)."""

    mode: str = option("none", "none | sample (per task and policy a success and a failure of each failure mode) | "
                       "failures | all: episodes replayed into mp4 after the run (skipped, with a note, where nothing "
                       "can render)", "video", key="video", text="sample")
    camera: str = option("", "the videos' camera (default: the suite's first)", "text")
    stride: int = option(STRIDE, "a video frame every this many steps (and the last); 1: every step", "count",
                         key="video_stride", text=str(STRIDE))
    frames: int = option(MAX_FRAMES, "at most this many frames a video (the first and last always): a longer episode is "
                         "filmed at a wider stride; 0: no limit", "zero_or_count", key="video_frames",
                         text=str(MAX_FRAMES))


@dataclass(frozen=True)
class Design:
    """What is measured: which tasks, how many initial conditions from which root seed, for at most
    how many steps, with the suite's own options, and when to stop."""

    tasks: tuple[str, ...] | None = None  # None: the suite's default tasks
    episodes: int | None = None  # initial conditions per task; None: the suite's
    seed: int = 0
    max_steps: int | dict[str, int] | None = None  # caps every task's own step limit (or per task)
    suite_options: dict[str, Any] = field(default_factory=dict)  # the suite's env options (SuiteSpec.options)
    stopping: Stopping = Stopping()  # see evalsuite/sequential.py
    contract: str = "error"  # error | warn: a convention mismatch refused, or run and reported (evalsuite/contract.py)


@dataclass(frozen=True)
class EvaluateRequest:
    """One evaluation: the suite, the policies, the run folder, and its parts. ``search``: the suite's
    worst-case search options as typed (SuiteSpec.options with target "search"); given, the search
    runs after the episodes. ``progress``: a progress bar on the terminal."""

    suite: str
    policies: Sequence[PolicyEntry]
    out: Path
    design: Design = Design()
    execution: Execution = Execution()
    analysis: AnalysisOptions = AnalysisOptions()
    tracking: Tracking = Tracking()
    video: Video = Video()
    search: dict[str, Any] | None = None
    progress: bool = True

    @classmethod
    def of(cls, suite: str, policies: Sequence[PolicyEntry], out: Path | str, *, options: AnalysisOptions | None = None,
           search: dict[str, Any] | None = None, progress: bool = True, **flat: Any) -> EvaluateRequest:
        """The request from flat settings named as their fields (``episodes=``, ``batch_size=``,
        ``tracking_uri=``/``uri=``, ``video=``/``mode=``, ``episode_timeout_s=``, ...), each sorted
        into its part; an unknown name is a TypeError naming it."""
        base = cls(suite=suite, policies=list(policies), out=Path(out), analysis=options or AnalysisOptions(),
                   search=search, progress=progress)
        return base.replace(**flat)

    def replace(self, **changes: Any) -> EvaluateRequest:
        """A copy with ``changes``: whole parts or top-level fields by name, or single settings of a
        part by their flat names (as ``of`` takes them)."""
        top = {f.name for f in dataclasses.fields(self)} - {"video"}  # video="all": the Video part's mode
        if isinstance(changes.get("video"), Video):
            top.add("video")
        parts: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            if name in top:
                continue
            if name not in _ALIASES and name not in _OWNERS:
                raise TypeError(f"EvaluateRequest got an unknown setting {name!r}")
            part, field_name = _ALIASES.get(name) or _OWNERS[name]
            parts.setdefault(part, {})[field_name] = tuple(value) if field_name == "tasks" and value else value
        direct = {k: v for k, v in changes.items() if k in top}
        if "out" in direct:
            direct["out"] = Path(direct["out"])
        updated = {part: dataclasses.replace(direct.get(part, getattr(self, part)), **fields)
                   for part, fields in parts.items()}
        return dataclasses.replace(self, **direct, **updated)


_PARTS = {"design": Design, "execution": Execution, "tracking": Tracking, "video": Video}
_ALIASES = {"tracking_uri": ("tracking", "uri"), "video": ("video", "mode"), "live_tracking": ("tracking", "live"),
            "camera": ("video", "camera"), "video_stride": ("video", "stride"),
            "video_frames": ("video", "frames"), "experiment": ("tracking", "experiment"), "tags": ("tracking", "tags")}
_OWNERS = {f.name: (part, f.name) for part, kind in _PARTS.items() for f in dataclasses.fields(kind)}
