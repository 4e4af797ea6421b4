"""MDP families: every axis changes what it claims in the simulator, designs cover the ranges,
the family statistics are calibrated, and the curve and the worst-case search find a real dependence."""

import json

import numpy as np
import pytest
from scipy.stats import qmc

from evalsuite.analyses.family import cem_minimize
from evalsuite.cli import main
from evalsuite.stats import family as fstats
from evalsuite_suites.families import FAMILIES, FamilyTaskEnv, design

FAMILY = "metaworld-family/pick-place"
SPEC = FAMILIES[FAMILY]


def _env(point, obs="state"):
    return FamilyTaskEnv("pick-place", family=FAMILY, obs=obs, points=json.dumps([point]))


def test_physics_axes_edit_the_model_and_are_restored_between_episodes():
    env = _env({"object_mass": 2.0, "friction": 0.5, "joint_damping": 4.0, "actuator_gain": 1.5})
    nominal = _env({})
    m, m0 = env.base._env.model, nominal.base._env.model
    env.reset(1, 0)
    nominal.reset(1, 0)
    obj = m.body("obj").id
    assert m.body_mass[obj] == pytest.approx(2.0 * m0.body_mass[obj])
    geoms = [g for g in range(m.ngeom) if m.geom_bodyid[g] == obj]
    assert np.allclose(m.geom_friction[geoms, 0], 0.5 * m0.geom_friction[geoms, 0])
    dof = m.jnt_dofadr[m.joint("right_j0").id]
    assert m.dof_damping[dof] == pytest.approx(4.0 * m0.dof_damping[dof])
    assert m.actuator_gainprm[0, 0] == pytest.approx(1.5 * m0.actuator_gainprm[0, 0])
    others = [b for b in range(m.nbody) if b != obj]
    assert np.array_equal(m.body_mass[others], m0.body_mass[others])
    # the gain moves the hand further per unit of action; damping makes it lag
    def move(point):
        e = _env(point)
        e.reset(1, 0)
        start = e.base._env.tcp_center.copy()
        for _ in range(5):
            e.step(np.array([1.0, 0.0, 0.0, 0.0]))
        return e.base._env.tcp_center[0] - start[0]

    free = move({})
    assert move({"actuator_gain": 1.5}) > 1.3 * free > 0
    assert move({"joint_damping": 10.0}) < 0.9 * free
    # a later nominal episode in the same environment gets the nominal model back
    env.design = [dict(SPEC.nominal)]
    env.reset(2, 0)
    assert m.body_mass[obj] == pytest.approx(m0.body_mass[obj]) and m.dof_damping[dof] == pytest.approx(m0.dof_damping[dof])


def test_layout_axes_move_and_scale_the_initial_regions():
    def object_positions(point):
        env = _env(point)
        return np.array([env.reset(seed, 0)[0]["state"][4:6] for seed in range(25)])

    base = object_positions({})
    shifted = object_positions({"layout_shift_x": 0.08, "layout_shift_y": -0.05})
    assert np.allclose(shifted - base, [0.08, -0.05], atol=1e-6)  # same draws, moved region
    narrow = object_positions({"layout_scale": 0.5})
    centre = np.array([0.0, 0.65])  # the centre of pick-place's object region
    same_draw = np.all(np.abs((narrow - centre) - 0.5 * (base - centre)) < 1e-6, axis=1)
    assert same_draw.mean() > 0.7  # the rest: pick-place redraws when object and goal land too close
    assert np.all(np.abs(narrow - centre) <= [0.05 + 1e-9, 0.025 + 1e-9])  # inside the halved region


def test_sensing_and_actuation_axes():
    clean, noisy = _env({}), _env({"obs_noise": 0.01})
    a, _ = clean.reset(3, 0)
    b, _ = noisy.reset(3, 0)
    diff = b["state"] - a["state"]
    assert 0.004 < diff.std() < 0.02 and np.array_equal(noisy.reset(3, 0)[0]["state"], b["state"])  # seeded

    env = _env({"action_noise": 0.2})
    env.reset(4, 0)
    executed = []
    for _ in range(200):
        env.step(np.zeros(4))
        executed.append(env.executed)
    assert np.std(executed) == pytest.approx(0.2, rel=0.15)

    env = _env({"action_delay": 2})
    env.reset(5, 0)
    commands = [np.full(4, 0.1 * i) for i in range(6)]
    executed = []
    for c in commands:
        env.step(c)
        executed.append(env.executed)
    assert np.allclose(executed[0], 0) and np.allclose(executed[1], 0)
    assert all(np.allclose(executed[t], commands[t - 2]) for t in range(2, 6))


def test_pointcloud_sensing_axes(monkeypatch):
    import evalsuite_suites.pointcloud as pc

    seen = []
    real = pc.farthest_point_sampling
    monkeypatch.setattr(pc, "farthest_point_sampling", lambda p, n: seen.append(len(p)) or real(p, n))
    full = _env({}, obs="pointcloud")
    full.reset(1, 0)
    dropped = _env({"point_dropout": 0.8}, obs="pointcloud")
    obs, _ = dropped.reset(1, 0)
    assert obs["point_cloud"].shape == (512, 3)
    assert seen[1] == pytest.approx(0.2 * seen[0], rel=0.15)
    jittered = _env({"camera_jitter": 0.03}, obs="pointcloud")
    jittered.reset(1, 0)
    cam = jittered.base._camera.cam_id
    offset = jittered.base._env.model.cam_pos[cam] - np.array([0.6, 0.295, 0.8])
    assert 0 < np.abs(offset).max() < 0.15
    with pytest.raises(Exception, match="add obs=pointcloud"):
        FamilyTaskEnv("pick-place", family=FAMILY, vary="[camera_jitter]")


def test_designs_cover_the_ranges():
    sob = design(SPEC, "sobol", 16, seed=3, vary=["object_mass", "action_delay"])
    assert sob[0] == SPEC.nominal and len(sob) == 17
    masses = [p["object_mass"] for p in sob[1:]]
    assert min(masses) >= 0.25 and max(masses) <= 4.0 and all(p["action_delay"] in (0, 1, 2, 3) for p in sob)
    assert all(p["friction"] == 1.0 for p in sob)  # not varied: nominal
    assert sob == design(SPEC, "sobol", 16, seed=3, vary=["object_mass", "action_delay"])
    assert sob != design(SPEC, "sobol", 16, seed=4, vary=["object_mass", "action_delay"])
    # Sobol is more uniform than independent draws (lower discrepancy)
    units = np.array([[SPEC.axis("object_mass").to_unit(p["object_mass"]), SPEC.axis("obs_noise").to_unit(p["obs_noise"])]
                      for p in design(SPEC, "sobol", 64, vary=["object_mass", "obs_noise"])[1:]])
    assert qmc.discrepancy(units) < qmc.discrepancy(np.random.default_rng(0).random((64, 2)))
    lhs = design(SPEC, "lhs", 10, vary=["friction"])[1:]
    strata = sorted(int(SPEC.axis("friction").to_unit(p["friction"]) * 10) for p in lhs)
    assert strata == list(range(10))  # one point in each tenth of the range
    grid = design(SPEC, "grid", 9, vary=["friction", "obs_noise"])[1:]
    assert len(grid) == 9 and sorted({p["friction"] for p in grid}) == pytest.approx([0.2, np.sqrt(0.4), 2.0])
    assert sorted({p["obs_noise"] for p in grid}) == pytest.approx([0.0, 0.01, 0.02])  # the range ends are in the grid
    with pytest.raises(Exception, match="has no axis 'gravity'"):
        design(SPEC, "sobol", 4, vary=["gravity"])
    with pytest.raises(Exception, match="sampler='random'; accepted: grid, lhs, sobol"):
        design(SPEC, "random", 4)


def test_family_mean_interval_covers_by_simulation_and_pooled_does_not():
    """MDP success rates spread over the family (Beta(2, 2)); 5 episodes in each of 20 MDPs."""
    rng = np.random.default_rng(0)
    true_mean, covered, pooled_covered, reps = 0.5, 0, 0, 2000
    from evalsuite.stats.intervals import proportion_interval

    for _ in range(reps):
        p = rng.beta(2, 2, 20)
        k, n = rng.binomial(5, p), np.full(20, 5)
        est = fstats.family_mean(k, n)
        covered += est.low <= true_mean <= est.high
        ci = proportion_interval(int(k.sum()), 100, method="wilson")
        pooled_covered += ci.low <= true_mean <= ci.high
    assert 0.93 <= covered / reps <= 0.97
    assert pooled_covered / reps < covered / reps - 0.03  # ignoring the MDP level under-covers


def test_percentile_logistic_curve_and_rank_reversal():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, 400)
    y = rng.random(400) < 1 / (1 + np.exp(-(2.0 - 4.0 * x)))
    curve = fstats.logistic_curve(x, y, 0.0, 1.0)
    assert curve.slope_low < -4.0 < curve.slope_high and curve.p_value < 1e-6
    assert curve.p[0] > curve.p[-1] and all(lo <= p <= hi for lo, p, hi in zip(curve.low, curve.p, curve.high, strict=False))
    flat = fstats.logistic_curve(x, np.ones(400, bool), 0.0, 1.0)
    assert flat.slope is None and flat.p[0] == 1.0
    k, n = np.array([0, 5, 10, 10, 10, 10, 10, 10, 10, 10]), np.full(10, 10)
    p10 = fstats.family_percentile(k, n, 0.10)
    assert p10.estimate == pytest.approx(0.45) and p10.low <= 0.45 <= p10.high
    rev = fstats.rank_reversal(np.array([1, 4, 9, 0]), np.array([5, 5, 10, 10]), np.array([3, 3, 5, 10]),
                               np.array([5, 5, 10, 10]), 0.9, 0.5)
    assert rev["nominal_order"] == "A > B" and rev["mdps_compared"] == 4
    assert rev["naive_reversal_rate"] == pytest.approx(1 / 2)  # 1/5 vs 3/5 and 0/10 vs 10/10 flip, the others hold
    assert rev["credible_reversals"] == 1  # only 0/10 vs 10/10 is beyond noise


def test_cem_finds_the_low_region_of_a_noisy_objective():
    rng = np.random.default_rng(0)

    def score(pts, g):  # success falls with the first coordinate; the second does not matter
        p = np.clip(0.95 - 0.9 * pts[:, 0], 0, 1)
        return rng.binomial(6, p) / 6

    def flat(pts, g):  # nothing to find
        return rng.binomial(6, np.full(len(pts), 0.5)) / 6

    found = [cem_minimize(score, 2, generations=6, population=10, rng=np.random.default_rng(s)) for s in range(10)]
    assert all(h[0]["mean"] == [0.5, 0.5] for h in found)
    ends = np.array([h[-1]["elite_mean"][0] for h in found])
    blind = np.array([cem_minimize(flat, 2, generations=6, population=10, rng=np.random.default_rng(s))[-1]["elite_mean"][0]
                      for s in range(10)])
    assert ends.mean() > 0.8 and np.median(ends) > 0.85 and ends.mean() > blind.mean() + 0.2


def test_family_run_recovers_a_real_dependence_and_the_search_finds_the_bad_region(tmp_path):
    """The scripted expert on pick-place under observation noise: success falls with the noise."""
    out = tmp_path / "run"
    assert main(["evaluate", "video=none", f"suite={FAMILY}", "policies=[scripted]", "vary=[obs_noise]", "sampler=grid", "mdps=6",
                 "episodes=28", "generations=3", "population=4", "episodes_per_point=2", "fresh_episodes=8",
                 f"out={out}", "tracking_uri=none", "progress=false", "max_steps=300"]) == 0
    fam = json.loads((out / "results.json").read_text())["family"]
    entry = fam["policies"]["scripted"]
    assert {c["params"]["obs_noise"] for c in entry["per_mdp"]} >= {0.0, 0.02}  # the grid reaches the upper end
    curve = entry["curves"][0]
    assert curve["axis"] == "obs_noise"
    assert curve["slope"] is None or curve["slope_high"] < 0  # decreasing (or perfectly separated)
    rates = {c["params"]["obs_noise"]: c["k"] / c["n"] for c in entry["per_mdp"]}
    assert rates[0.0] > rates[0.02]
    assert entry["nominal"]["rate"] >= entry["family_mean"]["estimate"]
    worst = fam["worst_case"]["scripted"]
    assert worst["cem"]["params"]["obs_noise"] > 0.01 and worst["grid"]["params"]["obs_noise"] > 0.01
    assert worst["cem"]["fresh_rate"] < entry["nominal"]["rate"]
    assert worst["cem"]["episodes_spent"] == 3 * 4 * 2 and worst["cem"]["fresh_episodes"] == 8
    report = (out / "report.md").read_text()
    assert "## MDP family metaworld-family/pick-place" in report and (out / "figures" / "family_curves.png").exists()


def test_robomimic_family_edits_the_rebuilt_model_and_the_placement():
    def env_at(point):
        return FamilyTaskEnv("lift", family="robomimic-family/lift", points=json.dumps([point]))

    nominal, edited = env_at({}), env_at({"object_mass": 3.0, "friction": 0.5, "joint_damping": 2.0,
                                         "actuator_gain": 0.5, "layout_shift_x": 0.1, "layout_scale": 0.5})
    positions = {}
    for name, env in (("nominal", nominal), ("edited", edited)):
        cubes = []
        for seed in range(2):
            obs, _ = env.reset(seed, 0)
            cubes.append(obs["object"][:3])
        positions[name] = np.array(cubes)
    m0, m = nominal.base.env.sim.model._model, edited.base.env.sim.model._model
    cube = m.body("cube_main").id
    assert m.body_mass[cube] == pytest.approx(3.0 * m0.body_mass[cube])
    geoms = [g for g in range(m.ngeom) if m.geom_bodyid[g] == cube]
    assert np.allclose(m.geom_friction[geoms, 0], 0.5 * m0.geom_friction[geoms, 0])
    dof = m.jnt_dofadr[m.joint("robot0_joint1").id]
    assert m.dof_damping[dof] == pytest.approx(2.0 * m0.dof_damping[dof])
    kp = edited.base.env.robots[0].composite_controller.part_controllers["right"].kp
    assert np.allclose(kp, 0.5 * np.asarray(nominal.adapter.nominal_kp))
    # placement: x shifted by 0.1 and the +-3 cm range halved
    assert np.all(np.abs(positions["edited"][:, 0] - positions["nominal"][:, 0].mean() - 0.1) < 0.03)
    assert np.all(np.abs(positions["edited"][:, 0] - 0.1) <= 0.015 + 1e-6)
    nominal.close()
    edited.close()
