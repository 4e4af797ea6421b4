"""For notebooks: open a run folder, get its episodes as a pandas DataFrame and its results.

    import evalsuite
    run = evalsuite.open_run("reports/policies-metaworld")
    df = run.episodes()          # one row per final episode, policy names unblinded
    run.results().aggregate      # typed results (evalsuite.results.Results): results.json, or
                                 # rebuilt from the journal if absent; .to_dict() for JSON

``evalsuite export RUN format=csv|parquet [out=FILE]`` writes the same table to a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from evalsuite import fsio
from evalsuite import plan as plan_mod
from evalsuite.errors import UsageError
from evalsuite.journal import JOURNAL_FILE, finished_trials, read
from evalsuite.results import RESULTS_FILE, Results
from evalsuite.results import load as load_results

EXPORT_FORMATS = ("csv", "parquet")


@dataclass
class Run:
    """A run folder, read-only."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.plan, self.key = plan_mod.load(self.path)

    @property
    def max_attempts(self) -> int:
        return plan_mod.saved_max_attempts(self.path)

    def episodes(self, *, all_attempts: bool = False):
        """A DataFrame with one row per final episode (``all_attempts``: every journaled attempt),
        the policy's label beside its blinding code; initial state and policy info as JSON text."""
        import pandas as pd

        records = read(self.path / JOURNAL_FILE, plan=self.plan)
        if not all_attempts:
            records = sorted(finished_trials(records, self.max_attempts).values(), key=lambda r: r.trial_id)
        rows = []
        for r in records:
            row = r.to_dict()
            row["policy"] = self.key[r.policy_code]["label"]
            row["init_state"] = json.dumps(row["init_state"], sort_keys=True)
            row["policy_info"] = json.dumps(row["policy_info"], sort_keys=True)
            row["milestones"] = json.dumps(row["milestones"], sort_keys=True)
            rows.append(row)
        columns = ["trial_id", "task", "policy", "policy_code", "ic_index", "ic_seed", "policy_seed", "attempt",
                   "status", "success", "steps", "episode_return", "reason", "wall_time_s", "policy_fingerprint",
                   "progress", "milestones", "init_state", "policy_info"]
        return pd.DataFrame(rows, columns=columns)

    def results(self) -> Results:
        if (self.path / RESULTS_FILE).exists():
            return load_results(self.path)
        from evalsuite.analysis import AnalysisOptions, analyze

        return analyze(self.plan, self.key, read(self.path / JOURNAL_FILE, plan=self.plan), AnalysisOptions())


def open_run(path: str | Path) -> Run:
    if not (Path(path) / plan_mod.PLAN_FILE).exists():
        raise UsageError(f"{path} is not a run folder (no plan.json)")
    return Run(Path(path))


def export(path: str | Path, fmt: str = "csv", out: str | Path | None = None) -> Path:
    """Write the episodes table of a run folder; returns the file written."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"format={fmt!r}; accepted: {', '.join(EXPORT_FORMATS)}")
    run = open_run(path)
    target = Path(out) if out else run.path / f"episodes.{fmt}"
    frame = run.episodes()
    with fsio.atomic_path(target) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False, encoding="utf-8")
        else:
            try:
                frame.to_parquet(tmp, index=False)
            except ImportError:
                raise UsageError("format=parquet needs pyarrow: pip install pyarrow (or use format=csv)") from None
    return target
