"""Meta-World for real: suite and policy conformance, end-to-end runs, determinism, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from evalsuite import registry
from evalsuite.journal import read
from evalsuite.testing import check_policy, check_suite
from tests.conftest import REPO

SLOW_SUITES = {"robomimic-image", "robomimic-family/lift"}  # minutes of robosuite: `nox -s tests_slow`


@pytest.mark.parametrize("suite_id", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW_SUITES else s
                                      for s in sorted(registry.suites.all())])
def test_suite_conformance(suite_id):
    check_suite(suite_id)


@pytest.mark.parametrize("policy_id", ["scripted", "noisy-scripted", "random"])
def test_builtin_policy_conformance(policy_id):
    check_policy(policy_id, "metaworld-smoke", "pick-place")


def test_noise_changes_fingerprint():
    suite = registry.suites.get("metaworld-smoke")
    from evalsuite_policies.metaworld_expert import MetaWorldExpert

    task = suite.task("pick-place")
    assert MetaWorldExpert(task, suite, 0.1).fingerprint() != MetaWorldExpert(task, suite, 0.2).fingerprint()


def _evaluate(cwd, *args, check=True, timeout=600):
    cmd = [sys.executable, "-m", "evalsuite", "evaluate", "progress=false", "video=none", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def _outcomes(run_dir):
    return sorted((r.trial_id, r.status, r.steps, r.success, r.episode_return, json.dumps(r.init_state),
                   r.policy_fingerprint) for r in read(run_dir / "episodes.jsonl"))


RESUME_ARGS = ["suite=metaworld-smoke", "tasks=[drawer-open,pick-place]", "policies=[scripted,noisy-scripted]",
               "episodes=6", "seed=3", "max_steps=200", "tracking_uri=none"]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    _evaluate(tmp, *RESUME_ARGS, "out=run")
    return tmp / "run"


def test_same_seed_gives_identical_journal(reference_run, tmp_path):
    _evaluate(tmp_path, *RESUME_ARGS, "out=again", "batch_size=3")
    assert _outcomes(reference_run) == _outcomes(tmp_path / "again")
    assert (reference_run / "results.json").read_text() == (tmp_path / "again" / "results.json").read_text()
    results = json.loads((reference_run / "results.json").read_text())
    scripted = [r for r in results["per_task"] if r["policy"] == "scripted"]
    assert all(r["rate"] >= 5 / 6 for r in scripted)  # the real expert works on the real simulator


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(reference_run, tmp_path):
    rng = np.random.default_rng(2024)
    cmd = [sys.executable, "-m", "evalsuite", "evaluate", "progress=false", "video=none", *RESUME_ARGS, "out=run"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kills = 0
    log = tmp_path / "stderr.txt"
    journal = tmp_path / "run" / "episodes.jsonl"

    def journaled() -> int:
        return len(journal.read_bytes().splitlines()) if journal.exists() else 0

    for attempt in range(6):  # kill mid-run, after a random number of new records, whatever the host's speed
        with open(log, "wb") as err:
            proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err, env=env)
            if attempt < 5:
                start, wanted = journaled(), int(rng.integers(1, 4))
                while proc.poll() is None and journaled() < start + wanted:
                    time.sleep(0.02)
                if proc.poll() is None:
                    time.sleep(float(rng.uniform(0.0, 0.3)))  # and at a random moment after that
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    continue
            proc.wait(timeout=600)
        assert proc.returncode == 0, log.read_text()[-2000:]
        break
    else:
        pytest.fail("the run never completed")
    assert kills >= 2
    records = read(tmp_path / "run" / "episodes.jsonl")
    assert len(records) == len({r.trial_id for r in records}) == 2 * 6 * 2  # none lost, none twice
    assert _outcomes(tmp_path / "run") == _outcomes(reference_run)
    assert (tmp_path / "run" / "results.json").read_text() == (reference_run / "results.json").read_text()


def test_resume_with_different_seed_is_refused(reference_run, tmp_path):
    import shutil

    shutil.copytree(reference_run, tmp_path / "run")
    args = [a if not a.startswith("seed=") else "seed=4" for a in RESUME_ARGS]
    out = _evaluate(tmp_path, *args, "out=run", check=False)
    assert out.returncode == 2
    assert "holds a run with seed=3, not 4" in out.stderr and "Traceback" not in out.stderr


def test_default_run_writes_folder_report_and_mlflow(tmp_path):
    """The main job: plan, key, journal, results, report with figures, and an MLflow run in sqlite."""
    out = _evaluate(tmp_path, "suite=metaworld-smoke", "policies=[scripted,noisy-scripted]", "episodes=2",
                    "max_steps=150", "out=run")
    run = tmp_path / "run"
    for name in ("plan.json", "blinding.json", "episodes.jsonl", "results.json", "run_info.json", "report.md",
                 "report.html", "figures/success_per_task.png", "figures/paired_differences.png",
                 "figures/posterior_violins.png", "figures/performance_profiles.png", "tracking.json"):
        assert (run / name).exists(), name
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "Aggregates over tasks" in html and "P(X &gt; Y)" in html
    results = json.loads((run / "results.json").read_text())
    row = results["per_task"][0]
    assert {"n", "successes", "rate", "ci_low", "ci_high", "method", "level"} <= set(row)
    assert "MLflow: run" in out.stdout
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("evalsuite")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parent) == 1 and len(children) == 2
    assert parent[0].data.params["suite"] == "metaworld-smoke"
    assert "version.metaworld" in parent[0].data.params and "git_commit" in parent[0].data.params
    child = next(c for c in children if c.data.params["policy_label"] == "scripted")
    assert child.data.metrics["pick-place/n"] == 2
    assert "pick-place/ci_low" in child.data.metrics
    assert any(k.startswith("mixed/") for k in parent[0].data.metrics)  # the mixed model reaches MLflow
    assert "scripted/iqm" in parent[0].data.metrics and "scripted/optimality_gap_ci_low" in parent[0].data.metrics
    assert {m["metric"] for m in results["aggregates"]["metrics"]} == {"mean", "median", "iqm", "optimality_gap"}
    assert parent[0].data.tags["letters.pick-place"].startswith("scripted=")
    artifacts = [a.path for a in client.list_artifacts(parent[0].info.run_id, "run")]
    assert "run/results.json" in artifacts and "run/episodes.jsonl" in artifacts
    # the report is rebuilt from the journal alone, with other statistics on request
    rebuilt = subprocess.run([sys.executable, "-m", "evalsuite", "report", "run", "interval=jeffreys"], cwd=tmp_path,
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads((run / "results.json").read_text())["per_task"][0]["method"] == "jeffreys"
