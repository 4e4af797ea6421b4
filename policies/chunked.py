"""One model class for the four families, its checkpoint format, and its evalsuite policy.

A model = observation encoder (n_obs_steps frames) + conditional UNet over an action chunk of
``horizon`` steps, trained with its family's loss (``evalsuite_policies.generative``). At run time the
harness hands the policy the last ``n_obs_steps`` observations of every episode in the batch
(``PolicyRequirements.n_obs_steps``); the policy samples a chunk and returns the
``n_action_steps`` actions that start at the current step (index n_obs_steps - 1 of the chunk,
as in DP3), which the harness executes before asking again.

Checkpoints are a folder: ``model.safetensors`` (EMA weights and the normalizer's limits) and
``config.json`` - loadable without executing code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evalsuite.interfaces import PolicyRequirements
from evalsuite_policies import generative as gen
from evalsuite_policies._util import flush_denormals
from evalsuite_policies.nets import CPU_DOWN_DIMS, ConditionalUnet1D, ObservationEncoder

DEFAULT_STEPS = {"dp3": 10, "flowpolicy": 1, "mp1": 1, "dm1": 1, "ebt": 20, "lbm": 10}


@dataclass
class ModelConfig:
    family: str
    obs: dict[str, tuple[str, tuple[int, ...]]]  # key -> (lowdim | pointcloud | image, shape)
    action_dim: int
    horizon: int = 16
    n_obs_steps: int = 2
    n_action_steps: int = 8
    down_dims: tuple[int, ...] = CPU_DOWN_DIMS
    feature_dim: int = 64
    train_steps: int = 100  # dp3: DDPM timesteps
    dispersive_variant: str = "infonce-l2"
    dispersive_weight: float = 0.5
    # Conventions, defaults as the official code has them (LEGACY_CONVENTIONS: checkpoints trained here before).
    time_scale: float | None = None  # times x this before the sinusoidal embedding; None: flowpolicy 99, else 1
    time_merge: str = "sum"  # mp1/dm1: t and r embeddings summed (MP1) or "concat"
    flow_eps: float = 1e-2  # flowpolicy: training t ~ U[eps, 1]; inference starts at t = eps
    ema_target: bool = False  # flowpolicy option: the consistency target from the EMA net, without gradient
    clip_sample: bool = True  # dp3: DDIM clips x0 to [-1, 1] at every step
    ddim_update: str = "diffusers-0.11.1"  # dp3: the DDIM update of DP3's pinned diffusers, or "diffusers-0.15"
    output_clamp: float | None = None  # clamp the sampled normalized chunk to +-this (the official samplers do not)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in gen.FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; accepted: {', '.join(gen.FAMILIES)}")
        if self.time_scale is None:
            self.time_scale = 99.0 if self.family == "flowpolicy" else 1.0
        if self.ddim_update not in gen.DDIM_UPDATES:
            raise ValueError(f"unknown ddim_update {self.ddim_update!r}; accepted: {', '.join(gen.DDIM_UPDATES)}")
        self.down_dims = tuple(self.down_dims)
        if self.horizon % 2 ** (len(self.down_dims) - 1):
            raise ValueError(f"horizon {self.horizon} must be divisible by 2^{len(self.down_dims) - 1}")
        check_chunking(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# What a config.json written before these fields existed meant: the shipped checkpoints keep acting as trained.
LEGACY_CONVENTIONS = {"time_scale": 1.0, "time_merge": "concat", "flow_eps": 0.0, "ema_target": True,
                      "clip_sample": False, "ddim_update": "diffusers-0.15", "output_clamp": 1.5}


class Normalizer(nn.Module):
    """Per-channel "limits" scaling to [-1, 1], fitted on the training data (images: /255)."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__()
        self.keys = keys
        for key in keys:
            self.register_buffer(f"{key}__low", torch.zeros(0))
            self.register_buffer(f"{key}__high", torch.zeros(0))

    def fit(self, key: str, data: np.ndarray) -> None:
        flat = torch.as_tensor(data, dtype=torch.float32).reshape(-1, data.shape[-1])
        setattr(self, f"{key}__low", flat.min(0).values)
        setattr(self, f"{key}__high", flat.max(0).values)

    def _limits(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = getattr(self, f"{key}__low"), getattr(self, f"{key}__high")
        span = torch.where(high - low > 1e-6, high - low, torch.full_like(high, 2.0))  # constant channel -> no scaling
        center = torch.where(high - low > 1e-6, (high + low) / 2, low)
        return center, span

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        center, span = self._limits(key)
        return (x - center) / (span / 2)

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        center, span = self._limits(key)
        return x * (span / 2) + center


def normalized_obs(normalizer: Normalizer, spec: dict, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every model's encoder input: images to [-1, 1] by /127.5, the rest by the fitted limits."""
    return {k: (obs[k].float() / 127.5 - 1 if kind == "image" else normalizer.normalize(k, obs[k].float()))
            for k, (kind, _) in spec.items()}


def check_chunking(config) -> None:
    """The shared config checks: shapes as tuples, the executed actions inside the horizon."""
    config.obs = {k: (kind, tuple(shape)) for k, (kind, shape) in config.obs.items()}
    if config.n_obs_steps - 1 + config.n_action_steps > config.horizon:
        raise ValueError("n_obs_steps - 1 + n_action_steps must fit in the horizon")


class ChunkModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = c = config
        self.encoder = ObservationEncoder(c.obs, c.n_obs_steps, c.feature_dim)
        n_times = 2 if c.family in ("mp1", "dm1") else 1
        self.net = ConditionalUnet1D(c.action_dim, self.encoder.out_dim, c.down_dims, n_times=n_times,
                                     time_scale=c.time_scale, time_merge=c.time_merge)
        self.normalizer = Normalizer(["action", *[k for k, (kind, _) in c.obs.items() if kind != "image"]])
        self.register_buffer("alphas_cumprod", gen.cosine_alphas_cumprod(c.train_steps))

    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw observations (B, n_obs_steps, *shape) -> the global condition."""
        return self.encoder(normalized_obs(self.normalizer, self.config.obs, obs))

    def loss(self, obs: dict[str, torch.Tensor], actions: torch.Tensor, generator: torch.Generator | None = None,
             target: ChunkModel | None = None) -> torch.Tensor:
        """The family's training loss on a batch: obs (B, n_obs_steps, ...), actions (B, horizon, A)."""
        c = self.config
        cond = self.encode(obs)
        x = self.normalizer.normalize("action", actions)
        if c.family == "dp3":
            return gen.ddpm_sample_loss(self.net, x, cond, self.alphas_cumprod, generator)
        if c.family == "flowpolicy":
            target_net = target.net if (c.ema_target and target is not None) else None
            return gen.consistency_fm_loss(self.net, x, cond, segments=c.extra.get("segments", 2), eps=c.flow_eps,
                                           target_net=target_net, generator=generator)
        if c.family == "mp1":
            loss, feats = gen.meanflow_loss(self.net, x, cond, cfg_w=2.0, adaptive=True, generator=generator,
                                            return_features=True)
            # MP1: every down block's output but the last, flattened, each its own dispersive term
            return loss + c.dispersive_weight * sum(gen.mp1_dispersive_loss(f) for f in feats[:-1])
        loss = gen.meanflow_loss(self.net, x, cond, generator=generator)  # dm1
        # DM1: the time, r and observation embeddings at uniform (t, r) - none depends on the action input
        b = x.shape[0]
        t, r = torch.rand(b, generator=generator).to(x.device), torch.rand(b, generator=generator).to(x.device)
        embeddings = [*self.net.time_embeddings([t, r]), cond]
        return loss + c.dispersive_weight * sum(gen.dispersive_loss(e, c.dispersive_variant) for e in embeddings)

    @torch.no_grad()
    def sample(self, obs: dict[str, torch.Tensor], noise: torch.Tensor, steps: int) -> torch.Tensor:
        """An action chunk (B, horizon, A) in environment units from ``noise`` (B, horizon, A)."""
        cond = self.encode(obs)
        family = self.config.family
        c = self.config
        if family == "dp3":
            x = gen.ddim_sample(self.net, noise, cond, self.alphas_cumprod, steps, clip_sample=c.clip_sample,
                                update=c.ddim_update)
        elif family == "flowpolicy":
            x = gen.flow_sample(self.net, noise, cond, steps, eps=c.flow_eps)
        else:
            x = gen.meanflow_sample(self.net, noise, cond, steps)
        if c.output_clamp is not None:
            x = x.clamp(-c.output_clamp, c.output_clamp)
        return self.normalizer.unnormalize("action", x)


def save_checkpoint(model: ChunkModel, folder: Path, extra: dict[str, Any] | None = None, half: bool = False) -> Path:
    """``half`` stores the network weights in float16 (half the size; they are computed in float32
    after loading); the normalizer's limits always stay float32."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and k.startswith(("net.", "encoder.")) and v.is_floating_point() else v).cpu().contiguous()
             for k, v in model.state_dict().items()}
    from evalsuite import fsio

    with fsio.atomic_path(folder / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    fsio.write_text(folder / "config.json", json.dumps({"config": model.config.to_dict(), **(extra or {})}, indent=1))
    return folder


def config_from_dict(data: dict[str, Any]):
    """The config class of the model family named in ``data``."""
    if data["family"] == "ebt":
        from evalsuite_policies.ebt import EBTConfig

        return EBTConfig(**data)
    if data["family"] == "lbm":
        from evalsuite_policies.lbm import LBMConfig

        return LBMConfig(**data)
    return ModelConfig(**{**LEGACY_CONVENTIONS, **data})


def build_model(config) -> nn.Module:
    """The model of a config: the UNet families share ChunkModel; ebt is its own architecture."""
    if config.family == "ebt":
        from evalsuite_policies.ebt import EnergyModel

        return EnergyModel(config)
    if config.family == "lbm":
        from evalsuite_policies.lbm import LanguageDiffusionModel

        return LanguageDiffusionModel(config)
    return ChunkModel(config)


def load_checkpoint(folder: Path) -> tuple[ChunkModel, dict[str, Any]]:
    """Weights and config only (safetensors + JSON): no code from the file is executed. A damaged or
    foreign folder is a ValueError naming the file and what is wrong with it."""
    from safetensors.torch import load_file

    try:
        meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        model = build_model(config_from_dict(meta["config"]))
    except Exception as exc:  # not JSON, no "config", unknown fields or values: a damaged config
        raise ValueError(f"{folder / 'config.json'} is not an evalsuite checkpoint config ({_why(exc)})") from None
    try:
        state = load_file(str(folder / "model.safetensors"))
        for key, value in state.items():  # normalizer limits are sized at fit time
            if "__low" in key or "__high" in key:
                setattr(model.normalizer, key.split(".", 1)[1], value)
        model.load_state_dict(state)
    except Exception as exc:  # empty, truncated or other weights
        raise ValueError(f"{folder / 'model.safetensors'} does not hold the weights of its config.json "
                         f"({_why(exc)})") from None
    model.eval()
    return model, meta


def _why(exc: Exception) -> str:
    """An exception as a short reason for a one-line message."""
    first = (str(exc).splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class ChunkPolicy:
    """The evalsuite policy around a trained ChunkModel (any family)."""

    def __init__(self, task, suite, checkpoint: str = "", steps: int = 0, trust: bool = False,
                 family: str | None = None, ddim_update: str = "diffusers-0.11.1") -> None:
        if not checkpoint:
            raise ValueError("a checkpoint folder is required, e.g. "
                             "dp3:checkpoint=policies/checkpoints/cpu-budget/dp3/seed0")
        if checkpoint.endswith(".ckpt"):  # an official DP3/FlowPolicy/MP1 file: pickled, needs trust
            from evalsuite import trust as consent
            from evalsuite_policies.official import load_official

            weights = Path(checkpoint)
            consent.require(weights, "official checkpoint")  # the command line's consent, never a run folder's
            model = load_official(weights, trust=trust, family=family, ddim_update=ddim_update)
            self.model, self.meta = model, {"official": str(weights)}
        else:
            folder = _resolve(checkpoint, task)
            self.model, self.meta = load_checkpoint(folder)
            weights = folder / "model.safetensors"
        c = self.model.config
        self.steps = steps or DEFAULT_STEPS[c.family]
        self.requirements = PolicyRequirements(
            {k: shape for k, (_, shape) in c.obs.items()}, c.action_dim, chunked=True, n_obs_steps=c.n_obs_steps,
            episode_info=True,
            notes={"family": c.family, "nfe": self.nfe, "horizon": c.horizon, "n_action_steps": c.n_action_steps})
        # the weights and the conventions they are sampled with: the same weights sampled otherwise act otherwise
        conventions = json.dumps({k: getattr(c, k, None) for k in LEGACY_CONVENTIONS}, sort_keys=True)
        digest = hashlib.sha256(weights.read_bytes() + conventions.encode()).hexdigest()[:16]
        self._fingerprint = f"{c.family}-{digest}-steps{self.steps}"
        self._generators: dict[int, torch.Generator] = {}
        # per slot, per chunk: (descent steps, energy, whether the gradient criterion stopped the descent)
        self._stats: dict[int, list[tuple[int, float, bool]]] = {}
        flush_denormals()

    @property
    def nfe(self) -> int:
        """Network evaluations per action chunk (the inference cost the report records)."""
        return self.steps

    def reset(self, seed: int, slot: int) -> None:
        self._generators[slot] = torch.Generator().manual_seed(seed % 2**63)
        self._stats[slot] = []

    def act(self, observations: dict[str, np.ndarray], slots: np.ndarray) -> np.ndarray:
        c = self.model.config
        obs = {**frames(observations, c.obs, c.n_obs_steps), **self.extra_inputs(len(slots))}
        noise = torch.stack([torch.randn((c.horizon, c.action_dim), generator=self._generators[int(s)])
                             for s in slots])
        chunk = self.model.sample(obs, noise, self.steps).numpy()
        stats = getattr(self.model, "last_stats", None)
        if stats is not None:  # energy-based: descent steps and final energy of every chunk
            for row, slot in enumerate(slots):
                stopped = stats.get("stopped_by_gradient")
                self._stats.setdefault(int(slot), []).append(
                    (int(stats["descent_steps"][row]), float(stats["energy"][row]),
                     bool(stopped[row]) if stopped is not None else False))
        start = c.n_obs_steps - 1
        return chunk[:, start:start + c.n_action_steps]

    def extra_inputs(self, batch: int) -> dict[str, torch.Tensor]:
        """Inputs that do not come from the environment (the lbm policy's instruction)."""
        return {}

    def episode_info(self, slot: int) -> dict[str, Any]:
        """What the episode's chunks said about themselves (energy-based policies): kept with the record."""
        stats = self._stats.get(slot) or []
        if not stats:
            return {}
        energies = [e for _, e, _ in stats]
        return {"chunks": len(stats), "descent_steps_mean": float(np.mean([n for n, _, _ in stats])),
                "stopped_by_gradient": float(np.mean([s for _, _, s in stats])),
                "energy_mean": float(np.mean(energies)), "energy_max": float(np.max(energies)),
                "energy_first": energies[0], "energy_last": energies[-1]}

    def fingerprint(self) -> str:
        return self._fingerprint


def frames(observations: dict[str, np.ndarray], keys, n_obs_steps: int) -> dict[str, torch.Tensor]:
    """The harness's observations as (B, n_obs_steps, *shape) tensors (with one frame it sends (B, *shape))."""
    out = {}
    for k in keys:
        x = torch.as_tensor(np.asarray(observations[k]), dtype=torch.float32)
        out[k] = x[:, None] if n_obs_steps == 1 else x
    return out


def _resolve(checkpoint: str, task) -> Path:
    """A checkpoint folder, or a folder of per-task checkpoints (``<folder>/<task id>``)."""
    path = Path(checkpoint)
    if not path.is_absolute() and not path.exists() and path.parts[:2] == ("policies", "checkpoints"):
        path = Path(__file__).resolve().parent.joinpath(*path.parts[1:])  # shipped: package data
    if (path / task.id / "config.json").exists():
        path = path / task.id
    if not (path / "config.json").exists():
        raise ValueError(f"no checkpoint at {checkpoint} (need config.json and model.safetensors, or a "
                         f"{task.id}/ subfolder)")
    return path


# Chunking per family: (horizon, n_obs_steps, n_action_steps). dp3, flowpolicy, mp1: the papers' Meta-World
# configs (horizon 4, 2 observations; their n_action_steps 4 executes 3 actions, the rest of the chunk); DP3's
# repository has defaulted to 16/2/8 since 2025-03, after the paper. dm1, ebt, lbm: Diffusion Policy's 16/2/8.
FAMILY_CHUNKING = {"dp3": (4, 2, 3), "flowpolicy": (4, 2, 3), "mp1": (4, 2, 3), "dm1": (16, 2, 8), "ebt": (16, 2, 8),
                   "lbm": (16, 2, 8)}


# What a bare family name loads. dp3, flowpolicy, mp1, dm1: training seed 0 of the fixed-code CPU-budget sets
# (three seeds a family and task, docs/research/policy-families.md "Retrained on an equal CPU budget"; seed 0 named before any evaluation);
# the checkpoints trained before issue 16's fixes stay under legacy/<family>/<metaworld|robomimic>. Any other
# family (ebt) defaults to <family>/<metaworld|robomimic>.
DEFAULT_CHECKPOINTS = {f: f"policies/checkpoints/cpu-budget/{f}/seed0" for f in ("dp3", "flowpolicy", "mp1", "dm1")}


def _family_policy(family: str):
    def make(task, suite, checkpoint: str = "", steps: int = 0, trust: bool = False,
             ddim_update: str = "diffusers-0.11.1") -> ChunkPolicy:
        """``ddim_update``: for an official dp3 ``.ckpt``, the DDIM update of diffusers 0.11.1 (DP3's pin) or 0.15."""
        from evalsuite.errors import UsageError

        if not checkpoint:
            kind = "robomimic" if suite.simulator == "robosuite" else "metaworld"
            checkpoint = DEFAULT_CHECKPOINTS.get(family, f"policies/checkpoints/{family}/{kind}")
        try:
            policy = ChunkPolicy(task, suite, checkpoint=checkpoint, steps=steps, trust=trust, family=family,
                                 ddim_update=ddim_update)
        except ValueError as exc:
            raise UsageError(f"policy {family!r}: {exc}") from None
        if policy.model.config.family != family:
            raise UsageError(f"policy {family!r}: checkpoint {checkpoint} holds a {policy.model.config.family!r} "
                             f"model; use policies=[{policy.model.config.family}:{checkpoint}]")
        return policy

    make.__name__ = family
    return make


dp3, flowpolicy, mp1, dm1, ebt = (_family_policy(f) for f in ("dp3", "flowpolicy", "mp1", "dm1", "ebt"))


class LanguagePolicy(ChunkPolicy):
    """The lbm policy: the instruction (default: the task's) is embedded once and fed with every call."""

    def __init__(self, task, suite, checkpoint: str = "", steps: int = 0, instruction: str = "") -> None:
        from evalsuite_policies.lbm import embed_instruction, instruction_for

        super().__init__(task, suite, checkpoint=checkpoint, steps=steps)
        self.instruction = instruction or instruction_for(task.id)
        self.language = torch.as_tensor(embed_instruction(self.instruction))
        self.requirements.notes.update(instruction=self.instruction,
                                       trained_tasks=sorted(self.model.config.tasks))
        self._fingerprint += "-" + hashlib.sha256(self.instruction.encode()).hexdigest()[:8]

    def extra_inputs(self, batch: int) -> dict[str, torch.Tensor]:
        return {"language": self.language.expand(batch, -1)}


def lbm(task, suite, checkpoint: str = "", steps: int = 0, instruction: str = "") -> LanguagePolicy:
    from evalsuite.errors import UsageError

    try:
        policy = LanguagePolicy(task, suite, checkpoint=checkpoint or "policies/checkpoints/lbm/metaworld/multitask",
                                steps=steps, instruction=instruction)
    except ValueError as exc:
        raise UsageError(f"policy 'lbm': {exc}") from None
    if policy.model.config.family != "lbm":
        raise UsageError(f"policy 'lbm': checkpoint {checkpoint} holds a {policy.model.config.family!r} model")
    return policy
