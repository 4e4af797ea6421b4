"""GPC: test-time composition of generative policies (no training).

At every step of one shared sampling schedule the members' predictions are mixed with convex
weights and one update is taken, each member keeping the conventions of its own sampler (as its
config records them; legacy checkpoints read with ``LEGACY_CONVENTIONS``), so that weight 1 on a
member is that member alone. Members of different kinds meet in the *velocity view*: every member
gives the average velocity of the MeanFlow convention (z_t = (1 - t) x + t e, noise at t = 1) over
the step [r, t]:

- mp1 / dm1: their own u(z, t, r);
- flowpolicy (noise at tau = 0): -v(z, tau), its Euler step, at its sampler's time
  tau = eps + (1 - t)(1 - eps) (``flow_eps``; its steps are 1 / N long while tau advances
  (1 - eps) / N, as FlowPolicy samples);
- dp3 / lbm (DDPM, sample prediction): the state z stands for the DDPM state of equal
  signal-to-noise ratio, x = z / sqrt((1 - t)^2 + t^2) at alpha-bar (1 - t)^2 / ((1 - t)^2 + t^2),
  evaluated at the (fractional) DDPM timestep of that ratio. DDPM members that share one sampler
  (noise schedule, ``clip_sample``, ``ddim_update``) mix their x0 predictions - at one state and
  with weights summing to 1 this is the same as mixing their noise predictions, i.e. their scores,
  which is what the official GPC mixes (the raw epsilon outputs of its DP and DP3, then one step
  of the scheduler) - and take one DDIM step with their conventions (``generative.ddim_step``: x0
  clipped after the mix, the DDIM update rule); that step, as an average velocity, enters the mix
  with their total weight. On DDIM's own times this is exactly their DDIM.

The schedule: ``ddim`` (the DDIM times of the DDPM members - dp3, lbm - whose noise schedules must
agree) or ``uniform`` (t = 1, 1 - 1/N, ..., 0); ``auto`` takes ``ddim`` when a DDPM member is present.
``mix=native`` is the paper's GPC, mixing the members' raw predictions (noise, sample or velocity):
it requires one prediction type and one sampler, and is refused otherwise; mixing x0 at equal x_t
is the same arithmetic as mixing eps, so it runs through the same update. The sampled chunk is
clamped as the weighted members' samplers clamp theirs (``output_clamp``; the loosest of them, none
when one of them does not clamp).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from evalsuite.errors import UsageError
from evalsuite.interfaces import PolicyRequirements

DDPM = ("dp3", "lbm")  # DDPM-trained, sample-predicting: the same schedule and velocity view
PREDICTION = {"dp3": "sample (x0) under DDPM noise", "lbm": "sample (x0) under DDPM noise", "flowpolicy": "velocity",
              "mp1": "average velocity", "dm1": "average velocity"}


def sampler(model) -> tuple[bool, str, float | None]:
    """A member's sampler conventions: (clip_sample, ddim_update, output_clamp); LBM's are its
    module's (``LanguageDiffusionModel.sample``)."""
    c = model.config
    if c.family == "lbm":
        from evalsuite_policies import lbm

        return lbm.SAMPLER_CLIP, lbm.SAMPLER_UPDATE, lbm.OUTPUT_CLAMP
    return c.clip_sample, c.ddim_update, c.output_clamp


def member_velocity(model, z: torch.Tensor, t: float, r: float, cond: torch.Tensor) -> torch.Tensor:
    """A flow member's average velocity over [r, t] at state z (MeanFlow convention, see module doc)."""
    b = z.shape[0]
    c = model.config
    if c.family in ("mp1", "dm1"):
        return model.net(z, [torch.full((b,), t), torch.full((b,), r)], cond)
    if c.family == "flowpolicy":
        return -model.net(z, [torch.full((b,), c.flow_eps + (1.0 - t) * (1.0 - c.flow_eps))], cond)
    raise ValueError(f"{c.family} is a DDPM member: see ddpm_velocity")


def flow_abar(t: float) -> float:
    """The alpha-bar of flow time t: equal signal-to-noise ratio ((1 - t) / t)^2 (1 at t = 0, 0 at t = 1)."""
    return (1 - t) ** 2 / ((1 - t) ** 2 + t ** 2)


def flow_scale(t: float) -> float:
    """z = flow_scale(t) x for the DDPM state x of equal signal-to-noise ratio: 1 / (sqrt(abar) + sqrt(1 - abar))."""
    return ((1 - t) ** 2 + t ** 2) ** 0.5


def ddpm_velocity(members, z: torch.Tensor, t: float, r: float) -> torch.Tensor:
    """DDPM members (model, weight, cond) sharing one sampler: their weighted mean x0 prediction
    (= the mean noise prediction, i.e. score, at this one state), one DDIM step from t to r with
    their conventions, as the average velocity over [r, t]."""
    from evalsuite_policies.generative import ddim_step

    first = members[0][0]
    clip_sample, update, _ = sampler(first)
    k, _ = ddpm_timestep(first.alphas_cumprod, t)
    x = z / flow_scale(t)
    ks = torch.full((z.shape[0],), k)
    x0 = sum(w * m.net(x, [ks], c) for m, w, c in members) / sum(w for _, w, _ in members)
    x_prev = ddim_step(x, x0, torch.tensor(flow_abar(t)), torch.tensor(flow_abar(r)), clip_sample=clip_sample,
                       update=update)
    return (z - flow_scale(r) * x_prev) / (t - r)


def ddpm_timestep(alphas_cumprod: torch.Tensor, t: float) -> tuple[float, float]:
    """The (fractional) DDPM timestep whose signal-to-noise ratio equals flow time t's, and its abar."""
    log_snr = torch.log(alphas_cumprod / (1 - alphas_cumprod)).double()  # decreasing in the timestep
    target = 2 * np.log((1 - t) / t) if 0 < t < 1 else (-np.inf if t >= 1 else np.inf)
    if target >= log_snr[0]:
        return 0.0, float(alphas_cumprod[0])
    if target <= log_snr[-1]:
        return float(len(log_snr) - 1), float(alphas_cumprod[-1])
    hi = int(torch.searchsorted(-log_snr, torch.tensor(-target, dtype=torch.float64)))
    lo = hi - 1
    frac = float((log_snr[lo] - target) / (log_snr[lo] - log_snr[hi]))
    abar = 1 / (1 + np.exp(-target))
    return lo + frac, float(abar)


def ddim_times(alphas_cumprod: torch.Tensor, steps: int) -> list[float]:
    """DDIM's timesteps as flow times t = s / (a + s), then 0."""
    from evalsuite_policies.generative import ddim_timesteps

    out = []
    for k in ddim_timesteps(len(alphas_cumprod), steps):
        a, s = float(alphas_cumprod[k]) ** 0.5, float(1 - alphas_cumprod[k]) ** 0.5
        out.append(s / (a + s))
    return out + [0.0]


@torch.no_grad()
def compose_sample(models, weights, conds: list[torch.Tensor], noise: torch.Tensor, times: list[float]):
    """Sample one normalized action chunk by the weighted velocity of the members (conditions
    ``conds``, each member's encoded observations) on ``times``. ``noise`` is the chunk at the
    first time in DDPM scale (as DDIM starts), rescaled to flow scale."""
    flows, ddpm = [], {}  # DDPM members grouped by their sampler: each group mixes before its step
    for m, w, c in zip(models, weights, conds, strict=False):
        if w != 0:
            if m.config.family in DDPM:
                ddpm.setdefault((len(m.alphas_cumprod), *sampler(m)[:2]), []).append((m, w, c))
            else:
                flows.append((m, w, c))
    z = flow_scale(times[0]) * noise
    for t, r in zip(times[:-1], times[1:], strict=False):
        v = sum(w * member_velocity(m, z, t, r, c) for m, w, c in flows)
        v = v + sum(sum(w for _, w, _ in group) * ddpm_velocity(group, z, t, r) for group in ddpm.values())
        z = z - (t - r) * v
    return z


def output_clamp(models, weights) -> float | None:
    """The clamp of the weighted members' samplers: the loosest, none when one of them has none."""
    clamps = [sampler(m)[2] for m, w in zip(models, weights, strict=False) if w != 0]
    return None if None in clamps else max(clamps)


class ComposedPolicy:
    """The ``gpc`` policy: ``members`` are ``family[@checkpoint]`` joined by ``+``; ``w`` is the
    first member's weight for two members, ``weights`` (``+``-joined) for more."""

    def __init__(self, task, suite, members: str = "", w: float = 0.5, weights: str = "", steps: int = 10,
                 schedule: str = "auto", mix: str = "velocity") -> None:
        from evalsuite_policies.chunked import _family_policy

        names = [m for m in members.split("+") if m]
        if len(names) < 2:
            raise UsageError(f"gpc:members={members!r}: give two or more, e.g. members=dp3+dp3@path/to/ckpt")
        policies = []
        for name in names:
            family, _, checkpoint = name.partition("@")
            if family not in PREDICTION:
                raise UsageError(f"gpc member {family!r} exposes no denoiser or velocity field; composable: "
                                 f"{', '.join(PREDICTION)}")
            if family == "lbm":
                from evalsuite_policies.chunked import lbm

                policies.append(lbm(task, suite, checkpoint=checkpoint))
            else:
                policies.append(_family_policy(family)(task, suite, checkpoint=checkpoint))
        self.members, self.models = policies, [p.model for p in policies]
        self.weights = self._weights(w, weights, len(names))
        if schedule not in ("auto", "ddim", "uniform"):
            raise UsageError(f"gpc:schedule={schedule!r}; accepted: auto, ddim, uniform")
        if mix not in ("velocity", "native"):
            raise UsageError(f"gpc:mix={mix!r}; accepted: native, velocity")
        self._check_compatible(names, mix, schedule, steps)
        first = self.models[0].config
        ddpm_members = [m for m in self.models if m.config.family in DDPM]
        use_ddim = schedule == "ddim" or (schedule == "auto" and ddpm_members)
        if use_ddim and not ddpm_members:
            raise UsageError("gpc:schedule=ddim needs a DDPM member (dp3 or lbm) for its DDIM times; "
                             "use schedule=uniform")
        self.times = (ddim_times(ddpm_members[0].alphas_cumprod, steps) if use_ddim
                      else list(np.linspace(1, 0, steps + 1)))
        self.clamp = output_clamp(self.models, self.weights)
        obs_shapes = {}
        for m in self.models:
            obs_shapes.update({k: shape for k, (_, shape) in m.config.obs.items()})
        self.requirements = PolicyRequirements(
            obs_shapes, first.action_dim, chunked=True, n_obs_steps=first.n_obs_steps,
            notes={"family": "gpc", "members": names, "weights": self.weights, "nfe": steps * sum(
                1 for w_ in self.weights if w_ != 0), "schedule": "ddim" if use_ddim else "uniform",
                   "horizon": first.horizon, "n_action_steps": first.n_action_steps})
        digest = hashlib.sha256("|".join([p.fingerprint() for p in policies] + [str(self.weights), str(self.times)])
                                .encode()).hexdigest()[:16]
        self._fingerprint = f"gpc-{digest}"
        self._generators: dict[int, torch.Generator] = {}

    @staticmethod
    def _weights(w: float, weights: str, n: int) -> list[float]:
        if weights:
            try:
                values = [float(x) for x in weights.split("+")]
            except ValueError:
                raise UsageError(f"gpc:weights={weights!r}: numbers joined by '+', e.g. 0.5+0.3+0.2") from None
        elif n == 2:
            values = [float(w), 1.0 - float(w)]
        else:
            raise UsageError(f"gpc with {n} members needs weights=w1+w2+... (w= is for two members)")
        if len(values) != n or min(values) < 0 or abs(sum(values) - 1) > 1e-6:
            raise UsageError(f"gpc weights {values}: need {n} non-negative weights summing to 1 (convex)")
        return values

    def _check_compatible(self, names: list[str], mix: str, schedule: str, steps: int) -> None:
        first, name0 = self.models[0], names[0]
        for model, name in zip(self.models[1:], names[1:], strict=False):
            a, b = first.config, model.config
            for field in ("horizon", "action_dim", "n_obs_steps", "n_action_steps"):
                if getattr(a, field) != getattr(b, field):
                    raise UsageError(f"gpc members {name0} and {name} differ in {field} "
                                     f"({getattr(a, field)} vs {getattr(b, field)}); they cannot be composed")
            lo_a, hi_a = first.normalizer._limits("action")
            lo_b, hi_b = model.normalizer._limits("action")
            if not (torch.allclose(lo_a, lo_b, atol=1e-5) and torch.allclose(hi_a, hi_b, atol=1e-5)):
                raise UsageError(f"gpc members {name0} and {name} normalize actions differently (their action "
                                 "limits differ: trained on other data); a mix of normalized predictions would be "
                                 "meaningless")
            if mix == "native":
                if PREDICTION[a.family] != PREDICTION[b.family]:
                    raise UsageError(f"gpc:mix=native mixes raw predictions, but {name0} predicts "
                                     f"{PREDICTION[a.family]} and {name} {PREDICTION[b.family]}; use mix=velocity")
                if a.family in DDPM and a.train_steps != b.train_steps:
                    raise UsageError(f"gpc:mix=native: {name0} and {name} have different noise schedules "
                                     f"({a.train_steps} vs {b.train_steps} DDPM steps)")
                if a.family in DDPM and sampler(first)[:2] != sampler(model)[:2]:
                    raise UsageError(f"gpc:mix=native: {name0} and {name} sample differently (clip_sample, "
                                     f"ddim_update: {sampler(first)[:2]} vs {sampler(model)[:2]}); use mix=velocity")
                if a.family == "flowpolicy" and a.flow_eps != b.flow_eps:
                    raise UsageError(f"gpc:mix=native: {name0} and {name} start their flows at other times "
                                     f"(flow_eps {a.flow_eps} vs {b.flow_eps}); use mix=velocity")
                if schedule == "uniform" and a.family in DDPM:
                    raise UsageError("gpc:mix=native with dp3 members runs on their DDIM schedule; "
                                     "schedule=uniform needs mix=velocity")

    def reset(self, seed: int, slot: int) -> None:
        self._generators[slot] = torch.Generator().manual_seed(seed % 2**63)

    def act(self, observations: dict[str, np.ndarray], slots: np.ndarray) -> np.ndarray:
        c = self.models[0].config
        from evalsuite_policies.chunked import frames

        obs = frames(observations, self.requirements.obs_shapes, c.n_obs_steps)
        with torch.no_grad():
            conds = [p.model.encode({**{k: obs[k] for k in p.model.config.obs}, **p.extra_inputs(len(slots))})
                     for p in self.members]
        noise = torch.stack([torch.randn((c.horizon, c.action_dim), generator=self._generators[int(s)])
                             for s in slots])
        z = compose_sample(self.models, self.weights, conds, noise, self.times)
        if self.clamp is not None:
            z = z.clamp(-self.clamp, self.clamp)
        chunk = self.models[0].normalizer.unnormalize("action", z).numpy()
        start = c.n_obs_steps - 1
        return chunk[:, start:start + c.n_action_steps]

    def fingerprint(self) -> str:
        return self._fingerprint


def gpc(task, suite, **params) -> ComposedPolicy:
    try:
        return ComposedPolicy(task, suite, **params)
    except ValueError as exc:
        raise UsageError(f"policy 'gpc': {exc}") from None
