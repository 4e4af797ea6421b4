"""`evalsuite check-policy`: evalsuite.testing's conformance checks on one policy and task."""

from __future__ import annotations

from evalsuite.commands.options import Option, parse, policy
from evalsuite.errors import UsageError

OPTIONS = (
    Option("policy", "the policy: id, id:ARG or id:key=value[:key=value]", parse=policy),
    Option("suite", "suite id (see `evalsuite list`)"),
    Option("task", "task of the suite (default: its first default task)"),
)


def run(args: list[str]) -> int:
    """Check a policy plugin against the interfaces: one line per problem (exit 2), else ok (exit 0)."""
    from evalsuite import registry
    from evalsuite.testing import policy_problems

    v = parse(args, OPTIONS)
    for key in ("policy", "suite"):
        if key not in v:
            raise UsageError(f"missing {key}=...; usage: evalsuite check-policy policy=ID[:key=value] suite=ID "
                             "[task=ID]")
    suite = registry.suites.get(v["suite"])
    task = suite.task(v["task"]).id if "task" in v else (suite.default_tasks or suite.task_ids)[0]
    entry = v["policy"]
    problems = policy_problems(entry.id, suite.id, task, **entry.params)
    for problem in problems:
        print(f"problem: {problem}")
    if problems:
        return 2
    print(f"ok: policy {entry.label!r} on {suite.id}/{task}: fits the task, acts on a batch with finite actions "
          "of the declared shape, the same per episode seed in any slot, with a stable fingerprint")
    return 0
