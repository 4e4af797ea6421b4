"""The analysis extension interface: a section registered the way a plugin would (one module, one
``AnalysisSpec``) reaches results.json, the report (markdown, HTML, a figure) and MLflow; the
built-in family and energy sections come through the same registry."""

import json

import matplotlib.pyplot as plt
import pytest

from evalsuite import registry
from evalsuite.harness import EvaluateRequest, evaluate
from evalsuite.plan import PolicyEntry
from evalsuite.specs import AnalysisSpec

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


def compute(inp):
    """Mean episode length per policy label - something the core tables do not report."""
    steps: dict[str, list[int]] = {}
    for r in inp.records:
        steps.setdefault(inp.label[r.policy_code], []).append(r.steps)
    return {label: sum(v) / len(v) for label, v in sorted(steps.items())}


def report(section, results):
    return ["", "## Episode length", ""] + [f"- {label}: {mean:.2f} steps" for label, mean in section.items()]


def figures(section, results):
    fig, ax = plt.subplots()
    ax.bar(list(section), list(section.values()))
    return {"episode length": fig}


def metrics(section):
    return {f"{label}/mean_steps": mean for label, mean in section.items()}


def test_the_built_in_sections_use_the_public_registry():
    assert {"family", "energy", "progress"} <= set(registry.analyses.all())


def test_a_registered_section_reaches_results_report_and_mlflow(fake_suite, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from evalsuite.tracking import _metric_key

    registry.analyses.all()
    registry.analyses.register(AnalysisSpec(id="episode_length", compute="tests.test_analyses:compute",
                                            report="tests.test_analyses:report", figures="tests.test_analyses:figures",
                                            metrics="tests.test_analyses:metrics"))
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    evaluate(EvaluateRequest.of(suite="fake", policies=[PolicyEntry("ones", {}), PolicyEntry("ones", {"speed": 0.5})],
                             out=out, episodes=3, max_steps=14, tracking_uri=uri, progress=False), log=lambda *_: None)
    section = json.loads((out / "results.json").read_text())["episode_length"]
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(section) == 2 and min(section.values()) == min(
        sum(r["steps"] for r in records if r["policy_code"] == c) / 6 for c in {r["policy_code"] for r in records})
    assert "## Episode length" in (out / "report.md").read_text()
    assert (out / "figures" / "episode_length.png").stat().st_size > 1000
    client = MlflowClient(uri)
    (parent,) = [r for r in client.search_runs([client.get_experiment_by_name("evalsuite").experiment_id])
                 if "mlflow.parentRunId" not in r.data.tags]
    assert {_metric_key(f"{label}/mean_steps") for label in section} <= set(parent.data.metrics)  # names sanitised
