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
    evaluate(EvaluateRequest.of(suite="fake", policies=[PolicyEntry("ones", {"group": label_part}),
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
    evaluate(EvaluateRequest.of(suite="fake", policies=[PolicyEntry("ones", {}), PolicyEntry("ones", {"speed": 0.5})],
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


# ---------------------------------------------------------------- issue 23: bad backends, one run per folder

def _fake_run(tmp_path, name="run", episodes=3):
    from evalsuite.harness import EvaluateRequest, evaluate
    from evalsuite.plan import PolicyEntry

    evaluate(EvaluateRequest.of(suite="fake", policies=[PolicyEntry("ones", {}), PolicyEntry("ones", {"speed": 0.5})],
                             out=tmp_path / name, episodes=episodes, max_steps=14, tracking_uri=None, progress=False),
             log=lambda *_: None)
    return tmp_path / name


def _all_runs(uri):
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("evalsuite")
    return client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)


def test_syncing_twice_updates_the_recorded_run_instead_of_making_another(fake_suite, tmp_path, monkeypatch, capsys):
    """tracking.json names the run; a second sync updates it (deleted duplicates still fill the
    database and the UI's "show deleted"), and the folder keeps one run id. MLflow never changes a
    logged parameter, so after `report interval=...` a new run replaces the recorded one."""
    from evalsuite.cli import main

    monkeypatch.chdir(tmp_path)
    run = _fake_run(tmp_path)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    ids = []
    for _ in range(2):
        assert main(["sync", str(run), f"tracking_uri={uri}"]) == 0, capsys.readouterr()
        ids.append(json.loads((run / "tracking.json").read_text())["run_id"])
    runs = _all_runs(uri)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert ids[0] == ids[1] == parents[0].info.run_id and len(parents) == 1
    assert len(runs) == 3 and all(r.info.lifecycle_stage == "active" for r in runs)  # parent + one child a policy
    assert {"ones/mean", "ones:speed-0.5/mean"} <= set(parents[0].data.metrics), parents[0].data.metrics
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == ids[0]]
    assert sorted(c.info.run_name for c in children) == ["ones", "ones:speed=0.5"]
    assert all("t1/rate" in c.data.metrics for c in children)

    assert main(["report", str(run), "interval=jeffreys"]) == 0
    assert main(["sync", str(run), f"tracking_uri={uri}"]) == 0, capsys.readouterr()
    replaced = json.loads((run / "tracking.json").read_text())["run_id"]
    active = [r for r in _all_runs(uri) if r.info.lifecycle_stage == "active" and "mlflow.parentRunId" not in r.data.tags]
    assert replaced != ids[0] and [r.info.run_id for r in active] == [replaced]
    assert active[0].data.params["interval"] == "jeffreys"


def test_gate_with_tracking_none_touches_no_mlflow(fake_suite, tmp_path, monkeypatch, capsys):
    """tracking_uri=none means no MLflow at all: an mlflow: reference is refused in one line instead
    of being looked up in (and creating) ./mlflow.db."""
    from evalsuite.cli import main

    monkeypatch.chdir(tmp_path)
    run = _fake_run(tmp_path)
    capsys.readouterr()
    code = main(["gate", "baseline=mlflow-tag:role=baseline", f"candidate={run}", "candidate_label=ones",
                 "tracking_uri=none", f"out={tmp_path / 'gate'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "is read from MLflow, but tracking_uri=none turns MLflow off" in err
    assert main(["gate", f"baseline={run}", f"candidate={run}", "baseline_label=ones", "candidate_label=ones",
                 "tracking_uri=none", f"out={tmp_path / 'gate2'}"]) in (0, 3)
    assert not any((tmp_path / name).exists() for name in ("mlflow.db", "mlartifacts", "mlruns"))


def test_gate_reading_a_missing_database_does_not_create_it(fake_suite, tmp_path, monkeypatch, capsys):
    from evalsuite.cli import main

    monkeypatch.chdir(tmp_path)
    run = _fake_run(tmp_path)
    capsys.readouterr()
    code = main(["gate", "baseline=mlflow-tag:role=baseline", f"candidate={run}", "candidate_label=ones",
                 f"tracking_uri=sqlite:///{tmp_path / 'nothing.db'}", f"out={tmp_path / 'gate'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "there is no MLflow database at" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "nothing.db").exists()


def test_a_backend_that_fails_after_the_episodes_keeps_the_results_and_says_sync(fake_suite, tmp_path, monkeypatch):
    """Through the API nothing checks the URI before the episodes run: the end of the run must
    still be one line with the sync command, never a traceback, and the results stay on disk."""
    from evalsuite.harness import EvaluateRequest, evaluate
    from evalsuite.plan import PolicyEntry

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.db").write_text("not a database\n")
    uri = f"sqlite:///{tmp_path / 'notes.db'}"
    lines = []
    started = time.time()
    evaluate(EvaluateRequest.of(suite="fake", policies=[PolicyEntry("ones", {})], out=tmp_path / "run", episodes=2,
                             max_steps=14, tracking_uri=uri, progress=False), log=lines.append)
    assert time.time() - started < 60  # no minutes of MLflow retries
    assert json.loads((tmp_path / "run" / "results.json").read_text())["trials"]["complete"]
    said = "\n".join(str(line) for line in lines)
    assert "is not an SQLite database" in said and f"evalsuite sync {tmp_path / 'run'} tracking_uri={uri}" in said
    assert not (tmp_path / "run" / "tracking.json").exists()


def _unprivileged():
    """A preexec function that makes root obey file modes (drops CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH and CAP_FOWNER from the child's bounding set), so a chmod-ed file or folder
    is read-only for the command even when the tests run as root. Skips where that is impossible."""
    if os.geteuid() != 0:
        return None
    import ctypes

    def drop():
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2, 3):
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:  # the drop must really refuse, or the test could not fail
        probe = Path(tmp) / "probe"
        probe.write_text("")
        probe.chmod(0o444)
        try:
            out = subprocess.run([sys.executable, "-c", "import sys; open(sys.argv[1], 'a')", str(probe)],
                                 preexec_fn=drop, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"cannot drop root's permission override here ({exc}); the read-only case needs it")
    if out.returncode == 0:
        pytest.skip("root still overrides file permissions here; the read-only case needs them obeyed")
    return drop


def _cli_unprivileged(cwd, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "evalsuite", *args], cwd=cwd, capture_output=True, text=True,
                          env=ENV, timeout=timeout, preexec_fn=_unprivileged())


def test_read_only_sqlite_file_is_one_line_and_quick(small_run, tmp_path):
    import sqlite3

    db = tmp_path / "ro.db"
    with sqlite3.connect(db) as con:
        con.execute("create table t (x)")
    db.chmod(0o444)
    started = time.time()
    out = _cli_unprivileged(tmp_path, "sync", str(small_run), f"tracking_uri=sqlite:///{db}")
    err = out.stderr.strip()
    assert out.returncode == 2 and len(err.splitlines()) == 1, err[-3000:]
    assert f"{db} is read-only" in err and time.time() - started < 60


def test_read_only_working_directory_is_refused_up_front_and_the_run_is_kept(small_run, tmp_path):
    """The default ./mlflow.db cannot live in a read-only folder: one line before any episode
    (MLflow retried for > 200 s after the episodes before), the finished run folder untouched and
    the message saying how to log it later."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    before = {name: (run / name).read_bytes() for name in ("episodes.jsonl", "results.json")}
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        for args in (["evaluate", "suite=metaworld-smoke", "tasks=[drawer-open]", "policies=[scripted,random]",
                      "episodes=2", "max_steps=120", f"out={run}", "progress=false"], ["sync", str(run)]):
            out = _cli_unprivileged(ro, *args)
            err = out.stderr.strip()
            assert out.returncode == 2 and len(err.splitlines()) == 1, err[-3000:]
            assert f"{ro} is read-only" in err and "evalsuite sync RUN" in err, err
            assert not (ro / "mlflow.db").exists()
    finally:
        ro.chmod(0o755)
    assert {name: (run / name).read_bytes() for name in before} == before


def test_mlflow_shows_the_comparison(fake_suite, tmp_path, monkeypatch):
    """Read back from a real sqlite store: a two-policy comparison's parent run has a unique,
    descriptive name, its paired difference with interval and p-value (per task and over tasks) as
    metrics with readable names, the report's summary as its description and the evaluation's own
    start and end; each policy's child run has every parameter it ran with, defaults included."""
    from datetime import datetime

    from mlflow.tracking import MlflowClient

    from evalsuite.harness import EvaluateRequest, evaluate
    from evalsuite.plan import PolicyEntry

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for folder, seed in (("first", 0), ("second", 1)):
        evaluate(EvaluateRequest.of(suite="fake", policies=[PolicyEntry("ones", {}), PolicyEntry("ones", {"speed": 0.5})],
                                    out=tmp_path / folder, episodes=6, max_steps=14, seed=seed, tracking_uri=uri,
                                    progress=False), log=lambda *_: None)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("evalsuite")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len({r.info.run_name for r in parents}) == 2  # unique
    first = next(r for r in parents if r.info.run_name.startswith("first:"))
    assert "ones vs ones:speed-0.5" in first.info.run_name and "fake" in first.info.run_name
    metrics = first.data.metrics
    for task in ("t1", "t2", "mean over tasks"):
        stem = f"pair/{task}/ones - ones:speed-0.5"
        assert {f"{stem}/difference", f"{stem}/ci_low", f"{stem}/ci_high"} <= set(metrics), sorted(metrics)
    assert metrics["pair/t1/ones - ones:speed-0.5/ci_low"] <= metrics["pair/t1/ones - ones:speed-0.5/difference"]
    assert 0 <= metrics["pair/t1/ones - ones:speed-0.5/p_value"] <= 1
    assert "## Summary" in first.data.tags["mlflow.note.content"]
    info = json.loads((tmp_path / "first" / "run_info.json").read_text())
    started, ended = (int(datetime.fromisoformat(info[k]).timestamp() * 1000) for k in ("started", "ended"))
    assert (first.info.start_time, first.info.end_time) == (started, ended)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == first.info.run_id]
    slow = next(c for c in children if c.data.params["policy_label"] == "ones:speed=0.5")
    assert {"param.speed": "0.5", "param.chunk": "0", "param.nan_after": "-1", "param.compute_s": "0.0"}.items() \
        <= slow.data.params.items()
