"""Several run folders as one comparison: ``evalsuite report RUN RUN ... out=DIR``.

Runs with the same suite, seed and step limits met the same initial conditions (an initial
condition is a pure function of seed, task and index), so their policies can be compared paired,
even when they were evaluated on different days. The combined folder is an ordinary run folder
(plan, blinding key, journal, results, report) whose policies carry new blinding codes; a label
that occurs in more than one run gets the run folder's name appended.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from evalsuite import plan as plan_mod
from evalsuite.errors import UsageError
from evalsuite.journal import JOURNAL_FILE, EpisodeRecord, read
from evalsuite.plan import Plan, Trial


def combine_runs(run_dirs: list[Path], out: Path) -> tuple[Plan, dict, list[EpisodeRecord]]:
    """Write the combined run folder ``out`` and return its plan, key and records."""
    if len(run_dirs) < 2:
        raise UsageError("combining needs at least two run folders")
    loaded = [(d, *plan_mod.load(d)) for d in run_dirs]
    first_dir, first, _ = loaded[0]
    for d, plan, _ in loaded[1:]:
        for name in ("suite", "seed", "max_steps", "suite_options"):
            if getattr(plan, name) != getattr(first, name):
                raise UsageError(f"{d} ran with {name}={getattr(plan, name)!r}, {first_dir} with "
                                 f"{getattr(first, name)!r}; only runs on the same initial conditions (same suite, "
                                 "seed, step limits and options) are combined")
        if plan.stopping.get("rule") != "fixed":
            raise UsageError(f"{d} stopped sequentially; combine runs of the fixed design only")
    tasks = [t for t in first.tasks if all(t in p.tasks for _, p, _ in loaded)]
    if not tasks:
        raise UsageError("the run folders share no task")
    labels = [entry["label"] for _, _, key in loaded for entry in key.values()]
    codes = plan_mod.blinding_codes(len(labels))
    new_key: dict[str, dict] = {}
    recode: dict[tuple[int, str], str] = {}
    i = 0
    for run_index, (d, plan, key) in enumerate(loaded):
        for old_code, entry in sorted(key.items()):
            label = entry["label"] if labels.count(entry["label"]) == 1 else f"{entry['label']}@{d.name}"
            new_key[codes[i]] = {**entry, "label": label, "run": str(d)}
            recode[run_index, old_code] = codes[i]
            i += 1
    trials, records = [], []
    for run_index, (d, plan, _) in enumerate(loaded):
        for t in plan.trials:
            if t.task in tasks:
                code = recode[run_index, t.policy_code]
                trials.append(Trial(f"{t.task}/{t.ic_index:05d}/{code}", t.task, t.ic_index, t.ic_seed,
                                    t.policy_seed, code))
        for r in read(d / JOURNAL_FILE):
            if r.task in tasks:
                code = recode[run_index, r.policy_code]
                records.append(dataclasses.replace(r, policy_code=code, trial_id=f"{r.task}/{r.ic_index:05d}/{code}"))
    combined = dataclasses.replace(first, tasks=tuple(tasks), episodes=max(p.episodes for _, p, _ in loaded),
                                   codes=tuple(codes), trials=tuple(trials), key_digest=plan_mod.key_digest(new_key))
    if (out / plan_mod.PLAN_FILE).exists():
        raise UsageError(f"out={out} already holds a run folder; choose a new folder for the combined report")
    plan_mod.save(out, combined, new_key)
    with open(out / JOURNAL_FILE, "w") as fh:
        for r in records:
            fh.write(json.dumps(r.to_dict(), separators=(",", ":")) + "\n")
    return combined, new_key, records
