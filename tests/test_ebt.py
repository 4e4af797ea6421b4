"""EBT-Policy: inference descends as training does (issue 16), training is the reference's (detached,
randomised steps, loss over steps), descent stops by the gradient, legacy checkpoints load, and the
energy of every chunk reaches the episode record and the report."""

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
    _, steps, final, stopped = model.descend(start, cond, max_steps=10)
    assert torch.all(final < e0) and torch.all(steps == 10) and not stopped.any()
    loose = _model(grad_tol=1e9)  # every gradient is "small": no step at all
    _, steps, _, stopped = loose.descend(start, loose.encode(obs), max_steps=10)
    assert torch.all(steps == 0) and stopped.all()


def _exact(**kw):
    """No Langevin noise, no step-size jitter, fixed step count: training's iterates are deterministic."""
    return _model(langevin_std=0.0, step_size_jitter=1.0, extra_descent_steps=0, train_descent_steps=3, **kw)


def test_inference_runs_the_descent_training_trains_and_the_loss_averages_its_steps():
    """The fidelity bug of issue 16: training descended one way (3 unrolled plain steps), acting
    another (Nesterov momentum). The training loss must equal the error of inference's own iterates
    after 1, 2, 3 steps from the same noise (mean over steps) - the Nesterov option must not."""
    obs, actions = _data()
    for loss_over_steps in ("mean", "last"):
        model = _exact(grad_tol=0.0, loss_over_steps=loss_over_steps)
        loss = model.loss(obs, actions, generator=torch.Generator().manual_seed(5))
        noise = torch.randn(actions.shape, generator=torch.Generator().manual_seed(5))
        cond, x = model.encode(obs), model.normalizer.normalize("action", actions)
        errors = [((model.descend(noise, cond, k)[0] - x) ** 2).mean() for k in (1, 2, 3)]
        expected = torch.stack(errors).mean() if loss_over_steps == "mean" else errors[-1]
        assert torch.allclose(loss, expected, rtol=1e-4, atol=1e-6)
    model.config.descent = "nesterov"
    assert not torch.allclose(((model.descend(noise, cond, 3)[0] - x) ** 2).mean(), errors[-1], rtol=1e-2)


def test_training_detaches_between_steps_and_randomises_step_count_and_size():
    """The reference's training: the chunk entering each step carries no graph of the earlier steps
    (no gradient to the parameters through it), 2..4 steps, step size jittered in [alpha/2, 2 alpha]."""
    obs, actions = _data()
    for scheme, chained in (("detached", False), ("unrolled", True)):
        model = _model(scheme=scheme, train_descent_steps=3 if scheme == "unrolled" else 2)
        inputs, energy = [], model.energy
        model.energy = lambda a, cond, inputs=inputs, energy=energy: (inputs.append(a), energy(a, cond))[1]  # noqa: E731
        counts = set()
        g = torch.Generator().manual_seed(0)
        for _ in range(12):
            inputs.clear()
            model.loss(obs, actions, generator=g)
            counts.add(len(inputs))
        depends = [any(t is not None for t in torch.autograd.grad(a.sum(), list(model.parameters()), allow_unused=True,
                                                                 retain_graph=True)) if a.grad_fn else False
                   for a in inputs[1:]]
        assert all(depends) if chained else not any(depends)
        assert counts == ({3} if chained else {2, 3, 4})
    model = _model()
    jitters, jitter = [], model._jitter
    model._jitter = lambda b, g: (jitters.append(jitter(b, g)), jitters[-1])[1]  # noqa: E731
    model.loss(obs, actions, generator=torch.Generator().manual_seed(0))
    every = torch.cat(jitters).flatten()
    assert len(jitters) >= 2 and every.min() >= 0.5 and every.max() <= 2.0 and every.std() > 0.1


def _trained(iters=300, **kw):
    model = _model(**kw)
    obs, actions = _data()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    rep = lambda x: x.repeat(8, *[1] * (x.ndim - 1))  # noqa: E731
    losses = []
    for _ in range(iters):
        loss = model.loss({"state": rep(obs["state"])}, rep(actions), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), losses


def test_ebt_overfits_a_tiny_dataset_and_its_descent_stops_by_the_gradient(tmp_path):
    """Known answer: three observations, three constant chunks. Inference from fresh noise lands on
    them, most chunks stop by the gradient criterion well before the cap, and a save/load keeps it."""
    model, losses = _trained()
    obs, actions = _data()
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:20])
    many = {"state": obs["state"].repeat(20, 1, 1)}
    noise = torch.randn(60, 4, 2, generator=torch.Generator().manual_seed(2))
    sampled = model.sample(many, noise, 20)
    x = model.normalizer.normalize("action", actions.repeat(20, 1, 1))
    assert ((model.normalizer.normalize("action", sampled) - x) ** 2).mean() < 0.01  # normalised MSE
    stats = model.last_stats
    assert stats["stopped_by_gradient"].float().mean() >= 0.9
    assert torch.all(stats["descent_steps"][stats["stopped_by_gradient"]] < 20)
    assert stats["descent_steps"].float().mean() < 8
    save_checkpoint(model, tmp_path / "ebt")
    loaded, meta = load_checkpoint(tmp_path / "ebt")
    assert meta["config"]["family"] == "ebt" and meta["config"]["scheme"] == "detached"
    assert torch.allclose(loaded.sample(many, noise, 20), sampled, atol=1e-5)


def test_a_legacy_checkpoint_loads_and_runs_the_descent_it_was_trained_for(tmp_path):
    """A checkpoint written before the fix (config without the scheme fields, weights without
    format_version) loads as the unrolled scheme: plain steps, at most train_descent_steps of them;
    descent="nesterov" reproduces its former inference."""
    from safetensors.torch import load_file, save_file

    model = _model(scheme="unrolled", train_descent_steps=3, extra_descent_steps=0, step_size_jitter=1.0,
                   loss_over_steps="last")
    folder = save_checkpoint(model.eval(), tmp_path / "old")
    meta = json.loads((folder / "config.json").read_text())
    for key in ("scheme", "extra_descent_steps", "step_size_jitter", "loss_over_steps", "descent"):
        del meta["config"][key]
    (folder / "config.json").write_text(json.dumps(meta))
    state = load_file(str(folder / "model.safetensors"))
    del state["format_version"]
    save_file(state, str(folder / "model.safetensors"))
    loaded, _ = load_checkpoint(folder)
    c = loaded.config
    assert (c.scheme, c.descent, c.loss_over_steps, c.extra_descent_steps) == ("unrolled", "gd", "last", 0)
    obs, _ = _data()
    noise = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0))
    loaded.sample(obs, noise, 20)
    assert torch.all(loaded.last_stats["descent_steps"] <= 3)
    c.descent = "nesterov"
    loaded.sample(obs, noise, 20)
    assert loaded.last_stats["descent_steps"].max() > 3


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
    for task in ("t1", "t2"):  # per task: energy scales are not pooled across tasks
        energy = results["energy"][f"ebt:checkpoint={ckpt}:steps=5 ({task})"]
        assert energy["episodes"] == 6 and "auroc_failure" in energy and 0 <= energy["stopped_by_gradient"] <= 1
    assert "Energy as an uncertainty signal" in (out / "report.md").read_text()
