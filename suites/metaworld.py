"""Meta-World v3 tasks as evalsuite task environments.

Meta-World ignores ``env.reset(seed=...)``: the object and goal positions ("rand_vec") are drawn in
``reset`` from the environment's own generator when ``seeded_rand_vec`` is set. We give every
episode a fresh generator seeded with its initial-condition seed, so an initial condition is a
pure function of that seed, the same for every policy and every run; the vectors drawn in ``reset``
("rand_vecs": some tasks draw more than one, rejecting draws that put objects too close) are
recorded with the episode, and ``reset_to_rand_vecs`` restores that initial state exactly.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from evalsuite.errors import UsageError
from evalsuite.interfaces import EnvInfo, StepResult
from evalsuite_suites.progress import stage_progress

# Difficulty split of Seo et al. (used by DP3), see shared/docs/landscape.md section 3.
DIFFICULTY: dict[str, tuple[str, ...]] = {
    "easy": (
        "button-press", "button-press-topdown", "button-press-topdown-wall", "button-press-wall",
        "coffee-button", "dial-turn", "door-close", "door-lock", "door-open", "door-unlock",
        "drawer-close", "drawer-open", "faucet-close", "faucet-open", "handle-press",
        "handle-press-side", "handle-pull", "handle-pull-side", "lever-pull", "plate-slide",
        "plate-slide-back", "plate-slide-back-side", "plate-slide-side", "reach", "reach-wall",
        "window-close", "window-open", "peg-unplug-side",
    ),
    "medium": (
        "basketball", "bin-picking", "box-close", "coffee-pull", "coffee-push", "hammer",
        "peg-insert-side", "push-wall", "soccer", "sweep", "sweep-into",
    ),
    "hard": ("assembly", "hand-insert", "pick-out-of-hole", "pick-place", "push", "push-back"),
    "very-hard": ("shelf-place", "disassemble", "stick-pull", "stick-push", "pick-place-wall"),
}

MAX_STEPS = 500  # Meta-World's max_path_length for every v3 task
# Conventions (evalsuite/contract.py): the 39-d state in metres (hand, gripper opening, objects,
# the previous frame's, goal); actions move the hand by up to 1/100 m per unit and a positive
# last component closes the gripper (Meta-World's scripted policies grasp with +1).
CONTRACT = {"state.dtype": "float64", "state.shape": [39], "state.units": "m", "action.dim": 4,
            "action.range": [-1, 1], "action.control": "ee-delta-position", "action.rotation": "none",
            "action.gripper": "+1 closes"}
POINTCLOUD_CONTRACT = {"point_cloud.units": "m", "agent_pos.units": "m", "agent_pos.dtype": "float32"}
OBS_MODES = ("state", "pointcloud")

# DP3's Meta-World camera: corner2 moved to look at the table, 128x128 depth, far plane 1.5 m.
POINTCLOUD_CAMERA = "corner2"
POINTCLOUD_CAMERA_POS = (0.6, 0.295, 0.8)
POINTCLOUD_PIXELS = 128
POINTCLOUD_POINTS = 512
# Workspace crop (world frame, metres): the table top (z = 0) and everything off the table go.
WORKSPACE_LOW, WORKSPACE_HIGH = (-0.6, 0.2, 0.001), (0.6, 1.0, 0.6)


MILESTONES = ("reached", "moved", "halfway")  # in order; success is the last stage
CAMERAS = ("corner2", "corner", "corner3", "topview", "behindGripper")  # the first is the videos' default


class MetaWorldTaskEnv:
    """One Meta-World v3 task with the goal observable; observation key ``state`` (39-d).

    ``obs="pointcloud"`` adds DP3's observations: ``point_cloud`` (512 x 3 world xyz, see
    ``suites/pointcloud.py``) and ``agent_pos`` (9-d: tool centre and both finger pads)."""

    def __init__(self, task_id: str, max_steps: int = MAX_STEPS, obs: str = "state") -> None:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        if obs not in OBS_MODES:
            raise UsageError(f"obs={obs!r}; accepted: {', '.join(OBS_MODES)}")
        self.task_id, self.obs_mode = task_id, obs
        env = ALL_V3_ENVIRONMENTS[f"{task_id}-v3"]()
        # What metaworld's goal-observable wrapper classes do, without their global np.random use.
        env._partially_observable = False
        del env.sawyer_observation_space  # cached_property: recomputed for the observable goal
        env._set_task_called = True
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        self._env = env
        self._draws: list[np.ndarray] = []
        self._replay: list[np.ndarray] | None = None
        draw = env._get_state_rand_vec

        def recorded_draw() -> np.ndarray:
            vec = self._replay.pop(0) if self._replay is not None else draw()
            self._draws.append(np.array(vec, dtype=np.float64))
            return vec

        env._get_state_rand_vec = recorded_draw
        shapes: dict[str, tuple[int, ...]] = {"state": (39,)}
        self._camera = None
        self._start: np.ndarray | None = None  # the object's position after the episode's first step
        if obs == "pointcloud":
            from evalsuite_suites.pointcloud import RayCastDepthCamera

            cam_id = env.model.camera(POINTCLOUD_CAMERA).id
            env.model.cam_pos[cam_id] = POINTCLOUD_CAMERA_POS
            self._camera = RayCastDepthCamera(env.model, POINTCLOUD_CAMERA, POINTCLOUD_PIXELS, POINTCLOUD_PIXELS)
            shapes.update(point_cloud=(POINTCLOUD_POINTS, 3), agent_pos=(9,))
        self._dropout, self._sensing_rng = 0.0, np.random.default_rng(0)
        self.info = EnvInfo(obs_shapes=shapes, action_dim=4, max_steps=min(max_steps, MAX_STEPS), cameras=CAMERAS,
                            contract={**CONTRACT, **(POINTCLOUD_CONTRACT if obs == "pointcloud" else {})})
        self._renderers: dict[tuple[int, int], Any] = {}

    def set_sensing(self, point_dropout: float, camera_jitter: float, rng: np.random.Generator) -> None:
        """Sensing imperfections for the coming episode (MDP families): a fraction of depth points
        dropped at random every frame, and the camera displaced by N(0, jitter^2) metres per axis."""
        self._dropout, self._sensing_rng = point_dropout, rng
        if self._camera is not None:
            offset = rng.normal(0.0, camera_jitter, 3) if camera_jitter > 0 else np.zeros(3)
            self._env.model.cam_pos[self._camera.cam_id] = np.asarray(POINTCLOUD_CAMERA_POS) + offset

    def _observe(self, state: np.ndarray) -> dict[str, np.ndarray]:
        out = {"state": state}
        if self._camera is not None:
            from evalsuite_suites.pointcloud import crop, farthest_point_sampling

            env = self._env
            points = self._camera.back_project(self._camera.depth(env.data), env.data)
            if self._dropout > 0:
                points = points[self._sensing_rng.random(len(points)) >= self._dropout]
            out["point_cloud"] = farthest_point_sampling(crop(points, WORKSPACE_LOW, WORKSPACE_HIGH),
                                                         POINTCLOUD_POINTS)
            out["agent_pos"] = np.concatenate([env.tcp_center, env._get_site_pos("rightEndEffector"),
                                               env._get_site_pos("leftEndEffector")]).astype(np.float32)
        return out

    def reset(self, ic_seed: int, ic_index: int = 0) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._env.np_random = np.random.default_rng(ic_seed)
        self._draws, self._replay = [], None
        obs, _ = self._env.reset()
        self._start = None
        return self._observe(obs), {"rand_vecs": [[float(v) for v in vec] for vec in self._draws]}

    def _object_and_target(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self._env._get_pos_objects()[:3], dtype=float), np.array(self._env._target_pos[:3], dtype=float)

    def milestones(self) -> dict[str, bool]:
        """Task progress from the simulator's state, the same for every task (MILESTONES, in order):
        the gripper within 5 cm of the object, the object moved 2 cm from where it stood after the
        first step (some objects settle when the episode starts), the object halfway from there to
        the goal."""
        obj, target = self._object_and_target()
        if self._start is None:
            self._start = obj
        start = self._start
        return {"reached": bool(np.linalg.norm(self._env.tcp_center - obj) < 0.05),
                "moved": bool(np.linalg.norm(obj - start) > 0.02),
                "halfway": bool(np.linalg.norm(obj - target) <= 0.5 * np.linalg.norm(start - target))}

    def reset_to_rand_vecs(self, rand_vecs: list[list[float]]) -> dict[str, np.ndarray]:
        """Restore a recorded initial state exactly (an episode record's ``init_state["rand_vecs"]``)."""
        self._draws, self._replay = [], [np.asarray(v, dtype=np.float64) for v in rand_vecs]
        try:
            obs, _ = self._env.reset()
        finally:
            self._replay = None
        self._start = None
        return self._observe(obs)

    def step(self, action: np.ndarray) -> StepResult:
        obs, reward, _, _, info = self._env.step(np.asarray(action, dtype=np.float32))
        milestones = self.milestones()
        return StepResult(obs=self._observe(obs), reward=float(reward), success=bool(info["success"]),
                          milestones=milestones, progress=stage_progress(milestones, MILESTONES))

    def render(self, camera: str, width: int, height: int) -> np.ndarray:
        """An RGB frame (offscreen OpenGL; the backend is MUJOCO_GL's, chosen when MuJoCo is imported)."""
        from evalsuite.video import offscreen_renderer, render_frame

        if (width, height) not in self._renderers:
            self._renderers[width, height] = offscreen_renderer(self._env.model, width, height)
        return render_frame(self._renderers[width, height], self._env.data, camera)[::-1]  # upside down otherwise

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._env.close()


def expert_for(task_id: str):
    """Meta-World's own scripted expert for a task (``metaworld.policies``)."""
    import metaworld.policies as mw_policies

    name = "Sawyer" + "".join(part.capitalize() for part in task_id.split("-")) + "V3Policy"
    # Meta-World names a few experts differently from their tasks.
    name = {"SawyerPegInsertSideV3Policy": "SawyerPegInsertionSideV3Policy"}.get(name, name)
    return getattr(mw_policies, name)()


def quiet_expert_action(expert, obs: np.ndarray) -> np.ndarray:
    """The expert's action; its ``move`` helper warns on large gains, harmlessly (env clips)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return expert.get_action(obs)
