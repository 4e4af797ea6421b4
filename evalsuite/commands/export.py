"""`evalsuite export RUN`: the episodes of a run folder as a table."""

from __future__ import annotations

from evalsuite.commands.options import Option, folder, parse, run_dir

OPTIONS = (Option("format", "csv | parquet", "csv"),
           Option("out", "file to write (default: RUN/episodes.FORMAT)", parse=folder))


def run(args: list[str]) -> int:
    """The episodes of a run folder as a table: `evalsuite export RUN format=csv|parquet [out=FILE]`."""
    from evalsuite.api import export

    folder, rest = run_dir(args, "export")
    v = parse(rest, OPTIONS)
    print(f"episodes: {export(folder, v['format'], v.get('out'))}")
    return 0
