"""Parameterized families of MDPs: one base task over ranges of physics, layout, sensing, actuation.

A family is data: a base suite and task, and named axes with ranges and a nominal value. An
evaluation of a family runs a *design* of MDPs - MDP 0 is the nominal point, MDPs 1..n are drawn
from the family by Sobol or Latin-hypercube sampling, or form a grid that includes the range ends
(or an explicit list of points, as the worst-case search asks for). Episode ``ic_index`` runs MDP
``ic_index % len(design)`` (so ``episodes = len(design) x k`` gives every MDP k episodes), and the
MDP's index and parameters are recorded with the episode.

Axes, each applied to the real simulator:
- physics (multipliers of the nominal model values): ``object_mass`` (the object body's mass),
  ``friction`` (sliding friction of the object's geoms), ``joint_damping`` (the arm's joints),
  ``actuator_gain`` (Meta-World: how far the arm moves per unit action, and the gripper's gain;
  robosuite: the operational-space controller's stiffness, critically damped);
- layout: ``layout_shift_x`` / ``layout_shift_y`` (metres added to the initial-position regions of
  objects and goals) and ``layout_scale`` (their extent, scaled about the centre);
- sensing: ``obs_noise`` (Gaussian noise on low-dim observations), ``point_dropout`` (fraction of
  depth points dropped before sampling) and ``camera_jitter`` (metres, the camera's position per
  episode), the last two with ``obs=pointcloud``;
- actuation: ``action_noise`` (Gaussian, in action units, then clipped to [-1, 1]) and
  ``action_delay`` (whole control steps; zeros until the first command arrives).
The per-episode noise comes from a generator seeded by the episode's initial-condition seed, so a
trial is reproducible and every policy meets the same noise (paired).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite import streams
from evalsuite.errors import UsageError, choices
from evalsuite.interfaces import StepResult
from evalsuite.stats.intervals import proportion_interval

KINDS = ("physics", "layout", "sensing", "actuation")
SAMPLERS = ("sobol", "lhs", "grid")


@dataclass(frozen=True, slots=True)
class Axis:
    name: str
    kind: str
    low: float
    high: float
    nominal: float
    log: bool = False  # sampled uniformly in log space (multipliers)
    integer: bool = False
    unit: str = ""

    def from_unit(self, u: float) -> float:
        """Map u in [0, 1] onto the range (log-uniform for multipliers, rounded for integer axes)."""
        if self.log:
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        return float(round(value)) if self.integer else float(value)

    def to_unit(self, value: float) -> float:
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)


def _axes(*extra: Axis) -> tuple[Axis, ...]:
    common = (
        Axis("object_mass", "physics", 0.25, 4.0, 1.0, log=True, unit="x nominal"),
        Axis("friction", "physics", 0.2, 2.0, 1.0, log=True, unit="x nominal"),
        Axis("joint_damping", "physics", 0.5, 10.0, 1.0, log=True, unit="x nominal"),
        Axis("actuator_gain", "physics", 0.4, 1.6, 1.0, log=True, unit="x nominal"),
        Axis("layout_shift_x", "layout", -0.1, 0.1, 0.0, unit="m"),
        Axis("layout_shift_y", "layout", -0.1, 0.1, 0.0, unit="m"),
        Axis("layout_scale", "layout", 0.5, 2.0, 1.0, log=True, unit="x nominal extent"),
        Axis("obs_noise", "sensing", 0.0, 0.02, 0.0, unit="m (std)"),
        Axis("action_noise", "actuation", 0.0, 1.0, 0.0, unit="std, action units"),
        Axis("action_delay", "actuation", 0.0, 3.0, 0.0, integer=True, unit="control steps"),
    )
    return common + extra


POINTCLOUD_AXES = (
    Axis("point_dropout", "sensing", 0.0, 0.9, 0.0, unit="fraction"),
    Axis("camera_jitter", "sensing", 0.0, 0.05, 0.0, unit="m (std)"),
)


@dataclass(frozen=True, slots=True)
class FamilySpec:
    id: str  # e.g. "metaworld-family/pick-place"
    base_suite: str
    task: str
    object_body: str  # the body whose mass and friction the physics axes change
    axes: tuple[Axis, ...]
    description: str = ""

    def axis(self, name: str) -> Axis:
        for axis in self.axes:
            if axis.name == name:
                return axis
        raise UsageError(f"family {self.id!r} has no axis {name!r}; accepted: {choices(a.name for a in self.axes)}")

    @property
    def nominal(self) -> dict[str, float]:
        return {a.name: a.nominal for a in self.axes}

    def describe(self) -> dict[str, Any]:
        """The family as data, for the core's analysis (it never imports this module)."""
        return {"id": self.id, "axes": [{"name": a.name, "kind": a.kind, "low": a.low, "high": a.high,
                                          "log": a.log, "nominal": a.nominal, "unit": a.unit} for a in self.axes]}


FAMILIES: dict[str, FamilySpec] = {f.id: f for f in (
    FamilySpec("metaworld-family/pick-place", "metaworld", "pick-place", "obj", _axes(*POINTCLOUD_AXES),
               "Meta-World pick-place over object mass and friction, arm damping and gain, layout, "
               "observation and action noise, action delay (and point dropout, camera jitter with points)"),
    FamilySpec("metaworld-family/drawer-open", "metaworld", "drawer-open", "drawer_link", _axes(*POINTCLOUD_AXES),
               "Meta-World drawer-open over the same axes (mass and friction of the drawer)"),
    FamilySpec("robomimic-family/lift", "robomimic", "lift", "cube_main", _axes(),
               "robomimic lift (robosuite) over cube mass and friction, arm damping, OSC gain, cube placement, "
               "observation and action noise, action delay"),
)}


# ------------------------------------------------------------------------------------------ designs

def design(family: FamilySpec, sampler: str = "sobol", mdps: int = 16, seed: int = 0,
           vary: list[str] | None = None, points: list[dict[str, float]] | None = None) -> list[dict[str, float]]:
    """The MDPs of an evaluation: [nominal, sampled...], or exactly ``points`` when given.

    Only the axes in ``vary`` (default: all) move; the rest stay nominal. ``grid`` takes
    round(mdps ** (1 / d)) levels per axis (at least 2), ends included, so it has levels ** d MDPs."""
    if points is not None:
        for point in points:
            for name, value in point.items():
                axis = family.axis(name)
                try:
                    slack = 1e-9 * max(abs(axis.low), abs(axis.high))  # a range end computed through exp/log
                    inside = axis.low - slack <= float(value) <= axis.high + slack
                except (TypeError, ValueError):
                    raise UsageError(f"points: {name}={value!r} is not a number") from None
                if not inside:
                    raise UsageError(f"points: {name}={value!r} is outside the family's range "
                                     f"[{axis.low:g}, {axis.high:g}]")
        return [{**family.nominal, **{k: float(v) for k, v in p.items()}} for p in points]
    if sampler not in SAMPLERS:
        raise UsageError(f"sampler={sampler!r}; accepted: {choices(SAMPLERS)}")
    axes = [family.axis(name) for name in (vary or [a.name for a in family.axes])]
    d = len(axes)
    if sampler == "grid":
        levels = max(2, round(mdps ** (1 / d)))
        units = np.array(list(itertools.product(np.linspace(0, 1, levels), repeat=d)))
    else:
        from scipy.stats import qmc

        engine = qmc.Sobol(d, scramble=True, seed=seed) if sampler == "sobol" else qmc.LatinHypercube(d, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Sobol's balance note for n not a power of 2
            units = engine.random(mdps)
    out = [family.nominal]
    for row in units:
        out.append({**family.nominal, **{a.name: a.from_unit(float(u)) for a, u in zip(axes, row, strict=False)}})
    return out


_SEARCH_MOST = {"generations": 1000, "population": 10_000, "episodes_per_point": 100_000, "fresh_episodes": 100_000}


def search_option(key: str, value: int | str) -> int | str:
    """A worst-case search option as typed (the family suites' parser, run as the command line is
    read): worst_case cem | none, the counts integers in 1..their bound; else a one-line error."""
    if key == "worst_case":
        if value not in ("cem", "none"):
            raise UsageError(f"worst_case={value!r}; accepted: cem, none")
        return value
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{key}={value!r} is not an integer") from None
    if not 1 <= number <= _SEARCH_MOST[key]:
        raise UsageError(f"{key}={number} must be in 1..{_SEARCH_MOST[key]}")
    return number


def parse_points(text: str | list | None) -> list[dict[str, float]] | None:
    if text is None or isinstance(text, list):
        return text
    try:
        points = json.loads(text)
        assert isinstance(points, list) and all(isinstance(p, dict) for p in points)
        return points
    except (ValueError, AssertionError):
        raise UsageError(f"points={text!r} is not a JSON list of {{axis: value}} objects") from None


# ------------------------------------------------------------------------------------- environment

class FamilyTaskEnv:
    """The base task environment with one MDP of the family applied per episode."""

    def __init__(self, task_id: str, max_steps: int | None = None, family: str = "", obs: str = "state",
                 sampler: str = "sobol", mdps: int = 16, design_seed: int = 0, vary: str | list | None = None,
                 points: str | list | None = None) -> None:
        from evalsuite import registry
        from evalsuite.runner.envs import build_env

        self.family = spec = FAMILIES[family]
        if task_id != spec.task:
            raise UsageError(f"family {spec.id!r} has the one task {spec.task!r}, not {task_id!r}")
        vary_list = [v.strip() for v in vary.strip("[]").split(",") if v.strip()] if isinstance(vary, str) else vary
        if not vary_list:  # every axis that acts on this observation mode
            vary_list = [a.name for a in spec.axes if obs == "pointcloud" or a not in POINTCLOUD_AXES]
        elif obs != "pointcloud" and set(vary_list) & {a.name for a in POINTCLOUD_AXES}:
            raise UsageError(f"vary={vary_list}: point_dropout and camera_jitter act on point clouds; add obs=pointcloud")
        try:
            mdps, design_seed = int(mdps), int(design_seed)
        except (TypeError, ValueError):
            raise UsageError(f"mdps={mdps!r} and design_seed={design_seed!r} must be integers") from None
        if mdps < 1:
            raise UsageError(f"mdps={mdps} must be >= 1")
        self.design = design(spec, sampler, mdps, design_seed, vary_list, parse_points(points))
        base_suite = registry.suites.get(spec.base_suite)
        if obs != "state":
            base_suite = dataclasses.replace(base_suite, kwargs={**base_suite.kwargs, "obs": obs})
        self.base = build_env(base_suite, task_id, max_steps or base_suite.task(task_id).max_steps)
        self.adapter = _adapter_for(self.base, spec)
        self.info = dataclasses.replace(self.base.info)
        self.params: dict[str, float] = dict(spec.nominal)
        self._rng = np.random.default_rng(0)
        self._queue: deque = deque()

    def reset(self, ic_seed: int, ic_index: int = 0) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        mdp = ic_index % len(self.design)
        self.params = p = self.design[mdp]
        # the episode's own noise stream, separate from the initial-condition draw
        self._rng = streams.generator(ic_seed, streams.FAMILY_EPISODE_NOISE)
        self.adapter.before_reset(p, self._rng)
        obs, init = self.base.reset(ic_seed, ic_index)
        self.adapter.after_reset(p)
        self._queue = deque(np.zeros(self.info.action_dim) for _ in range(int(p.get("action_delay", 0))))
        return self._sense(obs), {**init, "mdp": mdp, "params": dict(p)}

    def _sense(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sigma = self.params.get("obs_noise", 0.0)
        if sigma <= 0:
            return obs
        return {k: (v + self._rng.normal(0.0, sigma, v.shape) if v.ndim == 1 and v.dtype.kind == "f" else v)
                for k, v in obs.items()}

    def step(self, action: np.ndarray) -> StepResult:
        action = np.asarray(action, dtype=np.float64)
        sigma = self.params.get("action_noise", 0.0)
        if sigma > 0:
            action = np.clip(action + self._rng.normal(0.0, sigma, action.shape), -1.0, 1.0)
        self.executed = action
        if self._queue:  # a delay of k steps: run the command from k steps ago
            self._queue.append(action)
            self.executed = self._queue.popleft()
        result = self.base.step(self.executed)
        return dataclasses.replace(result, obs=self._sense(result.obs))

    def render(self, camera: str, width: int, height: int) -> np.ndarray:
        return self.base.render(camera, width, height)

    def close(self) -> None:
        self.base.close()


def _adapter_for(base, spec: FamilySpec):
    from evalsuite_suites.metaworld import MetaWorldTaskEnv
    from evalsuite_suites.robosuite import RobosuiteTaskEnv

    if isinstance(base, MetaWorldTaskEnv):
        return MetaWorldPhysics(base, spec)
    if isinstance(base, RobosuiteTaskEnv):
        return RobosuitePhysics(base, spec)
    raise UsageError(f"family {spec.id!r}: no physics adapter for {type(base).__name__}")


class MetaWorldPhysics:
    """Physics and layout axes on a Meta-World environment; nominal values kept to restore."""

    ARM_JOINTS = tuple(f"right_j{i}" for i in range(7))

    def __init__(self, base, spec: FamilySpec) -> None:
        self.base, self.env = base, base._env
        m = self.env.model
        self.body = m.body(spec.object_body).id
        self.geoms = [g for g in range(m.ngeom) if m.geom_bodyid[g] == self.body or
                      _descends(m, int(m.geom_bodyid[g]), self.body)]
        self.dofs = [int(m.jnt_dofadr[m.joint(j).id]) for j in self.ARM_JOINTS]
        self.nominal = {"mass": m.body_mass.copy(), "inertia": m.body_inertia.copy(),
                        "friction": m.geom_friction.copy(), "damping": m.dof_damping.copy(),
                        "gainprm": m.actuator_gainprm.copy(), "biasprm": m.actuator_biasprm.copy(),
                        "action_scale": self.env.action_scale,
                        "reset_low": self.env._random_reset_space.low.copy(),
                        "reset_high": self.env._random_reset_space.high.copy()}

    def before_reset(self, p: dict[str, float], rng: np.random.Generator) -> None:
        from gymnasium.spaces import Box

        m, n = self.env.model, self.nominal
        m.body_mass[:] = n["mass"]
        m.body_inertia[:] = n["inertia"]
        m.body_mass[self.body] *= p["object_mass"]
        m.body_inertia[self.body] *= p["object_mass"]  # same shape, denser: inertia scales with mass
        m.geom_friction[:] = n["friction"]
        m.geom_friction[self.geoms, 0] *= p["friction"]
        m.dof_damping[:] = n["damping"]
        m.dof_damping[self.dofs] *= p["joint_damping"]
        m.actuator_gainprm[:] = n["gainprm"]
        m.actuator_biasprm[:] = n["biasprm"]
        m.actuator_gainprm[:, 0] *= p["actuator_gain"]
        m.actuator_biasprm[:, 1] *= p["actuator_gain"]
        self.env.action_scale = n["action_scale"] * p["actuator_gain"]
        low, high = n["reset_low"].copy(), n["reset_high"].copy()
        centre, half = (low + high) / 2, (high - low) / 2
        for i in range(0, len(low) - len(low) % 3, 3):  # every (x, y, z) triple: objects and goals
            centre[i:i + 2] += (p["layout_shift_x"], p["layout_shift_y"])
            half[i:i + 2] *= p["layout_scale"]  # the table-plane extent; heights stay
        self.env._random_reset_space = Box(centre - half, centre + half, dtype=np.float64)
        self.base.set_sensing(p.get("point_dropout", 0.0), p.get("camera_jitter", 0.0), rng)

    def after_reset(self, p: dict[str, float]) -> None:
        pass


class RobosuitePhysics:
    """Physics and layout axes on a robosuite task. robosuite rebuilds its model at every (hard)
    reset, so the placement ranges are set before the reset and the model edits after it, on the
    fresh model (whose values are the nominal ones); the OSC gains are set on the fresh controller."""

    def __init__(self, base, spec: FamilySpec) -> None:
        self.base, self.spec = base, spec
        sampler = base.env.placement_initializer
        self.nominal_ranges = (list(sampler.x_range), list(sampler.y_range))
        self.nominal_kp = np.array(self._arm_controller().kp, dtype=float)

    def _arm_controller(self):
        return self.base.env.robots[0].composite_controller.part_controllers["right"]

    def before_reset(self, p: dict[str, float], rng: np.random.Generator) -> None:
        sampler = self.base.env.placement_initializer
        for attr, nominal, shift in (("x_range", self.nominal_ranges[0], p["layout_shift_x"]),
                                     ("y_range", self.nominal_ranges[1], p["layout_shift_y"])):
            centre, half = (nominal[0] + nominal[1]) / 2 + shift, (nominal[1] - nominal[0]) / 2 * p["layout_scale"]
            setattr(sampler, attr, [centre - half, centre + half])

    def after_reset(self, p: dict[str, float]) -> None:
        m = self.base.env.sim.model._model
        body = m.body(self.spec.object_body).id
        m.body_mass[body] *= p["object_mass"]
        m.body_inertia[body] *= p["object_mass"]
        geoms = [g for g in range(m.ngeom) if m.geom_bodyid[g] == body]
        m.geom_friction[geoms, 0] *= p["friction"]
        dofs = [int(m.jnt_dofadr[m.joint(f"robot0_joint{i}").id]) for i in range(1, 8)]
        m.dof_damping[dofs] *= p["joint_damping"]
        controller = self._arm_controller()
        controller.kp = self.nominal_kp * p["actuator_gain"]
        controller.kd = 2 * np.sqrt(controller.kp)  # robosuite's critical damping (damping ratio 1)


def _descends(model, body: int, ancestor: int) -> bool:
    while body > 0:
        if body == ancestor:
            return True
        body = int(model.body_parentid[body])
    return False


# ------------------------------------------------------------------------------------ worst case


def worst_case(suite_id: str, task: str, policy, out: Path, *, suite_options: dict[str, Any], seed: int,
               max_steps: int | None, worst_case: str = "cem", generations: int | str = 4, population: int | str = 8,
               episodes_per_point: int | str = 4, fresh_episodes: int | str = 40, log=print,
               execution: Any = None) -> dict[str, Any] | None:
    """CEM search and a same-budget grid for one policy; both winners re-run on fresh initial
    conditions (paired between the two). Each evaluation is an ordinary run folder under ``out``,
    so an interrupted search resumes where it stopped. The options come as typed on the command
    line (the family suites declare them); ``worst_case=none``: no search (None). ``execution``: how
    the family run ran (evalsuite.request.Execution); the search's runs run the same way."""
    from evalsuite.harness import evaluate
    from evalsuite.request import Design, EvaluateRequest, Execution, Tracking

    if search_option("worst_case", worst_case) == "none":
        return None
    generations, population = search_option("generations", generations), search_option("population", population)
    episodes_per_point = search_option("episodes_per_point", episodes_per_point)
    fresh_episodes = search_option("fresh_episodes", fresh_episodes)
    log(f"worst-case search for {policy.label} ...")

    from evalsuite import registry
    from evalsuite.analyses.family import cem_minimize

    spec = FAMILIES[registry.suites.get(suite_id).kwargs["family"]]
    vary = suite_options.get("vary")
    names = ([v.strip() for v in vary.strip("[]").split(",") if v.strip()] if isinstance(vary, str) else vary) \
        or [a.name for a in spec.axes if not _needs_points(a.name, suite_options)]
    axes = [spec.axis(n) for n in names]
    base_options = {k: v for k, v in suite_options.items() if k in ("obs",)}
    seq = streams.sequence(seed, streams.WORST_CASE_SEARCH)
    seeds = [int(s.generate_state(1)[0]) for s in seq.spawn(generations + 3)]

    def run(points: list[dict[str, float]], folder: str, run_seed: int, per_point: int) -> list[tuple[int, int]]:
        design = Design(tasks=(task,), episodes=len(points) * per_point, seed=run_seed, max_steps=max_steps,
                        suite_options={**base_options, "points": json.dumps(points)})
        req = EvaluateRequest(suite=suite_id, policies=[policy], out=out / folder, design=design,
                              execution=execution or Execution(), tracking=Tracking(uri=None), progress=False)
        res = evaluate(req, log=lambda *_: None)
        cells = {c["mdp"]: c for c in res.section("family")["policies"][policy.label]["per_mdp"]}
        return [(cells[i]["k"], cells[i]["n"]) for i in range(len(points))]

    def to_params(u: np.ndarray) -> dict[str, float]:
        return {a.name: a.from_unit(float(x)) for a, x in zip(axes, u, strict=False)}

    evaluated: list[tuple[dict, int, int]] = []

    def score(pts: np.ndarray, g: int) -> np.ndarray:
        points = [to_params(u) for u in pts]
        kn = run(points, f"cem/gen{g}", seeds[g], episodes_per_point)
        evaluated.extend((p, k, n) for p, (k, n) in zip(points, kn, strict=False))
        return np.array([k / n for k, n in kn])

    rng = streams.generator(seed, streams.WORST_CASE_CEM)
    history = cem_minimize(score, len(axes), generations=generations, population=population, rng=rng)
    budget = generations * population * episodes_per_point
    final_mean = np.array(history[-1]["elite_mean"])
    best = min(evaluated, key=lambda e: (e[1] / e[2], _dist(axes, e[0], final_mean)))

    # the grid of the same budget: levels per axis, range ends included
    levels = max(2, int(np.floor((budget / episodes_per_point) ** (1 / len(axes)) + 1e-9)))
    grid_points = design(spec, "grid", levels ** len(axes), vary=names)[1:]
    level = 0.95

    def summary(params, k_search, n_search, kn_fresh, spent):
        ci = proportion_interval(kn_fresh[0], kn_fresh[1], level=level, method="wilson")
        return {"params": {n: params[n] for n in names}, "search_rate": k_search / n_search,
                "search_episodes": n_search, "fresh_rate": kn_fresh[0] / kn_fresh[1], "fresh_low": ci.low,
                "fresh_high": ci.high, "fresh_episodes": kn_fresh[1], "episodes_spent": spent}

    result = {"policy": policy.label, "axes": names, "level": level}
    if len(grid_points) > budget:  # even the two range ends of every axis do not fit the budget
        fresh = run([best[0]], "fresh", seeds[generations + 1], fresh_episodes)
        result["grid"] = {"skipped": f"a grid with both ends of {len(axes)} axes has {len(grid_points)} MDPs, "
                                     f"more than the search's {budget} episodes"}
    else:
        grid_k = max(1, budget // len(grid_points))
        grid_kn = run(grid_points, "grid", seeds[generations], grid_k)
        g_best = int(np.argmin([k / n for k, n in grid_kn]))
        fresh = run([best[0], grid_points[g_best]], "fresh", seeds[generations + 1], fresh_episodes)
        result["grid"] = {**summary(grid_points[g_best], *grid_kn[g_best], fresh[1], grid_k * len(grid_points)),
                          "levels": levels, "points": len(grid_points), "episodes_per_point": grid_k}
    result["cem"] = {**summary(best[0], best[1], best[2], fresh[0], budget), "generations": generations,
                     "population": population, "episodes_per_point": episodes_per_point, "history": history}
    grid_text = result["grid"].get("skipped") or _fmt(result["grid"])
    log(f"worst case of {policy.label}: CEM {_fmt(result['cem'])}; grid {grid_text}")
    return result


def _needs_points(axis: str, options: dict[str, Any]) -> bool:
    return axis in {a.name for a in POINTCLOUD_AXES} and options.get("obs") != "pointcloud"


def _dist(axes, params: dict, unit_mean: np.ndarray) -> float:
    return float(np.linalg.norm([a.to_unit(params[a.name]) - m for a, m in zip(axes, unit_mean, strict=False)]))


def _fmt(r: dict) -> str:
    params = ", ".join(f"{k}={v:.3g}" for k, v in r["params"].items())
    return (f"{params}: search {100 * r['search_rate']:.0f}%, fresh {100 * r['fresh_rate']:.0f}% "
            f"[{100 * r['fresh_low']:.0f}, {100 * r['fresh_high']:.0f}] ({r['episodes_spent']} + {r['fresh_episodes']} episodes)")

