"""GPC composition: weight 1 is the member alone (each family), mixing changes the actions, and
incompatible members are refused with the reason."""

import numpy as np
import pytest
import torch

from evalsuite.errors import UsageError
from evalsuite.specs import SuiteSpec, TaskSpec
from evalsuite_policies.chunked import ChunkModel, ChunkPolicy, ModelConfig, save_checkpoint
from evalsuite_policies.gpc import ComposedPolicy, ddim_times, ddpm_timestep

TASK = TaskSpec("toy", 10)
SUITE = SuiteSpec("toy", "tests.conftest:CountdownEnv", (TASK,))


def _checkpoint(tmp_path, family, seed=0, horizon=4, action_high=1.0, name=None):
    torch.manual_seed(seed)
    cfg = ModelConfig(family=family, obs={"state": ("lowdim", (3,))}, action_dim=2, horizon=horizon, n_obs_steps=2,
                      n_action_steps=2, down_dims=(16, 32), feature_dim=16, train_steps=20)
    model = ChunkModel(cfg)
    model.normalizer.fit("state", np.array([[0, 0, 0], [1, 1, 1.0]]))
    model.normalizer.fit("action", np.array([[-1, -1], [action_high, 1.0]]))
    model.eval()
    return save_checkpoint(model, tmp_path / (name or f"{family}-{seed}"))


def _actions(policy, seed=3):
    obs = {"state": np.random.default_rng(0).random((4, 2, 3))}
    for slot in range(4):
        policy.reset(seed + slot, slot)
    return policy.act(obs, np.arange(4))


@pytest.mark.parametrize("family,steps", [("dp3", 10), ("mp1", 3), ("dm1", 2), ("flowpolicy", 4)])
def test_weight_one_is_the_member_alone(tmp_path, family, steps):
    a = _checkpoint(tmp_path, family, 0)
    b = _checkpoint(tmp_path, "dp3" if family != "dp3" else "mp1", 1)
    alone = ChunkPolicy(TASK, SUITE, checkpoint=str(a), steps=steps)
    first = ComposedPolicy(TASK, SUITE, members=f"{family}@{a}+{'dp3' if family != 'dp3' else 'mp1'}@{b}", w=1.0,
                           steps=steps, schedule="ddim" if family == "dp3" else "uniform")
    np.testing.assert_allclose(_actions(first), _actions(alone), atol=2e-5)


def test_snr_matching_and_ddim_times():
    from evalsuite_policies.generative import cosine_alphas_cumprod

    ac = cosine_alphas_cumprod(100)
    for k in (0, 7, 50, 99):
        a, s = float(ac[k]) ** 0.5, float(1 - ac[k]) ** 0.5
        kk, abar = ddpm_timestep(ac, s / (a + s))
        assert kk == pytest.approx(k, abs=1e-4) and abar == pytest.approx(float(ac[k]), rel=1e-4)
    times = ddim_times(ac, 10)
    assert len(times) == 11 and times[-1] == 0 and all(x > y for x, y in zip(times, times[1:]))


def test_mixing_changes_the_actions_between_the_members(tmp_path):
    a, b = _checkpoint(tmp_path, "dp3", 0), _checkpoint(tmp_path, "mp1", 1)
    acts = {w: _actions(ComposedPolicy(TASK, SUITE, members=f"dp3@{a}+mp1@{b}", w=w)) for w in (0.0, 0.5, 1.0)}
    assert not np.allclose(acts[0.5], acts[0.0]) and not np.allclose(acts[0.5], acts[1.0])
    three = ComposedPolicy(TASK, SUITE, members=f"dp3@{a}+mp1@{b}+dp3@{a}", weights="0.25+0.5+0.25")
    np.testing.assert_allclose(_actions(three), acts[0.5], atol=2e-5)  # same members, same total weights
    assert three.requirements.notes["nfe"] == 30


def test_incompatible_members_are_refused_with_the_reason(tmp_path):
    a = _checkpoint(tmp_path, "dp3", 0)
    long = _checkpoint(tmp_path, "dp3", 1, horizon=8)
    other_data = _checkpoint(tmp_path, "mp1", 2, action_high=2.0)
    flow = _checkpoint(tmp_path, "mp1", 3)
    cases = [
        (dict(members=f"dp3@{a}+dp3@{long}"), "differ in horizon (4 vs 8)"),
        (dict(members=f"dp3@{a}+mp1@{other_data}"), "normalize actions differently"),
        (dict(members=f"dp3@{a}+mp1@{flow}", mix="native"), "predicts sample (x0) under DDPM noise and"),
        (dict(members=f"dp3@{a}+scripted"), "'scripted' exposes no denoiser or velocity field"),
        (dict(members=f"dp3@{a}+mp1@{flow}", w=1.5), "non-negative weights summing to 1"),
        (dict(members=f"dp3@{a}"), "give two or more"),
        (dict(members=f"mp1@{flow}+mp1@{flow}", schedule="ddim"), "needs a DDPM member"),
    ]
    for params, message in cases:
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
            ComposedPolicy(TASK, SUITE, **params)
    ComposedPolicy(TASK, SUITE, members=f"dp3@{a}+dp3@{a}", mix="native")  # one type, one schedule: fine


def test_compose_chooses_the_weight_on_other_episodes_than_it_reports(tmp_path, fake_suite, capsys):
    import json

    from evalsuite.cli import main

    def ckpt(seed):
        torch.manual_seed(seed)
        cfg = ModelConfig(family="dp3", obs={"state": ("lowdim", (2,))}, action_dim=2, horizon=4, n_obs_steps=1,
                          n_action_steps=2, down_dims=(16, 32), feature_dim=16, train_steps=20)
        model = ChunkModel(cfg)
        model.normalizer.fit("state", np.array([[0, 0], [12, 12.0]]))
        model.normalizer.fit("action", np.array([[-1, -1], [2, 1.0]]))
        return save_checkpoint(model.eval(), tmp_path / f"m{seed}")

    a, b = ckpt(0), ckpt(1)
    out = tmp_path / "compose"
    assert main(["compose", "suite=fake", "tasks=[t1]", f"members=[dp3@{a},dp3@{b}]", "weights=[0.3,0.7]",
                 "episodes=4", "fresh_episodes=6", "steps=2", f"out={out}", "tracking_uri=none", "progress=false"]) == 0
    result = json.loads((out / "compose.json").read_text())
    assert [c["w"] for c in result["curve"]] == [0.0, 0.3, 0.7, 1.0]
    assert result["chosen_w"] in (0.3, 0.7) and result["fresh_seed"] != result["selection_seed"]
    confirm = json.loads((out / "confirmation" / "results.json").read_text())
    assert len(confirm["policies"]) == 3 and confirm["episodes_per_task"] == 6 and confirm["trials"]["policy_errors"] == 0
    assert {t["member"] for t in result["paired_tests"]} == {f"dp3:checkpoint={a}", f"dp3:checkpoint={b}"}
    assert len(result["paired_tests"]) == 2
    assert (out / "compose.png").exists() and "Beats both members" in capsys.readouterr().out
