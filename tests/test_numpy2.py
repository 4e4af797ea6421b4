"""The core on numpy 2: installed alone in a fresh virtual environment (no extra, so nothing pins
numpy < 2 - only the robomimic extra does), it analyses committed run folders to the results
recorded with numpy 1.

pip resolves the core's own ranges: constraints.txt is left out, as it pins numpy 1.26 for the
extras. The source is copied without its checkpoints (an analysis needs none). About 1-2 minutes
with pip's cache warm (`nox -s numpy2` runs it).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

# one policy (the project's gate baseline); three, with pairwise tests, bootstrap aggregates and the mixed model
RUNS = ["baselines/metaworld-smoke-scripted", "example"]
API = """
import json, sys
import numpy, evalsuite
from evalsuite.api import open_run
run = open_run(sys.argv[1])
print(json.dumps({"numpy": numpy.__version__, "evalsuite": evalsuite.__file__, "episodes": len(run.episodes()),
                  "pairs": len(run.pairwise()), "final": int(run.episodes()["success"].sum())}))
"""


def _same(new: Any, recorded: Any, where: str = "results") -> None:
    """Equal, but for floats' last digits (numpy 2 rounds a few sums differently)."""
    if isinstance(new, float) or isinstance(recorded, float):
        assert isinstance(new, int | float) and isinstance(recorded, int | float), where
        assert math.isclose(new, recorded, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(new) and math.isnan(recorded)), \
            f"{where}: {new} != {recorded}"
    elif isinstance(recorded, dict):
        assert isinstance(new, dict) and list(new) == list(recorded), where
        for key in recorded:
            _same(new[key], recorded[key], f"{where}.{key}")
    elif isinstance(recorded, list):
        assert isinstance(new, list) and len(new) == len(recorded), where
        for i, (a, b) in enumerate(zip(new, recorded, strict=True)):
            _same(a, b, f"{where}[{i}]")
    else:
        assert new == recorded, f"{where}: {new!r} != {recorded!r}"


def _run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout


def test_the_core_alone_on_numpy_2_analyses_run_folders_as_recorded(tmp_path):
    src = tmp_path / "src"
    for folder in ("evalsuite", "suites", "policies"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("checkpoints", "__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    _run(sys.executable, "-m", "venv", tmp_path / "venv", cwd=tmp_path)
    bin_ = tmp_path / "venv" / "bin"
    _run(bin_ / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", src, "numpy>=2", cwd=tmp_path)
    for name in RUNS:
        run = tmp_path / "runs" / name
        shutil.copytree(REPO / "reports" / name, run)
        (run / "results.json").unlink()  # analysed again from the journal, with numpy 2
        _run(bin_ / "evalsuite", "report", run, cwd=tmp_path)
        recorded = json.loads((REPO / "reports" / name / "results.json").read_text())
        _same(json.loads((run / "results.json").read_text()), recorded)
        api = json.loads(_run(bin_ / "python", "-c", API, run, cwd=tmp_path))
        assert int(api["numpy"].split(".")[0]) >= 2 and str(tmp_path / "venv") in api["evalsuite"], api
        assert api["pairs"] == len(recorded["pairwise"]) and api["episodes"] == sum(r["n"] for r in recorded["per_task"])
        assert api["final"] == sum(r["successes"] for r in recorded["per_task"])
