"""Remote policies over openpi's websocket protocol: the wire format, a server written by someone
else (tests/remote_servers/openpi_style_server.py imports nothing of evalsuite) evaluated as
``remote:ws://...`` with the outcomes of the same controller in-process, every fault classified,
and ``evalsuite serve`` giving the journal of the in-process policy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgpack
import numpy as np
import pytest

from evalsuite import registry, wire
from evalsuite.analysis import AnalysisOptions
from evalsuite.commands.options import parse_policy
from evalsuite.errors import UsageError
from evalsuite.harness import evaluate
from evalsuite.request import EvaluateRequest
from evalsuite.specs import PolicySpec
from tests.remote_servers.openpi_style_server import drawer_controller
from tests.servers import ServedProcess

SERVER = Path(__file__).parent / "remote_servers" / "openpi_style_server.py"


Server = ServedProcess  # the name the other server tests import


@pytest.fixture
def foreign():
    servers: list[Server] = []

    def start(mode: str = "stateless", *extra: str) -> Server:
        servers.append(Server([sys.executable, str(SERVER), "--mode", mode, *extra]))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


class DrawerTwin:
    """The foreign server's controller in-process (``wait``: its stateful mode)."""

    def __init__(self, task, suite, wait: int = 0) -> None:
        from evalsuite.interfaces import PolicyRequirements

        self.requirements = PolicyRequirements(obs_shapes={"state": (39,)}, action_dim=4)
        self.wait, self.steps = wait, {}

    def reset(self, seed, slot):
        self.steps[slot] = 0

    def act(self, observations, slots):
        out = []
        for row, slot in enumerate(slots):
            self.steps[int(slot)] += 1
            # the server computes on the float32 state the wire carries
            action = drawer_controller(np.asarray(observations["state"][row], dtype=np.float32).astype(np.float64))
            out.append([0.0, 0.0, 0.0, -1.0] if self.steps[int(slot)] <= self.wait else action)
        return np.asarray(out, dtype=np.float64)

    def fingerprint(self):
        return f"drawer-twin-{self.wait}"


def _register_twin() -> None:
    registry.policies.register(PolicySpec(id="drawer-twin", entry_point="tests.test_remote:DrawerTwin",
                                          params={"wait": 0}))


def _outcomes(run_dir: Path) -> dict[tuple[str, int], list[tuple[str, int]]]:
    """(task, initial condition) -> every attempt's (status, steps), per policy label."""
    key = json.loads((run_dir / "blinding.json").read_text())
    out: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for line in (run_dir / "episodes.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.setdefault((key[r["policy_code"]]["label"], r["ic_index"]), []).append((r["status"], r["steps"]))
    return out


def _run(tmp_path: Path, name: str, policies: list[str], episodes: int = 4, **options) -> dict:
    req = EvaluateRequest.of("metaworld-smoke", [parse_policy(p) for p in policies], tmp_path / name,
                             tasks=("drawer-open",), episodes=episodes, tracking_uri=None, video="none",
                             progress=False, **options)
    evaluate(req, log=lambda _: None)
    return _outcomes(tmp_path / name)


# --- the wire ---------------------------------------------------------------------------------------------

@pytest.mark.unit
def test_arrays_travel_as_openpi_packs_them():
    """openpi's msgpack_numpy map (bytes keys, dtype string, shape) both ways, every plain dtype."""
    for dtype in ("float32", "float64", "uint8", "int64", "bool"):
        array = np.arange(12).reshape(3, 4).astype(dtype)
        frame = wire.pack({"observation.state": array, "task": "open the drawer"})
        raw = msgpack.unpackb(frame, raw=False)
        assert raw["observation.state"][b"__ndarray__"] is True and raw["observation.state"][b"dtype"] == array.dtype.str
        back = wire.unpack(frame)
        assert back["task"] == "open the drawer" and back["observation.state"].dtype == array.dtype
        np.testing.assert_array_equal(back["observation.state"], array)
    # str keys (the spelling) are read too
    str_keyed = msgpack.packb({"actions": {"__ndarray__": True, "data": np.ones(4, "<f4").tobytes(), "dtype": "<f4",
                                           "shape": [1, 4]}})
    assert wire.actions_of(wire.unpack(str_keyed)).shape == (1, 4)


@pytest.mark.unit
@pytest.mark.parametrize("frame, says", [
    (b"\xc1\xc1 not msgpack", "not a msgpack frame"),
    (msgpack.packb([1, 2, 3]), "expected a msgpack map"),
    (msgpack.packb({"a": {b"__ndarray__": True, b"data": b"1234", b"dtype": "|O", b"shape": [1]}}), "only numbers"),
    (msgpack.packb({"a": {b"__ndarray__": True, b"data": b"123", b"dtype": "<f4", b"shape": [2]}}), "does not fit"),
    (msgpack.packb({"a": {b"__ndarray__": True, b"data": b"1234", b"dtype": "<f4", b"shape": [-1]}}), "malformed"),
])
def test_frames_that_are_not_the_protocol_are_refused(frame, says):
    with pytest.raises(wire.WireError, match=says):
        wire.unpack(frame)


@pytest.mark.unit
def test_a_huge_frame_is_refused_before_it_is_parsed(monkeypatch):
    monkeypatch.setattr(wire, "MAX_FRAME_BYTES", 1000)
    with pytest.raises(wire.WireError, match="over the limit"):
        wire.unpack(b"\x00" * 1001)


@pytest.mark.unit
def test_observations_travel_under_lerobot_names_and_come_back():
    shapes = {"robot0_eef_pos": (3,), "robot0_gripper_qpos": (2,), "agentview_image": (84, 84, 3),
              "point_cloud": (5, 3)}
    layout = wire.Layout.of(shapes)
    rng = np.random.default_rng(0)
    obs = {"robot0_eef_pos": rng.normal(size=3), "robot0_gripper_qpos": rng.normal(size=2),
           "agentview_image": rng.integers(0, 256, (84, 84, 3)).astype(np.uint8), "point_cloud": rng.normal(size=(5, 3))}
    message = layout.encode(obs, "lift the cube")
    assert sorted(message) == ["observation.images.agentview", "observation.point_cloud", "observation.state", "task"]
    assert message["observation.state"].dtype == np.float32 and message["observation.state"].shape == (5,)
    np.testing.assert_array_equal(message["observation.state"][3:], obs["robot0_gripper_qpos"].astype(np.float32))
    back = layout.decode(wire.unpack(wire.pack(message)), shapes)
    np.testing.assert_array_equal(back["agentview_image"], obs["agentview_image"])
    np.testing.assert_array_equal(back["robot0_eef_pos"], obs["robot0_eef_pos"].astype(np.float32))
    with pytest.raises(wire.WireError, match="has 4 values, expected 5"):
        layout.decode({**message, "observation.state": np.zeros(4, np.float32)}, shapes)
    with pytest.raises(wire.WireError, match="no 'observation.images.agentview'"):
        layout.decode({k: v for k, v in message.items() if "images" not in k}, shapes)


@pytest.mark.unit
def test_a_policy_address_keeps_its_colons_and_takes_options():
    entry = parse_policy("remote:ws://10.0.0.7:8000/policy:n_action_steps=4:rename_map=task=prompt+observation.state=s")
    assert entry.params == {"url": "ws://10.0.0.7:8000/policy", "n_action_steps": 4,
                            "rename_map": "task=prompt+observation.state=s"}
    assert wire.parse_rename_map(entry.params["rename_map"]) == {"task": "prompt", "observation.state": "s"}
    assert parse_policy("dp3:policies/x:steps=3").params == {"checkpoint": "policies/x", "steps": 3}
    assert parse_policy("remote:ws://gpu-box:timeout=5").params == {"url": "ws://gpu-box", "timeout": 5.0}
    assert parse_policy("remote:ws://x:port").params == {"url": "ws://x:port"}  # refused by the policy, naming the port
    with pytest.raises(UsageError, match="is not OURS=THEIRS"):
        wire.parse_rename_map("task>prompt")


# --- a server written by someone else ------------------------------------------------------------------


def test_a_foreign_stateless_server_scores_as_the_same_controller_in_process(tmp_path, foreign):
    _register_twin()
    server = foreign("stateless")
    outcomes = _run(tmp_path, "run", [f"remote:{server.url}", "drawer-twin"])
    remote = {ic: v for (label, ic), v in outcomes.items() if label.startswith("remote")}
    local = {ic: v for (label, ic), v in outcomes.items() if label == "drawer-twin"}
    assert remote == local and all(v == [("success", v[0][1])] for v in local.values())
    notes = json.loads((tmp_path / "run" / "policy_notes.json").read_text())
    assert notes[f"remote:url={server.url}"]["server_metadata"]["policy"] == "hand-written drawer controller"


def test_a_stateful_server_learns_each_episode_from_its_connection(tmp_path, foreign):
    """The server holds still for the first 20 steps of each connection: the steps of every episode
    match the in-process twin that resets per episode (a server state carried across episodes would
    make the later episodes 20 steps shorter)."""
    _register_twin()
    server = foreign("stateful", "--wait", "20")
    outcomes = _run(tmp_path, "run", [f"remote:{server.url}", "drawer-twin:wait=20"], batch_size=2)
    remote = {ic: v for (label, ic), v in outcomes.items() if label.startswith("remote")}
    local = {ic: v for (label, ic), v in outcomes.items() if label.startswith("drawer-twin")}
    assert remote == local and len(remote) == 4


def test_openpi_names_through_rename_map(tmp_path, foreign):
    server = foreign("openpi-keys")
    outcomes = _run(tmp_path, "run", [f"remote:{server.url}:rename_map=observation.state=observation/state+task=prompt"],
                    episodes=2)
    assert [v[0][0] for v in outcomes.values()] == ["success", "success"]


@pytest.mark.parametrize("mode, extra, status, says", [
    ("traceback", (), "policy_error", "the server failed: RuntimeError: the model fell over"),
    ("garbage", (), "policy_error", "not a msgpack frame"),
    ("wrong-shape", (), "policy_error", "1, 3), expected ("),
    ("nan", (), "policy_error", "non-finite action"),
    ("huge", ("--huge-bytes", "3000000"), "policy_error", "a frame over"),
])
def test_a_failing_server_is_the_policys_failure(tmp_path, foreign, monkeypatch, mode, extra, status, says):
    monkeypatch.setattr(wire, "MAX_FRAME_BYTES", 2_000_000)
    server = foreign(mode, *extra)
    run_dir = tmp_path / "run"
    _run(tmp_path, "run", [f"remote:{server.url}"], episodes=2)
    records = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["status"] == status for r in records), records
    assert all(says in r["reason"] for r in records), [r["reason"] for r in records]


def test_a_dropped_connection_is_retried_and_nothing_is_lost(tmp_path, foreign):
    server = foreign("drop")
    run_dir = tmp_path / "run"
    _run(tmp_path, "run", [f"remote:{server.url}"], episodes=2)
    records = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    errors = [r for r in records if r["status"] == "error"]
    assert len(errors) == 1 and "closed the connection" in errors[0]["reason"] and "/healthz answered 200" in errors[0]["reason"]
    retried = [r for r in records if r["trial_id"] == errors[0]["trial_id"]]
    assert [r["attempt"] for r in retried] == [1, 2] and retried[1]["status"] == "success"
    results = json.loads((run_dir / "results.json").read_text())
    assert sum(1 for r in records if r["status"] == "success") == 2 and results


def test_a_server_too_slow_is_an_infrastructure_error(tmp_path, foreign):
    server = foreign("slow", "--sleep", "3")
    run_dir = tmp_path / "run"
    _run(tmp_path, "run", [f"remote:{server.url}:timeout=1"], episodes=1, options=AnalysisOptions(max_attempts=2))
    records = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["error", "error"]
    assert all("no reply from the policy server in 1 s" in r["reason"] for r in records)


def test_an_unreachable_server_is_one_line_before_anything_is_written(tmp_path, capsys):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    from evalsuite.cli import main

    code = main(["evaluate", "suite=metaworld-smoke", "tasks=[drawer-open]", f"policies=[remote:ws://127.0.0.1:{port}]",
                 "episodes=1", "tracking_uri=none", "video=none", f"out={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot connect to the policy server" in err[0] and str(port) in err[0]
    assert not (tmp_path / "run" / "plan.json").exists()


@pytest.mark.parametrize("url, says", [("http://x:1", "is not a websocket address"),
                                        ("ws://x:port", "port that is not a number")])
def test_a_bad_address_is_one_line(url, says):
    from evalsuite_policies.remote import check_url

    with pytest.raises(UsageError, match=says):
        check_url(url)


# --- evalsuite serve ------------------------------------------------------------------------------------


def _serve(policy: str) -> Server:
    return Server([sys.executable, "-m", "evalsuite", "serve", f"policy={policy}", "suite=metaworld-smoke",
                   "task=drawer-open", "port=0", "threads=1"])


@pytest.mark.parametrize("family", ["mp1", pytest.param("dp3", marks=pytest.mark.slow)])
def test_serve_gives_the_journal_of_the_policy_in_process(tmp_path, family):
    """A shipped policy (two observation frames, action chunks; mp1 one network evaluation a chunk,
    dp3 ten) served and asked as remote:, against the same policy in process on the same plan:
    every episode ends the same way at the same step."""
    server = _serve(family)
    try:
        outcomes = _run(tmp_path, "run", [f"remote:{server.url}", family], episodes=3, cpus=1)
    finally:
        server.stop()
    remote = {ic: v for (label, ic), v in outcomes.items() if label.startswith("remote")}
    local = {ic: v for (label, ic), v in outcomes.items() if label == family}
    assert remote == local and len(local) == 3, (remote, local)
