import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


def test_stats_imports_only_numpy_scipy_statsmodels():
    """Import evalsuite.stats in a clean interpreter with the heavy layers blocked."""
    code = textwrap.dedent("""
        import sys
        BLOCKED = ("torch", "gymnasium", "mlflow", "matplotlib", "metaworld", "mujoco", "rich", "pandas",
                   "suites", "policies")
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        before = set(sys.modules)
        import evalsuite.stats
        from evalsuite.stats import proportion_interval
        proportion_interval(3, 10)
        ours = {m for m in set(sys.modules) - before if m.startswith("evalsuite")}
        assert ours <= {"evalsuite", "evalsuite.stats"} | {m for m in ours if m.startswith("evalsuite.stats.")}, ours
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
