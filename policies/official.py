"""Adapter for the official DP3 / FlowPolicy / MP1 checkpoints (``.ckpt`` files).

Those files are ``torch.save(payload, pickle_module=dill)`` with payload = {"cfg", "state_dicts":
{"model", "ema_model", "optimizer"}, "pickles"}; reading them executes pickled code, so this module
refuses unless the caller passes ``trust=True`` for a file they trust. The EMA weights are mapped
by name into ``evalsuite_policies.chunked.ChunkModel`` (whose UNet and DP3 encoder have the official
structure), the sizes are read off the weight shapes, and the normalizer's (scale, offset) pairs
become limits. ``convert`` writes the result as an ordinary safetensors checkpoint folder, which
loads afterwards without trust.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from evalsuite.errors import UsageError
from evalsuite_policies.chunked import FAMILY_CHUNKING, ChunkModel, ModelConfig, save_checkpoint

_RULES = [  # official key prefix -> ours (regex, replacement), applied in order
    (r"^obs_encoder\.extractor\.", "encoder.encoders.point_cloud."),
    (r"^obs_encoder\.state_mlp\.", "encoder.encoders.agent_pos."),
    (r"^model\.diffusion_step_encoder_rs\.", "net.time_encoders.1."),
    (r"^model\.diffusion_step_encoder\.", "net.time_encoders.0."),
    (r"^model\.(down|up)_modules\.(\d+)\.2\.conv\.", r"net.\1.\2.2."),
    (r"^model\.down_modules\.", "net.down."),
    (r"^model\.up_modules\.", "net.up."),
    (r"^model\.mid_modules\.", "net.mid."),
    (r"^model\.final_conv\.", "net.final."),
    (r"\.blocks\.0\.", ".first."),
    (r"\.blocks\.1\.", ".second."),
    (r"\.cond_encoder\.", ".film."),
    (r"\.residual_conv\.", ".skip."),
]
_IGNORED = re.compile(r"^(model\.var_est\.|normalizer\.|mask_generator\.|model\.local_cond_encoder\.)")


def official_to_ours(key: str) -> str:
    for pattern, repl in _RULES:
        key = re.sub(pattern, repl, key)
    return key


def load_official(path: Path, *, trust: bool = False, family: str | None = None) -> ChunkModel:
    if not trust:
        raise UsageError(f"{path} is an official (dill-pickled) checkpoint: loading it executes code from the file. "
                         "Pass trust=true only for a file you trust")
    import dill

    payload = torch.load(path, pickle_module=dill, weights_only=False, map_location="cpu")
    state = payload["state_dicts"].get("ema_model") or payload["state_dicts"]["model"]
    cfg = _as_dict(payload.get("cfg", {}))
    family = family or _family_from(cfg, state)
    config = _config_from(state, cfg, family)
    model = ChunkModel(config)
    ours = {official_to_ours(k): v for k, v in state.items() if not _IGNORED.match(k)}
    missing = set(model.state_dict()) - set(ours) - {k for k in model.state_dict() if "normalizer" in k} - {"alphas_cumprod"}
    unknown = set(ours) - set(model.state_dict())
    if missing or unknown:
        raise UsageError(f"{path}: weights do not fit a {family} model (missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unknown)[:3]})")
    for key in ("point_cloud", "agent_pos", "action"):
        scale, offset = state[f"normalizer.params_dict.{key}.scale"], state[f"normalizer.params_dict.{key}.offset"]
        setattr(model.normalizer, f"{key}__low", ((-1 - offset) / scale).float())
        setattr(model.normalizer, f"{key}__high", ((1 - offset) / scale).float())
    model.load_state_dict({**model.state_dict(), **ours})
    return model.eval()


def convert(path: Path, out: Path, *, trust: bool = False, family: str | None = None) -> Path:
    model = load_official(path, trust=trust, family=family)
    return save_checkpoint(model, out, {"converted_from": str(path)})


def _as_dict(cfg: Any) -> dict:
    if isinstance(cfg, dict):
        return cfg
    try:  # OmegaConf, when installed
        from omegaconf import OmegaConf

        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:
        return {}


def _family_from(cfg: dict, state: dict) -> str:
    target = str(cfg.get("policy", {}).get("_target_", "")).lower()
    for name, family in (("meanflow", "mp1"), ("mp1", "mp1"), ("flow", "flowpolicy"), ("dp3", "dp3")):
        if name in target:
            return family
    return "mp1" if any(k.startswith("model.diffusion_step_encoder_rs.") for k in state) else "dp3"


def _config_from(state: dict, cfg: dict, family: str) -> ModelConfig:
    downs = sorted({int(k.split(".")[2]) for k in state if k.startswith("model.down_modules.")})
    down_dims = tuple(int(state[f"model.down_modules.{i}.0.blocks.0.block.0.weight"].shape[0]) for i in downs)
    action_dim = int(state["model.final_conv.1.weight"].shape[0])
    time_dim = int(state["model.diffusion_step_encoder.1.weight"].shape[1])
    feature_dim = int(state["obs_encoder.extractor.final_projection.0.weight"].shape[0])
    state_dim = int(state["obs_encoder.state_mlp.0.weight"].shape[1])
    n_times = 2 if family in ("mp1", "dm1") else 1
    cond_dim = int(state["model.down_modules.0.0.cond_encoder.1.weight"].shape[1])
    per_frame = feature_dim + int(state["obs_encoder.state_mlp.2.weight"].shape[0])
    n_obs_steps = (cond_dim - n_times * time_dim) // per_frame
    horizon, _, n_action = FAMILY_CHUNKING[family]
    n_points = int(cfg.get("task", {}).get("shape_meta", {}).get("obs", {}).get("point_cloud", {}).get("shape", [512])[0])
    return ModelConfig(
        family=family, obs={"point_cloud": ("pointcloud", (n_points, 3)), "agent_pos": ("lowdim", (state_dim,))},
        action_dim=action_dim, horizon=int(cfg.get("horizon", horizon)), n_obs_steps=int(cfg.get("n_obs_steps", n_obs_steps)),
        n_action_steps=int(cfg.get("n_action_steps", n_action)), down_dims=down_dims, feature_dim=feature_dim,
        extra={"official": True})
