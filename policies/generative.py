"""The four policy families as training losses and samplers over normalized action chunks.

Conventions (from the official code, landscape doc section 4). Actions and low-dim observations
are scaled per channel to [-1, 1] ("limits" normalization). ``net(x, times, cond)`` is the
conditional UNet.

- ``dp3``: DDPM-trained with 100 steps and the squared-cosine schedule, the network predicts the
  clean sample x0; inference is DDIM (eta = 0) with 10 steps by default.
- ``flowpolicy``: consistency flow matching (Yang et al.), noise at t = 0 and data at t = 1; the
  velocity field is trained so that, on each of ``segments`` time segments, the straight-line
  endpoint predicted from t and from t + delta agree (plus alpha times a velocity-consistency
  term); one inference step: a = z + v(z, 0).
- ``mp1`` / ``dm1``: MeanFlow (Geng et al.), z_t = (1 - t) x + t e, v = e - x; the network predicts
  the average velocity u(z, t, r) over [r, t]; the target u_tgt = v_hat - (t - r) du/dt uses the
  total derivative along (v_hat, 1, 0), computed with a Jacobian-vector product. MP1 mixes the
  target with w = 2 ("CFG": v_hat = w v + (1 - w) u(z, t, t)), weights the squared error adaptively
  by (err + 1e-3)^-0.5 and adds 0.5 x a dispersive loss on UNet down-block features. DM1 uses plain
  MSE plus a dispersive regularizer on several embeddings, in one of four variants. Inference:
  a = z - (t - r) u(z, t, r) over ``steps`` equal intervals from t = 1 to 0 (one step by default).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch.func import jvp

with warnings.catch_warnings():  # torch's JVP decompositions still call the deprecated torch.jit.script
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import torch._decomp.decompositions_for_jvp  # noqa: F401
    except ImportError:  # other torch versions register them elsewhere
        pass

FAMILIES = ("dp3", "flowpolicy", "mp1", "dm1")
DISPERSIVE_VARIANTS = ("infonce-l2", "cosine", "hinge", "covariance")


# ---------------------------------------------------------------- DDIM (dp3)

def cosine_alphas_cumprod(n_steps: int, s: float = 0.008) -> torch.Tensor:
    """Squared-cosine schedule (Nichol & Dhariwal), betas clipped at 0.999, as alpha-bar per step."""
    x = torch.linspace(0, n_steps, n_steps + 1, dtype=torch.float64)
    ac = torch.cos(((x / n_steps) + s) / (1 + s) * math.pi / 2) ** 2
    betas = torch.clip(1 - ac[1:] / ac[:-1], 0, 0.999)
    return torch.cumprod(1 - betas, dim=0).float()


def ddim_timesteps(train_steps: int, inference_steps: int) -> list[int]:
    """Evenly spaced training timesteps, descending (the "leading" spacing)."""
    ratio = train_steps // inference_steps
    return [i * ratio for i in range(inference_steps)][::-1]


def ddpm_sample_loss(net, x0: torch.Tensor, cond: torch.Tensor, alphas_cumprod: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise x0 to a random timestep and regress the clean sample."""
    b = x0.shape[0]
    t = torch.randint(0, len(alphas_cumprod), (b,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    ab = alphas_cumprod[t].view(b, 1, 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return F.mse_loss(net(xt, [t.float()], cond), x0)


@torch.no_grad()
def ddim_sample(net, noise: torch.Tensor, cond: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from ``noise`` with a sample-predicting network."""
    x = noise
    ts = ddim_timesteps(len(alphas_cumprod), steps)
    for i, t in enumerate(ts):
        ab = alphas_cumprod[t]
        ab_prev = alphas_cumprod[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
        x0 = net(x, [torch.full((x.shape[0],), float(t))], cond)
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
    return x


# ---------------------------------------------------------------- consistency flow matching (flowpolicy)

def consistency_fm_loss(net, x1: torch.Tensor, cond: torch.Tensor, *, segments: int = 2, delta: float = 1e-2,
                        alpha: float = 1e-5, target_net=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Consistency-FM with ``segments`` segments: noise x0 at t = 0, data x1 at t = 1.

    In the segment [s_k, s_k+1] holding t, f(x_t, t) = x_t + (s_k+1 - t) v(x_t, t) is the predicted
    segment end. It must match the same prediction from the later point of the same straight path,
    r = min(t + delta, s_k+1), made by ``target_net`` (the EMA network; default: the network itself)
    without gradient, and the velocities must agree (weight ``alpha``). At r = s_k+1 the target is
    the path point itself, which anchors the chain of segments to the data."""
    b = x1.shape[0]
    target_net = net if target_net is None else target_net
    x0 = torch.randn(x1.shape, generator=generator).to(x1.device)  # generated on the CPU: seeded the same anywhere
    t = (torch.rand(b, generator=generator) * (1 - delta)).to(x1.device)
    seg_end = torch.clamp((torch.floor(t * segments) + 1) / segments, max=1.0)
    r = torch.minimum(t + delta, seg_end)
    view = lambda v: v.view(b, 1, 1)  # noqa: E731
    xt = view(1 - t) * x0 + view(t) * x1
    xr = view(1 - r) * x0 + view(r) * x1
    vt = net(xt, [t], cond)
    with torch.no_grad():
        vr = target_net(xr, [r], cond)
    ft = xt + view(seg_end - t) * vt
    fr = xr + view(seg_end - r) * vr
    return F.mse_loss(ft, fr) + alpha * F.mse_loss(vt, vr)


@torch.no_grad()
def flow_sample(net, noise: torch.Tensor, cond: torch.Tensor, steps: int = 1) -> torch.Tensor:
    """Euler steps of the learned velocity from t = 0 (noise) to t = 1 (data)."""
    x = noise
    for i in range(steps):
        t = torch.full((x.shape[0],), i / steps)
        x = x + net(x, [t], cond) / steps
    return x


# ---------------------------------------------------------------- MeanFlow (mp1, dm1)

def sample_t_r(b: int, generator: torch.Generator | None = None, mean: float = -0.4, std: float = 1.0,
               equal_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, r) with t >= r, both from sigmoid(N(mean, std)); r = t for ``equal_fraction`` of the batch."""
    a = torch.sigmoid(torch.randn(b, generator=generator) * std + mean)
    c = torch.sigmoid(torch.randn(b, generator=generator) * std + mean)
    t, r = torch.maximum(a, c), torch.minimum(a, c)
    equal = torch.rand(b, generator=generator) < equal_fraction
    return t, torch.where(equal, t, r)


def meanflow_target(net, z: torch.Tensor, t: torch.Tensor, r: torch.Tensor, cond: torch.Tensor,
                    v_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u(z, t, r), u_tgt) with u_tgt = v_hat - (t - r) d/dt u along (dz, dt, dr) = (v_hat, 1, 0)."""
    fn = lambda z_, t_, r_: net(z_, [t_, r_], cond)  # noqa: E731
    u, dudt = jvp(fn, (z, t, r), (v_hat, torch.ones_like(t), torch.zeros_like(r)))
    return u, (v_hat - (t - r).view(-1, 1, 1) * dudt).detach()


def meanflow_loss(net, x: torch.Tensor, cond: torch.Tensor, *, cfg_w: float = 1.0, adaptive: bool = False,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """MeanFlow regression on data x; with cfg_w != 1 the instantaneous velocity is mixed with the
    model's own u(z, t, t) (MP1's w = 2); ``adaptive`` weights each sample by (err + 1e-3)^-0.5."""
    b = x.shape[0]
    e = torch.randn(x.shape, generator=generator).to(x.device)
    t, r = (v.to(x.device) for v in sample_t_r(b, generator))
    z = (1 - t).view(b, 1, 1) * x + t.view(b, 1, 1) * e
    v = e - x
    if cfg_w != 1.0:
        with torch.no_grad():
            v_hat = cfg_w * v + (1 - cfg_w) * net(z, [t, t], cond)
    else:
        v_hat = v
    u, target = meanflow_target(net, z, t, r, cond, v_hat)
    err = ((u - target) ** 2).flatten(1).sum(-1)
    if adaptive:
        return (err / (err.detach() + 1e-3) ** 0.5).mean()
    return err.mean() / x[0].numel()


@torch.no_grad()
def meanflow_sample(net, noise: torch.Tensor, cond: torch.Tensor, steps: int = 1) -> torch.Tensor:
    """From t = 1 (noise) to 0 in ``steps`` jumps of the average velocity."""
    z = noise
    b = z.shape[0]
    for i in range(steps):
        t, r = 1 - i / steps, 1 - (i + 1) / steps
        z = z - (t - r) * net(z, [torch.full((b,), t), torch.full((b,), r)], cond)
    return z


# ---------------------------------------------------------------- dispersive losses

def dispersive_loss(features: torch.Tensor, variant: str = "infonce-l2", tau: float = 0.5,
                    margin: float = 1.0) -> torch.Tensor:
    """A repulsion among a batch's features (B, D) with no positive pairs (Wang & He, 2025).

    infonce-l2: log mean exp(-||zi - zj||^2 / tau); cosine: the same with cosine similarity;
    hinge: mean max(0, margin - ||zi - zj||)^2; covariance: squared off-diagonal covariance of the
    normalized features. Lower means more spread out."""
    z = features.flatten(1)
    b = z.shape[0]
    if variant == "infonce-l2":
        d = torch.cdist(z, z).pow(2) / z.shape[1]
        return torch.logsumexp(-d.flatten() / tau, dim=0) - math.log(b * b)
    if variant == "cosine":
        zn = F.normalize(z, dim=1)
        return torch.logsumexp((zn @ zn.T).flatten() / tau, dim=0) - math.log(b * b)
    if variant == "hinge":
        d = torch.cdist(z, z) / math.sqrt(z.shape[1])
        off = ~torch.eye(b, dtype=torch.bool)
        return F.relu(margin - d[off]).pow(2).mean()
    if variant == "covariance":
        zn = (z - z.mean(0)) / (z.std(0) + 1e-5)
        cov = zn.T @ zn / max(1, b - 1)
        off = ~torch.eye(cov.shape[0], dtype=torch.bool)
        return cov[off].pow(2).mean()
    raise ValueError(f"unknown dispersive variant {variant!r}; accepted: {', '.join(DISPERSIVE_VARIANTS)}")
