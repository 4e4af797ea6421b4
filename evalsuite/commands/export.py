"""`evalsuite export RUN`: the episodes of a run folder as a table, or with format=lerobot replayed into a
LeRobotDataset (observations, actions, success, progress, trial ids and blinding codes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.commands.options import Option, boolean, folder, integer, listing, one_of, parse, run_dir
from evalsuite.errors import UsageError

LEROBOT_ONLY = ("python", "fps", "trials", "trust", "unblinded")

OPTIONS = (Option("format", "csv | parquet (a table of the episodes) | lerobot (the episodes replayed into a "
                            "LeRobotDataset, written by lerobot in its own environment: `nox -s lerobot_env`)", "csv",
                  one_of("csv", "parquet", "lerobot")),
           Option("out", "file to write (default: RUN/episodes.FORMAT); with format=lerobot a new folder "
                         "(default: RUN/lerobot)", parse=folder),
           Option("python", "format=lerobot: the LeRobot environment's python (default: $EVALSUITE_LEROBOT_PYTHON, "
                            "else .nox/lerobot of the source checkout)"),
           Option("fps", "format=lerobot: frames per second recorded (default: 80 for Meta-World, 20 for robosuite)",
                  parse=integer(1, 10_000)),
           Option("trials", "format=lerobot: [trial id, ...] to export (default: every finished episode)",
                  parse=listing),
           Option("trust", "format=lerobot: [PATH, ...] pickled checkpoints the run's policies name that you trust to "
                           "load for the replay (loading a pickle runs code from it)", parse=listing),
           Option("unblinded", "format=lerobot: also write the policies' labels and parameters (default: blinding "
                               "codes only, even for a simulated run)", "false", boolean))


def run(args: list[str]) -> int:
    """The episodes of a run folder as a table (format=csv|parquet) or replayed into a LeRobotDataset (format=lerobot).

    `evalsuite export RUN format=csv|parquet [out=FILE]`, `evalsuite export RUN format=lerobot [out=DIR]`."""
    from evalsuite.api import export

    folder, rest = run_dir(args, "export")
    v = parse(rest, OPTIONS)
    if v["format"] == "lerobot":
        return _lerobot(folder, v)
    for key in LEROBOT_ONLY:
        if key in v.given:
            raise UsageError(f"{key}= is for format=lerobot; this writes a table")
    print(f"episodes: {export(folder, v['format'], v.get('out'))}")
    return 0


def _lerobot(folder: Path, v: dict[str, Any]) -> int:
    from evalsuite.lerobot_export import export_run

    out = v.get("out") or folder / "lerobot"
    summary = export_run(folder, out, trials=v.get("trials", ()), python=v.get("python", ""), fps=v.get("fps"),
                         trusted=v.get("trust", ()), unblinded=v["unblinded"])
    left = len(summary["left_out"])
    print(f"{out}: {summary['episodes']} episodes, {summary['frames']} frames (LeRobotDataset "
          f"{summary['codebase_version']}: {', '.join(summary['features'])})"
          + (f"; {left} left out (see the lines above)" if left else ""))
    return 0
