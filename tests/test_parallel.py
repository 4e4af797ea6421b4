"""Whole-episode executors: worker processes and Ray (local, and a two-node cluster on loopback).
Same seed, same results as the lock-step executor; a worker killed mid-run costs retries, never an
episode lost or counted twice."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite import registry
from evalsuite.harness import EvaluateRequest, evaluate
from evalsuite.journal import read
from evalsuite.plan import PolicyEntry
from evalsuite.specs import PolicySpec

POLICIES = [PolicyEntry("ones", {"speed": 0.6}), PolicyEntry("ones", {})]


def _evaluate(tmp_path, name, policies=POLICIES, **kw):
    out = tmp_path / name
    results = evaluate(EvaluateRequest.of(suite="fake", policies=policies, out=out, episodes=8, max_steps=14,
                                       tracking_uri=None, progress=False, batch_size=3, **kw), log=lambda *_: None)
    return results, read(out / "episodes.jsonl"), json.loads((out / "run_info.json").read_text())


def _outcomes(records):
    return sorted((r.trial_id, r.status, r.steps) for r in records if r.status != "error")


def test_worker_processes_give_the_lock_step_results(fake_suite, tmp_path):
    reference, ref_records, _ = _evaluate(tmp_path, "lock")
    results, records, info = _evaluate(tmp_path, "workers", workers=2)
    assert json.dumps(results.to_dict(), sort_keys=True) == json.dumps(reference.to_dict(), sort_keys=True)
    assert _outcomes(records) == _outcomes(ref_records)
    assert info["parallelism"]["executor"] == "local-workers" and info["parallelism"]["workers"] == 2
    assert info["parallelism"]["inference_threads_per_worker"] * 2 <= info["parallelism"]["cpus"] or \
        info["parallelism"]["cpus"] == 1
    split = info["time"]  # summed over the workers' chunks, the rest of 2 x the wall time is "other"
    assert split["workers"] == 2 and all(split[k] >= 0 for k in ("simulator_s", "reset_s", "build_s", "inference_s",
                                                                 "other_s"))
    assert sum(split[k] for k in ("simulator_s", "reset_s", "build_s", "inference_s")) <= split["running_s"] \
        <= 2 * split["wall_s"]
    assert split["running_s"] > 0


def _register_suicidal():
    registry.policies.register(PolicySpec(id="suicidal", entry_point="tests.conftest:SuicidalPolicy",
                                          params={"marker": "", "after": 3, "victim": -1}))


def _nothing_lost_or_doubled(results, records, episodes=8, tasks=2, missing=0):
    assert sum(r.n for r in results.per_task) == episodes * tasks * len(results.policies) - missing
    final = [r for r in records if r.status != "error"]
    assert len({r.trial_id for r in final}) == len(final)  # none counted twice


def test_a_killed_worker_process_costs_nothing_lost(fake_suite, tmp_path):
    _register_suicidal()
    marker = tmp_path / "killed"
    results, records, _ = _evaluate(tmp_path, "run", policies=[PolicyEntry("suicidal", {"marker": str(marker)})],
                                    workers=2)
    assert marker.exists()
    _nothing_lost_or_doubled(results, records)
    assert not [r for r in records if r.status == "error"]  # its chunk-mates ran again, uncharged


def test_an_episode_that_always_kills_its_worker_is_the_only_one_charged(fake_suite, tmp_path):
    from evalsuite.plan import ic_seeds

    _register_suicidal()
    victim = ic_seeds(0, "t1", 2)[1]  # the policy seed of initial condition 2 of t1
    results, records, _ = _evaluate(tmp_path, "run", policies=[PolicyEntry("suicidal", {"victim": victim})],
                                    workers=2)
    errors = [r for r in records if r.status == "error"]
    assert errors and {r.trial_id for r in errors} == {"t1/00002/A"}  # charged alone, every attempt
    assert sorted(r.attempt for r in errors) == [1, 2, 3] and all("worker process died" in r.reason for r in errors)
    _nothing_lost_or_doubled(results, records, missing=1)
    row = next(r for r in results.per_task if r.task == "t1")
    assert row.missing == 1 and row.n == 7


ray = pytest.importorskip("ray")


def test_ray_locally_gives_the_lock_step_results_and_survives_a_killed_actor(fake_suite, tmp_path):
    reference, ref_records, _ = _evaluate(tmp_path, "lock")
    results, records, info = _evaluate(tmp_path, "ray", executor="ray", workers=2)
    assert json.dumps(results.to_dict(), sort_keys=True) == json.dumps(reference.to_dict(), sort_keys=True)
    assert _outcomes(records) == _outcomes(ref_records)
    assert info["parallelism"]["executor"] == "ray" and info["parallelism"]["address"] == "local"
    _register_suicidal()
    marker = tmp_path / "killed"
    results, records, _ = _evaluate(tmp_path, "ray-kill", policies=[PolicyEntry("suicidal", {"marker": str(marker)})],
                                    executor="ray", workers=2)
    assert marker.exists()
    _nothing_lost_or_doubled(results, records)
    assert any("Ray worker lost" in r.reason for r in records)


def test_ray_policy_servers_batch_every_actor_and_give_the_lock_step_results(fake_suite, tmp_path):
    """Two environment actors, one policy server: per-episode policy state lives on the server,
    requests of both actors meet in one call, and a killed server costs retries, nothing lost."""
    policies = [PolicyEntry("coin", {"p": 0.6}), PolicyEntry("ones", {"compute_s": 0.02})]
    reference, ref_records, _ = _evaluate(tmp_path, "lock", policies=policies)
    results, records, info = _evaluate(tmp_path, "served", policies=policies, executor="ray", workers=2,
                                       inference_actors=1)
    assert json.dumps(results.to_dict(), sort_keys=True) == json.dumps(reference.to_dict(), sort_keys=True)
    assert _outcomes(records) == _outcomes(ref_records)
    (server,) = info["parallelism"]["inference_servers"]
    assert server["max_requests"] == 2 and server["calls"] < server["rows"]  # both actors' rows in one call
    assert info["parallelism"]["inference_actors"] == 1 and "inference_threads_per_worker" not in info["parallelism"]
    _register_suicidal()
    marker = tmp_path / "killed"
    results, records, _ = _evaluate(tmp_path, "served-kill", policies=[PolicyEntry("suicidal", {"marker": str(marker)})],
                                    executor="ray", workers=2, inference_actors=1)
    assert marker.exists()
    _nothing_lost_or_doubled(results, records)
    assert any("inference server" in r.reason for r in records if r.status == "error")


@pytest.fixture
def two_node_cluster():
    """`ray start --head` plus a second node process joining it, on loopback only."""
    exe = Path(sys.executable).parent / "ray"
    if not exe.exists():
        pytest.skip("the ray command is not installed beside this Python")
    port = "6391"
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    run = lambda *a: subprocess.run([str(exe), *a], capture_output=True, text=True, timeout=120)  # noqa: E731
    try:
        head = run("start", "--head", f"--port={port}", "--include-dashboard=false", *common)
        assert head.returncode == 0, head.stderr
        node = run("start", f"--address=127.0.0.1:{port}", *common)
        assert node.returncode == 0, node.stderr
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        run("stop", "--force")


@pytest.mark.slow  # ~20 s with the cluster's start and stop; Ray on this machine stays in the default tier
def test_ray_on_a_two_node_cluster_spreads_actors_and_gives_the_same_results(fake_suite, tmp_path, two_node_cluster):
    reference, ref_records, _ = _evaluate(tmp_path, "lock")
    results, records, info = _evaluate(tmp_path, "cluster", executor="ray", ray_address=two_node_cluster, workers=2,
                                       worker_cpus=1)
    nodes = [n for n in ray.nodes() if n["Alive"]] if ray.is_initialized() else None
    assert json.dumps(results.to_dict(), sort_keys=True) == json.dumps(reference.to_dict(), sort_keys=True)
    assert _outcomes(records) == _outcomes(ref_records)
    assert info["parallelism"]["address"] == two_node_cluster
    assert nodes is None or len(nodes) == 2


def test_executor_usage_errors(fake_suite, tmp_path, capsys):
    from evalsuite.cli import main

    base = ["evaluate", "suite=fake", "policies=[ones]", "tracking_uri=none", f"out={tmp_path / 'x'}"]
    for extra, fragment in ((["executor=spark"], "executor='spark'; accepted: local, ray"),
                            (["ray_address=auto"], "ray_address= applies to executor=ray only"),
                            (["workers=2", "env_workers=2"], "give workers= (whole episodes per process) or "
                                                             "env_workers="),
                            (["cpus=0"], "cpus=0 must be >= 1")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1
    shutil.rmtree(tmp_path / "x", ignore_errors=True)
