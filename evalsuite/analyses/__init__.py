"""Analysis sections: what an evaluation reports beyond the core tables, one module each.

A section is an ``AnalysisSpec`` (``evalsuite/specs.py``) registered through the
``evalsuite.analyses`` entry-point group - the built-ins below exactly as a third-party package
would register its own: rliable's aggregates, the mixed model, algorithm groups, task progress,
MDP families, energy, sequential decisions and the run's conventions. ``analysis.analyze`` calls every section's
``compute`` with the run's outcomes; the report and MLflow have one loop each over the sections
present in ``results.json`` (``report``/``figures``/``metrics``/``tags``). Adding a section is one
module plus one line here (or in a plugin's own entry point).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evalsuite.results import AnalysisOptions, Results, TaskResult
from evalsuite.specs import AnalysisSpec, load_entry_point

if TYPE_CHECKING:
    from evalsuite.journal import EpisodeRecord
    from evalsuite.outcomes import Outcomes
    from evalsuite.plan import BlindingKey, Plan

BUILTIN = [  # ``order``: results.json's order of sections (and the report's within each part)
    AnalysisSpec(id="aggregates", compute="evalsuite.analyses.aggregates:compute",
                 report="evalsuite.analyses.aggregates:report", figures="evalsuite.analyses.aggregates:figures",
                 metrics="evalsuite.analyses.aggregates:metrics", order=1, part="detail"),
    AnalysisSpec(id="mixed_model", compute="evalsuite.analyses.mixed:compute", report="evalsuite.analyses.mixed:report",
                 metrics="evalsuite.analyses.mixed:metrics", order=2, part="detail"),
    AnalysisSpec(id="groups", compute="evalsuite.analyses.groups:compute", report="evalsuite.analyses.groups:report",
                 order=3, part="detail"),
    AnalysisSpec(id="sequential", compute="evalsuite.analyses.sequential:compute",
                 report="evalsuite.analyses.sequential:report", tags="evalsuite.analyses.sequential:tags", order=90,
                 part="detail"),
    AnalysisSpec(id="family", compute="evalsuite.analyses.family:compute", report="evalsuite.analyses.family:report",
                 figures="evalsuite.analyses.family:figures", metrics="evalsuite.analyses.family:metrics", order=10),
    AnalysisSpec(id="energy", compute="evalsuite.analyses.energy:compute", report="evalsuite.analyses.energy:report",
                 figures="evalsuite.analyses.energy:figures", metrics="evalsuite.analyses.energy:metrics", order=20),
    AnalysisSpec(id="progress", compute="evalsuite.analyses.progress:compute",
                 report="evalsuite.analyses.progress:report", metrics="evalsuite.analyses.progress:metrics", order=5),
    AnalysisSpec(id="trial", compute="evalsuite.analyses.trial:compute", report="evalsuite.analyses.trial:report",
                 order=1),
    AnalysisSpec(id="review", compute="evalsuite.analyses.review:compute", report="evalsuite.analyses.review:report",
                 metrics="evalsuite.analyses.review:metrics", order=30),
    AnalysisSpec(id="contracts", compute="evalsuite.analyses.contracts:compute",
                 report="evalsuite.analyses.contracts:report", order=95, part="detail"),
]


@dataclass(frozen=True)
class AnalysisInput:
    """What a section's ``compute`` gets: the plan, the blinding key, one final record per finished
    trial, code -> label, the confidence level and the root seed (for a section's own resampling);
    and what the core analysis already has: its options, the codes in report order, the outcome
    cube, the per-task results, every journaled attempt, and inputs made beside the episodes (an
    MDP family's worst-case search, a video review's ratings). ``options`` and ``outcomes`` are
    None only where a caller builds the input by hand for a section that does not read them
    (``analysis.analyze`` passes both)."""

    plan: Plan
    key: BlindingKey
    records: list[EpisodeRecord]
    label: dict[str, str]
    level: float
    seed: int
    options: AnalysisOptions | None = None
    codes: list[str] = field(default_factory=list)
    outcomes: Outcomes | None = None
    per_task: list[TaskResult] = field(default_factory=list)
    all_records: list[EpisodeRecord] = field(default_factory=list)
    worst_case: dict[str, Any] | None = None
    review: list[dict[str, Any]] | None = None  # a blinded video review's ratings (review.jsonl), if any


def registered() -> list[AnalysisSpec]:
    from evalsuite import registry

    return sorted(registry.analyses.all().values(), key=lambda spec: (spec.order, spec.id))


def compute_all(inp: AnalysisInput) -> dict[str, Any]:
    """Every registered section that has something to say about this run, by id."""
    out = {}
    for spec in registered():
        section = load_entry_point(spec.compute)(inp)
        if section:
            out[spec.id] = section
    return out


def present(results: Results, part: str, where: str | None = None) -> Iterator[tuple[AnalysisSpec, Any]]:
    """(spec, the function for ``part``: report | figures | metrics | tags) of the sections in
    ``results``; ``where``: only those shown in that part of the report (sections | detail)."""
    for spec in registered():
        entry = getattr(spec, part)
        if entry and results.section(spec.id) and where in (None, spec.part):
            yield spec, load_entry_point(entry)
