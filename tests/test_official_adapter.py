"""Official DP3-layout checkpoints: built here with the official key names, refused without trust,
mapped exactly into our model with it."""

import re

import dill
import numpy as np
import pytest
import torch

from evalsuite.errors import UsageError
from evalsuite_policies.chunked import ChunkModel, ModelConfig
from evalsuite_policies.official import convert, load_official
from evalsuite_policies.chunked import load_checkpoint

# ours -> the official names (written independently of the adapter's own mapping)
TO_OFFICIAL = [
    (r"^encoder\.encoders\.point_cloud\.", "obs_encoder.extractor."),
    (r"^encoder\.encoders\.agent_pos\.", "obs_encoder.state_mlp."),
    (r"^net\.time_encoders\.0\.", "model.diffusion_step_encoder."),
    (r"^net\.time_encoders\.1\.", "model.diffusion_step_encoder_rs."),
    (r"^net\.(down|up)\.(\d+)\.2\.(weight|bias)$", r"model.\1_modules.\2.2.conv.\3"),
    (r"^net\.down\.", "model.down_modules."), (r"^net\.up\.", "model.up_modules."),
    (r"^net\.mid\.", "model.mid_modules."), (r"^net\.final\.", "model.final_conv."),
    (r"\.first\.", ".blocks.0."), (r"\.second\.", ".blocks.1."), (r"\.film\.", ".cond_encoder."),
    (r"\.skip\.", ".residual_conv."),
]


def _official_payload(model: ChunkModel, family_target: str) -> dict:
    sd = {}
    for key, value in model.state_dict().items():
        if "normalizer" in key or key == "alphas_cumprod":
            continue
        for pattern, repl in TO_OFFICIAL:
            key = re.sub(pattern, repl, key)
        sd[key] = value.clone()
    for name in ("point_cloud", "agent_pos", "action"):
        low, high = getattr(model.normalizer, f"{name}__low"), getattr(model.normalizer, f"{name}__high")
        scale = 2 / (high - low)
        sd[f"normalizer.params_dict.{name}.scale"] = scale
        sd[f"normalizer.params_dict.{name}.offset"] = -1 - scale * low
    c = model.config
    cfg = {"horizon": c.horizon, "n_obs_steps": c.n_obs_steps, "n_action_steps": c.n_action_steps,
           "policy": {"_target_": family_target},
           "task": {"shape_meta": {"obs": {"point_cloud": {"shape": [64, 3]}, "agent_pos": {"shape": [9]}}}}}
    return {"cfg": cfg, "state_dicts": {"model": sd, "ema_model": sd, "optimizer": {}}, "pickles": {}}


@pytest.mark.parametrize("family,target", [("dp3", "diffusion_policy_3d.policy.dp3.DP3"),
                                           ("mp1", "mp1.policy.meanflow.MeanFlowPolicy")])
def test_official_layout_maps_exactly_and_needs_trust(tmp_path, family, target):
    torch.manual_seed(0)
    horizon, n_act = (16, 8) if family == "dp3" else (4, 3)
    model = ChunkModel(ModelConfig(family=family, obs={"point_cloud": ("pointcloud", (64, 3)),
                                                        "agent_pos": ("lowdim", (9,))},
                                   action_dim=4, horizon=horizon, n_action_steps=n_act, down_dims=(16, 32, 64)))
    rng = np.random.default_rng(0)
    model.normalizer.fit("point_cloud", rng.normal(size=(100, 3)))
    model.normalizer.fit("agent_pos", rng.normal(size=(100, 9)))
    model.normalizer.fit("action", rng.uniform(-1, 1, size=(100, 4)))
    model.eval()
    path = tmp_path / "latest.ckpt"
    torch.save(_official_payload(model, target), path, pickle_module=dill)

    with pytest.raises(UsageError, match="executes code"):
        load_official(path)
    loaded = load_official(path, trust=True)
    assert loaded.config.family == family and loaded.config.down_dims == (16, 32, 64)
    assert loaded.config.n_obs_steps == 2 and loaded.config.horizon == horizon
    obs = {"point_cloud": torch.randn(2, 2, 64, 3), "agent_pos": torch.randn(2, 2, 9)}
    noise = torch.randn(2, horizon, 4)
    steps = 10 if family == "dp3" else 1
    assert torch.allclose(model.sample(obs, noise, steps), loaded.sample(obs, noise, steps), atol=1e-5)
    # converted once, it loads as an ordinary safetensors checkpoint
    convert(path, tmp_path / "converted", trust=True)
    again, _ = load_checkpoint(tmp_path / "converted")
    assert torch.allclose(again.sample(obs, noise, steps), loaded.sample(obs, noise, steps), atol=1e-5)


def test_policy_refuses_an_official_file_without_the_trust_flag(tmp_path):
    from evalsuite import registry
    from evalsuite.harness import build_policy

    (tmp_path / "x.ckpt").write_bytes(b"not even read")
    suite = registry.suites.get("metaworld-smoke")
    with pytest.raises(UsageError, match="trust=true"):
        build_policy("dp3", {"checkpoint": str(tmp_path / "x.ckpt")}, "pick-place", suite)
