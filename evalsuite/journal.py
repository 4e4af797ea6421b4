"""The episode journal: one JSON line per finished episode attempt, flushed and fsynced at once.

A crash loses at most the episodes in flight. A line cut short by a kill is dropped (and the file
truncated to its last complete line) when the journal is reopened.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOURNAL_FILE = "episodes.jsonl"

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


def read(path: Path, *, repair: bool = False) -> list[EpisodeRecord]:
    """All complete records; with ``repair`` a torn last line is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if repair and len(complete) != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(len(complete))
            os.fsync(fh.fileno())
    records = []
    for number, line in enumerate(complete.decode(errors="replace").splitlines(), start=1):
        if line.strip():
            records.append(_upgraded(_parse(line, path, number)))
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
    try:
        return EpisodeRecord(**data)
    except TypeError as exc:
        raise damaged(str(exc)) from None


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
    """A new journal holding ``records`` (a combined or continued run folder), fsynced."""
    with open(path, "w") as fh:
        fh.write("".join(as_line(r) for r in records))
        fh.flush()
        os.fsync(fh.fileno())


class Journal:
    """Append-only writer; ``append`` returns only after the record is on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = read(path, repair=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: EpisodeRecord) -> None:
        line = as_line(record).encode()
        os.write(self._fd, line)
        os.fsync(self._fd)
        self.records.append(record)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
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
