"""The LBM-style policy: a real sentence encoder, conditioning on the instruction (swapping it changes
the actions; the same observation gets each task's actions from its instruction), multitask training."""

import json

import numpy as np
import pytest
import torch

from evalsuite.cli import main
from evalsuite_policies.lbm import LanguageDiffusionModel, LBMConfig, embed_instruction, instruction_for


def test_the_sentence_encoder_is_real_and_offline():
    a, b, c = (embed_instruction(t) for t in ("open the drawer", "pull the drawer open", "press the red button"))
    assert a.shape == (384,) and np.linalg.norm(a) == pytest.approx(1.0, abs=1e-4)
    assert float(a @ b) > float(a @ c) + 0.1  # paraphrases are closer than other tasks
    assert instruction_for("pick-place") == "pick up the puck and place it at the goal"
    assert instruction_for("stick-pull") == "stick pull"


def test_one_observation_two_instructions_two_behaviours():
    """Both tasks show the robot the same observation: only the instruction tells which actions."""
    torch.manual_seed(0)
    cfg = LBMConfig(family="lbm", obs={"state": ("lowdim", (3,))}, action_dim=2, horizon=4, n_obs_steps=2,
                    n_action_steps=2, feature_dim=16, d_model=32, layers=1, heads=2, train_steps=20)
    model = LanguageDiffusionModel(cfg)
    model.normalizer.fit("state", np.array([[0, 0, 0], [1, 1, 1.0]]))
    model.normalizer.fit("action", np.array([[-1, -1], [1, 1.0]]))
    obs = torch.full((2, 2, 3), 0.5)
    language = torch.as_tensor(np.stack([embed_instruction("open the drawer"), embed_instruction("press the button")]))
    actions = torch.tensor([[[0.8, -0.6]] * 4, [[-0.7, 0.5]] * 4])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    rep = lambda x: x.repeat(16, *[1] * (x.ndim - 1))  # noqa: E731
    for _ in range(300):
        loss = model.loss({"state": rep(obs), "language": rep(language)}, rep(actions), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    noise = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(2))
    out = model.sample({"state": obs, "language": language}, noise, 10)
    assert (out - actions).abs().mean() < 0.15
    swapped = model.sample({"state": obs, "language": language.flip(0)}, noise, 10)
    assert (swapped - actions.flip(0)).abs().mean() < 0.15  # the instruction, not the noise, decides


def test_multitask_training_and_instruction_swap_through_the_cli(tmp_path):
    out = tmp_path / "lbm"
    assert main(["train", "policy=lbm", "suite=metaworld", "tasks=[drawer-open,reach]", "demos=1", f"out={out}",
                 "iters=5", "batch_size=8", "progress=false"]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["tasks"] == {"drawer-open": "open the drawer", "reach": "reach the goal position"}
    from evalsuite import registry
    from evalsuite.harness import build_policy

    suite = registry.suites.get("metaworld")
    own = build_policy("lbm", {"checkpoint": str(out)}, "drawer-open", suite)
    other = build_policy("lbm", {"checkpoint": str(out), "instruction": "reach the goal position"}, "drawer-open", suite)
    obs = {"state": np.random.default_rng(0).random((2, 2, 39))}
    for p in (own, other):
        for slot in (0, 1):
            p.reset(7 + slot, slot)
    assert not np.allclose(own.act(obs, np.arange(2)), other.act(obs, np.arange(2)))
    assert own.fingerprint() != other.fingerprint() and own.requirements.notes["instruction"] == "open the drawer"
    assert main(["train", "policy=dp3", "suite=metaworld", "tasks=[drawer-open,reach]", "demos=1",
                 f"out={tmp_path / 'x'}"]) == 2
