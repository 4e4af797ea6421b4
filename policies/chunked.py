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
from evalsuite_policies.nets import CPU_DOWN_DIMS, ConditionalUnet1D, ObservationEncoder
from evalsuite_policies._util import flush_denormals

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
    time_scale: float = 1.0  # times x this before the sinusoidal embedding (e.g. 1000 for flow times in [0, 1])
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in gen.FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; accepted: {', '.join(gen.FAMILIES)}")
        self.down_dims = tuple(self.down_dims)
        if self.horizon % 2 ** (len(self.down_dims) - 1):
            raise ValueError(f"horizon {self.horizon} must be divisible by 2^{len(self.down_dims) - 1}")
        check_chunking(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
                                     time_scale=c.time_scale)
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
            return gen.consistency_fm_loss(self.net, x, cond, target_net=target.net if target else None,
                                           segments=c.extra.get("segments", 2), generator=generator)
        if c.family == "mp1":
            loss = gen.meanflow_loss(self.net, x, cond, cfg_w=2.0, adaptive=True, generator=generator)
            feats = self._features(x, cond, generator)[:2]  # the first two down blocks
            return loss + c.dispersive_weight * sum(gen.dispersive_loss(f) for f in feats)
        loss = gen.meanflow_loss(self.net, x, cond, generator=generator)  # dm1
        feats = [cond, *self._features(x, cond, generator)]  # observation embedding and UNet embeddings
        return loss + c.dispersive_weight * sum(gen.dispersive_loss(f, c.dispersive_variant) for f in feats) / len(feats)

    def _features(self, x: torch.Tensor, cond: torch.Tensor, generator) -> list[torch.Tensor]:
        b = x.shape[0]
        t, r = (v.to(x.device) for v in gen.sample_t_r(b, generator))
        e = torch.randn(x.shape, generator=generator).to(x.device)
        z = (1 - t).view(b, 1, 1) * x + t.view(b, 1, 1) * e
        return self.net(z, [t, r], cond, return_features=True)[1]

    @torch.no_grad()
    def sample(self, obs: dict[str, torch.Tensor], noise: torch.Tensor, steps: int) -> torch.Tensor:
        """An action chunk (B, horizon, A) in environment units from ``noise`` (B, horizon, A)."""
        cond = self.encode(obs)
        family = self.config.family
        if family == "dp3":
            x = gen.ddim_sample(self.net, noise, cond, self.alphas_cumprod, steps)
        elif family == "flowpolicy":
            x = gen.flow_sample(self.net, noise, cond, steps)
        else:
            x = gen.meanflow_sample(self.net, noise, cond, steps)
        return self.normalizer.unnormalize("action", x.clamp(-1.5, 1.5))


def save_checkpoint(model: ChunkModel, folder: Path, extra: dict[str, Any] | None = None, half: bool = False) -> Path:
    """``half`` stores the network weights in float16 (half the size; they are computed in float32
    after loading); the normalizer's limits always stay float32."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and k.startswith(("net.", "encoder.")) and v.is_floating_point() else v).cpu().contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"config": model.config.to_dict(), **(extra or {})}, indent=1))
    return folder


def config_from_dict(data: dict[str, Any]):
    """The config class of the model family named in ``data``."""
    if data["family"] == "ebt":
        from evalsuite_policies.ebt import EBTConfig

        return EBTConfig(**data)
    if data["family"] == "lbm":
        from evalsuite_policies.lbm import LBMConfig

        return LBMConfig(**data)
    return ModelConfig(**data)


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
    """Weights and config only (safetensors + JSON): no code from the file is executed."""
    from safetensors.torch import load_file

    meta = json.loads((folder / "config.json").read_text())
    model = build_model(config_from_dict(meta["config"]))
    state = load_file(str(folder / "model.safetensors"))
    for key, value in state.items():  # normalizer limits are sized at fit time
        if "__low" in key or "__high" in key:
            setattr(model.normalizer, key.split(".", 1)[1], value)
    model.load_state_dict(state)
    model.eval()
    return model, meta


class ChunkPolicy:
    """The evalsuite policy around a trained ChunkModel (any family)."""

    def __init__(self, task, suite, checkpoint: str = "", steps: int = 0, trust: bool = False) -> None:
        if not checkpoint:
            raise ValueError("a checkpoint folder is required, e.g. dp3:checkpoint=policies/checkpoints/dp3/drawer-open")
        if checkpoint.endswith(".ckpt"):  # an official DP3/FlowPolicy/MP1 file: pickled, needs trust
            from evalsuite_policies.official import load_official

            weights = Path(checkpoint)
            self.model, self.meta = load_official(weights, trust=trust), {"official": str(weights)}
        else:
            folder = _resolve(checkpoint, task)
            self.model, self.meta = load_checkpoint(folder)
            weights = folder / "model.safetensors"
        c = self.model.config
        self.steps = steps or DEFAULT_STEPS[c.family]
        self.requirements = PolicyRequirements(
            {k: shape for k, (_, shape) in c.obs.items()}, c.action_dim, chunked=True, n_obs_steps=c.n_obs_steps,
            notes={"family": c.family, "nfe": self.nfe, "horizon": c.horizon, "n_action_steps": c.n_action_steps})
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
        self._fingerprint = f"{c.family}-{digest}-steps{self.steps}"
        self._generators: dict[int, torch.Generator] = {}
        self._stats: dict[int, list[tuple[int, float]]] = {}  # per slot: (descent steps, energy) per chunk
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
                self._stats.setdefault(int(slot), []).append(
                    (int(stats["descent_steps"][row]), float(stats["energy"][row])))
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
        energies = [e for _, e in stats]
        return {"chunks": len(stats), "descent_steps_mean": float(np.mean([n for n, _ in stats])),
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


# Chunking per family, from the official Meta-World / robomimic configs: (horizon, n_obs_steps, n_action_steps).
FAMILY_CHUNKING = {"dp3": (16, 2, 8), "flowpolicy": (4, 2, 3), "mp1": (4, 2, 3), "dm1": (16, 2, 8), "ebt": (16, 2, 8),
                   "lbm": (16, 2, 8)}


def _family_policy(family: str):
    def make(task, suite, checkpoint: str = "", steps: int = 0, trust: bool = False) -> ChunkPolicy:
        from evalsuite.errors import UsageError

        if not checkpoint:
            kind = "robomimic" if suite.simulator == "robosuite" else "metaworld"
            checkpoint = f"policies/checkpoints/{family}/{kind}"
        try:
            policy = ChunkPolicy(task, suite, checkpoint=checkpoint, steps=steps, trust=trust)
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
