"""GPC composition: weight 1 is the member alone (each family, new and legacy conventions), mixing
two DDPM members is native epsilon (score) mixing, mixing changes the actions, and incompatible
members are refused with the reason."""

import json

import numpy as np
import pytest
import torch

from evalsuite.errors import UsageError
from evalsuite.specs import SuiteSpec, TaskSpec
from evalsuite_policies.chunked import LEGACY_CONVENTIONS, ChunkModel, ChunkPolicy, ModelConfig, save_checkpoint
from evalsuite_policies.gpc import ComposedPolicy, compose_sample, ddim_times, ddpm_timestep

TASK = TaskSpec("toy", 10)
SUITE = SuiteSpec("toy", "tests.conftest:CountdownEnv", (TASK,))


def _checkpoint(tmp_path, family, seed=0, horizon=4, action_high=1.0, name=None, legacy=False, gain=1.0, **conventions):
    """A random-weight checkpoint. ``legacy``: trained under LEGACY_CONVENTIONS and saved with a
    config.json that does not name them, as the shipped checkpoints are. ``gain`` scales the network's
    output (so that x0 clipping and output clamps take effect)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(family=family, obs={"state": ("lowdim", (3,))}, action_dim=2, horizon=horizon, n_obs_steps=2,
                      n_action_steps=2, down_dims=(16, 32), feature_dim=16, train_steps=20,
                      **(LEGACY_CONVENTIONS if legacy else {}), **conventions)
    model = ChunkModel(cfg)
    model.normalizer.fit("state", np.array([[0, 0, 0], [1, 1, 1.0]]))
    model.normalizer.fit("action", np.array([[-1, -1], [action_high, 1.0]]))
    with torch.no_grad():
        model.net.final[-1].weight.mul_(gain)
        model.net.final[-1].bias.mul_(gain)
    folder = save_checkpoint(model.eval(), tmp_path / (name or f"{family}-{seed}{'-legacy' if legacy else ''}"))
    if legacy:
        path = folder / "config.json"
        data = json.loads(path.read_text())
        data["config"] = {k: v for k, v in data["config"].items() if k not in LEGACY_CONVENTIONS}
        path.write_text(json.dumps(data))
    return folder


def _actions(policy, seed=3):
    obs = {"state": np.random.default_rng(0).random((4, 2, 3))}
    for slot in range(4):
        policy.reset(seed + slot, slot)
    return policy.act(obs, np.arange(4))


@pytest.mark.parametrize("legacy", [False, True], ids=["new", "legacy"])
@pytest.mark.parametrize("family,steps", [("dp3", 10), ("mp1", 3), ("dm1", 2), ("flowpolicy", 4)])
def test_weight_one_is_the_member_alone(tmp_path, family, steps, legacy):
    """Each member keeps its own conventions (x0 clipping and DDIM update, flow start, clamp); the
    other member, of the other conventions, must not leak into the result at weight 0."""
    other = "dp3" if family != "dp3" else "mp1"
    a = _checkpoint(tmp_path, family, 0, legacy=legacy, gain=3.0)
    b = _checkpoint(tmp_path, other, 1, legacy=not legacy, gain=3.0)
    alone = ChunkPolicy(TASK, SUITE, checkpoint=str(a), steps=steps)
    conventions = alone.model.config
    assert (conventions.clip_sample, conventions.output_clamp) == ((False, 1.5) if legacy else (True, None))
    first = ComposedPolicy(TASK, SUITE, members=f"{family}@{a}+{other}@{b}", w=1.0, steps=steps,
                           schedule="ddim" if family == "dp3" else "uniform")
    expected = _actions(alone)
    np.testing.assert_allclose(_actions(first), expected, atol=2e-5)
    # the conventions take effect here: the legacy clamp bounds the chunk by 1.5, dp3's x0 clipping by 1, and
    # the new flows are not clamped
    bound, top = (1.5 if legacy else 1.0 if family == "dp3" else None), np.abs(expected).max()
    assert top > 1.5 if bound is None else top == pytest.approx(bound)


@pytest.mark.parametrize("update", ["diffusers-0.11.1", "diffusers-0.15"])
def test_mixing_two_ddpm_members_is_native_epsilon_mixing(tmp_path, update):
    """Two dp3 members at w = 0.3: GPC's output is the members' sampler (DDIM, x0 clipped, this
    update rule) run on the mixed noise prediction eps = w eps_a + (1 - w) eps_b - the official GPC
    mixes the raw epsilon outputs (scores) before one scheduler step. With convex weights at one
    x_t, mixing eps, scores or x0 is the same arithmetic; what differs is mixing after the sampler's
    non-linear part: each member's own (clipped) DDIM step mixed, which this test tells apart."""
    from evalsuite_policies.generative import ddim_step, ddim_timesteps

    w, steps = 0.3, 5
    folders = [_checkpoint(tmp_path, "dp3", seed, gain=4.0, ddim_update=update) for seed in (0, 1)]
    policy = ComposedPolicy(TASK, SUITE, members="+".join(f"dp3@{f}" for f in folders), w=w, steps=steps, mix="native")
    models = policy.models
    obs = {"state": torch.as_tensor(np.random.default_rng(0).random((4, 2, 3)), dtype=torch.float32)}
    with torch.no_grad():
        conds = [m.encode(obs) for m in models]
    noise = torch.randn((4, 4, 2), generator=torch.Generator().manual_seed(5))

    def native(mix_steps: bool) -> torch.Tensor:
        """DDIM in float64 on the members' predictions: their eps mixed, or (``mix_steps``) their steps."""
        ac = models[0].alphas_cumprod.double()
        ts = ddim_timesteps(len(ac), steps)
        x = noise.double()
        for i, k in enumerate(ts):
            ab, ab_prev = ac[k], (ac[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64))
            x0s = [m.net(x.float(), [torch.full((4,), float(k))], c).double() for m, c in zip(models, conds, strict=False)]
            if mix_steps:
                x = sum(wi * ddim_step(x, x0, ab, ab_prev, update=update) for wi, x0 in zip((w, 1 - w), x0s, strict=False))
                continue
            eps = [(x - ab.sqrt() * x0) / (1 - ab).sqrt() for x0 in x0s]
            eps_mix = w * eps[0] + (1 - w) * eps[1]
            x0_mix = (x - (1 - ab).sqrt() * eps_mix) / ab.sqrt()  # what the sample-predicting sampler is given
            x = ddim_step(x, x0_mix, ab, ab_prev, update=update)
        return x

    with torch.no_grad():
        composed = compose_sample(models, policy.weights, conds, noise, policy.times).double()
        expected, steps_mixed = native(False), native(True)
    # 1e-5: a member's own float32 DDIM differs from this float64 one by ~2e-6 here
    np.testing.assert_allclose(composed.numpy(), expected.numpy(), atol=1e-5)
    assert (steps_mixed - expected).abs().max() > 1e-2  # clipping is active: the wrong order would be caught


def test_snr_matching_and_ddim_times():
    from evalsuite_policies.generative import cosine_alphas_cumprod

    ac = cosine_alphas_cumprod(100)
    for k in (0, 7, 50, 99):
        a, s = float(ac[k]) ** 0.5, float(1 - ac[k]) ** 0.5
        kk, abar = ddpm_timestep(ac, s / (a + s))
        assert kk == pytest.approx(k, abs=1e-4) and abar == pytest.approx(float(ac[k]), rel=1e-4)
    times = ddim_times(ac, 10)
    assert len(times) == 11 and times[-1] == 0 and all(x > y for x, y in zip(times, times[1:], strict=False))


def test_mixing_changes_the_actions_between_the_members(tmp_path):
    a, b = _checkpoint(tmp_path, "dp3", 0), _checkpoint(tmp_path, "mp1", 1)
    acts = {w: _actions(ComposedPolicy(TASK, SUITE, members=f"dp3@{a}+mp1@{b}", w=w)) for w in (0.0, 0.5, 1.0)}
    assert not np.allclose(acts[0.5], acts[0.0]) and not np.allclose(acts[0.5], acts[1.0])
    three = ComposedPolicy(TASK, SUITE, members=f"dp3@{a}+mp1@{b}+dp3@{a}", weights="0.25+0.5+0.25")
    np.testing.assert_allclose(_actions(three), acts[0.5], atol=2e-5)  # same members, same total weights
    assert three.requirements.notes["nfe"] == 30


def test_incompatible_members_are_refused_with_the_reason(tmp_path):
    a = _checkpoint(tmp_path, "dp3", 0)
    long = _checkpoint(tmp_path, "dp3", 1, horizon=8)
    other_data = _checkpoint(tmp_path, "mp1", 2, action_high=2.0)
    flow = _checkpoint(tmp_path, "mp1", 3)
    legacy = _checkpoint(tmp_path, "dp3", 4, legacy=True)
    cases = [
        (dict(members=f"dp3@{a}+dp3@{long}"), "differ in horizon (4 vs 8)"),
        (dict(members=f"dp3@{a}+mp1@{other_data}"), "normalize actions differently"),
        (dict(members=f"dp3@{a}+mp1@{flow}", mix="native"), "predicts sample (x0) under DDPM noise and"),
        (dict(members=f"dp3@{a}+dp3@{legacy}", mix="native"), "sample differently (clip_sample, ddim_update"),
        (dict(members=f"dp3@{a}+scripted"), "'scripted' exposes no denoiser or velocity field"),
        (dict(members=f"dp3@{a}+mp1@{flow}", w=1.5), "non-negative weights summing to 1"),
        (dict(members=f"dp3@{a}"), "give two or more"),
        (dict(members=f"mp1@{flow}+mp1@{flow}", schedule="ddim"), "needs a DDPM member"),
    ]
    for params, message in cases:
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
            ComposedPolicy(TASK, SUITE, **params)
    ComposedPolicy(TASK, SUITE, members=f"dp3@{a}+dp3@{a}", mix="native")  # one type, one sampler: fine
    ComposedPolicy(TASK, SUITE, members=f"dp3@{a}+dp3@{legacy}")  # two samplers: mixed as velocities


def test_compose_chooses_the_weight_on_other_episodes_than_it_reports(tmp_path, fake_suite, capsys):
    import json

    from evalsuite.cli import main

    def ckpt(seed):
        torch.manual_seed(seed)
        cfg = ModelConfig(family="dp3", obs={"state": ("lowdim", (2,))}, action_dim=2, horizon=4, n_obs_steps=1,
                          n_action_steps=2, down_dims=(16, 32), feature_dim=16, train_steps=20)
        model = ChunkModel(cfg)
        model.normalizer.fit("state", np.array([[0, 0], [12, 12.0]]))
        model.normalizer.fit("action", np.array([[-1, -1], [2, 1.0]]))
        return save_checkpoint(model.eval(), tmp_path / f"m{seed}")

    a, b = ckpt(0), ckpt(1)
    out = tmp_path / "compose"
    assert main(["compose", "suite=fake", "tasks=[t1]", f"members=[dp3@{a},dp3@{b}]", "weights=[0.3,0.7]",
                 "episodes=4", "fresh_episodes=6", "steps=2", f"out={out}", "tracking_uri=none", "progress=false"]) == 0
    result = json.loads((out / "compose.json").read_text())
    assert [c["w"] for c in result["curve"]] == [0.0, 0.3, 0.7, 1.0]
    assert result["chosen_w"] in (0.3, 0.7) and result["fresh_seed"] != result["selection_seed"]
    confirm = json.loads((out / "confirmation" / "results.json").read_text())
    assert len(confirm["policies"]) == 3 and confirm["episodes_per_task"] == 6 and confirm["trials"]["policy_errors"] == 0
    assert {t["member"] for t in result["paired_tests"]} == {f"dp3:checkpoint={a}", f"dp3:checkpoint={b}"}
    assert len(result["paired_tests"]) == 2
    assert (out / "compose.png").exists() and "Beats both members" in capsys.readouterr().out
