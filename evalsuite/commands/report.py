"""`evalsuite report RUN [RUN ...]`: results and report again from the journal alone; several run
folders become one paired comparison of their policies."""

from __future__ import annotations

from pathlib import Path

from evalsuite import names
from evalsuite.commands import evaluate
from evalsuite.commands.options import Option, folder, parse, run_dir
from evalsuite.errors import UsageError

OPTIONS = (*evaluate.STATISTICS,
           Option("out", "with several run folders: the combined report's folder", parse=folder))


def run(args: list[str]) -> int:
    """One run folder: results and report again. Several: one paired comparison of their policies."""
    from evalsuite.harness import rebuild_report

    folders = [a for a in args if "=" not in a]
    if len(folders) > 1:
        from evalsuite.combine import combine_runs

        v = parse([a for a in args if "=" in a], OPTIONS)
        if "out" not in v:
            raise UsageError("several run folders: name the combined report's folder with out=DIR")
        for name in folders:
            if not (Path(name) / names.PLAN).exists():
                raise UsageError(f"{name} is not a run folder (no plan.json)")
        out = v["out"]
        combine_runs([Path(f) for f in folders], out)
        rebuild_report(out, evaluate.analysis_options(v))
        return 0
    folder, rest = run_dir(args, "report")
    _refuse_blind_trial(folder)
    v = parse(rest, evaluate.STATISTICS)
    rebuild_report(folder, evaluate.analysis_options(v))
    return 0


def _refuse_blind_trial(folder: Path) -> None:
    """A trial with people in the loop stays blind until `evalsuite unblind` says the trials are done."""
    import json

    from evalsuite.trial import TRIAL_FILE

    path = folder / TRIAL_FILE
    if path.exists() and not json.loads(path.read_text()).get("unblinded"):
        raise UsageError(f"{folder} is a blind trial: `evalsuite unblind {folder}` reports it once the trials are done")
