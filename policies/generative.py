"""The four policy families as training losses and samplers over normalized action chunks.

Conventions (from the official code, landscape doc section 4). Actions and low-dim observations
are scaled per channel to [-1, 1] ("limits" normalization). ``net(x, times, cond)`` is the
conditional UNet.

- ``dp3``: DDPM-trained with 100 steps and the squared-cosine schedule, the network predicts the
  clean sample x0; inference is DDIM (eta = 0) with 10 steps, x0 clipped to [-1, 1] at every step
  (``clip_sample: True``) and the update of diffusers 0.11.1, the version DP3 pins (option: the
  update of diffusers >= 0.15).
- ``flowpolicy``: consistency flow matching (Yang et al.), noise at t = 0 and data at t = 1, t drawn
  from [eps, 1] (eps = 0.01); the velocity field is trained so that, on each of ``segments`` time
  segments, the straight-line endpoint predicted from t and from r = min(t + delta, 1) agree, both
  predicted by the online network, the data anchoring only r = 1 (plus alpha times a
  velocity-consistency term masked near segment ends); the UNet embeds 99 t. One inference step:
  a = z + v(z, eps), not clamped.
- ``mp1`` / ``dm1``: MeanFlow (Geng et al.), z_t = (1 - t) x + t e, v = e - x; the network predicts
  the average velocity u(z, t, r) over [r, t] (t and r embeddings summed); the target
  u_tgt = v_hat - (t - r) du/dt uses the total derivative along (v_hat, 1, 0), computed with a
  Jacobian-vector product. MP1 mixes the target with w = 2 ("CFG": v_hat = w v + (1 - w) u(z, t, t)),
  weights each sample's mean squared error adaptively by (err + 1e-3)^-0.5 and adds 0.5 x a
  scale-free dispersive loss on the flattened features of the UNet's down blocks but the last. DM1
  uses plain MSE plus 0.5 x a dispersive regularizer (one of four variants, tau 0.5) on the time, r
  and observation embeddings at uniform t, r. Inference: a = z - (t - r) u(z, t, r) over ``steps``
  equal intervals from t = 1 to 0 (one step by default).
"""

from __future__ import annotations

import contextlib
import math
import warnings

import torch
import torch.nn.functional as F
from torch.func import jvp

with warnings.catch_warnings():  # torch's JVP decompositions still call the deprecated torch.jit.script
    warnings.simplefilter("ignore", DeprecationWarning)
    with contextlib.suppress(ImportError):  # other torch versions register them elsewhere
        import torch._decomp.decompositions_for_jvp  # noqa: F401

FAMILIES = ("dp3", "flowpolicy", "mp1", "dm1")
DISPERSIVE_VARIANTS = ("infonce-l2", "cosine", "hinge", "covariance")


# ---------------------------------------------------------------- DDIM (dp3)

DDIM_UPDATES = ("diffusers-0.11.1", "diffusers-0.15")


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


def ddim_step(x: torch.Tensor, x0_pred: torch.Tensor, ab: torch.Tensor, ab_prev: torch.Tensor, *,
              clip_sample: bool = True, update: str = "diffusers-0.11.1") -> torch.Tensor:
    """One deterministic DDIM step from x at alpha-bar ``ab`` to ``ab_prev`` for a sample-predicting net.

    The clean part always uses x0 clipped to [-1, 1] (with ``clip_sample``). The noise direction
    differs between diffusers versions: 0.11.1 (the version DP3 pins) adds the raw network output
    itself, diffusers >= 0.15 the noise implied by the unclipped x0."""
    x0 = x0_pred.clamp(-1, 1) if clip_sample else x0_pred
    if update == "diffusers-0.11.1":
        direction = x0_pred
    elif update == "diffusers-0.15":
        direction = (x - ab.sqrt() * x0_pred) / (1 - ab).sqrt()
    else:
        raise ValueError(f"unknown DDIM update {update!r}; accepted: {', '.join(DDIM_UPDATES)}")
    return ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * direction


@torch.no_grad()
def ddim_sample(net, noise: torch.Tensor, cond: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int, *,
                clip_sample: bool = True, update: str = "diffusers-0.11.1") -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from ``noise`` with a sample-predicting network; the last step
    goes to alpha-bar 1 (``set_alpha_to_one``), so the result is the last clipped x0."""
    x = noise
    ts = ddim_timesteps(len(alphas_cumprod), steps)
    for i, t in enumerate(ts):
        ab = alphas_cumprod[t]
        ab_prev = alphas_cumprod[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
        x0 = net(x, [torch.full((x.shape[0],), float(t))], cond)
        x = ddim_step(x, x0, ab, ab_prev, clip_sample=clip_sample, update=update)
    return x


# ---------------------------------------------------------------- consistency flow matching (flowpolicy)

def consistency_fm_loss(net, x1: torch.Tensor, cond: torch.Tensor, *, segments: int = 2, delta: float = 1e-2,
                        alpha: float = 1e-5, eps: float = 1e-2, target_net=None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Consistency-FM as FlowPolicy trains it: noise x0 at t = 0, data x1 at t = 1, t ~ U[eps, 1].

    With s the end of the segment holding t, f(x_t, t) = x_t + (s - t) v(x_t, t) is the predicted
    segment end. It must match the same prediction made from r = min(t + delta, 1) on the same
    straight path (also with s, even when r has crossed it); only r = 1 is replaced by the path
    point, which anchors the chain of segments to the data. The velocities at t and r must agree
    (weight ``alpha``) except within 1.01 delta of the segment end. Both predictions come from the
    online network with gradient (official); ``target_net`` (e.g. the EMA) makes the r side a
    no-gradient target instead (an option, as in consistency models)."""
    b = x1.shape[0]
    x0 = torch.randn(x1.shape, generator=generator).to(x1.device)  # generated on the CPU: seeded the same anywhere
    t = (torch.rand(b, generator=generator) * (1 - eps) + eps).to(x1.device)
    r = torch.clamp(t + delta, max=1.0)
    grid = torch.linspace(0, 1, segments + 1, device=x1.device)
    seg_end = grid[torch.searchsorted(grid, t, side="left").clamp(min=1)]
    view = lambda v: v.view(b, 1, 1)  # noqa: E731
    xt = view(t) * x1 + view(1 - t) * x0
    xr = view(r) * x1 + view(1 - r) * x0
    vt = net(xt, [t], cond)
    if target_net is None:
        vr = net(xr, [r], cond)
    else:
        with torch.no_grad():
            vr = target_net(xr, [r], cond)
    vr = torch.nan_to_num(vr)
    ft = xt + view(seg_end - t) * vt
    x_end = view(seg_end) * x1 + view(1 - seg_end) * x0
    fr = torch.where(view(r < 1), xr + view(seg_end - r) * vr, x_end)
    per_sample = lambda e: e.pow(2).flatten(1).mean(1)  # noqa: E731
    keep_v = ((t < 1) & (seg_end - t > 1.01 * delta)).float()
    return (per_sample(ft - fr) + alpha * keep_v * per_sample(vt - vr)).mean()


@torch.no_grad()
def flow_sample(net, noise: torch.Tensor, cond: torch.Tensor, steps: int = 1, eps: float = 1e-2) -> torch.Tensor:
    """Euler steps of the learned velocity from noise to data, at times eps + i (1 - eps) / steps
    with step 1 / steps (FlowPolicy's sampler; eps = 0 is the plain Euler grid from t = 0)."""
    x = noise
    for i in range(steps):
        t = torch.full((x.shape[0],), i / steps * (1 - eps) + eps)
        x = x + net(x, [t], cond) / steps
    return x


# ---------------------------------------------------------------- MeanFlow (mp1, dm1)

def sample_t_r(b: int, generator: torch.Generator | None = None, mean: float = -0.4, std: float = 1.0,
               equal_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, r) with t >= r, both from sigmoid(N(mean, std)); r = t for int(equal_fraction b) random
    samples of the batch (an exact count, as MP1 and DM1 draw it)."""
    a = torch.sigmoid(torch.randn(b, generator=generator) * std + mean)
    c = torch.sigmoid(torch.randn(b, generator=generator) * std + mean)
    t, r = torch.maximum(a, c), torch.minimum(a, c)
    equal = torch.zeros(b, dtype=torch.bool)
    equal[torch.randperm(b, generator=generator)[:int(equal_fraction * b)]] = True
    return t, torch.where(equal, t, r)


def meanflow_target(net, z: torch.Tensor, t: torch.Tensor, r: torch.Tensor, cond: torch.Tensor,
                    v_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u(z, t, r), u_tgt) with u_tgt = v_hat - (t - r) d/dt u along (dz, dt, dr) = (v_hat, 1, 0)."""
    fn = lambda z_, t_, r_: net(z_, [t_, r_], cond)  # noqa: E731
    u, dudt = jvp(fn, (z, t, r), (v_hat, torch.ones_like(t), torch.zeros_like(r)))
    return u, (v_hat - (t - r).view(-1, 1, 1) * dudt).detach()


def meanflow_loss(net, x: torch.Tensor, cond: torch.Tensor, *, cfg_w: float = 1.0, adaptive: bool = False,
                  generator: torch.Generator | None = None, return_features: bool = False):
    """MeanFlow regression on data x; with cfg_w != 1 the instantaneous velocity is mixed with the
    model's own u(z, t, t) (MP1's w = 2); ``adaptive`` weights each sample's mean squared error by
    (err + 1e-3)^-0.5 (MP1's adaptive L2). ``return_features``: also the UNet's down-block features
    of the same forward pass (MP1's dispersive loss uses them)."""
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
    fn = lambda z_, t_, r_: net(z_, [t_, r_], cond, return_features=True)  # noqa: E731
    u, dudt, features = jvp(fn, (z, t, r), (v_hat, torch.ones_like(t), torch.zeros_like(r)), has_aux=True)
    target = (v_hat - (t - r).view(-1, 1, 1) * dudt).detach()
    err = ((u - target) ** 2).flatten(1).mean(-1)
    loss = (err / (err.detach() + 1e-3) ** 0.5).mean() if adaptive else err.mean()
    return (loss, features) if return_features else loss


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

def mp1_dispersive_loss(features: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """MP1's dispersive loss: log mean exp(-d_ij / tau) over all pairs of the flattened features,
    with d the squared distances divided by the batch's largest one - so it does not depend on the
    features' scale, and it ranges over (-1, 0] (0 when all collapse)."""
    z = features.flatten(1)
    d = torch.cdist(z, z).pow(2)
    d = d / d.max().clamp_min(1e-12)
    return torch.log(torch.exp(-d / tau).mean())


def dispersive_loss(features: torch.Tensor, variant: str = "infonce-l2", tau: float = 0.5,
                    margin: float = 1.0) -> torch.Tensor:
    """DM1's repulsion among a batch's features (B, ...) with no positive pairs (after Wang & He).

    As dm1-release computes them: infonce-l2: -mean_i logsumexp_j min(||zi - zj|| / tau, 10), the
    distance not squared and the self pair counted at the cap 10; cosine: the same with
    -cos(zi, zj) / tau; hinge: mean over pairs i != j of max(0, margin - ||zi - zj||), not squared;
    covariance: mean squared off-diagonal covariance plus mean max(0, 1 - variance) of the raw
    (centred, not standardised) features, so it also spreads them rather than only decorrelating.
    Lower means more spread out."""
    z = features.flatten(1)
    b = z.shape[0]
    self_pair = torch.eye(b, dtype=torch.bool, device=z.device)
    if variant in ("infonce-l2", "cosine"):
        if variant == "infonce-l2":
            score = torch.cdist(z, z) / tau
        else:
            zn = F.normalize(z, dim=1, eps=1e-8)
            score = -(zn @ zn.T) / tau
        score = score.clamp(-10, 10).masked_fill(self_pair, 10.0)
        return -torch.logsumexp(score, dim=1).mean()
    if variant == "hinge":
        return F.relu(margin - torch.cdist(z, z)[~self_pair]).mean()
    if variant == "covariance":
        zc = z - z.mean(0, keepdim=True)
        cov = zc.T @ zc / max(1, b - 1)
        off = ~torch.eye(cov.shape[0], dtype=torch.bool, device=z.device)
        return cov[off].pow(2).mean() + F.relu(1 - torch.diagonal(cov)).mean()
    raise ValueError(f"unknown dispersive variant {variant!r}; accepted: {', '.join(DISPERSIVE_VARIANTS)}")
