"""Analysis sections: what an evaluation reports beyond the core tables, one module each.

A section is an ``AnalysisSpec`` (``evalsuite/specs.py``) registered through the
``evalsuite.analyses`` entry-point group - the built-ins below exactly as a third-party package
would register its own. ``analysis.analyze`` calls every section's ``compute`` with the run's
final episodes; the report and MLflow call its ``report``/``figures``/``metrics`` for the
sections present in ``results.json``. Adding a section is one module plus one line here (or in a
plugin's own entry point).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from evalsuite.results import Results
from evalsuite.specs import AnalysisSpec, load_entry_point

BUILTIN = [
    AnalysisSpec(id="family", compute="evalsuite.analyses.family:compute", report="evalsuite.analyses.family:report",
                 figures="evalsuite.analyses.family:figures", metrics="evalsuite.analyses.family:metrics", order=10),
    AnalysisSpec(id="energy", compute="evalsuite.analyses.energy:compute", report="evalsuite.analyses.energy:report",
                 figures="evalsuite.analyses.energy:figures", metrics="evalsuite.analyses.energy:metrics", order=20),
    AnalysisSpec(id="progress", compute="evalsuite.analyses.progress:compute",
                 report="evalsuite.analyses.progress:report", metrics="evalsuite.analyses.progress:metrics", order=5),
]


@dataclass(frozen=True)
class AnalysisInput:
    """What a section's ``compute`` gets: the plan, the blinding key, one final record per finished
    trial (outcomes and policy errors; infrastructure errors left out), code -> label, the options."""

    plan: Any  # evalsuite.plan.Plan
    key: dict[str, dict[str, Any]]
    records: list[Any]  # evalsuite.journal.EpisodeRecord
    label: dict[str, str]
    level: float
    seed: int  # for a section's own resampling: the plan's root seed


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


def present(results: Results, part: str) -> Iterator[tuple[AnalysisSpec, Any]]:
    """(spec, the function for ``part``: report | figures | metrics) of the sections in ``results``."""
    for spec in registered():
        entry = getattr(spec, part)
        if entry and results.section(spec.id):
            yield spec, load_entry_point(entry)
