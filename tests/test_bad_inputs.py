"""Every bad input is one line naming the bad value and what would be accepted, exit code 2, and
nothing already journaled is lost. The table below is also docs/bad-inputs.md (a test keeps the two
in step; `EVALSUITE_WRITE_BAD_INPUTS_DOC=1 pytest tests/test_bad_inputs.py` rewrites the doc)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite import registry
from evalsuite.cli import main
from evalsuite.specs import PolicySpec, SuiteSpec, TaskSpec
from tests import bad_input_cases
from tests.bad_input_cases import remote as remote_cases
from tests.conftest import REPO

DOC = REPO / "docs" / "bad-inputs.md"
EVAL = ["evaluate", "suite=fake", "policies=[ones]", "episodes=2", "max_steps=14", "tracking_uri=none",
        "progress=false"]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _damage_line(run: Path, text: str, at: int = 1) -> None:
    lines = _lines(run / "episodes.jsonl")
    lines.insert(at, text)
    (run / "episodes.jsonl").write_text("\n".join(lines) + "\n")


def _foreign_record(run: Path) -> None:
    record = json.loads(_lines(run / "episodes.jsonl")[0])
    _damage_line(run, json.dumps({**record, "colour": "red"}))


def _bad_status(run: Path) -> None:
    record = json.loads(_lines(run / "episodes.jsonl")[0])
    _damage_line(run, json.dumps({**record, "status": "meh"}))


def _write(name: str, text: str):
    return lambda run: (run / name).write_text(text)


def _wrong_key(run: Path) -> None:
    key = json.loads((run / "blinding.json").read_text())
    (run / "blinding.json").write_text(json.dumps({"Z": next(iter(key.values()))}))


def _text_file(tmp: Path) -> None:
    (tmp / "notes.txt").write_text("not a checkpoint\n")


def _broken_plugin(tmp: Path) -> None:
    (tmp / "broken_plugin.py").write_text("raise RuntimeError('this plugin is broken')\n")
    sys.path.insert(0, str(tmp))
    registry.policies.register(PolicySpec(id="broken", entry_point="broken_plugin:make"))


def _missing_plugin(tmp: Path) -> None:
    registry.suites.register(SuiteSpec(id="ghost", entry_point="no_such_module:Env", tasks=(TaskSpec("t", 10),)))


# (id, argv, setup on the existing run folder / tmp path, fragment of the one-line message)
CASES = [
    ("unknown-command", ["fly"], None, "unknown command 'fly'; accepted: agreement, check-policy, check-suite"),
    ("missing-suite", ["evaluate", "policies=[ones]"], None, "missing suite="),
    ("unknown-suite", ["evaluate", "suite=metaworld-smok"], None, "unknown suite 'metaworld-smok'"),
    ("unknown-task", [*EVAL, "tasks=[t9]"], None, "unknown task 't9' in suite 'fake'; accepted: all"),
    ("unknown-policy", ["evaluate", "suite=fake", "policies=[onez]"], None, "unknown policy 'onez'"),
    ("unknown-policy-param", ["evaluate", "suite=fake", "policies=[ones:sped=1]"], None,
     "policy 'ones' has no parameter 'sped'; accepted: chunk, compute_s, group, label, nan_after, speed"),
    ("policy-param-type", ["evaluate", "suite=fake", "policies=[ones:speed=fast]"], None,
     "policy 'ones': speed='fast' is not a float"),
    ("episodes-zero", [*EVAL[:-4], "episodes=0"], None, "episodes=0 must be >= 1"),
    ("episodes-text", [*EVAL[:-4], "episodes=many"], None, "episodes='many' is not an integer"),
    ("seed-negative", [*EVAL, "seed=-1"], None, "seed=-1 must be >= 0"),
    ("level-percent", [*EVAL, "level=95"], None, "level='95' must be in (0.0, 1.0)"),
    ("interval-method", [*EVAL, "interval=wald"], None, "interval='wald'; accepted: clopper-pearson, jeffreys"),
    ("correction", [*EVAL, "correction=bonf"], None, "correction='bonf'; accepted: bh, holm, none"),
    ("stopping-rule", [*EVAL, "stopping=maybe"], None, "stopping='maybe'; accepted: fixed, sequential"),
    ("alpha-without-sequential", [*EVAL, "alpha=0.1"], None, "alpha= applies to stopping=sequential only"),
    ("planned-format", [*EVAL[:-4], "stopping=sequential", "planned=0.7"], None,
     "planned='0.7' is not P_BASELINE:DELTA[:DISCORDANCE] (e.g. 0.7:0.1 or 0.7:0.1:0.3)"),
    ("planned-with-progress", [*EVAL[:-4], "stopping=sequential", "metric=progress", "planned=0.7:0.1"], None,
     "planned= tunes the bets on successes: it applies to metric=success only"),
    ("executor", [*EVAL, "executor=spark"], None, "executor='spark'; accepted: local, ray"),
    ("ray-address-local", [*EVAL, "ray_address=auto"], None, "ray_address= applies to executor=ray only"),
    ("workers-and-env-workers", [*EVAL, "workers=2", "env_workers=2"], None, "give workers="),
    ("cpus-zero", [*EVAL, "cpus=0"], None, "cpus=0 must be >= 1"),
    ("batch-size-zero", [*EVAL, "batch_size=0"], None, "batch_size=0 must be >= 1"),
    ("max-steps-zero", [*EVAL[:-4], "max_steps=0"], None, "max_steps=0 must be >= 1"),
    ("tracking-uri", [*EVAL[:-2], "tracking_uri=ftp://x"], None, "tracking_uri='ftp://x' is not understood"),
    ("not-key-value", ["evaluate", "suite=fake", "policies"], None, "argument 'policies' is not key=value"),
    ("unknown-key", [*EVAL, "colour=red"], None, "unknown key 'colour'"),
    ("resume-other-seed", [*EVAL, "seed=5"], "resume", "holds a run with seed=0, not 5"),
    ("report-not-a-run", ["report", "{tmp}/nowhere"], None, "nowhere is not a run folder"),
    ("report-several-no-out", ["report", "{run}", "{run}"], None, "name the combined report's folder with out="),
    ("gate-no-baseline", ["gate", "candidate={run}"], None, "missing baseline=RUN"),
    ("gate-alpha", ["gate", "baseline={run}", "candidate={run}", "alpha=0.6"], None, "alpha='0.6' must be in"),
    ("gate-margin", ["gate", "baseline={run}", "candidate={run}", "margin=5"], None, "margin='5' must be in"),
    ("plan-missing", ["plan", "delta=0.1"], None, "missing p_baseline="),
    ("plan-rate", ["plan", "p_baseline=1.5", "delta=0.1"], None, "p_baseline='1.5' must be in [0, 1]"),
    ("plan-design", ["plan", "p_baseline=0.7", "delta=0.1", "design=crossover"], None,
     "design='crossover'; accepted: independent, paired"),
    ("journal-garbage-line", ["report", "{run}"], lambda run: _damage_line(run, "%% not json"),
     "episodes.jsonl:2: not JSON"),
    ("journal-foreign-record", ["report", "{run}"], _foreign_record, "episodes.jsonl:2: unknown field 'colour'"),
    ("journal-bad-status", ["report", "{run}"], _bad_status, "episodes.jsonl:2: status 'meh', accepted"),
    ("journal-array", ["report", "{run}"], lambda run: _damage_line(run, "[1, 2]"), "a JSON list, not an object"),
    ("plan-not-json", ["report", "{run}"], _write("plan.json", "{truncated"), "plan.json:1: not valid JSON"),
    ("plan-foreign", ["report", "{run}"], _write("plan.json", '{"hello": 1}'), "plan.json: not an evalsuite plan"),
    ("blinding-foreign", ["report", "{run}"], _wrong_key, "blinding.json: not the blinding key of this plan"),
    ("results-foreign", ["report", "{run}"], _write("results.json", "[]"), "results.json: not evalsuite results"),
    ("pilot-results-foreign", ["plan", "p_baseline=0.7", "delta=0.1", "pilot={run}"],
     _write("results.json", '{"pairwise": [{"n_pairs": 3}]}'), "results.json: not an evalsuite results file"),
    ("sync-results-truncated", ["sync", "{run}", "tracking_uri=sqlite:///{tmp}/m.db"],
     _write("results.json", '{"suite": "fake"'), "results.json:1: not valid JSON"),
    ("resume-damaged-journal", EVAL, lambda run: _damage_line(run, "{}"), "episodes.jsonl:2: missing field"),
    ("mlp-bc-not-a-checkpoint", ["evaluate", "suite=metaworld-smoke", "tasks=[drawer-open]",
                                 "policies=[mlp-bc:{tmp}]", "tracking_uri=none"], "tmp", "mlp-bc checkpoint"),
    ("robomimic-not-a-checkpoint", ["evaluate", "suite=robomimic", "tasks=[lift]",
                                    "policies=[robomimic:{tmp}/notes.txt]", "tracking_uri=none"], "text",
     "is not a robomimic model.pth"),
    ("plugin-fails-to-import", ["evaluate", "suite=fake", "policies=[broken]", "tracking_uri=none"], "plugin",
     "cannot import 'broken_plugin' for entry point 'broken_plugin:make': RuntimeError: this plugin is broken"),
    ("plugin-module-missing", ["evaluate", "suite=ghost", "policies=[ones]", "tracking_uri=none"], "ghost",
     "cannot import 'no_such_module'"),
    ("out-under-a-file", [*EVAL[:-2], "tracking_uri=none", "out={tmp}/notes.txt/run"], "text", "Not a directory"),
    *bad_input_cases.CASES,
]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """One small finished run on the fake suite, copied for each case that damages it."""
    registry.suites.all()
    registry.policies.all()
    folder = tmp_path_factory.mktemp("base") / "run"
    saved = registry.suites.snapshot(), registry.policies.snapshot()
    _register_fake()
    assert main([*EVAL, f"out={folder}"]) == 0
    registry.suites.restore(saved[0])
    registry.policies.restore(saved[1])
    return folder


def _register_fake():
    registry.suites.register(SuiteSpec(id="fake", entry_point="tests.conftest:CountdownEnv",
                                       tasks=(TaskSpec("t1", 30), TaskSpec("t2", 30)), default_episodes=6))
    registry.policies.register(PolicySpec(id="ones", entry_point="tests.conftest:OnesPolicy",
                                          params={"speed": 1.0, "chunk": 0, "nan_after": -1}))


RESULTS = {}


def _needs_simulator(argv: list[str]) -> bool:
    return argv[0] in ("demos", "train") or any(a.startswith(("suite=metaworld", "suite=robomimic")) for a in argv)


@pytest.mark.parametrize("case", [pytest.param(c, marks=() if _needs_simulator(c[1]) else pytest.mark.unit, id=c[0])
                                  for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, base_run, tmp_path, capsys, fake_suite):
    name, argv, setup, fragment = case
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    journal_before = (run / "episodes.jsonl").read_bytes()
    if setup == "text" or setup == "tmp":
        _text_file(tmp_path)
    elif setup == "plugin":
        _broken_plugin(tmp_path)
    elif setup == "ghost":
        _missing_plugin(tmp_path)
    elif callable(setup):
        setup(run)
        journal_before = (run / "episodes.jsonl").read_bytes()
    argv = [a.replace("{run}", str(run)).replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "evaluate" and not any(a.startswith("out=") for a in argv):
        argv.append(f"out={run}" if setup in ("resume",) or name.startswith("resume") else f"out={tmp_path / 'new'}")
    capsys.readouterr()
    try:
        code = main(argv)
    finally:
        if setup == "plugin":
            sys.path.remove(str(tmp_path))
            sys.modules.pop("broken_plugin", None)
    err = capsys.readouterr().err.strip()
    RESULTS[name] = (argv, err.replace(str(tmp_path), "TMP"))  # the doc does not churn with pytest's folders
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("evalsuite: error: "), err
    assert fragment in err, err
    assert (run / "episodes.jsonl").read_bytes() == journal_before  # nothing journaled is lost or changed


@pytest.mark.unit
def test_a_full_disk_mid_run_is_one_line_and_keeps_the_journal(fake_suite, tmp_path, capsys, monkeypatch):
    import evalsuite.journal as journal

    real_write, calls = os.write, {"n": 0}

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] > 3 and data.endswith(b"\n") and b'"trial_id"' in data:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(journal.os, "write", write)
    out = tmp_path / "run"
    assert main([*EVAL[:-4], "episodes=6", f"out={out}", "tracking_uri=none", "progress=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "rerun the same command" in err
    assert len(_lines(out / "episodes.jsonl")) == 3  # what was written before the disk filled is kept
    monkeypatch.setattr(journal.os, "write", real_write)
    assert main([*EVAL[:-4], "episodes=6", f"out={out}", "tracking_uri=none", "progress=false"]) == 0
    assert len(_lines(out / "episodes.jsonl")) == 2 * 6  # resumed: every trial once


@pytest.mark.unit
def test_the_table_is_in_the_docs():
    assert len(CASES) >= 40
    if os.environ.get("EVALSUITE_WRITE_BAD_INPUTS_DOC"):
        return
    doc = DOC.read_text()
    missing = [name for name, *_ in [*CASES, *bad_input_cases.DOC_ROWS] if f"`{name}`" not in doc]
    assert not missing, f"docs/bad-inputs.md lacks {missing}; rerun with EVALSUITE_WRITE_BAD_INPUTS_DOC=1"


@pytest.mark.parametrize("case", [pytest.param(c, id=c[0]) for c in remote_cases.SERVER_CASES])
def test_a_misbehaving_policy_server_is_counted_and_the_run_finishes(case, tmp_path, capsys):
    """A policy server that fails once the run is under way (tests/bad_input_cases/remote.py): exit
    0 with results for every trial; the server's faults are the policy's failures, counted, never
    retried; a dropped connection is retried and the journal ends complete."""
    name, _, mode, status, line = case
    server = subprocess.Popen([sys.executable, str(REPO / "tests" / "remote_servers" / "openpi_style_server.py"),
                               "--mode", *mode], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline().split()[1])
        capsys.readouterr()
        code = main([*remote_cases.SERVER_EVAL, f"policies=[remote:ws://127.0.0.1:{port}]", f"out={tmp_path / 'run'}"])
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()
    said = capsys.readouterr().out.splitlines()
    records = [json.loads(x) for x in _lines(tmp_path / "run" / "episodes.jsonl")]
    final = {r["trial_id"]: r for r in records}  # each trial's last attempt
    (per_task,) = json.loads((tmp_path / "run" / "results.json").read_text())["per_task"]
    assert code == 0
    assert sorted(final) == ["drawer-open/00000/A", "drawer-open/00001/A"], records
    assert all(r["status"] == status for r in final.values()), records
    assert per_task["n"] == 2 and per_task["missing"] == 0
    if status == "policy_error":
        assert line in said, said
        assert len(records) == 2 and sum("counted as a failure" in x for x in said) == 2  # once each, no retry
        assert per_task["successes"] == 0 and per_task["policy_errors"] == 2
    else:
        (error,) = [r for r in records if r["status"] == "error"]
        assert line.replace("TRIAL", error["trial_id"]) in said, said
        assert len(records) == 3 and per_task["successes"] == 2 and per_task["policy_errors"] == 0


def teardown_module(module):
    if os.environ.get("EVALSUITE_WRITE_BAD_INPUTS_DOC") and RESULTS:
        rows = ["# Bad inputs and what evalsuite says", "",
                "Every one exits with code 2 and prints one line; nothing already journaled is lost. Generated "
                "from `tests/test_bad_inputs.py` (`EVALSUITE_WRITE_BAD_INPUTS_DOC=1 pytest tests/test_bad_inputs.py`); "
                "paths are the test's temporary folders.", "", "| case | command | message |", "|---|---|---|"]
        for name, *_ in CASES:
            if name in RESULTS:
                argv, err = RESULTS[name]
                cmd = " ".join(a if "/" not in a else a.split("=")[0] + "=..." if "=" in a else "RUN" for a in argv)
                message = err.replace("|", "\\|")
                rows.append(f"| `{name}` | `evalsuite {cmd}` | {message} |")
        for name, what, message in bad_input_cases.DOC_ROWS:
            rows.append(f"| `{name}` | {what} | {message.replace('|', chr(92) + '|')} |")
        rows.append("| `full-disk` | a full disk while the journal is written | `evalsuite: error: No space left on "
                    "device: ...; episodes already journaled are kept - fix this and rerun the same command to "
                    "resume` |")
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text("\n".join(rows) + "\n")
