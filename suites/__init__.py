"""Built-in suites: a flat list of specs that reads as data (registered on first use)."""

from evalsuite.specs import SuiteOption, SuiteSpec, TaskSpec
from evalsuite_suites.families import FAMILIES
from evalsuite_suites.instructions import instruction
from evalsuite_suites.metaworld import DIFFICULTY, MAX_STEPS
from evalsuite_suites.robosuite import TASKS as ROBOMIMIC_TASKS

_MW_TASKS = tuple(TaskSpec(task, MAX_STEPS, (level,), instruction(task)) for level, tasks in DIFFICULTY.items() for task in tasks)
_MW_TASK = {t.id: t for t in _MW_TASKS}
_RM_TASKS = tuple(TaskSpec(task, horizon, ("low-dim",), instruction(task)) for task, (_, horizon, _) in ROBOMIMIC_TASKS.items())
_RM_IMAGE_TASKS = tuple(TaskSpec(task, horizon, ("image",), instruction(task)) for task, (_, horizon, _) in ROBOMIMIC_TASKS.items())

_BASE_TASKS = {"metaworld": _MW_TASK, "robomimic": {t.id: t for t in _RM_TASKS}}

# The suites' own command-line options (evalsuite evaluate suite=ID KEY=VALUE), validated by their entry points.
_MW_OBS = SuiteOption("obs", "observation mode: state | pointcloud (DP3's 512-point clouds from a depth camera)")
_RM_OBS = SuiteOption("obs", "observation mode: low_dim | image")
_INIT_STATES = SuiteOption("init_states", "robomimic HDF5 dataset whose stored initial states the episodes start from")
_FAMILY_OPTIONS = (
    SuiteOption("sampler", "sobol | lhs | grid (grids include the range ends)"),
    SuiteOption("mdps", "MDPs drawn from the family besides the nominal one (grid: about this many)"),
    SuiteOption("vary", "[axis, ...] that vary (default: all); the others stay nominal"),
    SuiteOption("design_seed", "seed of the Sobol / Latin-hypercube design"),
    SuiteOption("points", "a JSON list of {axis: value} MDPs to run instead of a sampled design"),
    *(SuiteOption(name, text, default, "search", "evalsuite_suites.families:search_option") for name, text, default in (
        ("worst_case", "cem (CEM search + same-budget grid per policy) | none", "cem"),
        ("generations", "worst-case search: CEM generations", "4"),
        ("population", "worst-case search: candidates a generation", "8"),
        ("episodes_per_point", "worst-case search: episodes per candidate", "4"),
        ("fresh_episodes", "worst-case search: episodes re-running each winner on fresh initial conditions", "40"))),
)
_PACKAGES = {"metaworld": ("metaworld", "gymnasium", "mujoco"), "robosuite": ("robosuite", "mujoco")}

BUILTIN = [
    SuiteSpec(
        id="metaworld",
        entry_point="evalsuite_suites.metaworld:MetaWorldTaskEnv",
        tasks=_MW_TASKS,
        description="Meta-World v3, all 50 tasks (goal observable), tagged easy/medium/hard/very-hard",
        default_episodes=50,
        simulator="metaworld",
        options=(_MW_OBS,),
        packages=_PACKAGES["metaworld"],
        episode_workers=True,  # whole episodes in a process per core (a small plan runs in one process)
        default_tasks=("drawer-open", "coffee-push", "pick-place"),  # where shipped checkpoints exist
        default_policies=("scripted", "dp3", "flowpolicy", "mp1"),
    ),
    SuiteSpec(
        id="metaworld-smoke",
        entry_point="evalsuite_suites.metaworld:MetaWorldTaskEnv",
        tasks=(_MW_TASK["drawer-open"], _MW_TASK["coffee-push"], _MW_TASK["pick-place"]),
        description="Meta-World v3, one easy, one medium and one hard task, for quick runs and CI",
        simulator="metaworld",
        options=(_MW_OBS,),
        packages=_PACKAGES["metaworld"],
        episode_workers=True,  # 1.7x faster on 2 cores at the defaults (38 s against 65 s)
        default_episodes=20,
        default_policies=("scripted", "noisy-scripted", "random"),
    ),
    SuiteSpec(
        id="robomimic",
        entry_point="evalsuite_suites.robosuite:RobosuiteTaskEnv",
        tasks=_RM_TASKS,
        description="robomimic's tasks on robosuite 1.5 (Panda, OSC pose, 20 Hz), low-dim observations",
        simulator="robosuite",
        options=(_INIT_STATES, _RM_OBS),
        packages=_PACKAGES["robosuite"],
        demos_format="robomimic",
        default_episodes=40,  # Wilson 95% half-width <= 10 points near 90% success
        episode_workers=True,  # the simulator is the cost here: whole episodes in a process per core
        default_tasks=("lift", "can"),
        default_policies=("scripted", "robomimic-bc", "dp3", "dm1"),
    ),
    SuiteSpec(
        id="robomimic-image",
        entry_point="evalsuite_suites.robosuite:RobosuiteTaskEnv",
        tasks=_RM_IMAGE_TASKS,
        description="robomimic's tasks with agentview and eye-in-hand cameras (84x84) besides low-dim",
        simulator="robosuite",
        options=(_INIT_STATES,),
        packages=_PACKAGES["robosuite"],
        demos_format="robomimic",
        kwargs={"obs": "image"},
        default_episodes=40,
        episode_workers=True,
        default_tasks=("lift", "can"),
        default_policies=("scripted",),
    ),
    *[
        SuiteSpec(
            id=family.id,
            entry_point="evalsuite_suites.families:FamilyTaskEnv",
            tasks=(TaskSpec(family.task, _BASE_TASKS[family.base_suite][family.task].max_steps, ("family",),
                            instruction(family.task)),),
            description=family.description,
            simulator="robosuite" if family.base_suite == "robomimic" else "metaworld",
            options=((_MW_OBS,) if family.base_suite == "metaworld" else ()) + _FAMILY_OPTIONS,
            packages=_PACKAGES["robosuite" if family.base_suite == "robomimic" else "metaworld"],
            demos_format="robomimic" if family.base_suite == "robomimic" else "dp3",
            base_suite=family.base_suite,
            family=family.describe(),
            worst_case_search="evalsuite_suites.families:worst_case",
            kwargs={"family": family.id},
            default_episodes=17 * 4,  # the nominal MDP and 16 sampled ones, 4 episodes each
            episode_workers=family.base_suite == "robomimic",  # a search runs many small plans: in process for Meta-World
            default_policies=("scripted", "noisy-scripted"),
        )
        for family in FAMILIES.values()
    ],
]
