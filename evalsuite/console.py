"""The operator console's state (``evalsuite operator``): which trial comes next for whom, and every
operator action journaled before it is acknowledged.

Two files, both appended and fsynced line by line: the run's episode journal (the outcomes, as a
simulated run writes them, so the analysis is the same) and ``console.jsonl`` (claims, starts,
stops, aborts, scores and corrections: who did what and when). Everything is rebuilt from them on
start, so a reloaded page, a closed laptop or a killed server resumes at the right trial with
nothing lost. A trial is claimed by the operator who opens it; another operator is never given it,
and a trial already scored cannot be scored again - only corrected, with the old values kept.
Nothing here hands a policy's name, parameters or command to a caller: the page sees codes only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite import fsio, names, sequential
from evalsuite import plan as plan_mod
from evalsuite import trial as trial_mod
from evalsuite.errors import UsageError
from evalsuite.journal import ERROR, FAILURE, SUCCESS, EpisodeRecord, Journal, finished_trials
from evalsuite.plan import Trial

CONSOLE_LOG = "console.jsonl"
MAX_ATTEMPTS = 3  # aborted trials run again up to this many attempts (as infrastructure errors do)


@dataclass(frozen=True)
class Score:
    success: bool
    furthest: int  # index of the furthest milestone reached, -1: none
    tags: tuple[str, ...] = ()
    notes: str = ""


class Console:
    """The run folder's trials as operators see them. Thread-safe: every action holds one lock."""

    def __init__(self, run_dir: Path, confirmed_command: str = "", confirmed_servers: tuple[str, ...] = ()) -> None:
        """``confirmed_command`` / ``confirmed_servers``: the command template, or the policy servers, as
        the operator's own command line gave them; the folder's run or are routed to only if they are
        the same (a received folder never decides what drives the robot)."""
        self.run_dir, self._confirmed = run_dir, confirmed_command
        self._confirmed_servers = set(confirmed_servers)
        self.active: str | None = None  # router mode: the trial whose policy server the robot is forwarded to
        self.plan, self._key = plan_mod.load(run_dir)
        meta = json.loads((run_dir / trial_mod.TRIAL_FILE).read_text())
        self.task = trial_mod.TrialTask.from_dict(meta["task"])
        self.mode, self._run_cmd = meta["mode"], meta["run_cmd"]
        self.journal = Journal(run_dir / names.JOURNAL, self.plan)
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self.claims: dict[str, str] = {}  # trial id -> operator, until scored or aborted
        self.started: dict[str, float] = {}
        self.log: list[dict[str, Any]] = []
        path = run_dir / CONSOLE_LOG
        if path.exists():
            data = path.read_bytes()
            for line in data[: data.rfind(b"\n") + 1].decode().splitlines():
                self._replay(json.loads(line))
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self.trials = {t.trial_id: t for t in self.plan.trials}
        self.number = {t.trial_id: i for i, t in enumerate(self.plan.trials)}

    # --- the log ----------------------------------------------------------------------------------------

    def _replay(self, entry: dict[str, Any]) -> None:
        self.log.append(entry)
        action, trial_id = entry["action"], entry.get("trial", "")
        if action == "claim":
            self.claims[trial_id] = entry["operator"]
        elif action == "start":
            self.started[trial_id] = entry["at"]
        elif action in ("score", "abort"):
            self.claims.pop(trial_id, None)
            self.started.pop(trial_id, None)

    def _write(self, action: str, operator: str, **fields: Any) -> None:
        entry = {"action": action, "operator": operator, "at": round(time.time(), 3), **fields}
        os.write(self._fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
        os.fsync(self._fd)
        self._replay(entry)

    # --- what comes next --------------------------------------------------------------------------------

    @property
    def finished(self) -> dict[str, EpisodeRecord]:
        return finished_trials(self.journal.records, MAX_ATTEMPTS)

    def remaining(self) -> list[Trial]:
        """Trials still to run, in plan order (with sequential stopping: the current round's, for
        tasks not yet decided; none once every pair is decided)."""
        if self.plan.stopping.sequential:
            return sequential.remaining_trials(self.plan, self.journal.records, MAX_ATTEMPTS)
        done = self.finished
        return [t for t in self.plan.trials if t.trial_id not in done]

    def next_for(self, operator: str) -> Trial | None:
        """The operator's own claimed trial, else the first one nobody holds."""
        with self._lock:
            remaining = self.remaining()
            mine = [t for t in remaining if self.claims.get(t.trial_id) == operator]
            free = [t for t in remaining if t.trial_id not in self.claims]
            return next(iter(mine or free), None)

    def decided(self) -> bool:
        """Sequential stopping: every pair decided (no trial remains although the plan has more)."""
        return self.plan.stopping.sequential and not self.remaining() and len(self.finished) < len(self.plan.trials)

    # --- actions ----------------------------------------------------------------------------------------

    def _check_open(self, trial_id: str, operator: str) -> Trial:
        if trial_id not in self.trials:
            raise UsageError(f"no trial {trial_id!r} in this run")
        if trial_id in self.finished:
            raise UsageError(f"trial {trial_id} is already scored; correct it from the log instead")
        holder = self.claims.get(trial_id)
        if holder not in (None, operator):
            raise UsageError(f"trial {trial_id} is being run by {holder}; take the next one")
        return self.trials[trial_id]

    def claim(self, trial_id: str, operator: str) -> Trial:
        with self._lock:
            trial = self._check_open(trial_id, operator)
            if trial_id not in self.claims:
                self._write("claim", operator, trial=trial_id)
            return trial

    def start(self, trial_id: str, operator: str) -> None:
        """Run the hidden command for the trial (mode=command); its output goes to a log beside the
        key, never to the page."""
        with self._lock:
            trial = self._check_open(trial_id, operator)
            if self.mode == "router":
                self._start_routing(trial_id, operator)
                return
            if self.mode != "command":
                raise UsageError("this run is manual: run the robot, then record the outcome")
            if self._confirmed != self._run_cmd:
                raise UsageError("the console was started without confirming this folder's command (run_cmd=); "
                                 "restart it as `evalsuite operator` says")
            if trial_id in self._processes and self._processes[trial_id].poll() is None:
                return
            if trial_id not in self.claims:
                self._write("claim", operator, trial=trial_id)
            command = trial_mod.command_for(self._run_cmd, self._key[trial.policy_code], trial)
            logs = fsio.make_dir(self.run_dir / "console-logs", root=self.run_dir)  # never through a link
            out = os.open(logs / f"{self.number[trial_id]:05d}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT
                          | os.O_NOFOLLOW, 0o644)
            try:
                self._processes[trial_id] = subprocess.Popen(shlex.split(command), stdout=out,
                                                             stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                os.close(out)
            self._write("start", operator, trial=trial_id)

    def _start_routing(self, trial_id: str, operator: str) -> None:
        if self._confirmed_servers != self.servers():
            raise UsageError("the console was started without confirming this folder's policy servers (servers=); "
                             "restart it as `evalsuite operator` says")
        if self.active not in (None, trial_id):
            raise UsageError(f"trial {self.number[self.active] + 1} is running; stop, score or abort it first")
        if trial_id not in self.claims:
            self._write("claim", operator, trial=trial_id)
        self.active = trial_id
        self._write("start", operator, trial=trial_id)

    def servers(self) -> set[str]:
        """The policy servers the key names (router mode)."""
        return {str(self._key[code].params.get("server", "")) for code in self.plan.codes}

    def route(self) -> str | None:
        """Router mode: the policy server of the trial now started (never shown to anyone)."""
        with self._lock:
            if self.mode != "router" or self.active is None:
                return None
            return str(self._key[self.trials[self.active].policy_code].params["server"])

    def process_state(self, trial_id: str) -> str:
        """running | exited N | not started | started before a restart (its process is not ours)."""
        if self.mode == "router":
            return "forwarding the robot to this trial's policy" if self.active == trial_id else "not started"
        process = self._processes.get(trial_id)
        if process is not None:
            code = process.poll()
            return "running" if code is None else f"exited {code}"
        return "started before the console restarted" if trial_id in self.started else "not started"

    def stop(self, trial_id: str, operator: str) -> None:
        with self._lock:
            self._check_open(trial_id, operator)
            process = self._processes.get(trial_id)
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 15)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            if self.active == trial_id:
                self.active = None
            self._write("stop", operator, trial=trial_id)

    def abort(self, trial_id: str, operator: str, reason: str) -> None:
        """The trial did not happen as planned (the robot faulted, the scene was wrong): an
        infrastructure error, run again up to MAX_ATTEMPTS attempts."""
        if not reason.strip():
            raise UsageError("say why the trial is aborted")
        self.stop(trial_id, operator)
        with self._lock:
            trial = self._check_open(trial_id, operator)
            self.journal.append(self._record(trial, ERROR, f"aborted by the operator: {reason.strip()}", operator,
                                             Score(False, -1, (), reason.strip())))
            self._write("abort", operator, trial=trial_id, reason=reason.strip())

    def score(self, trial_id: str, operator: str, score: Score) -> None:
        with self._lock:
            trial = self._check_open(trial_id, operator)
            self._check_score(score)
            self.journal.append(self._record(trial, SUCCESS if score.success else FAILURE, "", operator, score))
            if self.active == trial_id:
                self.active = None
            self._write("score", operator, trial=trial_id, **self._score_fields(score))

    def correct(self, trial_id: str, operator: str, score: Score, why: str) -> None:
        """A new outcome for a scored trial; the journal keeps the old record and the log the old
        values, who changed them and when."""
        with self._lock:
            if trial_id not in self.finished:
                raise UsageError(f"trial {trial_id} is not scored yet; score it first")
            if not why.strip():
                raise UsageError("say why the outcome is corrected")
            self._check_score(score)
            old = self.finished[trial_id]
            trial = self.trials[trial_id]
            record = self._record(trial, SUCCESS if score.success else FAILURE, f"corrected: {why.strip()}", operator,
                                  score, attempt=old.attempt + 1)
            self.journal.append(record)
            self._write("correct", operator, trial=trial_id, why=why.strip(), new=self._score_fields(score),
                        old={"success": old.success, "furthest": self._furthest(old),
                             "tags": old.policy_info.get("failure_tags", []), "notes": old.policy_info.get("notes", "")})

    def _check_score(self, score: Score) -> None:
        if not -1 <= score.furthest < len(self.task.milestones):
            raise UsageError(f"milestone {score.furthest} is not one of this task's")
        unknown = [t for t in score.tags if t not in self.task.failure_tags]
        if unknown:
            raise UsageError(f"failure tag {unknown[0]!r} is not one of this task's")

    @staticmethod
    def _score_fields(score: Score) -> dict[str, Any]:
        return {"success": score.success, "furthest": score.furthest, "tags": list(score.tags), "notes": score.notes}

    def _furthest(self, record: EpisodeRecord) -> int:
        reached = [i for i, m in enumerate(self.task.milestones) if record.milestones.get(m) is not None]
        return max(reached, default=-1)

    def _record(self, trial: Trial, status: str, reason: str, operator: str, score: Score,
                attempt: int | None = None) -> EpisodeRecord:
        attempts = sum(1 for r in self.journal.records if r.trial_id == trial.trial_id)
        milestones = {m: (i + 1 if i <= score.furthest else None) for i, m in enumerate(self.task.milestones)}
        n = len(self.task.milestones)
        progress = 1.0 if score.success else ((score.furthest + 1) / (n + 1) if n else None)
        started = self.started.get(trial.trial_id)
        return EpisodeRecord(
            trial_id=trial.trial_id, task=trial.task, policy_code=trial.policy_code, ic_index=trial.ic_index,
            ic_seed=trial.ic_seed, policy_seed=trial.policy_seed, attempt=attempt or attempts + 1, status=status,
            success=status == SUCCESS, steps=0, episode_return=0.0,
            reason=reason or (", ".join(score.tags) if not score.success else ""),
            wall_time_s=round(time.time() - started, 3) if started else 0.0,
            policy_fingerprint=trial_mod.fingerprint(self._key[trial.policy_code]),
            policy_info={"operator": operator, "mode": self.mode, "failure_tags": list(score.tags),
                         "notes": score.notes},
            milestones=milestones if status != ERROR else {}, progress=progress if status != ERROR else None)

    def close(self) -> None:
        self.journal.close()
        os.close(self._fd)
