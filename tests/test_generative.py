"""The policy families' mathematics and their training, on tiny problems (each assertion could fail)."""

import math

import numpy as np
import pytest
import torch
from torch.func import jvp

from evalsuite_policies import generative as gen
from evalsuite_policies.chunked import ChunkModel, ModelConfig, load_checkpoint, save_checkpoint
from evalsuite_policies.nets import ConditionalUnet1D, PointCloudEncoder


def test_ddim_with_all_steps_reproduces_the_sample_and_is_deterministic():
    ac = gen.cosine_alphas_cumprod(100)
    assert torch.all(ac[1:] < ac[:-1]) and 0 < ac[-1] < 1e-3 < 0.99 < ac[0]
    x0 = torch.rand(1, 16, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1  # inside clip_sample's [-1, 1]
    oracle = lambda x, ts, c: x0.expand(x.shape[0], -1, -1)  # noqa: E731 - the exact clean-sample predictor
    noise = torch.randn(3, 16, 4)
    for update in gen.DDIM_UPDATES:
        assert torch.allclose(gen.ddim_sample(oracle, noise, None, ac, 100, update=update), x0.expand(3, -1, -1),
                              atol=1e-5)
    net = ConditionalUnet1D(4, 8, (16, 32), n_times=1)
    cond = torch.randn(3, 8)
    a = gen.ddim_sample(net, noise, cond, ac, 10)
    assert torch.equal(a, gen.ddim_sample(net, noise, cond, ac, 10))
    assert not torch.allclose(a, gen.ddim_sample(net, noise + 0.1, cond, ac, 10))
    assert gen.ddim_timesteps(100, 10) == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]


def test_meanflow_jvp_target_equals_finite_differences():
    torch.manual_seed(0)
    net = ConditionalUnet1D(4, 8, (16, 32), n_times=2).double()
    z, v, cond = torch.randn(5, 8, 4).double(), torch.randn(5, 8, 4).double(), torch.randn(5, 8).double()
    t = torch.rand(5).double() * 0.8 + 0.1
    r = t * 0.4
    fn = lambda z_, t_, r_: net(z_, [t_, r_], cond)  # noqa: E731
    _, dudt = jvp(fn, (z, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
    h = 1e-5
    fd = (fn(z + h * v, t + h, r) - fn(z - h * v, t - h, r)) / (2 * h)
    assert torch.allclose(dudt, fd, atol=1e-6, rtol=1e-4)
    u, target = gen.meanflow_target(net, z, t, r, cond, v)
    assert torch.allclose(target, v - (t - r).view(-1, 1, 1) * fd, atol=1e-6)


def test_consistency_flow_matching_is_zero_exactly_on_a_straight_flow():
    x1 = torch.randn(1, 4, 2)
    # every path straight to x1 (at t = 1 the point is x1 itself: any finite velocity)
    straight = lambda x, ts, c: (x1 - x) / (1 - ts[0]).clamp_min(1e-6).view(-1, 1, 1)  # noqa: E731
    g = torch.Generator().manual_seed(0)
    assert gen.consistency_fm_loss(straight, x1.expand(32, -1, -1), None, generator=g) < 1e-10
    # a curved field: consistent only to O(delta) per step, so its loss is orders of magnitude above zero
    bent = lambda x, ts, c: 2 * (x1 - x) / (1 - ts[0]).clamp_min(1e-6).view(-1, 1, 1)  # noqa: E731
    assert gen.consistency_fm_loss(bent, x1.expand(32, -1, -1), None, generator=g) > 1e-6
    # one Euler step of the straight field from t = 0 lands on the data; FlowPolicy's step is z + v(z, eps)
    z = torch.randn(3, 4, 2)
    assert torch.allclose(gen.flow_sample(straight, z, None, 1, eps=0.0), x1.expand(3, -1, -1), atol=1e-5)
    assert torch.allclose(gen.flow_sample(straight, z, None, 1), z + (x1 - z) / 0.99, atol=1e-6)


@pytest.mark.parametrize("variant", [*gen.DISPERSIVE_VARIANTS, "mp1"])
def test_dispersive_loss_has_a_gradient_and_spreads_features(variant):
    torch.manual_seed(0)
    scale = 0.05 if variant == "hinge" else 0.3  # a tight cluster, inside the hinge's margin
    feats = (scale * torch.randn(16, 8) + torch.randn(1, 8)).requires_grad_(True)
    loss_of = (lambda f: gen.mp1_dispersive_loss(f)) if variant == "mp1" else (  # noqa: E731
        lambda f: gen.dispersive_loss(f, variant))
    loss = loss_of(feats)
    loss.backward()
    assert feats.grad.abs().sum() > 0
    spread = lambda f: torch.pdist(f.detach()).mean()  # noqa: E731
    before = spread(feats)
    opt = torch.optim.SGD([feats], lr=2.0)
    for _ in range(100):
        opt.zero_grad()
        loss_of(feats).backward()
        opt.step()
    # DM1's cosine variant barely moves: its self pairs sit at the cap exp(10), the others at most exp(2)
    assert spread(feats) > (1.0 if variant == "cosine" else 1.5) * before


def test_point_cloud_encoder_is_permutation_invariant():
    enc = PointCloudEncoder(32)
    pts = torch.randn(2, 512, 3)
    perm = pts[:, torch.randperm(512)]
    assert torch.allclose(enc(pts), enc(perm), atol=1e-6)


def _tiny_model(family, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(family=family, obs={"state": ("lowdim", (3,))}, action_dim=2, horizon=4, n_obs_steps=2,
                      n_action_steps=2, down_dims=(16, 32), feature_dim=16, train_steps=20)
    model = ChunkModel(cfg)
    obs = torch.tensor([[[1.0, 0, 0]] * 2, [[0, 1.0, 0]] * 2, [[0, 0, 1.0]] * 2])
    actions = torch.tensor([[[0.5, -0.5]] * 4, [[-0.8, 0.2]] * 4, [[0.1, 0.9]] * 4]) * torch.linspace(0.5, 1, 4).view(1, 4, 1)
    model.normalizer.fit("state", np.array([[0, 0, 0], [1, 1, 1.0]]))
    model.normalizer.fit("action", np.array([[-1, -1], [1, 1.0]]))
    return model, {"state": obs}, actions


@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.slow) if f in ("mp1", "dm1", "flowpolicy") else f
                                    for f in gen.FAMILIES])  # the JVP-trained ones take minutes, flowpolicy 25 s
# (its flow has its own exact checks above): tests_slow; dp3 (8 s) stays in the default tier
def test_each_family_overfits_a_tiny_dataset_and_reproduces_its_actions(family):
    model, obs, actions = _tiny_model(family)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    rep = lambda x: x.repeat(8, *[1] * (x.ndim - 1))  # noqa: E731
    losses = []
    for _ in range({"dp3": 400}.get(family, 800)):
        loss = model.loss({"state": rep(obs["state"])}, rep(actions), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    if family in ("dp3", "flowpolicy"):  # the others add a dispersive term of its own scale
        assert np.mean(losses[-20:]) < np.mean(losses[:20]) - 0.8 * abs(np.mean(losses[:20]))
    assert np.mean(losses[-20:]) < np.mean(losses[:20])
    model.eval()
    steps = {"dp3": 10, "flowpolicy": 1, "mp1": 2, "dm1": 2}[family]
    sampled = model.sample(obs, torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(2)), steps)
    assert (sampled - actions).abs().mean() < 0.15, (family, sampled, actions)


def test_checkpoint_round_trip_gives_the_same_actions(tmp_path):
    model, obs, _ = _tiny_model("mp1")
    model.eval()
    save_checkpoint(model, tmp_path / "ckpt", {"training": {"iters": 0}})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded, meta = load_checkpoint(tmp_path / "ckpt")
    noise = torch.randn(3, 4, 2)
    assert torch.equal(model.sample(obs, noise, 1), loaded.sample(obs, noise, 1))
    assert meta["config"]["family"] == "mp1" and meta["training"] == {"iters": 0}


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="unknown family"):
        ModelConfig(family="ddpm", obs={}, action_dim=2)
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(family="dp3", obs={}, action_dim=2, horizon=6, down_dims=(8, 16, 32))
    with pytest.raises(ValueError, match="unknown dispersive variant"):
        gen.dispersive_loss(torch.randn(4, 3), "triplet")


# ---------------------------------------------------------------- known answers per family (issue 16)

def test_ddim_step_is_diffusers_0_11_1_by_default_with_x0_clipped():
    """Hand-computed: x = 0.5, predicted x0 = 1.7, alpha-bar 0.25 -> 0.64 (sqrt: 0.5, 0.8; 1 - : 0.866, 0.6)."""
    x, x0, ab, ab_prev = torch.tensor(0.5), torch.tensor(1.7), torch.tensor(0.25), torch.tensor(0.64)
    # diffusers 0.11.1: clipped x0, plus the raw output as the direction: 0.8 * 1 + 0.6 * 1.7
    assert torch.isclose(gen.ddim_step(x, x0, ab, ab_prev), torch.tensor(1.82))
    # diffusers >= 0.15: the noise implied by the unclipped x0, (0.5 - 0.5 * 1.7) / 0.866
    eps = (0.5 - 0.85) / 0.75 ** 0.5
    assert torch.isclose(gen.ddim_step(x, x0, ab, ab_prev, update="diffusers-0.15"), torch.tensor(0.8 + 0.6 * eps))
    assert torch.isclose(gen.ddim_step(x, x0, ab, ab_prev, clip_sample=False, update="diffusers-0.15"),
                         torch.tensor(0.8 * 1.7 + 0.6 * eps))
    # a whole DDIM run ends on the clipped x0 of its last step
    ac = gen.cosine_alphas_cumprod(100)
    out = gen.ddim_sample(lambda x_, ts, c: torch.full_like(x_, 1.7), torch.randn(2, 4, 3), None, ac, 10)
    assert torch.allclose(out, torch.ones(2, 4, 3))
    cfg = _tiny_model("dp3")[0].config
    assert cfg.clip_sample and cfg.ddim_update == "diffusers-0.11.1" and cfg.output_clamp is None


def test_dp3_chunking_is_the_papers():
    from evalsuite_policies.chunked import FAMILY_CHUNKING

    assert FAMILY_CHUNKING["dp3"] == FAMILY_CHUNKING["mp1"] == FAMILY_CHUNKING["flowpolicy"] == (4, 2, 3)


@pytest.mark.parametrize("ema", [False, True])
def test_consistency_fm_known_answer_for_a_constant_field(ema):
    """v = c everywhere: f_t - f_r = (r - t)(c - (x1 - x0)) with r = min(t + delta, 1) (also where r = 1 is
    anchored to the data), and the velocity term vanishes. With the online target (official) both sides
    carry the gradient; with a no-gradient target only f_t does, through its (s - t)."""
    b, delta, eps = 64, 1e-2, 1e-2
    x1 = torch.randn(b, 4, 2, generator=torch.Generator().manual_seed(3))
    c = torch.tensor(0.3, requires_grad=True)
    field = lambda x, ts, cond: c.expand(x.shape)  # noqa: E731
    loss = gen.consistency_fm_loss(field, x1, None, generator=torch.Generator().manual_seed(0),
                                   target_net=field if ema else None)
    loss.backward()
    g = torch.Generator().manual_seed(0)  # the loss's own draws, in its order
    x0 = torch.randn(x1.shape, generator=g)
    t = torch.rand(b, generator=g) * (1 - eps) + eps
    assert t.min() >= eps and t.max() > 1 - delta  # t ~ U[eps, 1]: some r reach the data anchor
    w = torch.clamp(t + delta, max=1.0) - t
    seg_end = torch.where(t <= 0.5, 0.5, 1.0)
    diff = (c.detach() - (x1 - x0)).flatten(1)
    assert torch.isclose(loss, (w**2 * diff.pow(2).mean(1)).mean(), rtol=1e-5)
    weight = torch.where(t + delta < 1, w * (seg_end - t), w**2) if ema else w**2
    assert torch.isclose(c.grad, (2 * weight * diff.mean(1)).mean(), rtol=1e-4)


def _seed_drawing_t_in(lo: float, hi: float, shape, eps: float = 1e-2) -> tuple[int, float]:
    """A generator seed for which consistency_fm_loss draws its one t inside (lo, hi]."""
    for seed in range(100_000):
        g = torch.Generator().manual_seed(seed)
        torch.randn(shape, generator=g)
        t = float(torch.rand(1, generator=g) * (1 - eps) + eps)  # in float32, as the loss has it
        if lo < t <= hi:
            return seed, t
    raise AssertionError("no seed found")


@pytest.mark.parametrize("where", ["inside a segment", "near the segment end", "crossing the segment end",
                                   "reaching the data"])
def test_consistency_fm_at_hand_placed_times(where):
    """One sample, a field v(x, t) = k t that differs between t and r, so every term counts. Two segments
    (s = 0.5 or 1), delta = 0.01, alpha = 1. Inside a segment: both the segment-end and the velocity
    terms. Within 1.01 delta of the end but r not past it: the velocity term is masked already.
    Crossing 0.5 (t in (0.49, 0.5]): r = t + delta past the end still predicts the same s = 0.5
    from x_r (not replaced by the path point at 0.5), and the velocity term is masked. Reaching the
    data (t > 0.99): r = 1 is replaced by x1, the velocity term masked."""
    delta, alpha, k, shape = 1e-2, 1.0, 10.0, (1, 4, 2)
    lo, hi = {"inside a segment": (0.1, 0.4), "near the segment end": (0.5 - 1.01 * delta + 1e-6, 0.5 - delta - 1e-6),
              "crossing the segment end": (0.5 - delta + 1e-6, 0.5),
              "reaching the data": (1 - delta, 1.0)}[where]
    seed, t = _seed_drawing_t_in(lo, hi, shape)
    x1 = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    field = lambda x, ts, cond: k * ts[0].view(-1, 1, 1).expand(x.shape)  # noqa: E731
    loss = gen.consistency_fm_loss(field, x1, None, delta=delta, alpha=alpha,
                                   generator=torch.Generator().manual_seed(seed))
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    s = 0.5 if t <= 0.5 else 1.0
    r = min(t + delta, 1.0)
    path = lambda u: u * x1 + (1 - u) * x0  # noqa: E731
    f_t = path(t) + (s - t) * k * t
    f_r = x1 if r == 1.0 else path(r) + (s - r) * k * r
    expected = (f_t - f_r).pow(2).mean()
    if where == "inside a segment":
        expected = expected + alpha * (k * t - k * r) ** 2
    assert torch.isclose(loss, expected, rtol=1e-5), (loss, expected)


def test_flowpolicy_embeds_99t_starts_at_eps_and_does_not_clamp():
    model, obs, _ = _tiny_model("flowpolicy")
    assert model.config.time_scale == 99.0 and model.config.flow_eps == 0.01
    seen = []
    model.net.time_encoders[0][0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    with torch.no_grad():
        model.net.final[1].bias.fill_(5.0)  # a velocity far outside the old +-1.5 clamp
    chunk = model.sample(obs, torch.zeros(3, 4, 2), 1)
    assert torch.allclose(seen[0], torch.full((3,), 0.99))
    assert model.normalizer.normalize("action", chunk).max() > 3.0


def test_mp1_sums_the_t_and_r_embeddings():
    from evalsuite_policies.nets import ConditionalUnet1D

    net = ConditionalUnet1D(2, 256, (16, 32), n_times=2)
    assert net.down[0][0].film[1].weight.shape == (32, 384)  # MP1's (C, 128 + cond): the embeddings are summed
    legacy = ConditionalUnet1D(2, 256, (16, 32), n_times=2, time_merge="concat")
    assert legacy.down[0][0].film[1].weight.shape == (32, 512)
    x, cond, t, r = torch.randn(2, 4, 2), torch.randn(2, 256), torch.rand(2), torch.rand(2)
    te, re = net.time_embeddings([t, r])
    swapped = ConditionalUnet1D(2, 256, (16, 32), n_times=2)
    swapped.load_state_dict(net.state_dict())
    swapped.time_encoders[0], swapped.time_encoders[1] = swapped.time_encoders[1], swapped.time_encoders[0]
    assert torch.allclose(net(x, [t, r], cond), swapped(x, [r, t], cond), atol=1e-6)  # a sum does not care
    assert torch.allclose(te + re, sum(swapped.time_embeddings([r, t])), atol=1e-6)


def test_meanflow_known_answer_on_a_point_mass():
    """Data = one point x*: every path z_t = (1 - t) x* + t e is straight, so the average velocity is
    u(z, t, r) = (z - x*) / t for every r. It has zero MeanFlow loss (plain, MP1's CFG w = 2 and
    adaptive weighting alike); -u has a large one."""
    star = torch.tensor([[0.4, -0.7]]).expand(4, 2)

    def oracle(sign):
        def net(z, times, cond, return_features=False):
            u = sign * (z - star) / times[0].view(-1, 1, 1)
            return (u, []) if return_features else u
        return net

    x = star.expand(16, 4, 2)
    for kw in ({}, {"cfg_w": 2.0, "adaptive": True}):
        assert gen.meanflow_loss(oracle(1), x, None, generator=torch.Generator().manual_seed(0), **kw) < 1e-10
        assert gen.meanflow_loss(oracle(-1), x, None, generator=torch.Generator().manual_seed(0), **kw) > 0.1
    assert torch.allclose(gen.meanflow_sample(oracle(1), torch.randn(3, 4, 2), None, 1), star.expand(3, 4, 2), atol=1e-6)


def test_mp1_adaptive_weight_uses_each_samples_mean_squared_error():
    """A constant u = 0 has du/dt = 0, so the target is v = e - x and each sample's error is mean(v^2)."""
    def zero(z, times, cond, return_features=False):
        return (torch.zeros_like(z), []) if return_features else torch.zeros_like(z)

    x = torch.randn(8, 4, 2, generator=torch.Generator().manual_seed(1))
    loss = gen.meanflow_loss(zero, x, None, adaptive=True, generator=torch.Generator().manual_seed(0))
    e = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    err = (e - x).pow(2).flatten(1).mean(1)
    assert torch.isclose(loss, (err / (err + 1e-3).sqrt()).mean(), rtol=1e-5)


def test_mp1_dispersive_loss_is_scale_free_with_a_known_value():
    z = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    expected = math.log((2 + 2 * math.exp(-1)) / 4)  # normalized squared distances 0, 1, 1, 0; tau = 1
    for k in (1e-3, 1.0, 1e3):
        assert math.isclose(gen.mp1_dispersive_loss(k * z).item(), expected, rel_tol=1e-5)
    feats = torch.randn(32, 8, 4)
    assert torch.isclose(gen.mp1_dispersive_loss(feats), gen.mp1_dispersive_loss(feats.flatten(1) * 50), rtol=1e-5)


def test_mp1_loss_takes_flattened_features_of_the_down_blocks_but_the_last(monkeypatch):
    model, obs, actions = _tiny_model("mp1")  # down_dims (16, 32): one dispersive term, on block 0
    seen = []
    real = gen.mp1_dispersive_loss
    monkeypatch.setattr(gen, "mp1_dispersive_loss", lambda f, *a, **k: (seen.append(f.shape), real(f))[1])
    model.loss(obs, actions, generator=torch.Generator().manual_seed(0))
    assert seen == [(3, 16, 4)]


def test_dm1_dispersive_variants_known_answers():
    tau = 0.5
    two = torch.tensor([[0.0], [3.0]])  # distance 3: 3 / tau = 6 under the cap 10; the self pair sits at 10
    assert math.isclose(gen.dispersive_loss(two, "infonce-l2").item(), -math.log(math.exp(10) + math.exp(6)),
                        rel_tol=1e-6)
    orthogonal = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert math.isclose(gen.dispersive_loss(orthogonal, "cosine", tau).item(), -math.log(math.exp(10) + 1),
                        rel_tol=1e-6)
    assert math.isclose(gen.dispersive_loss(torch.tensor([[0.0], [0.4]]), "hinge").item(), 0.6, rel_tol=1e-6)
    # covariance [[2, 2], [2, 2]]: off-diagonal 2^2, variances above 1; not standardised (that would give 1)
    assert math.isclose(gen.dispersive_loss(torch.tensor([[0.0, 0.0], [2.0, 2.0]]), "covariance").item(), 4.0,
                        rel_tol=1e-6)
    # small variances are pushed up: (1 - 0.02 + 1 - 0) / 2
    assert math.isclose(gen.dispersive_loss(torch.tensor([[0.0, 0.0], [0.2, 0.0]]), "covariance").item(), 0.99,
                        rel_tol=1e-5)


def test_dm1_regularises_the_time_r_and_observation_embeddings_summed(monkeypatch):
    model, obs, actions = _tiny_model("dm1")
    seen = []
    real = gen.dispersive_loss
    monkeypatch.setattr(gen, "dispersive_loss", lambda f, v="infonce-l2": (seen.append(f.shape), real(f, v))[1])
    monkeypatch.setattr(gen, "meanflow_loss", lambda *a, **k: torch.tensor(0.0))
    loss = model.loss(obs, actions, generator=torch.Generator().manual_seed(0))
    assert seen == [(3, 128), (3, 128), (3, model.encoder.out_dim)]
    g = torch.Generator().manual_seed(0)
    t, r = torch.rand(3, generator=g), torch.rand(3, generator=g)  # uniform, independent
    cond = model.encode(obs)
    expected = 0.5 * sum(real(e) for e in [*model.net.time_embeddings([t, r]), cond])
    assert torch.isclose(loss, expected, rtol=1e-5)
