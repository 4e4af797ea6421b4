"""Adapter for the official DP3 / FlowPolicy / MP1 checkpoints (``.ckpt`` files).

Those files are ``torch.save(payload, pickle_module=dill)`` with payload = {"cfg", "state_dicts":
{"model", "ema_model", "optimizer"}, "pickles"} and cfg the training run's OmegaConf config (with
unresolved interpolations such as ``${eval:'${n_obs_steps}-1'}``); reading them executes pickled
code, so this module refuses unless the caller passes ``trust=True`` for a file they trust. The
family comes from ``policy._target_``, chunking and sampler settings from the config, the sizes
from the weight shapes. The EMA weights are mapped by name into
``evalsuite_policies.chunked.ChunkModel`` (whose UNet and DP3 encoder have the official structure),
and the normalizer's (scale, offset) pairs become limits. Each family gets its repository's
conventions: FlowPolicy embeds 99 t and starts sampling at its ``eps``; MP1 sums the t and r
embeddings; DP3 clips x0 at every DDIM step with the update of diffusers 0.11.1, which it pins
(``ddim_update="diffusers-0.15"`` for the later one); no sampler clamps its output. ``convert``
writes the result as an ordinary safetensors checkpoint folder, which loads afterwards without trust.
"""

from __future__ import annotations

import ast
import operator
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
# Not part of the policy's function: the UNet's unused variance head, the normalizer (read separately), the
# mask generator, and the empty ``_dummy_variable`` parameter every official policy carries for its device.
_IGNORED = re.compile(r"^(model\.var_est\.|normalizer\.|mask_generator\.|model\.local_cond_encoder\.|_dummy_variable$)")
# policy._target_ class name -> family; other official policies (e.g. MP1's SimpleDP3 baseline) have other networks.
_TARGETS = {"DP3": "dp3", "FlowPolicy": "flowpolicy", "Meanpolicy": "mp1"}


def official_to_ours(key: str) -> str:
    for pattern, repl in _RULES:
        key = re.sub(pattern, repl, key)
    return key


def load_official(path: Path, *, trust: bool = False, family: str | None = None,
                  ddim_update: str = "diffusers-0.11.1") -> ChunkModel:
    """The policy of an official checkpoint. ``family``: only needed when the file's config names no
    policy class; ``ddim_update``: dp3's DDIM update (default: diffusers 0.11.1, as DP3 pins)."""
    if not trust:
        raise UsageError(f"{path} is an official (dill-pickled) checkpoint: loading it executes code from the file. "
                         "Pass trust=true only for a file you trust")
    import dill

    if not Path(path).is_file():
        raise UsageError(f"official checkpoint {str(path)!r} is not a file")
    try:
        payload = torch.load(path, pickle_module=dill, weights_only=False, map_location="cpu")
        state = payload["state_dicts"].get("ema_model") or payload["state_dicts"]["model"]
    except Exception as exc:  # random bytes, another library's pickle, a truncated file
        reason = (str(exc).splitlines() or [""])[0][:160]
        raise UsageError(f"{path} is not an official DP3/FlowPolicy/MP1 checkpoint ({type(exc).__name__}: {reason}); "
                         "give a .ckpt written by the official training script") from None
    cfg = _ConfigReader(payload.get("cfg"))
    family = _family_from(cfg, family, path)
    config = _config_from(state, cfg, family, ddim_update)
    model = ChunkModel(config)
    ours = {official_to_ours(k): v for k, v in state.items() if not _IGNORED.match(k)}
    expected = {k: v for k, v in model.state_dict().items() if "normalizer" not in k and k != "alphas_cumprod"}
    missing, unknown = set(expected) - set(ours), set(ours) - set(expected)
    wrong = sorted(k for k in set(expected) & set(ours) if expected[k].shape != ours[k].shape)
    if missing or unknown or wrong:
        shapes = [f"{k} {tuple(ours[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong[:2]]
        raise UsageError(f"{path}: weights do not fit a {family} model (missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unknown)[:3]}, shapes {shapes})")
    for key in ("point_cloud", "agent_pos", "action"):
        scale, offset = state[f"normalizer.params_dict.{key}.scale"], state[f"normalizer.params_dict.{key}.offset"]
        setattr(model.normalizer, f"{key}__low", ((-1 - offset) / scale).float())
        setattr(model.normalizer, f"{key}__high", ((1 - offset) / scale).float())
    model.load_state_dict({**model.state_dict(), **ours})
    return model.eval()


def convert(path: Path, out: Path, *, trust: bool = False, family: str | None = None,
            ddim_update: str = "diffusers-0.11.1") -> Path:
    model = load_official(path, trust=trust, family=family, ddim_update=ddim_update)
    return save_checkpoint(model, out, {"converted_from": str(path)})


_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
               ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
               ast.USub: operator.neg, ast.UAdd: operator.pos}


def safe_eval(expression: str):
    """The official configs' ``${eval:...}`` resolver, limited to arithmetic on numbers (their only
    use, e.g. ``'2-1'``): the official training registers Python's eval, which a file's config
    must not reach here."""
    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return _ARITHMETIC[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _ARITHMETIC:
            return _ARITHMETIC[type(node.op)](value(node.operand))
        raise ValueError(f"eval:{expression!r}: only arithmetic on numbers is evaluated")

    return value(ast.parse(str(expression), mode="eval").body)


class _ConfigReader:
    """Reads single fields of an official config (an OmegaConf DictConfig or a plain dict) by dotted
    path, resolving only what is read, so entries such as hydra's ``${now:...}`` never need a resolver."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg if cfg is not None else {}
        if not isinstance(self.cfg, dict):
            from omegaconf import OmegaConf

            if not OmegaConf.has_resolver("eval"):
                from omegaconf import __version__

                # 2.4 renamed register_new_resolver (deprecated there); before 2.2 register_resolver was the old API
                new_api = tuple(int(p) for p in __version__.split(".")[:2]) >= (2, 4)
                (OmegaConf.register_resolver if new_api else OmegaConf.register_new_resolver)("eval", safe_eval)

    def get(self, key: str, default: Any = None) -> Any:
        if isinstance(self.cfg, dict):
            node = self.cfg
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    return default
                node = node[part]
            return node
        from omegaconf import OmegaConf

        node = OmegaConf.select(self.cfg, key, default=default, throw_on_missing=False)
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _family_from(cfg: _ConfigReader, family: str | None, path: Path) -> str:
    target = str(cfg.get("policy._target_", "") or "")
    if not target:
        if family is None:
            raise UsageError(f"{path}: its config names no policy class; give the family (dp3, flowpolicy or mp1)")
        return family
    name = target.rsplit(".", 1)[-1]
    if name not in _TARGETS:
        raise UsageError(f"{path}: policy {target} is not supported; accepted: "
                         + ", ".join(f"{n} ({f})" for n, f in _TARGETS.items()))
    if family is not None and family != _TARGETS[name]:
        raise UsageError(f"{path} holds a {_TARGETS[name]} policy ({target}), not {family}")
    return _TARGETS[name]


def _config_from(state: dict, cfg: _ConfigReader, family: str, ddim_update: str) -> ModelConfig:
    downs = sorted({int(k.split(".")[2]) for k in state if k.startswith("model.down_modules.")})
    down_dims = tuple(int(state[f"model.down_modules.{i}.0.blocks.0.block.0.weight"].shape[0]) for i in downs)
    action_dim = int(state["model.final_conv.1.weight"].shape[0])
    time_dim = int(state["model.diffusion_step_encoder.1.weight"].shape[1])
    feature_dim = int(state["obs_encoder.extractor.final_projection.0.weight"].shape[0])
    point_channels = int(state["obs_encoder.extractor.mlp.0.weight"].shape[1])
    state_dim = int(state["obs_encoder.state_mlp.0.weight"].shape[1])
    cond_dim = int(state["model.down_modules.0.0.cond_encoder.1.weight"].shape[1])
    per_frame = feature_dim + int(state["obs_encoder.state_mlp.2.weight"].shape[0])
    horizon, _, n_action = FAMILY_CHUNKING[family]
    n_obs_steps = int(cfg.get("n_obs_steps", (cond_dim - time_dim) // per_frame))
    horizon = int(cfg.get("horizon", horizon))
    # The official policies slice actions [n_obs_steps - 1, n_obs_steps - 1 + n_action_steps) of the chunk: with
    # horizon 4 and n_action_steps 4 that is 3 actions, which is what they execute.
    official_n_action = int(cfg.get("n_action_steps", n_action))
    n_points = int((cfg.get("task.shape_meta.obs.point_cloud.shape") or cfg.get("shape_meta.obs.point_cloud.shape")
                    or [512])[0])
    conventions: dict[str, Any] = {"output_clamp": None}
    extra: dict[str, Any] = {"official": True, "policy": cfg.get("policy._target_"),
                             "official_n_action_steps": official_n_action}
    if family == "dp3":
        scheduler = cfg.get("policy.noise_scheduler", {}) or {}
        if scheduler.get("prediction_type", "sample") != "sample" or \
                scheduler.get("beta_schedule", "squaredcos_cap_v2") != "squaredcos_cap_v2":
            raise UsageError(f"DP3 scheduler {scheduler}: only prediction_type sample with squaredcos_cap_v2 is supported")
        conventions.update(clip_sample=bool(scheduler.get("clip_sample", True)), ddim_update=ddim_update,
                           train_steps=int(scheduler.get("num_train_timesteps", 100)))
        extra["num_inference_steps"] = cfg.get("policy.num_inference_steps")
    elif family == "flowpolicy":  # the official predict_action and compute_loss embed t * 99
        conventions.update(time_scale=99.0, flow_eps=float(cfg.get("policy.Conditional_ConsistencyFM.eps", 1e-2)))
    else:
        conventions.update(time_scale=1.0, time_merge="sum")
    return ModelConfig(
        family=family, obs={"point_cloud": ("pointcloud", (n_points, point_channels)),
                            "agent_pos": ("lowdim", (state_dim,))},
        action_dim=action_dim, horizon=horizon, n_obs_steps=n_obs_steps,
        n_action_steps=min(official_n_action, horizon - n_obs_steps + 1), down_dims=down_dims,
        feature_dim=feature_dim, extra=extra, **conventions)
