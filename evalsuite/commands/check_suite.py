"""`evalsuite check-suite`: evalsuite.testing's conformance checks on every task of a suite."""

from __future__ import annotations

from evalsuite.commands.options import Option, listing, parse
from evalsuite.errors import UsageError

OPTIONS = (
    Option("suite", "suite id (see `evalsuite list`)"),
    Option("tasks", "[task, ...], all, or a tag of the suite's tasks (default: all)", parse=listing),
)


def run(args: list[str]) -> int:
    """Check a suite plugin against the interfaces: one line per problem (exit 2), else ok per task (exit 0)."""
    from evalsuite import registry
    from evalsuite.testing import suite_problems

    v = parse(args, OPTIONS)
    if "suite" not in v:
        raise UsageError("missing suite=...; usage: evalsuite check-suite suite=ID [tasks=[...]]")
    suite = registry.suites.get(v["suite"])
    found = 0
    for task in suite.select_tasks(v["tasks"]) if "tasks" in v else suite.task_ids:
        problems = suite_problems(suite.id, [task])
        for problem in problems:
            print(f"problem: {problem}")
        if not problems:
            print(f"ok: {suite.id}/{task}: builds, returns its declared observations, initial conditions "
                  "a pure function of their seed")
        found += len(problems)
    return 2 if found else 0
