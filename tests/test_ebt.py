"""EBT-Policy: descent lowers the energy and stops by itself, the model overfits a tiny dataset,
and the energy of every chunk reaches the episode record and the report."""

import json

import numpy as np
import torch

from evalsuite_policies.chunked import load_checkpoint, save_checkpoint
from evalsuite_policies.ebt import EBTConfig, EnergyModel


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = EBTConfig(family="ebt", obs={"state": ("lowdim", (3,))}, action_dim=2, horizon=4, n_obs_steps=2,
                    n_action_steps=2, feature_dim=16, d_model=32, heads=2, **kw)
    model = EnergyModel(cfg)
    model.normalizer.fit("state", np.array([[0, 0, 0], [1, 1, 1.0]]))
    model.normalizer.fit("action", np.array([[-1, -1], [1, 1.0]]))
    return model


def _data():
    obs = torch.tensor([[[1.0, 0, 0]] * 2, [[0, 1.0, 0]] * 2, [[0, 0, 1.0]] * 2])
    actions = torch.tensor([[[0.5, -0.5]] * 4, [[-0.8, 0.2]] * 4, [[0.1, 0.9]] * 4])
    return {"state": obs}, actions


def test_descent_lowers_the_energy_and_stops_on_a_flat_gradient():
    model = _model()
    with torch.no_grad():
        model.log_step.fill_(-4.0)  # small steps: plain descent must go downhill
    obs, _ = _data()
    cond = model.encode(obs)
    start = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0))
    e0 = model.energy(start, cond).detach()
    _, steps, final = model.descend(start, cond, max_steps=10)
    assert torch.all(final < e0) and torch.all(steps == 10)
    loose = _model(grad_tol=1e9)  # every gradient is "small": no step at all
    _, steps, _ = loose.descend(start, loose.encode(obs), max_steps=10)
    assert torch.all(steps == 0)


def test_ebt_overfits_a_tiny_dataset_and_reproduces_its_actions(tmp_path):
    model = _model()
    obs, actions = _data()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    rep = lambda x: x.repeat(8, *[1] * (x.ndim - 1))  # noqa: E731
    losses = []
    for _ in range(300):
        loss = model.loss({"state": rep(obs["state"])}, rep(actions), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-20:]) < 0.1 * np.mean(losses[:20])
    model.eval()
    noise = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(2))
    sampled = model.sample(obs, noise, 20)
    assert (sampled - actions).abs().mean() < 0.15
    stats = model.last_stats
    assert stats["descent_steps"].shape == (3,) and torch.all(stats["descent_steps"] <= 20)
    save_checkpoint(model, tmp_path / "ebt")
    loaded, meta = load_checkpoint(tmp_path / "ebt")
    assert meta["config"]["family"] == "ebt" and torch.allclose(loaded.sample(obs, noise, 20), sampled, atol=1e-5)


def test_energy_reaches_the_episode_records_and_the_report(tmp_path, fake_suite):
    from evalsuite.cli import main

    torch.manual_seed(0)
    cfg = EBTConfig(family="ebt", obs={"state": ("lowdim", (2,))}, action_dim=2, horizon=4, n_obs_steps=1,
                    n_action_steps=2, feature_dim=16, d_model=32, heads=2)
    model = EnergyModel(cfg)
    model.normalizer.fit("state", np.array([[0, 0], [12, 12.0]]))
    model.normalizer.fit("action", np.array([[-1, -1], [2, 1.0]]))
    ckpt = save_checkpoint(model.eval(), tmp_path / "ebt")
    out = tmp_path / "run"
    assert main(["evaluate", "suite=fake", f"policies=[ebt:{ckpt}:steps=5,ones]", "episodes=6", f"out={out}",
                 "tracking_uri=none", "progress=false"]) == 0
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    ebt = [r for r in records if r["policy_info"]]
    assert len(ebt) == 12 and all(0 < r["policy_info"]["descent_steps_mean"] <= 5 for r in ebt)
    assert all(np.isfinite(r["policy_info"]["energy_mean"]) for r in ebt)
    results = json.loads((out / "results.json").read_text())
    energy = results["energy"][f"ebt:checkpoint={ckpt}:steps=5"]
    assert energy["episodes"] == 12 and "auroc_failure" in energy
    assert "Energy as an uncertainty signal" in (out / "report.md").read_text()
