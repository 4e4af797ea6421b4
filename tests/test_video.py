"""Rollout videos: episodes replayed after the run from their trials match the journal step for
step, and the rendered frames show the scene. Rendering needs OSMesa (`.ci/run` installs Debian's
libosmesa6); where it is missing the run says so in one line and keeps every result."""

import dataclasses
import json
import subprocess

import numpy as np
import pytest

from evalsuite import video
from evalsuite.cli import main

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
        assert len(frames) == records[trial]["steps"] + 1  # the reset and every step
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
