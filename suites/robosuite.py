"""robomimic's tasks on robosuite 1.5: Panda arm(s), OSC pose controller at 20 Hz.

Observations follow robomimic's conventions: low-dim keys ``robot{i}_eef_pos``,
``robot{i}_eef_quat``, ``robot{i}_gripper_qpos`` and ``object``; with cameras, ``agentview_image``
and ``robot0_eye_in_hand_image`` (84x84, flipped upright as robomimic does). Cameras and rendering
are off unless an image suite asks for them.

Initial conditions. robosuite draws object placement, object sizes and robot joint noise at reset
from the environment's own generator ``env.rng`` (held by the placement sampler too). A hard reset
with ``env.rng`` re-seeded from the initial-condition seed makes the whole initial state - model xml
and simulator state - a pure function of that seed. With ``init_states=demo.hdf5`` the initial
states come from a robomimic dataset instead (``data/demo_{i}``: ``model_file`` and ``states[0]``),
restored exactly, controllers re-synced to the restored joints (otherwise replayed actions drift).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from typing import Any

import numpy as np

from evalsuite.errors import UsageError
from evalsuite.interfaces import EnvInfo, StepResult
from evalsuite_suites.progress import stage_progress

# task id -> (robosuite env name, robomimic horizon, extra make() kwargs)
TASKS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "lift": ("Lift", 400, {}),
    "can": ("PickPlaceCan", 400, {}),
    "square": ("NutAssemblySquare", 400, {}),
    "transport": ("TwoArmTransport", 700, {"robots": ["Panda", "Panda"], "env_configuration": "opposed"}),
    "tool_hang": ("ToolHang", 700, {}),
}
CAMERAS = ("agentview", "robot0_eye_in_hand")
IMAGE_SIZE = 84


_COMPILED: dict[bytes, Any] = {}  # sha256 of MJCF text -> compiled MjModel, per process
_COMPILED_MAX = 32


def compiled_model(xml: str):
    """A fresh MjModel for ``xml``, compiled once per distinct text in this process. robosuite's hard
    reset rebuilds and recompiles the same model every episode (~0.3 s, twice); a copy of the
    compiled model is the same model, so no initial state changes (the exact-restore tests hold)."""
    import mujoco

    key = hashlib.sha256(xml.encode()).digest()
    if key not in _COMPILED:
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        _COMPILED[key] = mujoco.MjModel.from_xml_string(xml)
    return copy.copy(_COMPILED[key])


def _cache_compilation() -> None:
    """Route robosuite's two compilations (robot model, whole scene) through ``compiled_model``."""
    import io
    import xml.etree.ElementTree as ET

    from robosuite.models.base import MujocoXML
    from robosuite.utils.binding_utils import MjSim

    if getattr(MjSim, "_evalsuite_cached", False):
        return

    def get_model(self, mode="mujoco"):
        if mode != "mujoco":
            raise ValueError(f"Unknown model mode: {mode}. Available options are: mujoco")
        with io.StringIO() as text:
            text.write(ET.tostring(self.root, encoding="unicode"))
            return compiled_model(text.getvalue())

    MujocoXML.get_model = get_model
    MjSim.from_xml_string = classmethod(lambda cls, xml: cls(compiled_model(xml)))
    MjSim._evalsuite_cached = True


def make_robosuite_env(task_id: str, cameras: bool = False, seed: int | None = None):
    """The robosuite environment of a robomimic task, configured as robomimic configures it."""
    from evalsuite_suites.compat import quiet_import

    quiet_import("robosuite")
    import robosuite
    from robosuite.controllers import load_composite_controller_config

    _cache_compilation()
    logging.getLogger("robosuite_logs").setLevel(logging.ERROR)  # per-part controller notices
    env_name, horizon, extra = TASKS[task_id]
    robots = extra.get("robots", "Panda")
    controller = load_composite_controller_config(controller="BASIC", robot="Panda")
    kwargs = dict(
        robots=robots, controller_configs=controller, has_renderer=False, has_offscreen_renderer=cameras,
        use_camera_obs=cameras, use_object_obs=True, control_freq=20, horizon=horizon, ignore_done=True,
        reward_shaping=False, hard_reset=True, seed=seed,
        **{k: v for k, v in extra.items() if k != "robots"},
    )
    if cameras:
        kwargs.update(camera_names=list(CAMERAS), camera_heights=IMAGE_SIZE, camera_widths=IMAGE_SIZE,
                      camera_depths=False)
    return robosuite.make(env_name, **kwargs), kwargs


def model_xml(env) -> str:
    """The loaded model as MJCF text (robosuite's ``get_xml`` leaves its file open)."""
    import os
    import tempfile

    import mujoco

    with tempfile.TemporaryDirectory() as td:
        path = os.path.join(td, "model.xml")
        mujoco.mj_saveLastXML(path, env.sim.model._model)
        with open(path) as fh:
            return fh.read()


def resync_controllers(env) -> None:
    """After writing a simulator state, make every part controller start from it."""
    for robot in env.robots:
        for part in robot.composite_controller.part_controllers.values():
            part.update_initial_joints(env.sim.data.qpos[part.qpos_index])
            part.reset_goal()


# Staged progress (robosuite's staged rewards: reach, grasp, lift, hover), in order; success last.
RENDER_CAMERAS = ("frontview", "agentview", "birdview")  # the first is the videos' default
# For lift, lifting is the success itself.
MILESTONES = {"lift": ("reached", "grasped"), "can": ("reached", "grasped", "lifted", "over_bin")}


def contract(obs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Conventions (evalsuite/contract.py): robosuite's OSC_POSE controller takes a delta position and
    an axis-angle delta rotation in [-1, 1], +1 closes the gripper; quaternions are (x, y, z, w);
    camera images are uint8 0-255, turned upright as robomimic's datasets store them."""
    out: dict[str, Any] = {"action.range": [-1, 1], "action.control": "osc-pose-delta",
                           "action.rotation": "axis-angle", "action.gripper": "+1 closes"}
    for key, value in obs.items():
        if key.endswith("_eef_pos"):
            out[f"{key}.units"] = "m"
        elif key.endswith("_eef_quat"):
            out[f"{key}.rotation"] = "quaternion-xyzw"
        elif key.endswith("_image"):
            out.update({f"{key}.dtype": str(value.dtype), f"{key}.range": [0, 255], f"{key}.orientation": "upright"})
    return out


class RobosuiteTaskEnv:
    """One robomimic task. ``obs``: ``low_dim`` (default) or ``image`` (adds the two cameras)."""

    def __init__(self, task_id: str, max_steps: int | None = None, obs: str = "low_dim",
                 init_states: str | None = None) -> None:
        if obs not in ("low_dim", "image"):
            raise UsageError(f"obs={obs!r}; accepted: image, low_dim")
        self.task_id = task_id
        self.cameras = obs == "image"
        self.env, self.make_kwargs = make_robosuite_env(task_id, cameras=self.cameras)
        self.n_robots = len(self.env.robots)
        self._rest_z = 0.0  # the object's height where it rests at the start of the episode
        self._dataset = _InitStates(init_states) if init_states else None
        horizon = TASKS[task_id][1]
        raw = self.env.reset()
        obs0 = self._observe(raw)
        self.info = EnvInfo(obs_shapes={k: v.shape for k, v in obs0.items()},
                            action_dim=int(self.env.action_dim), max_steps=min(max_steps or horizon, horizon),
                            n_initial_conditions=len(self._dataset.demos) if self._dataset else None,
                            cameras=RENDER_CAMERAS, contract=contract(obs0))
        self._renderers: dict[tuple[int, int], Any] = {}

    def _observe(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for i in range(self.n_robots):
            for key in ("eef_pos", "eef_quat", "gripper_qpos"):
                out[f"robot{i}_{key}"] = np.asarray(raw[f"robot{i}_{key}"], dtype=np.float64)
        out["object"] = np.asarray(raw["object-state"], dtype=np.float64)
        if self.cameras:
            for cam in CAMERAS:
                out[f"{cam}_image"] = np.ascontiguousarray(raw[f"{cam}_image"][::-1])  # upright, as robomimic
        return out

    def reset(self, ic_seed: int, ic_index: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self._dataset is not None:
            xml, states = self._dataset.initial_state(ic_index)
            return self.reset_to(xml, states), {"dataset": self._dataset.path, "demo": ic_index}
        self.env.rng = rng = np.random.default_rng(ic_seed)
        _seed_samplers(getattr(self.env, "placement_initializer", None), rng)  # they keep the old one
        raw = self.env.reset()
        xml = model_xml(self.env)
        states = self.env.sim.get_state().flatten()
        self._rest_z = self._object_z()
        return self._observe(raw), {"model_sha256": hashlib.sha256(xml.encode()).hexdigest()[:16],
                                    "states": [float(x) for x in states]}

    def reset_to(self, model_xml: str, states: np.ndarray) -> dict[str, np.ndarray]:
        """Restore a stored initial state exactly: model, flattened state, controllers."""
        self.env.reset_from_xml_string(self.env.edit_model_xml(model_xml))
        self.env.sim.reset()
        self.env.sim.set_state_from_flattened(np.asarray(states))
        self.env.sim.forward()
        resync_controllers(self.env)
        self._rest_z = self._object_z()
        return self._observe(self.env._get_observations(force_update=True))

    def _object_z(self) -> float:
        if self.task_id not in MILESTONES:
            return 0.0
        obj = self.env.cube if self.task_id == "lift" else self.env.objects[self.env.object_to_id["can"]]
        return float(self.env.sim.data.body_xpos[self.env.sim.model.body_name2id(obj.root_body)][2])

    def model_xml(self) -> str:
        return model_xml(self.env)

    def env_args(self) -> dict[str, Any]:
        """robomimic's ``env_args`` for a dataset recorded in this environment."""
        from robomimic.envs.env_base import EnvType

        kwargs = {k: v for k, v in self.make_kwargs.items() if k not in ("seed", "hard_reset")}
        return {"env_name": TASKS[self.task_id][0], "type": EnvType.ROBOSUITE_TYPE, "env_kwargs": kwargs,
                "env_version": _robosuite_version()}

    def sim_state(self) -> np.ndarray:
        return np.array(self.env.sim.get_state().flatten())

    def milestones(self) -> dict[str, bool]:
        """robosuite's staged progress from the simulator's state (MILESTONES[task], in order): the
        gripper within 3 cm of the object, the object grasped (robosuite's own contact check); for
        can, the can 5 cm above where it rested and over its target bin (within a quarter bin)."""
        env = self.env
        obj = env.cube if self.task_id == "lift" else env.objects[env.object_to_id["can"]]
        distance = env._gripper_to_target(gripper=env.robots[0].gripper, target=obj.root_body, target_type="body",
                                          return_distance=True)
        z = float(env.sim.data.body_xpos[env.sim.model.body_name2id(obj.root_body)][2])
        held = {"reached": bool(distance < 0.03),
                "grasped": bool(env._check_grasp(gripper=env.robots[0].gripper, object_geoms=obj.contact_geoms))}
        if self.task_id == "can":
            held["lifted"] = bool(z > self._rest_z + 0.05)
            xy = env.sim.data.body_xpos[env.obj_body_id[obj.name]][:2]
            target = env.target_bin_placements[env.object_to_id["can"], :2]
            held["over_bin"] = bool(np.all(np.abs(xy - target) < np.asarray(env.bin_size[:2]) / 4.0))
        return held

    def step(self, action: np.ndarray) -> StepResult:
        raw, reward, _, _ = self.env.step(np.asarray(action, dtype=np.float64))
        if self.task_id not in MILESTONES:  # square, transport, tool_hang: no milestones defined yet
            return StepResult(obs=self._observe(raw), reward=float(reward), success=bool(self.env._check_success()))
        milestones = self.milestones()
        return StepResult(obs=self._observe(raw), reward=float(reward), success=bool(self.env._check_success()),
                          milestones=milestones, progress=stage_progress(milestones, MILESTONES[self.task_id]))

    def render(self, camera: str, width: int, height: int) -> np.ndarray:
        """An RGB frame from one of robosuite's cameras (offscreen OpenGL, MUJOCO_GL's backend)."""
        import mujoco

        from evalsuite.video import offscreen_renderer, render_frame

        model = self.env.sim.model._model
        if (width, height) not in self._renderers:
            self._renderers[width, height] = offscreen_renderer(model, width, height)
        # robosuite's collision geoms are group 0 (drawn over the visual meshes they show a green Panda
        # with white patches); its own renderer hides them and shows the visual meshes (group 1)
        visual = mujoco.MjvOption()
        visual.geomgroup[0] = 0
        return render_frame(self._renderers[width, height], self.env.sim.data._data, camera, visual)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self.env.close()


def _robosuite_version() -> str:
    import robosuite

    return robosuite.__version__


def _seed_samplers(sampler, rng: np.random.Generator) -> None:
    if sampler is None:
        return
    sampler.rng = rng
    for child in getattr(sampler, "samplers", {}).values():
        _seed_samplers(child, rng)


class _InitStates:
    """Initial states of a robomimic HDF5 dataset, demo by demo (sorted by demo number)."""

    def __init__(self, path: str) -> None:
        import h5py

        self.path = str(path)
        try:
            with h5py.File(path, "r") as f:
                self.demos = sorted(f["data"].keys(), key=lambda k: int(k.split("_")[-1]))
        except (OSError, KeyError) as exc:
            raise UsageError(f"init_states={path!r} is not a robomimic HDF5 dataset with a data/ group ({exc})") from None

    def initial_state(self, index: int) -> tuple[str, np.ndarray]:
        import h5py

        if index >= len(self.demos):
            raise UsageError(f"init_states={self.path!r} has {len(self.demos)} demos; episode {index} has none "
                             f"(use episodes<={len(self.demos)})")
        with h5py.File(self.path, "r") as f:
            demo = f["data"][self.demos[index]]
            return demo.attrs["model_file"], np.array(demo["states"][0])
