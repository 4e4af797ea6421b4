import subprocess
import sys
import textwrap

import pytest

from evalsuite import registry
from evalsuite.errors import UsageError
from evalsuite.specs import PolicySpec, SuiteSpec
from tests.conftest import REPO


def test_builtins_are_registered_and_json_serializable():
    import json

    suites = registry.suites.all()
    assert {"metaworld", "metaworld-smoke"} <= set(suites)
    assert len(suites["metaworld"].tasks) == 50
    tags = {t.tags[0] for t in suites["metaworld"].tasks}
    assert tags == {"easy", "medium", "hard", "very-hard"}
    smoke_tags = [t.tags[0] for t in suites["metaworld-smoke"].tasks]
    assert smoke_tags == ["easy", "medium", "hard"]
    assert {"scripted", "noisy-scripted", "random", "mlp-bc"} <= set(registry.policies.all())
    for spec in [*suites.values(), *registry.policies.all().values()]:
        json.dumps(spec.to_dict())


def test_duplicate_id_raises():
    registry.policies.all()
    with pytest.raises(ValueError, match="already registered"):
        registry.policies.register(PolicySpec(id="scripted", entry_point="x:y"))


def test_unknown_id_lists_accepted():
    with pytest.raises(UsageError, match="unknown suite 'nope'; accepted: .*metaworld-smoke"):
        registry.suites.get("nope")


def test_specs_are_frozen():
    spec = registry.suites.get("metaworld")
    with pytest.raises(AttributeError):
        spec.id = "other"


def test_listing_does_not_import_simulators_or_torch():
    code = textwrap.dedent("""
        import sys
        from evalsuite import registry
        registry.suites.all(); registry.policies.all()
        heavy = [m for m in ("torch", "metaworld", "mujoco", "mlflow") if m in sys.modules]
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _install_plugin(tmp_path, monkeypatch, module_src: str, group: str, value: str):
    """A real distribution on sys.path: a module plus a dist-info with entry_points.txt."""
    module = value.split(":")[0]
    (tmp_path / f"{module}.py").write_text(module_src)
    dist = tmp_path / "myplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\nmine = {value}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_third_party_policy_plugin(tmp_path, monkeypatch):
    src = "from evalsuite.specs import PolicySpec\nSPECS = [PolicySpec(id='my-policy', entry_point='myplugin:make')]\n"
    _install_plugin(tmp_path, monkeypatch, src, "evalsuite.policies", "myplugin:SPECS")
    registry.policies.restore(({}, False))
    assert registry.policies.get("my-policy").entry_point == "myplugin:make"
    assert "scripted" in registry.policies.all()


def test_third_party_suite_plugin_as_function(tmp_path, monkeypatch):
    src = ("from evalsuite.specs import SuiteSpec, TaskSpec\n"
           "def suites():\n    return SuiteSpec(id='my-suite', entry_point='m:e', tasks=(TaskSpec('a', 5),))\n")
    _install_plugin(tmp_path, monkeypatch, src, "evalsuite.suites", "myplugin2:suites")
    registry.suites.restore(({}, False))
    assert isinstance(registry.suites.get("my-suite"), SuiteSpec)


def test_broken_plugin_is_named(tmp_path, monkeypatch):
    _install_plugin(tmp_path, monkeypatch, "raise RuntimeError('boom')\n", "evalsuite.policies", "myplugin3:SPECS")
    registry.policies.restore(({}, False))
    with pytest.raises(UsageError, match="policy plugin 'mine' .*boom"):
        registry.policies.all()


def test_tasks_all_and_difficulty_groups():
    from evalsuite import registry
    from evalsuite.errors import UsageError

    suite = registry.suites.get("metaworld")
    assert suite.select_tasks(["all"]) == list(suite.task_ids) and len(suite.task_ids) == 50
    hard = suite.select_tasks(["hard"])
    assert hard and all("hard" in suite.task(t).tags for t in hard)
    both = suite.select_tasks(["hard", "very-hard", "pick-place"])
    assert both[: len(hard)] == hard and len(both) == len(set(both))
    with pytest.raises(UsageError, match="unknown task 'harder'.*accepted: all, easy, hard, medium, very-hard"):
        suite.select_tasks(["harder"])
