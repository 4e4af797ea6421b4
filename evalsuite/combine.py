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
from typing import Any

from evalsuite import names, streams
from evalsuite import plan as plan_mod
from evalsuite.errors import UsageError
from evalsuite.journal import JOURNAL_FILE, EpisodeRecord, read, write
from evalsuite.plan import BlindingKey, KeyEntry, Plan, Trial

_Loaded = tuple[Path, Plan, BlindingKey]  # a run folder, its plan and its blinding key


def combine_runs(run_dirs: list[Path], out: Path) -> tuple[Plan, BlindingKey, list[EpisodeRecord]]:
    """Write the combined run folder ``out`` and return its plan, key and records."""
    if len(run_dirs) < 2:
        raise UsageError("combining needs at least two run folders")
    if len({d.resolve() for d in run_dirs}) != len(run_dirs):
        raise UsageError("the same run folder is given twice")
    loaded: list[_Loaded] = [(d, *plan_mod.load(d)) for d in run_dirs]
    first = loaded[0][1]
    tasks = _paired_tasks(loaded)
    new_key, recode = _recode(loaded)
    trials, records = _recoded_episodes(loaded, tasks, recode)
    combined_key = BlindingKey(new_key)
    combined = dataclasses.replace(first, tasks=tuple(tasks), episodes=max(p.episodes for _, p, _ in loaded),
                                   max_steps={t: first.max_steps[t] for t in tasks}, codes=tuple(combined_key),
                                   trials=tuple(trials), key_digest=plan_mod.key_digest(combined_key))
    if (out / plan_mod.PLAN_FILE).exists():
        raise UsageError(f"out={out} already holds a run folder; choose a new folder for the combined report")
    plan_mod.save(out, combined, combined_key)
    plan_mod.write_json(out / names.POLICY_NOTES, _policy_notes(loaded, new_key, recode))
    write(out / JOURNAL_FILE, records)
    return combined, combined_key, records


def _paired_tasks(loaded: list[_Loaded]) -> list[str]:
    """The tasks every run has, in the first run's order; refuses runs that did not meet the same
    initial conditions (suite, its specification, seed, options, step limits) or stopped sequentially."""
    first_dir, first, _ = loaded[0]
    tasks = [t for t in first.tasks if all(t in p.tasks for _, p, _ in loaded)]
    if not tasks:
        raise UsageError("the run folders share no task")
    for d, plan, _ in loaded:
        if plan.stopping.sequential:
            raise UsageError(f"{d} stopped sequentially; combine runs of the fixed design only")
        if plan.suite_digest and first.suite_digest and plan.tasks == first.tasks \
                and plan.suite_digest != first.suite_digest:  # (the digest covers the run's own tasks)
            raise UsageError(f"{d} and {first_dir} ran under different specifications of suite {plan.suite!r} "
                             "(tasks, step limits, options or simulator versions); they are not paired")
        for name, value, expected in (("suite", plan.suite, first.suite), ("seed", plan.seed, first.seed),
                                      ("suite_options", plan.suite_options, first.suite_options),
                                      ("max_steps", {t: plan.max_steps[t] for t in tasks},
                                       {t: first.max_steps[t] for t in tasks})):
            if value != expected:
                raise UsageError(f"{d} ran with {name}={value!r}, {first_dir} with {expected!r}; only runs on the "
                                 "same initial conditions (same suite, seed, step limits and options) are combined")
    return tasks


def _recode(loaded: list[_Loaded]) -> tuple[dict[str, KeyEntry], dict[tuple[int, str], str]]:
    """New blinding codes for every policy of every run (code -> entry, naming its source run), and
    (run index, old code) -> new code. A label in more than one run gets the run folder appended."""
    first = loaded[0][1]
    labels = [entry.label for _, _, key in loaded for entry in key.values()]
    codes = plan_mod.blinding_codes(len(labels))
    order = streams.generator(first.seed, streams.BLINDING, len(labels)).permutation(len(labels))
    new_key: dict[str, KeyEntry] = {}
    recode: dict[tuple[int, str], str] = {}
    # the combined listing order: run by run, each run's policies in its own report order
    shown = [(run_index, c) for run_index, (_, _, key) in enumerate(loaded) for c in key.report_order()]
    i = 0
    for run_index, (d, _, key) in enumerate(loaded):
        for old_code, entry in sorted(key.items()):
            label = entry.label if labels.count(entry.label) == 1 else f"{entry.label}@{d}"
            code = codes[int(order[i])]  # codes in a seeded random order, as a plan assigns them
            new_key[code] = dataclasses.replace(entry, label=label, run=str(d),
                                                order=shown.index((run_index, old_code)))
            recode[run_index, old_code] = code
            i += 1
    if len({e.label for e in new_key.values()}) != len(new_key):
        raise UsageError("two run folders hold the same policy under the same label; rename one folder")
    return new_key, recode


def _recoded_episodes(loaded: list[_Loaded], tasks: list[str], recode: dict[tuple[int, str], str]
                      ) -> tuple[list[Trial], list[EpisodeRecord]]:
    """Every run's trials and journaled records on the shared tasks, under the new codes."""
    trials: list[Trial] = []
    records: list[EpisodeRecord] = []
    for run_index, (d, plan, _) in enumerate(loaded):
        for t in plan.trials:
            if t.task in tasks:
                code = recode[run_index, t.policy_code]
                trials.append(Trial(f"{t.task}/{t.ic_index:05d}/{code}", t.task, t.ic_index, t.ic_seed,
                                    t.policy_seed, code))
        for r in read(d / JOURNAL_FILE, plan=plan):
            if r.task in tasks:
                code = recode[run_index, r.policy_code]
                records.append(dataclasses.replace(r, policy_code=code, trial_id=f"{r.task}/{r.ic_index:05d}/{code}"))
    return trials, records


def _policy_notes(loaded: list[_Loaded], new_key: dict[str, KeyEntry], recode: dict[tuple[int, str], str]
                  ) -> dict[str, Any]:
    """What each policy said about itself (family, network evaluations), kept per new label."""
    notes: dict[str, Any] = {}
    for run_index, (d, _, key) in enumerate(loaded):
        if (d / names.POLICY_NOTES).exists():
            saved = json.loads((d / names.POLICY_NOTES).read_text())
            for old_code, entry in key.items():
                if entry.label in saved:
                    notes[new_key[recode[run_index, old_code]].label] = saved[entry.label]
    return notes
