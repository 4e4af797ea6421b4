"""`evalsuite unblind`: a trial run's statistics and report with the policies' names."""

from __future__ import annotations

from evalsuite.commands.options import parse, run_dir
from evalsuite.errors import UsageError

OPTIONS = ()


def run(args: list[str]) -> int:
    """Mark the trial run unblinded, then analyse it as `evalsuite report` does."""
    import json

    from evalsuite import fsio, trial
    from evalsuite.harness import rebuild_report

    folder, rest = run_dir(args, "unblind")
    parse(rest, OPTIONS)
    path = folder / trial.TRIAL_FILE
    if not path.exists():
        raise UsageError(f"{folder} is not a trial run folder (no {trial.TRIAL_FILE}); simulated runs are unblinded "
                         "by their report")
    meta = json.loads(path.read_text())
    fsio.write_json(path, {**meta, "unblinded": True}, root=folder)
    rebuild_report(folder)
    return 0
