"""`evalsuite serve` asked by the official openpi client: ``openpi-client`` (Physical Intelligence's
package, which pins numpy < 2) installed from the registry into a virtual environment of its own,
its ``WebsocketClientPolicy`` connecting to a served policy as it would to an openpi server.

The environment is built once per openpi-client version under ``.nox/openpi-client/VERSION``
(git ignores .nox) and reused: about 15 s cold here, well under a second warm. It needs the package
registry: without it the test fails and says so (a skip would hide that the client was never
tried).
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from evalsuite import registry
from evalsuite.harness import build_policy
from evalsuite.runner.envs import build_env
from tests.conftest import REPO
from tests.servers import ServedProcess as Server

VERSION = "0.1.2"
# openpi-client 0.1.2 imports typing_extensions (websocket_client_policy.py) without declaring it.
INSTALL = [f"openpi-client=={VERSION}", "typing_extensions"]
VENV = REPO / ".nox" / "openpi-client" / VERSION
INSTRUCTION = "open the drawer"

# Runs in openpi-client's environment: numpy 1.x, openpi_client, nothing of evalsuite.
CLIENT = r"""
import json, sys
import numpy as np
from openpi_client import websocket_client_policy

port, states, out, task = int(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3], sys.argv[4]
client = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port)
replies = [client.infer({"observation.state": state, "task": task}) for state in states]
np.save(out, np.stack([reply["actions"] for reply in replies]))
print(json.dumps({"numpy": np.__version__, "metadata": client.get_server_metadata(),
                  "keys": sorted({key for reply in replies for key in reply})}, default=str))
"""


def _pip_failed(what: str, done: subprocess.CompletedProcess[str]) -> None:
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
    pytest.fail(f"{what} failed (exit {done.returncode}); this test needs the package registry to install "
                f"openpi-client=={VERSION} into {VENV} - with no network it fails rather than skips:\n{tail}",
                pytrace=False)


@pytest.fixture(scope="session")
def openpi_python() -> Path:
    """The python of a venv holding openpi-client (built on first use, then reused; a lock keeps
    parallel sessions from building it twice, a stamp written last keeps a half-built one from
    being used; a changed install line rebuilds it)."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    python, stamp = VENV / "bin" / "python", VENV / "installed"
    with open(VENV.parent / f"{VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.read_text() != " ".join(INSTALL):
            shutil.rmtree(VENV, ignore_errors=True)
            done = subprocess.run([sys.executable, "-m", "venv", str(VENV)], capture_output=True, text=True)
            if done.returncode:
                _pip_failed("python -m venv", done)
            done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                   *INSTALL], capture_output=True, text=True, timeout=900)
            if done.returncode:
                _pip_failed(f"pip install openpi-client=={VERSION}", done)
            stamp.write_text(" ".join(INSTALL))
    return python


def _ask(python: Path, server: Server, states: np.ndarray, tmp_path: Path) -> tuple[dict, np.ndarray]:
    np.save(tmp_path / "states.npy", states)
    done = subprocess.run([str(python), "-c", CLIENT, str(server.port), str(tmp_path / "states.npy"),
                           str(tmp_path / "actions.npy"), INSTRUCTION], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout), np.load(tmp_path / "actions.npy")


def _serve(policy: str) -> Server:
    return Server([sys.executable, "-m", "evalsuite", "serve", f"policy={policy}", "suite=metaworld-smoke",
                   "task=drawer-open", "port=0", "threads=1"])


def _drawer_states(n: int) -> np.ndarray:
    """Drawer-open states (float32, as the wire carries them): the initial one and n - 1 more along
    the scripted expert's episode, so the server is asked about different states on one connection."""
    suite = registry.suites.get("metaworld-smoke")
    env = build_env(suite, "drawer-open", suite.task("drawer-open").max_steps)
    expert = build_policy("scripted", {}, "drawer-open", suite)
    expert.reset(0, 0)
    obs, _ = env.reset(7, 0)
    states = []
    for _ in range(n):
        states.append(obs["state"].astype(np.float32))
        for _ in range(15):
            obs = env.step(expert.act({"state": obs["state"][None]}, np.array([0]))[0]).obs
    env.close()
    return np.stack(states)


def test_openpi_client_gets_the_in_process_actions_of_the_scripted_policy(openpi_python, tmp_path):
    states = _drawer_states(3)
    assert len({s.tobytes() for s in states}) == 3  # the episode moved: three different questions
    suite = registry.suites.get("metaworld-smoke")
    local = build_policy("scripted", {}, "drawer-open", suite)
    local.reset(0, 0)
    expected = np.stack([local.act({"state": s.astype(np.float64)[None]}, np.array([0])) for s in states])
    server = _serve("scripted")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as answer:
            assert answer.status == 200
        info, actions = _ask(openpi_python, server, states, tmp_path)
    finally:
        server.stop()
    assert int(info["numpy"].split(".")[0]) == 1  # the client's own environment, with its numpy < 2 pin
    meta = info["metadata"]
    assert meta["action_dim"] == 4 and meta["policy"] == "scripted" and meta["task"] == "drawer-open", meta
    assert meta["wire"]["observation.state"] == [["state", 39]], meta
    assert info["keys"] == ["actions"]
    assert actions.shape == expected.shape == (3, 1, 4) and actions.dtype == expected.dtype
    np.testing.assert_array_equal(actions, expected)  # exactly: the same computation on the same float32 state


def test_openpi_client_gets_a_chunked_two_frame_policy_one_action_a_request(openpi_python, tmp_path):
    """mp1 (two observation frames, a chunk of 3 actions per sample) is served one action per
    request: the client gets (1, 4) each time, and the actions are the in-process chunks' in order
    (the server seeds the client's one connection with seed 0 and pads the history with the first
    frame, as the harness does)."""
    calls = 7  # two chunks of 3 and one action of a third
    states = np.repeat(_drawer_states(1), calls, axis=0)
    server = _serve("mp1")
    try:
        info, actions = _ask(openpi_python, server, states, tmp_path)
    finally:
        server.stop()
    assert info["metadata"]["policy"] == "mp1" and info["metadata"]["n_obs_steps"] == 2
    assert actions.shape == (calls, 1, 4) and np.isfinite(actions).all()
    local = build_policy("mp1", {}, "drawer-open", registry.suites.get("metaworld-smoke"))
    local.reset(0, 0)
    history = np.repeat(states[:1].astype(np.float64), 2, axis=0)[None]  # (1, n_obs_steps, 39)
    chunks = np.concatenate([local.act({"state": history}, np.array([0]))[0] for _ in range(3)])
    assert len({a.tobytes() for a in actions[:, 0]}) > 1  # not one action repeated
    np.testing.assert_allclose(actions[:, 0], chunks[:calls], rtol=1e-5, atol=1e-6)  # 0.0 here; threads differ
