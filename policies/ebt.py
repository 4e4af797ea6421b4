"""EBT-Policy: an energy-based transformer over action chunks; acting is descending the energy.

A small transformer reads tokens for the (normalized) action chunk, one token for the encoded
observations and a read-out token, and returns a scalar energy E(a | o). Acting starts from noise
and runs gradient descent on the chunk with Nesterov momentum (0.9) and a step proportional to
exp(E) - far from a good chunk the energy is high and the steps long, near one they shrink - until
the gradient norm falls under a tolerance or a step cap. Training unrolls a few such descent steps
from noise (with small Langevin noise), differentiating through them, and puts an MSE loss on the
last iterate: the energy landscape is learned so that descending it lands on the demonstrated chunk.
The number of descent steps and the final energy of every chunk are kept: the energy is the
policy's own uncertainty signal, recorded with each episode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from evalsuite_policies.nets import ObservationEncoder


@dataclass
class EBTConfig:
    family: str
    obs: dict[str, tuple[str, tuple[int, ...]]]
    action_dim: int
    horizon: int = 16
    n_obs_steps: int = 2
    n_action_steps: int = 8
    feature_dim: int = 64
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    train_descent_steps: int = 3
    max_descent_steps: int = 20
    grad_tol: float = 1e-3
    momentum: float = 0.9
    langevin_std: float = 0.01
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from evalsuite_policies.chunked import check_chunking

        check_chunking(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EnergyModel(nn.Module):
    def __init__(self, config: EBTConfig) -> None:
        from evalsuite_policies.chunked import Normalizer

        super().__init__()
        self.config = c = config
        self.encoder = ObservationEncoder(c.obs, c.n_obs_steps, c.feature_dim)
        self.normalizer = Normalizer(["action", *[k for k, (kind, _) in c.obs.items() if kind != "image"]])
        self.net = nn.ModuleDict({
            "action_in": nn.Linear(c.action_dim, c.d_model),
            "obs_in": nn.Linear(self.encoder.out_dim, c.d_model),
            "transformer": nn.TransformerEncoder(
                nn.TransformerEncoderLayer(c.d_model, c.heads, 2 * c.d_model, dropout=0.0, batch_first=True,
                                           norm_first=True), c.layers, enable_nested_tensor=False),
            "energy_out": nn.Sequential(nn.LayerNorm(c.d_model), nn.Linear(c.d_model, 1)),
        })
        self.position = nn.Parameter(torch.randn(1, c.horizon + 2, c.d_model) * 0.02)
        self.log_step = nn.Parameter(torch.tensor(0.0))  # step = exp(log_step) * exp(E)
        self.last_stats: dict[str, torch.Tensor] | None = None

    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        from evalsuite_policies.chunked import normalized_obs

        normed = normalized_obs(self.normalizer, self.config.obs, obs)
        return self.encoder(normed)

    def energy(self, actions: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """E(a | o) per row: actions (B, H, A) normalized, cond (B, obs features)."""
        b = actions.shape[0]
        readout = torch.zeros(b, 1, self.config.d_model, device=actions.device)
        tokens = torch.cat([readout, self.net["obs_in"](cond)[:, None], self.net["action_in"](actions)], dim=1)
        h = self.net["transformer"](tokens + self.position)
        return self.net["energy_out"](h[:, 0]).squeeze(-1)

    def _step(self, energy: torch.Tensor) -> torch.Tensor:
        return (self.log_step.exp() * energy.clamp(max=5.0).exp()).view(-1, 1, 1)

    def loss(self, obs, actions: torch.Tensor, generator: torch.Generator | None = None, target=None) -> torch.Tensor:
        """Unrolled noisy descent from noise, differentiated through; MSE of the last iterate."""
        c = self.config
        cond = self.encode(obs)
        x = self.normalizer.normalize("action", actions)
        a = torch.randn(x.shape, generator=generator).to(x.device).requires_grad_(True)
        # the math attention kernel: the fused CPU kernel has no double backward
        with sdpa_kernel([SDPBackend.MATH]):
            for _ in range(c.train_descent_steps):
                e = self.energy(a, cond)
                (g,) = torch.autograd.grad(e.sum(), a, create_graph=True)
                a = a - self._step(e) * g + c.langevin_std * torch.randn(x.shape, generator=generator).to(x.device)
        return ((a - x) ** 2).mean()

    def descend(self, a: torch.Tensor, cond: torch.Tensor, max_steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nesterov descent per row until its gradient norm < grad_tol or ``max_steps``; returns
        (chunk, steps taken per row, final energy per row)."""
        c = self.config
        velocity = torch.zeros_like(a)
        active = torch.ones(a.shape[0], dtype=torch.bool)
        steps = torch.zeros(a.shape[0], dtype=torch.long)
        with torch.enable_grad():
            for _ in range(max_steps):
                look = (a + c.momentum * velocity).detach().requires_grad_(True)
                e = self.energy(look, cond)
                (g,) = torch.autograd.grad(e.sum(), look)
                active &= g.flatten(1).norm(dim=1) >= c.grad_tol
                if not active.any():
                    break
                mask = active.view(-1, 1, 1).float()
                velocity = mask * (c.momentum * velocity - self._step(e.detach()) * g) + (1 - mask) * velocity
                a = (a + mask * velocity).detach()
                steps += active.long()
            final = self.energy(a, cond).detach()
        return a, steps, final

    @torch.no_grad()
    def sample(self, obs: dict[str, torch.Tensor], noise: torch.Tensor, steps: int) -> torch.Tensor:
        """An action chunk in environment units; ``steps`` caps the descent (network evaluations)."""
        cond = self.encode(obs)
        a, taken, energy = self.descend(noise, cond, steps)
        self.last_stats = {"descent_steps": taken, "energy": energy}
        return self.normalizer.unnormalize("action", a.clamp(-1.5, 1.5))
