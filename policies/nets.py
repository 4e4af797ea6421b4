"""Networks shared by the generative policy families (DP3, FlowPolicy, MP1, DM1).

- Observation encoders: a low-dim MLP, the DP3 point-cloud encoder (per-point MLP with LayerNorm,
  max-pool, projection, LayerNorm) and a small residual CNN for images (written here: the CPU
  torch on these machines has no compiled torchvision ops).
- The 1-D temporal UNet over action chunks with FiLM conditioning (Janner et al.; Chi et al.):
  every residual block maps the global condition [time embedding ; observation features] to a
  per-channel scale and bias. ``down_dims`` sets the widths: the papers use (512, 1024, 2048),
  the CPU-sized default here is (64, 128, 256). ``n_times`` = 2 embeds a second time (MeanFlow's
  r); ``time_merge`` = "sum" adds the two embeddings (MP1's UNet, so its FiLM layers take
  time_dim + cond_dim inputs), "concat" concatenates them (the layout of checkpoints trained here
  before the MP1 fix). The forward pass can return the features after each down block (the
  dispersive losses use them).
"""

from __future__ import annotations

import math

import torch
from torch import nn

PAPER_DOWN_DIMS = (512, 1024, 2048)
CPU_DOWN_DIMS = (64, 128, 256)


class SinusoidalEmbedding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        dtype = t.dtype if t.is_floating_point() else torch.float32
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=dtype) / (half - 1))
        args = t.to(dtype)[:, None] * freqs[None]
        return torch.cat([args.sin(), args.cos()], dim=-1)


def mlp(sizes: list[int], layer_norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if layer_norm:
                layers.append(nn.LayerNorm(b))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class PointCloudEncoder(nn.Module):
    """DP3's encoder: xyz points (B, N, 3) -> per-point MLP 3-64-128-256 (LayerNorm + ReLU) ->
    max over points -> Linear -> LayerNorm."""

    def __init__(self, out_dim: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, 64), nn.LayerNorm(64), nn.ReLU(),
            nn.Linear(64, 128), nn.LayerNorm(128), nn.ReLU(),
            nn.Linear(128, 256), nn.LayerNorm(256), nn.ReLU())
        self.final_projection = nn.Sequential(nn.Linear(256, out_dim), nn.LayerNorm(out_dim))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.final_projection(self.mlp(points).max(dim=-2).values)


class ImageEncoder(nn.Module):
    """A small ResNet: conv stem, three residual stages (stride 2, GroupNorm), global average pool."""

    def __init__(self, out_dim: int = 64, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 2, 1), nn.GroupNorm(8, width), nn.ReLU())
        blocks = []
        for i in range(3):
            c_in, c_out = width * 2**i, width * 2 ** (i + 1) if i < 2 else width * 4
            blocks.append(_ResBlock2d(c_in, c_out))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(width * 4, out_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(image))
        return self.head(x.mean(dim=(-2, -1)))


class _ResBlock2d(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, 2, 1), nn.GroupNorm(8, c_out), nn.ReLU(),
                                  nn.Conv2d(c_out, c_out, 3, 1, 1), nn.GroupNorm(8, c_out))
        self.skip = nn.Conv2d(c_in, c_out, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class ObservationEncoder(nn.Module):
    """Encodes n_obs_steps frames of named observations and concatenates them into one vector.

    ``specs`` maps an observation key to (kind, shape), kind in lowdim | pointcloud | image."""

    def __init__(self, specs: dict[str, tuple[str, tuple[int, ...]]], n_obs_steps: int, feature_dim: int = 64) -> None:
        super().__init__()
        self.specs, self.n_obs_steps = specs, n_obs_steps
        encoders = {}
        for key, (kind, shape) in specs.items():
            if kind == "lowdim":
                encoders[key] = mlp([shape[-1], feature_dim, feature_dim])
            elif kind == "pointcloud":
                encoders[key] = PointCloudEncoder(feature_dim, in_channels=shape[-1])
            elif kind == "image":
                encoders[key] = ImageEncoder(feature_dim, in_channels=shape[0])
            else:
                raise ValueError(f"unknown observation kind {kind!r} for {key!r}")
        self.encoders = nn.ModuleDict(encoders)
        self.out_dim = feature_dim * len(specs) * n_obs_steps

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """obs[key]: (B, n_obs_steps, *shape) -> (B, out_dim), ordered frame by frame and, within a
        frame, key by key (DP3's layout: [pc_0, state_0, pc_1, state_1])."""
        feats = []
        for key in self.specs:
            x = obs[key]
            b, t = x.shape[:2]
            feats.append(self.encoders[key](x.reshape(b * t, *x.shape[2:])).reshape(b, t, -1))
        return torch.cat(feats, dim=-1).reshape(feats[0].shape[0], -1)


class _Conv1dBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.GroupNorm(groups, c_out),
                                   nn.Mish())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _FiLMResBlock(nn.Module):
    """Two conv blocks; the condition sets a per-channel scale and bias after the first (FiLM)."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.first, self.second = _Conv1dBlock(c_in, c_out, kernel, groups), _Conv1dBlock(c_out, c_out, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        return self.second(self.first(x) * scale + bias) + self.skip(x)


class ConditionalUnet1D(nn.Module):
    """eps/velocity/sample network over an action chunk (B, horizon, action_dim); the horizon must
    be divisible by 2^(len(down_dims) - 1). As in Chi et al.'s layout, the first level's skip is
    not used and every up block upsamples."""

    def __init__(self, action_dim: int, cond_dim: int, down_dims=CPU_DOWN_DIMS, kernel: int = 5, groups: int = 8,
                 time_dim: int = 128, n_times: int = 1, time_scale: float = 1.0, time_merge: str = "sum") -> None:
        super().__init__()
        if time_merge not in ("sum", "concat"):
            raise ValueError(f"unknown time_merge {time_merge!r}; accepted: concat, sum")
        self.n_times, self.time_scale, self.time_merge = n_times, time_scale, time_merge
        self.time_encoders = nn.ModuleList(
            nn.Sequential(SinusoidalEmbedding(time_dim), nn.Linear(time_dim, 4 * time_dim), nn.Mish(),
                          nn.Linear(4 * time_dim, time_dim)) for _ in range(n_times))
        c = time_dim * (n_times if time_merge == "concat" else 1) + cond_dim
        dims = [action_dim, *down_dims]
        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=False)):
            last = i == len(down_dims) - 1
            self.down.append(nn.ModuleList([_FiLMResBlock(a, b, c, kernel, groups), _FiLMResBlock(b, b, c, kernel, groups),
                                            nn.Conv1d(b, b, 3, 2, 1) if not last else nn.Identity()]))
        mid = down_dims[-1]
        self.mid = nn.ModuleList([_FiLMResBlock(mid, mid, c, kernel, groups), _FiLMResBlock(mid, mid, c, kernel, groups)])
        self.up = nn.ModuleList()
        for a, b in zip(reversed(down_dims[1:]), reversed(down_dims[:-1]), strict=False):
            self.up.append(nn.ModuleList([_FiLMResBlock(2 * a, b, c, kernel, groups), _FiLMResBlock(b, b, c, kernel, groups),
                                          nn.ConvTranspose1d(b, b, 4, 2, 1)]))
        self.final = nn.Sequential(_Conv1dBlock(down_dims[0], down_dims[0], kernel, groups),
                                   nn.Conv1d(down_dims[0], action_dim, 1))

    def time_embeddings(self, times: list[torch.Tensor]) -> list[torch.Tensor]:
        """One (B, time_dim) embedding per time. Times are multiplied by ``time_scale`` first (flow
        codes differ: MP1 embeds t in [0, 1], FlowPolicy 99 t, some 1000 t)."""
        return [enc(t * self.time_scale) for enc, t in zip(self.time_encoders, times, strict=False)]

    def forward(self, x: torch.Tensor, times: list[torch.Tensor], cond: torch.Tensor, return_features: bool = False):
        """x (B, H, A); times: n_times tensors (B,); cond (B, cond_dim). Returns (B, H, A)
        [and the features (B, C, H_level) after each down block]."""
        times_emb = self.time_embeddings(times)
        if self.time_merge == "sum":
            times_emb = [torch.stack(times_emb).sum(0)]
        emb = torch.cat([*times_emb, cond], dim=-1)
        h = x.transpose(1, 2)
        skips, features = [], []
        for res1, res2, downsample in self.down:
            h = res2(res1(h, emb), emb)
            skips.append(h)
            features.append(h)
            h = downsample(h)
        for block in self.mid:
            h = block(h, emb)
        for res1, res2, upsample in self.up:
            h = upsample(res2(res1(torch.cat([h, skips.pop()], dim=1), emb), emb))
        out = self.final(h).transpose(1, 2)
        return (out, features) if return_features else out
