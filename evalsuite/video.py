"""Rollout videos, rendered after the run by replaying chosen episodes - evaluation never waits for
a renderer.

Episodes are deterministic given their trial (initial-condition seed and index, policy seed), so a
chosen episode is run again, alone, through the same executor with its environment wrapped to
render a frame after the reset and after every step; the replayed record must match the journaled
one (steps and status), or the video is not kept. Files are named by trial id - task, initial
condition and blinding code, never the policy - in ``RUN/videos/`` with an index for the report.

Rendering is offscreen OpenGL through MuJoCo: OSMesa (Mesa's software rasterizer, the Debian
package ``libosmesa6``) unless ``EVALSUITE_GL`` names another MuJoCo backend (``egl`` on a GPU).
It runs in a child process started with ``MUJOCO_GL`` set to it, since MuJoCo picks its backend
when first imported (and robosuite rewrites ``MUJOCO_GL`` to ``egl`` in any process importing it,
so the parent's value is not used).
"""

from __future__ import annotations

import contextlib
import ctypes.util
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.errors import UsageError, choices
from evalsuite.journal import EpisodeRecord
from evalsuite.specs import SuiteSpec, load_entry_point

MODES = ("none", "sample", "failures", "all")
VIDEO_DIR, INDEX_FILE = "videos", "index.json"
FPS = 25
SAMPLE_PER_OUTCOME = 1  # with video=sample: this many successes and failures per task and policy


def backend() -> str:
    return os.environ.get("EVALSUITE_GL", "osmesa")


def gl_environment() -> contextlib.AbstractContextManager[None]:
    """MUJOCO_GL and PYOPENGL_PLATFORM for child processes started inside, then as they were."""
    from evalsuite.runner.envs import environ

    return environ({"MUJOCO_GL": backend(), "PYOPENGL_PLATFORM": backend()})


def unavailable() -> str | None:
    """Why videos cannot be rendered here (one line naming what to install), or None."""
    if backend() == "osmesa" and not ctypes.util.find_library("OSMesa"):
        return ("videos skipped: offscreen rendering needs OSMesa (Debian: apt-get install libosmesa6), "
                "or set EVALSUITE_GL to a working MuJoCo backend (e.g. egl)")
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return "videos skipped: encoding needs imageio-ffmpeg (pip install 'evalsuite[video]')"
    return None


def choose(records: Sequence[EpisodeRecord], mode: str, max_steps: dict[str, int] | None = None) -> list[EpisodeRecord]:
    """The episodes to render: ``sample`` keeps, per task and policy, the first SAMPLE_PER_OUTCOME
    successes and the first SAMPLE_PER_OUTCOME failures of each failure mode (by initial condition),
    so the report can show every mode; ``failures`` every failure; ``all`` every one."""
    from evalsuite.analyses.progress import failure_category

    if mode not in MODES:
        raise UsageError(f"video={mode!r}; accepted: {choices(MODES)}")
    outcomes = sorted((r for r in records if r.is_outcome), key=lambda r: (r.task, r.policy_code, r.ic_index))
    if mode == "all":
        return outcomes
    if mode == "failures":
        return [r for r in outcomes if not r.success]
    if mode == "none":
        return []
    kept: dict[tuple[str, str, str], int] = {}
    out = []
    for r in outcomes:
        kind = "success" if r.success else failure_category(r, (max_steps or {}).get(r.task))
        cell = (r.task, r.policy_code, kind)
        if kept.get(cell, 0) < SAMPLE_PER_OUTCOME:
            kept[cell] = kept.get(cell, 0) + 1
            out.append(r)
    return out


def file_name(trial_id: str) -> str:
    return trial_id.replace("/", "_") + ".mp4"


def poster_name(video: str | Path) -> str:
    return str(video).removesuffix(".mp4") + ".png"


class RecordingEnv:
    """A task environment that renders a frame after every reset and step: each reset starts the
    next file of ``paths`` (the replayed episodes of this task, in the order they run)."""

    def __init__(self, env, paths: list[str], camera: str, width: int, height: int) -> None:
        self.env, self.info = env, env.info
        self._paths, self._camera, self._size = list(paths), camera, (width, height)
        self._writer: Any = None
        self._path = ""
        self._last: np.ndarray | None = None

    def _frame(self) -> None:
        self._last = np.ascontiguousarray(self.env.render(self._camera, *self._size), dtype=np.uint8)
        self._writer.send(self._last)

    def _next_file(self) -> None:
        import imageio_ffmpeg

        self._finish()
        self._path = self._paths.pop(0)
        self._writer = imageio_ffmpeg.write_frames(self._path, self._size, fps=FPS, codec="libx264",
                                                   pix_fmt_out="yuv420p", macro_block_size=8,
                                                   output_params=["-movflags", "+faststart"])
        self._writer.send(None)  # start the encoder

    def _finish(self) -> None:
        """Close the file; its last frame (how the episode ended) is kept beside it as the poster."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            if self._last is not None:
                from PIL import Image

                Image.fromarray(self._last).save(poster_name(self._path))

    def reset(self, ic_seed: int, ic_index: int):
        self._next_file()
        out = self.env.reset(ic_seed, ic_index)
        self._frame()
        return out

    def step(self, action):
        result = self.env.step(action)
        self._frame()
        return result

    def close(self) -> None:
        self._finish()
        self.env.close()


def recording_env(task_id: str, max_steps: int, *, video_inner: str, video_paths: dict[str, list[str]],
                  video_camera: str, video_width: int, video_height: int, **kwargs: Any) -> RecordingEnv:
    """The suite's own environment, wrapped (an entry point, so the executor builds it as any other)."""
    env = load_entry_point(video_inner)(task_id, max_steps=max_steps, **kwargs)
    if not env.info.cameras:
        raise UsageError(f"the environment of task {task_id!r} cannot render (it declares no cameras)")
    camera = video_camera or env.info.cameras[0]
    if camera not in env.info.cameras:
        raise UsageError(f"camera={camera!r}; accepted: {choices(env.info.cameras)}")
    return RecordingEnv(env, video_paths[task_id], camera, video_width, video_height)


def replay(suite: SuiteSpec, make_policy: Callable[[str, str], Any], max_steps: dict[str, int],
           records: Sequence[EpisodeRecord], folder: Path, camera: str = "",
           size: tuple[int, int] = (256, 192)) -> dict[str, str]:
    """Run ``records``' trials again, one at a time through the lock-step executor, rendering each
    to ``folder``; returns trial id -> file for the replays that matched their journaled episode
    (steps and status). A mismatch deletes its file."""
    from evalsuite.plan import Trial
    from evalsuite.runner import LocalExecutor, RunContext

    order = sorted(records, key=lambda r: (r.task, r.trial_id))  # one task at a time: one environment each
    paths: dict[str, list[str]] = {}
    for r in order:
        paths.setdefault(r.task, []).append(str(folder / file_name(r.trial_id)))
    wrapped = dataclasses.replace(suite, entry_point="evalsuite.video:recording_env", kwargs={
        **suite.kwargs, "video_inner": suite.entry_point, "video_paths": paths, "video_camera": camera,
        "video_width": size[0], "video_height": size[1]})
    trials = [Trial(r.trial_id, r.task, r.ic_index, r.ic_seed, r.policy_seed, r.policy_code) for r in order]
    replayed: dict[str, EpisodeRecord] = {}
    with LocalExecutor(batch_size=1) as executor:
        executor.run(trials, RunContext(suite=wrapped, max_steps=max_steps, make_policy=make_policy),
                     lambda rec: replayed.__setitem__(rec.trial_id, rec))
    index = {}
    for r in order:
        again = replayed.get(r.trial_id)
        if again is not None and (again.steps, again.status) == (r.steps, r.status):
            index[r.trial_id] = file_name(r.trial_id)
        else:
            for stale in (folder / file_name(r.trial_id), Path(poster_name(folder / file_name(r.trial_id)))):
                stale.unlink(missing_ok=True)
    return index


def render_run(run_dir: Path, suite: SuiteSpec, make_policy: Callable[[str, str], Any], mode: str = "sample",
               trials: Sequence[str] = (), camera: str = "", size: tuple[int, int] = (256, 192),
               log: Callable[[str], None] = print) -> dict[str, str]:
    """Render the chosen episodes of a run folder (or the named trials) into RUN/videos/, in a child
    process with the offscreen backend; returns trial id -> file, also written to the index.
    ``suite`` is the run's suite with its options and ``make_policy`` its policy factory (picklable)."""
    import multiprocessing as mp

    from evalsuite import plan as plan_mod
    from evalsuite.runner.envs import env_info

    plan, _ = plan_mod.load(run_dir)
    task = plan.tasks[0]
    reason = unavailable() or ("" if env_info(suite, task, plan.max_steps[task]).cameras else
                               f"videos skipped: the environments of suite {plan.suite!r} declare no cameras")
    if reason:
        log(reason)
        return {}
    with gl_environment(), mp.get_context("spawn").Pool(1) as pool:  # the child imports MuJoCo fresh
        return pool.apply(_render_in_child, (str(run_dir), suite, make_policy, mode, list(trials), camera, size))


def _render_in_child(run_dir: str, suite: SuiteSpec, make_policy: Callable[[str, str], Any], mode: str,
                     trials: list[str], camera: str, size: tuple[int, int]) -> dict[str, str]:
    from evalsuite import plan as plan_mod
    from evalsuite.journal import JOURNAL_FILE, finished_trials, read

    folder = Path(run_dir)
    plan, _ = plan_mod.load(folder)
    final = finished_trials(read(folder / JOURNAL_FILE), plan_mod.saved_max_attempts(folder))
    if trials:
        unknown = [t for t in trials if t not in final]
        if unknown:
            raise UsageError(f"trial={unknown[0]!r} is not a finished trial of {folder}; e.g. {next(iter(final), '')}")
        chosen = [final[t] for t in trials]
    else:
        chosen = choose(list(final.values()), mode, plan.max_steps)
    out_dir = folder / VIDEO_DIR
    out_dir.mkdir(exist_ok=True)
    index_path = out_dir / INDEX_FILE
    index: dict[str, str] = json.loads(index_path.read_text()) if index_path.exists() else {}
    index.update(replay(suite, make_policy, dict(plan.max_steps), chosen, out_dir, camera, size))
    index_path.write_text(json.dumps(index, indent=1, sort_keys=True))
    return index
