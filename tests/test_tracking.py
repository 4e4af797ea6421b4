"""MLflow: a real `mlflow server` on loopback; a server that is down never loses results."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(cwd, *args):
    return subprocess.run([sys.executable, "-m", "evalsuite", *args], cwd=cwd, capture_output=True, text=True,
                          env=ENV, timeout=600)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    out = _cli(tmp, "evaluate", "suite=metaworld-smoke", "tasks=[drawer-open]", "policies=[scripted,random]",
               "episodes=2", "max_steps=120", "out=run", "tracking_uri=none", "progress=false")
    assert out.returncode == 0, out.stderr
    return tmp / "run"


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "server-artifacts")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2).read()
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        proc.wait()
        pytest.fail("mlflow server did not start within 90 s")
    yield uri
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_down_server_keeps_results_and_sync_logs_them_later(small_run, tmp_path, mlflow_server):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    dead = f"http://127.0.0.1:{_free_port()}"
    out = _cli(tmp_path, "report", "run")
    assert out.returncode == 0
    out = _cli(tmp_path, "sync", "run", f"tracking_uri={dead}")
    assert out.returncode == 1
    assert "unreachable" in out.stdout and f"evalsuite sync run tracking_uri={dead}" in out.stdout
    assert (run / "results.json").exists()
    # the server is back: sync logs the folder, and syncing again replaces rather than duplicates
    for _ in range(2):
        out = _cli(tmp_path, "sync", "run", f"tracking_uri={mlflow_server}")
        assert out.returncode == 0, out.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("evalsuite")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 3
    assert json.loads((run / "tracking.json").read_text())["run_id"] == parents[0].info.run_id
    names = [a.path for a in client.list_artifacts(parents[0].info.run_id, "run")]
    assert "run/report.html" in names
    from evalsuite.video import unavailable

    if unavailable() is None:  # the run's default video=sample rendered its episodes: MLflow has them
        videos = [a.path for a in client.list_artifacts(parents[0].info.run_id, "run/videos")]
        assert "run/videos/index.json" in videos and any(v.endswith(".mp4") for v in videos)


def test_evaluate_with_server_down_exits_zero_with_sync_hint(tmp_path):
    dead = f"http://127.0.0.1:{_free_port()}"
    out = _cli(tmp_path, "evaluate", "video=none", "suite=metaworld-smoke", "tasks=[drawer-open]", "policies=[scripted]",
               "episodes=1", "max_steps=120", "out=run", f"tracking_uri={dead}", "progress=false")
    assert out.returncode == 0, out.stderr
    assert "evalsuite sync run" in out.stdout
    assert json.loads((tmp_path / "run" / "results.json").read_text())["trials"]["complete"]


def test_labels_with_paths_reach_mlflow_sanitised(fake_suite, tmp_path, monkeypatch):
    """A checkpoint path as people type it (``..``, spaces, colons, slashes) ends up in the policy
    label and from there in metric names; MLflow must accept every one of them."""
    from mlflow.tracking import MlflowClient

    from evalsuite.harness import EvaluateRequest, evaluate
    from evalsuite.plan import PolicyEntry

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    label_part = "../ckpts/my run:v2//./model.pth"
    evaluate(EvaluateRequest(suite="fake", policies=[PolicyEntry("ones", {"group": label_part}),
                                                     PolicyEntry("ones", {"speed": 0.5})],
                             out=tmp_path / "run", episodes=3, max_steps=14, tracking_uri=uri, progress=False),
             log=lambda *_: None)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("evalsuite")
    parent = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" not in r.data.tags]
    assert len(parent) == 1
    names = list(parent[0].data.metrics)
    assert any("ckpts/my run:v2/model.pth" in n for n in names), names
    assert not any(".." in n or "//" in n or "/./" in n for n in names)


def test_progress_goes_to_mlflow_while_the_run_goes_and_is_replaced_at_the_end(fake_suite, tmp_path, monkeypatch):
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    from evalsuite.harness import EvaluateRequest, evaluate
    from evalsuite.plan import PolicyEntry

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    evaluate(EvaluateRequest(suite="fake", policies=[PolicyEntry("ones", {}), PolicyEntry("ones", {"speed": 0.5})],
                             out=tmp_path / "run", episodes=4, max_steps=14, tracking_uri=uri, progress=False),
             log=lambda *_: None)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("evalsuite")
    runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)
    (live,) = [r for r in runs if r.data.tags.get("evalsuite.live") == "true"]
    assert live.info.lifecycle_stage == "deleted"  # replaced by the final run of the same folder
    assert live.data.metrics["progress/episodes_done"] == live.data.metrics["progress/episodes_planned"] == 16
    per_code = {k: v for k, v in live.data.metrics.items() if k.count("/") == 2}
    assert len(per_code) == 4 and all(v == 4 for v in per_code.values())  # 2 tasks x 2 codes, codes only
    assert not any("ones" in k for k in live.data.metrics)  # blind: no policy names
    final = [r for r in runs if r.info.lifecycle_stage == "active" and "mlflow.parentRunId" not in r.data.tags]
    assert len(final) == 1 and final[0].data.tags["evalsuite.run_uid"] == live.data.tags["evalsuite.run_uid"]
