"""The episode journal: one JSON line per finished episode attempt, flushed and fsynced at once.

A crash loses at most the episodes in flight. A line cut short by a kill is dropped (and the file
truncated to its last complete line) when the journal is reopened.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite import names

JOURNAL_FILE = names.JOURNAL

# A policy error (exception in the policy, a non-finite or wrong-shaped action, a policy over its
# time, a simulator made unstable by the policy's actions) is a failure of that policy: an outcome,
# never retried. ERROR is an infrastructure fault (environment not built or reset, a worker that
# died, I/O): not an outcome, retried up to max_attempts, reported as missing if it persists.
SUCCESS, FAILURE, POLICY_ERROR, ERROR = "success", "failure", "policy_error", "error"
STATUSES = (SUCCESS, FAILURE, POLICY_ERROR, ERROR)


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    trial_id: str
    task: str
    policy_code: str
    ic_index: int
    ic_seed: int
    policy_seed: int
    attempt: int
    status: str  # success | failure | policy_error | error (infrastructure)
    success: bool
    steps: int
    episode_return: float
    reason: str
    wall_time_s: float
    policy_fingerprint: str
    init_state: dict[str, Any] = field(default_factory=dict)
    policy_info: dict[str, Any] = field(default_factory=dict)  # what the policy reported (e.g. its energy)
    milestones: dict[str, int | None] = field(default_factory=dict)  # first step each milestone held (None: never)
    progress: float | None = None  # the episode's best progress score in [0, 1] (1 on success); None: not defined
    held_at_end: list[str] | None = None  # the milestones still holding at the last step (None: not recorded)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def is_outcome(self) -> bool:
        """Success, failure or policy error (a failure); infrastructure errors are not outcomes."""
        return self.status != ERROR


def read(path: Path, *, repair: bool = False, plan: Any = None) -> list[EpisodeRecord]:
    """All complete records; with ``repair`` a torn last line is cut off the file. With the run's
    ``plan`` every record must be one of its trials (see ``_check_planned``): a journal that is not
    this plan's is refused, never relabelled under the plan's codes."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if repair and len(complete) != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(len(complete))
            os.fsync(fh.fileno())
    trials = {t.trial_id: t for t in plan.trials} if plan is not None else None
    fingerprints: dict[tuple[str, str], str] = {}
    records = []
    for number, line in enumerate(complete.decode(errors="replace").splitlines(), start=1):
        if line.strip():
            record = _upgraded(_parse(line, path, number))
            if trials is not None:
                _check_planned(record, trials, fingerprints, path, number)
            records.append(record)
    return records


_FIELDS = {f.name for f in dataclasses.fields(EpisodeRecord)}
_REQUIRED = {f.name for f in dataclasses.fields(EpisodeRecord)
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def _parse(line: str, path: Path, number: int) -> EpisodeRecord:
    """One journal line, or a one-line UsageError naming the file and line: a damaged or foreign
    journal is never half-read (nothing in it is changed either)."""
    from evalsuite.errors import UsageError

    def damaged(why: str) -> UsageError:
        return UsageError(f"{path}:{number}: {why}; this is not an evalsuite episode record - repair or remove "
                          "that line (the other records are intact)")

    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise damaged(f"not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise damaged(f"a JSON {type(data).__name__}, not an object")
    unknown, missing = set(data) - _FIELDS, _REQUIRED - set(data)
    if unknown or missing:
        raise damaged(f"unknown field {sorted(unknown)[0]!r}" if unknown else f"missing field {sorted(missing)[0]!r}")
    if data["status"] not in STATUSES:
        raise damaged(f"status {data['status']!r}, accepted: {', '.join(STATUSES)}")
    if data["success"] is not (data["status"] == SUCCESS):
        raise damaged(f"status {data['status']!r} contradicts success={json.dumps(data['success'])}")
    try:
        return EpisodeRecord(**data)
    except TypeError as exc:
        raise damaged(str(exc)) from None


_PLANNED_FIELDS = ("task", "ic_index", "ic_seed", "policy_seed", "policy_code")


def _check_planned(record: EpisodeRecord, trials: dict[str, Any], fingerprints: dict[tuple[str, str], str],
                   path: Path, number: int) -> None:
    """A record belongs to the plan's trial of its id - same task, initial condition, seeds and
    blinding code - and one policy (task, code) has one fingerprint throughout the journal."""
    from evalsuite.errors import UsageError

    def refused(why: str) -> UsageError:
        return UsageError(f"{path}:{number}: {why}; this journal is not this run's plan.json - restore the run "
                          "folder's own files or start a new out= folder")

    trial = trials.get(record.trial_id)
    if trial is None:
        raise refused(f"trial_id {record.trial_id!r} is not a trial of the plan")
    for name in _PLANNED_FIELDS:
        if getattr(record, name) != getattr(trial, name):
            raise refused(f"{name} {getattr(record, name)!r}, the plan's trial has {getattr(trial, name)!r}")
    if record.policy_fingerprint:
        seen = fingerprints.setdefault((record.task, record.policy_code), record.policy_fingerprint)
        if seen != record.policy_fingerprint:
            raise refused(f"policy_fingerprint {record.policy_fingerprint!r}, earlier records of policy "
                          f"{record.policy_code} on {record.task} have {seen!r} (two policies under one code)")


# Journals written before policy errors had a status of their own recorded them as "error"; these
# reasons were always the policy's doing, so such records are read as the failures they were.
_OLD_POLICY_REASONS = ("policy error:", "non-finite action", "policy returned actions", "policy reset failed:",
                       "wall-clock timeout", "simulator error:")


def _upgraded(record: EpisodeRecord) -> EpisodeRecord:
    if record.status == ERROR and record.reason.startswith(_OLD_POLICY_REASONS):
        return dataclasses.replace(record, status=POLICY_ERROR)
    return record


def as_line(record: EpisodeRecord) -> str:
    """A record as one journal line."""
    return json.dumps(record.to_dict(), separators=(",", ":")) + "\n"


def write(path: Path, records: list[EpisodeRecord]) -> None:
    """A new journal holding ``records`` (a combined or continued run folder), written atomically."""
    from evalsuite import fsio

    fsio.write_text(path, "".join(as_line(r) for r in records), root=path.parent)


class Journal:
    """Append-only writer; ``append`` returns only after the record is on disk."""

    def __init__(self, path: Path, plan: Any = None) -> None:
        self.path = path
        self.records = read(path, repair=True, plan=plan)
        # never through a link: a received folder's episodes.jsonl -> elsewhere is refused, not appended to
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            from evalsuite.errors import UsageError

            raise UsageError(f"{path} is a symbolic link; evalsuite never writes through a link - remove it and "
                             "rerun") from None

    def append(self, record: EpisodeRecord) -> None:
        line = as_line(record).encode()
        os.write(self._fd, line)
        os.fsync(self._fd)
        self.records.append(record)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def finished_trials(records: list[EpisodeRecord], max_attempts: int) -> dict[str, EpisodeRecord]:
    """trial id -> its final record: the outcome, or the last error once attempts are spent."""
    done: dict[str, EpisodeRecord] = {}
    attempts: dict[str, int] = {}
    for r in records:
        attempts[r.trial_id] = attempts.get(r.trial_id, 0) + 1
        if r.is_outcome or attempts[r.trial_id] >= max_attempts:
            done[r.trial_id] = r
    return done


def attempts_so_far(records: list[EpisodeRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.trial_id] = counts.get(r.trial_id, 0) + 1
    return counts
