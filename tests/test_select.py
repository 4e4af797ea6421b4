"""Checkpoint selection: choose on selection initial conditions, report on fresh ones."""

import json

import pytest

from evalsuite.cli import main
from evalsuite.journal import read


def _select(tmp_path, *args):
    code = main(["select", "suite=fake", "max_steps=14", "tracking_uri=none", "progress=false",
                 f"out={tmp_path / 'sel'}", *args])
    assert code == 0
    return json.loads((tmp_path / "sel" / "select.json").read_text())


def test_best_of_k_equally_good_candidates_is_optimistic_and_fresh_episodes_say_so(fake_suite, tmp_path):
    candidates = ",".join(f"coin:salt={i}" for i in range(8))  # all p = 0.5
    result = _select(tmp_path, f"policies=[{candidates}]", "episodes=60", "seed=3")
    means = result["selection_means"]
    assert result["chosen"] == max(means, key=means.get)
    assert result["naive"]["mean"] == max(means.values())
    assert result["naive"]["mean"] > 0.55  # the max of 8 noisy estimates of 0.5
    assert result["honest"]["low"] <= 0.5 <= result["honest"]["high"]
    assert result["optimism"] == pytest.approx(result["naive"]["mean"] - result["honest"]["mean"])
    assert result["optimism"] > 0
    # the confirmation ran only the chosen candidate, on other initial conditions
    selection = read(tmp_path / "sel" / "selection" / "episodes.jsonl")
    confirmation = read(tmp_path / "sel" / "confirmation" / "episodes.jsonl")
    assert {r.ic_seed for r in selection}.isdisjoint({r.ic_seed for r in confirmation})
    assert len({r.policy_code for r in confirmation}) == 1 and len(confirmation) == 2 * 60
    assert "naive protocol was" in (tmp_path / "sel" / "select.md").read_text()


def test_a_clearly_better_candidate_is_chosen_and_confirmed(fake_suite, tmp_path):
    result = _select(tmp_path, "policies=[ones:speed=0.5,ones]", "episodes=20", "fresh_seed=11")
    assert result["chosen"] == "ones" and result["fresh_seed"] == 11
    assert result["honest"]["mean"] == 1.0 and result["optimism"] == 0.0


def test_select_usage_errors(fake_suite, tmp_path, capsys):
    assert main(["select", "suite=fake", "policies=[ones]", "tracking_uri=none", f"out={tmp_path}"]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["select", "suite=fake", "policies=[ones,coin]", "seed=4", "fresh_seed=4", "tracking_uri=none",
                 f"out={tmp_path}"]) == 2
    assert "fresh_seed=4 equals seed" in capsys.readouterr().err
    assert main(["select", "suite=fake", "policies=[ones,coin]", "stopping=sequential"]) == 2
    assert "unknown key 'stopping'" in capsys.readouterr().err
