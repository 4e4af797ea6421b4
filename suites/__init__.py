"""Built-in suites: a flat list of specs that reads as data (registered on first use)."""

from evalsuite.specs import SuiteSpec, TaskSpec
from suites.metaworld import DIFFICULTY, MAX_STEPS

_MW_TASKS = tuple(TaskSpec(task, MAX_STEPS, (level,)) for level, tasks in DIFFICULTY.items() for task in tasks)
_MW_TASK = {t.id: t for t in _MW_TASKS}

BUILTIN = [
    SuiteSpec(
        id="metaworld",
        entry_point="suites.metaworld:MetaWorldTaskEnv",
        tasks=_MW_TASKS,
        description="Meta-World v3, all 50 tasks (goal observable), tagged easy/medium/hard/very-hard",
    ),
    SuiteSpec(
        id="metaworld-smoke",
        entry_point="suites.metaworld:MetaWorldTaskEnv",
        tasks=(_MW_TASK["drawer-open"], _MW_TASK["coffee-push"], _MW_TASK["pick-place"]),
        description="Meta-World v3, one easy, one medium and one hard task, for quick runs and CI",
        default_episodes=20,
    ),
]
