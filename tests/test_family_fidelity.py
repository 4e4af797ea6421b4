"""The legacy checkpoints (trained before issue 16's fixes, kept under policies/checkpoints/legacy/) act
exactly as they were trained: a config.json without the new convention fields reads as the legacy
conventions."""

import json
from pathlib import Path

import pytest
import torch

from evalsuite_policies.chunked import (
    LEGACY_CONVENTIONS,
    ModelConfig,
    config_from_dict,
    load_checkpoint,
    save_checkpoint,
)

LEGACY = Path(__file__).resolve().parents[1] / "policies" / "checkpoints" / "legacy"

# The chunk each checkpoint sampled, before the fixes, for the observation and noise of ``_inputs`` (seed 0).
FROZEN = {
    "dp3/metaworld/drawer-open": (
        [[-0.001121, -0.570057, -0.154040, -0.933173],
        [0.080255, -0.682225, -0.142070, -1.021795],
        [0.168642, -0.773874, -0.583409, -1.025196],
        [0.205116, -0.850890, -0.672548, -0.946385],
        [0.216755, -0.725555, -0.662865, -1.032461],
        [0.234530, -0.804948, -0.724668, -0.919793],
        [0.217159, -0.718763, -0.716676, -1.029713],
        [0.267466, -0.857743, -0.753633, -0.984258],
        [0.176717, -0.867715, -0.571557, -1.034675],
        [0.237282, -0.942726, -0.514147, -0.984199],
        [0.189880, -0.833138, -0.408396, -0.984604],
        [0.248254, -0.911345, -0.517952, -1.023758],
        [0.175169, -0.916302, -0.423980, -1.059515],
        [0.248963, -0.969925, -0.393560, -1.005201],
        [0.062009, -1.040473, -0.075223, -0.932335],
        [0.041848, -1.124256, -0.168863, -0.926259]]),
    "flowpolicy/metaworld/drawer-open": (
        [[-0.095624, -0.254994, 0.149271, -0.964690],
        [-0.247162, -0.130764, 0.183511, -1.152005],
        [0.007534, 0.008177, -0.132499, -0.426157],
        [-0.175056, -0.205868, -0.375131, -1.333638]]),
    "mp1/metaworld/drawer-open": (
        [[0.117433, -1.049075, -0.263926, -1.093346],
        [0.062446, -1.054636, -0.366186, -1.008794],
        [0.151805, -0.925346, -0.223767, -0.997292],
        [0.066707, -0.866639, -0.659847, -1.134966]]),
    "dm1/robomimic/lift": (
        [[0.556581, -0.337294, -0.409820, -0.065164, 0.132526, 1.126225, -0.608792],
        [0.544649, -0.291387, -0.133660, 0.131081, 0.171532, 1.301776, -0.374624],
        [0.473173, -0.549219, -0.250211, 0.075119, -0.119784, 1.017580, -0.553160],
        [0.476841, -0.443371, 0.023604, 0.233368, 0.077140, 0.917590, -0.824547],
        [0.482005, -0.437322, -0.427902, -0.015503, 0.000451, 0.890186, -0.551916],
        [0.282805, -0.410176, -0.358724, 0.317874, -0.207943, 0.762554, -0.502569],
        [0.328758, -0.494468, 0.016605, -0.085473, 0.168764, 0.634486, -0.637385],
        [0.183395, -0.434400, -0.023690, 0.096554, -0.153517, 0.469788, -0.524871],
        [0.059853, -0.587299, -0.062229, -0.084176, -0.077145, 0.494837, -0.458930],
        [0.137608, -0.380686, 0.027623, 0.000772, -0.172385, 0.538025, -0.769811],
        [-0.112410, -0.269799, 0.123622, -0.124772, -0.327627, 0.337680, -0.494665],
        [0.053877, -0.251877, 0.379093, 0.003867, 0.158656, 0.306764, -0.727712],
        [-0.052992, -0.107740, 0.088053, -0.253203, -0.007500, 0.527544, -0.398284],
        [0.007956, -0.078745, -0.234997, -0.137441, 0.083805, 0.238662, -0.257966],
        [-0.175751, 0.038416, -0.297384, 0.274994, 0.131533, 0.304588, -0.645301],
        [-0.121494, -0.138627, -0.027862, 0.203508, 0.066406, 0.128369, -0.775762]]),
}


def _inputs(model):
    c = model.config
    g = torch.Generator().manual_seed(0)
    obs = {}
    for key, (_, shape) in c.obs.items():
        low, high = getattr(model.normalizer, f"{key}__low"), getattr(model.normalizer, f"{key}__high")
        obs[key] = low + torch.rand((1, c.n_obs_steps, *shape), generator=g) * (high - low)
    return obs, torch.randn((1, c.horizon, c.action_dim), generator=g)


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_legacy_checkpoint_acts_as_before(name):
    model, _ = load_checkpoint(LEGACY / name)
    obs, noise = _inputs(model)
    chunk = model.sample(obs, noise, 10 if model.config.family == "dp3" else 1)
    assert torch.allclose(chunk[0], torch.tensor(FROZEN[name]), atol=2e-5)


def test_config_without_the_new_fields_reads_as_legacy_and_new_ones_write_them(tmp_path):
    meta = json.loads((LEGACY / "dp3/metaworld/drawer-open/config.json").read_text())
    legacy = config_from_dict(meta["config"])
    assert {k: getattr(legacy, k) for k in LEGACY_CONVENTIONS} == LEGACY_CONVENTIONS
    fresh = ModelConfig(family="flowpolicy", obs={"state": ("lowdim", (3,))}, action_dim=2, horizon=4,
                        n_action_steps=3, down_dims=(8, 16))
    assert fresh.time_scale == 99.0 and fresh.flow_eps == 0.01 and not fresh.ema_target
    from evalsuite_policies.chunked import ChunkModel

    save_checkpoint(ChunkModel(fresh), tmp_path / "new")
    written = json.loads((tmp_path / "new" / "config.json").read_text())["config"]
    assert {k: written[k] for k in LEGACY_CONVENTIONS} == {k: getattr(fresh, k) for k in LEGACY_CONVENTIONS}
    assert config_from_dict(written) == fresh


@pytest.mark.parametrize("family", ["dp3", "flowpolicy", "mp1", "dm1"])
def test_a_bare_family_name_loads_a_fixed_code_checkpoint_for_every_shipped_task(family):
    """The defaults are seed 0 of the retrained sets: the paper's chunking and sampling conventions
    (a fresh config's), trained on the task it is asked for - not the legacy checkpoints."""
    from evalsuite import registry
    from evalsuite.harness import build_policy
    from evalsuite_policies.chunked import FAMILY_CHUNKING

    shipped = {"metaworld": ("drawer-open", "coffee-push", "pick-place"), "robomimic": ("lift", "can")}
    for suite_id, tasks in shipped.items():
        for task in tasks:
            policy = build_policy(family, {}, task, registry.suites.get(suite_id))
            c, training = policy.model.config, policy.meta["training"]
            paper = ModelConfig(family=family, obs=c.obs, action_dim=c.action_dim)
            assert {k: getattr(c, k) for k in LEGACY_CONVENTIONS} == {k: getattr(paper, k) for k in LEGACY_CONVENTIONS}
            assert (c.horizon, c.n_obs_steps, c.n_action_steps) == FAMILY_CHUNKING[family]
            assert c.extra["task"] == task and training["seed"] == 0 and training["iters"] == 1000
