"""EBT-Policy: an energy-based transformer over action chunks; acting is descending the energy.

A small transformer reads tokens for the (normalized) action chunk, one token for the encoded
observations and a read-out token, and returns a scalar energy E(a | o). Acting starts from noise
and takes plain gradient steps on the chunk, of size alpha * exp(E) (alpha learned; far from a good
chunk the energy is high and the steps long), until the chunk's gradient norm falls under
``grad_tol`` or a step cap - as the EBT-Policy reference does.

Training is the reference's (Energy-Based Transformers, Gladstone et al.; EBT-Policy, Davies et
al.): from noise, a random number of descent steps (``train_descent_steps`` plus 0..
``extra_descent_steps``), each at a step size jittered uniformly in [alpha / s, alpha * s]
(``step_size_jitter`` = s), each with a little Langevin noise, the chunk *detached* between steps
(the gradient of E is differentiated within a step, never through the chain); the loss is the MSE
to the demonstrated chunk averaged over the steps. Every step is therefore trained to move any
chunk it meets towards the demonstration, so inference may run more steps than training did and
stop when the gradient vanishes. (The earlier scheme - three fixed steps differentiated through
the chain, loss on the last iterate only, then Nesterov descent at inference - trained a landscape
good for exactly three steps and acted on a different one; ``scheme="unrolled"`` and
``descent="nesterov"`` keep it reproducible, see ``EnergyModel.load_state_dict`` for legacy files.)

The number of descent steps, whether the gradient criterion stopped the descent, and the final
energy of every chunk are kept (``last_stats``): the energy is recorded with each episode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from evalsuite_policies.nets import ObservationEncoder

SCHEMES = ("detached", "unrolled")
DESCENTS = ("gd", "nesterov")
FORMAT_VERSION = 2  # stored with the weights; files without it are legacy (scheme "unrolled")
LEGACY = {"scheme": "unrolled", "extra_descent_steps": 0, "step_size_jitter": 1.0, "loss_over_steps": "last",
          "descent": "gd"}


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
    train_descent_steps: int = 2  # fewest descent steps of a training example
    max_descent_steps: int = 20  # informational: the cap is the policy's `steps` (default 20)
    # inference stops a chunk once its gradient's L2 norm is below this; 2e-3: where plain steps on the
    # shipped Meta-World checkpoints stop reducing the error (they then circle the minimum)
    grad_tol: float = 2e-3
    momentum: float = 0.9  # descent="nesterov" only
    langevin_std: float = 0.01  # training only, as in the reference
    scheme: str = "detached"  # "detached" (reference) | "unrolled" (legacy: graph through the chain)
    extra_descent_steps: int = 2  # training steps = train_descent_steps + uniform{0..extra}
    step_size_jitter: float = 2.0  # training step size uniform in [alpha/s, alpha*s]; 1: fixed
    loss_over_steps: str = "mean"  # "mean" over every step's iterate (reference) | "last"
    descent: str = "gd"  # inference: "gd" (plain steps, as trained) | "nesterov" (momentum; legacy option)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from evalsuite_policies.chunked import check_chunking

        check_chunking(self)
        for name, value, accepted in (("scheme", self.scheme, SCHEMES), ("descent", self.descent, DESCENTS),
                                      ("loss_over_steps", self.loss_over_steps, ("mean", "last"))):
            if value not in accepted:
                raise ValueError(f"ebt {name}={value!r}; accepted: {', '.join(accepted)}")
        if self.step_size_jitter < 1 or self.train_descent_steps < 1 or self.extra_descent_steps < 0:
            raise ValueError("ebt needs step_size_jitter >= 1, train_descent_steps >= 1, extra_descent_steps >= 0")

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
        self.log_step = nn.Parameter(torch.tensor(0.0))  # alpha = exp(log_step); step = alpha * exp(E)
        self.register_buffer("format_version", torch.tensor(FORMAT_VERSION))
        self.last_stats: dict[str, torch.Tensor] | None = None

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Weights saved before ``format_version`` existed were trained by the unrolled scheme: their
        config (which then had no scheme fields) is switched to it, so they act by the plain descent
        of ``train_descent_steps`` steps they were trained for (``descent="nesterov"`` reproduces
        their former inference)."""
        if "format_version" not in state_dict:
            for key, value in LEGACY.items():
                setattr(self.config, key, value)
            state_dict = {**state_dict, "format_version": torch.tensor(1)}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

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

    def _jitter(self, batch: int, generator: torch.Generator | None) -> torch.Tensor:
        """Per-chunk factor on the step size, uniform in [1/s, s] (the reference's randomised alpha)."""
        s = self.config.step_size_jitter
        return (1 / s + torch.rand((batch, 1, 1), generator=generator) * (s - 1 / s))

    def loss(self, obs, actions: torch.Tensor, generator: torch.Generator | None = None, target=None) -> torch.Tensor:
        """Descent from noise as the reference trains it (see the module docstring); ``target`` unused."""
        c = self.config
        cond = self.encode(obs)
        x = self.normalizer.normalize("action", actions)
        noise = lambda: torch.randn(x.shape, generator=generator).to(x.device)  # noqa: E731
        a = noise()
        # the math attention kernel: the fused CPU kernel has no double backward
        with sdpa_kernel([SDPBackend.MATH]):
            if c.scheme == "unrolled":
                a.requires_grad_(True)
                for _ in range(c.train_descent_steps):
                    e = self.energy(a, cond)
                    (g,) = torch.autograd.grad(e.sum(), a, create_graph=True)
                    a = a - self._step(e) * g + c.langevin_std * noise()
                return ((a - x) ** 2).mean()
            n = c.train_descent_steps + int(torch.randint(0, c.extra_descent_steps + 1, (1,), generator=generator))
            losses = []
            for _ in range(n):
                a = a.detach().requires_grad_(True)
                a_in = a + c.langevin_std * noise()
                e = self.energy(a_in, cond)
                (g,) = torch.autograd.grad(e.sum(), a, create_graph=True)
                a = a_in - self._jitter(x.shape[0], generator).to(x.device) * self._step(e) * g
                losses.append(((a - x) ** 2).mean())
        return torch.stack(losses).mean() if c.loss_over_steps == "mean" else losses[-1]

    def descend(self, a: torch.Tensor, cond: torch.Tensor, max_steps: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Descent per row until its gradient norm < grad_tol or ``max_steps``; returns (chunk, steps
        taken per row, final energy per row, whether the gradient criterion stopped the row before
        the cap).
        Plain steps at the trained step size (``descent="gd"``) or Nesterov momentum."""
        c = self.config
        nesterov = c.descent == "nesterov"
        velocity = torch.zeros_like(a)
        active = torch.ones(a.shape[0], dtype=torch.bool, device=a.device)
        steps = torch.zeros(a.shape[0], dtype=torch.long, device=a.device)
        with torch.enable_grad():
            for _ in range(max_steps):
                look = (a + c.momentum * velocity if nesterov else a).detach().requires_grad_(True)
                e = self.energy(look, cond)
                (g,) = torch.autograd.grad(e.sum(), look)
                active &= g.flatten(1).norm(dim=1) >= c.grad_tol
                if not active.any():
                    break
                mask = active.view(-1, 1, 1).float()
                if nesterov:
                    velocity = mask * (c.momentum * velocity - self._step(e.detach()) * g) + (1 - mask) * velocity
                    a = (a + mask * velocity).detach()
                else:
                    a = (a - mask * self._step(e.detach()) * g).detach()
                steps += active.long()
            final = self.energy(a, cond).detach()
        return a, steps, final, ~active

    def step_cap(self, steps: int) -> int:
        """The descent's step cap: the policy's ``steps``; a model trained by the unrolled scheme
        takes plain steps only as many as it was trained for (more move it off its landscape)."""
        c = self.config
        if c.scheme == "unrolled" and c.descent == "gd":
            return min(steps, c.train_descent_steps)
        return steps

    @torch.no_grad()
    def sample(self, obs: dict[str, torch.Tensor], noise: torch.Tensor, steps: int) -> torch.Tensor:
        """An action chunk in environment units; ``steps`` caps the descent (network evaluations)."""
        cond = self.encode(obs)
        a, taken, energy, stopped = self.descend(noise, cond, self.step_cap(steps))
        self.last_stats = {"descent_steps": taken, "energy": energy, "stopped_by_gradient": stopped}
        return self.normalizer.unnormalize("action", a.clamp(-1.5, 1.5))
