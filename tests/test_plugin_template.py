"""examples/plugin-template installs as a user would install it - into its own virtual environment,
beside the evalsuite already there - and its policy and suite then run through `evalsuite evaluate`
(its suite, and the built-in Meta-World suite) and pass the conformance checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO

TEMPLATE = REPO / "examples" / "plugin-template"
RUN = ["tracking_uri=none", "progress=false", "video=none"]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with the template installed (offline: no index, no build isolation)."""
    tmp = tmp_path_factory.mktemp("template")
    source = tmp / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(TEMPLATE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    folder = tmp / "venv"
    # Without pip: Python 3.11's venv would also bring setuptools 65, which cannot build wheels alone.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(folder)], check=True,
                   timeout=300)
    # This interpreter is itself a virtual environment, whose packages --system-site-packages does not
    # reach (it reaches the base Python's): a .pth adds them - evalsuite's editable install, pip, setuptools.
    python = folder / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "evalsuite-shared.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    done = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--disable-pip-version-check", "--quiet", str(source)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return folder


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what the venv installed
    return subprocess.run([venv / "bin" / "python", *args], cwd=cwd, env={**env, "MPLBACKEND": "Agg"},
                          capture_output=True, text=True, timeout=600)


def _evaluate(venv: Path, out: Path, *args: str) -> dict:
    done = _run(venv, "-m", "evalsuite", "evaluate", *args, *RUN, f"out={out}", cwd=out.parent)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads((out / "results.json").read_text())


def test_the_template_runs_on_its_suite_and_on_metaworld(venv, tmp_path):
    own = _evaluate(venv, tmp_path / "own", "suite=template-reach", "policies=[template-reach]", "episodes=3",
                    "tolerance=0.02")
    assert {(row["policy"], row["task"]) for row in own["per_task"]} == {
        ("template-reach", "reach-near"), ("template-reach", "reach-far")}
    assert json.loads((tmp_path / "own" / "plan.json").read_text())["suite_options"] == {"tolerance": 0.02}
    mw = _evaluate(venv, tmp_path / "mw", "suite=metaworld-smoke", "tasks=[drawer-open]",
                   "policies=[template-reach:noise=0]", "episodes=2")
    assert [(row["policy"], row["task"]) for row in mw["per_task"]] == [("template-reach:noise=0.0", "drawer-open")]


def test_the_template_passes_the_conformance_checks(venv, tmp_path):
    for args in (["check-suite", "suite=template-reach"],
                 ["check-policy", "policy=template-reach", "suite=template-reach", "task=reach-far"],
                 ["check-policy", "policy=template-reach", "suite=metaworld-smoke", "task=drawer-open"]):
        done = _run(venv, "-m", "evalsuite", *args, cwd=tmp_path)
        assert done.returncode == 0 and done.stdout.startswith("ok: "), done.stdout + done.stderr[-2000:]
    # the template's own tests, as its copier runs them
    source = venv.parent / "src"
    done = _run(venv, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests"), cwd=source)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_a_bad_option_of_the_template_suite_is_its_own_one_line(venv, tmp_path):
    done = _run(venv, "-m", "evalsuite", "evaluate", "suite=template-reach", "tolerance=2", *RUN,
                f"out={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == "evalsuite: error: tolerance=2.0 must be in (0, 0.5) metres"
    assert not (tmp_path / "run").exists()
