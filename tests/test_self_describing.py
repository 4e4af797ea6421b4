"""A run folder is self-describing: `evalsuite report` and `evalsuite gate` on existing folders work
where the suite and policy plugins cannot be imported, and give the same numbers."""

import json
import subprocess
import sys
import textwrap

import pytest

from evalsuite.cli import main
from tests.conftest import REPO

BLOCKED_RUN = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("suites", "policies", "metaworld", "robosuite", "mujoco", "torch"):
                raise ImportError("blocked: " + name)
    sys.meta_path.insert(0, Block())
    from evalsuite.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _blocked(*argv):
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, *argv], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


@pytest.fixture(scope="module")
def family_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fam") / "run"
    assert main(["evaluate", "video=none", "suite=metaworld-family/pick-place", "policies=[scripted,noisy-scripted]", "mdps=2",
                 "episodes=6", "max_steps=60", "worst_case=none", "tracking_uri=none", "progress=false",
                 f"out={out}"]) == 0
    return out


def test_report_without_the_plugins_gives_the_same_results(family_run):
    before = json.loads((family_run / "results.json").read_text())
    done = _blocked("report", str(family_run))
    assert done.returncode == 0, done.stderr
    after = json.loads((family_run / "results.json").read_text())
    assert after == before and "family" in after and after["family"]["family"] == "metaworld-family/pick-place"


def test_gate_between_existing_folders_without_the_plugins(family_run, tmp_path):
    done = _blocked("gate", f"baseline={family_run}", f"candidate={family_run}", "baseline_label=scripted",
                    "candidate_label=noisy-scripted", "tracking_uri=none", f"out={tmp_path / 'gate'}")
    assert done.returncode in (0, 1, 3), done.stderr
    assert json.loads((tmp_path / "gate" / "results.json").read_text())["kind"] == "gate"
