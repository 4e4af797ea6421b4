"""A small behavior-cloning MLP in torch: observation -> action, trained on expert demonstrations.

Small on purpose: it is here to exercise batched torch inference through the harness (one forward
pass per step for all parallel episodes). Checkpoints are a folder with ``model.safetensors``
(weights and the observation normalizer) and ``config.json`` - loadable without executing code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from evalsuite.errors import UsageError
from evalsuite.interfaces import PolicyRequirements
from evalsuite.specs import SuiteSpec, TaskSpec
from evalsuite_policies._util import config_fingerprint

WEIGHTS, CONFIG = "model.safetensors", "config.json"


@dataclass(frozen=True)
class MLPConfig:
    obs_key: str
    obs_dim: int
    action_dim: int
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    task: str = ""


class MLP(nn.Module):
    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        layers, width = [], cfg.obs_dim
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers += [nn.Linear(width, cfg.action_dim), nn.Tanh()]  # actions live in [-1, 1]
        self.net = nn.Sequential(*layers)
        self.register_buffer("obs_mean", torch.zeros(cfg.obs_dim))
        self.register_buffer("obs_std", torch.ones(cfg.obs_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net((obs - self.obs_mean) / self.obs_std)


def train_bc(obs: np.ndarray, actions: np.ndarray, cfg: MLPConfig, *, seed: int, epochs: int = 30,
             batch_size: int = 256, lr: float = 1e-3) -> tuple[MLP, list[float]]:
    """Fit the MLP by MSE on (obs (N, obs_dim), actions (N, action_dim)); returns model and loss curve."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = MLP(cfg)
    x = torch.as_tensor(obs, dtype=torch.float32)
    y = torch.as_tensor(np.clip(actions, -1, 1), dtype=torch.float32)
    model.obs_mean.copy_(x.mean(0))
    model.obs_std.copy_(x.std(0).clamp_min(1e-3))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
    return model.eval(), losses


def save(model: MLP, cfg: MLPConfig, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    from evalsuite import fsio

    with fsio.atomic_path(out_dir / WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    fsio.write_text(out_dir / CONFIG, json.dumps(asdict(cfg), indent=1) + "\n")
    return out_dir


class MLPBCPolicy:
    def __init__(self, path: Path) -> None:
        path = Path(path)
        if not (path / WEIGHTS).exists() or not (path / CONFIG).exists():
            raise UsageError(f"mlp-bc checkpoint {str(path)!r} needs {WEIGHTS} and {CONFIG} in that folder")
        try:
            self.cfg = MLPConfig(**json.loads((path / CONFIG).read_text(encoding="utf-8")))
            self.model = MLP(self.cfg)
        except Exception as exc:  # not JSON, unknown fields, values no MLP can be built from
            raise UsageError(f"mlp-bc checkpoint {str(path)!r}: {CONFIG} is not an mlp-bc config "
                             f"({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]})") from None
        try:
            self.model.load_state_dict(load_file(str(path / WEIGHTS)))
        except Exception as exc:  # empty, truncated or other weights
            raise UsageError(f"mlp-bc checkpoint {str(path)!r}: {WEIGHTS} does not hold the weights of its {CONFIG} "
                             f"({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]})") from None
        self.model.eval()
        self._fingerprint = config_fingerprint(asdict(self.cfg), (path / WEIGHTS).read_bytes())
        self.requirements = PolicyRequirements(obs_shapes={self.cfg.obs_key: (self.cfg.obs_dim,)},
                                               action_dim=self.cfg.action_dim)

    def reset(self, seed: int, slot: int) -> None:
        """Deterministic and stateless: nothing to reset."""

    @torch.inference_mode()
    def act(self, observations: dict[str, np.ndarray], slots: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(np.asarray(observations[self.cfg.obs_key]), dtype=torch.float32)
        return self.model(obs).numpy()

    def fingerprint(self) -> str:
        return self._fingerprint


def load_policy(task: TaskSpec, suite: SuiteSpec, path: str = "") -> MLPBCPolicy:
    if not path:
        raise UsageError("mlp-bc needs a checkpoint folder: mlp-bc:path/to/checkpoint")
    return MLPBCPolicy(Path(path))
