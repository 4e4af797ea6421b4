"""`evalsuite video RUN`: render episodes of a finished run folder on demand."""

from __future__ import annotations

from evalsuite.commands.options import Option, integer, listing, one_of, parse, run_dir
from evalsuite.errors import UsageError

OPTIONS = (Option("trial", "[trial id, ...] to render (e.g. pick-place/00003/B); default: the episodes video= chooses",
                  parse=listing),
           Option("video", "sample | failures | all: which episodes, without trial=", "sample",
                  one_of("sample", "failures", "all")),
           Option("camera", "camera (default: the suite's first)"),
           Option("width", "frame width in pixels", "256", integer(16)),
           Option("height", "frame height in pixels", "192", integer(16)))


def run(args: list[str]) -> int:
    """Replay and render episodes of a run folder into RUN/videos/ (named by trial id)."""
    from evalsuite import video
    from evalsuite.harness import rebuild_report, render_saved_run

    folder, rest = run_dir(args, "video")
    v = parse(rest, OPTIONS)
    reason = video.unavailable()
    if reason:
        raise UsageError(reason)
    index = render_saved_run(folder, v["video"], v.get("trial", ()), v.get("camera", ""), (v["width"], v["height"]))
    if not index:
        raise UsageError(f"no episode of {folder} was rendered (see above)")
    rebuild_report(folder, {}, log=lambda *_: None)  # the report's gallery
    for trial in v.get("trial", index):
        if trial in index:
            print(f"{trial}: {folder / video.VIDEO_DIR / index[trial]}")
    return 0
