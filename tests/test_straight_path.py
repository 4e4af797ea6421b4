"""The main job is one straight line: nothing ``evaluate`` writes into the run folder is read back
by the same process (every file open is traced with an audit hook under a full run of the fake
camera suite: episodes, videos, results, report, MLflow)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from evalsuite.cli import main

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

_TRACE: dict[str, object] = {"on": False, "root": "", "written": set(), "reread": []}


def _hook(event: str, args: tuple) -> None:
    if not _TRACE["on"]:
        return
    if event == "open":
        path, mode, flags = args
        if not isinstance(path, (str, bytes, os.PathLike)):
            return  # an open file descriptor
        path = os.path.abspath(os.fsdecode(path))
        if not path.startswith(str(_TRACE["root"])) or os.path.isdir(path) or path.endswith(".lock"):
            return
        if _uploading():  # MLflow copying the run folder as the run's artifacts reads every file: a copy, not a re-read
            return
        writes = (any(c in mode for c in "wax+") if isinstance(mode, str)
                  else bool(flags & (os.O_WRONLY | os.O_RDWR)))
        if writes:
            _TRACE["written"].add(path)
        elif path in _TRACE["written"]:
            _TRACE["reread"].append(path)
    elif event == "os.rename":  # os.replace too: the temporary file published under its name
        _TRACE["written"].add(os.path.abspath(os.fsdecode(args[1])))


def _uploading() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if "mlflow" in frame.f_code.co_filename and "artifact" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


sys.addaudithook(_hook)  # cannot be removed: it does nothing while _TRACE["on"] is False


@pytest.fixture
def traced(tmp_path):
    _TRACE.update(on=True, root=str(tmp_path), written=set(), reread=[])
    yield _TRACE
    _TRACE["on"] = False


def test_evaluate_reads_back_nothing_it_wrote(traced, tmp_path, monkeypatch):
    from tests.test_video import CAMERA_EVAL, register_camera_suite

    monkeypatch.setenv("EVALSUITE_GL", "egl")  # the fake camera suite draws its frames itself
    register_camera_suite()
    out = tmp_path / "run"
    argv = [a for a in CAMERA_EVAL if not a.startswith("tracking_uri=")]
    assert main([*argv, "video=all", f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", f"out={out}"]) == 0
    written = {Path(p).relative_to(out).as_posix() for p in traced["written"] if Path(p).is_relative_to(out)}
    assert {"plan.json", "blinding.json", "episodes.jsonl", "results.json", "report.md", "report.html",
            "run_info.json", "tracking.json"} <= written  # the trace sees the writes
    assert not traced["reread"], f"read back after writing it: {sorted(set(traced['reread']))}"
