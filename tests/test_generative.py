"""The policy families' mathematics and their training, on tiny problems (each assertion could fail)."""

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
    x0 = torch.randn(1, 16, 4, generator=torch.Generator().manual_seed(0))
    oracle = lambda x, ts, c: x0.expand(x.shape[0], -1, -1)  # noqa: E731 - the exact clean-sample predictor
    noise = torch.randn(3, 16, 4)
    assert torch.allclose(gen.ddim_sample(oracle, noise, None, ac, 100), x0.expand(3, -1, -1), atol=1e-5)
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
    straight = lambda x, ts, c: (x1 - x) / (1 - ts[0]).view(-1, 1, 1)  # noqa: E731 - every path straight to x1
    g = torch.Generator().manual_seed(0)
    assert gen.consistency_fm_loss(straight, x1.expand(32, -1, -1), None, generator=g) < 1e-10
    # a curved field: consistent only to O(delta) per step, so its loss is orders of magnitude above zero
    bent = lambda x, ts, c: 2 * (x1 - x) / (1 - ts[0]).view(-1, 1, 1)  # noqa: E731
    assert gen.consistency_fm_loss(bent, x1.expand(32, -1, -1), None, generator=g) > 1e-6
    # one Euler step of the straight field lands on the data
    assert torch.allclose(gen.flow_sample(straight, torch.randn(3, 4, 2), None, 1), x1.expand(3, -1, -1), atol=1e-5)


@pytest.mark.parametrize("variant", gen.DISPERSIVE_VARIANTS)
def test_dispersive_loss_has_a_gradient_and_spreads_features(variant):
    torch.manual_seed(0)
    feats = (0.05 * torch.randn(16, 8) + torch.randn(1, 8)).requires_grad_(True)  # a collapsed cluster
    loss = gen.dispersive_loss(feats, variant)
    loss.backward()
    assert feats.grad.abs().sum() > 0
    spread = lambda f: torch.pdist(f.detach()).mean()  # noqa: E731
    before = spread(feats)
    opt = torch.optim.SGD([feats], lr=2.0)
    for _ in range(100):
        opt.zero_grad()
        gen.dispersive_loss(feats, variant).backward()
        opt.step()
    assert spread(feats) > 1.5 * before


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


@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.slow) if f in ("mp1", "dm1") else f
                                    for f in gen.FAMILIES])  # the JVP-trained ones take minutes: tests_slow
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
    assert np.mean(losses[-20:]) < np.mean(losses[:20]) - 0.8 * abs(np.mean(losses[:20]))
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
