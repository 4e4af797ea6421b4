"""For notebooks: open a run folder, get its episodes as a pandas DataFrame and its results.

    import evalsuite
    run = evalsuite.open_run("reports/policies-metaworld")
    df = run.episodes()          # one row per final episode, policy names unblinded
    run.results().aggregate      # typed results (evalsuite.results.Results): results.json, or
                                 # rebuilt from the journal if absent; .to_dict() for JSON

``evalsuite export RUN format=csv|parquet [out=FILE]`` writes the same table to a file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite import fsio, names
from evalsuite import plan as plan_mod
from evalsuite.errors import UsageError
from evalsuite.journal import EpisodeRecord, finished_trials, read
from evalsuite.results import RESULTS_FILE, Results
from evalsuite.results import load as load_results

if TYPE_CHECKING:
    import pandas as pd

EXPORT_FORMATS = ("csv", "parquet")
EPISODE_COLUMNS = ["trial_id", "task", "policy", "policy_code", "ic_index", "ic_seed", "policy_seed", "attempt",
                   "status", "success", "steps", "episode_return", "reason", "wall_time_s", "policy_fingerprint",
                   "progress", "milestones", "held_at_end", "init_state", "policy_info"]
NESTED = ("milestones", "held_at_end", "init_state", "policy_info")  # JSON text in a file
REVIEW_KINDS = ("score", "compare")  # a video review's ratings (evalsuite/review.py): scores and comparisons


class Run:
    """A run folder: every file name of one in one place, each file read at most once (cached),
    never written here. The commands that rebuild from a folder (report, video, export, sync) read
    it through this object; ``evaluate`` keeps what it wrote in memory and never reads it back."""

    PLAN, KEY, JOURNAL, RESULTS = names.PLAN, names.KEY, names.JOURNAL, names.RESULTS
    RUN_INFO, POLICY_NOTES, WORST_CASE = names.RUN_INFO, names.POLICY_NOTES, names.WORST_CASE

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.plan, self.key = plan_mod.load(self.path)

    def file(self, name: str) -> Path:
        """The path of one of the run's files (``Run.PLAN``, ``Run.JOURNAL``, ...), which may not exist."""
        return self.path / name

    @functools.cached_property
    def records(self) -> list[EpisodeRecord]:
        """Every journaled attempt, each checked against the plan (a foreign journal is refused)."""
        return read(self.file(self.JOURNAL), plan=self.plan)

    @functools.cached_property
    def saved_options(self) -> dict[str, Any]:
        """The analysis options results.json was made with ({} without one): a re-analysis keeps them."""
        from evalsuite.results import AnalysisOptions

        if not self.file(self.RESULTS).exists():
            return {}
        saved = plan_mod.read_json(self.file(self.RESULTS))
        options = saved.get("options") if isinstance(saved, dict) else None
        if not isinstance(options, dict) or not set(options) <= {f.name for f in dataclasses.fields(AnalysisOptions)}:
            raise UsageError(f"{self.file(self.RESULTS)}: not evalsuite results (no analysis options); remove it to "
                             "rebuild from the journal with the default options")
        return options

    @property
    def max_attempts(self) -> int:
        """Attempts per trial the run was analysed with: they decide which journaled trials are final."""
        value = self.saved_options.get("max_attempts", 3)
        return value if isinstance(value, int) and value >= 1 else 3

    def final(self, max_attempts: int | None = None) -> dict[str, EpisodeRecord]:
        """The final attempt of every finished trial (trial id -> record): the episodes the results count."""
        return finished_trials(self.records, max_attempts or self.max_attempts)

    @functools.cached_property
    def policy_notes(self) -> dict[str, dict[str, Any]]:
        """What each policy said about itself when the run started (label -> notes); {} if absent or foreign."""
        if not self.file(self.POLICY_NOTES).exists():
            return {}
        notes = plan_mod.read_json(self.file(self.POLICY_NOTES))
        if not isinstance(notes, dict):
            return {}
        return {str(k): v for k, v in notes.items() if isinstance(v, dict)}

    @functools.cached_property
    def worst_case(self) -> dict[str, Any] | None:
        """An MDP family run's worst-case search results (worst_case.json), if it ran one."""
        if not self.file(self.WORST_CASE).exists():
            return None
        found = plan_mod.read_json(self.file(self.WORST_CASE))
        return found if isinstance(found, dict) else None

    @functools.cached_property
    def review(self) -> list[dict[str, Any]] | None:
        """A blinded video review's ratings (review.jsonl, one dict per rating; ``evalsuite review``),
        None without one; a rating of a trial this run did not plan is a one-line UsageError."""
        path = self.file(names.REVIEW)
        if not path.exists():
            return None
        ratings = _read_ratings(path)
        planned = {t.trial_id for t in self.plan.trials}
        foreign = [t for r in ratings for t in r["trials"] if t not in planned]
        if foreign:
            raise UsageError(f"{path}: rates trial {foreign[0]!r}, which this run did not plan (a review of another run?)")
        return ratings

    @functools.cached_property
    def video_index(self) -> dict[str, str]:
        """videos/index.json (trial id -> file); a damaged one is a one-line UsageError."""
        from evalsuite import video

        return video.read_index(self.path)

    def episodes(self, *, all_attempts: bool = False) -> pd.DataFrame:
        """A DataFrame with one row per final episode (``all_attempts``: every journaled attempt),
        the policy's label beside its blinding code; ``milestones`` (name -> first step it held, or
        None), ``held_at_end``, ``init_state`` and ``policy_info`` as Python objects."""
        import pandas as pd

        records = self.records
        if not all_attempts:
            records = sorted(self.final().values(), key=lambda r: r.trial_id)
        rows = []
        for r in records:
            row = r.to_dict()
            row["policy"] = self.key.label(r.policy_code)
            row["reason"] = fsio.one_line(row["reason"])  # a received journal's text: one line each
            rows.append(row)
        return pd.DataFrame(rows, columns=EPISODE_COLUMNS)

    def pairwise(self) -> pd.DataFrame:
        """One row per paired comparison (task, policy A, policy B): the 2x2 counts, the difference
        A - B with its interval and the simultaneous one, the exact p-value and the corrected one."""
        import dataclasses

        import pandas as pd

        rows = []
        for p in self.results().pairwise:
            row = dataclasses.asdict(p)
            worst = row.pop("worst_case") or {}
            row.update({f"if_missing_failed_{k}": v for k, v in worst.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def results(self) -> Results:
        """The typed results: results.json as written, or - without one - analysed from the journal
        with the default options."""
        if (self.path / RESULTS_FILE).exists():
            return load_results(self.path)
        from evalsuite.analysis import AnalysisOptions, analyze

        return analyze(self.plan, self.key, self.records, AnalysisOptions())


def _read_ratings(path: Path) -> list[dict[str, Any]]:
    """review.jsonl's complete lines (a line cut by a kill is not a rating: it was never acknowledged)."""
    data = path.read_bytes()
    out = []
    for number, line in enumerate(data[: data.rfind(b"\n") + 1].decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: line {number} is damaged ({exc.msg}); remove that line to go on") from None
        if not isinstance(entry, dict) or entry.get("action") not in REVIEW_KINDS or \
                not isinstance(entry.get("trials"), list) or not isinstance(entry.get("rater"), str) or \
                not isinstance(entry.get("item"), str):
            raise UsageError(f"{path}: line {number} is not a review rating")
        out.append(entry)
    return out


def open_run(path: str | Path) -> Run:
    """The run folder at ``path`` (``evalsuite.open_run`` too); a folder without plan.json is a
    one-line ``UsageError``."""
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
    for column in NESTED:  # a file's cell holds text: the nested values as JSON
        frame[column] = [json.dumps(v, sort_keys=True) for v in frame[column]]
    with fsio.atomic_path(target) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False, encoding="utf-8")
        else:
            try:
                frame.to_parquet(tmp, index=False)
            except ImportError:
                raise UsageError("format=parquet needs pyarrow: pip install pyarrow (or use format=csv)") from None
    return target
