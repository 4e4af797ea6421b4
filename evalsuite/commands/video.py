"""`evalsuite video RUN`: render episodes of a finished run folder on demand."""

from __future__ import annotations

from evalsuite.commands.options import Option, listing, one_of, parse, parse_int, run_dir
from evalsuite.errors import UsageError
from evalsuite.video import MAX_FRAMES, STRIDE


def pixels(key: str, value: str) -> int:
    """A frame side within evalsuite.video's bounds (16 to 2048), so a typo never allocates gigabytes."""
    from evalsuite.video import MAX_SIDE, MIN_SIDE

    side = parse_int(key, value, MIN_SIDE)
    if side > MAX_SIDE:
        raise UsageError(f"{key}={side} must be <= {MAX_SIDE}")
    return side


OPTIONS = (Option("trial", "[trial id, ...] to render (e.g. pick-place/00003/B); default: the episodes video= chooses",
                  parse=listing),
           Option("video", "sample | failures | all: which episodes, without trial=", "sample",
                  one_of("sample", "failures", "all")),
           Option("camera", "camera (default: the suite's first)"),
           Option("width", "frame width in pixels", "256", pixels),
           Option("height", "frame height in pixels", "192", pixels),
           Option("stride", "a frame every this many steps (and the last); 1: every step", str(STRIDE),
                  lambda key, value: parse_int(key, value, 1)),
           Option("frames", "at most this many frames a video (the first and last always); 0: no limit", str(MAX_FRAMES),
                  lambda key, value: parse_int(key, value, 0)),
           Option("trust", "[PATH, ...] pickled checkpoints the run's policies name that you trust to load (loading "
                           "a pickle runs code from it; a received run folder is never trusted by itself)",
                  parse=listing))


def run(args: list[str]) -> int:
    """Replay and render episodes of a run folder into RUN/videos/ (named by trial id)."""
    from evalsuite import video
    from evalsuite.harness import rebuild_report, render_saved_run
    from evalsuite.runlock import RunLock

    folder, rest = run_dir(args, "video")
    v = parse(rest, OPTIONS)
    video.read_index(folder)  # a damaged index: one line, before anything is rendered
    reason = video.unavailable()
    if reason:
        raise UsageError(reason)
    notes: list[str] = []

    def log(line: str) -> None:
        print(line)
        notes.append(line)

    with RunLock(folder, purpose="video"):  # one writer of RUN/videos/ (evaluate renders under its own lock)
        index = render_saved_run(folder, v["video"], v.get("trial", ()), v.get("camera", ""),
                                 (v["width"], v["height"]), trusted=v.get("trust", ()), log=log,
                                 stride=v["stride"], max_frames=v["frames"])
        if not index:
            raise UsageError(f"no episode of {folder} was rendered" + (f"; {notes[-1]}" if notes else ""))
        rebuild_report(folder, {}, log=lambda *_: None)  # the report's gallery
    for trial in v.get("trial", index):
        if trial in index:
            print(f"{trial}: {folder / video.VIDEO_DIR / index[trial]}")
    return 0
