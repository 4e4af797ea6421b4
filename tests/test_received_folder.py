"""A run folder received from someone else: it never decides what code runs, its journal must be
its plan's, and nothing evalsuite writes goes through a link planted in it."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from evalsuite import fsio, registry, trust
from evalsuite.cli import main
from evalsuite.errors import UsageError
from evalsuite.harness import PolicyBuilder

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

EVAL = ["evaluate", "suite=fake", "policies=[ones,ones:speed=0.5]", "episodes=3", "max_steps=14",
        "tracking_uri=none", "progress=false"]


class _Payload:
    """Unpickling this creates the folder ``marker``: the stand-in for a hostile checkpoint's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    saved = registry.suites.snapshot(), registry.policies.snapshot()
    _register()
    folder = tmp_path_factory.mktemp("received") / "run"
    assert main([*EVAL, f"out={folder}"]) == 0
    registry.suites.restore(saved[0])
    registry.policies.restore(saved[1])
    return folder


def _register() -> None:
    from evalsuite.specs import PolicySpec, SuiteSpec, TaskSpec

    registry.suites.all()
    registry.suites.register(SuiteSpec(id="fake", entry_point="tests.conftest:CountdownEnv",
                                       tasks=(TaskSpec("t1", 30), TaskSpec("t2", 30)), default_episodes=6))
    registry.policies.all()
    registry.policies.register(PolicySpec(id="ones", entry_point="tests.conftest:OnesPolicy",
                                          params={"speed": 1.0, "chunk": 0, "nan_after": -1, "compute_s": 0.0}))


def _hostile(run: Path, tmp: Path, policy: dict) -> Path:
    """Rewrite the folder's blinding key so policy A names a pickle whose loading creates a marker
    (key_digest recomputed, as anyone can); returns the marker's path."""
    marker = tmp / "payload-ran"
    payload = tmp / ("model.ckpt" if policy["id"] != "robomimic" else "model.pth")
    payload.write_bytes(pickle.dumps(_Payload(marker)))
    key = json.loads((run / "blinding.json").read_text())
    key["A"] = {**policy, "params": {k: (str(payload) if v == "PAYLOAD" else v) for k, v in policy["params"].items()}}
    (run / "blinding.json").write_text(json.dumps(key))
    plan = json.loads((run / "plan.json").read_text())
    plan["key_digest"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    (run / "plan.json").write_text(json.dumps(plan))
    return marker


HOSTILE = {"robomimic": {"id": "robomimic", "params": {"path": "PAYLOAD"}, "label": "robomimic:PAYLOAD"},
           "dp3-trust": {"id": "dp3", "params": {"checkpoint": "PAYLOAD", "trust": True}, "label": "dp3:PAYLOAD"}}
COMMANDS = {
    "report": ["report", "{run}"],
    "report-combined": ["report", "{run}", "{other}", "out={tmp}/combined"],
    "export": ["export", "{run}"],
    "sync": ["sync", "{run}", "tracking_uri=sqlite:///{tmp}/mlflow.db"],
    "gate": ["gate", "baseline={run}", "candidate={other}", "baseline_label=ones", "candidate_label=ones",
             "tracking_uri=none", "out={tmp}/gate"],
    "select": ["select", "suite=fake", "policies=[ones,ones:speed=0.5]", "episodes=2", "out={run}",
               "tracking_uri=none"],
}


@pytest.mark.parametrize("policy", sorted(HOSTILE))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_command_runs_a_pickle_named_by_a_received_folder(command, policy, finished_run, tmp_path, fake_suite,
                                                           capsys):
    run, other = tmp_path / "run", tmp_path / "other"
    shutil.copytree(finished_run, run)
    shutil.copytree(finished_run, other)
    marker = _hostile(run, tmp_path, HOSTILE[policy])
    argv = [a.format(run=run, other=other, tmp=tmp_path) for a in COMMANDS[command]]
    capsys.readouterr()
    main(argv)
    assert not marker.exists(), f"{command} ran the pickle named by blinding.json"


@pytest.fixture
def camera_run(tmp_path, monkeypatch):
    """A finished run of the fake camera suite, no videos rendered yet (the registries are restored
    after the test by conftest's autouse fixture)."""
    from tests.test_video import CAMERA_EVAL, register_camera_suite

    monkeypatch.setenv("EVALSUITE_GL", "egl")  # the fake camera suite draws its frames itself
    register_camera_suite()
    run = tmp_path / "run"
    assert main([*CAMERA_EVAL, "video=none", f"out={run}"]) == 0
    return run


RE_RENDER = ["trial=[t1/00000/A]", "width=64", "height=48"]


@pytest.mark.parametrize("policy", sorted(HOSTILE))
def test_a_re_render_of_a_received_folder_asks_for_trust_in_one_line(policy, camera_run, tmp_path, capsys):
    """``evalsuite video`` rebuilds the folder's policies: on a suite with cameras the renderer
    would build policy A from the key and unpickle its file."""
    marker = _hostile(camera_run, tmp_path, HOSTILE[policy])
    capsys.readouterr()
    assert main(["video", str(camera_run), *RE_RENDER]) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists(), "the re-render ran the pickle named by blinding.json"
    assert len(err.splitlines()) == 1 and "is a pickle" in err and "trust=[" in err, err


def test_consent_comes_from_the_command_line_only(finished_run, tmp_path, fake_suite):
    """The same builder loads the file once the command's own ``trust=`` names it (the payload runs:
    consent given), and refuses while it does not - whatever the key's ``trust`` says."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    marker = _hostile(run, tmp_path, HOSTILE["dp3-trust"])
    from evalsuite.plan import load

    _, key = load(run)
    suite = registry.suites.get("metaworld-smoke")
    with pytest.raises(UsageError, match="is a pickle"):
        PolicyBuilder(suite, key)("A", "drawer-open")
    assert not marker.exists()
    with pytest.raises(UsageError):  # not an official checkpoint: but it was unpickled, with consent
        PolicyBuilder(suite, key, trusted=[key["A"].params["checkpoint"]])("A", "drawer-open")
    assert marker.exists()


def test_trust_require_resolves_paths(tmp_path):
    target = tmp_path / "m.pth"
    target.write_bytes(b"x")
    os.symlink(target, tmp_path / "link.pth")
    with trust.allowing([tmp_path / "link.pth"]):
        trust.require(target, "checkpoint")  # the same file by another name
        with pytest.raises(UsageError, match=r"trust=\["):
            trust.require(tmp_path / "other.pth", "checkpoint")
    with pytest.raises(UsageError):
        trust.require(target, "checkpoint")  # outside the block: nothing allowed


# ------------------------------------------------------------------ links planted in a folder

def _plant(run: Path, name: str, outside: Path) -> None:
    (run / name).unlink(missing_ok=True)
    (run / name).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, run / name)


LINKED = [  # (file planted as a link, command that writes it)
    ("report.md", ["report", "{run}"]),
    ("report.html", ["report", "{run}"]),
    ("results.json", ["report", "{run}"]),
    ("figures/success_per_task.png", ["report", "{run}"]),
    ("episodes.csv", ["export", "{run}"]),
    ("episodes.jsonl", [*EVAL, "out={run}"]),  # a resume appends
    ("run_info.json", [*EVAL, "out={run}"]),
    ("policy_notes.json", [*EVAL, "out={run}"]),
    (".lock", [*EVAL, "out={run}"]),
    ("plan.json", [*EVAL, "out={tmp}/fresh"]),
    ("blinding.json", [*EVAL, "out={tmp}/fresh"]),
    ("results.json", [*EVAL, "out={tmp}/fresh"]),
    ("gate/summary.md", ["gate", "baseline={run}", "candidate={run}", "baseline_label=ones", "candidate_label=ones",
                         "tracking_uri=none", "out={tmp}/fresh/gate"]),
    ("combined/report.md", ["report", "{run}", "{run2}", "out={tmp}/fresh/combined"]),
    ("tracking.json", ["sync", "{run}", "tracking_uri=sqlite:///{tmp}/mlflow.db"]),
    ("select.json", ["select", "suite=fake", "policies=[ones,ones:speed=0.5]", "episodes=2", "max_steps=14",
                     "tracking_uri=none", "progress=false", "out={tmp}/fresh"]),
    ("select.md", ["select", "suite=fake", "policies=[ones,ones:speed=0.5]", "episodes=2", "max_steps=14",
                   "tracking_uri=none", "progress=false", "out={tmp}/fresh"]),
    ("demos.hdf5", ["demos", "suite=metaworld", "task=drawer-open", "n=1", "out={tmp}/fresh/demos.hdf5"]),
]


@pytest.mark.parametrize("name,argv", LINKED, ids=[f"{n}-{a[0]}" for n, a in LINKED])
def test_no_write_goes_through_a_planted_link(name, argv, finished_run, tmp_path, fake_suite, capsys):
    run, run2 = tmp_path / "run", tmp_path / "run2"
    shutil.copytree(finished_run, run)
    shutil.copytree(finished_run, run2)
    outside = tmp_path / "victim.txt"
    outside.write_text("precious\n")
    fresh = any("{tmp}/fresh" in a for a in argv)
    folder = tmp_path / "fresh" if fresh else run
    folder.mkdir(exist_ok=True)
    _plant(folder, name, outside)
    if name == "episodes.jsonl":  # a journal as a link: the records are read through it, never appended
        shutil.copy(finished_run / "episodes.jsonl", outside)
    if name.startswith("select."):  # the selection's own run folders go beside the links
        (folder / "selection").mkdir()
    before = outside.read_bytes()
    capsys.readouterr()
    code = main([a.format(run=run, run2=run2, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip()
    assert outside.read_bytes() == before, f"{name} was written through the link"
    assert (folder / name).is_symlink()  # refused, not replaced
    assert code == 2 and len(err.splitlines()) == 1 and "symbolic link" in err, err


def test_fsio_replaces_files_whole_and_refuses_links(tmp_path):
    target = tmp_path / "a.json"
    fsio.write_json(target, {"x": 1})
    fsio.write_json(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "sub", tmp_path / "linked")
    with pytest.raises(UsageError, match="symbolic link inside"):
        fsio.write_text(tmp_path / "linked" / "x.txt", "no", root=tmp_path)
    with pytest.raises(OSError), fsio.atomic_path(target) as tmp:  # a failed write leaves the old file as it was
        tmp.write_text("half")
        raise OSError("disk full")
    assert json.loads(target.read_text()) == {"x": 2}


def test_fsio_writes_utf8_under_any_locale(tmp_path, monkeypatch):
    import locale

    monkeypatch.setattr(locale, "getpreferredencoding", lambda *a: "ANSI_X3.4-1968")
    fsio.write_text(tmp_path / "r.md", "dp3 · α=0.1")
    assert (tmp_path / "r.md").read_bytes() == "dp3 · α=0.1".encode()


def test_one_line_escapes_breaks_and_escape_codes():
    assert fsio.one_line("a\nb\r\x1b[31mc\u2028d\te") == "a\\nb\\r\\x1b[31mc\\u2028d\\te"
    assert fsio.one_line("dp3:checkpoint=x/y") == "dp3:checkpoint=x/y"


# ------------------------------------------------------------------ hostile labels

def test_a_label_with_line_breaks_stays_on_its_line(finished_run, tmp_path, fake_suite, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    key = json.loads((run / "blinding.json").read_text())
    key["A"]["label"] = "ones\n| injected | row |\n\x1b[2J"
    (run / "blinding.json").write_text(json.dumps(key))
    assert main(["report", str(run)]) == 0
    assert main(["export", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "\n| injected" not in md and "\x1b" not in md and "ones\\n| injected" in md
    csv = (run / "episodes.csv").read_text().splitlines()
    assert len(csv) == 1 + 2 * 3 * 2  # header + one line per episode
    assert not any(line.startswith("| injected") for line in csv)
    assert "\x1b" not in capsys.readouterr().out


# ------------------------------------------------------------------ nothing lost, nothing half-started

@pytest.mark.parametrize("damage", ["missing", "empty"])
def test_report_without_episodes_leaves_the_results_as_they_were(damage, finished_run, tmp_path, fake_suite,
                                                                  capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = {name: (run / name).read_bytes() for name in ("results.json", "report.md", "report.html")}
    if damage == "missing":
        (run / "episodes.jsonl").unlink()
    else:
        (run / "episodes.jsonl").write_text("")
    capsys.readouterr()
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"episodes.jsonl is {damage}: no episode to report" in err, err
    assert {name: (run / name).read_bytes() for name in before} == before


def refusing_policy(task, suite, **params):
    raise UsageError("this policy refuses the task")


def test_a_failed_start_leaves_no_plan_and_the_corrected_command_runs(tmp_path, fake_suite, capsys):
    from evalsuite.specs import PolicySpec

    registry.policies.register(PolicySpec(id="refuses", entry_point="tests.test_received_folder:refusing_policy"))
    out = tmp_path / "run"
    assert main([*EVAL[:2], "policies=[ones,refuses]", *EVAL[3:], f"out={out}"]) == 2
    assert "this policy refuses the task" in capsys.readouterr().err
    assert not (out / "plan.json").exists() and not (out / "blinding.json").exists()
    assert main([*EVAL, f"out={out}"]) == 0  # not "holds a run with other policies"


_DRIVER = ("import sys; from evalsuite.cli import main; from tests.test_received_folder import _register; "
           "_register(); sys.exit(main(sys.argv[1:]))")


def test_a_non_utf8_locale_keeps_labels_and_files_whole(tmp_path):
    """``LC_ALL=C`` without Python's UTF-8 mode: arguments arrive as surrogate escapes and the
    console is ASCII; a non-ASCII group name must reach every file intact and crash nothing."""
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "run"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": "", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _DRIVER, *EVAL[:2], "policies=[ones:group=β,ones:speed=0.5:group=γ]",
                           *EVAL[3:], f"out={out}"], cwd=REPO, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert "Traceback" not in done.stderr.decode(errors="replace")
    assert "β" in (out / "report.md").read_text(encoding="utf-8")
    assert "γ" in (out / "report.html").read_text(encoding="utf-8")
    labels = {v["label"] for v in json.loads((out / "blinding.json").read_text(encoding="utf-8")).values()}
    assert labels == {"ones:group=β", "ones:group=γ:speed=0.5"}


@pytest.mark.parametrize("name", ["videos/index.json", "videos/t1_00000_A.mp4", "videos/t1_00000_A.png"])
def test_no_video_file_is_written_through_a_planted_link(name, camera_run, tmp_path, capsys):
    outside = tmp_path / "victim.txt"
    outside.write_text("precious\n")
    _plant(camera_run, name, outside)
    capsys.readouterr()
    code = main(["video", str(camera_run), *RE_RENDER])
    err = capsys.readouterr().err.strip()
    assert outside.read_text() == "precious\n" and (camera_run / name).is_symlink(), err
    assert code == 2 and len(err.splitlines()) == 1 and ("symbolic link" in err or "link" in err), err
