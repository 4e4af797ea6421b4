"""A torch MLP trained here on expert demonstrations, evaluated with batched inference."""

import json

import numpy as np
import pytest
import torch

from evalsuite.analysis import AnalysisOptions
from evalsuite.demos import collect, demo_seed
from evalsuite.harness import EvaluateRequest, evaluate
from evalsuite.plan import PolicyEntry, ic_seeds
from evalsuite.testing import check_policy
from evalsuite_policies.mlp_bc import MLPBCPolicy, MLPConfig, save, train_bc


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    demos = collect("metaworld-smoke", "drawer-open", 20, seed=0)
    assert len(demos.actions) == 20  # the expert succeeds; failed demos would be dropped
    obs, actions = demos.stacked("state")
    cfg = MLPConfig("state", 39, 4, [256, 256], "drawer-open")
    model, losses = train_bc(obs, actions, cfg, seed=0, epochs=40)
    assert losses[-1] < losses[0] / 5
    return save(model, cfg, tmp_path_factory.mktemp("mlp") / "ckpt")


def test_demo_initial_conditions_are_disjoint_from_evaluation():
    evaluation = {ic_seeds(s, "drawer-open", i)[0] for s in range(3) for i in range(200)}
    demos = {demo_seed(s, "drawer-open", i) for s in range(3) for i in range(200)}
    assert not evaluation & demos


def test_checkpoint_round_trip_without_pickle(checkpoint):
    a, b = MLPBCPolicy(checkpoint), MLPBCPolicy(checkpoint)
    obs = {"state": np.random.default_rng(0).normal(size=(5, 39))}
    np.testing.assert_array_equal(a.act(obs, np.arange(5)), b.act(obs, np.arange(5)))
    assert a.fingerprint() == b.fingerprint()
    assert json.loads((checkpoint / "config.json").read_text())["hidden"] == [256, 256]
    for name, tensor in a.model.state_dict().items():
        torch.testing.assert_close(tensor, b.model.state_dict()[name])


def test_conformance(checkpoint):
    check_policy("mlp-bc", "metaworld-smoke", "drawer-open", path=str(checkpoint))


def test_trained_policy_beats_random_through_batched_harness(checkpoint, tmp_path):
    req = EvaluateRequest.of(suite="metaworld-smoke", tasks=["drawer-open"], out=tmp_path / "run", episodes=16,
                          policies=[PolicyEntry("mlp-bc", {"path": str(checkpoint)}), PolicyEntry("random", {})],
                          batch_size=8, tracking_uri=None, progress=False, options=AnalysisOptions())
    results = evaluate(req, log=lambda *_: None)
    rates = {r.policy: r.rate for r in results.per_task}
    mlp = next(k for k in rates if k.startswith("mlp-bc"))
    assert rates[mlp] >= 0.7 and rates["random"] == 0.0
    (pair,) = results.pairwise
    assert pair.significant
