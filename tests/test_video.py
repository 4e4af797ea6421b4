"""Rollout videos: episodes replayed after the run from their trials match the journal step for
step, and the rendered frames show the scene. Rendering needs OSMesa (`.ci/run` installs Debian's
libosmesa6); where it is missing the run says so in one line and keeps every result."""

import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from evalsuite import video
from evalsuite.cli import main
from evalsuite.errors import UsageError
from tests.conftest import REPO, CountdownEnv

RENDERS = video.unavailable() is None


def _run(tmp_path, *extra):
    out = tmp_path / "run"
    code = main(["evaluate", "suite=metaworld-smoke", "tasks=[pick-place]", "policies=[scripted,noisy-scripted]",
                 "episodes=2", "max_steps=120", "tracking_uri=none", "progress=false", f"out={out}", *extra])
    assert code == 0
    return out


@pytest.mark.skipif(not RENDERS, reason="no offscreen OpenGL here: see test_without_a_renderer_...")
def test_replayed_episodes_match_the_journal_and_the_videos_show_them(tmp_path, capsys):
    import imageio_ffmpeg

    out = _run(tmp_path, "video=all")
    index = json.loads((out / "videos" / "index.json").read_text())
    records = {r["trial_id"]: r for r in map(json.loads, (out / "episodes.jsonl").read_text().splitlines())}
    assert set(index) == set(records)  # every replay matched its journaled steps and status
    for trial, name in index.items():
        assert name == trial.replace("/", "_") + ".mp4"  # by trial id and code, never the policy
        raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(out / "videos" / name),
                              "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
        frames = list(np.frombuffer(raw, np.uint8).reshape(-1, 192, 256, 3))  # H.264 decoded back
        stride = video.episode_stride(records[trial]["steps"])  # 2, wider for an episode of over 116 steps
        assert len(frames) == 1 + -(-records[trial]["steps"] // stride) <= video.MAX_FRAMES  # the reset, every
        # stride-th step, the last
        assert all(f.std() > 10 for f in frames)  # not blank
        assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1  # the scene changed
        assert (out / "videos" / name.replace(".mp4", ".png")).exists()
    html = (out / "report.html").read_text()
    assert html.count("<video") == len(index) and "videos/pick-place_00000_A.mp4" in html


@pytest.mark.skipif(not RENDERS, reason="no offscreen OpenGL here")
def test_the_frame_shows_the_object(tmp_path):
    """Moving the object 10 cm changes the rendered frame: the camera sees it."""
    import multiprocessing as mp

    with video.gl_environment(), mp.get_context("spawn").Pool(1) as pool:
        changed, std = pool.apply(_object_moves_in_frame)
    assert std > 10 and changed > 20  # pixels that changed when only the object moved


@pytest.mark.skipif(not RENDERS, reason="no offscreen OpenGL here")
def test_robosuite_frames_show_the_visual_meshes_not_the_collision_geoms(tmp_path):
    """robosuite's collision geoms (group 0, drawn green) stay hidden as its own renderer hides them:
    drawn over the visual meshes they made the Panda green with white patches (1.7% of a 160x120
    frontview frame was strongly green; none is now)."""
    import multiprocessing as mp

    with video.gl_environment(), mp.get_context("spawn").Pool(1) as pool:
        green = pool.apply(_green_fraction)
    assert green < 0.001


def _green_fraction() -> float:
    from evalsuite import registry
    from evalsuite.runner.envs import build_env

    env = build_env(registry.suites.get("robomimic"), "lift", 400)
    env.reset(1, 0)
    frame = env.render("frontview", 160, 120).astype(int)
    env.close()
    return float(((frame[..., 1] > frame[..., 0] + 40) & (frame[..., 1] > frame[..., 2] + 40)).mean())


def _object_moves_in_frame():
    from evalsuite_suites.metaworld import MetaWorldTaskEnv

    env = MetaWorldTaskEnv("pick-place")
    env.reset(1)
    before = env.render("corner2", 256, 192).astype(int)
    env._env._set_obj_xyz(env._env._get_pos_objects()[:3] + np.array([0.1, 0.0, 0.0]))
    after = env.render("corner2", 256, 192).astype(int)
    return int((np.abs(before - after).sum(axis=-1) > 30).sum()), float(before.std())


def test_without_a_renderer_the_run_keeps_its_results_and_says_why(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(video, "unavailable", lambda: "videos skipped: offscreen rendering needs OSMesa (Debian: "
                                                      "apt-get install libosmesa6)")
    out = _run(tmp_path)  # video=sample is the default
    assert json.loads((out / "results.json").read_text())["trials"]["complete"]
    assert not (out / "videos").exists()
    assert "apt-get install libosmesa6" in capsys.readouterr().out


def test_choose_keeps_one_success_and_one_failure_per_task_and_policy():
    from evalsuite.journal import EpisodeRecord

    def rec(i, code, ok):
        return EpisodeRecord(f"t/{i:05d}/{code}", "t", code, i, i, i, 1, "success" if ok else "failure", ok, 5, 0.0,
                             "", 0.0, "")
    records = [rec(i, c, (i + ord(c)) % 3 == 0) for i in range(9) for c in "AB"]
    chosen = video.choose(records, "sample")
    assert sorted((r.policy_code, r.success) for r in chosen) == [("A", False), ("A", True), ("B", False), ("B", True)]
    assert all(r.ic_index == min(x.ic_index for x in records if (x.policy_code, x.success) == (r.policy_code, r.success))
               for r in chosen)
    assert len(video.choose(records, "failures")) == sum(not r.success for r in records)
    # with milestones: one failure of each failure mode
    modes = [rec(i, "A", False) for i in range(4)]
    modes = [dataclasses.replace(r, milestones={"reached": 2 if r.ic_index % 2 else None},
                                 held_at_end=["reached"] if r.ic_index % 2 else []) for r in modes]
    assert [r.ic_index for r in video.choose(modes, "sample", {"t": 5})] == [0, 1]  # no milestone; near the goal
    with pytest.raises(Exception, match="video='often'"):
        video.choose(records, "often")


def test_a_video_has_at_most_max_frames_at_the_narrowest_stride_that_fits():
    """Every episode length up to 3,000 steps: the frames (the reset's, every stride-th step's, the
    last) fit the cap, the stride is never below the asked one, and one step narrower would not fit."""
    def frames(steps, stride):
        return 1 + -(-steps // stride)

    for cap in (3, 10, 60):
        for steps in range(1, 3001):
            s = video.episode_stride(steps, 2, cap)
            assert s >= 2 and frames(steps, s) <= cap
            assert s == 2 or frames(steps, s - 1) > cap  # the narrowest that fits
    assert video.episode_stride(500, 2, 0) == 2 and video.episode_stride(118) == 2  # no cap; 60 frames exactly


def test_render_processes_get_equal_work_not_equal_counts():
    from evalsuite.journal import EpisodeRecord

    def rec(i, steps):
        return EpisodeRecord(f"t/{i:05d}/A", "t", "A", i, i, i, 1, "failure", False, steps, 0.0, "", 0.0, "")
    records = [rec(0, 2000), *[rec(i, 20) for i in range(1, 9)]]  # one long episode, eight short ones
    parts = video._split(records, 2)
    assert [len(p) for p in parts] == [1, 8]  # by count it would be 5 and 4
    assert [r for p in parts for r in p] == records  # contiguous, in order
    assert video._split(records[:1], 4) == [records[:1]]


# ---------------------------------------------------------------- a fake suite that renders (no OpenGL)
# Frames are drawn with numpy, so these tests need only ffmpeg (imageio-ffmpeg), never OSMesa; a
# subprocess sees the same suite through _DRIVER.

ENCODES = importlib.util.find_spec("imageio_ffmpeg") is not None
needs_ffmpeg = pytest.mark.skipif(not ENCODES, reason="encoding needs imageio-ffmpeg")
CAMERA_EVAL = ["evaluate", "suite=fake-cam", "policies=[ones,ones:speed=0.5]", "episodes=2", "max_steps=14",
               "tracking_uri=none", "progress=false"]
SMALL = ["video=all", "width=64", "height=48"]


class CameraEnv(CountdownEnv):
    """The fake task with two cameras; a frame is a ramp whose colour follows the running sum.
    ``EVALSUITE_TEST_RENDER_DELAY`` (seconds a frame) makes rendering slow enough to kill mid-way."""

    def __init__(self, task_id: str, max_steps: int = 30, **kwargs) -> None:
        super().__init__(task_id, max_steps, **kwargs)
        self.info = dataclasses.replace(self.info, cameras=("front", "side"))

    def render(self, camera: str, width: int, height: int) -> np.ndarray:
        time.sleep(float(os.environ.get("EVALSUITE_TEST_RENDER_DELAY", "0")))
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
        frame[..., 1] = int(self.total * 23) % 256
        frame[..., 2] = 255 if camera == "side" else 0
        return frame


def register_camera_suite() -> None:
    from evalsuite import registry
    from evalsuite.specs import PolicySpec, SuiteSpec, TaskSpec

    registry.suites.all()
    registry.policies.all()
    registry.suites.register(SuiteSpec(id="fake-cam", entry_point="tests.test_video:CameraEnv",
                                       tasks=(TaskSpec("t1", 30),), default_episodes=2))
    if "ones" not in registry.policies.all():
        registry.policies.register(PolicySpec(id="ones", entry_point="tests.conftest:OnesPolicy",
                                              params={"speed": 1.0, "chunk": 0, "nan_after": -1, "compute_s": 0.0}))


@pytest.fixture
def camera_run(tmp_path, monkeypatch):
    """A finished run of the fake camera suite with every episode rendered (4 videos of 64x48)."""
    monkeypatch.setenv("EVALSUITE_GL", "egl")  # the fake draws its frames itself: no OSMesa needed
    register_camera_suite()
    run = tmp_path / "run"
    assert main([*CAMERA_EVAL, "video=none", f"out={run}"]) == 0
    assert main(["video", str(run), *SMALL]) == 0
    assert len(json.loads((run / "videos" / "index.json").read_text())) == 4
    return run


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


_DRIVER = ("import sys; from evalsuite.cli import main; from tests.test_video import register_camera_suite; "
           "register_camera_suite(); sys.exit(main(sys.argv[1:]))")


def _evalsuite(args, **kwargs):
    """``evalsuite ARGS`` in a subprocess that knows the fake camera suite (its own session)."""
    env = {**os.environ, "EVALSUITE_GL": "egl", "PYTHONPATH": str(REPO)}
    env.update(kwargs.pop("env", {}))
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-c", _DRIVER, *map(str, args)], cwd=REPO, env=env,
                            start_new_session=True, **kwargs)


def _descendants(pid):
    """Every process below ``pid`` (Linux /proc), by parent links."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - out
        out |= frontier
    return out


def _alive(pid):
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@needs_ffmpeg
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
@pytest.mark.parametrize("kill", ["parent", "group"])
def test_a_killed_rerender_keeps_the_good_videos_and_no_process_outlives_it(camera_run, kill):
    """SIGKILL of `evalsuite video RUN` mid-render (its process only, or its whole process group):
    the videos, posters, index and report rendered before are intact, and the render worker and
    its ffmpeg die with it instead of writing on."""
    videos = camera_run / "videos"
    before, report = _snapshot(videos), (camera_run / "report.html").read_bytes()
    proc = _evalsuite(["video", camera_run, *SMALL], env={"EVALSUITE_TEST_RENDER_DELAY": "0.15"},
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: set[int] = set()
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:  # until ffmpeg is encoding
            seen |= _descendants(proc.pid)
            if any(Path(f"/proc/{p}/exe").exists() and "ffmpeg" in _cmdline(p) for p in seen):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the render ended before ffmpeg was seen"
        time.sleep(0.3)  # a few frames into the file
        seen |= _descendants(proc.pid)
        if kill == "parent":
            os.kill(proc.pid, signal.SIGKILL)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 3
        while time.time() < deadline and any(map(_alive, seen)):
            time.sleep(0.05)
        survivors = [(p, _cmdline(p)) for p in seen if _alive(p)]
        assert not survivors, f"outlived the killed parent: {survivors}"
        assert _snapshot(videos).keys() - before.keys() <= {p.name for p in videos.glob(".*.part*")}
        assert {k: v for k, v in _snapshot(videos).items() if k in before} == before  # not one byte changed
        assert (camera_run / "report.html").read_bytes() == report
    finally:
        for p in seen | {proc.pid}:
            if _alive(p):
                with contextlib.suppress(OSError):
                    os.kill(p, signal.SIGKILL)
    assert main(["video", str(camera_run), *SMALL]) == 0  # the next render finishes, litter gone
    assert not list(videos.glob(".*"))


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@needs_ffmpeg
@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="POSIX file size limit (RLIMIT_FSIZE)")
def test_a_full_disk_while_rendering_keeps_the_old_files(camera_run):
    """Writes past 1500 bytes fail (RLIMIT_FSIZE, for `evalsuite video` and every process it starts, as
    a disk that fills up): each mp4 fails mid-file, yet the videos, posters and index rendered before
    stay as they were, no temporary file is left, and the report still builds."""
    import resource

    videos = camera_run / "videos"
    before = _snapshot(videos)
    assert all(len(data) > 1500 for name, data in before.items() if name.endswith(".mp4"))

    def full_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    proc = _evalsuite(["video", camera_run, *SMALL], preexec_fn=full_disk)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err)
    assert err.decode().count("\n") == 1 and err.startswith(b"evalsuite: error: "), err
    assert _snapshot(videos) == before
    assert main(["report", str(camera_run)]) == 0
    assert (camera_run / "report.html").read_text().count("<video") == 4


@needs_ffmpeg
def test_a_damaged_index_is_one_line_for_video_and_missing_videos_for_report(camera_run, capsys):
    index = camera_run / "videos" / "index.json"
    for damage in ("", "{\"t1/00000/A\": ", "[1, 2]", "{\"t1/00000/A\": 7}"):
        index.write_text(damage)
        capsys.readouterr()
        assert main(["report", str(camera_run)]) == 0  # the report still builds
        out, err = capsys.readouterr()
        notes = [line for line in (out + err).splitlines() if "index.json" in line]
        assert len(notes) == 1 and "damaged" in notes[0], out + err
        assert "<video" not in (camera_run / "report.html").read_text()
        assert main(["video", str(camera_run), "trial=[t1/00000/A]", "width=64", "height=48"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "index.json" in err and "damaged" in err, err
        assert index.read_text() == damage  # left for the user to look at, not overwritten


@needs_ffmpeg
def test_the_report_shows_a_missing_or_empty_video_as_missing(camera_run):
    videos = camera_run / "videos"
    index = json.loads((videos / "index.json").read_text())
    (gone, empty, nowhere, fine) = sorted(index)
    (videos / index[gone]).unlink()
    (videos / index[empty]).write_bytes(b"")
    index[nowhere] = "../../../../etc/passwd"
    (videos / "index.json").write_text(json.dumps(index))
    assert main(["report", str(camera_run)]) == 0
    html, md = (camera_run / "report.html").read_text(), (camera_run / "report.md").read_text()
    assert html.count("<video") == 1 and f'src="videos/{index[fine]}"' in html
    assert html.count("video missing") == 3 and "passwd" not in html and "passwd" not in md
    assert f"(videos/{index[fine]})" in md and f"videos/{index[empty]}" not in md and md.count("video missing") == 3


@needs_ffmpeg
def test_a_bogus_camera_is_one_line_naming_the_accepted_ones(camera_run, capsys):
    capsys.readouterr()
    assert main(["video", str(camera_run), "camera=bogus", "width=64", "height=48"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "camera='bogus'" in err and "accepted: front, side" in err, err


def test_a_bogus_camera_on_evaluate_is_refused_before_any_episode(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EVALSUITE_GL", "egl")
    register_camera_suite()
    run = tmp_path / "run"
    capsys.readouterr()
    assert main([*CAMERA_EVAL, "video=all", "camera=bogus", f"out={run}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "camera='bogus'" in err and "accepted: front, side" in err, err
    assert not (run / "episodes.jsonl").exists() or not (run / "episodes.jsonl").read_text().strip()


def test_frame_sizes_are_bounded():
    with pytest.raises(UsageError, match=f"width=100000 must be <= {video.MAX_SIDE}"):
        video.check_size((100000, 100000))
    video.check_size((video.MAX_SIDE, 16))


@needs_ffmpeg
def test_a_long_render_says_how_far_it_is(camera_run, capsys, monkeypatch):
    """Rendering again with slow frames: lines of videos rendered / chosen and the time to go, while
    the render processes work (here every check, normally every 15 s)."""
    monkeypatch.setattr(video, "WAIT_S", 0.05)
    monkeypatch.setattr(video, "PROGRESS_S", 0.0)
    monkeypatch.setenv("EVALSUITE_TEST_RENDER_DELAY", "0.05")
    capsys.readouterr()
    assert main(["video", str(camera_run), *SMALL, "stride=1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("videos: ") and "/4 rendered" in line]
    assert lines and all(line.endswith("s to go") for line in lines)
    counts = [int(line.split()[1].split("/")[0]) for line in lines]
    assert counts == sorted(set(counts)) and counts[0] >= 1 and counts[-1] <= 4


def _decoded(path, size=(64, 48)):
    import imageio_ffmpeg

    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size[1], size[0], 3)


@needs_ffmpeg
def test_videos_of_a_run_replay_its_recorded_actions_and_show_what_the_policy_replay_shows(tmp_path, monkeypatch):
    """evaluate keeps each episode's actions and its videos step them again without the policy;
    `evalsuite video RUN` later (nothing recorded) asks the policy again: the same frames."""
    monkeypatch.setenv("EVALSUITE_GL", "egl")
    register_camera_suite()
    run = tmp_path / "run"
    assert main([*CAMERA_EVAL, "video=all", f"out={run}"]) == 0
    index = json.loads((run / "videos" / "index.json").read_text())
    assert len(index) == 4
    first = {name: _decoded(run / "videos" / name, (256, 192)) for name in index.values()}
    assert main(["video", str(run), "video=all"]) == 0
    for name, frames in first.items():
        again = _decoded(run / "videos" / name, (256, 192))
        assert frames.shape == again.shape and np.array_equal(frames, again)


def test_a_replay_from_recorded_actions_never_asks_the_policy(tmp_path, monkeypatch):
    """In process: every episode recorded, a policy factory that fails if called - the replays still
    match their journal; one episode not recorded is replayed with its policy (which fails it)."""
    from evalsuite import plan as plan_mod
    from evalsuite import registry
    from evalsuite.harness import EvaluateRequest, evaluate
    from evalsuite.journal import read
    from evalsuite.plan import PolicyEntry
    from evalsuite.runner import LocalExecutor, RunContext

    register_camera_suite()
    out = tmp_path / "run"
    evaluate(EvaluateRequest.of(suite="fake-cam", policies=[PolicyEntry("ones", {"speed": 0.5})], out=out, episodes=3,
                                max_steps=14, tracking_uri=None, progress=False, video="none"), log=lambda *_: None)
    plan, _ = plan_mod.load(out)
    records = read(out / "episodes.jsonl")
    recorder = LocalExecutor(batch_size=2, record_actions=True)
    with recorder:
        from tests.conftest import OnesPolicy

        recorder.run(plan.trials, RunContext(suite=registry.suites.get("fake-cam"), max_steps=plan.max_steps,
                                             make_policy=lambda code, task: OnesPolicy(task, None, speed=0.5)),
                     lambda r: None)
    assert {t: len(a) for t, a in recorder.actions.items()} == {r.trial_id: r.steps for r in records}

    def no_policy(code, task):
        raise AssertionError("the policy was asked")

    monkeypatch.setenv("EVALSUITE_TEST_RENDER_DELAY", "0")
    folder = out / "videos"
    folder.mkdir()
    kept, notes = video.replay(registry.suites.get("fake-cam"), no_policy, plan.max_steps, records, folder,
                               size=(64, 48), actions=recorder.actions)
    assert set(kept) == {r.trial_id for r in records} and not notes
    missing = dict(list(recorder.actions.items())[1:])
    with pytest.raises(AssertionError, match="the policy was asked"):
        video.replay(registry.suites.get("fake-cam"), no_policy, plan.max_steps, records, folder, size=(64, 48),
                     actions=missing)


@needs_ffmpeg
@pytest.mark.parametrize("recorded", [True, False])
def test_replays_of_two_policies_chosen_unevenly_each_film_their_own_episode(tmp_path, monkeypatch, recorded):
    """Chosen trials 0A, 1B, 3B, 5A (not the turns of a batched order): each video is its own trial's
    episode - its frame count follows its own steps (speed 1 and speed 0.4 differ) - whether replayed
    from recorded actions or by asking the policies."""
    from evalsuite import plan as plan_mod
    from evalsuite import registry
    from evalsuite.harness import EvaluateRequest, evaluate
    from evalsuite.journal import read
    from evalsuite.plan import PolicyEntry
    from evalsuite.runner import LocalExecutor, RunContext
    from tests.conftest import OnesPolicy

    register_camera_suite()
    out = tmp_path / "run"
    entries = [PolicyEntry("ones", {"speed": 1.0}), PolicyEntry("ones", {"speed": 0.4})]
    evaluate(EvaluateRequest.of(suite="fake-cam", policies=entries, out=out, episodes=6, max_steps=14,
                                tracking_uri=None, progress=False, video="none"), log=lambda *_: None)
    plan, key = plan_mod.load(out)
    speed = {code: float(key[code].params["speed"]) for code in plan.codes}
    records = {(r.ic_index, speed[r.policy_code]): r for r in read(out / "episodes.jsonl")}
    chosen = [records[0, 1.0], records[1, 0.4], records[3, 0.4], records[5, 1.0]]
    assert len({r.steps for r in chosen}) > 1
    actions = None
    if recorded:
        recorder = LocalExecutor(batch_size=2, record_actions=True)
        with recorder:
            recorder.run(plan.trials, RunContext(suite=registry.suites.get("fake-cam"), max_steps=plan.max_steps,
                                                 make_policy=lambda code, task: OnesPolicy(task, None, speed[code])),
                         lambda r: None)
        actions = recorder.actions
    folder = out / "videos"
    folder.mkdir()
    kept, notes = video.replay(registry.suites.get("fake-cam"), lambda code, task: OnesPolicy(task, None, speed[code]),
                               plan.max_steps, chosen, folder, size=(64, 48), actions=actions)
    assert not notes and set(kept) == {r.trial_id for r in chosen}
    for r in chosen:
        frames = _decoded(folder / kept[r.trial_id])
        assert len(frames) == 1 + -(-r.steps // video.episode_stride(r.steps)), r.trial_id
