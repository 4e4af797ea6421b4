"""The outcome cube: every policy's final episode on every task and initial condition, built once
from the journal. Per-task rates, paired comparisons, the mixed model, algorithm groups and the
sections read their tables from it instead of scanning the records again.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from evalsuite.journal import ERROR, POLICY_ERROR, EpisodeRecord, finished_trials


@dataclass
class Cell:
    """One policy (code) on one task, in the journal's order: the success of each initial
    condition with an outcome (a policy error is a failure), those lost to infrastructure errors,
    the policy errors, the steps of each outcome and the policy's fingerprint."""

    outcomes: dict[int, bool] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)
    policy_errors: int = 0
    steps: list[int] = field(default_factory=list)
    fingerprint: str = ""


class Outcomes:
    """task x code x initial condition -> the final episode, from ``records`` (every attempt) with
    ``max_attempts`` deciding which trials are final."""

    def __init__(self, tasks: Sequence[str], codes: Sequence[str], records: Sequence[EpisodeRecord],
                 max_attempts: int) -> None:
        self.tasks, self.codes = tuple(tasks), tuple(codes)
        self.final: dict[str, EpisodeRecord] = finished_trials(list(records), max_attempts)
        self._cells: dict[tuple[str, str], Cell] = {}
        for r in self.final.values():
            cell = self._cells.setdefault((r.task, r.policy_code), Cell())
            cell.fingerprint = r.policy_fingerprint
            if r.status == ERROR:
                cell.missing.append(r.ic_index)
                continue
            cell.outcomes[r.ic_index] = r.success
            cell.policy_errors += r.status == POLICY_ERROR
            cell.steps.append(r.steps)

    def cell(self, task: str, code: str) -> Cell:
        return self._cells.get((task, code), Cell())

    def table(self, task: str, code: str, *, missing_as_failures: bool = False) -> dict[int, bool]:
        """initial condition -> success of one policy on one task (with the missing ones as failures)."""
        cell = self.cell(task, code)
        if not missing_as_failures:
            return cell.outcomes
        return {**{i: False for i in cell.missing}, **cell.outcomes}

    @functools.cached_property
    def triples(self) -> dict[tuple[str, str, int], bool]:
        """(task, code, initial condition) -> success, for every outcome (built once, shared by the
        sections that fit over all episodes)."""
        return {(t, c, i): v for (t, c), cell in self._cells.items() for i, v in cell.outcomes.items()}

    @property
    def policy_errors(self) -> int:
        return sum(cell.policy_errors for cell in self._cells.values())

    @property
    def missing(self) -> int:
        return sum(len(cell.missing) for cell in self._cells.values())
