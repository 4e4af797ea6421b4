"""Rollout videos, rendered after the run by replaying chosen episodes - evaluation never waits for
a renderer.

Episodes are deterministic given their trial (initial-condition seed and index, policy seed), so a
chosen episode is run again, alone, through the same executor with its environment wrapped to
render a frame after the reset and after every step; the replayed record must match the journaled
one (steps and status), or the video is not kept. Files are named by trial id - task, initial
condition and blinding code, never the policy - in ``RUN/videos/`` with an index for the report.

Every file here is written under a temporary name beside its target and renamed over it only when
complete (``evalsuite.fsio``): a render killed or a disk filling up mid-way leaves the videos,
posters and index of before as they were (and hidden ``.*.part*`` files, swept by the next render).
The render process dies with the process that started it, and each ffmpeg with the render process
(Linux: ``PR_SET_PDEATHSIG``; elsewhere a thread watching the parent), so nothing writes on after a
kill.

Rendering is offscreen OpenGL through MuJoCo: OSMesa (Mesa's software rasterizer, the Debian
package ``libosmesa6``) unless ``EVALSUITE_GL`` names another MuJoCo backend (``egl`` on a GPU).
It runs in a child process started with ``MUJOCO_GL`` set to it, since MuJoCo picks its backend
when first imported (and robosuite rewrites ``MUJOCO_GL`` to ``egl`` in any process importing it,
so the parent's value is not used).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from evalsuite import names
from evalsuite.errors import UsageError, choices
from evalsuite.interfaces import Observation, StepResult, TaskEnv
from evalsuite.journal import FAILURE, SUCCESS, EpisodeRecord
from evalsuite.specs import SuiteSpec, load_entry_point

MODES = ("none", "sample", "failures", "all")
VIDEO_DIR, INDEX_FILE = names.VIDEOS, names.VIDEO_INDEX
# Offscreen software rendering costs ~12-21 ms a frame whatever its size (the meshes' vertices, not
# the pixels; the suites turn shadows, reflections and multisampling off) against ~1 ms a Meta-World step, so the frames are what videos cost: a frame every
# STRIDE-th step (and always the episode's last), and at most MAX_FRAMES a video - a longer episode
# is filmed at a wider stride. At FPS a video lasts at most ~5 s.
FPS = 12
STRIDE = 2
MAX_FRAMES = 60
SAMPLE_PER_OUTCOME = 1  # with video=sample: this many successes and failures per task and policy
MIN_SIDE, MAX_SIDE = 16, 2048  # frame width and height in pixels: a typo never allocates gigabytes a frame


class RenderingEnv(TaskEnv, Protocol):
    """A task environment declaring cameras (``info.cameras``) renders from them."""

    def render(self, camera: str, width: int, height: int) -> NDArray[Any]:
        """An (height, width, 3) uint8 frame from ``camera``."""
        ...


def offscreen_renderer(model: Any, width: int, height: int) -> Any:
    """A MuJoCo renderer for video frames of ``model``, without multisampling (anti-aliasing), which
    doubles the cost of a software-rendered frame; the physics never reads it. Draw with
    ``render_frame``."""
    import mujoco

    model.vis.quality.offsamples = 0  # read when the renderer's context is made
    return mujoco.Renderer(model, height, width)


def render_frame(renderer: Any, data: Any, camera: str, scene_option: Any = None) -> NDArray[Any]:
    """``renderer``'s frame of ``data`` from ``camera``, shadows and the floor's mirror image off:
    in software they cost 4x and ~1.2-2x, and the scene is the same."""
    import mujoco

    renderer.update_scene(data, camera=camera, **({"scene_option": scene_option} if scene_option else {}))
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    return np.asarray(renderer.render())


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


def check_size(size: tuple[int, int]) -> None:
    """Frame width and height within MIN_SIDE..MAX_SIDE pixels, or a one-line UsageError."""
    for key, side in zip(("width", "height"), size, strict=False):
        if side < MIN_SIDE:
            raise UsageError(f"{key}={side} must be >= {MIN_SIDE}")
        if side > MAX_SIDE:
            raise UsageError(f"{key}={side} must be <= {MAX_SIDE}")


def check_camera(suite_id: str, cameras: Sequence[str], camera: str) -> None:
    """``camera`` (empty: the suite's first) among the cameras the suite's environment declares.
    Called before any episode runs (evaluate) or is replayed (video)."""
    if camera and cameras and camera not in cameras:
        raise UsageError(f"camera={camera!r} is not a camera of suite {suite_id!r}; accepted: {choices(cameras)}")


def read_index(run_dir: Path) -> dict[str, str]:
    """``RUN/videos/index.json`` (trial id -> file name), {} when there is none; an empty, truncated
    or foreign one (or a link) is a UsageError saying it is damaged and what to do."""
    path = Path(run_dir) / VIDEO_DIR / INDEX_FILE

    def damaged(why: str) -> UsageError:
        return UsageError(f"{path}: damaged ({why}) - delete it and run `evalsuite video {run_dir}` to render the "
                          "videos again")

    if path.is_symlink():
        raise damaged("a symbolic link")
    if not path.exists():
        return {}
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise damaged("not UTF-8 text") from None
    if not text.strip():
        raise damaged("empty")
    try:
        index = json.loads(text)
    except json.JSONDecodeError as exc:
        raise damaged(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(index, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in index.items()):
        raise damaged("not a map of trial id to video file")
    return index


def clip_files(run_dir: Path, trial: str, name: str) -> tuple[str, str]:
    """The video of ``trial`` the index names and its poster, as paths relative to the run folder;
    each is "" where missing or damaged: an entry that is not this trial's file in videos/, a file
    absent, empty or a link. The report shows such a video as missing instead of linking it."""
    folder = Path(run_dir) / VIDEO_DIR

    def whole(file: str) -> bool:
        try:
            st = os.lstat(folder / file)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_size > 0

    if name != file_name(trial) or not whole(name):
        return "", ""
    poster = poster_name(name)
    return f"{VIDEO_DIR}/{name}", f"{VIDEO_DIR}/{poster}" if whole(poster) else ""


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


def episode_stride(steps: int, stride: int = STRIDE, max_frames: int = MAX_FRAMES) -> int:
    """The stride filming an episode of ``steps`` steps: ``stride``, widened so that the reset's
    frame, every stride-th step's and the last make at most ``max_frames`` (0: no limit)."""
    if max_frames <= 0:
        return stride
    return max(stride, -(-steps // max(1, max_frames - 1)))  # 1 + ceil(steps / stride) frames: the reset's besides


def file_name(trial_id: str) -> str:
    return trial_id.replace("/", "_") + ".mp4"


def poster_name(video: str | Path) -> str:
    return str(video).removesuffix(".mp4") + ".png"


# ---------------------------------------------------------------- processes that die with their parent

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()  # resolved here, so a forked child only calls it (no dynamic loading after fork)


def _kill_me_with_parent() -> bool:
    """Linux: the kernel sends this process SIGKILL when its parent dies. False where unsupported."""
    return _PRCTL is not None and _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0


WAIT_S = 5.0  # how often a render's progress is looked at
PROGRESS_S = 15.0  # at most a progress line this often
_ENCODERS: set[_Encoder] = set()  # the ffmpeg processes of this (render) process, for the watcher


def _die_with(parent_pid: int) -> None:
    """This render process ends when ``parent_pid`` does, whatever kills it: on Linux the kernel kills
    it at once; elsewhere a thread polling the parent kills its ffmpeg processes, then exits."""
    watched = not _kill_me_with_parent()
    if os.getppid() != parent_pid:  # died before the line above
        os._exit(1)
    if watched:
        threading.Thread(target=_watch, args=(parent_pid,), daemon=True, name="evalsuite-parent-watch").start()


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    for encoder in list(_ENCODERS):
        encoder.kill()
    os._exit(1)


def _child_main(conn: Connection, parent_pid: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    _die_with(parent_pid)
    try:
        answer = ("ok", fn(*args))
    except BaseException as exc:  # sent back whole, raised again in the parent
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        answer = ("error", exc)
    conn.send(answer)
    conn.close()


def _in_children(fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]],
                 waiting: Callable[[], None] = lambda: None) -> list[Any]:
    """``fn(*args)`` for each of ``calls``, each in its own spawned process, all at once; their
    answers in order (``waiting`` is called every few seconds meanwhile). The first exception is
    raised here once every child has answered or died; if this process is interrupted the children
    are killed, not waited for."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    children = []
    for args in calls:
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_child_main, args=(send, os.getpid(), fn, args), daemon=True,
                            name="evalsuite-render")
        child.start()
        send.close()
        children.append((child, receive))
    answers: list[tuple[str, Any]] = []
    try:
        for child, receive in children:
            try:
                while not receive.poll(WAIT_S):
                    waiting()
                answers.append(receive.recv())
            except EOFError:
                child.join(5)
                answers.append(("error", RuntimeError("the render process ended without an answer (exit code "
                                                      f"{child.exitcode})")))
    finally:
        for child, receive in children:
            receive.close()
            child.join(10 if len(answers) == len(children) else 0)  # each exits once it has answered
            if child.is_alive():  # interrupted here (or stuck): killed, its ffmpeg with it
                child.kill()
            child.join()
    for status, value in answers:
        if status == "error":
            raise value
    return [value for _, value in answers]


class _Encoder:
    """ffmpeg encoding RGB frames sent through a pipe into an H.264 mp4 at ``path``. It dies with the
    process that started it (Linux), and ``close`` says when it failed (a full disk) instead of
    leaving a short file unannounced."""

    def __init__(self, path: str, size: tuple[int, int], label: str) -> None:
        import imageio_ffmpeg

        width, height = size
        padded = (-(-width // 8) * 8, -(-height // 8) * 8)  # macroblocks: most players need sides of 8k
        scale = ["-vf", f"scale={padded[0]}:{padded[1]}"] if padded != size else []
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(FPS), "-i", "-", "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p",
               "-crf", "25", *scale, "-movflags", "+faststart", "-f", "mp4", path]
        self.label = label
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the encoder: it holds ffmpeg's messages)
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log,
                                          bufsize=0, preexec_fn=_kill_me_with_parent if _PRCTL is not None else None)
        except BaseException:
            self._log.close()
            raise
        _ENCODERS.add(self)

    @property
    def _stdin(self) -> IO[bytes]:
        stdin = self._proc.stdin
        assert stdin is not None  # started with stdin=PIPE
        return stdin

    def send(self, frame: NDArray[Any]) -> None:
        try:
            self._stdin.write(frame.tobytes())
        except OSError as exc:  # ffmpeg is gone (it failed writing, or was killed)
            self.kill()
            why = self._why()
            self._log.close()
            raise OSError(f"ffmpeg stopped while encoding {self.label}: {why or exc}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.close()
        code = self._proc.wait()
        _ENCODERS.discard(self)
        why = self._why()
        self._log.close()
        if code:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else \
                f"exit code {code}"
            raise OSError(f"ffmpeg failed encoding {self.label} ({how})" + (f": {why}" if why else ""))

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self._proc.kill()
        self._proc.wait()
        _ENCODERS.discard(self)

    def _why(self) -> str:
        """ffmpeg's last line of complaint."""
        try:
            self._log.seek(0)
            lines = self._log.read().decode(errors="replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return lines[-1].strip() if lines else ""


# (video file, poster file - temporary names beside their targets -, the target's name, the episode's
# stride, its recorded actions or None)
VideoFile = tuple[str, str, str, int, NDArray[Any] | None]


class RecordingEnv:
    """A task environment that renders a frame after the reset and every stride-th step: each reset
    starts the next (video, poster, name, stride, actions) of ``files`` (temporary files beside their
    targets, the target's name, the episode's stride and its recorded actions or None: the replayed
    episodes of this task, in the order they run); recorded actions are stepped instead of the ones
    the executor passes. An episode's file is finished
    when the episode ends (a success or the step limit), so an encoder failing fails that episode's
    replay; the poster, its last frame, is written only after ffmpeg finished the video without error."""

    def __init__(self, env: RenderingEnv, files: list[VideoFile], camera: str, width: int, height: int,
                 max_steps: int) -> None:
        self.env, self.info = env, env.info
        self._files, self._camera, self._size, self._max_steps = list(files), camera, (width, height), max_steps
        self._stride = 1
        self._actions: NDArray[Any] | None = None  # the episode's recorded actions, stepped instead of the policy's
        self._encoder: _Encoder | None = None
        self._poster = ""
        self._last: NDArray[Any] | None = None
        self._steps = 0

    def _frame(self) -> None:
        frame = np.ascontiguousarray(self.env.render(self._camera, *self._size), dtype=np.uint8)
        expected = (self._size[1], self._size[0], 3)
        if frame.shape != expected:
            raise ValueError(f"camera {self._camera!r} rendered a frame of shape {frame.shape}, not {expected}")
        self._last = frame
        if self._encoder is not None:
            self._encoder.send(frame)

    def _next_file(self) -> None:
        self._finish()
        video, self._poster, name, self._stride, self._actions = self._files.pop(0)
        self._encoder = _Encoder(video, self._size, name)
        self._last, self._steps = None, 0

    def _finish(self) -> None:
        """Close the video; its last frame (how the episode ended) is kept beside it as the poster."""
        if self._encoder is None:
            return
        encoder, self._encoder = self._encoder, None
        encoder.close()  # raises if ffmpeg failed: then no poster, and the video is not kept
        if self._last is not None:
            import io

            from PIL import Image

            png = io.BytesIO()
            Image.fromarray(self._last).save(png, format="PNG")
            with open(self._poster, "wb") as fh:  # our own temporary file (fsio.atomic_path made it)
                fh.write(png.getvalue())

    def reset(self, ic_seed: int, ic_index: int) -> tuple[Observation, dict[str, Any]]:
        self._next_file()
        out = self.env.reset(ic_seed, ic_index)
        self._frame()
        return out

    def step(self, action: NDArray[Any]) -> StepResult:
        from evalsuite.interfaces import InfrastructureError

        if self._actions is not None:  # the recorded action of this step (the policy is a stand-in)
            action = self._actions[min(self._steps, len(self._actions) - 1)]
        result = self.env.step(action)
        try:
            self._steps += 1
            ends = result.success or self._steps >= self._max_steps
            if ends or self._steps % self._stride == 0:  # the last frame always: how the episode ended
                self._frame()
            if ends:
                self._finish()
        except OSError as exc:  # the recording failed (ffmpeg, a full disk), not the policy
            raise InfrastructureError(f"recording failed: {exc}") from exc
        return result

    def close(self) -> None:
        try:
            self._finish()  # an episode that ended otherwise (a policy error) is finished here
        finally:
            self.env.close()


def recording_env(task_id: str, max_steps: int, *, video_inner: str, video_files: dict[str, list[VideoFile]],
                  video_camera: str, video_width: int, video_height: int, **kwargs: Any) -> RecordingEnv:
    """The suite's own environment, wrapped (an entry point, so the executor builds it as any other)."""
    env = load_entry_point(video_inner)(task_id, max_steps=max_steps, **kwargs)
    if not env.info.cameras:
        raise UsageError(f"the environment of task {task_id!r} cannot render (it declares no cameras)")
    camera = video_camera or env.info.cameras[0]
    if camera not in env.info.cameras:
        raise UsageError(f"camera={camera!r}; accepted: {choices(env.info.cameras)}")
    return RecordingEnv(env, video_files[task_id], camera, video_width, video_height, max_steps)


class _PlayedBack:
    """The stand-in policy of replays from recorded actions (``RecordingEnv`` steps those): it reads
    nothing and answers zeros at once, so a replay costs the simulator and the frames only."""

    def __init__(self, action_dim: int) -> None:
        from evalsuite.interfaces import PolicyRequirements

        self.requirements = PolicyRequirements(obs_shapes={}, action_dim=action_dim)

    def __call__(self, code: str, task: str) -> _PlayedBack:  # the policy factory: one for all
        return self

    def reset(self, seed: int, slot: int) -> None:
        pass

    def act(self, observations: Observation, slots: NDArray[Any]) -> NDArray[Any]:
        return np.zeros((len(slots), self.requirements.action_dim))

    def fingerprint(self) -> str:
        return "played-back"


class _Staged:
    """A file written under a temporary name beside ``target`` (``fsio.atomic_path``), then either
    published - renamed over the target - or discarded, leaving the target as it was."""

    class _Discard(Exception):
        pass

    def __init__(self, target: Path, root: Path) -> None:
        from evalsuite import fsio

        self._cm = fsio.atomic_path(target, root)
        self.tmp = self._cm.__enter__()
        self._open = True

    def publish(self) -> None:
        if self._open:
            self._open = False
            self._cm.__exit__(None, None, None)

    def discard(self) -> None:
        if self._open:
            self._open = False
            self._cm.__exit__(self._Discard, self._Discard(), None)


def _not_kept(journaled: EpisodeRecord, again: EpisodeRecord | None, staged: tuple[_Staged, _Staged]) -> str:
    """Why a replay's video is not kept ("" when it is): the replay must match its journaled episode
    and its video and poster must be whole."""
    if again is None:
        return "it was not replayed"
    if (again.steps, again.status) != (journaled.steps, journaled.status):
        reason = (again.reason.splitlines() or [""])[0]
        return (f"the replay ended {again.status} after {again.steps} steps, the journal says {journaled.status} "
                f"after {journaled.steps}" + (f" ({reason})" if reason else ""))
    video, poster = (s.tmp for s in staged)
    if not video.stat().st_size:
        return "no video was written"
    try:
        from PIL import Image

        with Image.open(poster) as image:
            image.verify()
    except Exception:
        return "its video was not finished (see the lines above)"
    return ""


def replay(suite: SuiteSpec, make_policy: Callable[[str, str], Any], max_steps: dict[str, int],
           records: Sequence[EpisodeRecord], folder: Path, camera: str = "",
           size: tuple[int, int] = (256, 192), root: Path | None = None, stride: int = STRIDE,
           max_frames: int = MAX_FRAMES, done: Any = None,
           actions: dict[str, NDArray[Any]] | None = None) -> tuple[dict[str, str], list[str]]:
    """Run ``records``' trials again, one at a time through the lock-step executor, rendering each
    into ``folder`` (inside the run folder ``root``, by default its parent); returns trial id -> file
    for the replays that matched their journaled episode (steps and status), and one line for each
    that did not. Only a matching, whole video replaces the file of the same name; the others leave
    the previous file (if any) as it was. ``done``, a shared counter (multiprocessing.Value), counts
    the episodes replayed, for the progress line of the process that started this one. The episodes
    in ``actions`` (trial id -> the actions the run stepped) step those again, and their policy is
    never called; the others ask their policy, as the run did."""
    from evalsuite.plan import Trial
    from evalsuite.runner import LocalExecutor, RunContext

    root = Path(root) if root is not None else Path(folder).parent
    order = sorted(records, key=lambda r: (r.task, r.trial_id))  # a task's files in the order its episodes run
    staged: dict[str, tuple[_Staged, _Staged]] = {}
    try:
        for r in order:
            target = folder / file_name(r.trial_id)
            staged[r.trial_id] = (_Staged(target, root), _Staged(Path(poster_name(target)), root))
        actions = actions or {}
        replayed: dict[str, EpisodeRecord] = {}
        for played_back in (True, False):  # the recorded episodes, then the others with their policies
            part = [r for r in order if (r.trial_id in actions) == played_back]
            if not part:
                continue
            files: dict[str, list[VideoFile]] = {}
            for r in part:
                video, poster = staged[r.trial_id]
                files.setdefault(r.task, []).append((str(video.tmp), str(poster.tmp), file_name(r.trial_id),
                                                     episode_stride(r.steps, stride, max_frames),
                                                     actions.get(r.trial_id)))
            wrapped = dataclasses.replace(suite, entry_point="evalsuite.video:recording_env", kwargs={
                **suite.kwargs, "video_inner": suite.entry_point, "video_files": files, "video_camera": camera,
                "video_width": size[0], "video_height": size[1]})
            trials = [Trial(r.trial_id, r.task, r.ic_index, r.ic_seed, r.policy_seed, r.policy_code) for r in part]
            policies = _PlayedBack(next(iter(actions.values())).shape[-1]) if played_back else make_policy
            with LocalExecutor(batch_size=1, in_order=True) as executor:  # resets take the files in order
                executor.run(trials, RunContext(suite=wrapped, max_steps=max_steps, make_policy=policies),
                             lambda rec: _count(replayed, rec, done))
        index, notes = {}, []
        for r in order:
            why = _not_kept(r, replayed.get(r.trial_id), staged[r.trial_id])
            if why:
                notes.append(f"{r.trial_id}: not kept: {why}")
                continue
            video, poster = staged.pop(r.trial_id)
            try:
                poster.publish()
                video.publish()
            finally:
                video.discard()
            index[r.trial_id] = file_name(r.trial_id)
        return index, notes
    finally:
        for pair in staged.values():
            for s in pair:
                s.discard()


def _count(replayed: dict[str, EpisodeRecord], record: EpisodeRecord, done: Any) -> None:
    replayed[record.trial_id] = record
    if done is not None:
        with done.get_lock():
            done.value += 1


def _sweep(folder: Path) -> None:
    """Temporary files a killed render left (hidden ``.NAME.XXXX.part*``). Only under the run
    folder's lock, so no render is writing them."""
    for leftover in folder.glob(".*.part*"):
        with contextlib.suppress(OSError):
            if leftover.is_file() and not leftover.is_symlink():
                leftover.unlink()


def render_run(run_dir: Path, suite: SuiteSpec, make_policy: Callable[[str, str], Any], mode: str = "sample",
               trials: Sequence[str] = (), camera: str = "", size: tuple[int, int] = (256, 192),
               log: Callable[[str], None] = print, *, plan: Any, final: dict[str, EpisodeRecord],
               index: dict[str, str], processes: int = 0, stride: int = STRIDE, max_frames: int = MAX_FRAMES,
               actions: dict[str, NDArray[Any]] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Render the chosen episodes of a run (or the named trials) into RUN/videos/, in child
    processes with the offscreen backend (``processes``, default one a core, each replaying its share
    of the work), a frame every ``stride`` steps and at most ``max_frames`` a video; an episode whose
    ``actions`` the run recorded (trial id -> steps x action_dim) steps them again instead of asking
    its policy (a replay that must still end as journaled); returns (trial id -> file for the
    episodes rendered now,
    the whole index with them, also written to videos/index.json), and logs one line for each not
    kept. The caller passes what it holds - the run's ``plan``, its ``final`` records and the
    current ``index`` - so nothing is read back from the folder. ``suite`` is the run's suite with
    its options and ``make_policy`` its policy factory (picklable). The caller holds the run
    folder's lock (evaluate's, or ``evalsuite video``'s)."""
    from evalsuite.runner.envs import env_info

    check_size(size)
    task = plan.tasks[0]
    reason = unavailable()
    cameras = () if reason else env_info(suite, task, plan.max_steps[task]).cameras
    if not reason and not cameras:
        reason = f"videos skipped: the environments of suite {plan.suite!r} declare no cameras"
    if reason:
        log(reason)
        return {}, index
    check_camera(plan.suite, cameras, camera)
    if trials:
        unknown = [t for t in trials if t not in final]
        if unknown:
            raise UsageError(f"trial={unknown[0]!r} is not a finished trial of {run_dir}; e.g. {next(iter(final), '')}")
        chosen = [final[t] for t in trials]
    else:
        chosen = choose(list(final.values()), mode, plan.max_steps)
    from evalsuite import fsio

    if not chosen:
        return {}, index
    out_dir = fsio.make_dir(run_dir / VIDEO_DIR, root=run_dir)
    _sweep(out_dir)
    parts = _split(sorted(chosen, key=lambda r: (r.task, r.trial_id)), processes or _cores(), stride, max_frames)
    log(f"videos: replaying and rendering {len(chosen)} episodes in {len(parts)} process"
        f"{'es' if len(parts) > 1 else ''}")
    import multiprocessing as mp

    done, started, said = mp.get_context("spawn").Value("i", 0), time.monotonic(), [0, time.monotonic()]

    def waiting() -> None:  # a line every PROGRESS_S or so while more get done: a long render is never silent
        if done.value > said[0] and time.monotonic() - said[1] >= PROGRESS_S:
            said[:] = done.value, time.monotonic()
            spent = time.monotonic() - started
            log(f"videos: {done.value}/{len(chosen)} rendered, {spent:.0f} s, about "
                f"{spent / done.value * (len(chosen) - done.value):.0f} s to go")

    with gl_environment():  # each child imports MuJoCo fresh
        answers = _in_children(replay, [(suite, make_policy, dict(plan.max_steps), part, out_dir, camera, size, run_dir,
                                         stride, max_frames, done, _taken(part, actions or {})) for part in parts],
                               waiting)
    rendered = {trial: name for part, _ in answers for trial, name in part.items()}
    for note in (note for _, notes in answers for note in notes):
        log(f"videos: {note}")
    whole = dict(sorted({**index, **rendered}.items()))
    if rendered:
        fsio.write_json(out_dir / INDEX_FILE, whole, root=run_dir)
    return rendered, whole


def _taken(records: Sequence[EpisodeRecord], actions: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """The recorded actions that replay ``records`` as journaled: one per executed step, for an episode
    that ended by success or the step limit (a policy error is the policy's own doing: it replays
    with the policy)."""
    return {r.trial_id: actions[r.trial_id] for r in records
            if r.trial_id in actions and r.status in (SUCCESS, FAILURE) and len(actions[r.trial_id]) == r.steps}


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# What a replayed step costs against a rendered frame (a Meta-World step ~1 ms, a frame ~12 ms): only
# to share the work fairly among the render processes.
STEP_COST, FRAME_COST = 1.0, 12.0


def _split(records: list[EpisodeRecord], processes: int, stride: int = STRIDE,
           max_frames: int = MAX_FRAMES) -> list[list[EpisodeRecord]]:
    """Contiguous parts of nearly equal work - steps replayed and frames rendered - of ``records``
    (sorted by task, so a part builds few environments)."""
    costs = [STEP_COST * r.steps + FRAME_COST * (1 - (-r.steps // episode_stride(r.steps, stride, max_frames)))
             for r in records]
    k = max(1, min(processes, len(records)))
    total, done = sum(costs), 0.0
    parts: list[list[EpisodeRecord]] = []
    part: list[EpisodeRecord] = []
    for r, cost in zip(records, costs, strict=True):
        if part and len(parts) < k - 1 and done + cost / 2 > total * (len(parts) + 1) / k:
            parts.append(part)
            part = []
        part.append(r)
        done += cost
    return [*parts, part]
