"""LeRobot in its own environment (.nox/lerobot): the bridge server against a tiny ACT made by LeRobot,
scripted demos written as a LeRobotDataset and read back by LeRobot, and `evaluate` of the shipped
ACT beside the scripted expert, end to end.

They need `nox -s lerobot_env` (about 5 GB, so the default run does not build it): they are `slow`
(`nox -s tests_slow`), and where the environment is missing they fail saying so, never skip."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from evalsuite import wire
from evalsuite.demos import lerobot_python
from evalsuite.errors import UsageError
from tests.conftest import REPO

pytestmark = pytest.mark.slow

# Run by the LeRobot environment's python: a tiny ACT with its processors, saved as lerobot-train saves one.
TINY_ACT = """
import sys
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.factory import make_pre_post_processors

torch.manual_seed(0)
state = PolicyFeature(FeatureType.STATE, (3,))
config = ACTConfig(input_features={"observation.state": state, "observation.environment_state":
                                   PolicyFeature(FeatureType.ENV, (3,))},
                   output_features={"action": PolicyFeature(FeatureType.ACTION, (2,))}, device="cpu",
                   chunk_size=4, n_action_steps=4, dim_model=16, n_heads=2, dim_feedforward=32, n_encoder_layers=1,
                   n_decoder_layers=1, use_vae=False, pretrained_backbone_weights=None, push_to_hub=False)
unit = {"mean": torch.zeros(3), "std": torch.ones(3)}
stats = {"observation.state": unit, "observation.environment_state": unit,
         "action": {"mean": torch.zeros(2), "std": torch.ones(2)}}
preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=stats)
for part in (ACTPolicy(config), preprocessor, postprocessor):
    part.save_pretrained(sys.argv[1])
"""

# Run by the LeRobot environment's python: the dataset as LeRobot reads it for training.
READ_DATASET = """
import json, sys
from lerobot.datasets.lerobot_dataset import LeRobotDataset

dataset = LeRobotDataset("evalsuite/check", root=sys.argv[1], delta_timestamps={"action": [0.0, 1 / 80]})
item = dataset[0]
print(json.dumps({"episodes": dataset.num_episodes, "frames": dataset.num_frames, "fps": dataset.fps,
                  "version": dataset.meta.info["codebase_version"], "task": item["task"],
                  "state0": item["observation.state"].tolist(), "env_state0": item["observation.environment_state"].tolist(),
                  "action01": item["action"].tolist(), "features": sorted(dataset.features)}))
"""


@pytest.fixture(scope="module")
def lerobot_env() -> Path:
    try:
        return lerobot_python()
    except UsageError as exc:
        pytest.fail(f"these tests need LeRobot's environment: {exc}", pytrace=False)


def _in_lerobot(python: Path, code: str, *args: str) -> str:
    done = subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def tiny_act(lerobot_env, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-act")
    _in_lerobot(lerobot_env, TINY_ACT, str(folder))
    return folder


class Episode:
    """One connection to the bridge (closed with ``connections``): the metadata it sent, and its answers."""

    def __init__(self, connections: contextlib.ExitStack, url: str, seed: int | None = None) -> None:
        from websockets.sync.client import connect

        self.connection = connections.enter_context(connect(url, compression=None))
        self.metadata = wire.unpack(self.connection.recv())
        if seed is not None:
            self.connection.send(wire.pack({wire.EPISODE_START: {"seed": seed}}))
            assert wire.unpack(self.connection.recv()) == {"ok": True}

    def act(self, state: list[float]) -> np.ndarray:
        self.connection.send(wire.pack({"observation.state": np.asarray(state, np.float32), "task": "do it"}))
        return np.asarray(wire.unpack(self.connection.recv())["action"])



def test_bridge_serves_a_lerobot_policy_one_step_at_a_time_with_a_queue_per_connection(lerobot_env, tiny_act):
    from evalsuite_policies.lerobot import BridgeServer

    server = BridgeServer(tiny_act, lerobot_env, "cpu", 1)
    try:
        with urllib.request.urlopen(server.url.replace("ws://", "http://") + "/healthz", timeout=5) as answer:
            assert answer.status == 200
        with contextlib.ExitStack() as connections:
            a, b = Episode(connections, server.url, seed=1), Episode(connections, server.url)
            assert a.metadata["action_dim"] == 2 and a.metadata["n_action_steps"] == 1
            assert a.metadata["policy"]["type"] == "act" and a.metadata[wire.EPISODE_START] is True
            assert a.metadata["input_features"] == {"observation.state": [3], "observation.environment_state": [3]}
            x, y, z = [0.1, 0.2, 0.3], [-1.0, 0.5, 2.0], [3.0, -3.0, 0.0]
            a_first, b_first = a.act(x), b.act(y)  # interleaved: each connection computes its own chunk
            a_second = a.act(z)  # from a's queue (the chunk for x), whatever b did in between
            assert a_first.shape == (2,) and a_first.dtype == np.float32
            assert not np.allclose(a_first, b_first)
            fresh = Episode(connections, server.url)  # a new connection is a new episode: its own first chunk
            assert np.allclose(fresh.act(x), a_first) and np.allclose(fresh.act(y), a_second)
            assert np.allclose(Episode(connections, server.url).act(y), b_first)
            bad = Episode(connections, server.url)
            bad.connection.send(wire.pack({"observation.state": np.zeros(5, np.float32), "task": "do it"}))
            frame = bad.connection.recv()
            assert isinstance(frame, str) and "'observation.state' has shape (5,), the policy expects (3,)" in frame
    finally:
        server.stop()
    assert server.process.returncode is not None


def test_demos_format_lerobot_is_a_dataset_lerobot_reads(lerobot_env, tmp_path):
    from evalsuite import demos

    out = tmp_path / "drawer-open"
    done = subprocess.run([sys.executable, "-m", "evalsuite", "demos", "suite=metaworld-smoke", "task=drawer-open", "n=2",
                           "seed=5", "format=lerobot", f"out={out}"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "2 successful demos" in done.stdout and "LeRobotDataset v3.0" in done.stdout
    read = json.loads(_in_lerobot(lerobot_env, READ_DATASET, str(out)).strip().splitlines()[-1])
    ours = demos.collect("metaworld-smoke", "drawer-open", 2, seed=5)
    assert read["episodes"] == 2 and read["frames"] == sum(len(e.actions) for e in ours.episodes)
    assert read["fps"] == 80 and read["task"] == "open the drawer"
    assert set(read["features"]) >= {"observation.state", "observation.environment_state", "action", "task_index"}
    first = ours.episodes[0]
    assert np.allclose(read["state0"], first.obs["state"][0], atol=1e-6)
    assert read["env_state0"] == read["state0"]
    assert np.allclose(read["action01"], first.actions[:2], atol=1e-6)
    provenance = json.loads((out / "meta" / "evalsuite.json").read_text())
    assert provenance["suite"] == "metaworld-smoke" and provenance["kept"] == 2 and provenance["seed"] == 5


def test_evaluate_the_shipped_lerobot_act_beside_the_scripted_expert(lerobot_env, tmp_path):
    """The README's command, small: the server is started, used by parallel episodes and stopped."""
    done = subprocess.run([sys.executable, "-m", "evalsuite", "evaluate", "suite=metaworld-smoke", "tasks=[drawer-open]",
                           "policies=[lerobot,scripted]", "episodes=4", "video=none", "progress=false",
                           "tracking_uri=none", "out=run"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    text = json.dumps(results)
    assert "lerobot" in text and "scripted" in text
    rows = [line for line in done.stdout.splitlines() if line.startswith("drawer-open")]
    assert len(rows) == 2 and any("lerobot" in row for row in rows)
    lerobot_row = next(row for row in rows if "lerobot" in row)
    assert "(0/4)" not in lerobot_row, lerobot_row  # the shipped ACT opens the drawer (docs/lerobot.md: its rate)
    leftover = subprocess.run(["pgrep", "-f", str(REPO / "policies" / "lerobot_bridge" / "serve_lerobot.py")],
                              capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "a bridge server outlived the evaluation"


# Run by the LeRobot environment's python: each episode of an exported run as LeRobot reads it.
READ_EXPORT = """
import json, sys
from lerobot.datasets.lerobot_dataset import LeRobotDataset

dataset = LeRobotDataset("evalsuite/check", root=sys.argv[1])
episodes = []
for e in range(dataset.num_episodes):
    start, end = (int(dataset.meta.episodes[e][k]) for k in ("dataset_from_index", "dataset_to_index"))
    frames = [dataset[i] for i in range(start, end)]
    episodes.append({"frames": end - start, "trial_id": sorted({f["trial_id"] for f in frames}),
                     "policy_code": sorted({f["policy_code"] for f in frames}),
                     "success": sorted({bool(f["success"]) for f in frames}),
                     "progress": sorted({round(float(f["progress"]), 6) for f in frames}),
                     "task": sorted({f["task"] for f in frames}),
                     "states": [f["observation.state"].tolist() for f in frames],
                     "actions": [f["action"].tolist() for f in frames]})
print(json.dumps({"episodes": episodes, "fps": dataset.fps, "features": sorted(dataset.features),
                  "version": dataset.meta.info.codebase_version}))
"""


def test_export_format_lerobot_replays_a_run_into_a_dataset_lerobot_reads(lerobot_env, tmp_path):
    """2 policies x 2 episodes of drawer-open (the scripted expert succeeds, the noisy one does not in 100
    steps): each frame a journaled step, the codes and no labels, and the scripted episode's actions what
    the scripted expert answers on the recorded observations."""
    from evalsuite import registry
    from evalsuite.api import Run
    from evalsuite.harness import build_policy
    from evalsuite.wire import Layout

    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "evalsuite", "evaluate", "suite=metaworld-smoke", "tasks=[drawer-open]",
                           "policies=[scripted,noisy-scripted:noise=0.5]", "episodes=2", "max_steps=100",
                           "video=none", "progress=false", "tracking_uri=none", f"out={run}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "dataset"
    done = subprocess.run([sys.executable, "-m", "evalsuite", "export", str(run), "format=lerobot", f"out={out}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 episodes" in done.stdout and "LeRobotDataset v3.0" in done.stdout, done.stdout
    saved = Run(run)
    journal = {r.trial_id: r for r in saved.final().values()}
    labels = saved.key.labels
    assert not any(label in done.stdout + (out / "meta" / "evalsuite.json").read_text() for label in labels.values())

    read = json.loads(_in_lerobot(lerobot_env, READ_EXPORT, str(out)).strip().splitlines()[-1])
    assert read["fps"] == 80
    assert {"observation.state", "action", "trial_id", "policy_code", "success", "progress"} <= set(read["features"])
    assert not any(label in json.dumps(read) for label in labels.values())
    assert sorted(t for e in read["episodes"] for t in e["trial_id"]) == sorted(journal)
    for episode in read["episodes"]:
        record = journal[episode["trial_id"][0]]
        assert episode["frames"] == record.steps and episode["policy_code"] == [record.policy_code]
        assert episode["success"] == [record.success] and episode["progress"] == [round(record.progress, 6)]
        assert episode["task"] == ["open the drawer"]
    assert {r.success for r in journal.values()} == {True, False}  # both outcomes are checked

    # known answer: the scripted expert on the recorded observations gives the recorded actions
    scripted = next(e for e in read["episodes"] if labels[e["policy_code"][0]] == "scripted")
    record = journal[scripted["trial_id"][0]]
    suite = registry.suites.get("metaworld-smoke")
    policy = build_policy("scripted", {}, "drawer-open", suite)
    policy.reset(record.policy_seed, 0)
    layout = Layout.of({"state": (39,)})
    for state, action in zip(scripted["states"], scripted["actions"], strict=True):
        obs = layout.decode({"observation.state": np.asarray(state, np.float32)}, {"state": (39,)})
        answer = policy.act({k: v[None] for k, v in obs.items()}, np.array([0]))[0]
        assert np.allclose(answer, action, atol=1e-4), (answer, action)
