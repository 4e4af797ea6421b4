"""`evalsuite leaderboard` and `evalsuite agreement` on committed run folders (copied: the repository
is never written)."""

import json
import shutil

import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.commands import leaderboard
from evalsuite.commands.agreement import success_counts
from evalsuite.stats.ranking import Ranking, Strength
from tests.conftest import REPO

REPORTS = REPO / "reports"


@pytest.fixture
def runs(tmp_path):
    def copy(*names):
        out = []
        for name in names:
            shutil.copytree(REPORTS / name, tmp_path / name)
            out.append(tmp_path / name)
        return out
    return copy


def test_leaderboard_of_three_folders(runs, tmp_path, capsys):
    """policies-metaworld (dp3, flowpolicy, mp1, scripted; 50 initial conditions per task) and
    policies-metaworld-ii (dp3, ebt, lbm, lbm:single, mp1, scripted; the first 30 of the same
    conditions) share 90 conditions, where 7 distinct labels met: 21 pairs each; on the other 60
    only the first folder's 4: 6 pairs each. 90 * 21 + 60 * 6 = 2250 judgments."""
    first, second = runs("policies-metaworld", "policies-metaworld-ii")
    out = tmp_path / "board"
    assert main(["leaderboard", str(first), str(second), f"out={out}"]) == 0
    data = json.loads((out / "leaderboard.json").read_text())
    assert data["judgments"] == 90 * 21 + 60 * 6 and data["clusters"] == 150
    ranked = [s["item"] for s in data["strengths"]]
    assert ranked[0] == "scripted" and ranked[-1] == "ebt" and len(ranked) == 7
    assert data["strengths"][0]["rank_low"] == 1 and data["not_ranked"] == []
    assert data["policies"]["dp3"]["episodes"] == 150 + 90 and len(data["policies"]["dp3"]["runs"]) == 2
    assert data["tasks"]["metaworld/pick-place"] == {"conditions": 50, "judgments": 30 * 21 + 20 * 6}
    for name in ("leaderboard.md", "leaderboard.html", "leaderboard.png"):
        assert (out / name).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "| 1 | `scripted` |" in printed and "Adjacent policies" in printed


def test_a_judgment_is_the_pair_on_one_shared_condition(runs):
    """On a condition where only one folder ran them, a pair's judgment is the plain win/loss/tie;
    where the same label ran in both folders, its success rate there."""
    import evalsuite

    first, second = runs("policies-metaworld", "policies-metaworld-ii")
    j = leaderboard.judgments_from_runs([first, second])
    a = evalsuite.open_run(first).episodes()
    b = evalsuite.open_run(second).episodes()
    row = a[(a.task == "drawer-open") & (a.ic_index == 40)]  # beyond the second folder's 30
    seed = int(row.ic_seed.iloc[0])
    outcome = dict(zip(row.policy, row.success, strict=True))
    c = j.conditions.index(("metaworld", "drawer-open", seed))
    for k in [k for k, cl in enumerate(j.cluster) if cl == c]:
        p, q = j.policies[j.first[k]], j.policies[j.second[k]]
        assert j.score[k] == 0.5 + (outcome[p] - outcome[q]) / 2
    shared = (a.task == "coffee-push") & (a.ic_index == 3)
    seed = int(a[shared].ic_seed.iloc[0])
    rate = {}
    for frame in (a, b):
        for _, r in frame[(frame.task == "coffee-push") & (frame.ic_seed == seed)].iterrows():
            rate.setdefault(r.policy, []).append(r.success)
    c = j.conditions.index(("metaworld", "coffee-push", seed))
    k = next(k for k, cl in enumerate(j.cluster) if cl == c and {j.policies[j.first[k]], j.policies[j.second[k]]}
             == {"dp3", "lbm"})
    dp3, lbm = np.mean(rate["dp3"]), np.mean(rate["lbm"])
    expected = 0.5 + (dp3 - lbm) / 2 if j.policies[j.first[k]] == "dp3" else 0.5 + (lbm - dp3) / 2
    assert j.score[k] == pytest.approx(expected) and len(rate["dp3"]) == 2


def test_policies_that_never_met_are_left_out_and_said_so(runs, tmp_path):
    """family-pick-place (its own suite: dp3, scripted) and lbm-demos (metaworld: two lbm labels)
    share no condition and no label: two groups of two; one is ranked (the first by name), the
    other listed as not ranked. (A shared label links groups: scripted in two suites is one policy.)"""
    family, lbm = runs("family-pick-place", "lbm-demos")
    out = tmp_path / "board"
    assert main(["leaderboard", str(family), str(lbm), f"out={out}"]) == 0
    data = json.loads((out / "leaderboard.json").read_text())
    assert sorted(s["item"] for s in data["strengths"]) == ["dp3", "scripted"]
    assert data["not_ranked"] == ["lbm", "lbm:checkpoint=policies/checkpoints/lbm/metaworld/multitask-3demos"]
    assert "Not ranked (no initial condition shared with the ranked policies): `lbm`" in (out / "leaderboard.md").read_text()


@pytest.mark.parametrize("args, fragment", [
    (["{tmp}"], "is not a run folder (no plan.json)"),
    (["{baseline}"], "fewer than 2 policies share initial conditions"),
    (["{metaworld}", "{metaworld}"], "given twice"),
    ([], "no run folder given"),
    (["{metaworld}", "level=2"], "level"),
])
def test_leaderboard_bad_input_is_one_line_exit_2(args, fragment, runs, tmp_path, capsys):
    (baseline,) = runs("baselines/metaworld-smoke-scripted")
    metaworld = REPORTS / "policies-metaworld"  # read only: every case fails before writing
    argv = [a.format(tmp=tmp_path, baseline=baseline, metaworld=metaworld) for a in args]
    assert main(["leaderboard", *argv, f"out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_policy_that_wins_every_judgment_needs_the_prior():
    """Ties are half a win, so a policy that always succeeds still ties the others where they
    succeed too; only one that wins every judgment (the others never succeed) has no finite
    maximum-likelihood strength: with prior_ties=0 that is a one-line usage error."""
    from evalsuite.errors import UsageError

    j = leaderboard.Judgments(["a", "b", "c"], [0, 0, 1, 1], [1, 2, 2, 2], [1.0, 1.0, 0.5, 1.0], [0, 0, 0, 1],
                              [("s", "t", 1), ("s", "t", 2)], {})
    with pytest.raises(UsageError, match="never loses"):
        leaderboard.rank(j, prior_ties=0)
    ranking, left_out = leaderboard.rank(j)
    assert ranking.items == ["a", "b", "c"] and left_out == []


def test_labels_are_escaped_in_the_page(tmp_path):
    """A label is a user's string: in the HTML it is text, never markup; in Markdown a code span
    whose pipes cannot end the cell."""
    evil = "<script>alert(1)</script>|x"
    strengths = (Strength(evil, 0.5, 0.1, 0.9, 1, 1, 1, 3.0, 4), Strength("b`c", -0.5, -0.9, -0.1, 2, 2, 2, 1.0, 4))
    from evalsuite.stats.ranking import PairDifference

    ranking = Ranking(strengths, (PairDifference(evil, "b`c", 1.0, 0.2, 1.8, True, 4),), 0.95, 1.0, 4, 4, "test")
    judgments = leaderboard.Judgments([evil, "b`c"], [0], [1], [1.0], [0], [("s", "t", 1)],
                                      {evil: leaderboard.PolicyRecord(4, 3), "b`c": leaderboard.PolicyRecord(4, 1)})
    leaderboard.write(tmp_path, ranking, judgments, [], [tmp_path])
    page = (tmp_path / "leaderboard.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;|x" in page
    md = (tmp_path / "leaderboard.md").read_text()
    assert "`<script>alert(1)</script>\\|x`" in md and "`` b`c ``" in md


def test_leaderboard_logs_strengths_to_mlflow(runs, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    (first,) = runs("policies-metaworld")
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["leaderboard", str(first), f"out={tmp_path / 'board'}", f"tracking_uri={db}",
                 "experiment=boards"]) == 0
    assert "MLflow: leaderboard run" in capsys.readouterr().out
    client = MlflowClient(db)
    (run,) = client.search_runs([client.get_experiment_by_name("boards").experiment_id])
    data = json.loads((tmp_path / "board" / "leaderboard.json").read_text())
    top = data["strengths"][0]
    assert run.data.metrics[f"strength/{top['item']}"] == pytest.approx(top["log_strength"])
    assert run.data.metrics[f"strength_low/{top['item']}"] == pytest.approx(top["low"])
    assert run.data.metrics["rank/dp3"] in (2.0, 3.0)
    assert run.data.tags["evalsuite.kind"] == "leaderboard"


def _mmrv_loops(sim, real):
    """SimplerEnv's definition, written as loops."""
    worst = []
    for i in range(len(sim)):
        v = 0.0
        for j in range(len(sim)):
            if (sim[i] > sim[j]) != (real[i] > real[j]):
                v = max(v, abs(real[i] - real[j]))
        worst.append(v)
    return sum(worst) / len(worst)


def test_agreement_between_two_committed_runs(runs, tmp_path, capsys):
    """coffee-push (cpu-budget-coffee-push) as "simulation", drawer-open + pick-place
    (cpu-budget-drawer-open-pick-place) as "robot": the same 10 policy labels."""
    sim, real = runs("cpu-budget-coffee-push", "cpu-budget-drawer-open-pick-place")
    out = tmp_path / "agree"
    assert main(["agreement", f"sim={sim}", f"real={real}", f"out={out}", "bootstrap_reps=2000"]) == 0
    data = json.loads((out / "agreement.json").read_text())
    s, r = success_counts(sim), success_counts(real)
    labels = sorted(s)
    assert [p["policy"] for p in data["policies"]] == labels and len(labels) == 10
    xs = [s[p][0] / s[p][1] for p in labels]
    ys = [r[p][0] / r[p][1] for p in labels]
    assert s["scripted"] == (50, 50) and r["scripted"] == (60, 60)
    assert data["mmrv"]["estimate"] == pytest.approx(_mmrv_loops(xs, ys), abs=1e-12)
    assert data["pearson"]["estimate"] == pytest.approx(np.corrcoef(xs, ys)[0, 1], abs=1e-12)
    assert data["mmrv"]["low"] <= data["mmrv"]["estimate"] <= data["mmrv"]["high"]
    assert data["spearman"]["reps"] == 2000 and (out / "agreement.png").stat().st_size > 0
    assert "| MMRV |" in capsys.readouterr().out


def test_agreement_of_three_shared_policies(runs, tmp_path):
    """policies-metaworld vs policies-metaworld-ii share dp3, mp1, scripted: 98/150, 93/150,
    150/150 against 60/90, 58/90, 90/90 - the same order (scripted > dp3 > mp1), so MMRV 0 and
    Spearman 1; three policies give Pearson no Fisher interval."""
    sim, real = runs("policies-metaworld", "policies-metaworld-ii")
    out = tmp_path / "agree"
    assert main(["agreement", f"sim={sim}", f"real={real}", f"out={out}", "bootstrap_reps=500"]) == 0
    data = json.loads((out / "agreement.json").read_text())
    assert [p["policy"] for p in data["policies"]] == ["dp3", "mp1", "scripted"]
    assert data["mmrv"]["estimate"] == 0.0 and data["spearman"]["estimate"] == pytest.approx(1.0)
    assert data["pearson"]["estimate"] == pytest.approx(np.corrcoef([98 / 150, 93 / 150, 1], [60 / 90, 58 / 90, 1])[0, 1])
    assert (data["pearson"]["low"], data["pearson"]["high"]) == (-1.0, 1.0)
    md = (out / "agreement.md").read_text()
    assert "Not compared" in md and "`flowpolicy` (simulation)" in md and "`ebt` (robot)" in md


@pytest.mark.parametrize("args, fragment", [
    (["real={metaworld}"], "missing sim=RUN"),
    (["sim={tmp}", "real={metaworld}"], "is not a run folder"),
    (["sim={metaworld}", "real={budget}"], "share 1 policy label(s) (scripted); agreement needs at least 2"),
])
def test_agreement_bad_input_is_one_line_exit_2(args, fragment, tmp_path, capsys):
    values = {"tmp": tmp_path, "metaworld": REPORTS / "policies-metaworld", "budget": REPORTS / "cpu-budget-coffee-push"}
    assert main(["agreement", *[a.format(**values) for a in args], f"out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
