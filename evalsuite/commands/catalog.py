"""`evalsuite list`: the suites with their tasks, and the policies with their parameters."""

from __future__ import annotations

from evalsuite.errors import UsageError

OPTIONS = ()


def run(args: list[str]) -> int:
    """Suites, tasks and policies installed."""
    from evalsuite import registry

    if args:
        raise UsageError(f"`evalsuite list` takes no arguments, got {args[0]!r}")
    print("suites:")
    for spec in registry.suites.all().values():
        print(f"  {spec.id:<18} {len(spec.tasks):>3} tasks  {spec.description}")
        print("      tasks: " + ", ".join(f"{t.id}" + (f" ({','.join(t.tags)})" if t.tags else "") for t in spec.tasks))
    print("policies:")
    for spec in registry.policies.all().values():
        params = ", ".join(f"{k}={v}" for k, v in spec.params.items())
        extra = f" [{spec.positional}]" if spec.positional else ""
        print(f"  {spec.id:<18}{extra} {spec.description}" + (f"  (params: {params})" if params else ""))
    return 0
