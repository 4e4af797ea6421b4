"""Typed results: every results.json the project ships reads into ``Results`` and writes back to
the same file, so JSON exists only at the disk boundary and nothing is lost crossing it."""

import json

import pytest

from evalsuite.errors import UsageError
from evalsuite.results import PairResult, Results, TaskResult, WorstRate, load
from tests.conftest import REPO

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

SHIPPED = sorted(p.parent for p in (REPO / "reports").rglob("results.json") if (p.parent / "plan.json").exists())


@pytest.mark.parametrize("run", SHIPPED, ids=[str(p.relative_to(REPO / "reports")) for p in SHIPPED])
def test_a_shipped_results_file_reads_typed_and_writes_back_the_same(run):
    data = json.loads((run / "results.json").read_text())
    results = load(run)
    assert isinstance(results.per_task[0], TaskResult)
    assert all(isinstance(p, PairResult) for p in results.pairwise)
    back = results.to_dict()
    assert back == data
    assert list(back) == list(data)  # the same key order: the file is unchanged byte for byte
    assert [list(r) for r in back["per_task"]] == [list(r) for r in data["per_task"]]


def test_typed_access_and_worst_cases(tmp_path):
    data = json.loads((REPO / "reports" / "example" / "results.json").read_text())
    row = dict(data["per_task"][0], worst_case={"successes": 1, "n": 5, "rate": 0.2, "ci_low": 0.03, "ci_high": 0.6})
    data["per_task"][0] = row
    results = Results.from_dict(data)
    first = results.per_task[0]
    assert results.task(first.task, first.policy) is first
    assert first.worst_case == WorstRate(1, 5, 0.2, 0.03, 0.6)
    assert results.to_dict()["per_task"][0]["worst_case"] == row["worst_case"]
    a, b = results.pairwise[0].policy_a, results.pairwise[0].policy_b
    assert [sign for _, sign in results.pairs_of(b, a)] == [-1] * len(results.pairs_of(a, b))
    with pytest.raises(KeyError, match="no result for policy"):
        results.task(first.task, "nobody")


def test_a_file_from_before_errors_were_split_reads_with_defaults():
    data = json.loads((REPO / "reports" / "example" / "results.json").read_text())
    for row in data["per_task"]:
        del row["policy_errors"], row["missing"]
    for pair in data["pairwise"]:
        del pair["simultaneous_level"], pair["simultaneous_low"], pair["simultaneous_high"]
    results = Results.from_dict(data)
    assert all(r.policy_errors == 0 and r.missing == 0 for r in results.per_task)
    assert all(p.simultaneous_low is None for p in results.pairwise)


def test_a_foreign_file_is_a_one_line_error():
    with pytest.raises(UsageError, match=r"^x.json: not an evalsuite results file \(KeyError: 'suite'\)"):
        Results.from_dict({"pairwise": []}, "x.json")
    with pytest.raises(UsageError, match="not an evalsuite results file"):
        Results.from_dict([], "x.json")  # type: ignore[arg-type]


@pytest.mark.parametrize("run", SHIPPED, ids=[str(p.relative_to(REPO / "reports")) for p in SHIPPED])
def test_a_committed_run_folder_re_analyses_to_its_results_file(run):
    """Behaviour unchanged: the analysis of a committed folder's journal, with its saved options,
    policy notes and worst cases, is its results.json, key for key and in the same order."""
    from evalsuite.analysis import analyze
    from evalsuite.api import Run
    from evalsuite.results import AnalysisOptions

    folder = Run(run)
    again = analyze(folder.plan, folder.key, folder.records, AnalysisOptions(**folder.saved_options),
                    notes=folder.policy_notes, worst_case=folder.worst_case)
    text = json.dumps(again.to_dict(), indent=1) + "\n"
    assert text == (run / "results.json").read_text(), f"{run} no longer re-analyses to itself"
