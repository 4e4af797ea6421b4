"""Point-cloud observations: ray-cast depth, back-projection, crop, farthest-point sampling, Meta-World,
and a DP3 point-cloud policy trained and evaluated through the CLI."""

import json

import mujoco
import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite_suites.pointcloud import RayCastDepthCamera, crop, farthest_point_sampling

SCENE = """
<mujoco>
  <worldbody>
    <geom name="floor" type="plane" size="2 2 0.1"/>
    <geom name="box" type="box" pos="0 0 0.2" size="0.05 0.05 0.2"/>
    <geom name="ball" type="sphere" pos="0.3 0 0.05" size="0.05"/>
    <geom name="hidden" type="box" pos="-0.3 0 0.3" size="0.05 0.05 0.05" group="3"/>
    <camera name="down" pos="0 0 1" fovy="60"/>
  </worldbody>
</mujoco>
"""


def _scene():
    model = mujoco.MjModel.from_xml_string(SCENE)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return model, data


def test_raycast_depth_and_back_projection_recover_the_scene_geometry():
    model, data = _scene()
    cam = RayCastDepthCamera(model, "down", width=64, height=48, far=2.0)
    depth = cam.depth(data)
    assert depth.shape == (48, 64)
    k = cam.intrinsics
    assert k[1, 1] == pytest.approx(24 / np.tan(np.deg2rad(30)))  # focal length from fovy
    points = cam.back_project(depth, data)
    on_box_top = np.abs(points[:, 2] - 0.4) < 1e-6
    on_floor = np.abs(points[:, 2]) < 1e-6
    on_ball = np.abs(np.linalg.norm(points - [0.3, 0, 0.05], axis=1) - 0.05) < 1e-6
    assert on_box_top.sum() > 10 and on_floor.sum() > 1000 and on_ball.sum() > 10
    assert (on_box_top | on_floor | on_ball).all()  # nothing else: the group-3 geom is not seen
    top = points[on_box_top]
    assert np.all(np.abs(top[:, :2]) <= 0.05 + 1e-9)
    # z-depth, not distance along the ray: every floor pixel is 1 m deep, every box-top pixel 0.6 m
    assert np.allclose(depth[np.isclose(depth, 1.0, atol=1e-3)], 1.0, atol=1e-9)
    rows, cols = np.nonzero(np.isclose(depth, 0.6))
    assert abs(rows.mean() - 23.5) < 0.6 and abs(cols.mean() - 31.5) < 0.6
    assert abs((cols.max() - cols.min() + 1) - 0.1 / 0.6 * k[0, 0]) <= 1.5  # pinhole size of a 10 cm box
    # image x points along world +x for this camera: the ball, at x = +0.3, is right of the centre
    ball_pixels = np.nonzero((depth > 0.85) & (depth < 0.96))[1]
    assert ball_pixels.min() > 32


def test_far_plane_leaves_pixels_empty():
    model, data = _scene()
    depth = RayCastDepthCamera(model, "down", 32, 32, far=0.8).depth(data)
    assert (depth == 0).any() and np.allclose(depth[depth > 0], 0.6)  # only the box top is nearer than 0.8 m


def test_unknown_camera_is_named():
    model, _ = _scene()
    with pytest.raises(ValueError, match="camera 'side' not in the model; cameras: down"):
        RayCastDepthCamera(model, "side")


def test_crop_and_farthest_point_sampling():
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (3000, 3))
    kept = crop(points, (-0.5, -0.5, -0.5), (0.5, 0.5, 0.5))
    assert len(kept) > 0 and np.all(np.abs(kept) <= 0.5)
    sampled = farthest_point_sampling(points, 256)
    assert sampled.shape == (256, 3) and sampled.dtype == np.float32
    assert np.array_equal(sampled, farthest_point_sampling(points, 256))  # deterministic
    assert all(np.isclose(points.astype(np.float32), p).all(1).any() for p in sampled[:20])  # a subset

    def min_spacing(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return d[np.triu_indices(len(x), 1)].min()

    assert min_spacing(sampled) > 3 * min_spacing(points[rng.choice(3000, 256, replace=False)])
    few = farthest_point_sampling(points[:5], 12)
    assert few.shape == (12, 3) and len(np.unique(few, axis=0)) == 5
    assert farthest_point_sampling(points[:0], 4).shape == (4, 3)


def test_metaworld_pointcloud_observations_see_the_object():
    from evalsuite_suites.metaworld import WORKSPACE_HIGH, WORKSPACE_LOW, MetaWorldTaskEnv

    env = MetaWorldTaskEnv("pick-place", obs="pointcloud")
    assert env.info.obs_shapes == {"state": (39,), "point_cloud": (512, 3), "agent_pos": (9,)}
    clouds = []
    for seed in (1, 2):
        obs, _ = env.reset(seed)
        cloud, obj = obs["point_cloud"], obs["state"][4:7]
        assert cloud.shape == (512, 3) and np.all(cloud >= WORKSPACE_LOW) and np.all(cloud <= WORKSPACE_HIGH)
        assert np.linalg.norm(cloud - obj, axis=1).min() < 0.03  # points on the 2 cm-radius puck
        assert np.allclose(obs["agent_pos"][:3], env._env.tcp_center)
        clouds.append(cloud)
    assert np.linalg.norm(clouds[0] - clouds[1], axis=1).max() > 0.05  # another layout, another cloud
    again, _ = env.reset(1)
    assert np.array_equal(again["point_cloud"], clouds[0])  # same initial condition, same observation
    step = env.step(np.array([0.0, 0.0, 1.0, 0.0]))
    assert step.obs["point_cloud"].shape == (512, 3)
    env.close()
    with pytest.raises(Exception, match="obs='rgb'; accepted: state, pointcloud"):
        MetaWorldTaskEnv("pick-place", obs="rgb")


def test_dp3_trains_on_point_clouds_and_evaluates_with_them(tmp_path, capsys):
    import h5py

    demos = tmp_path / "demos.hdf5"
    assert main(["demos", "suite=metaworld-smoke", "task=drawer-open", "n=1", "obs=pointcloud", f"out={demos}"]) == 0
    with h5py.File(demos) as f:
        n = f["meta/episode_ends"][-1]
        assert f["data/point_cloud"].shape == (n, 512, 3) and f["data/state"].shape == (n, 9)
    ckpt = tmp_path / "dp3"
    assert main(["train", "policy=dp3", "suite=metaworld", "task=drawer-open", f"demos={demos}", f"out={ckpt}",
                 "iters=3", "batch_size=4", "down_dims=[16,32]", "horizon=8", "n_action_steps=4",
                 "progress=false"]) == 0
    config = json.loads((ckpt / "config.json").read_text())["config"]
    assert config["obs"] == {"point_cloud": ["pointcloud", [512, 3]], "agent_pos": ["lowdim", [9]]}
    run = tmp_path / "run"
    assert main(["evaluate", "video=none", "suite=metaworld-smoke", "tasks=[drawer-open]", f"policies=[dp3:checkpoint={ckpt}]",
                 "obs=pointcloud", "episodes=1", "max_steps=12", f"out={run}", "tracking_uri=none",
                 "progress=false"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["trials"]["finished"] == 1 and results["trials"]["policy_errors"] == 0
    # GPC across observation kinds: the point-cloud DP3 with a low-dim DP3 trained on the same demos
    lowdim = tmp_path / "dp3-state"
    assert main(["train", "policy=dp3", "suite=metaworld", "task=drawer-open", f"demos={demos}", f"out={lowdim}",
                 "obs=state", "iters=3", "batch_size=4", "down_dims=[16,32]", "horizon=8", "n_action_steps=4",
                 "progress=false"]) == 0
    assert list(json.loads((lowdim / "config.json").read_text())["config"]["obs"]) == ["state"]
    assert main(["evaluate", "video=none", "suite=metaworld-smoke", "tasks=[drawer-open]", "obs=pointcloud", "episodes=1",
                 f"policies=[gpc:members=dp3@{ckpt}+dp3@{lowdim}:w=0.5]", "max_steps=12", f"out={tmp_path / 'gpc'}",
                 "tracking_uri=none", "progress=false"]) == 0
    gpc_results = json.loads((tmp_path / "gpc" / "results.json").read_text())
    assert gpc_results["trials"]["policy_errors"] == 0
    assert next(iter(gpc_results["policies"].values()))["notes"]["family"] == "gpc"
    # the state-only suite cannot serve this policy: refused before any episode, naming the missing key
    assert main(["evaluate", "video=none", "suite=metaworld-smoke", "tasks=[drawer-open]", f"policies=[dp3:checkpoint={ckpt}]",
                 "episodes=1", f"out={tmp_path / 'run2'}", "tracking_uri=none", "progress=false"]) == 2
    assert "needs observation 'point_cloud'" in capsys.readouterr().err
