"""Official DP3 / FlowPolicy / MP1 checkpoints, built here in the official layout - the state-dict key
names and shapes of the official policy classes (DP3 / FlowPolicy / Meanpolicy: ``obs_encoder`` =
PointNetEncoderXYZ ``extractor`` + ``state_mlp``, ``model`` = their ConditionalUnet1D with
``var_est``, MP1's ``diffusion_step_encoder_rs``, ``normalizer.params_dict``, ``_dummy_variable``) and
an OmegaConf config with their fields and interpolations, saved as their ``save_checkpoint`` does
(dill, {cfg, state_dicts, pickles}). Nothing is taken from our model: the expected actions come from a
functional re-statement of the official ``predict_action`` below, so a drift in our architecture,
config reading or time convention fails here."""

import math

import dill
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from evalsuite.errors import UsageError
from evalsuite_policies.chunked import load_checkpoint
from evalsuite_policies.official import convert, load_official, safe_eval

TARGETS = {"dp3": "diffusion_policy_3d.policy.dp3.DP3", "flowpolicy": "flow_policy_3d.policy.flowpolicy.FlowPolicy",
           "mp1": "mp1.policy.meanpolicy_dis.Meanpolicy"}
DOWN_DIMS, DSED, ENC_OUT, STATE_OUT, N_POINTS, STATE_DIM, ACTION_DIM, N_OBS = (16, 32, 64), 128, 64, 64, 32, 9, 4, 2


# ---------------------------------------------------------------- the official layout

class _Layers:
    """Writes the parameters of official layers into a state dict, each drawn from one seeded generator
    in the order the layers are declared."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.sd: dict[str, torch.Tensor] = {"_dummy_variable": torch.empty(0),
                                            "mask_generator._dummy_variable": torch.empty(0)}

    def weight(self, name, *shape, fan_in):
        self.sd[name + ".weight"] = torch.randn(shape, generator=self.g) / math.sqrt(fan_in)
        self.sd[name + ".bias"] = 0.1 * torch.randn(shape[0], generator=self.g)

    def linear(self, name, i, o):
        self.weight(name, o, i, fan_in=i)

    def norm(self, name, d):  # LayerNorm / GroupNorm affine
        self.sd[name + ".weight"] = 1 + 0.1 * torch.randn(d, generator=self.g)
        self.sd[name + ".bias"] = 0.1 * torch.randn(d, generator=self.g)

    def conv_block(self, name, i, o, k=5):  # Conv1dBlock: Conv1d, GroupNorm(8), Mish
        self.weight(name + ".block.0", o, i, k, fan_in=i * k)
        self.norm(name + ".block.1", o)

    def res_block(self, name, i, o, cond):  # ConditionalResidualBlock1D, condition_type film
        self.conv_block(name + ".blocks.0", i, o)
        self.conv_block(name + ".blocks.1", o, o)
        self.linear(name + ".cond_encoder.1", cond, 2 * o)
        if i != o:
            self.weight(name + ".residual_conv", o, i, 1, fan_in=i)


def _official_state(family: str, seed: int = 0) -> dict[str, torch.Tensor]:
    layers = _Layers(seed)
    _obs_encoder_params(layers)
    _unet_params(layers, family)
    _normalizer_params(layers)
    return layers.sd


def _obs_encoder_params(layers: _Layers) -> None:
    """obs_encoder: PointNetEncoderXYZ (use_layernorm, final_norm layernorm) + state_mlp (64, 64)."""
    for idx, (i, o) in zip((0, 3, 6), ((3, 64), (64, 128), (128, 256)), strict=False):
        layers.linear(f"obs_encoder.extractor.mlp.{idx}", i, o)
        layers.norm(f"obs_encoder.extractor.mlp.{idx + 1}", o)
    layers.linear("obs_encoder.extractor.final_projection.0", 256, ENC_OUT)
    layers.norm("obs_encoder.extractor.final_projection.1", ENC_OUT)
    layers.linear("obs_encoder.state_mlp.0", STATE_DIM, STATE_OUT)
    layers.linear("obs_encoder.state_mlp.2", STATE_OUT, STATE_OUT)


def _unet_params(layers: _Layers, family: str) -> None:
    """model: ConditionalUnet1D; cond = diffusion_step_embed_dim + n_obs_steps * obs features (MP1 sums t and r)."""
    for enc in ("diffusion_step_encoder", "diffusion_step_encoder_rs") if family == "mp1" else ("diffusion_step_encoder",):
        layers.linear(f"model.{enc}.1", DSED, 4 * DSED)
        layers.linear(f"model.{enc}.3", 4 * DSED, DSED)
    for idx, (i, o) in zip((0, 2, 4, 6), ((ACTION_DIM, 512), (512, 512), (512, 512), (512, 1)), strict=False):
        layers.linear(f"model.var_est.{idx}", i, o)
    cond = DSED + N_OBS * (ENC_OUT + STATE_OUT)
    dims = [ACTION_DIM, *DOWN_DIMS]
    for level, (i, o) in enumerate(zip(dims[:-1], dims[1:], strict=False)):
        layers.res_block(f"model.down_modules.{level}.0", i, o, cond)
        layers.res_block(f"model.down_modules.{level}.1", o, o, cond)
        if level < len(DOWN_DIMS) - 1:  # Downsample1d
            layers.weight(f"model.down_modules.{level}.2.conv", o, o, 3, fan_in=3 * o)
    for m in (0, 1):
        layers.res_block(f"model.mid_modules.{m}", DOWN_DIMS[-1], DOWN_DIMS[-1], cond)
    for level, (o, i) in enumerate(zip(reversed(DOWN_DIMS[:-1]), reversed(DOWN_DIMS[1:]), strict=False)):
        layers.res_block(f"model.up_modules.{level}.0", 2 * i, o, cond)
        layers.res_block(f"model.up_modules.{level}.1", o, o, cond)
        # Upsample1d: ConvTranspose1d(o, o, 4, 2, 1)
        layers.weight(f"model.up_modules.{level}.2.conv", o, o, 4, fan_in=4 * o)
    layers.conv_block("model.final_conv.0", DOWN_DIMS[0], DOWN_DIMS[0])
    layers.weight("model.final_conv.1", ACTION_DIM, DOWN_DIMS[0], 1, fan_in=DOWN_DIMS[0])


def _normalizer_params(layers: _Layers) -> None:
    """LinearNormalizer: x * scale + offset per field."""
    for key, dim in (("point_cloud", 3), ("agent_pos", STATE_DIM), ("action", ACTION_DIM)):
        p = f"normalizer.params_dict.{key}"
        layers.sd[p + ".scale"] = 0.5 + torch.rand(dim, generator=layers.g)
        layers.sd[p + ".offset"] = 0.2 * torch.randn(dim, generator=layers.g)
        for stat in ("min", "max", "mean", "std"):
            layers.sd[f"{p}.input_stats.{stat}"] = torch.randn(dim, generator=layers.g)


def _official_cfg(family: str):
    """The fields the official dp3.yaml / flowpolicy.yaml / mp1.yaml and a metaworld task yaml have."""
    policy = {"_target_": TARGETS[family], "condition_type": "film", "diffusion_step_embed_dim": DSED,
              "down_dims": list(DOWN_DIMS), "encoder_output_dim": ENC_OUT, "horizon": "${horizon}", "kernel_size": 5,
              "n_action_steps": "${n_action_steps}", "n_groups": 8, "n_obs_steps": "${n_obs_steps}",
              "shape_meta": "${shape_meta}", "use_pc_color": False,
              "pointnet_type": "pointnet" if family == "dp3" else "mlp",
              "pointcloud_encoder_cfg": {"in_channels": 3, "out_channels": "${policy.encoder_output_dim}",
                                         "use_layernorm": True, "final_norm": "layernorm"}}
    if family == "dp3":
        policy["noise_scheduler"] = {"_target_": "diffusers.schedulers.scheduling_ddim.DDIMScheduler",
                                     "num_train_timesteps": 100, "beta_start": 0.0001, "beta_end": 0.02,
                                     "beta_schedule": "squaredcos_cap_v2", "clip_sample": True,
                                     "set_alpha_to_one": True, "steps_offset": 0, "prediction_type": "sample"}
        policy["num_inference_steps"] = 10
    return OmegaConf.create({
        "name": f"train_{family}", "task_name": "${task.name}", "shape_meta": "${task.shape_meta}",
        "horizon": 4, "n_obs_steps": N_OBS, "n_action_steps": 4, "n_latency_steps": 0,
        "dataset_obs_steps": "${n_obs_steps}", "obs_as_global_cond": True, "policy": policy,
        "task": {"name": "drawer-open",
                 "shape_meta": {"obs": {"point_cloud": {"shape": [N_POINTS, 3], "type": "point_cloud"},
                                        "agent_pos": {"shape": [STATE_DIM], "type": "low_dim"}},
                                "action": {"shape": [ACTION_DIM]}},
                 "dataset": {"horizon": "${horizon}", "pad_before": "${eval:'${n_obs_steps}-1'}",
                             "pad_after": "${eval:'${n_action_steps}-1'}"}},
        "multi_run": {"run_dir": "data/outputs/${now:%Y.%m.%d}/${name}_${task_name}"},  # hydra's resolver: absent here
    })


def _write_official(tmp_path, family: str):
    sd = _official_state(family)
    payload = {"cfg": _official_cfg(family), "state_dicts": {"model": sd, "ema_model": sd, "optimizer": {}},
               "pickles": {"_output_dir": dill.dumps(str(tmp_path))}}
    path = tmp_path / f"{family}-latest.ckpt"
    with path.open("wb") as f:
        torch.save(payload, f, pickle_module=dill)
    return path, sd


# ---------------------------------------------------------------- the official predict_action, restated

def _linear(sd, name, x):
    return F.linear(x, sd[name + ".weight"], sd[name + ".bias"])


def _time_encoder(sd, name, t):
    half = DSED // 2
    freqs = torch.exp(torch.arange(half) * -(math.log(10000) / (half - 1)))
    h = torch.cat([(t[:, None] * freqs).sin(), (t[:, None] * freqs).cos()], dim=-1)
    return _linear(sd, name + ".3", F.mish(_linear(sd, name + ".1", h)))


def _conv_block(sd, name, x):
    w = sd[name + ".block.0.weight"]
    x = F.conv1d(x, w, sd[name + ".block.0.bias"], padding=w.shape[-1] // 2)
    return F.mish(F.group_norm(x, 8, sd[name + ".block.1.weight"], sd[name + ".block.1.bias"]))


def _res_block(sd, name, x, cond):
    out = _conv_block(sd, name + ".blocks.0", x)
    scale, bias = _linear(sd, name + ".cond_encoder.1", F.mish(cond)).reshape(x.shape[0], 2, -1, 1).unbind(1)
    out = _conv_block(sd, name + ".blocks.1", scale * out + bias)
    skip = F.conv1d(x, sd[name + ".residual_conv.weight"], sd[name + ".residual_conv.bias"]) \
        if name + ".residual_conv.weight" in sd else x
    return out + skip


def _unet(sd, sample, t, global_cond, r=None):
    emb = _time_encoder(sd, "model.diffusion_step_encoder", t)
    if r is not None:
        emb = emb + _time_encoder(sd, "model.diffusion_step_encoder_rs", r)
    cond = torch.cat([emb, global_cond], dim=-1)
    x, h = sample.transpose(1, 2), []
    for level in range(len(DOWN_DIMS)):
        x = _res_block(sd, f"model.down_modules.{level}.1", _res_block(sd, f"model.down_modules.{level}.0", x, cond), cond)
        h.append(x)
        if f"model.down_modules.{level}.2.conv.weight" in sd:
            x = F.conv1d(x, sd[f"model.down_modules.{level}.2.conv.weight"], sd[f"model.down_modules.{level}.2.conv.bias"],
                         stride=2, padding=1)
    for m in (0, 1):
        x = _res_block(sd, f"model.mid_modules.{m}", x, cond)
    for level in range(len(DOWN_DIMS) - 1):
        x = torch.cat([x, h.pop()], dim=1)
        x = _res_block(sd, f"model.up_modules.{level}.1", _res_block(sd, f"model.up_modules.{level}.0", x, cond), cond)
        x = F.conv_transpose1d(x, sd[f"model.up_modules.{level}.2.conv.weight"], sd[f"model.up_modules.{level}.2.conv.bias"],
                               stride=2, padding=1)
    x = _conv_block(sd, "model.final_conv.0", x)
    return F.conv1d(x, sd["model.final_conv.1.weight"], sd["model.final_conv.1.bias"]).transpose(1, 2)


def _normalize(sd, key, x):
    return x * sd[f"normalizer.params_dict.{key}.scale"] + sd[f"normalizer.params_dict.{key}.offset"]


def _encode(sd, obs):
    b = obs["agent_pos"].shape[0]
    pc = _normalize(sd, "point_cloud", obs["point_cloud"]).reshape(b * N_OBS, N_POINTS, 3)
    for idx in (0, 3, 6):  # Linear, LayerNorm, ReLU, three times
        w, b_ = sd[f"obs_encoder.extractor.mlp.{idx + 1}.weight"], sd[f"obs_encoder.extractor.mlp.{idx + 1}.bias"]
        pc = F.relu(F.layer_norm(_linear(sd, f"obs_encoder.extractor.mlp.{idx}", pc), w.shape, w, b_))
    pc = _linear(sd, "obs_encoder.extractor.final_projection.0", pc.max(dim=1).values)
    pc = F.layer_norm(pc, (ENC_OUT,), sd["obs_encoder.extractor.final_projection.1.weight"],
                      sd["obs_encoder.extractor.final_projection.1.bias"])
    state = _normalize(sd, "agent_pos", obs["agent_pos"]).reshape(b * N_OBS, STATE_DIM)
    state = _linear(sd, "obs_encoder.state_mlp.2", F.relu(_linear(sd, "obs_encoder.state_mlp.0", state)))
    return torch.cat([pc, state], dim=-1).reshape(b, -1)


def _diffusers_alphas_cumprod(n=100):
    bar = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    betas = torch.tensor([min(1 - bar((i + 1) / n) / bar(i / n), 0.999) for i in range(n)], dtype=torch.float32)
    return torch.cumprod(1 - betas, dim=0)


def _official_actions(family, sd, obs, noise, ddim_update="diffusers-0.11.1"):
    """What the official predict_action returns for this initial noise: action_pred[:, To-1 : To-1+4]."""
    cond = _encode(sd, obs)
    b = noise.shape[0]
    if family == "dp3":  # DDIMScheduler(clip_sample=True, set_alpha_to_one=True), 10 steps of 100
        ac, z = _diffusers_alphas_cumprod(), noise
        for t in range(90, -1, -10):
            out = _unet(sd, z, torch.full((b,), t), cond)
            a, a_prev = ac[t], ac[t - 10] if t >= 10 else torch.tensor(1.0)
            x0 = out.clamp(-1, 1)
            direction = out if ddim_update == "diffusers-0.11.1" else (z - a.sqrt() * out) / (1 - a).sqrt()
            z = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * direction
    elif family == "flowpolicy":  # one step from t = eps = 0.01, the UNet fed t * 99, dt = 1
        z = noise + _unet(sd, noise, torch.full((b,), 0.01) * 99, cond)
    else:  # MP1: z - u(z, t=1, r=0)
        z = noise - _unet(sd, noise, torch.ones(b), cond, r=torch.zeros(b))
    action = (z - sd["normalizer.params_dict.action.offset"]) / sd["normalizer.params_dict.action.scale"]
    return action[:, N_OBS - 1:N_OBS - 1 + 4]


# ---------------------------------------------------------------- tests

def _obs_and_noise(seed=1):
    g = torch.Generator().manual_seed(seed)
    return ({"point_cloud": torch.randn(2, N_OBS, N_POINTS, 3, generator=g),
             "agent_pos": torch.randn(2, N_OBS, STATE_DIM, generator=g)},
            torch.randn(2, 4, ACTION_DIM, generator=g))


@pytest.mark.parametrize("family", ["dp3", "flowpolicy", "mp1"])
def test_official_checkpoint_loads_and_acts_as_official_predict_action(tmp_path, family):
    path, sd = _write_official(tmp_path, family)
    with pytest.raises(UsageError, match="executes code"):
        load_official(path)
    model = load_official(path, trust=True)
    c = model.config
    assert c.family == family and c.down_dims == DOWN_DIMS and (c.horizon, c.n_obs_steps) == (4, N_OBS)
    assert c.n_action_steps == 3 and c.extra["official_n_action_steps"] == 4  # 4 configured, 3 fit after To - 1
    if family == "mp1":
        assert model.net.down[0][0].film[1].weight.shape == (2 * DOWN_DIMS[0], DSED + N_OBS * (ENC_OUT + STATE_OUT))
    obs, noise = _obs_and_noise()
    steps = 10 if family == "dp3" else 1
    ours = model.sample(obs, noise, steps)[:, N_OBS - 1:N_OBS - 1 + c.n_action_steps]
    expected = _official_actions(family, sd, obs, noise)
    assert expected.shape == ours.shape == (2, 3, ACTION_DIM)
    assert torch.allclose(ours, expected, atol=1e-4), (ours - expected).abs().max()
    # converted once, it loads as an ordinary safetensors checkpoint and acts the same
    convert(path, tmp_path / "converted", trust=True)
    again, _ = load_checkpoint(tmp_path / "converted")
    assert torch.allclose(again.sample(obs, noise, steps), model.sample(obs, noise, steps), atol=1e-6)


def test_dp3_ddim_update_of_later_diffusers_is_an_option(tmp_path):
    path, sd = _write_official(tmp_path, "dp3")
    obs, noise = _obs_and_noise()
    pinned = load_official(path, trust=True).sample(obs, noise, 10)[:, 1:4]
    later = load_official(path, trust=True, ddim_update="diffusers-0.15").sample(obs, noise, 10)[:, 1:4]
    assert torch.allclose(later, _official_actions("dp3", sd, obs, noise, "diffusers-0.15"), atol=1e-4)
    assert not torch.allclose(pinned, later, atol=1e-4)


def test_unsupported_policy_classes_and_families_are_refused(tmp_path):
    path, _ = _write_official(tmp_path, "mp1")
    with pytest.raises(UsageError, match="not flowpolicy"):
        load_official(path, trust=True, family="flowpolicy")
    payload = torch.load(path, pickle_module=dill, weights_only=False)
    payload["cfg"].policy._target_ = "mp1.policy.simple_dp3.SimpleDP3"
    torch.save(payload, tmp_path / "simple.ckpt", pickle_module=dill)
    with pytest.raises(UsageError, match="not supported"):
        load_official(tmp_path / "simple.ckpt", trust=True)


def test_eval_interpolations_are_arithmetic_only():
    assert safe_eval("2-1") == 1 and safe_eval("(4 + 2) * 3 // 2") == 9
    for code in ("__import__('os').getcwd()", "[1, 2]", "open('x')", "True + 1"):
        with pytest.raises(ValueError, match="only arithmetic"):
            safe_eval(code)


def test_the_config_reader_resolves_the_official_eval_interpolations():
    """The task yaml's ``${eval:'${n_obs_steps}-1'}`` goes through the registered resolver (safe_eval);
    the hydra-only ``${now:...}`` beside it is never read, so it needs none."""
    from evalsuite_policies.official import _ConfigReader

    cfg = _ConfigReader(_official_cfg("dp3"))
    assert cfg.get("task.dataset.pad_before") == N_OBS - 1 and cfg.get("task.dataset.pad_after") == 3
    assert cfg.get("task.dataset") == {"horizon": 4, "pad_before": N_OBS - 1, "pad_after": 3}
    assert cfg.get("policy.pointcloud_encoder_cfg.out_channels") == ENC_OUT


def test_policy_refuses_an_official_file_without_the_trust_flag(tmp_path):
    from evalsuite import registry
    from evalsuite.harness import build_policy

    (tmp_path / "x.ckpt").write_bytes(b"not even read")
    suite = registry.suites.get("metaworld-smoke")
    with pytest.raises(UsageError, match="trust=true"):
        build_policy("dp3", {"checkpoint": str(tmp_path / "x.ckpt")}, "pick-place", suite)
