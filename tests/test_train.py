"""`evalsuite train`: scripted demos -> a checkpoint the harness evaluates; an interrupted training
resumes to exactly the weights of an uninterrupted one."""

import json

import numpy as np
import pytest
import torch

from evalsuite.cli import main
from evalsuite.harness import EvaluateRequest, evaluate
from evalsuite.plan import PolicyEntry
from evalsuite_policies import train as tr
from evalsuite_policies.chunked import ModelConfig


@pytest.fixture(scope="module")
def demos_file(tmp_path_factory):
    from evalsuite import demos

    path = tmp_path_factory.mktemp("demos") / "drawer-open.hdf5"
    demos.write_dp3_hdf5(demos.collect("metaworld", "drawer-open", 2, seed=0, expert="scripted"), path)
    return path


def test_train_command_writes_a_checkpoint_the_harness_runs(demos_file, tmp_path):
    out = tmp_path / "fp"
    assert main(["train", "policy=flowpolicy", "suite=metaworld", "task=drawer-open", f"demos={demos_file}",
                 f"out={out}", "iters=15", "down_dims=[8,16]", "batch_size=8", "progress=false"]) == 0
    assert {"model.safetensors", "config.json", "loss.json", "loss.png"} <= {p.name for p in out.iterdir()}
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["family"] == "flowpolicy" and meta["training"]["iters"] == 15
    # FlowPolicy's paper chunking (horizon 4, 2 frames, 3 executed actions), not ModelConfig's 16/2/8 default
    assert (meta["config"]["horizon"], meta["config"]["n_obs_steps"], meta["config"]["n_action_steps"]) == (4, 2, 3)
    assert len(json.loads((out / "loss.json").read_text())) == 15
    results = evaluate(EvaluateRequest.of(suite="metaworld", tasks=["drawer-open"], policies=[
        PolicyEntry("flowpolicy", {"checkpoint": str(out)})], out=tmp_path / "run", episodes=2, max_steps=20,
        tracking_uri=None, progress=False), log=lambda *_: None)
    assert results.trials.complete and results.per_task[0].n == 2
    assert results.policies["flowpolicy:checkpoint=" + str(out)]["id"] == "flowpolicy"


def test_interrupted_training_resumes_to_the_same_weights(demos_file, tmp_path, monkeypatch):
    demos = tr.load_demos(demos_file)
    config = lambda: ModelConfig(family="mp1", obs={"state": ("lowdim", (39,))}, action_dim=4, horizon=4,  # noqa: E731
                                 n_obs_steps=2, n_action_steps=3, down_dims=(8, 16), feature_dim=8)
    kw = dict(iters=30, batch_size=8, save_every=10, progress=False, log=lambda *_: None)
    tr.train(config(), demos, tmp_path / "clean", **kw)

    real_gather, calls = tr.gather, []

    def crash_at_25(*args, **kwargs):
        calls.append(1)
        if len(calls) == 25:
            raise KeyboardInterrupt
        return real_gather(*args, **kwargs)

    monkeypatch.setattr(tr, "gather", crash_at_25)
    with pytest.raises(KeyboardInterrupt):
        tr.train(config(), demos, tmp_path / "cut", **kw)
    monkeypatch.setattr(tr, "gather", real_gather)
    logs = []
    tr.train(config(), demos, tmp_path / "cut", **{**kw, "log": logs.append})
    assert any("resuming training at iteration 20/30" in line for line in logs)
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "clean" / "model.safetensors")), load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert np.allclose(json.loads((tmp_path / "clean" / "loss.json").read_text()),
                       json.loads((tmp_path / "cut" / "loss.json").read_text()))


@pytest.mark.parametrize("args,fragment", [
    (["policy=dp4", "suite=metaworld", "task=drawer-open", "demos=1", "out=x"], "policy='dp4' is not trainable"),
    (["policy=dp3", "suite=metaworld", "task=drawer-open", "out=x"], "missing demos="),
    (["policy=dp3", "suite=metaworld", "task=drawer-open", "demos=/no/such.hdf5", "out=x"], "no such file"),
    (["policy=dm1", "suite=metaworld", "task=drawer-open", "demos=DEMOS", "out=x", "variant=triplet"],
     "variant='triplet'; accepted"),
    (["policy=dp3", "suite=metaworld", "task=drawer-open", "demos=DEMOS", "out=x", "horizon=6"], "divisible"),
])
def test_train_usage_errors(args, fragment, demos_file, capsys):
    assert main(["train", *[a.replace("DEMOS", str(demos_file)) for a in args]]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_deadline_stops_training_early_and_says_so(demos_file, tmp_path):
    demos = tr.load_demos(demos_file)
    config = ModelConfig(family="dp3", obs={"state": ("lowdim", (39,))}, action_dim=4, horizon=8, n_obs_steps=2,
                         n_action_steps=4, down_dims=(8, 16))
    summary = tr.train(config, demos, tmp_path / "ckpt", iters=10_000, batch_size=4, deadline_s=1e-9, progress=False,
                       log=lambda *_: None)
    assert summary["stopped_at_deadline"] and summary["iters"] < 10_000 and summary["planned_iters"] == 10_000
    assert (tmp_path / "ckpt" / "model.safetensors").exists()
