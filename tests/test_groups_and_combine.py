"""Algorithm groups (training seeds of one algorithm) and several run folders in one report, on the
fake task through the real CLI."""

import json

import pytest

from evalsuite.cli import main

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


def _evaluate(tmp_path, name, policies, seed=0, episodes=30, tasks=("t1", "t2")):
    out = tmp_path / name
    code = main(["evaluate", "suite=fake", f"policies=[{','.join(policies)}]", f"episodes={episodes}", f"seed={seed}",
                 f"tasks=[{','.join(tasks)}]", "max_steps=14", f"out={out}", "tracking_uri=none", "progress=false"])
    assert code == 0
    return out


def test_checkpoints_grouped_by_algorithm_get_seed_aware_intervals(fake_suite, tmp_path):
    run = _evaluate(tmp_path, "run", ["coin:p=0.3:salt=0:group=weak", "coin:p=0.3:salt=1:group=weak",
                                      "coin:p=0.3:salt=2:group=weak", "coin:p=0.9:salt=0:group=strong",
                                      "coin:p=0.9:salt=1:group=strong", "coin:p=0.9:salt=2:group=strong"])
    results = json.loads((run / "results.json").read_text())
    groups = results["groups"]
    assert set(groups["groups"]) == {"weak", "strong"}
    assert groups["groups"]["weak"]["runs"] == 3 and groups["groups"]["strong"]["runs"] == 3
    weak = groups["groups"]["weak"]["metrics"]["mean"]
    assert weak["low"] < 0.3 < weak["high"] and weak["method"].startswith("Korn-Graubard")
    (cmp,) = groups["comparisons"]
    d = cmp["mean_difference"] if cmp["x"] == "strong" else {k: -v if isinstance(v, float) else v
                                                               for k, v in cmp["mean_difference"].items()}
    assert min(d["low"], d["high"]) > 0.3  # strong beats weak by ~60 points, clearly
    assert "Algorithms (groups of checkpoints)" in (run / "report.md").read_text()


def test_several_run_folders_compare_paired_in_one_report(fake_suite, tmp_path, capsys):
    a = _evaluate(tmp_path, "a", ["coin:p=0.5:salt=0"])
    b = _evaluate(tmp_path, "b", ["coin:p=0.5:salt=1", "ones"])
    out = tmp_path / "both"
    assert main(["report", str(a), str(b), f"out={out}"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["policies"]) == {"coin:p=0.5:salt=0", "coin:p=0.5:salt=1", "ones"}
    assert all(p["n_pairs"] == 30 for p in results["pairwise"])  # same seed: the same initial conditions
    single = json.loads((b / "results.json").read_text())
    pair = lambda res: next(p for p in res["pairwise"] if {p["policy_a"], p["policy_b"]} == {"coin:p=0.5:salt=1", "ones"}
                            and p["task"] == "t1")
    assert pair(results)["a_only"] + pair(results)["b_only"] == pair(single)["a_only"] + pair(single)["b_only"]
    assert main(["report", str(out)]) == 0  # the combined folder is an ordinary run folder
    other = _evaluate(tmp_path, "other", ["ones"], seed=1)
    capsys.readouterr()
    assert main(["report", str(a), str(other), f"out={tmp_path / 'bad'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "seed=1" in err and len(err.splitlines()) == 1
    one_task = _evaluate(tmp_path, "one-task", ["ones:speed=0.5"], tasks=("t2",))
    assert main(["report", str(b), str(one_task), f"out={tmp_path / 'shared'}"]) == 0
    shared = json.loads((tmp_path / "shared" / "results.json").read_text())
    assert shared["tasks"] == ["t2"] and len(shared["policies"]) == 3


def test_a_run_folder_opens_as_a_dataframe_and_exports(fake_suite, tmp_path):
    import pandas as pd

    import evalsuite

    run = _evaluate(tmp_path, "run", ["ones", "ones:speed=0.5"], episodes=5)
    opened = evalsuite.open_run(run)
    df = opened.episodes()
    assert len(df) == 2 * 2 * 5 and set(df["policy"]) == {"ones", "ones:speed=0.5"}
    by_policy = df.groupby(["task", "policy"])["success"].sum()
    results = opened.results()  # typed, read back from results.json
    assert results.to_dict() == json.loads((run / "results.json").read_text())
    for row in results.per_task:
        assert by_policy[row.task, row.policy] == row.successes
    assert isinstance(df["milestones"][0], dict) and isinstance(df["init_state"][0], dict)  # parsed, not JSON text
    pairs = opened.pairwise()
    assert len(pairs) == 2 and set(pairs["task"]) == {"t1", "t2"}
    for p, row in zip(results.pairwise, pairs.itertuples(), strict=True):
        assert (row.policy_a, row.policy_b, row.difference, row.p_adjusted) == \
            (p.policy_a, p.policy_b, p.difference, p.p_adjusted)
    for fmt in ("csv", "parquet"):
        assert main(["export", str(run), f"format={fmt}", f"out={tmp_path / ('e.' + fmt)}"]) == 0
    back = pd.read_csv(tmp_path / "e.csv")
    assert json.loads(back["milestones"][0]) == df["milestones"][0]  # a file's cell: JSON text
    assert len(back) == len(df) and pd.read_parquet(tmp_path / "e.parquet")["policy"].tolist() == df["policy"].tolist()
    assert main(["export", str(run), "format=xlsx"]) == 2


def test_the_users_order_is_kept_and_a_minus_b_is_first_minus_second(fake_suite, tmp_path):
    """Listed [zeta, alpha], the run shows zeta first and compares zeta - alpha (not alphabetical);
    a folder whose key records no order (made before it was kept) still reads in label order."""
    out = _evaluate(tmp_path, "run", ["ones:speed=0.5:label=zeta", "ones:label=alpha"], episodes=4)
    results = json.loads((out / "results.json").read_text())
    assert list(results["policies"]) == ["zeta", "alpha"]
    assert [(p["policy_a"], p["policy_b"]) for p in results["pairwise"]] == [("zeta", "alpha")] * 2
    key = json.loads((out / "blinding.json").read_text())
    for entry in key.values():
        del entry["order"]
    (out / "blinding.json").write_text(json.dumps(key))
    assert main(["report", str(out)]) == 0
    assert list(json.loads((out / "results.json").read_text())["policies"]) == ["alpha", "zeta"]
